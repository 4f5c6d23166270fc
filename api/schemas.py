"""Request and response models: what the OpenAPI document describes.

Numbers that can exceed 2**53 (token ids, lot ids, nonces, deadlines, wei and
token amounts) travel as decimal strings in responses, because JavaScript parses
larger JSON numbers inexactly. Requests accept them either as JSON integers or
as decimal strings. Addresses are returned checksummed (EIP-55); requests may
send them in lower case, upper case or correct checksum case, and a mixed-case
address with a wrong checksum is refused as a likely typo.
"""

from __future__ import annotations

import re
from enum import StrEnum
from typing import Annotated, Any, Literal

from eth_utils import to_checksum_address
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    PlainSerializer,
    PlainValidator,
    WithJsonSchema,
)
from pydantic.json_schema import SkipJsonSchema

from amphora import eip712

UINT256_LIMIT = 2**256
ADDRESS_PATTERN = r"^0x[0-9a-fA-F]{40}$"
BYTES32_PATTERN = r"^0x[0-9a-fA-F]{64}$"
DECIMAL_PATTERN = r"^[0-9]{1,78}$"
#: ``WineCertificate.MAX_PROOF_DEPTH``.
MAX_PROOF_DEPTH = 32
#: ``transfer_with_signature`` takes ``Bytes[65]``.
MAX_SIGNATURE_BYTES = 65
#: An ECDSA signature ``r || s || v``, as EIP-3009's ``v, r, s`` arguments need it.
ECDSA_SIGNATURE_BYTES = 65

_EXAMPLE_ADDRESS = "0x90F79bf6EB2c4f870365E785982E1f101E93b906"
_EXAMPLE_TOKEN_ID = "4294967298"


def checksum_address(value: str) -> str:
    """``value`` in EIP-55 case; ValueError for a mixed-case address with a wrong checksum."""
    body = value[2:]
    checksummed = to_checksum_address(value)
    if body not in (body.lower(), body.upper()) and value != checksummed:
        raise ValueError("address checksum does not match (mixed case must be valid EIP-55)")
    return checksummed


#: A 20-byte address, returned in EIP-55 checksum case.
Address = Annotated[
    str,
    Field(pattern=ADDRESS_PATTERN, examples=[_EXAMPLE_ADDRESS]),
    AfterValidator(checksum_address),
]

#: A 32-byte value as 0x-prefixed hex.
Bytes32Hex = Annotated[str, Field(pattern=BYTES32_PATTERN, examples=["0x" + "ab" * 32])]


def _uint256(value: Any) -> int:
    if isinstance(value, bool):
        raise ValueError("must be a non-negative integer or its decimal string, not a boolean")
    if isinstance(value, int):
        number = value
    elif isinstance(value, str) and re.fullmatch(DECIMAL_PATTERN, value):
        number = int(value)
    else:
        raise ValueError("must be a non-negative integer or its decimal string")
    if not 0 <= number < UINT256_LIMIT:
        raise ValueError("must be between 0 and 2**256 - 1")
    return number


#: A uint256 in a request: a JSON integer or a decimal string.
Uint256In = Annotated[
    int,
    PlainValidator(_uint256),
    WithJsonSchema(
        {
            "anyOf": [
                {"type": "integer", "minimum": 0},
                {"type": "string", "pattern": DECIMAL_PATTERN},
            ],
            "examples": [_EXAMPLE_TOKEN_ID],
        },
        mode="validation",
    ),
]

#: A uint256 in a response: always a decimal string.
Uint256Out = Annotated[
    int,
    PlainSerializer(str, return_type=str, when_used="always"),
    WithJsonSchema({"type": "string", "pattern": r"^[0-9]+$", "examples": [_EXAMPLE_TOKEN_ID]},
                   mode="serialization"),
]


#: A signed integer in a response (a net position, a movement): always a decimal string.
Int256Out = Annotated[
    int,
    PlainSerializer(str, return_type=str, when_used="always"),
    WithJsonSchema({"type": "string", "pattern": r"^-?[0-9]+$", "examples": ["-12000000"]},
                   mode="serialization"),
]


def _signature(value: Any) -> bytes:
    if not isinstance(value, str) or not re.fullmatch(r"0x([0-9a-fA-F]{2})+", value):
        raise ValueError("must be 0x-prefixed hex with whole bytes")
    raw = bytes.fromhex(value[2:])
    if len(raw) > MAX_SIGNATURE_BYTES:
        raise ValueError(f"is {len(raw)} bytes; at most {MAX_SIGNATURE_BYTES}")
    return raw


#: A signature as 0x hex: 65 bytes r || s || v for an EOA, up to 65 bytes for an ERC-1271 wallet.
SignatureHex = Annotated[
    bytes,
    PlainValidator(_signature),
    WithJsonSchema({"type": "string", "pattern": r"^0x([0-9a-fA-F]{2}){1,65}$"}, mode="validation"),
]


def _ecdsa_signature(value: Any) -> bytes:
    raw = _signature(value)
    if len(raw) != ECDSA_SIGNATURE_BYTES:
        raise ValueError(f"is {len(raw)} bytes; must be {ECDSA_SIGNATURE_BYTES} (r || s || v)")
    return raw


#: An ECDSA signature as 0x hex: exactly 65 bytes ``r || s || v`` (v 27 or 28; 0 or 1 is accepted too).
EcdsaSignatureHex = Annotated[
    bytes,
    PlainValidator(_ecdsa_signature),
    WithJsonSchema({"type": "string", "pattern": r"^0x[0-9a-fA-F]{130}$"}, mode="validation"),
]


def parse_proof(text: str) -> list[bytes]:
    """A comma-separated list of 0x bytes32 values; the empty string is the empty proof."""
    items = [item.strip() for item in text.split(",")] if text.strip() else []
    if len(items) > MAX_PROOF_DEPTH:
        raise ValueError(f"proof has {len(items)} elements; at most {MAX_PROOF_DEPTH}")
    for position, item in enumerate(items, start=1):
        if not re.fullmatch(BYTES32_PATTERN, item):
            raise ValueError(f"proof element {position} is not a 0x-prefixed 32-byte hex value")
    return [bytes.fromhex(item[2:]) for item in items]


