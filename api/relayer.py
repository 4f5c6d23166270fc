"""The relayer: submits holders' signed actions and pays their gas.

Every relayed action (certificate transfers and lifecycle actions, points
transfers, gift claims, loan acceptances, extensions and repayments) goes
through one path, :meth:`Relayer._submit`: the allow-list, the relayer key's
minimum balance, then the persistent outbox (:mod:`api.outbox`), which
simulates, applies the sponsorship policy (:mod:`api.policy`: calls that
reverted before, the actor's code and reverted-gas budget, the quotas per
account, network and service), stores, signs, sends and follows the
transaction to its confirmations. Actions that would do nothing (a transfer
of 0 points) are refused before any of that. Each request is owned by the
account that asked (:class:`Origin`); an ``Idempotency-Key`` makes a retried
request return the first one.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from eth_account import Account
from eth_account.messages import encode_defunct
from eth_account.signers.local import LocalAccount
from web3.contract import Contract

from amphora import eip712
from api.cask_schemas import BottleClaimRelayRequest
from api.chain import POINTS, ChainService
from api.errors import InvalidRequest, RelayRefused, RelayUnavailable
from api.lifecycle import HolderAction
from api.outbox import Outbox, RelayRecord, Submission
from api.policy import AllowList, BalanceGuard, Quotas, RevertLedger, Sponsorship, check_nonce_invalidation
from api.schemas import (
    GiftClaimBySecretRequest,
    GiftClaimRelayRequest,
    HolderActionRelayRequest,
    LoanAcceptanceRelayRequest,
    LoanExtensionRelayRequest,
    LoanRepaymentRelayRequest,
    NonceInvalidationRelayRequest,
    PointsTransferRelayRequest,
    TransferRelayRequest,
)
from api.settings import Settings
from api.webhooks import Webhook
from storage.db import Database

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Origin:
    """Who asked for a relayed action: the account charged for it, and the
    client's idempotency key, if any."""

    account: str
    idempotency_key: str | None = None
    #: Set by routes that sign for the account: see :attr:`api.outbox.Submission.fingerprint`.
    fingerprint: str | None = None
    #: The client's network (:func:`api.policy.network_of`), charged beside the account.
    network: str | None = None


