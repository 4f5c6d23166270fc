"""The consumer verification page: what a person who scanned a bottle reads.

:func:`certificate_page` turns the same :class:`~api.schemas.CertificateView` the JSON
API answers (plus the lot's version 2 document when there is one, and the names of the
parties on chain) into the page's content: the headline of the bottle's state, the
facts printed on the label (wine, producer, vintage, lot code, "bottle 12 of 1,000", the
GS1 serial), who holds it by name, and its history in words, newest first. The words
themselves are in the templates (``web/templates/verify.html``), translated by the
catalogs ``web/locales/*/LC_MESSAGES/verify.po``.

Nothing here reads the chain: the route gathers what the page needs and this module
only arranges it.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any

from babel.numbers import format_decimal
from eth_utils import keccak

from amphora import gs1
from web.render import LAST_SHOWN_TIME, Page, page_for, respond

if TYPE_CHECKING:
    from starlette.requests import Request
    from starlette.responses import HTMLResponse

    from api.schemas import CertificateView, HistoryEntry

ZERO = "0x" + "00" * 20
#: The newest history entries the page shows (the JSON view has them all).
HISTORY_ON_PAGE = 12
#: Schemes a page may link to (a document URI from the chain is anyone's text).
LINK_SCHEMES = ("https://", "http://", "ipfs://", "ar://")
#: Images the page may embed from the lot document itself.
_DATA_IMAGE = re.compile(r"^data:image/(png|jpeg|webp|svg\+xml);base64,[A-Za-z0-9+/=]+$")


def short(address: str | None) -> str:
    """``0x15d3…9a0b``: an address only when no name is known."""
    if not address:
        return "—"
    return f"{address[:6]}…{address[-4:]}"


def safe_link(uri: str | None) -> str | None:
    """``uri`` if a page may link to it (no ``javascript:``, no ``data:``), else None."""
    if uri and uri.strip().lower().startswith(LINK_SCHEMES) and not any(c.isspace() for c in uri):
        return uri.strip()
    return None


# ------------------------------------------------------------------ the lot document


#: path => ((mtime, size, expected hash), parsed document or None).
_documents: dict[str, tuple[tuple[int, int, str], dict[str, Any] | None]] = {}


def lot_document(path: Path, metadata_hash: str) -> dict[str, Any] | None:
    """The lot's version 2 document at ``path`` if its keccak256 is the lot's on-chain
    ``metadata_hash`` (an edited document is not believed); None otherwise. Read once
    per change of the file."""
    try:
        stat = os.stat(path)
    except OSError:
        return None
    stamp = (stat.st_mtime_ns, stat.st_size, metadata_hash.lower())
    cached = _documents.get(str(path))
    if cached is not None and cached[0] == stamp:
        return cached[1]
    doc: dict[str, Any] | None = None
    try:
        body = path.read_bytes()
        if "0x" + keccak(body).hex() == metadata_hash.lower():
            parsed = json.loads(body)
            doc = parsed if isinstance(parsed, dict) and parsed.get("document_version") == 2 else None
    except (OSError, ValueError):
        doc = None
    if len(_documents) > 10_000:
        _documents.clear()
    _documents[str(path)] = (stamp, doc)
    return doc


@dataclass(frozen=True)
class Label:
    """What the label says, from the lot document (version 2 when there is one)."""

    wine: str
    lot_code: str | None = None
    gs1_serial: str | None = None
    grapes: list[str] = field(default_factory=list)
    alcohol: float | None = None
    image_src: str | None = None  # embedded: same origin or data the document carries
    image_link: str | None = None  # elsewhere: linked, never loaded by the page
    contact: dict[str, str] | None = None


def _image(doc: dict[str, Any], public_base_url: str) -> tuple[str | None, str | None]:
    image = doc.get("label_image")
    uri = str(image.get("uri", "")) if isinstance(image, dict) else ""
    if _DATA_IMAGE.match(uri):
        return uri, None
    base = public_base_url.rstrip("/")
    if base and uri.startswith(base + "/"):
        return uri[len(base):], None  # this origin: a path, so it loads wherever the page is served
    return None, safe_link(uri)


def label(view: CertificateView, doc: dict[str, Any] | None, language: str, public_base_url: str) -> Label:
    """The label's facts in ``language`` (the document's translation of the wine's name)."""
    wine = view.lot.wine or ""
    if doc is None:
        return Label(wine=wine)
    translations = doc.get("translations") if isinstance(doc.get("translations"), dict) else {}
    translated = translations.get(language) if isinstance(translations, dict) else None
    if isinstance(translated, dict) and translated.get("wine"):
        wine = str(translated["wine"])
    serial = None
    try:
        serial = gs1.gs1_serial(str(doc["serial_salt"]), view.serial)
    except (KeyError, ValueError):
        serial = None
    contact = doc.get("producer_contact")
    contact_text = None
    if isinstance(contact, dict):
        contact_text = {key: str(contact[key]) for key in ("name", "address", "email", "phone") if contact.get(key)}
        website = safe_link(str(contact.get("website") or ""))
        if website and website.startswith("https://"):
            contact_text["website"] = website
    grapes = doc.get("grape_varieties")
    alcohol = doc.get("alcohol_percent")
    src, link = _image(doc, public_base_url)
    return Label(
        wine=wine, lot_code=str(doc["lot_code"]) if doc.get("lot_code") else None, gs1_serial=serial,
        grapes=[str(g) for g in grapes] if isinstance(grapes, list) else [],
        alcohol=float(alcohol) if isinstance(alcohol, int | float) else None,
        image_src=src, image_link=link, contact=contact_text or None)


