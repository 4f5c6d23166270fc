"""A cellar's and an appraiser's actions as API routes (issue 16): the
redemption queue with the holders' delivery addresses, confirm or reject a
delivery, attest how a lot is stored, post a proof-of-reserve root, and post a
lot's appraisal. The console's pages (:mod:`web.console.custodian`,
:mod:`web.console.appraiser`) call these functions.

Every action needs the role on chain, read at the latest block
(:func:`api.business.roles_of`): 401 without credentials, 403 in words for an
account without it. A cellar acts only on its own lots: a bottle or lot kept by
another cellar is refused with 403 before anything is sent (the contract would
refuse it too). The transaction is signed with the account's own key and sent
from its address (:class:`api.business.BusinessSender`), simulated first: 409
``would_revert`` with the contract's reason, nothing sent, when it would fail
(a request already answered, an appraisal not newer than the lot's latest).

The report and the tree a transaction names are published here, publicly, at
the URI the event carries: ``GET /custodian/documents/{hash}``,
``GET /custodian/reserve-trees/{custodian}/{root}`` and a bottle's proof at
``.../proofs/{token_id}``, which ``CustodyRegistry.verify_reserve`` accepts.
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal, InvalidOperation
from typing import Annotated, Any

from eth_utils import keccak, to_checksum_address
from fastapi import APIRouter, Body, Path, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import Response
from pydantic import BaseModel, Field

from amphora.merkle import ReserveTree
from api.business import GasUnfunded, Roles, Sent, TransactionFailed, roles_of
from api.business_wallet import WalletSendRequired
from api.cellar import MAX_RESERVE_BOTTLES, cellar_of, held_token_ids, requested_token_ids
from api.chain import CUSTODY, LENDING, STABLECOIN, ChainService
from api.deps import BusinessDep, ChainDep, IndexDep, UserDep
from api.errors import (
    Conflict,
    Forbidden,
    InvalidRequest,
    NotDeployed,
    NotFound,
    PayloadTooLarge,
    ServiceUnavailable,
    Unauthorized,
    UpstreamUnavailable,
    WouldRevert,
    error_responses,
)
from api.holder_notes import notes_of
from api.schemas import ADDRESS_PATTERN, BYTES32_PATTERN, CertificateState, Uint256In, state_name
from api.users import User
from indexer import holdings
from indexer.events import SERIAL_BITS
from indexer.reader import BadCursor, IndexReader, IndexStatus, decode_cursor

router = APIRouter()

#: Requests the queue lists at most (oldest first).
MAX_QUEUE = 200
#: Lots the appraiser's list shows a page.
APPRAISAL_PAGE = 20
#: The longest reason a cellar may give for refusing a delivery, in characters.
MAX_REASON = 500
#: A URI the registry's events carry is at most this long (``String[256]``).
MAX_URI = 256
_SEND_ERRORS = (Unauthorized, Forbidden, WouldRevert, GasUnfunded, WalletSendRequired, InvalidRequest,
                TransactionFailed, UpstreamUnavailable, NotDeployed)

TokenPath = Annotated[Uint256In, Path(description="The certificate, in decimal.")]
LotPath = Annotated[int, Path(ge=1, le=2**64 - 1, description="The lot id, in decimal.")]


class SentOut(BaseModel):
    """A transaction the service signed and sent from the account's own address."""

    tx_hash: str = Field(description="The transaction's hash.")
    block_number: int | None = Field(description="The block it landed in; null while still pending.")


def _sent(sent: Sent) -> dict[str, Any]:
    return {"tx_hash": sent.tx_hash, "block_number": sent.block_number}


def _role(chain: ChainService, user: User, role: str) -> Roles:
    roles = roles_of(chain, user.address)
    roles.require(role)
    return roles


def _public_uri(request: Request, path: str) -> str:
    uri = request.app.state.settings.public_base_url.rstrip("/") + path
    if len(uri) > MAX_URI:
        raise ServiceUnavailable(f"the public address {uri} is longer than the {MAX_URI} characters the registry "
                                 "keeps: set a shorter AMPHORA_PUBLIC_BASE_URL")
    return uri


# ------------------------------------------------------------ redemptions


class DeliveryAddress(BaseModel):
    name: str = Field(description="Who receives the bottle.")
    address: str = Field(description="The delivery address, lines separated by `\\n`.")
    phone: str | None = Field(default=None, description="A phone number, if the holder gave one.")


