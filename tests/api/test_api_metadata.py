"""GET /metadata/{token_id} (the tokenURI target) and GET /lots/{lot_id}/metadata.json."""

from __future__ import annotations

import json
from urllib.parse import urlparse

import pytest
from eth_utils import keccak

from amphora import lots

#: The API fixtures (apps and clients on the test deployment).
pytest_plugins = ["api_fixtures"]

LOT = {
    "producer": "Domaine Test", "wine": "Cuvée Essai", "region": "Pauillac AOC", "bottle_count": 4,
    "volume_ml": 750, "bottling_date": 1_717_200_000, "vintage": 2019, "metadata_uri": "ipfs://doc",
    "grape": "Merlot",
}


@pytest.fixture
def issued(cert, winery, custodian):
    description = lots.LotDescription.from_mapping({**LOT, "custodian": custodian.address})
    return lots.issue(cert, winery, description)


def test_token_uri__served_by_the_api_as_nft_metadata(client, cert, issued, public_base_url):
    token = lots.token_id(issued.lot_id, 3)
    uri = cert.tokenURI(token)
    assert uri.startswith(public_base_url + "/metadata/")

    response = client.get(urlparse(uri).path)

    assert response.status_code == 200
    body = response.json()
    assert body["name"] == "Cuvée Essai 2019 — bottle 3 of 4"
    assert body["external_url"] == f"{public_base_url}/verify/{token}"
    traits = {a["trait_type"]: a["value"] for a in body["attributes"]}
    assert traits["Producer"] == "Domaine Test" and traits["Vintage"] == "2019"
    assert traits["Bottle"] == 3 and traits["Bottles in lot"] == 4 and traits["State"] == "active"
    assert traits["Custodian"] == "Cave Test"


def test_token_metadata__flagged__state_attribute_says_so(client, cert, issued, winery):
    token = lots.token_id(issued.lot_id, 1)
    cert.flag(token, b"\x01" * 32, sender=winery)
    traits = {a["trait_type"]: a["value"] for a in client.get(f"/metadata/{token}").json()["attributes"]}
    assert traits["State"] == "flagged"


def test_token_metadata__never_issued__404(client, issued):
    response = client.get(f"/metadata/{lots.token_id(issued.lot_id, 5)}")
    assert response.status_code == 404
    assert response.json()["error"] == "not_found"


def test_lot_document__deposited__served_byte_for_byte_matching_chain(make_client, cert, issued, tmp_path):
    lots.write_document(tmp_path / f"lot-{issued.lot_id}.json", issued.metadata)
    client = make_client(documents_dir=tmp_path)

    response = client.get(f"/lots/{issued.lot_id}/metadata.json")

    assert response.status_code == 200
    assert keccak(response.content) == cert.lot(issued.lot_id).metadata_hash
    assert json.loads(response.content)["grape"] == "Merlot"


def test_lot_document__tampered__409_and_not_served(make_client, issued, tmp_path):
    forged = {**issued.metadata, "vintage": 1945}
    lots.write_document(tmp_path / f"lot-{issued.lot_id}.json", forged)
    response = make_client(documents_dir=tmp_path).get(f"/lots/{issued.lot_id}/metadata.json")
    assert response.status_code == 409
    assert response.json()["error"] == "document_mismatch"
    assert "1945" not in response.text


def test_lot_document__not_deposited__404(make_client, issued, tmp_path):
    response = make_client(documents_dir=tmp_path).get(f"/lots/{issued.lot_id}/metadata.json")
    assert response.status_code == 404
    assert "no metadata document" in response.json()["detail"]


@pytest.mark.parametrize("lot_id", ["0", "999999", str(2**64)])
def test_lot_document__unknown_lot__404(make_client, tmp_path, lot_id):
    response = make_client(documents_dir=tmp_path).get(f"/lots/{lot_id}/metadata.json")
    assert response.status_code == 404


def test_lot_document__garbage_id__422(client):
    assert client.get("/lots/abc/metadata.json").status_code == 422