class Relayer:
    def __init__(self, chain: ChainService, settings: Settings, db: Database) -> None:
        self._chain = chain
        self._settings = settings
        self._db = db
        self._account: LocalAccount | None = None
        self._pool: list[LocalAccount] = []
        self._key_error: str | None = None
        self._outbox: Outbox | None = None
        self._webhook: Webhook | None = None
        self.allow_list = AllowList(chain)
        self.quotas = Quotas(db, settings)
        self.reverts = RevertLedger(db, settings)
        self.sponsorship = Sponsorship(self.quotas, self.reverts)
        self.balances = BalanceGuard(chain, settings.relayer_min_balance_wei)
        secret = settings.relayer_private_key
        self._configured = secret is not None
        if secret is None:
            self._key_error = "the relayer is not configured: set AMPHORA_RELAYER_PRIVATE_KEY"
            return
        try:
            self._account = Account.from_key(secret.get_secret_value().strip())
        except Exception:  # the message could quote the key: never pass it on
            self._key_error = "AMPHORA_RELAYER_PRIVATE_KEY is not a valid private key"
            logger.error(self._key_error)
            return
        self._pool = [self._account]
        if settings.relayer_pool_keys is not None:
            for position, key in enumerate(settings.relayer_pool_keys.get_secret_value().split(","), start=1):
                if not key.strip():
                    continue
                try:
                    extra = Account.from_key(key.strip())
                except Exception:  # never quote the key
                    self._key_error = f"AMPHORA_RELAYER_POOL_KEYS: key {position} is not a valid private key"
                    logger.error(self._key_error)
                    self._account, self._pool = None, []
                    return
                if extra.address not in {k.address for k in self._pool}:
                    self._pool.append(extra)
        if settings.relay_webhook_url:
            if settings.relay_webhook_secret is None or not settings.relay_webhook_secret.get_secret_value():
                raise ValueError("relay_webhook_url needs relay_webhook_secret: webhook pushes are always signed")
            hook_secret = settings.relay_webhook_secret.get_secret_value().encode()
            self._webhook = Webhook(settings.relay_webhook_url, hook_secret,
                                    max_queue=settings.relay_webhook_queue_size)
        self._outbox = Outbox(db, chain, self._pool, settings, policy=self.sponsorship,
                              on_change=self._webhook.push if self._webhook else None)

    @property
    def configured(self) -> bool:
        """Whether a key was given at all (valid or not)."""
        return self._configured

    @property
    def address(self) -> str | None:
        return self._account.address if self._account else None

    @property
    def addresses(self) -> list[str]:
        """Every key of the pool, the service key first."""
        return [k.address for k in self._pool]

    @property
    def database(self) -> str:
        return self._db.description

    @property
    def key_error(self) -> str | None:
        return self._key_error

    @property
    def outbox(self) -> Outbox:
        if self._outbox is None:
            raise RelayUnavailable(self._key_error or "the relayer is not configured")
        return self._outbox

    def start(self) -> None:
        """Start the outbox worker (if this instance runs one)."""
        if self._outbox is not None and self._settings.relay_worker:
            self._outbox.start()

    def stop(self) -> None:
        if self._outbox is not None:
            self._outbox.stop()
        if self._webhook is not None:
            self._webhook.close()

    def _require_account(self) -> LocalAccount:
        if self._account is None:
            raise RelayUnavailable(self._key_error or "the relayer is not configured")
        return self._account

    def service_address(self) -> str:
        """The service key's address (the relayer's key also signs snapshots)."""
        return self._require_account().address

    def sign_text(self, text: str) -> bytes:
        """An EIP-191 ``personal_sign`` of ``text`` by the service key, 65 bytes."""
        return bytes(self._require_account().sign_message(encode_defunct(text=text)).signature)

    def relay_transfer(self, request: TransferRelayRequest, origin: Origin) -> RelayRecord:
        """Relay ``transfer_with_signature``."""
        call = self._chain.calldata(self._chain.certificate_contract, "transfer_with_signature",
            request.sender, request.to, request.token_id, request.nonce, request.deadline, request.signature)
        return self._submit(origin, "transfer", request.sender, call,
                            f"transfer of certificate {request.token_id} from {request.sender} to {request.to}",
                            actor_nonce=request.nonce)

    def relay_points_transfer(self, request: PointsTransferRelayRequest, origin: Origin) -> RelayRecord:
        """Relay the PointsToken's EIP-3009 ``transferWithAuthorization``; a
        transfer of 0 does nothing, so the relayer does not pay for it."""
        if request.value == 0:
            raise RelayRefused("the relayer does not pay for a transfer of 0 points: it would do nothing")
        v, r, s = _vrs(request.signature)
        call = self._chain.calldata(self._chain.authorization_token(POINTS), "transferWithAuthorization",
            request.sender, request.to, request.value, request.valid_after, request.valid_before,
            bytes.fromhex(request.nonce[2:]), v, r, s)
        return self._submit(origin, "points-transfer", request.sender, call,
                            f"transfer of {request.value} points units from {request.sender} to {request.to} "
                            f"(authorization {request.nonce})")

    def relay_share_transfer(self, cask: Contract, request: PointsTransferRelayRequest,
                             origin: Origin) -> RelayRecord:
        """Relay a cask's EIP-3009 ``transferWithAuthorization`` of shares (the
        cask's rules apply on chain; the simulation reports a refusal)."""
        if request.value == 0:
            raise RelayRefused("the relayer does not pay for a transfer of 0 shares: it would do nothing")
        v, r, s = _vrs(request.signature)
        call = self._chain.calldata(cask, "transferWithAuthorization", request.sender, request.to, request.value,
                                    request.valid_after, request.valid_before, bytes.fromhex(request.nonce[2:]),
                                    v, r, s)
        return self._submit(origin, "share-transfer", request.sender, call,
                            f"transfer of {request.value} shares of cask {cask.address} from {request.sender} to "
                            f"{request.to} (authorization {request.nonce})")

    def relay_bottle_claim(self, cask: Contract, request: BottleClaimRelayRequest, origin: Origin) -> RelayRecord:
        """Relay a cask holder's signed ``claim_with_authorization``."""
        if request.bottles == 0 and not request.remainder:
            raise RelayRefused("the relayer does not pay for a claim of no bottle and no remainder")
        v, r, s = _vrs(request.signature)
        call = self._chain.calldata(cask, "claim_with_authorization", request.holder, request.bottles,
                                    request.remainder, request.valid_after, request.valid_before,
                                    bytes.fromhex(request.nonce[2:]), v, r, s)
        return self._submit(origin, "bottle-claim", request.holder, call,
                            f"claim of {request.bottles} bottles{' and the remainder' if request.remainder else ''} "
                            f"from cask {cask.address} by {request.holder} (authorization {request.nonce})")

    def relay_distribution_claim(self, cask: Contract, holder: str, origin: Origin) -> RelayRecord:
        """Relay ``claim_distribution(holder)``: it pays ``holder`` only, so it
        needs no signature; the simulation refuses it when nothing is owed."""
        call = self._chain.calldata(cask, "claim_distribution", holder)
        return self._submit(origin, "distribution-claim", holder, call,
                            f"claim of the distributions owed to {holder} by cask {cask.address}")

    def relay_holder_action(self, action: HolderAction, request: HolderActionRelayRequest,
                            origin: Origin) -> RelayRecord:
        """Relay a holder's signed lifecycle action (gift, gift revocation,
        redemption request, flag)."""
        call = self._chain.calldata(self._chain.certificate_contract, action.function, *action.call_args(request))
        return self._submit(origin, action.function.removesuffix("_with_signature"), request.holder, call,
                            action.summary.format(token_id=request.token_id, holder=request.holder),
                            actor_nonce=request.nonce)

    def relay_nonce_invalidation(self, request: NonceInvalidationRelayRequest, origin: Origin) -> RelayRecord:
        """Relay ``invalidate_nonces_with_signature`` within the sponsor policy
        (:func:`api.policy.check_nonce_invalidation`). Recorded in the outbox as
        the holder's nonce ``new_nonce - 1``, so a custodial action signed while
        it is in flight takes ``new_nonce``."""
        check_nonce_invalidation(request.nonce, request.new_nonce)
        call = self._chain.calldata(self._chain.certificate_contract, "invalidate_nonces_with_signature",
            request.holder, request.nonce, request.new_nonce, request.deadline, request.signature)
        return self._submit(origin, "nonce-invalidation", request.holder, call,
                            f"invalidation of the signature nonces {request.nonce} to {request.new_nonce - 1} of "
                            f"{request.holder}", actor_nonce=request.new_nonce - 1)

    def relay_gift_claim(self, request: GiftClaimRelayRequest, origin: Origin) -> RelayRecord:
        """Relay ``claim_gift`` with the claim key's signature."""
        call = self._chain.calldata(self._chain.certificate_contract, "claim_gift",
            request.token_id, request.recipient, request.signature)
        return self._submit(origin, "gift-claim", request.recipient, call,
                            f"claim of gift {request.token_id} for {request.recipient}")

    def relay_gift_claim_by_secret(self, request: GiftClaimBySecretRequest, origin: Origin) -> RelayRecord:
        """Sign the claim with the claim link's secret, then relay it. The secret
        is used for this one signature and never stored or logged."""
        try:
            key = Account.from_key(request.claim_secret)
        except Exception as err:  # the message could quote the secret: never pass it on
            raise InvalidRequest("claim_secret: not a valid private key") from err
        domain = self._chain.eip712_domain()
        data = eip712.typed_data("ClaimGift", eip712.claim_gift_message(request.token_id, request.recipient),
                                 domain.chain_id, domain.verifying_contract, name=domain.name,
                                 version=domain.version)
        signature = eip712.sign(data, key.key)
        return self.relay_gift_claim(GiftClaimRelayRequest.model_validate(
            {"token_id": request.token_id, "recipient": request.recipient, "signature": "0x" + signature.hex()}),
            origin)

    def relay_loan_acceptance(self, request: LoanAcceptanceRelayRequest, origin: Origin) -> RelayRecord:
        """Relay ``accept_offer_with_signature``: the certificate is pledged and
        the principal paid to the borrower, who pays no gas."""
        offer = eip712.loan_offer_args(request.offer.message())
        call = self._chain.calldata(self._chain.lending_contract("accept_offer_with_signature"),
                                    "accept_offer_with_signature", offer, request.lender_signature,
                                    request.token_id, request.borrower, request.deadline, request.borrower_signature)
        return self._submit(origin, "loan-acceptance", request.borrower, call,
                            f"acceptance by {request.borrower} of {request.offer.lender}'s offer "
                            f"{request.offer.nonce} on certificate {request.token_id}")

    def relay_loan_extension(self, request: LoanExtensionRelayRequest, origin: Origin) -> RelayRecord:
        """Relay ``extend_loan`` with both parties' signatures."""
        call = self._chain.calldata(self._chain.lending_contract("extend_loan"), "extend_loan",
                                    request.loan_id, request.due_at, request.repayment, request.deadline,
                                    request.lender_signature, request.borrower_signature)
        return self._submit(origin, "loan-extension", f"loan:{request.loan_id}", call,
                            f"extension of loan {request.loan_id} to {request.due_at}")

    def relay_loan_repayment(self, request: LoanRepaymentRelayRequest, origin: Origin) -> RelayRecord:
        """Relay ``repay_with_authorization``: the payer's stablecoin goes to the
        lender through the lending contract, the certificate unlocks for the
        borrower, and nobody but the relayer pays gas."""
        v, r, s = _vrs(request.signature)
        call = self._chain.calldata(self._chain.lending_contract("repay_with_authorization"),
                                    "repay_with_authorization", request.loan_id, request.payer,
                                    request.valid_after, request.valid_before, v, r, s)
        return self._submit(origin, "loan-repayment", request.payer, call,
                            f"repayment of loan {request.loan_id} by {request.payer}")

    def _submit(self, origin: Origin, kind: str, actor: str, call: tuple[str, str], description: str,
                actor_nonce: int | None = None) -> RelayRecord:
        """The one submit path for ``call`` (address, calldata): allow-list,
        contract code, the chosen key's balance, then the outbox (simulation,
        quotas, storage, sending)."""
        outbox = self.outbox
        to, data = call
        self._chain.require_code(to)
        self.allow_list.check(to, data)
        self.balances.require(outbox.key_for(actor))
        return outbox.submit(Submission(account=origin.account, kind=kind, actor=actor, to=to, data=data,
                                        description=description, idempotency_key=origin.idempotency_key,
                                        actor_nonce=actor_nonce, fingerprint=origin.fingerprint,
                                        network=origin.network))

    def status(self, request_id: str) -> RelayRecord:
        """A request by its id or the hash of one of its transactions."""
        return self.outbox.get(request_id)


def _vrs(signature: bytes) -> tuple[int, bytes, bytes]:
    """``(v, r, s)`` of a 65-byte signature; 422 for any other length."""
    try:
        return eip712.split_signature(signature)
    except ValueError as err:
        raise InvalidRequest(f"signature: {err}") from err