class RedemptionRequest(BaseModel):
    """A bottle in the cellar whose holder asked for delivery."""

    token_id: str = Field(description="The certificate, in decimal.")
    lot_id: int
    serial: int
    wine: str | None
    vintage: int | None
    producer: str | None
    holder: str = Field(description="The holder's address, checksummed.")
    order_hash: str = Field(description="keccak256 of the delivery order on chain (`RedemptionRequested`).")
    delivery: DeliveryAddress | None = Field(description="The delivery address the holder wrote through this "
                                             "service, decrypted for this cellar; null when the order was "
                                             "written elsewhere (the holder then gives it to the cellar directly).")
    requested_block: int = Field(description="The block of the request, as indexed.")


class RedemptionQueue(BaseModel):
    custodian: str = Field(description="The signed-in cellar's address.")
    indexed_block: int | None = Field(description="The index's block the queue was read at; each request is "
                                      "checked against the chain's latest block.")
    requests: list[RedemptionRequest] = Field(description=f"Oldest first, at most {MAX_QUEUE}.")


def _delivery(request: Request, token_id: int, order_hash: str) -> DeliveryAddress | None:
    try:
        note = notes_of(request.app.state).get(order_hash)
    except NotFound:
        return None
    if note.kind != "delivery" or note.token_id != token_id:
        return None
    fields = note.fields
    return DeliveryAddress(name=fields.get("name", ""), address=fields.get("address", ""),
                           phone=fields.get("phone") or None)


def queue_of(request: Request, chain: ChainService, index: IndexReader, custodian: str) -> RedemptionQueue:
    """The requests on ``custodian``'s lots: found in the index, each checked on
    chain (still requested, this cellar the custodian), its address decrypted."""
    chain_id = chain.chain_id

    def query(tx: Any, status: IndexStatus) -> tuple[int | None, list[tuple[int, int, holdings.LotFacts | None]]]:
        found = []
        for token_id in requested_token_ids(tx, chain_id, custodian, MAX_QUEUE):
            row = tx.one("SELECT block_number FROM ix_tokens WHERE chain_id = ? AND token_id = ?",
                         (chain_id, str(token_id)))
            found.append((token_id, int(row["block_number"]) if row else 0,
                          holdings.lot(tx, chain_id, token_id >> SERIAL_BITS)))
        return status.indexed_block, found

    indexed, found = index.answer(chain_id, query).value
    block = chain.latest_block_ref()
    requests = []
    for token_id, requested_block, facts in found:
        record = chain.certificate_at(token_id, block)
        if (state_name(record.state) != CertificateState.redemption_requested
                or record.custodian.lower() != custodian.lower()):
            continue  # answered, or moved to another cellar, since the index saw it
        order_hash = "0x" + bytes(record.redemption_order_hash).hex()
        requests.append(RedemptionRequest(
            token_id=str(token_id), lot_id=record.lot_id, serial=record.serial,
            wine=facts.wine if facts else None, vintage=facts.vintage if facts else None,
            producer=facts.producer if facts else None, holder=to_checksum_address(record.owner),
            order_hash=order_hash, delivery=_delivery(request, token_id, order_hash), requested_block=requested_block))
    return RedemptionQueue(custodian=custodian, indexed_block=indexed, requests=requests)


@router.get("/custodian/redemptions", response_model=RedemptionQueue, tags=["custodian"],
            summary="The cellar's delivery requests, with the holders' addresses",
            responses=error_responses(Unauthorized, Forbidden, UpstreamUnavailable, NotDeployed, ServiceUnavailable))
def redemption_queue(request: Request, user: UserDep, chain: ChainDep, index: IndexDep) -> RedemptionQueue:
    """The bottles of the signed-in cellar's lots whose holders asked for them
    (`redemption_requested`), oldest first, each with the delivery address the
    holder wrote, decrypted for this cellar only: a request on another cellar's
    lot is never listed. Needs the `custodian` role (403 in words without it)."""
    _role(chain, user, "custodian")
    return queue_of(request, chain, index, to_checksum_address(user.address))


def _own_bottle(chain: ChainService, user: User, token_id: int) -> None:
    """403 in words unless the bottle is in the signed-in cellar's custody."""
    _role(chain, user, "custodian")
    record = chain.certificate(token_id)
    if not record.issued:
        raise NotFound(f"certificate {token_id} was never issued")
    if record.custodian.lower() != user.address.lower():
        raise Forbidden(f"certificate {token_id} is kept by another cellar ({record.custodian}): only its "
                        "custodian answers its delivery request")