class ErrorBody(BaseModel):
    """Every error the API returns has this body."""

    error: str = Field(description="Machine-readable error code, e.g. `not_found`.", examples=["not_found"])
    detail: str = Field(description="What went wrong, for a human.",
                        examples=["certificate 4294967306 was never issued"])


# ------------------------------------------------------------------ health


class RelayerKeyHealth(BaseModel):
    address: Address
    balance_wei: Uint256Out
    low_balance: bool
    fault: str | None = Field(default=None, description="Set when the node refuses this key's transactions for "
                              "good (no funds for gas): the node's reason. The key's new relays are refused (503) "
                              "until a transaction of it gets in again; its stuck nonce is then sent, or "
                              "cancelled if its call would revert by then.")


class RelayerHealth(BaseModel):
    address: Address | None = Field(description="The relayer's address; null if its key is invalid.")
    balance_wei: Uint256Out | None = Field(description="The relayer's ETH balance in wei (decimal string).")
    error: str | None = Field(default=None, description="Why the relayer cannot send, if it cannot.")
    keys: list[RelayerKeyHealth] = Field(default_factory=list, description="Every key of the relayer's pool.")
    low_balance: bool = Field(default=False, description="True when a key is below `min_balance_wei`: that key "
                              "refuses new relays (503) until it is funded, and an ALERT is logged.")
    min_balance_wei: Uint256Out | None = Field(default=None, description="The minimum balance of a key.")
    requests: dict[str, int] = Field(default_factory=dict, description="Outbox requests by status.")
    database: str | None = Field(default=None, description="`sqlite` or `postgresql`.")


class IndexHealth(BaseModel):
    """How far the index (the chain follower's tables) goes."""

    state: Literal["following", "behind", "stopped", "empty"] = Field(
        description="`following`: at the head; `behind`: catching up (`lag` blocks); `stopped`: the follower "
        "has not written for a minute (dead, or no node); `empty`: nothing indexed yet.")
    indexed_block: int | None = Field(description="The last block in the index.")
    head_block: int | None = Field(description="The node's head when the follower last looked.")
    lag: int | None = Field(description="`head_block - indexed_block`.")
    final_block: int | None = Field(description="Rows from blocks up to this one are final (beyond the reorg "
                                    "window); newer ones may still be rolled back by a reorg.")
    holder: str | None = Field(default=None, description="The instance that indexes (it holds the lease).")
    error: str | None = Field(default=None, description="Why this instance's follower is not following, if it "
                              "runs one and it is not.")


class PublicHealth(BaseModel):
    """What anyone may know: whether the service works."""

    model_config = ConfigDict(extra="forbid")
    status: Literal["ok", "degraded"] = Field(
        description="`degraded`: the API answers but the relayer cannot relay (invalid key, or a key below its "
        "minimum balance), or the index is stopped or more than `AMPHORA_INDEX_MAX_LAG_BLOCKS` behind.")


class Health(BaseModel):
    """The operator's view (`Authorization: Bearer <AMPHORA_ADMIN_TOKEN>`)."""

    status: Literal["ok", "degraded"] = Field(default="ok", description="`degraded` while a relayer key is below "
                                              "its minimum balance or cannot pay for gas (see `relayer.keys`), or "
                                              "the relayer key is invalid: reads work, relays through that key "
                                              "answer 503.")
    node_reachable: bool = Field(description="Always true in a 200 answer; 503 when the node is down.")
    chain_id: int
    latest_block: int
    certificate_address: Address = Field(description="The WineCertificate contract the API reads.")
    relayer: RelayerHealth | None = Field(description="Null when no relayer key is configured.")
    index: IndexHealth | None = Field(default=None, description="The index the history, holdings, lots and "
                                      "loans endpoints read.")


# ------------------------------------------------------------ certificates


class CertificateState(StrEnum):
    """The lifecycle state of a certificate, by name."""

    active = "active"
    gift_pending = "gift_pending"
    pledged = "pledged"
    redemption_requested = "redemption_requested"
    redeemed = "redeemed"
    flagged = "flagged"
    unknown = "unknown"


#: Contract state number => name; the order of the contract's state constants.
STATE_BY_NUMBER: tuple[CertificateState, ...] = (
    CertificateState.active,
    CertificateState.gift_pending,
    CertificateState.pledged,
    CertificateState.redemption_requested,
    CertificateState.redeemed,
    CertificateState.flagged,
)


def state_name(number: int) -> CertificateState:
    return STATE_BY_NUMBER[number] if 0 <= number < len(STATE_BY_NUMBER) else CertificateState.unknown


class Party(BaseModel):
    address: Address
    name: str = Field(description="The name the admin registered for this account.")
    active: bool = Field(description="Whether the account still holds its role (issuer or custodian).")


class LotView(BaseModel):
    lot_id: Uint256Out
    bottle_count: int
    vintage: int = Field(description="Harvest year; 0 for a non-vintage wine.")
    volume_ml: int
    bottling_date: int = Field(description="Unix time of bottling.")
    bottling_date_iso: str = Field(description="Bottling date as ISO 8601 (UTC).")
    issued_at: int = Field(description="Unix time the lot was issued on chain.")
    issued_at_iso: str
    metadata_hash: Bytes32Hex = Field(description="keccak256 of the lot's metadata document.")
    tag_root: Bytes32Hex = Field(description="Merkle root of the bottles' tag commitments.")
    producer: str | None = Field(description="From the `LotIssued` event; null if the node has no such log.")
    wine: str | None
    region: str | None
    metadata_uri: str | None


class TagCheck(BaseModel):
    tag: Address
    valid: bool = Field(description="Whether `tag` with the given proof is this bottle's tag commitment.")


class FlagView(BaseModel):
    reason_hash: Bytes32Hex = Field(description="keccak256 of the loss or theft report.")
    by_issuer: bool = Field(description="True if the lot's issuer raised the flag, false if the holder did.")


class GiftView(BaseModel):
    claim_key: Address = Field(description="The address of the one-time claim key the gift is locked to.")
    expiry: int = Field(description="Unix time after which the gift can no longer be claimed.")
    expired: bool = Field(description="Whether `expiry` has passed (anyone may then revoke the gift).")


