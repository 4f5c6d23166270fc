"""Languages of the pages, the choice of one per request, and the message catalogs.

A page's language is, in order: the ``lang`` query parameter (the language switch),
then the best match of the ``Accept-Language`` header, then English. Catalogs are
gettext ``.po`` files under ``web/locales/<babel locale>/LC_MESSAGES/``; every file of
a locale is read (Babel's parser) and compiled in memory once per process.
"""

from __future__ import annotations

import io
from functools import cache
from pathlib import Path

from babel import Locale
from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po
from babel.support import Translations

LOCALES_DIR = Path(__file__).parent / "locales"

#: BCP 47 tag shown to people and used in URLs => Babel locale identifier of its catalog.
LANGUAGES: dict[str, str] = {"en": "en", "zh-CN": "zh_Hans_CN", "fr": "fr"}
DEFAULT = "en"
#: How each language names itself in the switch.
NATIVE_NAMES: dict[str, str] = {"en": "English", "zh-CN": "简体中文", "fr": "Français"}


def _match(tag: str) -> str | None:
    """The supported language a requested tag means (``zh``, ``zh-Hans``, ``zh-CN``,
    ``zh-SG`` => ``zh-CN``; ``fr-BE`` => ``fr``), or None."""
    tag = tag.strip().lower().replace("_", "-")
    if not tag:
        return None
    for supported in LANGUAGES:
        if tag == supported.lower():
            return supported
    primary = tag.split("-")[0]
    if primary == "zh":
        # Traditional script (Taiwan, Hong Kong, Macau, or zh-Hant) is not Simplified Chinese;
        # a reader who asked for it still reads Simplified better than English.
        return "zh-CN"
    return primary if primary in LANGUAGES else None


def parse_accept_language(header: str | None) -> list[str]:
    """The language ranges of an ``Accept-Language`` header, best first (RFC 9110 §12.5.4);
    ranges with ``q=0`` or a malformed weight are dropped."""
    if not header:
        return []
    ranked: list[tuple[float, int, str]] = []
    for position, part in enumerate(header.split(",")[:32]):
        tag, _, params = part.strip().partition(";")
        weight = 1.0
        params = params.strip()
        if params:
            name, _, value = params.partition("=")
            if name.strip().lower() != "q":
                continue
            try:
                weight = float(value)
            except ValueError:
                continue
            if not 0 < weight <= 1:
                continue
        if tag.strip():
            ranked.append((-weight, position, tag.strip()))
    return [tag for _, _, tag in sorted(ranked)]


def negotiate(lang: str | None, accept_language: str | None) -> str:
    """The language of a page: the explicit choice when supported, else the reader's
    best supported preference, else English."""
    if lang:
        chosen = _match(lang)
        if chosen:
            return chosen
    for tag in parse_accept_language(accept_language):
        if tag == "*":
            return DEFAULT
        chosen = _match(tag)
        if chosen:
            return chosen
    return DEFAULT


def babel_locale(language: str) -> Locale:
    """The Babel locale (dates, numbers, plural rules) of a supported language tag."""
    return Locale.parse(LANGUAGES[language])


@cache
def translations(language: str) -> Translations:
    """Every catalog of ``language`` merged, compiled in memory; English is the msgids."""
    merged = Translations()
    folder = LOCALES_DIR / LANGUAGES[language] / "LC_MESSAGES"
    for path in sorted(folder.glob("*.po")):
        with path.open("rb") as handle:
            catalog = read_po(handle, locale=LANGUAGES[language])
        compiled = io.BytesIO()
        write_mo(compiled, catalog)
        compiled.seek(0)
        merged.merge(Translations(compiled))
    return merged