class Rejection(BaseModel):
    reason: str = Field(min_length=3, max_length=MAX_REASON, description="Why the delivery is refused, in words "
                        "for the holder (an unpaid fee, an address the carrier does not serve). Its keccak256 "
                        "goes on chain as `reason_hash`.")


class RejectionOut(SentOut):
    reason_hash: str = Field(description="keccak256 of the reason's UTF-8, as recorded on chain.")


@router.post("/custodian/redemptions/{token_id}/confirm", response_model=SentOut, tags=["custodian"],
             summary="Confirm a delivery: the bottle has been shipped",
             responses=error_responses(NotFound, *_SEND_ERRORS))
def confirm_redemption(token_id: TokenPath, user: UserDep, chain: ChainDep, business: BusinessDep) -> SentOut:
    """`WineCertificate.confirm_redemption`, sent from the cellar's address: the
    certificate is burned. 403 for a bottle another cellar keeps; 409
    `would_revert` (nothing sent) when no request is pending on it, for example
    when it was confirmed already."""
    _own_bottle(chain, user, token_id)
    call = chain.certificate_contract.functions.confirm_redemption(token_id)
    return SentOut(**_sent(business.send(user, call)))


@router.post("/custodian/redemptions/{token_id}/reject", response_model=RejectionOut, tags=["custodian"],
             summary="Refuse a delivery, with a reason",
             responses=error_responses(NotFound, *_SEND_ERRORS))
def reject_redemption(token_id: TokenPath, body: Rejection, user: UserDep, chain: ChainDep,
                      business: BusinessDep) -> RejectionOut:
    """`WineCertificate.reject_redemption` with keccak256 of the reason: the
    certificate unlocks and stays with its holder. 403 for a bottle another
    cellar keeps; 409 `would_revert` (nothing sent) when no request is pending."""
    reason = body.reason.strip()
    if len(reason) < 3:
        raise InvalidRequest("reason: say in at least 3 characters why the delivery is refused")
    _own_bottle(chain, user, token_id)
    reason_hash = keccak(text=reason)
    call = chain.certificate_contract.functions.reject_redemption(token_id, reason_hash)
    return RejectionOut(**_sent(business.send(user, call)), reason_hash="0x" + reason_hash.hex())


# ------------------------------------------------------------ storage reports


class AttestationOut(SentOut):
    lot_id: int
    document_hash: str = Field(description="keccak256 of the report, as `attest_storage` records it.")
    document_uri: str = Field(description="Where the report is served (`GET /custodian/documents/{hash}`).")
    size: int = Field(description="The report's size in bytes.")


def attest(request: Request, chain: ChainService, business: Any, user: User, lot_id: int,
           document: bytes) -> AttestationOut:
    """Keep the report, then send ``attest_storage`` for it (the report is dropped again if refused)."""
    if not document:
        raise InvalidRequest("the report is empty: send the file as the request body")
    _role(chain, user, "custodian")
    custodian = chain.certificate_contract.functions.custodian_of((lot_id << SERIAL_BITS) | 1).call()
    if int(custodian, 16) == 0:
        raise NotFound(f"lot {lot_id} was never issued")
    if custodian.lower() != user.address.lower():
        raise Forbidden(f"lot {lot_id} is kept by another cellar ({custodian}): only its custodian attests "
                        "how it is stored")
    store = cellar_of(request.app.state)
    hash_, new = store.keep_document(lot_id, to_checksum_address(user.address), document)
    uri = _public_uri(request, f"/custodian/documents/{hash_}")
    registry = chain.require_contract(CUSTODY)
    try:
        sent = business.send(user, registry.functions.attest_storage(lot_id, bytes.fromhex(hash_[2:]), uri),
                             "the custody registry")
    except (WouldRevert, GasUnfunded, Forbidden):
        if new:
            store.forget_document(hash_)
        raise
    return AttestationOut(**_sent(sent), lot_id=lot_id, document_hash=hash_, document_uri=uri, size=len(document))


@router.put("/custodian/lots/{lot_id}/storage-report", response_model=AttestationOut, tags=["custodian"],
            summary="Attest how a lot is stored, with the report",
            openapi_extra={"requestBody": {"required": True, "description": "The report itself (a PDF or any file), "
                                           "at most AMPHORA_MAX_UPLOAD_BYTES (16 MiB by default) with "
                                           "credentials; the general body limit without.",
                                           "content": {"application/octet-stream": {"schema": {
                                               "type": "string", "format": "binary"}}}}},
            responses=error_responses(NotFound, PayloadTooLarge, *_SEND_ERRORS))
