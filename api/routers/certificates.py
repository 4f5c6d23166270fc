"""Certificate verification: ``GET /certificates/{token_id}`` (JSON) and the
consumer page ``GET /verify/{token_id}`` (HTML) that a bottle's QR code opens."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

from cachetools import TTLCache
from fastapi import APIRouter, Path, Query, Request
from fastapi.responses import HTMLResponse

from amphora import eip712
from amphora.lots import split_token_id
from api.chain import BlockRef, ChainService, node_errors
from api.deps import ChainDep, IndexDep, ScansDep, SettingsDep
from api.errors import InvalidRequest, NotDeployed, NotFound, UpstreamUnavailable, error_responses
from api.routers.index import arg_text, iso
from api.scans import Client, ScanLog, page_client
from api.schemas import (
    ADDRESS_PATTERN,
    CertificateState,
    CertificateView,
    CustodyView,
    FlagView,
    GiftView,
    HistoryEntry,
    LotView,
    Party,
    RedemptionView,
    ScanView,
    TagChallenge,
    TagCheck,
    TagVerification,
    Uint256In,
    checksum_address,
    parse_proof,
    state_name,
)
from api.settings import Settings
from indexer import history as histories
from indexer import holdings
from indexer.reader import IndexReader, IndexStatus
from storage.db import Transaction
from web import verify
from web.verify import Money

#: Most history entries the view carries (the oldest first); the rest are at `GET /certificates/{id}/history`.
VIEW_HISTORY = 100

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


_ZERO_ADDRESS = "0x" + "00" * 20


def _hex(value: bytes) -> str:
    return "0x" + bytes(value).hex()


def _custody_view(record: dict | None, document_uri: str | None) -> CustodyView | None:
    if record is None:
        return None
    attested = int(record["storage_attested_at"])
    posted = int(record["reserve_posted_at"])
    return CustodyView(
        storage_document_hash=_hex(record["storage_document_hash"]) if attested else None,
        storage_attested_at=attested or None,
        storage_attested_by=record["storage_attested_by"] if attested else None,
        storage_document_uri=document_uri if attested else None,
        reserve_root=_hex(record["reserve_root"]) if posted else None,
        reserve_posted_at=posted or None,
        reserve_bottle_count=int(record["reserve_bottle_count"]) if posted else None,
    )


def record_scan(scans: ScanLog, view: CertificateView, client: Client | None = None) -> ScanView:
    """Record a view by ``client`` (``None``: an API read, only summarised) and summarise."""
    summary = scans.record(view.token_id, client, redeemed=view.state == CertificateState.redeemed,
                           flagged=view.state == CertificateState.flagged)
    return ScanView(total=summary.total, recent=summary.recent, day=summary.day,
                    window_seconds=summary.window_seconds, anomalies=summary.anomalies)


def certificate_view(chain: ChainService, index: IndexReader, settings: Settings, token_id: int) -> CertificateView:
    """The verification view of one certificate; :class:`NotFound` if never issued
    (see :func:`certificate_view_at`)."""
    return certificate_view_at(chain, index, settings, token_id)[0]


def certificate_view_at(chain: ChainService, index: IndexReader, settings: Settings,
                        token_id: int) -> tuple[CertificateView, BlockRef]:
    """The verification view of one certificate; :class:`NotFound` if never issued.

    The record, custody and gift clock come from the chain at one block; the
    lot's text, the storage document's URI and the history from the index,
    after waiting (at most ``index_read_wait_seconds``) for it to reach that
    block. The view says how far the index went (`indexed_block`)."""
    block = chain.latest_block_ref()
    record = chain.certificate_at(token_id, block)
    if not record.issued:
        lot_id, serial = split_token_id(token_id)
        raise NotFound(f"certificate {token_id} was never issued (it would be bottle {serial} "
                       f"of lot {lot_id})")
    custody = chain.custody_at(token_id, block)
    chain_id = chain.chain_id
    index.wait_for(chain_id, block.number, settings.index_read_wait_seconds, settings.index_max_lag_blocks)

    def query(tx: Transaction, status: IndexStatus) -> tuple[holdings.LotFacts | None, list[histories.HistoryEntry],
                                                         str | None, str | None]:
        facts = holdings.lot(tx, chain_id, record.lot_id)
        if facts is not None and (facts.metadata_hash.lower() != _hex(record.metadata_hash)
                                  or facts.tag_root.lower() != _hex(record.tag_root)):
            facts = None  # not this chain's lot (the index is of another fork): no text rather than wrong text
        page = histories.history(tx, chain_id, token_id, after=None, limit=VIEW_HISTORY)
        uri = None
        if custody is not None and int(custody["storage_attested_at"]):
            uri = histories.storage_document_uri(tx, chain_id, record.lot_id,
                                                 _hex(custody["storage_document_hash"]))
        return facts, page.items, page.next_cursor, uri

    answer = index.answer(chain_id, query)
    status = answer.status
    facts, entries, more, document_uri = answer.value
    state = state_name(record.state)
    return CertificateView(
        exists=record.exists,
        token_id=token_id,
        lot_id=record.lot_id,
        serial=record.serial,
        owner=record.holder,
        state=state,
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
            metadata_hash=_hex(record.metadata_hash),
            tag_root=_hex(record.tag_root),
            producer=facts.producer if facts else None,
            wine=facts.wine if facts else None,
            region=facts.region if facts else None,
            metadata_uri=facts.metadata_uri if facts else None,
        ),
        flag=FlagView(reason_hash=_hex(record.flag_reason_hash), by_issuer=record.flagged_by_issuer)
        if state == CertificateState.flagged else None,
        gift=GiftView(claim_key=record.gift_claim_key, expiry=record.gift_expiry,
                      expired=record.gift_expiry < block.timestamp)
        if state == CertificateState.gift_pending else None,
        redemption=RedemptionView(
            order_hash=_hex(record.redemption_order_hash),
            redeemed_at=record.redeemed_at or None,
            redeemed_by=record.redeemed_by if record.redeemed_at else None,
        ) if state in (CertificateState.redemption_requested, CertificateState.redeemed)
        else None,
        custody=_custody_view(custody, document_uri),
        history=[HistoryEntry(event=entry.event, block_number=entry.block_number, tx_hash=entry.tx_hash,
                              args={key: arg_text(value) for key, value in entry.args.items()},
                              block_time=entry.block_time, block_time_iso=iso(entry.block_time),
                              summary=entry.summary) for entry in entries],
        history_complete=more is None and (status.indexed_block or -1) >= block.number,
        block_number=block.number,
        indexed_block=status.indexed_block,
        head_block=status.head_block,
        lag=status.lag,
        verification_url=f"{settings.public_base_url.rstrip('/')}/verify/{token_id}",
    ), block


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
    index: IndexDep,
    settings: SettingsDep,
    scans: ScansDep,
    tag: TagQuery = None,
    proof: ProofQuery = None,
) -> CertificateView:
    """Whether the certificate exists, who holds it, what state it is in, its lot's
    facts (the descriptive strings come from the lot's `LotIssued` event), who
    issued it and keeps the bottle, the custodian's latest storage attestation and
    reserve root, the flag, pending gift or redemption when there is one, and the
    certificate's history from its events, and what the verification page's
    scans say (`scans`: distinct clients, with anomalies such as many different
    clients in a short time, or a redeemed or flagged certificate). An API read
    is not itself counted as a scan. With `tag` (and `proof`), also whether
    that tag address is this bottle's tag commitment; a copied QR code carries
    the address too, so for proof of possession use the challenge
    (`POST /certificates/{token_id}/challenge`, then `GET .../verify-tag`).
    404 for a token id that was never issued; a redeemed certificate answers 200
    with `exists: false` and state `redeemed`."""
    if proof is not None and tag is None:
        raise InvalidRequest("proof: given without tag")
    view = certificate_view(chain, index, settings, token_id)
    if tag is not None:
        view.tag_check = _tag_check(chain, token_id, tag, proof)
    view.scans = record_scan(scans, view)
    return view


@router.post(
    "/{token_id}/challenge",
    response_model=TagChallenge,
    summary="A fresh challenge for the bottle's tag",
    responses=error_responses(*_ERRORS),
)
def tag_challenge(token_id: TokenIdPath, chain: ChainDep) -> TagChallenge:
    """A challenge bound to this token id and the newest block. The bottle's tag
    signs `typed_data` with its key (an NFC tag does this when tapped); send the
    signature to `GET /certificates/{token_id}/verify-tag` before
    `valid_until_block`. A genuine tag can answer; a QR code copied onto another
    bottle cannot, because the key never leaves the tag. 404 for a token id never
    issued."""
    record = chain.certificate(token_id)
    if not record.issued:
        raise NotFound(f"certificate {token_id} was never issued")
    number, block_hash = chain.recent_block()
    domain = chain.eip712_domain()
    data = eip712.typed_data("TagChallenge", eip712.tag_challenge_message(token_id, number, block_hash),
                             domain.chain_id, domain.verifying_contract, name=domain.name, version=domain.version)
    message = {key: (_hex(value) if isinstance(value, bytes) else str(value))
               for key, value in data["message"].items()}
    return TagChallenge(token_id=token_id, block_number=number, block_hash=_hex(block_hash),
                        valid_until_block=number + chain.tag_challenge_window(),
                        typed_data={**data, "message": message})


@router.get(
    "/{token_id}/verify-tag",
    response_model=TagVerification,
    summary="Check a tag's answer to a challenge (proof of possession)",
    responses=error_responses(*_ERRORS),
)
def verify_tag(
    token_id: TokenIdPath,
    chain: ChainDep,
    index: IndexDep,
    settings: SettingsDep,
    scans: ScansDep,
    block_number: Annotated[int, Query(ge=0, description="The challenge's `block_number`.")],
    signature: Annotated[str, Query(pattern=r"^0x[0-9a-fA-F]{130}$",
                                    description="The tag's 65-byte EIP-712 signature of the challenge.")],
    proof: ProofQuery = None,
) -> TagVerification:
    """Whether the key that signed the challenge is this bottle's tag: the
    certificate contract recovers the signer of `TagChallenge(tokenId,
    blockNumber, blockHash)`, checks that the block is recent
    (`TAG_CHALLENGE_WINDOW` blocks) and that the signer is the tag commitment
    under the lot's Merkle root with `proof`. A wrong key, a stale challenge, a
    challenge for another token, a proof for another lot and a signature no key
    recovers from (e.g. a high `s`) all answer `valid: false` with the reason.
    Reports the scans (an API read does not count as one). 404 for a token id
    never issued; 422 for a signature that is not 65 bytes of hex, or a
    malformed proof."""
    try:
        proof_items = parse_proof(proof or "")
    except ValueError as err:
        raise InvalidRequest(f"proof: {err}") from err
    view = certificate_view(chain, index, settings, token_id)
    raw = bytes.fromhex(signature[2:])
    latest = chain.latest_block()
    window = chain.tag_challenge_window()
    tag: str | None = None
    reason: str | None = None
    if block_number > latest or latest + 1 - block_number > window:
        reason = (f"the challenge's block {block_number} is not among the last {window} blocks "
                  f"(latest {latest}): ask for a new challenge")
    else:
        tag = chain.recover_tag_signer(token_id, block_number, raw)
        if not chain.verify_tag_signature(token_id, block_number, raw, proof_items):
            reason = ("the signature is not this bottle's tag answering this challenge (a wrong key, a "
                      "challenge for another token, or a proof for another bottle or lot)")
    return TagVerification(token_id=token_id, block_number=block_number, tag=tag, valid=reason is None,
                           reason=reason, scans=record_scan(scans, view))


#: (chain id, address) => the name the admin registered for it ("" for none); names change rarely.
_party_names: TTLCache[tuple[int, str], str] = TTLCache(maxsize=10_000, ttl=60)
#: Event arguments that name a party the page may call by name.
_PARTY_ARGS = ("issuer", "custodian", "previous_custodian", "sender", "receiver", "recipient", "holder", "by",
               "lender")
#: Most names one page view reads from the node: a bottle passed through many hands (on purpose, to
#: slow its page) shows the rest as short addresses until the cache has them.
NAME_READS_PER_VIEW = 16


def party_names(chain: ChainService, view: CertificateView) -> dict[str, str]:
    """The registered names (issuers, custodians) of every address the view shows,
    from the certificate's `party_name`; an address without one maps to ""."""
    names = {view.issuer.address: view.issuer.name, view.custodian.address: view.custodian.name}
    wanted = {address for address in (view.owner, view.custody and view.custody.storage_attested_by,
                                      view.redemption and view.redemption.redeemed_by) if address}
    for entry in view.history:
        wanted |= {entry.args[key] for key in _PARTY_ARGS if entry.args.get(key, "").startswith("0x")}
    reads = 0
    for address in sorted(wanted - set(names)):
        key = (chain.chain_id, address.lower())
        if key not in _party_names:
            reads += 1
            if reads > NAME_READS_PER_VIEW:
                continue
            with node_errors():
                _party_names[key] = str(chain.certificate_contract.functions.party_name(
                    checksum_address(address)).call())
        names[address] = _party_names.get(key, "")
    return names


def _stablecoin(chain: ChainService) -> Money | None:
    token = chain.token("Stablecoin")
    return Money(token.symbol, token.decimals) if token is not None else None


@page_router.get(
    "/{token_id}",
    response_class=HTMLResponse,
    summary="Consumer verification page (HTML)",
    responses={
        200: {"description": "The certificate's page, in English, Simplified Chinese or French (`?lang=`, "
                             "else `Accept-Language`).",
              "content": {"text/html": {"schema": {"type": "string"}}}},
        **error_responses(*_ERRORS, html=True),
    },
)
def verify_page(token_id: TokenIdPath, request: Request, chain: ChainDep, index: IndexDep, settings: SettingsDep,
                scans: ScansDep) -> HTMLResponse:
    """A page (no scripts, no external assets) for someone who scanned a bottle's
    code: whether it is genuine and its state in words, what the label says (wine,
    producer, vintage, lot code, bottle n of N and the GS1 serial, grapes,
    alcohol, the label image), who holds it and keeps it by name, its history
    in words, the storage report and the cellar's inventory to check, and the
    block and time of the check; a warning when many different clients opened
    this code recently (a copied code). In the reader's language: `?lang=`
    (`en`, `zh-CN`, `fr`), else `Accept-Language`. Counts as a scan of one client
    (a salted hash of its network prefix and user agent; repeated views count
    once), except for link-preview bots and scripted clients."""
    view, block = certificate_view_at(chain, index, settings, token_id)
    client = page_client(request.client.host if request.client else None, request.headers.get("user-agent"))
    view.scans = record_scan(scans, view, client)
    doc = verify.lot_document(settings.lot_document_path(chain.chain_id, view.lot_id), view.lot.metadata_hash)
    return verify.certificate_page(request, view, doc=doc, names=party_names(chain, view),
                                   money=_stablecoin(chain), block_time=block.timestamp,
                                   public_base_url=settings.public_base_url)
