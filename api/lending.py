"""The lending services behind ``/collateral``, ``/loans`` and ``/offers``.

The lender's view of a certificate is one call to ``PledgeLending.collateral``
at one block, so every field of a snapshot describes the same moment. A
snapshot can be signed by the snapshot key (``AMPHORA_SNAPSHOT_SIGNING_KEY``,
not the relayer's gas key; EIP-191 ``personal_sign`` of its canonical JSON),
which lets a lender keep an offline-verifiable record of what the chain said
at a block:

>>> body = response.json()
>>> signature = body.pop("signature")
>>> canonical = json.dumps(body, sort_keys=True, separators=(",", ":"))
>>> Account.recover_message(encode_defunct(text=canonical), signature=signature) == body["signer"]

The offer board checks a posted offer as far as it can without the borrower
(signature, currency, amounts, expiry, nonce) and lists, for a certificate,
the offers a holder could accept at the latest block.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, cast

from eth_account import Account
from eth_account.messages import encode_defunct, encode_typed_data
from eth_account.signers.local import LocalAccount
from eth_utils import to_checksum_address
from pydantic import SecretStr

from amphora import eip712
from amphora.lots import split_token_id
from api.chain import LENDING, STABLECOIN, BlockRef, ChainService, contract_label, node_errors
from api.errors import InvalidRequest, NotDeployed, NotFound, OfferUnusable, ServiceUnavailable, UpstreamUnavailable
from api.offers import OfferBook, StoredOffer
from api.schemas import (
    LOAN_STATE_BY_NUMBER,
    AppraisalView,
    CollateralCertificate,
    CollateralCustody,
    CollateralSnapshot,
    CreditRecordView,
    LoanOfferIn,
    LoanOfferOut,
    LoanState,
    LoanView,
    OfferList,
    OfferPost,
    PostedOffer,
    state_name,
)

BPS = 10_000
#: ``WineCertificate`` state number of a redeemed certificate (burned, still on record).
_REDEEMED = 4
#: Bits of a loan id that are the token id (``loan_id = sequence << 96 | token_id``).
_TOKEN_BITS = 96


def _hex(value: bytes) -> str:
    return "0x" + bytes(value).hex()


def _address(value: str) -> str | None:
    return None if int(value, 16) == 0 else to_checksum_address(value)


def _snapshot(chain: ChainService, block: BlockRef, token_id: int, raw: dict[str, Any]) -> CollateralSnapshot:
    loan = raw["loan"]
    loan_view = None
    if int(loan["state"]) != 0:
        loan_view = LoanView(
            loan_id=loan["loan_id"], token_id=loan["token_id"], lot_id=loan["lot_id"],
            state=LOAN_STATE_BY_NUMBER.get(int(loan["state"]), LoanState.unknown),
            lender=loan["lender"], borrower=loan["borrower"], principal=loan["principal"],
            repayment=loan["repayment"], started_at=loan["started_at"], due_at=loan["due_at"],
            grace_period=loan["grace_period"], grace_ends_at=loan["grace_ends_at"],
            seconds_to_due=raw["seconds_to_due"], seconds_to_grace_end=raw["seconds_to_grace_end"])
    flagged = bool(raw["flagged"])
    attested, posted = int(raw["storage_attested_at"]), int(raw["reserve_posted_at"])
    appraisal = raw["appraisal"]
    valued = int(appraisal["value_per_bottle"]) != 0
    credit = raw["borrower_credit"]
    return CollateralSnapshot(
        chain_id=chain.chain_id,
        lending_contract=chain.lending_contract().address,
        block_number=block.number, block_hash=_hex(block.hash), block_timestamp=block.timestamp,
        token_id=token_id, lot_id=split_token_id(token_id)[0],
        loan=loan_view,
        certificate=CollateralCertificate(
            exists=raw["certificate_exists"], state=state_name(int(raw["certificate_state"])),
            owner=_address(raw["certificate_owner"]), flagged=flagged,
            flag_reason_hash=_hex(raw["flag_reason_hash"]) if flagged else None),
        custody=CollateralCustody(
            custodian=_address(raw["custodian"]), custodian_active=raw["custodian_active"],
            storage_document_hash=_hex(raw["storage_document_hash"]) if attested else None,
            storage_attested_at=attested or None,
            storage_attested_by=_address(raw["storage_attested_by"]) if attested else None,
            reserve_root=_hex(raw["reserve_root"]) if posted else None,
            reserve_posted_at=posted or None),
        appraisal=AppraisalView(**appraisal) if valued else None,
        ltv_bps=raw["ltv_bps"] if valued and loan_view is not None else None,
        borrower_credit=CreditRecordView(**credit) if loan_view is not None else None,
    )


def _issued(raw: dict[str, Any]) -> bool:
    return bool(raw["certificate_exists"]) or int(raw["certificate_state"]) == _REDEEMED or (
        int(raw["custodian"], 16) != 0)


def collateral_snapshot(chain: ChainService, token_id: int) -> CollateralSnapshot:
    """The lender's view of certificate ``token_id``; :class:`NotFound` if it was never issued."""
    block, raw = chain.collateral(token_id)
    if not _issued(raw) and int(raw["loan"]["state"]) == 0:
        raise NotFound(f"certificate {token_id} was never issued")
    return _snapshot(chain, block, token_id, raw)


