"""The winery (issuer) console's API: check a lot document and preview the
lot (`POST /issuer/lots/preview`), issue it from the issuer's own address
(`POST /issuer/lots`), download its bottles file with the tag keys once
(`GET /issuer/lots/{lot_id}/bottles`), flag and clear a flag on a bottle, and
a lot's scans per day (`GET /lots/{lot_id}/scans`, public: counts only).

Every issuer route needs a custodial account's token (401) whose address holds
the issuer role on chain (403 in words); the contract stays the authority and
every call is simulated first (409 `would_revert` with its reason, nothing
sent). See :mod:`api.issuer` for the tag keys and the once-only issuance.
"""

from __future__ import annotations

import json
import time
from datetime import UTC, date, datetime
from enum import StrEnum
from typing import Annotated, Any, cast

from eth_utils import keccak
from fastapi import APIRouter, Body, Path, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import Response
from pydantic import BaseModel, Field
from web3.exceptions import ContractLogicError

from amphora import lots
from api.business import GasUnfunded, TransactionFailed, roles_of
from api.business_wallet import WalletSendRequired
from api.chain import node_errors, revert_reason
from api.deps import BusinessDep, ChainDep, ScansDep, SettingsDep, UserDep
from api.errors import (
    Forbidden,
    InvalidRequest,
    NotDeployed,
    NotFound,
    ServiceUnavailable,
    Unauthorized,
    UpstreamUnavailable,
    WouldRevert,
    error_responses,
)
from api.issuer import (
    MAX_BOTTLES_ONLINE,
    AlreadyIssued,
    LotDocumentInvalid,
    TagKeyVault,
    bottles_file,
    check_document,
    issue_call,
    issued_lot_id,
    require_valid,
)
from api.routers.certificates import TokenIdPath
from api.routers.metadata import lot_document
from api.schemas import Uint256In
from api.users import User

router = APIRouter(tags=["issuer"])

#: Days `GET /lots/{lot_id}/scans` may cover (the scan log keeps 30 by default).
MAX_SCAN_DAYS = 90
#: Distinct networks one bottle is scanned from in one day before the dashboard calls it an anomaly.
MANY_PLACES = 3
_ROLE_ERRORS = (Unauthorized, Forbidden, UpstreamUnavailable, NotDeployed)
_SEND_ERRORS = (WouldRevert, GasUnfunded, WalletSendRequired, TransactionFailed)

LotDocumentBody = Annotated[dict[str, Any], Body(
    description="The lot document: the fields of a lot description (`producer`, `wine`, `region`, `bottle_count`, "
    "`volume_ml`, `bottling_date` (ISO date or unix time), `custodian`, optional `vintage`, `metadata_uri`) and, "
    "for a version 2 document (`\"document_version\": 2`), those of the schema at "
    "`/schemas/lot-document-v2.json`. `tags` is not accepted: the service makes fresh tag keys.",
    examples=[{"producer": "Domaine Amphora", "wine": "Grand Vin", "region": "Pauillac", "bottle_count": 6,
               "volume_ml": 750, "bottling_date": "2021-06-15",
               "custodian": "0x3C44CdDdB6a900fa2b585dd299e03d12FA4293BC"}])]


def vault(request: Request) -> TagKeyVault:
    """The app's tag key vault, made at its first use (in the app's database)."""
    state = request.app.state
    found = getattr(state, "tag_vault", None)
    if found is None:
        found = state.tag_vault = TagKeyVault(state.db, state.settings)
    return cast(TagKeyVault, found)


def _require_issuer(chain: ChainDep, user: User) -> None:
    roles_of(chain, user.address).require("issuer")


class Problem(BaseModel):
    field: str = Field(description="The field, as a JSON path (`nutrition_per_100ml/sugars`), or `document`.")
    message: str = Field(description="What is wrong with it.")