class RedemptionView(BaseModel):
    order_hash: Bytes32Hex = Field(description="keccak256 of the delivery order the holder gave the custodian.")
    redeemed_at: int | None = Field(description="Unix time the custodian shipped the bottle; null while the "
                                    "request is pending.")
    redeemed_by: Address | None = Field(description="The custodian that shipped it; null while pending.")


class CustodyView(BaseModel):
    """Where the bottle is kept and what its custodian last attested
    (`CustodyRegistry.custody`)."""

    storage_document_hash: Bytes32Hex | None = Field(description="The lot's latest storage attestation "
                                                     "(conditions, inspection); null if none was posted.")
    storage_attested_at: int | None
    storage_attested_by: Address | None = Field(description="The custodian that posted it (an earlier one "
                                                "after a custody move).")
    storage_document_uri: str | None = Field(description="Where the attested document is, from the "
                                             "`StorageAttested` event; null if the node has no such log.")
    reserve_root: Bytes32Hex | None = Field(description="The custodian's latest proof-of-reserve Merkle root "
                                            "of the token ids it holds; null if none was posted.")
    reserve_posted_at: int | None
    reserve_bottle_count: int | None


class HistoryEntry(BaseModel):
    """One event in the certificate's life, oldest first (from the index)."""

    event: str = Field(description="The contract event: the bottle's own (`Transfer`, `GiftCreated`, "
                       "`GiftClaimed`, `GiftRevoked`, `RedemptionRequested`, `RedemptionRejected`, "
                       "`CertificateRedeemed`, `CertificateFlagged`, `FlagCleared`, `CertificatePledged`, "
                       "`CertificateReleased`, `Approval`, the loans it secures) or its lot's (`LotIssued`, "
                       "`ConsecutiveTransfer`, `CustodyMoved`, `StorageAttested`, `SuccessorIssuerNamed`, "
                       "`AppraisalPosted`, the custodian's `ReserveRootPosted`).",
                       examples=["GiftClaimed"])
    block_number: int
    tx_hash: Bytes32Hex
    args: dict[str, str] = Field(description="The event's arguments, as strings (addresses checksummed, "
                                 "bytes as 0x hex, numbers as decimal, booleans as true/false).")
    block_time: int | None = Field(default=None, description="Unix time of the block.")
    block_time_iso: str | None = Field(default=None, description="The block's time as ISO 8601 (UTC).")
    summary: str = Field(default="", description="The event in one plain English sentence.",
                         examples=["Gift created for claim until 2026-12-31"])


class ScanView(BaseModel):
    """How many different people have opened this certificate's verification
    page, and what looks wrong. A genuine bottle is checked by a few people in
    its life; a code copied onto many bottles, by many. Only page views by
    browsers count: API reads, link-preview bots and a client's repeated views
    do not."""

    total: int = Field(description="Page views recorded in the retention period (a client's repeated views "
                       "within the window once).")
    recent: int = Field(description="Distinct clients within the last `window_seconds` (at most a few per "
                        "network).")
    day: int = Field(default=0, description="Distinct clients within the last 24 hours.")
    window_seconds: int
    anomalies: list[str] = Field(description="`burst`: more distinct clients in the window (or the day) than "
                                 "the configured threshold; `redeemed`: the bottle was already shipped, so this "
                                 "code may be on a refill; `flagged`: reported lost or stolen.")


class CertificateView(BaseModel):
    """Everything a verifier needs about one bottle's certificate."""

    exists: bool = Field(description="False once the certificate is redeemed (the record stays).")
    token_id: Uint256Out
    lot_id: Uint256Out
    serial: int = Field(description="The bottle's number within its lot, from 1.")
    owner: Address | None = Field(description="Current holder; null once redeemed.")
    state: CertificateState
    locked: bool = Field(description="ERC-5192: true when the certificate cannot be transferred now.")
    issuer: Party
    custodian: Party
    lot: LotView
    flag: FlagView | None = Field(default=None, description="Present while the certificate is flagged.")
    gift: GiftView | None = Field(default=None, description="Present while a gift is pending.")
    redemption: RedemptionView | None = Field(default=None, description="Present once redemption was "
                                              "requested (pending) or done (redeemed).")
    custody: CustodyView | None = Field(default=None, description="Null when the deployment has no "
                                        "CustodyRegistry.")
    history: list[HistoryEntry] = Field(default_factory=list, description="The certificate's events from the "
                                        "index, oldest first, at most 100 (all of them at "
                                        "`GET /certificates/{token_id}/history`).")
    history_complete: bool = Field(default=True, description="False when `history` may miss events: the index "
                                   "had not reached `block_number` in time, or there are more than 100.")
    block_number: int | None = Field(default=None, description="The block the certificate was read at.")
    indexed_block: int | None = Field(default=None, description="How far the index went when `history` and the "
                                      "lot's text were read from it.")
    head_block: int | None = Field(default=None, description="The node's head when the indexer last looked.")
    lag: int | None = Field(default=None, description="`head_block - indexed_block`.")
    scans: ScanView | None = Field(default=None, description="Verification scans of this certificate.")
    verification_url: str = Field(description="The consumer page for this bottle (the QR code target).")
    tag_check: TagCheck | None = Field(default=None, description="Present when `tag` was given.")


class TagChallenge(BaseModel):
    """A fresh challenge for a bottle's tag: sign `typed_data` with the tag's key
    and send the signature to `GET /certificates/{token_id}/verify-tag`."""

    token_id: Uint256Out
    block_number: int = Field(description="The recent block the challenge is bound to.")
    block_hash: Bytes32Hex
    valid_until_block: int = Field(description="The last block at which an answer still verifies "
                                   "(`block_number + TAG_CHALLENGE_WINDOW`).")
    typed_data: dict[str, Any] = Field(description="The EIP-712 `TagChallenge` payload for "
                                       "`eth_signTypedData_v4`, in the certificate contract's domain.")


class TagVerification(BaseModel):
    token_id: Uint256Out
    block_number: int
    tag: Address | None = Field(description="The address the signature recovers to; null if it recovers to "
                                "none.")
    valid: bool = Field(description="True if the tag that signed the challenge is this bottle's tag "
                        "commitment and the challenge is still fresh: a genuine tag answers, a copied QR code "
                        "cannot.")
    reason: str | None = Field(description="Why not, when `valid` is false.")
    scans: ScanView | None = None


