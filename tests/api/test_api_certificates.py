"""GET /certificates/{token_id}: the verification view and the tag check."""

from __future__ import annotations

import json

import pytest
from eth_account import Account

from api.schemas import STATE_BY_NUMBER

#: The API fixtures (apps and clients on the test deployment).
pytest_plugins = ["api_fixtures"]


def _proof_param(lot, serial: int) -> str:
    return ",".join("0x" + p.hex() for p in lot.tree.proof(serial))


def test_get_certificate__issued__returns_owner_lot_and_event_strings(
        client, cert, lot, winery, custodian, public_base_url):
    token_id = lot.token(3)
    stored = cert.lot(lot.lot_id)

    response = client.get(f"/certificates/{token_id}")

    assert response.status_code == 200
    body = response.json()
    history = body.pop("history")
    # The index's position: it reached the block the certificate was read at.
    position = {key: body.pop(key) for key in ("block_number", "indexed_block", "head_block", "lag")}
    assert position["indexed_block"] >= position["block_number"] and position["lag"] >= 0
    # The bottle never moved: its history is its lot's issuance (one transaction).
    assert [entry["event"] for entry in history] == ["ConsecutiveTransfer", "LotIssued"]
    assert len({entry["tx_hash"] for entry in history}) == 1
    assert history[0]["args"]["toAddress"] == winery.address
    assert history[1]["summary"] == (f"Lot {lot.lot_id} issued by {winery.address[:6]}…{winery.address[-4:]}: 10 "
                                     f"bottles of Cuvée Essai 2019 from Domaine Test, kept by "
                                     f"{custodian.address[:6]}…{custodian.address[-4:]}")
    assert body == {
        "exists": True,
        "token_id": str(token_id),
        "lot_id": str(lot.lot_id),
        "serial": 3,
        "owner": winery.address,
        "state": "active",
        "locked": False,
        "issuer": {"address": winery.address, "name": "Domaine Test", "active": True},
        "custodian": {"address": custodian.address, "name": "Cave Test", "active": True},
        "lot": {
            "lot_id": str(lot.lot_id),
            "bottle_count": 10,
            "vintage": 2019,
            "volume_ml": 750,
            "bottling_date": 1_717_200_000,
            "bottling_date_iso": "2024-06-01T00:00:00+00:00",
            "issued_at": stored.issued_at,
            "issued_at_iso": response.json()["lot"]["issued_at_iso"],
            "metadata_hash": "0x" + bytes(stored.metadata_hash).hex(),
            "tag_root": "0x" + lot.tree.root.hex(),
            "producer": "Domaine Test",
            "wine": "Cuvée Essai",
            "region": "Pauillac AOC",
            "metadata_uri": "ipfs://bafylot",
        },
        "flag": None,
        "gift": None,
        "redemption": None,
        "custody": {"storage_document_hash": None, "storage_attested_at": None, "storage_attested_by": None,
                    "storage_document_uri": None, "reserve_root": None, "reserve_posted_at": None,
                    "reserve_bottle_count": None},
        "history_complete": True,
        "scans": {"total": 0, "recent": 0, "day": 0, "window_seconds": 600, "anomalies": []},  # API reads don't count
        "verification_url": f"{public_base_url}/verify/{token_id}",
        "tag_check": None,
    }
    assert response.json()["lot"]["issued_at_iso"].endswith("+00:00")


def test_get_certificate__sold__owner_is_holder(client, held_token, holder):
    response = client.get(f"/certificates/{held_token}")

    assert response.status_code == 200
    assert response.json()["owner"] == holder.address
    assert response.json()["serial"] == 2


def test_get_certificate__flagged__state_flagged_and_locked(client, cert, held_token, holder):
    cert.flag(held_token, b"\x01" * 32, sender=holder)

    body = client.get(f"/certificates/{held_token}").json()

    assert body["state"] == "flagged"
    assert body["locked"] is True
    assert body["exists"] is True


def test_get_certificate__issuer_revoked__issuer_inactive(client, cert, token, admin, winery):
    cert.revoke_issuer(winery, sender=admin)

    body = client.get(f"/certificates/{token}").json()

    assert body["issuer"] == {"address": winery.address, "name": "Domaine Test", "active": False}
    assert body["custodian"]["active"] is True


def test_get_certificate__two_lots__each_shows_its_own_strings(client, create_lot):
    first = create_lot(2, wine="Premier Vin", region="Margaux AOC")
    second = create_lot(2, wine="Second Vin", producer="Château Deux", metadata_uri="ipfs://second")

    one = client.get(f"/certificates/{first.token(1)}").json()["lot"]
    two = client.get(f"/certificates/{second.token(2)}").json()["lot"]

    assert (one["wine"], one["region"], one["producer"]) == ("Premier Vin", "Margaux AOC", "Domaine Test")
    assert (two["wine"], two["producer"], two["metadata_uri"]) == ("Second Vin", "Château Deux", "ipfs://second")



