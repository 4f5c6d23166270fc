"""The consumer verification page: one self-contained HTML document per bottle.

A consumer reaches it by scanning the QR code on a bottle. It loads no
external asset and runs no script; every string that comes from the chain or
the request is escaped with :func:`html.escape`.
"""

from __future__ import annotations

import base64
import hashlib
from datetime import UTC, datetime
from html import escape
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from api.schemas import CertificateView, Party

_CSS = """
body{margin:0;font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;background:#f6f3ee;
color:#2b2118;line-height:1.45}
main{max-width:34rem;margin:0 auto;padding:1.25rem}
.banner{border-radius:.6rem;padding:1rem 1.1rem;margin-bottom:1rem;color:#fff}
.banner h1{margin:0;font-size:1.35rem}.banner p{margin:.35rem 0 0}
.ok{background:#2e6b3a}.warn{background:#a8641a}.bad{background:#9b1c1c}.info{background:#5b5b5b}
.card{background:#fff;border-radius:.6rem;padding:1rem 1.1rem;box-shadow:0 1px 3px rgba(0,0,0,.08)}
.card h2{margin:0 0 .2rem;font-size:1.25rem}.sub{margin:0 0 .8rem;color:#6b5a4a}
dl{display:grid;grid-template-columns:max-content 1fr;gap:.35rem .9rem;margin:0}
dt{color:#6b5a4a}dd{margin:0;overflow-wrap:anywhere}
.card+.card{margin-top:1rem}code{font-size:.9em}footer{margin-top:1rem;font-size:.8rem;color:#6b5a4a}
"""

#: The Content-Security-Policy hash source of the page's one inline stylesheet
#: (the only style the API's policy allows, see :mod:`api.security`).
STYLE_HASH = "sha256-" + base64.b64encode(hashlib.sha256(_CSS.encode()).digest()).decode()

#: Shown under every issued certificate: the page vouches for the record, not for the object in hand.
COPY_NOTICE = (
    "A QR code can be copied. This page shows the certificate this code points to; it does not prove that "
    "the bottle in your hands is that bottle. Check that the capsule and label are intact and that the "
    "bottle number above matches the label."
)

#: state name => (banner class, headline, explanation). ``active`` is the genuine, movable case.
_STATE_NOTICES: dict[str, tuple[str, str, str]] = {
    "active": ("ok", "Genuine certificate",
               "This bottle's certificate is registered on chain and in good standing."),
    "gift_pending": ("warn", "Genuine — gift pending",
                     "The holder has offered this certificate as a gift that has not been claimed yet. "
                     "It cannot change hands until the gift is claimed or cancelled."),
    "pledged": ("warn", "Genuine — pledged as collateral",
                "This certificate secures a loan. It cannot be sold, given or redeemed until the loan "
                "is settled. Do not buy this bottle as unencumbered."),
    "redemption_requested": ("warn", "Genuine — redemption requested",
                             "The holder has asked for the physical bottle to be released from the "
                             "cellar. The certificate cannot change hands meanwhile."),
    "redeemed": ("bad", "Redeemed — bottle already released",
                 "This bottle was released from custody to its holder and its certificate was retired. "
                 "If this code is on a sealed bottle offered to you for sale, the label was copied or the "
                 "bottle refilled."),
    "flagged": ("bad", "Reported lost or stolen",
                "This certificate has been reported lost or stolen. Do not buy this bottle; contact the "
                "issuer listed below."),
    "unknown": ("warn", "Genuine — unrecognised state",
                "The certificate is in a state this page does not know. Check with the issuer."),
}


#: The top banner of an active certificate whose code many different clients opened recently.
BURST_NOTICE = ("warn", "Genuine certificate — check this bottle",
                "This certificate is registered on chain and in good standing, but its code has been checked "
                "unusually widely: see below before you buy.")


#: The newest history entries the page shows (from the index, in words).
HISTORY_ON_PAGE = 6


def shorten(address: str | None) -> str:
    if not address:
        return "—"
    return f"{address[:6]}…{address[-4:]}"


def _document(title: str, body: str) -> str:
    return (
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
        "<meta name=\"viewport\" content=\"width=device-width,initial-scale=1\">"
        "<meta name=\"robots\" content=\"noindex\">"
        f"<title>{escape(title)}</title><style>{_CSS}</style></head>"
        f"<body><main>{body}<footer>Amphora digital wine certificates · verified against the "
        "blockchain when this page was served.</footer></main></body></html>\n"
    )


def _date(timestamp: int) -> str:
    return datetime.fromtimestamp(timestamp, tz=UTC).strftime("%Y-%m-%d")