# ---------------------------------------------------------------- accounts


class TokenBalance(BaseModel):
    """An ERC-20 balance, with what a client needs to display it."""

    address: Address = Field(description="The token contract.")
    symbol: str = Field(description="The token's symbol, as the contract reports it.", examples=["PTS"])
    decimals: int = Field(description="The token's decimals, as the contract reports it: `balance` / "
                          "10**decimals is the amount in whole tokens.", examples=[18])
    balance: Uint256Out = Field(description="The balance in the token's smallest unit (decimal string).")


class CertificateHoldings(BaseModel):
    address: Address = Field(description="The WineCertificate contract.")
    symbol: str = Field(description="The certificate collection's symbol.", examples=["WINE"])
    count: Uint256Out = Field(description="How many certificates the account holds (`balanceOf`), "
                              "including any that are pledged or flagged.")


class AccountBalances(BaseModel):
    """What one account holds, all read at the same block."""

    address: Address
    block_number: int = Field(description="The block every balance was read at.")
    eth_wei: Uint256Out = Field(description="ETH balance in wei (decimal string).")
    certificates: CertificateHoldings
    # Never null: absent (the route excludes None) when the manifest lacks the contract.
    stablecoin: TokenBalance | SkipJsonSchema[None] = Field(
        default=None, description="The stablecoin the points are pegged to. Absent when the deploy manifest "
        "records no stablecoin (a deployment older than the points economy); likewise `points` and `utility`.")
    points: TokenBalance | SkipJsonSchema[None] = Field(default=None, description="Amphora points (PointsToken).")
    utility: TokenBalance | SkipJsonSchema[None] = Field(default=None, description="The brand's utility token "
                                                         "(UtilityToken).")


# ------------------------------------------------------------------ points


class StatementFormat(StrEnum):
    json = "json"
    csv = "csv"


class SettlementLine(BaseModel):
    """One merchant's activity in the range. Points amounts are in the points
    token's smallest unit, stablecoin amounts in the stablecoin's."""

    merchant: Address
    name: str = Field(description="The name the merchant is registered under (at the range's last block).")
    points_issued: Uint256Out
    points_redeemed: Uint256Out
    stablecoin_paid_in: Uint256Out = Field(description="Stablecoin the merchant paid into the reserve "
                                           "when issuing.")
    stablecoin_paid_out: Uint256Out = Field(description="Stablecoin the reserve paid the merchant for "
                                            "points it redeemed.")
    net_position: Int256Out = Field(description="`stablecoin_paid_in - stablecoin_paid_out`; negative "
                                    "when the merchant took more out of the reserve than it put in.")


class SettlementTotals(BaseModel):
    points_issued: Uint256Out
    points_redeemed: Uint256Out
    stablecoin_paid_in: Uint256Out
    stablecoin_paid_out: Uint256Out
    net_position: Int256Out = Field(description="Total paid in minus total paid out.")


class SettlementReserve(BaseModel):
    """The points contract's `reserve()` on chain (stablecoin units)."""

    before: Uint256Out = Field(description="At the block before `from_block` (0 before the contract existed).")
    after: Uint256Out = Field(description="At `to_block`.")
    movement: Int256Out = Field(description="`after - before`.")


class SettlementStatement(BaseModel):
    """The points clearing statement of a block range, from the chain's
    `PointsIssued` and `PointsRedeemed` events."""

    points: Address = Field(description="The PointsToken contract.")
    from_block: int = Field(description="First block of the range.")
    to_block: int = Field(description="Last block of the range (inclusive).")
    merchants: list[SettlementLine] = Field(description="Every merchant with activity in the range, by address.")
    totals: SettlementTotals
    reserve: SettlementReserve
    reconciled: bool = Field(description="Whether the statement matches the reserve's movement on chain: "
                             "total paid in minus total paid out, and the sum of the merchants' net "
                             "positions, both equal `reserve.movement`.")
    discrepancies: list[str] = Field(description="Empty when `reconciled`; otherwise each way the totals "
                                     "differ from the reserve movement on chain, in words.")


# ------------------------------------------------------------------- relay


class TransferRelayRequest(BaseModel):
    """A holder's signed EIP-712 `Transfer`, for the relayer to submit."""

    model_config = ConfigDict(populate_by_name=True, extra="forbid")

    sender: Address = Field(alias="from", description="The holder who signed; stays the on-chain actor.")
    to: Address
    token_id: Uint256In = Field(description="Integer or decimal string.")
    nonce: Uint256In = Field(description="The holder's current `nonces(from)`; integer or decimal string.")
    deadline: Uint256In = Field(description="Unix time after which the signature is void.")
    signature: SignatureHex = Field(description="The EIP-712 signature as 0x hex (65 bytes for an EOA).")


class RelayStatus(StrEnum):
    queued = "queued"
    sent = "sent"
    mined = "mined"
    confirmed = "confirmed"
    failed = "failed"


_STATUS_DOC = (
    "`queued`: stored, signed and holding its relayer nonce, not yet taken by the node (the worker keeps "
    "sending it); `sent`: in the node's pool; `mined`: in a block, waiting for its confirmations; "
    "`confirmed`: succeeded with `relay_confirmations` blocks on top (final); `failed`: reverted on chain or "
    "refused for good (final; `error` says why). A reorganised block sends a `mined` request back to `sent`."
)


class RelayAccepted(BaseModel):
    request_id: str = Field(description="The outbox's id of this request; `GET /relay/{request_id}` follows it.")
    status: RelayStatus = Field(description=_STATUS_DOC)
    tx_hash: Bytes32Hex | None = Field(
        description="Hash of the transaction as signed (a fee bump replaces it; the status shows the latest).")
    relayer: Address = Field(description="The relayer key that sends it.")
    nonce: int | None = Field(description="That key's nonce for this request.")
    status_url: str