async def storage_report(lot_id: LotPath, request: Request, user: UserDep, chain: ChainDep,
                         business: BusinessDep) -> AttestationOut:
    """The request body is the report. The service hashes it (keccak256, as
    `CustodyRegistry.attest_storage` expects), publishes it at
    `GET /custodian/documents/{hash}` and sends `attest_storage(lot_id, hash, uri)`
    from the cellar's address. 403 for a lot another cellar keeps; 413 above the
    body limit; 422 for an empty body. The same report sent twice is stored once."""
    document = await request.body()
    return await run_in_threadpool(attest, request, chain, business, user, lot_id, document)


@router.get("/custodian/documents/{document_hash}", tags=["custodian"], summary="A storage report, by its hash",
            response_class=Response,
            responses={200: {"description": "The report: `application/pdf` when it is one, else "
                             "`application/octet-stream` as a download.",
                             "content": {"application/pdf": {}, "application/octet-stream": {}}},
                       **error_responses(NotFound, InvalidRequest)})
def storage_document(document_hash: Annotated[str, Path(pattern=BYTES32_PATTERN, description="keccak256 of the "
                                                        "report, as the `StorageAttested` event names it.")],
                     request: Request) -> Response:
    """Public, like the attestation on chain: anyone can fetch the report and
    check its keccak256 against `CustodyRegistry.custody(token_id)`. Never served
    as a page (no HTML, no sniffing): a PDF, or bytes to download."""
    stored = cellar_of(request.app.state).document(document_hash)
    headers = {"X-Content-Type-Options": "nosniff", "Cache-Control": "public, max-age=31536000, immutable",
               "Content-Security-Policy": "default-src 'none'; sandbox"}
    if stored.media_type != "application/pdf":
        headers["Content-Disposition"] = f'attachment; filename="storage-report-lot-{stored.lot_id}.bin"'
    return Response(stored.body, media_type=stored.media_type, headers=headers)


# ------------------------------------------------------------ proof of reserve


class ReservePosted(SentOut):
    root: str = Field(description="The Merkle root posted (`ReserveTree`: sorted-pair keccak of "
                      "keccak256(keccak256(abi.encode(token_id))) leaves).")
    bottle_count: int
    tree_uri: str = Field(description="Where the tree is published.")
    indexed_block: int | None = Field(description="The index's block the bottles were read at.")


def post_reserve(request: Request, chain: ChainService, index: IndexReader, business: Any,
                 user: User) -> ReservePosted:
    """The root over the bottles the index says the cellar keeps, the tree
    published, ``post_reserve_root`` sent (the tree is dropped again if refused)."""
    _role(chain, user, "custodian")
    custodian = to_checksum_address(user.address)
    chain_id = chain.chain_id

    def query(tx: Any, status: IndexStatus) -> tuple[int | None, list[int]]:
        return status.indexed_block, held_token_ids(tx, chain_id, custodian)

    indexed, ids = index.answer(chain_id, query).value
    if not ids:
        raise Conflict(f"the index lists no bottle kept by {custodian} (indexed to block {indexed}): nothing to "
                       "prove")
    if len(ids) > MAX_RESERVE_BOTTLES:
        raise Conflict(f"{custodian} keeps more than {MAX_RESERVE_BOTTLES} bottles, more than one tree of this "
                       "service lists")
    tree = ReserveTree.build(ids)
    store = cellar_of(request.app.state)
    root, new = store.keep_tree(custodian, tree)
    uri = _public_uri(request, f"/custodian/reserve-trees/{custodian}/{root}")
    registry = chain.require_contract(CUSTODY)
    try:
        sent = business.send(user, registry.functions.post_reserve_root(tree.root, len(ids), uri),
                             "the custody registry")
    except (WouldRevert, GasUnfunded, Forbidden):
        if new:
            store.forget_tree(custodian, root)
        raise
    return ReservePosted(**_sent(sent), root=root, bottle_count=len(ids), tree_uri=uri, indexed_block=indexed)


@router.post("/custodian/reserve", response_model=ReservePosted, tags=["custodian"],
             summary="Post a proof-of-reserve root over the bottles the cellar keeps",
             responses=error_responses(Conflict, *_SEND_ERRORS))