class LotPreview(BaseModel):
    """What issuing this document would do; nothing was sent."""

    valid: bool = Field(description="Every field passes; `POST /issuer/lots` with `document` would issue it "
                        "unless `would_revert` says why not.")
    problems: list[Problem] = Field(description="Every field that fails, in field order (empty when valid).")
    document: dict[str, Any] | None = Field(description="The metadata document as it would be hashed on chain and "
                                            "served (with its `serial_salt` fixed): send it to `POST /issuer/lots` "
                                            "to issue exactly what was previewed.")
    metadata_hash: str | None = Field(description="keccak256 of the document's canonical JSON.")
    would_revert: str | None = Field(description="The contract's reason if `issue_lot` from this account would "
                                     "fail now (custodian not registered, paused), else null.")
    gas_estimate: int | None = Field(description="Gas the issuance would take, if it would not revert.")


@router.post("/issuer/lots/preview", response_model=LotPreview, summary="Check a lot document before issuing it",
             responses=error_responses(InvalidRequest, *_ROLE_ERRORS))
def preview_lot(document: LotDocumentBody, user: UserDep, chain: ChainDep) -> LotPreview:
    """Validates the document field by field (the lot description's rules, and for a version 2 document the
    JSON Schema, the GTIN's check digit and the nutrition rules), and simulates `issue_lot` from the signed-in
    account's address. Sends nothing. The issuer role is required (403)."""
    _require_issuer(chain, user)
    lot, problems = check_document(document)
    if lot is None:
        return LotPreview(valid=False, problems=[Problem(field=p.field, message=p.message) for p in problems],
                          document=None, metadata_hash=None, would_revert=None, gas_estimate=None)
    doc = lot.metadata_document()
    reason, gas = None, None
    call = issue_call(chain, lot, doc, keccak(b"amphora preview tag root"))
    with node_errors():
        try:
            gas = int(call.estimate_gas({"from": user.address}, block_identifier="pending"))
        except ContractLogicError as err:
            reason = revert_reason(err)
    return LotPreview(valid=True, problems=[], document=doc, metadata_hash="0x" + lots.metadata_hash(doc).hex(),
                      would_revert=reason, gas_estimate=gas)


class IssuedLot(BaseModel):
    lot_id: str = Field(description="The new lot's id (decimal).")
    tx_hash: str
    block_number: int | None = Field(description="The block it landed in.")
    bottle_count: int
    metadata_hash: str
    document_url: str = Field(description="Where the API serves the lot's document.")
    labels_url: str = Field(description="The lot's label sheet (PDF; version 2 documents only).")
    bottles_url: str = Field(description="The bottles file with the tag keys: downloadable with the keys ONCE.")


@router.post("/issuer/lots", response_model=IssuedLot, status_code=201, summary="Issue a lot",
             responses=error_responses(LotDocumentInvalid, AlreadyIssued, *_SEND_ERRORS, *_ROLE_ERRORS,
                                       ServiceUnavailable))
def issue_lot(document: LotDocumentBody, request: Request, user: UserDep, chain: ChainDep, sender: BusinessDep,
              settings: SettingsDep) -> IssuedLot:
    """Issues the lot from the signed-in account's own address (it pays the gas: 409 `gas_unfunded` when
    it cannot), with a fresh tag key per bottle: their Merkle root and the document's keccak256 go on chain,
    the document is deposited where `GET /lots/{lot_id}/metadata.json` serves it, the keys are kept
    encrypted and served once by `GET /issuer/lots/{lot_id}/bottles`. 422 `invalid_lot_document` naming
    every failing field (at most 5,000 bottles in this one request: up to 100,000 with `POST /issuer/lot-jobs`,
    which issues in the background and reports progress; larger lots with `ape run issue_lot`); 409
    `would_revert` with the contract's reason; 409 `already_issued` for a document this issuer already
    issued (send the preview's `document`: its `serial_salt` makes a retry the same document). The issuer
    role is required (403)."""
    _require_issuer(chain, user)
    lot = require_valid(document, MAX_BOTTLES_ONLINE)
    doc = lot.metadata_document()
    digest = "0x" + lots.metadata_hash(doc).hex()
    keys_vault = vault(request)
    chain_id = chain.chain_id
    keys_vault.reserve(chain_id, user.address, digest)
    try:
        tree, keys = lots.make_tags(lot)
        sent = sender.send(user, issue_call(chain, lot, doc, tree.root))
    except BaseException:
        keys_vault.release(chain_id, user.address, digest)
        raise
    lot_id = issued_lot_id(chain, sent.logs)
    keys_vault.keep(chain_id, user.address, digest, lot_id, tree, keys)
    lots.write_document(settings.lot_document_path(chain_id, lot_id), doc)
    return IssuedLot(lot_id=str(lot_id), tx_hash=sent.tx_hash, block_number=sent.block_number,
                     bottle_count=lot.bottle_count, metadata_hash=digest,
                     document_url=f"/lots/{lot_id}/metadata.json", labels_url=f"/lots/{lot_id}/labels.pdf",
                     bottles_url=f"/issuer/lots/{lot_id}/bottles")