class RelayTransaction(BaseModel):
    request_id: str
    kind: str = Field(description="What was relayed: `transfer`, `points-transfer`, `create_gift`, "
                      "`loan-acceptance`, ...")
    description: str
    actor: str = Field(description="The on-chain actor (the holder, payer or borrower).")
    status: RelayStatus = Field(description=_STATUS_DOC)
    tx_hash: Bytes32Hex | None = Field(description="The latest transaction sent for the request (after a fee "
                                       "bump, the replacement), or the one that was mined.")
    relayer: Address
    nonce: int | None
    replacements: int = Field(description="How many times a stuck transaction was replaced with higher fees.")
    block_number: int | None
    block_hash: Bytes32Hex | None
    confirmations: int = Field(description="Blocks from the transaction's block to the latest, inclusive; 0 "
                               "before it is mined.")
    gas_used: int | None
    error: str | None = Field(description="Why it failed, or the node's last refusal while `queued`.")
    created_at: float = Field(description="Unix time the request was stored.")
    updated_at: float


class TypedDataField(BaseModel):
    name: str
    type: str


class TypedDataDomain(BaseModel):
    model_config = ConfigDict(populate_by_name=True)

    name: str
    version: str
    chain_id: int = Field(alias="chainId")
    verifying_contract: Address = Field(alias="verifyingContract")


class TransferMessage(BaseModel):
    model_config = ConfigDict(populate_by_name=True)

    sender: Address = Field(alias="from")
    to: Address
    token_id: Uint256Out = Field(alias="tokenId")
    nonce: Uint256Out
    deadline: Uint256Out


class PointsTransferRelayRequest(BaseModel):
    """A holder's signed EIP-3009 `TransferWithAuthorization` of points, for the
    relayer to submit to the PointsToken's `transferWithAuthorization`."""

    model_config = ConfigDict(populate_by_name=True, extra="forbid")

    sender: Address = Field(alias="from", description="The payer who signed; the `Transfer` event names "
                            "them as sender.")
    to: Address = Field(description="The payee.")
    value: Uint256In = Field(description="Points in the smallest unit (10**-18 point); integer or decimal string.")
    valid_after: Uint256In = Field(description="Unix time; the authorization is valid only strictly after it "
                                   "(0: at once).")
    valid_before: Uint256In = Field(description="Unix time; the authorization is valid only strictly before it.")
    nonce: Bytes32Hex = Field(description="The authorization's unique 32-byte nonce, as signed.")
    signature: EcdsaSignatureHex = Field(description="The EIP-712 signature as 0x hex, 65 bytes `r || s || v`; "
                                         "the relayer splits it into the contract's `v, r, s`.")


class TransferTypedData(BaseModel):
    """An `eth_signTypedData_v4` payload: pass it unchanged to any EIP-712 signer.
    uint256 values are decimal strings, which signers accept."""

    model_config = ConfigDict(populate_by_name=True)

    types: dict[str, list[TypedDataField]]
    primary_type: Literal["Transfer"] = Field(alias="primaryType")
    domain: TypedDataDomain
    message: TransferMessage


class AuthorizationMessage(BaseModel):
    model_config = ConfigDict(populate_by_name=True)

    sender: Address = Field(alias="from")
    to: Address
    value: Uint256Out
    valid_after: Uint256Out = Field(alias="validAfter")
    valid_before: Uint256Out = Field(alias="validBefore")
    nonce: Bytes32Hex = Field(description="The 32-byte nonce: the one given, or an unused one the API picked "
                              "in a bitmap word the payer already uses.")


class PointsTransferTypedData(BaseModel):
    """An `eth_signTypedData_v4` payload for an EIP-3009 points transfer: pass it
    unchanged to any EIP-712 signer. uint256 values are decimal strings, which
    signers accept."""

    model_config = ConfigDict(populate_by_name=True)

    types: dict[str, list[TypedDataField]]
    primary_type: Literal["TransferWithAuthorization"] = Field(alias="primaryType")
    domain: TypedDataDomain
    message: AuthorizationMessage


# ---------------------------------------------------------------- metadata


class MetadataAttribute(BaseModel):
    trait_type: str
    value: str | int
    display_type: str | None = Field(default=None, description="`number` or `date` where it applies.")


class TokenMetadata(BaseModel):
    """The common NFT metadata JSON schema (ERC-721 metadata extension, with the
    widely used `attributes` and `external_url`): what `tokenURI` points at."""

    name: str
    description: str
    external_url: str = Field(description="The bottle's verification page.")
    attributes: list[MetadataAttribute]


# ------------------------------------------------------- lifecycle relay


class HolderActionRelayRequest(BaseModel):
    """A holder's signed lifecycle action, for the relayer to submit. `nonce` is
    the holder's current `nonces(holder)`: the same sequence as signed transfers."""

    model_config = ConfigDict(populate_by_name=True, extra="forbid")

    holder: Address = Field(description="The holder who signed; stays the on-chain actor.")
    token_id: Uint256In = Field(description="Integer or decimal string.")
    nonce: Uint256In = Field(description="The holder's current `nonces(holder)`.")
    deadline: Uint256In = Field(description="Unix time after which the signature is void.")
    signature: SignatureHex = Field(description="The EIP-712 signature as 0x hex (65 bytes for an EOA).")


class GiftRelayRequest(HolderActionRelayRequest):
    """A signed `CreateGift`: lock the certificate to a one-time claim key."""

    claim_key: Address = Field(description="The address of a fresh random key whose secret goes to the "
                               "recipient (claim link or QR code). Never send the secret itself here.")
    expiry: Uint256In = Field(description="Unix time after which the gift can no longer be claimed.")


class RedemptionRelayRequest(HolderActionRelayRequest):
    """A signed `RequestRedemption`: ask the custodian for the bottle."""

    order_hash: Bytes32Hex = Field(description="keccak256 of the delivery order given to the custodian.")


class FlagRelayRequest(HolderActionRelayRequest):
    """A signed `Flag`: report the certificate lost or stolen."""

    reason_hash: Bytes32Hex = Field(description="keccak256 of the loss or theft report.")


