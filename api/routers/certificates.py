"""Certificate verification: ``GET /certificates/{token_id}`` (JSON) and the
consumer page ``GET /verify/{token_id}`` (HTML) that a bottle's QR code opens."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, Path, Query
from fastapi.responses import HTMLResponse

from amphora.lots import split_token_id
from api import pages
from api.chain import ChainService
from api.deps import ChainDep, SettingsDep
from api.errors import InvalidRequest, NotDeployed, NotFound, UpstreamUnavailable, error_responses
from api.schemas import (
    ADDRESS_PATTERN,
    CertificateView,
    LotView,
    Party,
    TagCheck,
    Uint256In,
    checksum_address,
    parse_proof,
    state_name,
)
from api.settings import Settings

router = APIRouter(prefix="/certificates", tags=["certificates"])
page_router = APIRouter(prefix="/verify", tags=["verification page"])

TokenIdPath = Annotated[
    Uint256In,
    Path(description="Decimal token id: `lot_id << 32 | serial`, serials from 1."),
]
TagQuery = Annotated[
    str | None,
    Query(pattern=ADDRESS_PATTERN, description="A bottle tag's address, checked against its lot's tag root."),
]
ProofQuery = Annotated[
    str | None,
    Query(
        description="The tag's Merkle proof: comma-separated 0x-prefixed bytes32 values (at most 32). "
        "Only with `tag`; omit or leave empty for a one-bottle lot.",
    ),
]

_ERRORS = (NotFound, InvalidRequest, UpstreamUnavailable, NotDeployed)


def _iso(timestamp: int) -> str:
    try:
        return datetime.fromtimestamp(timestamp, tz=UTC).isoformat()
    except (OverflowError, OSError, ValueError):
        return ""


def certificate_view(chain: ChainService, settings: Settings, token_id: int) -> CertificateView:
    """The verification view of one certificate; :class:`NotFound` if never issued."""
    record = chain.certificate(token_id)
    if not record.issued:
        lot_id, serial = split_token_id(token_id)
        raise NotFound(f"certificate {token_id} was never issued (it would be bottle {serial} "
                       f"of lot {lot_id})")
    text = chain.lot_text(record)
    return CertificateView(
        exists=record.exists,
        token_id=token_id,
        lot_id=record.lot_id,
        serial=record.serial,
        owner=record.holder,
        state=state_name(record.state),
        locked=record.locked,
        issuer=Party(address=record.issuer, name=record.issuer_name, active=record.issuer_active),
        custodian=Party(address=record.custodian, name=record.custodian_name, active=record.custodian_active),
        lot=LotView(
            lot_id=record.lot_id,
            bottle_count=record.bottle_count,
            vintage=record.vintage,
            volume_ml=record.volume_ml,
            bottling_date=record.bottling_date,
            bottling_date_iso=_iso(record.bottling_date),
            issued_at=record.issued_at,
            issued_at_iso=_iso(record.issued_at),
            metadata_hash="0x" + bytes(record.metadata_hash).hex(),
            tag_root="0x" + bytes(record.tag_root).hex(),
            producer=text.producer if text else None,
            wine=text.wine if text else None,
            region=text.region if text else None,
            metadata_uri=text.metadata_uri if text else None,
        ),
        verification_url=f"{settings.public_base_url.rstrip('/')}/verify/{token_id}",
    )


def _tag_check(chain: ChainService, token_id: int, tag: str, proof_text: str | None) -> TagCheck:
    try:
        tag = checksum_address(tag)
    except ValueError as err:
        raise InvalidRequest(f"tag: {err}") from err
    try:
        proof = parse_proof(proof_text or "")
    except ValueError as err:
        raise InvalidRequest(f"proof: {err}") from err
    return TagCheck(tag=tag, valid=chain.verify_tag(token_id, tag, proof))


@router.get(
    "/{token_id}",
    response_model=CertificateView,
    summary="Verify one certificate",
    responses=error_responses(*_ERRORS),
)
def get_certificate(
    token_id: TokenIdPath,
    chain: ChainDep,
    settings: SettingsDep,
    tag: TagQuery = None,
    proof: ProofQuery = None,
) -> CertificateView:
    """Whether the certificate exists, who holds it, what state it is in, its lot's
    facts (the descriptive strings come from the lot's `LotIssued` event) and who
    issued it and keeps the bottle. With `tag` (and `proof`), also whether that tag
    is this bottle's tag commitment. 404 for a token id that was never issued; a
    redeemed certificate answers 200 with `exists: false` and state `redeemed`."""
    if proof is not None and tag is None:
        raise InvalidRequest("proof: given without tag")
    view = certificate_view(chain, settings, token_id)
    if tag is not None:
        view.tag_check = _tag_check(chain, token_id, tag, proof)
    return view


@page_router.get(
    "/{token_id}",
    response_class=HTMLResponse,
    summary="Consumer verification page (HTML)",
    responses={
        200: {"description": "The certificate's page.",
              "content": {"text/html": {"schema": {"type": "string"}}}},
        **error_responses(*_ERRORS, html=True),
    },
)
def verify_page(token_id: TokenIdPath, chain: ChainDep, settings: SettingsDep) -> HTMLResponse:
    """A self-contained page (no scripts, no external assets) for someone who
    scanned a bottle's QR code: genuine or not, the wine, bottle n of N, the
    holder, the state (with a warning unless active), custodian and issuer."""
    view = certificate_view(chain, settings, token_id)
    return HTMLResponse(pages.certificate_page(view), headers={"Cache-Control": "no-store"})
