"""The pages' languages: choosing one per request, and catalogs that cover every message.

The catalog check extracts every translatable message from web/ (templates with Jinja's
extractor, Python with Babel's) the way `pybabel extract` does, and fails on a message
missing or empty in a language, on a placeholder a translation drops or invents, and on
a catalog entry nothing uses any more.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from pathlib import Path

import pytest
from babel.messages.extract import extract_from_dir
from babel.messages.pofile import read_po

from web import i18n
from web.render import ENV, LAST_SHOWN_TIME, Page, render

WEB = Path(i18n.__file__).parent
KEYWORDS = {"_": None, "gettext": None, "ngettext": (1, 2), "N_": None}
METHODS = [("web/templates/**.html", "jinja2.ext:babel_extract"), ("web/**.py", "python")]
PLACEHOLDER = re.compile(r"%\((\w+)\)[sd]|%[sd]|\{\w*\}")


def _extracted() -> dict[str, str]:
    """msgid (singular) => first place it is used."""
    found: dict[str, str] = {}
    mapping = [(pattern.removeprefix("web/"), method) for pattern, method in METHODS]
    for filename, _lineno, message, _comments, _context in extract_from_dir(
            str(WEB), method_map=mapping, keywords=KEYWORDS,
            options_map={"templates/**.html": {"extensions": "jinja2.ext.i18n", "trimmed": "true"}}):
        singular = message[0] if isinstance(message, tuple) else message
        if singular:
            found.setdefault(singular, filename)
    return found


def _catalog(language: str) -> dict[str, str | tuple[str, ...]]:
    entries: dict[str, str | tuple[str, ...]] = {}
    folder = i18n.LOCALES_DIR / i18n.LANGUAGES[language] / "LC_MESSAGES"
    for path in sorted(folder.glob("*.po")):
        with path.open("rb") as handle:
            for message in read_po(handle):
                if message.id:
                    singular = message.id[0] if isinstance(message.id, tuple) else message.id
                    assert singular not in entries, f"{singular!r} is in two catalogs of {language}"
                    entries[singular] = message.string
    return entries


TRANSLATED = [tag for tag in i18n.LANGUAGES if tag != i18n.DEFAULT]


def test_extraction__finds_the_shared_layout_messages():
    found = _extracted()
    assert "Skip to content" in found and "Language" in found


@pytest.mark.parametrize("language", TRANSLATED)
def test_catalog__translates_every_message_of_the_pages(language):
    catalog = _catalog(language)
    missing = {msgid: where for msgid, where in _extracted().items()
               if not catalog.get(msgid) or (isinstance(catalog[msgid], tuple) and not all(catalog[msgid]))}
    assert not missing, f"untranslated in {language}: {missing}"


@pytest.mark.parametrize("language", TRANSLATED)
def test_catalog__keeps_every_placeholder_and_invents_none(language):
    for msgid, translated in _catalog(language).items():
        forms = translated if isinstance(translated, tuple) else (translated,)
        for form in forms:
            assert set(PLACEHOLDER.findall(form)) <= set(PLACEHOLDER.findall(msgid)) | {""}, (msgid, form)
        if forms and len(forms) == 1:
            assert sorted(PLACEHOLDER.findall(forms[0])) == sorted(PLACEHOLDER.findall(msgid)), (msgid, forms[0])


@pytest.mark.parametrize("language", TRANSLATED)
def test_catalog__has_no_entry_that_nothing_uses(language):
    unused = set(_catalog(language)) - set(_extracted())
    assert not unused, f"obsolete entries in {language}: {sorted(unused)}"


@pytest.mark.parametrize(("lang", "header", "expected"), [
    (None, None, "en"),
    (None, "", "en"),
    (None, "zh-CN,zh;q=0.9,en;q=0.8", "zh-CN"),
    (None, "zh-Hans", "zh-CN"),
    (None, "zh-TW", "zh-CN"),
    (None, "fr-BE, en;q=0.5", "fr"),
    (None, "de-DE, fr;q=0.7, en;q=0.8", "en"),
    (None, "de-DE, fr;q=0.9, en;q=0.8", "fr"),
    (None, "en;q=0, fr;q=0.1", "fr"),
    (None, "fr;q=abc, zh", "zh-CN"),
    (None, "*", "en"),
    ("fr", "zh-CN", "fr"),
    ("zh-cn", None, "zh-CN"),
    ("xx", "fr", "fr"),
    ("<script>", None, "en"),
])
def test_negotiate__picks_the_switch_then_the_readers_preference_then_english(lang, header, expected):
    assert i18n.negotiate(lang, header) == expected


def test_parse_accept_language__survives_a_huge_header():
    header = ",".join(f"x{i};q=0.{i % 9 + 1}" for i in range(10_000))
    assert len(i18n.parse_accept_language(header)) <= 32


@pytest.mark.parametrize(("language", "expected"), [
    ("en", "December 6, 2026"), ("fr", "6 décembre 2026"), ("zh-CN", "2026年12月6日")])
def test_page_date__is_in_the_readers_format(language, expected):
    assert Page(language).date(int(datetime(2026, 12, 6, 12, tzinfo=UTC).timestamp())) == expected


@pytest.mark.parametrize(("language", "expected"), [
    ("en", "a date far in the future"), ("fr", "une date très lointaine"), ("zh-CN", "遥远的将来")])
def test_page_date__past_the_year_9999__words_not_an_error(language, expected):
    assert Page(language).date(2**40) == expected and Page(language).datetime(2**64) == expected
    assert "9999" in Page(language).date(LAST_SHOWN_TIME - 1)


@pytest.mark.parametrize(("language", "expected"), [("en", "1,000"), ("fr", "1\u202f000"), ("zh-CN", "1,000")])
def test_page_number__groups_digits_as_the_reader_does(language, expected):
    assert Page(language).number(1000) == expected


def test_render__translates_and_escapes():
    template = ENV.from_string("{{ _('Language') }}|{% trans name=who %}Skip to content{% endtrans %}|{{ who }}")
    text = template.render(gettext=Page("fr").gettext, _=Page("fr").gettext, ngettext=Page("fr").ngettext,
                           who="<b>")
    assert text == "Langue|Aller au contenu|&lt;b&gt;"


def test_switch__keeps_the_query_and_replaces_the_language():
    page = Page("en", "/verify/1", {"lang": "en", "utm": "a&b"})
    urls = dict((tag, url) for tag, _name, url in page.languages())
    assert urls["fr"] == "/verify/1?utm=a%26b&lang=fr"
    assert set(urls) == {"en", "zh-CN", "fr"}


def test_base_layout__renders_the_switch_in_every_language():
    for language in i18n.LANGUAGES:
        html = render("base.html", Page(language, "/x"))
        assert f'<html lang="{language}">' in html
        assert html.count('hreflang=') == len(i18n.LANGUAGES) - 1
