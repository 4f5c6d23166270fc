"""Rendering a page: the Jinja2 environment and what every template receives.

Templates are autoescaped; translatable text is marked with ``{% trans %}`` or
``_("…")`` and looked up in the request's language (:mod:`web.i18n`). Dates, numbers
and money are formatted by Babel in the reader's conventions; dates and times in the
page's time zone (the holder's app passes the reader's, see :mod:`web.app.times`; every
other page, UTC).
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any
from urllib.parse import urlencode
from zoneinfo import ZoneInfo

from babel.dates import format_date, format_datetime
from babel.numbers import format_decimal
from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape
from starlette.requests import Request
from starlette.responses import HTMLResponse

from web import i18n

#: The first Unix time a page does not write as a date: 10000-01-01 (Python's dates end with 9999).
LAST_SHOWN_TIME = 253_402_300_800

ENV = Environment(
    loader=PackageLoader("web", "templates"),
    autoescape=select_autoescape(default=True, default_for_string=True),
    extensions=["jinja2.ext.i18n"],
    undefined=StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
)


class Page:
    """The language-bound helpers of one rendering: ``page.date(ts)`` and friends, in the
    time zone ``tz``; without one, in UTC, which the page's text names where it matters
    (the verification and e-label pages)."""

    def __init__(self, language: str, path: str = "", query: dict[str, str] | None = None,
                 tz: ZoneInfo | None = None) -> None:
        self.language = language
        self.tz = tz or ZoneInfo("UTC")
        self.zone_named = tz is not None
        self.locale = i18n.babel_locale(language)
        self.translations = i18n.translations(language)
        self.path = path
        self.query = {k: v for k, v in (query or {}).items() if k != "lang"}

    def gettext(self, message: str) -> str:
        return self.translations.gettext(message)

    def ngettext(self, singular: str, plural: str, n: int) -> str:
        return self.translations.ngettext(singular, plural, n)

    def date(self, value: int | date | datetime | None, form: str = "long", utc: bool = False) -> str:
        """A day as the reader writes it (``6 December 2026``, ``2026年12月6日``): the day a
        moment falls on in the page's zone (in UTC with ``utc``: a day the page says is
        UTC's). A Unix time past the year 9999 (a holder may set a gift's expiry or a loan's
        due time that far) reads as "a date far in the future" rather than failing the page."""
        if value is None:
            return "—"
        if isinstance(value, int):
            if value >= LAST_SHOWN_TIME:
                return self.gettext("a date far in the future")
            value = datetime.fromtimestamp(max(value, 0), tz=UTC)
        if isinstance(value, datetime):
            value = value.astimezone(UTC if utc else self.tz).date() if value.tzinfo else value.date()
        return format_date(value, format=form, locale=self.locale)

    def datetime(self, value: int | datetime, form: str = "medium") -> str:
        """A moment as the reader writes it, in the page's zone, named when the page has one
        (``Dec 7, 2026, 5:00:00 AM (China Standard Time)``; see :meth:`date` for times past 9999)."""
        if isinstance(value, int):
            if value >= LAST_SHOWN_TIME:
                return self.gettext("a date far in the future")
            value = datetime.fromtimestamp(max(value, 0), tz=UTC)
        when = format_datetime(value, format=form, tzinfo=self.tz, locale=self.locale)
        if not self.zone_named:
            return when
        return f"{when} ({format_datetime(value, format='zzzz', tzinfo=self.tz, locale=self.locale)})"

    def number(self, value: int | float | Decimal) -> str:
        """A number with the reader's grouping (``1,000``, ``1 000``)."""
        return format_decimal(value, locale=self.locale)

    def switch_url(self, language: str) -> str:
        """This page's URL in another language."""
        return f"{self.path}?{urlencode({**self.query, 'lang': language})}"

    def languages(self) -> list[tuple[str, str, str]]:
        """(tag, native name, URL) of every language, for the switch."""
        return [(tag, i18n.NATIVE_NAMES[tag], self.switch_url(tag)) for tag in i18n.LANGUAGES]


def render(template: str, page: Page, **context: Any) -> str:
    """``template`` rendered in ``page``'s language."""
    return ENV.get_template(template).render(
        page=page, lang=page.language, gettext=page.gettext, _=page.gettext, ngettext=page.ngettext, **context)


def page_for(request: Request, tz: ZoneInfo | None = None) -> Page:
    """The rendering of a page for ``request``: its language from ``?lang=`` or
    ``Accept-Language``, its path and query for the language switch, and the time zone
    ``tz`` of its dates (UTC unless given)."""
    language = i18n.negotiate(request.query_params.get("lang"), request.headers.get("accept-language"))
    return Page(language, request.url.path, dict(request.query_params), tz)


def respond(template: str, page: Page, status_code: int = 200, headers: dict[str, str] | None = None,
            **context: Any) -> HTMLResponse:
    """An HTML answer: the page in its language, with ``Content-Language`` and, since the
    language may come from ``Accept-Language``, ``Vary: Accept-Language``."""
    return HTMLResponse(render(template, page, **context), status_code=status_code, headers={
        "Content-Language": page.language, "Vary": "Accept-Language", **(headers or {})})