def loan_snapshot(chain: ChainService, loan_id: int) -> CollateralSnapshot:
    """The lender's view of the certificate of loan ``loan_id``; :class:`NotFound`
    unless it is that certificate's latest loan."""
    token_id = loan_id & ((1 << _TOKEN_BITS) - 1)
    sequence = loan_id >> _TOKEN_BITS
    block, raw = chain.collateral(token_id)
    latest = int(raw["loan"]["loan_id"])
    if sequence == 0 or latest >> _TOKEN_BITS < sequence or int(raw["loan"]["state"]) == 0:
        raise NotFound(f"loan {loan_id} never existed")
    if latest != loan_id:
        raise NotFound(f"loan {loan_id} is closed and certificate {token_id} has had a newer loan since "
                       f"({latest}); its terms remain in the `LoanStarted` event")
    return _snapshot(chain, block, token_id, raw)


def canonical_json(body: dict[str, Any]) -> str:
    """What a snapshot's signature covers: ``body`` (the JSON response without
    ``signature``) with keys sorted at every level and no whitespace."""
    return json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=True)


class SnapshotSigner:
    """The key that signs lender snapshots (``AMPHORA_SNAPSHOT_SIGNING_KEY``).

    Not the relayer's gas key: a snapshot signature is a statement the service
    makes to lenders, and the key that makes it should hold no funds and be
    rotatable without touching the relayer's nonces and balance. A key that is
    also a relayer key is refused."""

    def __init__(self, key: SecretStr | None, relayer_addresses: Sequence[str] = ()) -> None:
        self._account: LocalAccount | None = None
        self.problem: str | None = None
        if key is None or not key.get_secret_value().strip():
            self.problem = "signed snapshots are not configured: set AMPHORA_SNAPSHOT_SIGNING_KEY"
            return
        try:
            account = Account.from_key(key.get_secret_value().strip())
        except Exception:  # the message could quote the key: never pass it on
            self.problem = "AMPHORA_SNAPSHOT_SIGNING_KEY is not a valid private key"
            return
        if account.address in relayer_addresses:
            self.problem = ("AMPHORA_SNAPSHOT_SIGNING_KEY is a relayer key: snapshots must be signed by a key of "
                            "their own, not the gas key")
            return
        self._account = account

    @property
    def address(self) -> str | None:
        return self._account.address if self._account else None

    def _require(self) -> LocalAccount:
        if self._account is None:
            raise ServiceUnavailable(self.problem or "signed snapshots are not configured")
        return self._account

    def sign(self, snapshot: CollateralSnapshot) -> CollateralSnapshot:
        """``snapshot`` with ``signer`` and an EIP-191 ``signature`` of its canonical
        JSON (:class:`~api.errors.ServiceUnavailable` without a valid key)."""
        account = self._require()
        signer = snapshot.model_copy(update={"signer": account.address, "signature": None})
        body = signer.model_dump(mode="json", exclude={"signature"})
        signature = account.sign_message(encode_defunct(text=canonical_json(body))).signature
        return signer.model_copy(update={"signature": _hex(bytes(signature))})


def recover_snapshot_signer(body: dict[str, Any]) -> str:
    """Who signed the snapshot ``body`` (a signed response's JSON): compare it with ``body["signer"]``
    and with the service's published address."""
    unsigned = {key: value for key, value in body.items() if key != "signature"}
    return str(Account.recover_message(encode_defunct(text=canonical_json(unsigned)), signature=body["signature"]))


# ------------------------------------------------------------------ offers