class BottlesFormat(StrEnum):
    csv = "csv"
    json = "json"


LotIdPath = Annotated[Uint256In, Path(description="Decimal lot id.")]


@router.get("/issuer/lots/{lot_id}/bottles", summary="The bottles file of a lot (tag keys once)",
            response_class=Response,
            responses={200: {"description": "Per bottle: serial, token id, tag address, tag private key (first "
                                            "download only, else empty), Merkle proof, verify URL (and GS1 serial "
                                            "and Digital Link for version 2). Header `X-Tag-Keys`: `included` or "
                                            "`withheld`.",
                             "content": {"text/csv": {"schema": {"type": "string"}},
                                         "application/json": {"schema": {"type": "object"}}}},
                       **error_responses(NotFound, InvalidRequest, *_ROLE_ERRORS, ServiceUnavailable)})
def lot_bottles(lot_id: LotIdPath, request: Request, user: UserDep, chain: ChainDep, settings: SettingsDep,
                fmt: Annotated[BottlesFormat, Query(alias="format", description="`csv` or `json`.")] =
                BottlesFormat.csv) -> Response:
    """The file for the tag printer, as `ape run issue_lot` writes it, for a lot this account issued through
    the service. The tag keys are secrets: the first download carries them and marks them taken (two
    downloads at once: one gets them); every later download leaves the key column empty
    (`X-Tag-Keys: withheld`) while the keys stay encrypted at rest. 404 for a lot this account did not
    issue here. Sent with `Cache-Control: no-store`."""
    _require_issuer(chain, user)
    try:
        addresses, keys, taken = vault(request).take(chain.chain_id, lot_id, user.address)
    except KeyError as err:
        raise NotFound(f"lot {lot_id} was not issued by {user.address} through this service") from err
    doc = _document(chain, settings, lot_id)
    body = bottles_file(lot_id, addresses, keys, settings.public_base_url, doc, fmt.value)
    media = "text/csv" if fmt is BottlesFormat.csv else "application/json"
    return Response(body, media_type=media, headers={
        "Content-Disposition": f'attachment; filename="lot-{lot_id}-bottles.{fmt.value}"',
        "Cache-Control": "no-store", "X-Tag-Keys": "withheld" if taken is not None else "included"})


def _document(chain: ChainDep, settings: SettingsDep, lot_id: int) -> dict[str, Any] | None:
    try:
        loaded = json.loads(bytes(lot_document(lot_id=lot_id, chain=chain, settings=settings).body))
    except NotFound:
        return None
    return loaded if isinstance(loaded, dict) else None


class FlagRequest(BaseModel):
    reason: str = Field(min_length=1, max_length=500, description="Why (police reference, notes). Only its "
                        "keccak256 goes on chain; keep the text yourself.")


class FlagSent(BaseModel):
    token_id: str
    tx_hash: str
    block_number: int | None
    reason_hash: str | None = Field(description="keccak256 of the reason (flags only).")


@router.post("/issuer/certificates/{token_id}/flag", response_model=FlagSent, summary="Flag a bottle lost or stolen",
             responses=error_responses(InvalidRequest, *_SEND_ERRORS, *_ROLE_ERRORS))
