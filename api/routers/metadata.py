"""Metadata: ``GET /metadata/{token_id}`` (what the certificate's ``tokenURI``
points at) and ``GET /lots/{lot_id}/metadata.json`` (the lot's metadata
document, served only if it hashes to the lot's on-chain ``metadata_hash``)."""

from __future__ import annotations

from typing import Annotated

from eth_utils import keccak
from fastapi import APIRouter, Path
from fastapi.responses import Response

from amphora.lots import LOT_DOCUMENT_V2, canonical_json, lot_document_schema, token_id
from api.deps import ChainDep, IndexDep, SettingsDep
from api.errors import DocumentMismatch, InvalidRequest, NotDeployed, NotFound, UpstreamUnavailable, error_responses
from api.routers.certificates import TokenIdPath, certificate_view
from api.schemas import MetadataAttribute, TokenMetadata, Uint256In

router = APIRouter(tags=["metadata"])

_ERRORS = (NotFound, InvalidRequest, UpstreamUnavailable, NotDeployed)


@router.get(
    "/metadata/{token_id}",
    response_model=TokenMetadata,
    response_model_exclude_none=True,
    summary="NFT metadata of a certificate (its tokenURI)",
    responses=error_responses(*_ERRORS),
)
def token_metadata(token_id: TokenIdPath, chain: ChainDep, index: IndexDep, settings: SettingsDep) -> TokenMetadata:
    """The certificate as NFT metadata: name, description, the verification page
    as `external_url`, and the lot's facts and the certificate's state as
    `attributes`. Built from the chain and the index on every request (nothing
    per token is stored on chain or here). 404 for a token id that was never issued."""
    view = certificate_view(chain, index, settings, token_id)
    lot = view.lot
    wine = lot.wine or f"Lot {lot.lot_id}"
    vintage = str(lot.vintage) if lot.vintage else "NV"
    attributes = [
        MetadataAttribute(trait_type="Producer", value=lot.producer or ""),
        MetadataAttribute(trait_type="Wine", value=wine),
        MetadataAttribute(trait_type="Vintage", value=vintage),
        MetadataAttribute(trait_type="Region", value=lot.region or ""),
        MetadataAttribute(trait_type="Volume (ml)", value=lot.volume_ml, display_type="number"),
        MetadataAttribute(trait_type="Lot", value=str(lot.lot_id)),
        MetadataAttribute(trait_type="Bottle", value=view.serial, display_type="number"),
        MetadataAttribute(trait_type="Bottles in lot", value=lot.bottle_count, display_type="number"),
        MetadataAttribute(trait_type="Bottling date", value=lot.bottling_date, display_type="date"),
        MetadataAttribute(trait_type="Custodian", value=view.custodian.name),
        MetadataAttribute(trait_type="State", value=view.state.value),
    ]
    return TokenMetadata(
        name=f"{wine} {vintage} — bottle {view.serial} of {lot.bottle_count}",
        description=(f"Digital certificate of one {lot.volume_ml} ml bottle of {wine} {vintage}"
                     f"{' by ' + lot.producer if lot.producer else ''}, issued by {view.issuer.name} and kept by "
                     f"{view.custodian.name}. Verify it at {view.verification_url}."),
        external_url=view.verification_url,
        attributes=attributes,
    )


@router.get(
    "/lots/{lot_id}/metadata.json",
    summary="A lot's metadata document",
    responses={
        200: {"description": "The document, byte for byte as hashed on chain.",
              "content": {"application/json": {"schema": {"type": "object"}}}},
        **error_responses(*_ERRORS, DocumentMismatch),
    },
)
def lot_document(
    lot_id: Annotated[Uint256In, Path(description="Decimal lot id.")], chain: ChainDep, settings: SettingsDep,
) -> Response:
    """The metadata document the issuer published for a lot, byte for byte, so
    that `keccak256(body)` equals the lot's on-chain `metadata_hash` (the API
    checks this before serving; a mismatch is 409 and nothing is served). 404
    when the lot does not exist or no document was deposited for it."""
    if lot_id == 0 or lot_id >= 2**64:
        raise NotFound(f"lot {lot_id} does not exist")
    record = chain.certificate(token_id(lot_id, 1))
    if not record.issued:
        raise NotFound(f"lot {lot_id} does not exist")
    path = settings.lot_document_path(chain.chain_id, lot_id)
    try:
        body = path.read_bytes()
    except FileNotFoundError as err:
        raise NotFound(f"no metadata document was deposited for lot {lot_id}") from err
    if keccak(body) != bytes(record.metadata_hash):
        raise DocumentMismatch(f"the document kept for lot {lot_id} does not match its on-chain metadata_hash")
    return Response(body, media_type="application/json", headers={"Cache-Control": "public, max-age=300"})


@router.get(
    f"/schemas/{LOT_DOCUMENT_V2}",
    summary="The JSON Schema of lot documents, version 2",
    responses={200: {"description": "The schema (JSON Schema draft 2020-12).",
                     "content": {"application/schema+json": {"schema": {"type": "object"}}}}},
)
def lot_document_schema_v2() -> Response:
    """The schema that every version 2 lot document is validated against at issuance
    (GTIN check digits and the nutrition rules a schema cannot state are checked as well)."""
    body = canonical_json(lot_document_schema())
    return Response(body, media_type="application/schema+json", headers={"Cache-Control": "public, max-age=3600"})