def lending_typed_data(chain: ChainService, primary_type: str, message: dict[str, Any]) -> dict[str, Any]:
    """The ``eth_signTypedData_v4`` payload of ``message`` in PledgeLending's own domain."""
    domain = chain.eip712_domain(LENDING)
    return eip712.typed_data(primary_type, message, domain.chain_id, domain.verifying_contract,
                             name=domain.name, version=domain.version)


def offer_hash(chain: ChainService, offer: LoanOfferIn) -> bytes:
    """The offer's EIP-712 digest, as ``PledgeLending.offer_hash`` computes it."""
    return eip712.digest(lending_typed_data(chain, "LoanOffer", offer.message()))


def stablecoin_address(chain: ChainService) -> str:
    token = chain.contract(STABLECOIN)
    if token is None:
        raise NotDeployed(f"the deploy manifest for chain {chain.chain_id} records no {STABLECOIN}")
    return str(token.address)


def post_offer(chain: ChainService, book: OfferBook, post: OfferPost, max_open: int | None = None) -> PostedOffer:
    """Check a signed offer and put it on the board: :class:`InvalidRequest` for
    one the contract would never accept (signature, currency, amounts,
    collateral), :class:`OfferUnusable` for one it would not accept now
    (expired, nonce used or cancelled, the lender's stablecoin balance or
    allowance below the principal), :class:`Conflict` when the lender already
    has ``max_open`` open offers on the board."""
    offer = post.offer
    lending = chain.lending_contract("nonce_used")
    digest = offer_hash(chain, offer)
    data = encode_typed_data(full_message=lending_typed_data(chain, "LoanOffer", offer.message()))
    try:
        signer: str | None = str(Account.recover_message(data, signature=post.signature))
    except Exception:  # not a 65-byte ECDSA signature: perhaps a contract wallet's
        signer = None
    if signer != offer.lender and not chain.erc1271_valid(offer.lender, digest, post.signature):
        recovered = f"recovers {signer}" if signer else "is not an ECDSA signature"
        raise InvalidRequest(f"signature: {recovered}, not the lender {offer.lender}'s, and the lender accepts "
                             "it by no ERC-1271 isValidSignature")
    currency = stablecoin_address(chain)
    if offer.currency != currency:
        raise InvalidRequest(f"offer.currency: loans are made in the stablecoin {currency}")
    problems = []
    if offer.principal == 0 or offer.repayment < offer.principal or offer.repayment >= 2**128:
        problems.append("offer.repayment: must be at least a non-zero principal (and below 2**128)")
    if offer.duration == 0 or offer.duration >= 2**40 or offer.grace_period >= 2**32:
        problems.append("offer.duration, offer.grace_period: out of range")
    if offer.token_id != 0 and offer.token_id >> 32 != offer.lot_id:
        problems.append("offer.token_id: not a certificate of offer.lot_id (0 for any of the lot)")
    if problems:
        raise InvalidRequest("; ".join(problems))
    block = chain.latest_block_ref()
    if offer.expiry <= block.timestamp:
        raise OfferUnusable(f"the offer expired at {offer.expiry} (latest block {block.number} is at "
                            f"{block.timestamp})")
    fields = offer.model_dump()
    checks = lender_checks(chain, [fields], block.number)
    if checks.nonce_used[(offer.lender, offer.nonce)]:
        raise OfferUnusable(f"nonce {offer.nonce} of {offer.lender} is used or cancelled at {lending.address}")
    balance, allowance = checks.funds[offer.lender]
    if balance < offer.principal:
        raise OfferUnusable(f"the lender {offer.lender} holds {balance} units of the stablecoin, less than the "
                            f"principal {offer.principal}")
    if allowance < offer.principal:
        raise OfferUnusable(f"the lender {offer.lender} has approved {allowance} units of the stablecoin to the "
                            f"lending contract {lending.address}, less than the principal {offer.principal}")
    book.delete_expired(block.timestamp)
    stored = book.add(_hex(digest), fields, _hex(post.signature), max_open=max_open,
                      not_expired_at=block.timestamp)
    return _posted(stored)


@dataclass(frozen=True)
class LenderChecks:
    """What the chain says, at one block, about the offers of one page."""

    #: lender => (stablecoin balance, allowance to the lending contract)
    funds: dict[str, tuple[int, int]]
    #: (lender, nonce) => used or cancelled
    nonce_used: dict[tuple[str, int], bool]

    def funded(self, offer: dict[str, Any]) -> bool:
        """Whether the lender holds and has approved the offer's principal."""
        balance, allowance = self.funds[offer["lender"]]
        return balance >= offer["principal"] and allowance >= offer["principal"]