def flag_bottle(token_id: TokenIdPath, body: FlagRequest, user: UserDep, chain: ChainDep,
                sender: BusinessDep) -> FlagSent:
    """`flag(token_id, keccak256(reason))` from the signed-in issuer's address: the certificate locks until
    its lot's acting issuer or the admin clears it. The contract allows it only to the bottle's holder or its
    lot's acting issuer (the successor named for the lot, else the issuer that issued it, while it holds the
    role), and only on an active, unpledged bottle: else 409 `would_revert` with its reason, nothing sent."""
    _require_issuer(chain, user)
    reason_hash = keccak(body.reason.encode())
    sent = sender.send(user, chain.certificate_contract.functions.flag(token_id, reason_hash))
    return FlagSent(token_id=str(token_id), tx_hash=sent.tx_hash, block_number=sent.block_number,
                    reason_hash="0x" + reason_hash.hex())


@router.post("/issuer/certificates/{token_id}/clear-flag", response_model=FlagSent, summary="Clear a bottle's flag",
             responses=error_responses(InvalidRequest, *_SEND_ERRORS, *_ROLE_ERRORS))
def clear_bottle_flag(token_id: TokenIdPath, user: UserDep, chain: ChainDep, sender: BusinessDep) -> FlagSent:
    """`clear_flag(token_id)` from the signed-in issuer's address: the certificate unlocks. The contract allows
    it only to the lot's acting issuer (or the admin): else 409 `would_revert` with its reason, nothing sent."""
    _require_issuer(chain, user)
    sent = sender.send(user, chain.certificate_contract.functions.clear_flag(token_id))
    return FlagSent(token_id=str(token_id), tx_hash=sent.tx_hash, block_number=sent.block_number, reason_hash=None)


class DayScans(BaseModel):
    date: date
    scans: int = Field(description="Recorded scans (distinct clients within the scan window) of the lot's bottles.")
    bottles: int = Field(description="Distinct bottles scanned.")


class PlacesAnomaly(BaseModel):
    token_id: str
    date: date
    networks: int = Field(description="Distinct networks the bottle's page was opened from that day.")


class LotScans(BaseModel):
    lot_id: str
    days: list[DayScans] = Field(description="One entry per UTC day, oldest first, today last (zeros included).")
    many_places: list[PlacesAnomaly] = Field(description=f"Bottles scanned from {MANY_PLACES} or more networks in "
                                             "one day: a code copied onto other bottles looks like this.")


@router.get("/lots/{lot_id}/scans", response_model=LotScans, summary="A lot's verification scans per day",
            responses=error_responses(NotFound, InvalidRequest, UpstreamUnavailable, NotDeployed))
async def lot_scans(lot_id: LotIdPath, chain: ChainDep, scans: ScansDep,
                    days: Annotated[int, Query(ge=1, le=MAX_SCAN_DAYS, description="Days back, today included.")]
                    = 30) -> LotScans:
    """How often the lot's bottles' verification pages were opened, per UTC day: counts only (the scan log
    stores salted hashes of clients, never addresses). Public, like the scans on each verification page.
    404 for a lot that was never issued."""
    if lot_id == 0 or lot_id >= 2**64:
        raise NotFound(f"lot {lot_id} does not exist")
    record = await run_in_threadpool(chain.certificate, lots.token_id(lot_id, 1))
    if not record.issued:
        raise NotFound(f"lot {lot_id} does not exist")
    now = time.time()
    rows = await run_in_threadpool(scans.lot_days, lot_id, days, now)
    today = int(now // 86_400)
    per_day: dict[int, tuple[int, set[int]]] = {d: (0, set()) for d in range(today - days + 1, today + 1)}
    places = []
    for row in rows:
        count, bottles = per_day.get(row.day, (0, set()))
        bottles.add(row.token_id)
        per_day[row.day] = (count + row.scans, bottles)
        if row.networks >= MANY_PLACES:
            places.append(PlacesAnomaly(token_id=str(row.token_id), date=_day(row.day), networks=row.networks))
    return LotScans(lot_id=str(lot_id), many_places=places, days=[
        DayScans(date=_day(day), scans=count, bottles=len(bottles))
        for day, (count, bottles) in sorted(per_day.items())])


def _day(day: int) -> date:
    return datetime.fromtimestamp(day * 86_400, UTC).date()