class NonceInvalidationRelayRequest(BaseModel):
    """A holder's signed `InvalidateNonces`: every signature nonce below `new_nonce`
    becomes unusable, so no action signed with one (say, one that reverted and
    could run later once conditions change) ever runs."""

    model_config = ConfigDict(populate_by_name=True, extra="forbid")

    holder: Address = Field(description="The holder who signed; stays the on-chain actor.")
    nonce: Uint256In = Field(description="The holder's current `nonces(holder)`: the invalidation itself is "
                             "signed at it.")
    new_nonce: Uint256In = Field(description="The nonce the holder's next signed action must carry: above "
                                 "`nonce` (`nonce + 1` voids just the signature pending at `nonce`) and at most "
                                 "1,000 above it.")
    deadline: Uint256In = Field(description="Unix time after which the signature is void.")
    signature: SignatureHex = Field(description="The EIP-712 signature as 0x hex (65 bytes for an EOA).")


class GiftClaimRelayRequest(BaseModel):
    """A gift claim signed with the claim key (the recipient holds the secret and
    signs `ClaimGift(tokenId, recipient)` themselves; the relayer only submits)."""

    model_config = ConfigDict(extra="forbid")

    token_id: Uint256In
    recipient: Address = Field(description="Who receives the certificate; covered by the signature, so "
                               "nobody who sees the claim can redirect it.")
    signature: EcdsaSignatureHex = Field(description="The claim key's EIP-712 `ClaimGift` signature, 65 bytes.")


class GiftClaimBySecretRequest(BaseModel):
    """A wallet-less claim: the API signs the claim with the secret from the claim
    link and relays it. Sending the secret trusts this API with the gift until the
    claim is mined (see the endpoint)."""

    model_config = ConfigDict(extra="forbid")

    token_id: Uint256In
    recipient: Address = Field(description="The recipient's account address.")
    claim_secret: Bytes32Hex = Field(description="The claim key's private key, from the claim link.")


class HolderActionTypedData(BaseModel):
    """An `eth_signTypedData_v4` payload for a lifecycle action: pass it unchanged
    to any EIP-712 signer. uint256 values are decimal strings, which signers accept."""

    model_config = ConfigDict(populate_by_name=True)

    types: dict[str, list[TypedDataField]]
    primary_type: Literal["CreateGift", "RevokeGift", "RequestRedemption", "Flag", "ClaimGift",
                          "InvalidateNonces"] = Field(
        alias="primaryType")
    domain: TypedDataDomain
    message: dict[str, str] = Field(description="The message; numbers as decimal strings, bytes as 0x hex.")


# ----------------------------------------------------------------- lending


class LoanState(StrEnum):
    """A loan's state, by name (`PledgeLending.LOAN_*`)."""

    open = "open"
    repaid = "repaid"
    foreclosed = "foreclosed"
    unknown = "unknown"


#: Contract loan state number => name (0, `LOAN_NONE`, is never shown: no loan).
LOAN_STATE_BY_NUMBER: dict[int, LoanState] = {1: LoanState.open, 2: LoanState.repaid, 3: LoanState.foreclosed}


class LoanView(BaseModel):
    """The certificate's latest loan in PledgeLending, with the time left to pay."""

    loan_id: Uint256Out = Field(description="`sequence << 96 | token_id`: a certificate's next loan gets a "
                                "new id.")
    token_id: Uint256Out
    lot_id: Uint256Out
    state: LoanState
    lender: Address
    borrower: Address
    principal: Uint256Out = Field(description="Stablecoin paid to the borrower, in its smallest unit.")
    repayment: Uint256Out = Field(description="Stablecoin that repays the loan in full, whenever it is "
                                  "repaid before the grace period ends.")
    started_at: int = Field(description="Unix time the loan started.")
    due_at: int = Field(description="Unix time the loan is due; repaid after it counts as late.")
    grace_period: int = Field(description="Seconds after `due_at` in which it may still be repaid.")
    grace_ends_at: int = Field(description="`due_at + grace_period`: after it the lender may foreclose.")
    seconds_to_due: int = Field(description="Seconds from the snapshot's block to `due_at`; 0 once passed "
                                "or when the loan is not open.")
    seconds_to_grace_end: int = Field(description="Seconds from the snapshot's block to `grace_ends_at`; 0 "
                                      "once passed or when the loan is not open.")


class CollateralCertificate(BaseModel):
    exists: bool = Field(description="False once redeemed.")
    state: CertificateState = Field(description="The certificate's lifecycle state (`pledged` while a loan "
                                    "is open).")
    owner: Address | None = Field(description="The holder (the borrower while pledged); null once redeemed.")
    flagged: bool = Field(description="Reported lost or stolen.")
    flag_reason_hash: Bytes32Hex | None = Field(description="keccak256 of the report; null unless flagged.")


class CollateralCustody(BaseModel):
    custodian: Address | None = Field(description="Who keeps the bottle; null for a token never issued.")
    custodian_active: bool = Field(description="Whether the custodian still holds its role.")
    storage_document_hash: Bytes32Hex | None = Field(description="The lot's latest storage attestation; null "
                                                     "if none.")
    storage_attested_at: int | None
    storage_attested_by: Address | None
    reserve_root: Bytes32Hex | None = Field(description="The custodian's latest proof-of-reserve root; null "
                                            "if none.")
    reserve_posted_at: int | None


class AppraisalView(BaseModel):
    value_per_bottle: Uint256Out = Field(description="The lot's value per bottle in stablecoin units.")
    appraised_at: int = Field(description="Unix time the value is as of.")
    age: int = Field(description="Seconds from `appraised_at` to the snapshot's block.")
    stale: bool = Field(description="Older than the contract's `max_appraisal_age`: offers with a maximum "
                        "loan-to-value cannot be accepted against it.")


class CreditRecordView(BaseModel):
    """The borrower's record in PledgeLending."""

    loans_taken: int
    repaid_on_time: int
    repaid_late: int = Field(description="Repaid after the due date, within the grace period.")
    defaulted: int = Field(description="Foreclosed.")
    open_loans: int
    principal_borrowed: Uint256Out
    principal_repaid: Uint256Out