def lender_checks(chain: ChainService, offers: Sequence[dict[str, Any]], block_number: int) -> LenderChecks:
    """The stablecoin balance and allowance of each lender of ``offers`` and
    whether each offer's nonce is used, at ``block_number``: **one** JSON-RPC
    batch of ``eth_call`` for the whole page, whatever its size."""
    token = chain.require_contract(STABLECOIN)
    lending = chain.lending_contract("nonce_used")
    lenders = sorted({offer["lender"] for offer in offers})
    nonces = sorted({(offer["lender"], int(offer["nonce"])) for offer in offers})
    calls: list[tuple[str, str]] = []
    for lender in lenders:
        calls.append((token.address, token.encode_abi("balanceOf", [lender])))
        calls.append((token.address, token.encode_abi("allowance", [lender, lending.address])))
    for lender, nonce in nonces:
        calls.append((lending.address, lending.encode_abi("nonce_used", [lender, nonce])))
    if not calls:
        return LenderChecks({}, {})
    block = hex(block_number)
    with node_errors(contract_label(LENDING)):
        provider = cast(Any, chain.w3.provider)  # an HTTPProvider, which batches
        answers = provider.make_batch_request([("eth_call", [{"to": to, "data": data}, block]) for to, data in calls])
    if not isinstance(answers, list) or len(answers) != len(calls):
        raise UpstreamUnavailable("the blockchain node did not answer the batch of balance and nonce reads")
    words = []
    for answer in answers:
        if not isinstance(answer, dict) or "result" not in answer or answer.get("error"):
            error = answer.get("error") if isinstance(answer, dict) else answer
            raise UpstreamUnavailable(f"the blockchain node refused a balance or nonce read: {error}")
        words.append(int(str(answer["result"])[2:66] or "0", 16))
    funds = {lender: (words[2 * i], words[2 * i + 1]) for i, lender in enumerate(lenders)}
    used = {key: bool(words[2 * len(lenders) + i]) for i, key in enumerate(nonces)}
    return LenderChecks(funds, used)


def _posted(stored: StoredOffer) -> PostedOffer:
    return PostedOffer(offer=LoanOfferOut(**stored.offer), signature=stored.signature,
                       offer_hash=stored.offer_hash, posted_at=int(stored.posted_at))


def _cost_key(stored: StoredOffer) -> tuple[float, int, float]:
    offer = stored.offer
    return offer["repayment"] / offer["principal"], -offer["principal"], stored.posted_at


def matching_offers(chain: ChainService, book: OfferBook, token_id: int, *, offset: int = 0,
                    limit: int = 20) -> OfferList:
    """One page of the board's offers that certificate ``token_id`` could be
    pledged for at the latest block: for it or for any of its lot, not expired,
    within the offer's loan-to-value limit against a fresh appraisal, and, for
    the page's offers only (one batch of node calls), the nonce unused and the
    lender holding and having approved the principal. :class:`NotFound` for a
    certificate never issued."""
    block, raw = chain.collateral(token_id)
    if not _issued(raw):
        raise NotFound(f"certificate {token_id} was never issued")
    lot_id = token_id >> 32
    appraisal = raw["appraisal"]
    value, stale = int(appraisal["value_per_bottle"]), bool(appraisal["stale"])
    book.delete_expired(block.timestamp + 1)
    # The offer is accepted in a later block than this one: expiry must still hold then.
    candidates = book.for_certificate(lot_id, token_id, block.timestamp + 1)
    holder = _address(raw["certificate_owner"])
    acceptable = []
    for stored in candidates:  # what the board and the snapshot tell, without the node
        offer = stored.offer
        if offer["lender"] == holder:  # "lending: borrower is the lender"
            continue
        if offer["max_ltv_bps"] and (value == 0 or stale or offer["principal"] * BPS > offer["max_ltv_bps"] * value):
            continue
        acceptable.append(stored)
    acceptable.sort(key=_cost_key)
    page = acceptable[offset:offset + limit]
    checks = lender_checks(chain, [stored.offer for stored in page], block.number)
    usable = [stored for stored in page
              if not checks.nonce_used[(stored.offer["lender"], stored.offer["nonce"])] and checks.funded(stored.offer)]
    more = offset + limit < len(acceptable)
    return OfferList(token_id=token_id, lot_id=lot_id, block_number=block.number,
                     certificate_state=state_name(int(raw["certificate_state"])),
                     offers=[_posted(stored) for stored in usable], offset=offset, limit=limit,
                     next_offset=offset + limit if more else None)