def test_state_names__match_contract_constants(cert):
    for number, name in enumerate(STATE_BY_NUMBER):
        assert getattr(cert, name.value.upper())() == number


@pytest.mark.parametrize("case", ["lot never issued", "serial zero", "serial past bottle count"])
def test_get_certificate__never_issued__404(client, lot, case):
    token_id = {
        "lot never issued": ((lot.lot_id + 1) << 32) | 1,
        "serial zero": lot.token(0),
        "serial past bottle count": lot.token(11),
    }[case]

    response = client.get(f"/certificates/{token_id}")

    assert response.status_code == 404
    assert response.json()["error"] == "not_found"
    assert response.json()["detail"].startswith(f"certificate {token_id} was never issued")


@pytest.mark.parametrize("raw", ["abc", "-1", "0x10", "1.5", "1e3", str(2**256)])
def test_get_certificate__malformed_token_id__422(client, raw):
    response = client.get(f"/certificates/{raw}")

    assert response.status_code == 422
    assert response.json()["error"] == "invalid_request"
    assert response.json()["detail"].startswith("token_id: ")


def test_get_certificate__right_tag_and_proof__tag_valid(client, lot):
    tag = lot.tree.tags[2]

    response = client.get(f"/certificates/{lot.token(3)}", params={"tag": tag, "proof": _proof_param(lot, 3)})

    assert response.status_code == 200
    assert response.json()["tag_check"] == {"tag": tag, "valid": True}


def test_get_certificate__lowercase_tag__accepted_and_checksummed(client, lot):
    tag = lot.tree.tags[2]

    response = client.get(f"/certificates/{lot.token(3)}",
                          params={"tag": tag.lower(), "proof": _proof_param(lot, 3)})

    assert response.json()["tag_check"] == {"tag": tag, "valid": True}


@pytest.mark.parametrize("case", ["tag of another bottle", "proof of another bottle", "unknown tag",
                                  "right tag on another serial", "no proof"])
def test_get_certificate__wrong_tag_proof_or_serial__tag_invalid(client, lot, case):
    serial, tag, proof = {
        "tag of another bottle": (3, lot.tree.tags[3], _proof_param(lot, 3)),
        "proof of another bottle": (3, lot.tree.tags[2], _proof_param(lot, 4)),
        "unknown tag": (3, Account.create().address, _proof_param(lot, 3)),
        "right tag on another serial": (4, lot.tree.tags[2], _proof_param(lot, 3)),
        "no proof": (3, lot.tree.tags[2], ""),
    }[case]

    response = client.get(f"/certificates/{lot.token(serial)}", params={"tag": tag, "proof": proof})

    assert response.status_code == 200
    assert response.json()["tag_check"] == {"tag": tag, "valid": False}


def test_get_certificate__one_bottle_lot_without_proof__tag_valid(client, create_lot):
    single = create_lot(1)

    response = client.get(f"/certificates/{single.token(1)}", params={"tag": single.tree.tags[0]})

    assert response.json()["tag_check"] == {"tag": single.tree.tags[0], "valid": True}


@pytest.mark.parametrize("case", ["short tag", "bad checksum", "proof not hex", "proof element short",
                                  "proof too long", "proof without tag"])
def test_get_certificate__malformed_tag_or_proof__422(client, lot, case):
    tag = lot.tree.tags[2]
    params = {
        "short tag": {"tag": "0x1234"},
        "bad checksum": {"tag": _broken_checksum(tag)},
        "proof not hex": {"tag": tag, "proof": "0x" + "zz" * 32},
        "proof element short": {"tag": tag, "proof": "0x1234"},
        "proof too long": {"tag": tag, "proof": ",".join(["0x" + "11" * 32] * 33)},
        "proof without tag": {"proof": _proof_param(lot, 3)},
    }[case]

    response = client.get(f"/certificates/{lot.token(3)}", params=params)

    assert response.status_code == 422
    assert response.json()["error"] == "invalid_request"


def _broken_checksum(address: str) -> str:
    """``address`` with the case of one letter flipped: mixed case, wrong checksum."""
    body = address[2:]
    index = next(i for i, c in enumerate(body) if c.isalpha())
    return "0x" + body[:index] + body[index].swapcase() + body[index + 1:]


def test_get_certificate__node_unreachable__503(make_client, lot):
    response = make_client(rpc_url="http://127.0.0.1:9", rpc_timeout=2).get(f"/certificates/{lot.token(1)}")

    assert response.status_code == 503
    assert response.json()["error"] == "upstream_unavailable"


def test_get_certificate__manifest_names_address_without_code__503_not_deployed(
        make_client, manifest, lot, holder, tmp_path):
    data = json.loads(manifest.path.read_text())
    data["contracts"]["WineCertificate"]["address"] = holder.address
    stale = tmp_path / "stale.json"
    stale.write_text(json.dumps(data))

    response = make_client(manifest_path=stale).get(f"/certificates/{lot.token(1)}")

    assert response.status_code == 503
    assert response.json()["error"] == "not_deployed"