class CollateralSnapshot(BaseModel):
    """Everything a lender checks about a pledged (or pledgeable) bottle, read in
    one contract call (`PledgeLending.collateral`) at one block.

    With `?signed=true` the API signs it: `signature` is an EIP-191
    `personal_sign` by `signer` (the service key) of the snapshot's canonical
    JSON: every field except `signature`, keys sorted at every level, no
    whitespace (Python: `json.dumps(body, sort_keys=True, separators=(",", ":"))`).
    Verify offline: `Account.recover_message(encode_defunct(text=canonical),
    signature=signature) == signer`, and that `signer` is the service's published
    address."""

    chain_id: int
    lending_contract: Address = Field(description="The PledgeLending the snapshot was read from.")
    block_number: int = Field(description="The block every field was read at.")
    block_hash: Bytes32Hex
    block_timestamp: int = Field(description="Unix time of that block: the `now` of every `seconds_*` and `age`.")
    token_id: Uint256Out
    lot_id: Uint256Out
    loan: LoanView | None = Field(description="The certificate's latest loan; null if it was never pledged.")
    certificate: CollateralCertificate
    custody: CollateralCustody
    appraisal: AppraisalView | None = Field(description="The lot's latest appraisal; null if none was posted.")
    ltv_bps: Uint256Out | None = Field(description="Loan-to-value: `principal * 10000 / value_per_bottle`; null "
                                       "without a loan or an appraisal.")
    borrower_credit: CreditRecordView | None = Field(description="The borrower's credit record; null without "
                                                     "a loan.")
    signer: Address | None = Field(default=None, description="The service key that signed; null unless "
                                   "`signed=true`.")
    signature: str | None = Field(default=None, pattern=r"^0x[0-9a-f]{130}$",
                                  description="EIP-191 signature (65 bytes, hex) of the canonical JSON; null "
                                  "unless `signed=true`.")


class LoanOfferIn(BaseModel):
    """A lender's `LoanOffer`, as signed (EIP-712, PledgeLending's domain)."""

    model_config = ConfigDict(extra="forbid")

    lender: Address = Field(description="Signs the offer and pays the principal (it approves the lending "
                            "contract to spend it).")
    currency: Address = Field(description="Must be the deployment's stablecoin.")
    lot_id: Uint256In
    token_id: Uint256In = Field(description="One certificate of `lot_id`, or 0 for any certificate of the lot.")
    principal: Uint256In
    repayment: Uint256In = Field(description="The amount that repays the loan; at least `principal`.")
    duration: Uint256In = Field(description="Seconds from acceptance to the due date.")
    grace_period: Uint256In = Field(description="Seconds after the due date before the lender may foreclose.")
    max_ltv_bps: Uint256In = Field(default=0, description="Highest principal / appraised value per bottle, in "
                                   "basis points; 0 for no check.")
    expiry: Uint256In = Field(description="Unix time after which the offer cannot be accepted.")
    nonce: Uint256In = Field(description="The lender's offer nonce (cancel with `cancel_offer(nonce)`).")

    def message(self) -> dict[str, Any]:
        """The EIP-712 `LoanOffer` message."""
        return eip712.loan_offer_message(self.lender, self.currency, self.lot_id, self.token_id, self.principal,
                                         self.repayment, self.duration, self.grace_period, self.max_ltv_bps,
                                         self.expiry, self.nonce)


class LoanOfferOut(BaseModel):
    lender: Address
    currency: Address
    lot_id: Uint256Out
    token_id: Uint256Out
    principal: Uint256Out
    repayment: Uint256Out
    duration: Uint256Out
    grace_period: Uint256Out
    max_ltv_bps: Uint256Out
    expiry: Uint256Out
    nonce: Uint256Out


class OfferPost(BaseModel):
    """A signed offer for the offer board."""

    model_config = ConfigDict(extra="forbid")

    offer: LoanOfferIn
    signature: SignatureHex = Field(description="The lender's EIP-712 signature of `offer`: 65 bytes ECDSA, "
                                    "or what the lender contract's ERC-1271 `isValidSignature` accepts.")


class PostedOffer(BaseModel):
    offer: LoanOfferOut
    signature: str = Field(description="The lender's signature, 0x hex: pass it as `lender_signature`.")
    offer_hash: Bytes32Hex = Field(description="The offer's EIP-712 digest: what the borrower's `AcceptOffer` "
                                   "names.")
    posted_at: int = Field(description="Unix time the board received it.")


class OfferList(BaseModel):
    """The offers a certificate's holder can accept now."""

    token_id: Uint256Out
    lot_id: Uint256Out
    block_number: int = Field(description="The block expiry, nonces and appraisal were checked at.")
    certificate_state: CertificateState = Field(description="Offers can be accepted only while it is `active` "
                                                "(not pledged, gifted, flagged or in redemption).")
    offers: list[PostedOffer] = Field(description="This page of the offers, cheapest first (lowest repayment "
                                      "per unit of principal), then largest principal. A page may hold fewer than "
                                      "`limit`: offers whose nonce is used or whose lender no longer holds or has "
                                      "not approved the principal are left out.")
    offset: int = Field(default=0, description="Position of this page's first offer in the board's ordering.")
    limit: int = Field(default=20, description="Offers the page covers at most.")
    next_offset: int | None = Field(default=None, description="`offset` of the next page; null on the last page.")


class LoanAcceptanceRelayRequest(BaseModel):
    """A borrower's signed `AcceptOffer` of a lender's signed offer, for
    `accept_offer_with_signature`."""

    model_config = ConfigDict(extra="forbid")

    offer: LoanOfferIn
    lender_signature: SignatureHex = Field(description="The lender's signature of `offer`.")
    token_id: Uint256In = Field(description="The certificate pledged: the offer's, or any of its lot for a "
                                "lot-wide offer.")
    borrower: Address = Field(description="The holder, who signed the acceptance and receives the principal.")
    deadline: Uint256In = Field(description="Unix time after which the acceptance is void.")
    borrower_signature: SignatureHex = Field(description="The borrower's EIP-712 `AcceptOffer` signature.")


class LoanExtensionRelayRequest(BaseModel):
    """A `LoanExtension` signed by both the lender and the borrower."""

    model_config = ConfigDict(extra="forbid")

    loan_id: Uint256In
    due_at: Uint256In = Field(description="The new due date (unix time), later than the current one.")
    repayment: Uint256In = Field(description="The new repayment amount, at least the principal.")
    deadline: Uint256In = Field(description="Unix time after which the extension is void.")
    lender_signature: SignatureHex
    borrower_signature: SignatureHex