def reserve(request: Request, user: UserDep, chain: ChainDep, index: IndexDep, business: BusinessDep) -> ReservePosted:
    """One click: the Merkle root over every bottle of the cellar's lots that
    the index says is not redeemed, the tree published at
    `GET /custodian/reserve-trees/{custodian}/{root}` and
    `CustodyRegistry.post_reserve_root(root, count, uri)` sent from the cellar's
    address. Anyone may then check a bottle with `verify_reserve(token_id,
    proof)`, the proof from `.../proofs/{token_id}`. 409 when the cellar keeps no
    bottle, or more than one tree lists."""
    return post_reserve(request, chain, index, business, user)


class ReserveTreeOut(BaseModel):
    custodian: str
    root: str
    bottle_count: int
    token_ids: list[str] = Field(description="The tree's leaves in order: the token ids, in decimal.")


class ReserveProof(BaseModel):
    custodian: str
    root: str
    token_id: str
    proof: list[str] = Field(description="Sibling hashes from the bottle's leaf up to the root, for "
                             "`CustodyRegistry.verify_reserve(token_id, proof)`.")


CustodianPath = Annotated[str, Path(pattern=ADDRESS_PATTERN, description="The cellar's address.")]
RootPath = Annotated[str, Path(pattern=BYTES32_PATTERN, description="The tree's root, as posted.")]


@router.get("/custodian/reserve-trees/{custodian}/{root}", response_model=ReserveTreeOut, tags=["custodian"],
            summary="A published proof-of-reserve tree", responses=error_responses(NotFound, InvalidRequest))
def reserve_tree(custodian: CustodianPath, root: RootPath, request: Request) -> ReserveTreeOut:
    """Public: the token ids a cellar's posted root lists (the URI its
    `ReserveRootPosted` event names)."""
    stored = cellar_of(request.app.state).tree(to_checksum_address(custodian), root)
    return ReserveTreeOut(custodian=stored.custodian, root=stored.root, bottle_count=len(stored.token_ids),
                          token_ids=[str(t) for t in stored.token_ids])


@router.get("/custodian/reserve-trees/{custodian}/{root}/proofs/{token_id}", response_model=ReserveProof,
            tags=["custodian"], summary="A bottle's proof in a published reserve tree",
            responses=error_responses(NotFound, InvalidRequest))
def reserve_proof(custodian: CustodianPath, root: RootPath, token_id: TokenPath, request: Request) -> ReserveProof:
    """Public: the proof that answers `verify_reserve(token_id, proof)` while
    this root is the cellar's latest. 404 for a bottle the tree does not list."""
    stored = cellar_of(request.app.state).tree(to_checksum_address(custodian), root)
    if token_id not in stored.token_ids:
        raise NotFound(f"certificate {token_id} is not in this reserve tree")
    proof = stored.tree().proof(token_id)
    return ReserveProof(custodian=stored.custodian, root=stored.root, token_id=str(token_id),
                        proof=["0x" + p.hex() for p in proof])


# ------------------------------------------------------------ appraisals


class LotAppraisal(BaseModel):
    lot_id: int
    wine: str
    vintage: int
    producer: str
    bottle_count: int
    value_per_bottle: str | None = Field(description="The latest appraisal per bottle, in stablecoin as a "
                                         "decimal (`12.5`); null when the lot was never appraised.")
    value_per_bottle_units: str | None = Field(description="The same in the stablecoin's smallest unit.")
    appraised_at: dt.datetime | None = Field(description="The date the appraisal is as of.")
    age_seconds: int | None = Field(description="The appraisal's age at the latest block.")
    stale: bool | None = Field(description="Whether loans with a maximum loan-to-value no longer accept it.")


class AppraisalPage(BaseModel):
    currency: str = Field(description="The stablecoin's symbol.")
    decimals: int
    lots: list[LotAppraisal]
    next_cursor: str | None = Field(description="The next page's `cursor`; null on the last page.")


def _money(units: int, decimals: int) -> str:
    value = Decimal(units).scaleb(-decimals)
    return format(value.quantize(Decimal(1)) if value == value.to_integral_value() else value.normalize(), "f")


def _stablecoin(chain: ChainService) -> Any:
    token = chain.token(STABLECOIN)
    if token is None:
        raise NotDeployed("the deployment has no stablecoin: appraisals are in stablecoin")
    return token