def _party(party: Party) -> str:
    name = escape(party.name) if party.name else "unnamed"
    note = "" if party.active else " <em>(registration revoked)</em>"
    return f"{name} <code title=\"{escape(party.address)}\">{escape(shorten(party.address))}</code>{note}"


def certificate_page(view: CertificateView) -> str:
    """The page for a certificate that was issued (in any state)."""
    lot = view.lot
    css, headline, explanation = _STATE_NOTICES.get(view.state.value, _STATE_NOTICES["unknown"])
    wine = lot.wine or "Unnamed wine"
    vintage = str(lot.vintage) if lot.vintage else "Non-vintage"
    rows = [
        ("Producer", escape(lot.producer or "—")),
        ("Vintage", escape(vintage)),
        ("Region", escape(lot.region or "—")),
        ("Bottle", f"{view.serial} of {lot.bottle_count}"),
        ("Volume", f"{lot.volume_ml} ml"),
        ("Bottled", escape(lot.bottling_date_iso[:10])),
        ("State", escape(view.state.value.replace("_", " "))),
        ("Holder", f"<code title=\"{escape(view.owner or '')}\">{escape(shorten(view.owner))}</code>"),
        ("Custodian", _party(view.custodian)),
        ("Issuer", _party(view.issuer)),
        ("Certificate", f"<code>{escape(str(view.token_id))}</code>"),
    ]
    if view.custody is not None and view.custody.storage_attested_at:
        rows.append(("Storage checked", escape(_date(view.custody.storage_attested_at))))
    details = "".join(f"<dt>{label}</dt><dd>{value}</dd>" for label, value in rows)
    recent = [entry for entry in view.history if entry.summary][-HISTORY_ON_PAGE:]
    history = ""
    if recent:
        items = "".join(
            f"<dt>{escape((entry.block_time_iso or '')[:10] or '—')}</dt><dd>{escape(entry.summary)}</dd>"
            for entry in reversed(recent))
        history = (f"<section class=\"card\"><h2>History</h2><p class=\"sub\">Newest first.</p>"
                   f"<dl>{items}</dl></section>")
    scan_warning = ""
    if view.scans is not None and "burst" in view.scans.anomalies:
        if css == "ok":
            # The record is genuine; the bottle in hand may not be: the banner must not say "all good".
            css, headline, explanation = BURST_NOTICE
        scan_warning = (
            "<section class=\"banner warn\" role=\"alert\"><h1>Many different people checked this code</h1>"
            f"<p>{view.scans.recent} different visitors opened this code in the last "
            f"{view.scans.window_seconds // 60} minutes, and {view.scans.day} in the last 24 hours. The "
            "certificate itself is genuine, but a bottle is normally checked by a few people in its life: this "
            "code may have been copied onto other bottles, and this page cannot tell which bottle is the "
            "original. Ask the seller to prove possession with the bottle's tag.</p></section>")
    body = (
        f"<section class=\"banner {css}\" role=\"status\"><h1>{escape(headline)}</h1>"
        f"<p>{escape(explanation)}</p></section>{scan_warning}"
        f"<section class=\"card\"><h2>{escape(wine)}</h2>"
        f"<p class=\"sub\">{escape(lot.producer or '')} · {escape(vintage)}</p>"
        f"<dl>{details}</dl></section>{history}"
        f"<section class=\"card\"><p class=\"sub\">{escape(COPY_NOTICE)}</p></section>"
    )
    return _document(f"{headline}: {wine}", body)


def error_page(status: int, code: str, detail: str) -> str:
    """The page for a certificate that cannot be shown. Only a 404 says the
    bottle may not be genuine: an unreachable node says nothing about it."""
    if status == 404:
        css, headline = "bad", "No such certificate"
        advice = ("No certificate with this number was ever issued. The bottle may not be genuine: "
                  "check the label and ask the seller or the winery.")
    elif status == 422:
        css, headline = "warn", "Unreadable certificate number"
        advice = "The link does not hold a valid certificate number. Scan the code on the bottle again."
    else:
        css, headline = "info", "Verification is temporarily unavailable"
        advice = "This says nothing about the bottle. Please try again in a few minutes."
    body = (
        f"<section class=\"banner {css}\" role=\"status\"><h1>{escape(headline)}</h1>"
        f"<p>{escape(advice)}</p></section>"
        f"<section class=\"card\"><p class=\"sub\">{escape(detail)}</p>"
        f"<p class=\"sub\">Error <code>{escape(code)}</code> ({status})</p></section>"
    )
    return _document(headline, body)
