"""GS1 identifiers: GTIN check digits, AI 10/21/22, Digital Link URIs (against biip), and the
size-hiding serials that anyone holding the lot document can check against a token id."""

from __future__ import annotations

import string
from urllib.parse import quote

import pytest
from biip.gs1_digital_link_uris import GS1DigitalLinkURI
from hypothesis import given, settings
from hypothesis import strategies as st

from amphora import gs1

#: GS1's character set 82 (the AI 10 and AI 21 alphabet).
CSET82 = "!\"%&'()*+,-./0123456789:;<=>?ABCDEFGHIJKLMNOPQRSTUVWXYZ_abcdefghijklmnopqrstuvwxyz"
BASE = "https://wine.example/r"

gtins = st.from_regex(r"\A[0-9]{13}\Z").map(lambda p: p + str(gs1.check_digit(p)))
codes = st.text(alphabet=CSET82, min_size=1, max_size=20)
vintages = st.integers(1000, 2999).map(str)
salts = st.binary(min_size=32, max_size=32).map(lambda b: "0x" + b.hex())
links = st.builds(gs1.DigitalLink, gtin=gtins, lot=st.none() | codes, serial=st.none() | codes,
                  vintage=st.none() | vintages)


def test_cset82__is_the_82_characters_biip_accepts():
    assert len(CSET82) == 82
    for ch in string.printable:
        ok = ch in CSET82
        try:
            gs1.validate_serial(ch)
        except gs1.GS1Error:
            assert not ok, ch
        else:
            assert ok, ch


@given(gtins)
def test_gtin__correct_check_digit__valid(gtin):
    assert gs1.validate_gtin(gtin) == gtin


@given(gtins, st.integers(1, 9))
def test_gtin__any_wrong_check_digit__refused(gtin, delta):
    wrong = gtin[:-1] + str((int(gtin[-1]) + delta) % 10)
    with pytest.raises(gs1.GS1Error, match="check digit"):
        gs1.validate_gtin(wrong)


def test_gtin__known_examples():
    assert gs1.check_digit("0952000100000") == 3
    assert gs1.validate_gtin("9520001000003") == "09520001000003"   # GTIN-13 padded to 14
    assert gs1.demo_gtin("0001000") == "09520001000003"


@given(links)
@settings(max_examples=300)
def test_digital_link__build_then_parse__round_trips(link):
    uri = link.uri(BASE)
    assert gs1.parse_digital_link(uri) == link
    assert gs1.parse_digital_link(link.path()) == link


@given(links)
def test_digital_link__built_uri__biip_reads_the_same_element_strings(link):
    parsed = GS1DigitalLinkURI.parse(link.uri(BASE))
    values = {e.ai.ai: e.value for e in parsed.element_strings}
    expected = {"01": link.gtin, "10": link.lot, "21": link.serial, "22": link.vintage}
    assert values == {k: v for k, v in expected.items() if v is not None}


@pytest.mark.parametrize("dots", [".", ".."])
def test_lot__only_dots__refused_since_no_uri_path_can_carry_it(dots):
    with pytest.raises(gs1.GS1Error, match="path segment of dots"):
        gs1.validate_lot(dots)
    assert gs1.validate_lot(dots + "A") == dots + "A"


@given(codes.filter(lambda c: len(c) < 20), st.sampled_from(" ~#é\t^`{|}[]\\"))
def test_lot__character_outside_set_82__refused(code, bad):
    with pytest.raises(gs1.GS1Error, match="character set 82"):
        gs1.validate_lot(code + bad)


@given(st.text(alphabet=CSET82, min_size=21, max_size=40))
def test_lot_and_serial__over_20_characters__refused(code):
    with pytest.raises(gs1.GS1Error):
        gs1.validate_lot(code)
    with pytest.raises(gs1.GS1Error):
        gs1.validate_serial(code)


@given(gtins, codes, codes)
def test_parse__qualifiers_out_of_order__refused(gtin, lot, serial):
    with pytest.raises(gs1.GS1Error, match="qualifier"):
        gs1.parse_digital_link(f"/01/{gtin}/21/{quote(serial, safe='')}/10/{quote(lot, safe='')}")


@given(gtins, codes, st.sampled_from(["17/261231", "15/250101", "3103/000750"]))
def test_parse__data_attribute_in_the_path__refused(gtin, lot, attribute):
    with pytest.raises(gs1.GS1Error):
        gs1.parse_digital_link(f"/01/{gtin}/10/{quote(lot, safe='')}/{attribute}")


@pytest.mark.parametrize("path", [
    "/", "/10/LOT", "/01/123", "/01/0952000100000X", "/01/09520001000003/10", "/01/09520001000003/10//21/A",
    "/01/09520001000003/22/19/10/A",   # a vintage is a four-digit year
    "/01/09520001000003/99/A",
])
def test_parse__malformed__refused_with_a_reason(path):
    with pytest.raises(gs1.GS1Error) as err:
        gs1.parse_digital_link(path)
    assert str(err.value)


@given(salts, st.integers(0, 2**32 - 1))
def test_serial__maps_back_to_its_bottle_number(salt, number):
    serial = gs1.gs1_serial(salt, number)
    assert len(serial) == gs1.SERIAL_LENGTH
    gs1.validate_serial(serial)
    assert gs1.serial_number(salt, serial) == number


@given(salts)
@settings(max_examples=20)
def test_serial__a_lots_serials_are_distinct_and_not_in_bottle_order(salt):
    serials = [gs1.gs1_serial(salt, n) for n in range(1, 201)]
    assert len(set(serials)) == len(serials)
    assert serials != sorted(serials)


@given(salts, salts, st.integers(1, 1_000_000))
def test_serial__another_lots_salt__gives_another_serial(salt, other, number):
    # A chance of 2**-32 per example that two keys agree on one number.
    if other != salt:
        assert gs1.gs1_serial(other, number) != gs1.gs1_serial(salt, number)


@given(salts, st.text(min_size=0, max_size=9))
def test_serial__not_of_the_issued_form__none(salt, text):
    number = gs1.serial_number(salt, text)
    assert number is None or gs1.gs1_serial(salt, number) == text