def lot_appraisal(chain: ChainService, facts: holdings.LotFacts, decimals: int) -> LotAppraisal:
    raw = chain.appraisal(facts.lot_id)
    value = int(raw.get("value_per_bottle", 0))
    at = int(raw.get("appraised_at", 0))
    return LotAppraisal(
        lot_id=facts.lot_id, wine=facts.wine, vintage=facts.vintage, producer=facts.producer,
        bottle_count=facts.bottle_count, value_per_bottle=_money(value, decimals) if value else None,
        value_per_bottle_units=str(value) if value else None,
        appraised_at=dt.datetime.fromtimestamp(at, dt.UTC) if at else None,
        age_seconds=int(raw.get("age", 0)) if at else None, stale=bool(raw.get("stale")) if at else None)


@router.get("/appraiser/lots", response_model=AppraisalPage, tags=["appraiser"],
            summary="Lots with their latest appraisal and its age",
            responses=error_responses(Unauthorized, Forbidden, InvalidRequest, UpstreamUnavailable, NotDeployed))
def appraisal_list(user: UserDep, chain: ChainDep, index: IndexDep,
                   cursor: Annotated[str | None, Query(max_length=64, description="From a previous page's "
                                                       "`next_cursor`.")] = None) -> AppraisalPage:
    """Every lot in the index, in id order, with the latest appraisal read
    from `PledgeLending.appraisal` (value per bottle, date, age, stale).
    Needs the `appraiser` role."""
    _role(chain, user, "appraiser")
    token = _stablecoin(chain)
    chain.require_contract(LENDING)
    after: int | None = None
    if cursor is not None:
        try:
            position = decode_cursor(cursor, 1)
        except BadCursor as err:
            raise InvalidRequest(f"cursor: {err}") from err
        after = position[0] if position else None
    chain_id = chain.chain_id

    def query(tx: Any, status: IndexStatus) -> Any:
        return holdings.lots(tx, chain_id, after=after, limit=APPRAISAL_PAGE)

    page = index.answer(chain_id, query).value
    return AppraisalPage(currency=token.symbol, decimals=token.decimals,
                         lots=[lot_appraisal(chain, summary.facts, token.decimals) for summary in page.items],
                         next_cursor=page.next_cursor)


class AppraisalIn(BaseModel):
    value_per_bottle: str = Field(min_length=1, max_length=40, pattern=r"^[0-9]+([.][0-9]+)?$",
                                  description="The value of one bottle in stablecoin, as a decimal (`12.50`), at "
                                  "most the stablecoin's decimals.", examples=["45.50"])


class AppraisalOut(SentOut):
    lot_id: int
    value_per_bottle_units: str = Field(description="The value in the stablecoin's smallest unit, as posted.")
    appraised_at: dt.datetime = Field(description="The latest block's time: the date the appraisal is as of.")


def parse_money(text: str, decimals: int) -> int:
    """A positive decimal amount in the token's smallest unit; InvalidRequest in words otherwise."""
    try:
        value = Decimal(text)
    except InvalidOperation:
        raise InvalidRequest("value_per_bottle: a decimal number such as 45.50") from None
    units = value.scaleb(decimals)
    if value <= 0 or units != units.to_integral_value():
        raise InvalidRequest(f"value_per_bottle: a positive amount with at most {decimals} decimals")
    return int(units)


@router.post("/appraiser/lots/{lot_id}/appraisals", response_model=AppraisalOut, tags=["appraiser"],
             summary="Post a lot's appraisal", responses=error_responses(*_SEND_ERRORS))
def post_appraisal(lot_id: LotPath, body: Annotated[AppraisalIn, Body()], user: UserDep, chain: ChainDep,
                   business: BusinessDep) -> AppraisalOut:
    """`PledgeLending.post_appraisal(lot_id, value, now)` from the appraiser's
    address, dated at the latest block. 422 for an amount that is not positive
    or has more decimals than the stablecoin; 409 `would_revert` (nothing sent)
    for a lot never issued or when the lot already has an appraisal as recent
    (a second click in the same second). Needs the `appraiser` role."""
    _role(chain, user, "appraiser")
    units = parse_money(body.value_per_bottle, _stablecoin(chain).decimals)
    lending = chain.require_contract(LENDING)
    at = int(chain.w3.eth.get_block("latest")["timestamp"])
    sent = business.send(user, lending.functions.post_appraisal(lot_id, units, at), "the lending contract")
    return AppraisalOut(**_sent(sent), lot_id=lot_id, value_per_bottle_units=str(units),
                        appraised_at=dt.datetime.fromtimestamp(at, dt.UTC))