# ------------------------------------------------------------------ money and history


@dataclass(frozen=True)
class Money:
    """A token amount for people: ``1,250.00 USDC``, never base units."""

    symbol: str
    decimals: int

    def format(self, amount: int | str, page: Page) -> str:
        value = Decimal(int(amount)).scaleb(-self.decimals)
        return f"{format_decimal(value, format='#,##0.00', locale=page.locale)} {self.symbol}"


@dataclass(frozen=True)
class Event:
    """One line of the bottle's story: ``kind`` picks its sentence in the template."""

    kind: str
    time: int | None
    block: int
    tx_hash: str
    values: dict[str, Any] = field(default_factory=dict)

    @property
    def iso(self) -> str:
        """The day of the event for ``<time datetime>``."""
        return datetime.fromtimestamp(min(self.time or 0, LAST_SHOWN_TIME - 1), tz=UTC).date().isoformat()


#: Events that repeat what another event of the same transaction says better.
_COVERED_BY = {"Transfer": ("GiftClaimed", "LoanForeclosed", "CertificateRedeemed"),
               "CertificatePledged": ("LoanStarted",), "CertificateReleased": ("LoanRepaid", "LoanForeclosed")}
#: Contract events the story leaves out (echoes, approvals, bookkeeping of loans).
_QUIET = ("Approval", "ConsecutiveTransfer", "SuccessorIssuerNamed", "AppraisalPosted", "RepaymentHeld",
          "RepaymentRefused", "LoanClockRestarted")


def story(history: list[HistoryEntry], name: Callable[[str | None], str], money: Money | None,
          page: Page) -> list[Event]:
    """The bottle's history in words, oldest first: one :class:`Event` per thing that
    happened to it, with the parties by name (``name``) and amounts as money."""
    by_tx: dict[str, set[str]] = {}
    for entry in history:
        by_tx.setdefault(entry.tx_hash, set()).add(entry.event)
    events: list[Event] = []
    for entry in history:
        a = entry.args
        covered = _COVERED_BY.get(entry.event, ())
        if entry.event in _QUIET or by_tx[entry.tx_hash] & set(covered):
            continue
        kind: str | None = entry.event
        values: dict[str, Any] = {}
        if entry.event == "LotIssued":
            values = {"issuer": name(a.get("issuer")), "custodian": name(a.get("custodian"))}
        elif entry.event == "Transfer":
            if a.get("sender") == ZERO or a.get("receiver") == ZERO:
                continue  # issuance and the burn of a redemption have their own lines
            values = {"to": name(a.get("receiver"))}
        elif entry.event == "GiftCreated":
            values = {"expiry": page.date(int(a["expiry"]))}
        elif entry.event == "GiftClaimed":
            values = {"to": name(a.get("recipient"))}
        elif entry.event in ("RedemptionRequested", "RedemptionRejected", "CertificateRedeemed"):
            values = {"custodian": name(a.get("custodian"))}
        elif entry.event == "CertificateFlagged":
            values = {"by": name(a.get("by"))}
        elif entry.event == "LoanStarted":
            values = {"due": page.date(int(a["due_at"])), "lender": name(a.get("lender")),
                      "amount": money.format(a["principal"], page) if money else None}
        elif entry.event == "LoanExtended":
            values = {"due": page.date(int(a["due_at"]))}
        elif entry.event == "LoanForeclosed":
            values = {"lender": name(a.get("lender"))}
        elif entry.event == "CustodyMoved":
            values = {"custodian": name(a.get("custodian"))}
        elif entry.event == "StorageAttested":
            values = {"custodian": name(a.get("custodian")), "report": safe_link(str(a.get("document_uri", "")))}
        elif entry.event == "ReserveRootPosted":
            values = {"custodian": name(a.get("custodian")), "count": page.number(int(a["bottle_count"])),
                      "list": safe_link(str(a.get("tree_uri", "")))}
        elif entry.event not in ("GiftRevoked", "FlagCleared", "CertificatePledged", "CertificateReleased",
                                 "LoanRepaid"):
            kind = None  # an event this page has no sentence for: the JSON history has it
        if kind is not None:
            events.append(Event(kind, entry.block_time, entry.block_number, entry.tx_hash, values))
    return events


