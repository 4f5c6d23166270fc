"""The relayer: submits holders' signed transfers and pays their gas.

Two kinds of signed transfer go through one submit path: certificate
transfers (the WineCertificate's ``transfer_with_signature``) and points
transfers (the PointsToken's EIP-3009 ``transferWithAuthorization``). Before
sending anything the relayer simulates the call from its own address on the
node's pending state; a transfer that would revert is refused with the
contract's reason and costs nothing. Sending holds a lock, so concurrent relays
from this process take consecutive nonces (the node assigns the ``pending``
nonce). Several relayer processes sharing one key need their own coordination
(the database-backed relayer); this one is for a single process.
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from typing import Any

from eth_account import Account
from eth_account.messages import encode_defunct
from eth_account.signers.local import LocalAccount
from hexbytes import HexBytes
from web3.contract.contract import ContractFunction
from web3.exceptions import TransactionNotFound, Web3RPCError

from amphora import eip712
from amphora.eip712 import split_signature
from api.chain import POINTS, ChainService, node_errors
from api.errors import InvalidRequest, NotFound, RelayRefused, RelayUnavailable
from api.lifecycle import HolderAction
from api.schemas import (
    GiftClaimBySecretRequest,
    GiftClaimRelayRequest,
    HolderActionRelayRequest,
    LoanAcceptanceRelayRequest,
    LoanExtensionRelayRequest,
    LoanRepaymentRelayRequest,
    PointsTransferRelayRequest,
    RelayStatus,
    RelayTransaction,
    TransferRelayRequest,
)
from api.settings import Settings

logger = logging.getLogger(__name__)

#: How many sent transaction hashes the relayer remembers (for the `unknown` status).
_REMEMBERED = 10_000
#: Gas limit headroom over the node's estimate, in percent.
_GAS_HEADROOM_PERCENT = 20


class Relayer:
    def __init__(self, chain: ChainService, settings: Settings) -> None:
        self._chain = chain
        self._gas_cap = settings.relay_gas_limit_cap
        self._account: LocalAccount | None = None
        self._key_error: str | None = None
        self._send_lock = threading.Lock()
        self._sent: OrderedDict[str, None] = OrderedDict()
        secret = settings.relayer_private_key
        self._configured = secret is not None
        if secret is None:
            self._key_error = "the relayer is not configured: set AMPHORA_RELAYER_PRIVATE_KEY"
        else:
            try:
                self._account = Account.from_key(secret.get_secret_value().strip())
            except Exception:  # the message could quote the key: never pass it on
                self._key_error = "AMPHORA_RELAYER_PRIVATE_KEY is not a valid private key"
                logger.error(self._key_error)

    @property
    def configured(self) -> bool:
        """Whether a key was given at all (valid or not)."""
        return self._configured

    @property
    def address(self) -> str | None:
        return self._account.address if self._account else None

    @property
    def key_error(self) -> str | None:
        return self._key_error

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

    def relay_transfer(self, request: TransferRelayRequest) -> str:
        """Simulate, then send ``transfer_with_signature``; returns the tx hash."""
        account = self._require_account()
        call = self._chain.certificate_contract.functions.transfer_with_signature(
            request.sender, request.to, request.token_id, request.nonce, request.deadline, request.signature)
        return self._submit(account, call, f"transfer of certificate {request.token_id} from {request.sender} "
                                           f"to {request.to}")

    def relay_points_transfer(self, request: PointsTransferRelayRequest) -> str:
        """Simulate, then send the PointsToken's EIP-3009 ``transferWithAuthorization``;
        returns the tx hash."""
        account = self._require_account()
        v, r, s = split_signature(request.signature)
        call = self._chain.authorization_token(POINTS).functions.transferWithAuthorization(
            request.sender, request.to, request.value, request.valid_after, request.valid_before,
            bytes.fromhex(request.nonce[2:]), v, r, s)
        return self._submit(account, call, f"transfer of {request.value} points units from {request.sender} "
                                           f"to {request.to} (authorization {request.nonce})")

    def relay_holder_action(self, action: HolderAction, request: HolderActionRelayRequest) -> str:
        """Simulate, then send a holder's signed lifecycle action (gift, gift
        revocation, redemption request, flag); returns the tx hash."""
        account = self._require_account()
        function = self._chain.certificate_contract.get_function_by_name(action.function)
        call = function(*action.call_args(request))
        return self._submit(account, call, action.summary.format(token_id=request.token_id,
                                                                 holder=request.holder))

    def relay_gift_claim(self, request: GiftClaimRelayRequest) -> str:
        """Simulate, then send ``claim_gift`` with the claim key's signature."""
        account = self._require_account()
        call = self._chain.certificate_contract.functions.claim_gift(
            request.token_id, request.recipient, request.signature)
        return self._submit(account, call, f"claim of gift {request.token_id} for {request.recipient}")

    def relay_gift_claim_by_secret(self, request: GiftClaimBySecretRequest) -> str:
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
            {"token_id": request.token_id, "recipient": request.recipient, "signature": "0x" + signature.hex()}))

    def relay_loan_acceptance(self, request: LoanAcceptanceRelayRequest) -> str:
        """Simulate, then send ``accept_offer_with_signature``: the certificate is
        pledged and the principal paid to the borrower, who pays no gas."""
        account = self._require_account()
        offer = eip712.loan_offer_args(request.offer.message())
        call = self._chain.lending_contract("accept_offer_with_signature").functions.accept_offer_with_signature(
            offer, request.lender_signature, request.token_id, request.borrower, request.deadline,
            request.borrower_signature)
        return self._submit(account, call, f"acceptance by {request.borrower} of {request.offer.lender}'s offer "
                                           f"{request.offer.nonce} on certificate {request.token_id}")

    def relay_loan_extension(self, request: LoanExtensionRelayRequest) -> str:
        """Simulate, then send ``extend_loan`` with both parties' signatures."""
        account = self._require_account()
        call = self._chain.lending_contract("extend_loan").functions.extend_loan(
            request.loan_id, request.due_at, request.repayment, request.deadline, request.lender_signature,
            request.borrower_signature)
        return self._submit(account, call, f"extension of loan {request.loan_id} to {request.due_at}")

    def relay_loan_repayment(self, request: LoanRepaymentRelayRequest) -> str:
        """Simulate, then send ``repay_with_authorization``: the payer's
        stablecoin goes to the lender through the lending contract, the
        certificate unlocks for the borrower, and nobody but the relayer pays gas."""
        account = self._require_account()
        v, r, s = split_signature(request.signature)
        call = self._chain.lending_contract("repay_with_authorization").functions.repay_with_authorization(
            request.loan_id, request.payer, request.valid_after, request.valid_before, v, r, s)
        return self._submit(account, call, f"repayment of loan {request.loan_id} by {request.payer}")

    def _submit(self, account: LocalAccount, call: ContractFunction, description: str) -> str:
        """The one submit path: simulate ``call`` from the relayer's address, check
        its gas against the cap, sign and send it; returns the tx hash. Nothing is
        sent when the simulation reverts or the gas is above the cap, nor when the
        contract has no code (a call to an empty address would "succeed")."""
        self._chain.require_code(call.address)
        with self._send_lock:
            self._chain.simulate(call, account.address)
            estimate = self._chain.estimate_gas(call, account.address)
            if estimate > self._gas_cap:
                raise RelayRefused(f"the transaction needs {estimate} gas, above the relayer's cap of "
                                   f"{self._gas_cap}")
            gas = min(self._gas_cap, estimate * (100 + _GAS_HEADROOM_PERCENT) // 100)
            tx: dict[str, Any] = {
                "chainId": self._chain.chain_id,
                "from": account.address,
                "to": call.address,
                "data": call._encode_transaction_data(),
                "value": 0,
                "gas": gas,
                "nonce": self._chain.pending_nonce(account.address),
                **self._chain.fee_fields(),
            }
            signed = account.sign_transaction(tx)
            with node_errors():
                try:
                    tx_hash = self._chain.w3.eth.send_raw_transaction(signed.raw_transaction)
                except Web3RPCError as err:
                    logger.error("node refused relayed transaction: %s", err.message)
                    raise RelayUnavailable(
                        f"the node refused the relayed transaction: {err.message}") from err
            tx_hex = _hex32(tx_hash)
            self._remember(tx_hex)
        logger.info("relayed %s: %s (gas limit %d)", description, tx_hex, gas)
        return tx_hex

    def _remember(self, tx_hash: str) -> None:
        self._sent[tx_hash] = None
        while len(self._sent) > _REMEMBERED:
            self._sent.popitem(last=False)

    def status(self, tx_hash: str) -> RelayTransaction:
        """Where a transaction stands on the node."""
        tx_hash = tx_hash.lower()
        w3 = self._chain.w3
        with node_errors():
            try:
                tx = w3.eth.get_transaction(HexBytes(tx_hash))
            except TransactionNotFound as err:
                if tx_hash in self._sent:
                    return RelayTransaction(tx_hash=tx_hash, status=RelayStatus.unknown,
                                            block_number=None, gas_used=None)
                raise NotFound(f"the node knows no transaction {tx_hash}") from err
            if tx.get("blockNumber") is None:
                return RelayTransaction(tx_hash=tx_hash, status=RelayStatus.pending,
                                        block_number=None, gas_used=None)
            receipt = w3.eth.get_transaction_receipt(HexBytes(tx_hash))
        status = RelayStatus.mined if receipt["status"] == 1 else RelayStatus.failed
        return RelayTransaction(tx_hash=tx_hash, status=status, block_number=int(receipt["blockNumber"]),
                                gas_used=int(receipt["gasUsed"]))


def _hex32(value: bytes) -> str:
    return "0x" + bytes(value).hex()
