"""Lot documents version 2: the JSON Schema, the rules beside it, issuance, and version 1 still issuing."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
from eth_utils import keccak

from amphora import gs1, lots
from amphora.demo import EXAMPLE_LOT

V2 = json.loads(EXAMPLE_LOT.read_text())


def v2(**changes) -> dict:
    data = copy.deepcopy(V2)
    data.update(changes)
    return data


def nutrition(**changes) -> dict:
    return v2(nutrition_per_100ml={**V2["nutrition_per_100ml"], **changes})


def test_demo_lot__is_v2_with_a_check_digit_valid_gtin_under_prefix_952():
    lot = lots.LotDescription.from_file(EXAMPLE_LOT)
    doc = lot.metadata_document()
    assert lots.is_v2(doc)
    assert gs1.validate_gtin(doc["gtin"]) == doc["gtin"] and doc["gtin"][1:4] == gs1.DEMO_PREFIX
    assert set(doc["translations"]) >= {"en", "zh-CN", "fr"}


def test_v2__without_salt__a_fresh_salt_is_committed_in_the_document():
    first = lots.LotDescription.from_mapping(v2()).metadata_document()
    second = lots.LotDescription.from_mapping(v2()).metadata_document()
    assert first["serial_salt"] != second["serial_salt"]
    assert lots.metadata_hash(first) == keccak(lots.canonical_json(first))


@pytest.mark.parametrize(("changes", "field"), [
    ({"gtin": "09520001000004"}, "gtin"),                        # check digit
    ({"gtin": "0952000100000"}, "gtin"),                         # 13 digits
    ({"lot_code": "L" * 21}, "lot_code"),                        # over 20 characters
    ({"lot_code": "LOT 1"}, "lot_code"),                         # space is not in character set 82
    ({"lot_code": "LOT~1"}, "lot_code"),
    ({"translations": {"en": V2["translations"]["en"], "fr": V2["translations"]["fr"]}}, "translations"),
    ({"allergens": ["sulfur"]}, "allergens/0"),
    ({"eu_market": "yes"}, "eu_market"),
    ({"producer_contact": {"name": "D", "address": "A", "website": "http://insecure.example"}},
     "producer_contact/website"),
    ({"serial_salt": "0x1234"}, "serial_salt"),
    ({"grape_varieties": []}, "grape_varieties"),
])
def test_v2__invalid_field__refused_naming_the_field(changes, field):
    with pytest.raises(lots.LotFileError, match=f"^{field}: "):
        lots.LotDescription.from_mapping(v2(**changes))


@pytest.mark.parametrize(("changes", "message"), [
    ({"fat": 0.3}, "fat"),                          # negligible: must be declared as 0 or "<0.5"
    ({"saturates": 0.05}, "saturates"),
    ({"salt": 0.004}, "salt"),
    ({"energy_kj": 500}, "kJ is not"),              # 77 kcal is 322 kJ
    ({"fat": 0.6, "saturates": 0.9}, "saturates"),
    ({"carbohydrate": "<0.5", "sugars": 0.6}, "sugars"),
    ({"fibre": 1}, "nutrition_per_100ml"),          # no fields beyond the declaration
])
def test_v2__nutrition_breaking_the_rules__refused(changes, message):
    with pytest.raises(lots.LotFileError, match=message):
        lots.LotDescription.from_mapping(nutrition(**changes))


@pytest.mark.parametrize("changes", [
    {"fat": "<0.5", "saturates": "<0.1", "sugars": 0, "salt": 0},
    {"fat": 0.5, "saturates": 0.1, "carbohydrate": 0.5, "sugars": "<0.5", "protein": 0.5, "salt": 0.01},
])
def test_v2__negligible_amounts_declared_as_the_rules_allow__accepted(changes):
    doc = lots.LotDescription.from_mapping(nutrition(**changes)).metadata_document()
    assert doc["nutrition_per_100ml"]["fat"] == changes["fat"]


def test_v2__unknown_document_version__refused():
    with pytest.raises(lots.LotFileError, match="document_version"):
        lots.LotDescription.from_mapping(v2(document_version=3))


def test_v1__document_without_version__issues_as_before():
    data = {k: V2[k] for k in ("producer", "wine", "region", "bottle_count", "volume_ml", "bottling_date",
                               "custodian", "vintage")}
    doc = lots.LotDescription.from_mapping({**data, "grape": "Merlot"}).metadata_document()
    assert "document_version" not in doc and doc["grape"] == "Merlot"


def test_schema__is_a_valid_draft_2020_12_schema_and_accepts_the_demo():
    from jsonschema import Draft202012Validator

    Draft202012Validator.check_schema(lots.lot_document_schema())
    doc = lots.LotDescription.from_file(EXAMPLE_LOT).metadata_document()
    assert not list(Draft202012Validator(lots.lot_document_schema()).iter_errors(doc))


def test_issue__v2_lot__document_hash_on_chain_and_bottles_carry_digital_links(cert, winery, custodian, tmp_path):
    lot = lots.LotDescription.from_mapping(v2(bottle_count=3, custodian=custodian.address))
    issued = lots.issue(cert, winery, lot)
    assert cert.lot(issued.lot_id).metadata_hash == lots.metadata_hash(issued.metadata)

    out = lots.write_bottles(tmp_path / "bottles.json", issued.lot_id, issued.bottles, "https://w.example",
                             issued.metadata)
    rows = json.loads(Path(out).read_text())["bottles"]
    salt = issued.metadata["serial_salt"]
    for row in rows:
        link = gs1.parse_digital_link(row["digital_link"])
        assert (link.gtin, link.lot, link.vintage) == (V2["gtin"], V2["lot_code"], "2019")
        assert gs1.serial_number(salt, link.serial) == row["serial"]