class LoanRepaymentRelayRequest(BaseModel):
    """A payer's EIP-3009 `ReceiveWithAuthorization` of the loan's repayment to
    the lending contract (typed data from `GET /relay/typed-data/loan-repayment`)."""

    model_config = ConfigDict(extra="forbid")

    loan_id: Uint256In
    payer: Address = Field(description="Who pays (usually the borrower); the signer of the authorization.")
    valid_after: Uint256In = Field(default=0, description="The authorization's `validAfter` (unix time).")
    valid_before: Uint256In = Field(description="The authorization's `validBefore` (unix time).")
    signature: EcdsaSignatureHex = Field(description="The payer's 65-byte EIP-712 signature `r || s || v` (EIP-3009 "
                                         "takes `v, r, s`, so an ERC-1271 wallet cannot pay this way).")


class LoanRepaymentTypedData(BaseModel):
    """An `eth_signTypedData_v4` payload of the stablecoin's EIP-3009
    `ReceiveWithAuthorization` that repays one loan: pass it unchanged to any
    EIP-712 signer. uint256 values are decimal strings."""

    model_config = ConfigDict(populate_by_name=True)

    types: dict[str, list[TypedDataField]]
    primary_type: Literal["ReceiveWithAuthorization"] = Field(alias="primaryType")
    domain: TypedDataDomain
    message: AuthorizationMessage


class LendingTypedData(BaseModel):
    """An `eth_signTypedData_v4` payload in PledgeLending's domain: pass it
    unchanged to any EIP-712 signer. uint256 values are decimal strings."""

    model_config = ConfigDict(populate_by_name=True)

    types: dict[str, list[TypedDataField]]
    primary_type: Literal["LoanOffer", "AcceptOffer", "LoanExtension"] = Field(alias="primaryType")
    domain: TypedDataDomain
    message: dict[str, str] = Field(description="The message; numbers as decimal strings, bytes as 0x hex.")


# ------------------------------------------------------------------ auth

_IDENTIFIER_DESCRIPTION = ("An email address or a username, 3 to 254 characters, no spaces. Compared trimmed and "
                           "case-folded: `Alice@Example.org` and `alice@example.org` are one account.")
_TOKEN_DESCRIPTION = ("Send it as `Authorization: Bearer <token>`. Shown only in this response: the service "
                      "stores only its SHA-256.")


class SignupRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    identifier: str = Field(min_length=3, max_length=254, description=_IDENTIFIER_DESCRIPTION,
                            examples=["alice@example.org"])
    password: str = Field(min_length=10, max_length=1024, description="10 to 1,024 characters. Stored as an "
                          "Argon2id hash; a passphrase of several words is easiest to remember.")


class LoginRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    identifier: str = Field(max_length=1024, description="The identifier given at signup, in any case.",
                            examples=["alice@example.org"])
    password: str = Field(max_length=1024)


class AccountSession(BaseModel):
    """A custodial account and a new session token for it."""

    user_id: str = Field(description="The account's id.")
    identifier: str = Field(description="The identifier as stored: trimmed and case-folded.")
    address: Address = Field(description="The account's own Ethereum address: the actor on chain of every "
                             "action the service signs for it.")
    token: str = Field(description="Session token (`amph_s_...`). " + _TOKEN_DESCRIPTION)
    expires_at: int = Field(description="Unix time the session ends (`AMPHORA_SESSION_TTL_SECONDS` after "
                            "it began); log in again after it.")


class AccountView(BaseModel):
    user_id: str
    identifier: str = Field(description="The identifier as stored: trimmed and case-folded.")
    address: Address = Field(description="The account's own Ethereum address, whose key the service holds.")
    created_at: int = Field(description="Unix time of signup.")


class ApiTokenRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=100, description="What the token is for, to recognise it in "
                      "the list (e.g. `shop integration`).", examples=["shop integration"])
    scope: Literal["read", "act"] = Field(
        default="act", description="`act` (default): everything a session can do except export the key. "
        "`read`: only reads (GET) and logging itself out; a route that acts (relays, signs, exports the key, "
        "manages the account) answers 403. A read-only token can create only read-only tokens.")
    expires_in_days: int | None = Field(
        default=None, ge=1, le=3650, description="Days until the token expires; at most, and by default, "
        "`AMPHORA_API_TOKEN_TTL_DAYS` (90 unless the operator changed it); more is 422.")


class ApiTokenIssued(BaseModel):
    """A new API token: valid until it expires or is revoked, for scripts and integrations."""

    id: str = Field(description="The token's id, for `DELETE /auth/api-tokens/{id}`.")
    name: str
    token: str = Field(description="API token (`amph_t_...`). " + _TOKEN_DESCRIPTION)
    created_at: int = Field(description="Unix time of creation.")
    scope: Literal["read", "act"] = Field(description="What the token may do.")
    expires_at: int = Field(description="Unix time the token expires (401 after it).")


class ApiTokenView(BaseModel):
    id: str
    name: str
    created_at: int = Field(description="Unix time of creation.")
    last_used_at: int | None = Field(description="Unix time it last authenticated a request (to the minute); "
                                     "null if never.")
    scope: Literal["read", "act"] = Field(description="What the token may do.")
    expires_at: int = Field(description="Unix time the token expires.")


class ApiTokenList(BaseModel):
    """The account's API tokens that are neither revoked nor expired, oldest first; never the tokens themselves."""

    tokens: list[ApiTokenView]


class PasswordChangeRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    current_password: str = Field(max_length=1024, description="The account's password now, typed again.")
    new_password: str = Field(min_length=10, max_length=1024, description="10 to 1,024 characters.")


class LogoutEverywhere(BaseModel):
    """What `POST /auth/logout-everywhere` revoked."""

    revoked: int = Field(description="Sessions and API tokens revoked, the one of this request included.")


class KeyExportRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    password: str = Field(max_length=1024, description="The account's password, typed again: a session "
                          "token alone cannot take the key.")


class KeyExport(BaseModel):
    """The account's private key: import it into any Ethereum wallet to hold the
    account's certificates and points yourself."""

    address: Address
    private_key: str = Field(pattern=r"^0x[0-9a-f]{64}$", description="The secp256k1 private key, 0x hex. "
                             "Whoever has it controls the address: keep it offline.")