def _latest(history: list[HistoryEntry], event: str) -> HistoryEntry | None:
    found = [entry for entry in history if entry.event == event]
    return found[-1] if found else None


# ------------------------------------------------------------------ the page


def headline_state(view: CertificateView) -> str:
    """The page's state: the contract's, with ``unsold`` for an active bottle its issuer
    still holds and ``copied`` for an active bottle whose code is checked too widely."""
    state = view.state.value
    if state == "active":
        if view.scans is not None and "burst" in view.scans.anomalies:
            return "copied"
        if view.owner and view.owner.lower() == view.issuer.address.lower():
            return "unsold"
    return state


def certificate_page(request: Request, view: CertificateView, *, doc: dict[str, Any] | None,
                     names: dict[str, str], money: Money | None, block_time: int | None,
                     public_base_url: str) -> HTMLResponse:
    """The page of a certificate that was issued, in any state."""
    page = page_for(request)
    known = {address.lower(): text for address, text in names.items() if text}

    def name(address: str | None) -> str:
        if not address:
            return "—"
        return known.get(address.lower()) or short(address)

    history = list(view.history)
    flagged = _latest(history, "CertificateFlagged") if view.state.value == "flagged" else None
    loan = _latest(history, "LoanStarted") if view.state.value == "pledged" else None
    bottled = Event("Bottled", view.lot.bottling_date, 0, "", {"producer": view.lot.producer or name(
        view.issuer.address)})
    events = [bottled, *story(history, name, money, page)]
    return respond(
        "verify.html", page, headers={"Cache-Control": "no-store"},
        view=view, state=headline_state(view), name=name, label=label(view, doc, page.language, public_base_url),
        holder=name(view.owner),
        issuer=name(view.issuer.address), custodian=name(view.custodian.address),
        events=list(reversed(events))[:HISTORY_ON_PAGE], more_history=len(events) > HISTORY_ON_PAGE,
        flagged_at=flagged.block_time if flagged else None,
        loan_amount=money.format(loan.args["principal"], page) if loan and money else None,
        loan_due=int(loan.args["due_at"]) if loan else None,
        report=safe_link(view.custody.storage_document_uri) if view.custody else None,
        reserve_list=safe_link(_reserve_uri(history, view)), block_time=block_time,
    )


def _reserve_uri(history: list[HistoryEntry], view: CertificateView) -> str | None:
    """Where the custodian's latest reserve list is (its ``ReserveRootPosted`` event)."""
    if view.custody is None or view.custody.reserve_root is None:
        return None
    root = view.custody.reserve_root.lower()
    for entry in reversed(history):
        if entry.event == "ReserveRootPosted" and entry.args.get("root", "").lower() == root:
            return str(entry.args.get("tree_uri", "")) or None
    return None


def error_page(request: Request, status: int) -> HTMLResponse:
    """A page that cannot show a certificate, in words for consumers: only a never
    issued certificate (404) says the bottle may not be genuine; an unreadable code
    (422) and an unavailable service (503) say nothing about the bottle."""
    page = page_for(request)
    verify = request.url.path.startswith("/verify/")
    if status == 404:
        kind = "never_issued" if verify else "not_found"
    elif status in (400, 422):
        kind = "unreadable" if verify else "bad_request"
    elif status >= 500:
        kind = "unavailable"
    else:
        kind = "bad_request"
    return respond("verify_error.html", page, status_code=status, headers={"Cache-Control": "no-store"},
                   kind=kind)

