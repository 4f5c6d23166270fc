"""The EU e-label: ``GET /e-label/01/{gtin}[/22/{vintage}]/10/{lot}[/21/{serial}]``.

The page the "Ingredients" code of a wine sold in the EU opens (the resolver's default link
for a lot whose document has ``eu_market``): ingredients with the allergens emphasised, the
nutrition declaration per 100 ml, alcohol and producer, in the reader's language
(``?lang=``, else ``Accept-Language``), from the lot's version 2 document.

The address is the lot's GS1 Digital Link under ``/e-label``: it names the lot by what is
printed on the bottle (GTIN and lot code, the same on every chain the lot may be issued
on, unlike a lot id), it is parsed and checked by the same GS1 code as the resolver (a
malformed one is 400, never a page for the wrong lot), and with the bottle's serial it
carries what the page needs to link that bottle's verification page, one tap away.

The regulation forbids tracking the reader, so the page collects nothing: it sets no
cookie, counts no scan (it never touches :mod:`api.scans`), writes nothing anywhere,
loads no third-party asset and runs no script (its policy allows only this origin's
stylesheet), and :class:`UntrackedAccessLog` keeps the client's address and the lot out
of the server's access log for it and for the Digital Link redirects to it.
"""

from __future__ import annotations

import logging
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse

from amphora import gs1
from api.deps import ChainDep, SettingsDep
from api.errors import (
    InvalidRequest,
    MalformedIdentifier,
    NotDeployed,
    NotFound,
    ServiceUnavailable,
    UpstreamUnavailable,
)
from api.routers.resolver import resolve
from web import elabel
from web.render import Page, page_for, respond

router = APIRouter(prefix="/e-label", tags=["e-label"])

PREFIX = "/e-label"
#: The page's policy: nothing but this origin's stylesheets; no script, image, frame, form or base.
CSP = "default-src 'none'; style-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
#: The lot document is fixed by its on-chain hash: a page may be kept for a while, by anyone.
CACHE_OK = "public, max-age=300"

_HTML = {"text/html": {"schema": {"type": "string"}}}
_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {"description": "The e-label in the reader's language.", "content": _HTML},
    400: {"description": f"`{MalformedIdentifier.code}`: the path is not a GS1 Digital Link of a lot (bad check "
                         "digit, qualifiers out of order or missing the lot, a value over 20 characters or outside "
                         "GS1's character set). Served as an HTML page in consumer words.", "content": _HTML},
    404: {"description": f"`{NotFound.code}`: no lot issued here has this GTIN and lot code. Served as an HTML "
                         "page in consumer words.", "content": _HTML},
    422: {"description": f"`{InvalidRequest.code}`: not answered in practice (every parameter is free text, and "
                         "`lang` falls back to the reader's preference); declared because the framework may. Served "
                         "as an HTML page.", "content": _HTML},
    503: {"description": f"`{UpstreamUnavailable.code}`, `{NotDeployed.code}`: the chain cannot be read to check "
                         "the lot document. Served as an HTML page in consumer words.", "content": _HTML},
}

LangQuery = Annotated[str | None, Query(
    description="The language (`en`, `zh-CN`, `fr`): the page's language switch. Without it, the best match of "
    "`Accept-Language`, else English.")]


def _headers(status: int) -> dict[str, str]:
    return {"Content-Security-Policy": CSP, "Cache-Control": CACHE_OK if status == 200 else "no-store"}


def _problem(page: Page, status: int) -> HTMLResponse:
    tone, headline, advice = elabel.PROBLEMS[status]
    return respond("elabel_error.html", page, status_code=status, headers=_headers(status), tone=tone,
                   headline=page.gettext(headline), advice=page.gettext(advice))


def elabel_page(request: Request, chain: ChainDep, settings: SettingsDep) -> HTMLResponse:
    page = page_for(request)
    raw = (request.scope.get("raw_path") or request.url.path.encode()).decode("latin-1")
    page.path = raw  # the switch links this very path: a lot code's encoded "/" must stay encoded
    try:
        link = gs1.parse_digital_link(raw.removeprefix(PREFIX))
    except gs1.GS1Error:
        return _problem(page, 400)
    if link.lot is None:
        return _problem(page, 400)
    try:
        item = resolve(link, chain, settings)
    except NotFound:
        return _problem(page, 404)
    except ServiceUnavailable:
        return _problem(page, 503)
    if item.level == "product":  # the GTIN is known, the lot is not: no e-label of another lot
        return _problem(page, 404)
    verify_url = f"{settings.public_base_url.rstrip('/')}/verify/{item.token}" if item.token is not None else None
    label = elabel.build(item.lot.document, page, verify_url)
    return respond("elabel.html", page, headers=_headers(200), label=label,
                   separator=elabel.SEPARATORS.get(page.language, ", "))


_DOC = """The tracking-free EU e-label of a lot: the wine, its ingredients in the reader's language with the
allergens emphasised and spelled out, the nutrition declaration per 100 ml (energy, fat, of which saturates,
carbohydrate, of which sugars, protein, salt; negligible amounts as `<0.5 g`), alcohol and producer, from the
lot's version 2 document (believed only if it hashes to the lot's on-chain `metadata_hash`). The path is the
lot's GS1 Digital Link; with the bottle's serial (`/21/{serial}`) the page also links that bottle's
verification page. Language from `lang`, else `Accept-Language`. No cookie, no script, no third-party asset,
nothing recorded: the access log gets neither the client's address nor the path."""


@router.get("/01/{gtin}/{qualifiers:path}", summary="The EU e-label of a lot", response_class=HTMLResponse,
            responses=_RESPONSES, description=_DOC)
def elabel_get(gtin: str, qualifiers: str, request: Request, chain: ChainDep, settings: SettingsDep,
               lang: LangQuery = None) -> HTMLResponse:
    return elabel_page(request, chain, settings)


@router.head("/01/{gtin}/{qualifiers:path}", include_in_schema=False)
def elabel_head(gtin: str, qualifiers: str, request: Request, chain: ChainDep, settings: SettingsDep,
                lang: LangQuery = None) -> HTMLResponse:
    return elabel_page(request, chain, settings)


class UntrackedAccessLog(logging.Filter):
    """Keeps readers of the e-label out of uvicorn's access log.

    Uvicorn logs every request as ``(client address, method, path and query, HTTP version,
    status)``. For the e-label, and for the Digital Link paths whose default link is the
    e-label for a lot sold in the EU, the record keeps the method and the status, and loses
    the client's address and the identifiers (``/e-label/…``, ``/01/…``): the log can still
    count errors, never say who opened which wine. Digital Links of other lots are treated
    alike, since the log is written without looking the lot up."""

    PATHS = ("/e-label/", "/01/")

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        if isinstance(args, tuple) and len(args) == 5:
            _client, method, path, version, status = args
            for prefix in self.PATHS:
                if isinstance(path, str) and path.startswith(prefix):
                    record.args = ("-", method, prefix + "…", version, status)
                    break
        return True


def install_access_log_filter(logger_name: str = "uvicorn.access") -> None:
    """Add :class:`UntrackedAccessLog` to uvicorn's access logger (once per process)."""
    logger = logging.getLogger(logger_name)
    if not any(isinstance(existing, UntrackedAccessLog) for existing in logger.filters):
        logger.addFilter(UntrackedAccessLog())
