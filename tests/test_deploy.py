"""The deploy code (what `ape run deploy` runs), the manifest it writes, and
the lot files the issue_lot script reads and writes."""

from __future__ import annotations

import json
import stat

import pytest
from eth_utils import to_checksum_address

from amphora import lots, merkle
from amphora.deploy import CertificateSettings, TokenSettings, deploy_all, grant_issuer, revoke_issuer
from amphora.manifest import Manifest, ManifestError


def test_manifest__records_address_abi_block_and_roles(manifest, cert, admin, winery, custodian, chain):
    data = json.loads(manifest.path.read_text())
    record = data["contracts"]["WineCertificate"]
    assert record["address"] == cert.address
    assert {item["name"] for item in record["abi"] if item["type"] == "function"} >= {
        "issue_lot", "transfer_with_signature", "certificate", "verify_tag"}
    assert 0 < record["deploy_block"] <= chain.blocks.head.number
    assert data["chain_id"] == chain.chain_id
    assert data["roles"]["admin"] == admin.address
    assert data["roles"]["issuers"] == {winery.address: "Domaine Test"}
    assert data["roles"]["custodians"] == {custodian.address: "Cave Test"}


def test_deploy__run_twice__reuses_recorded_contract(manifest, admin, chain):
    blocks_before = chain.blocks.head.number
    again = deploy_all(admin, directory=manifest.path.parent, certificate=CertificateSettings())
    assert again.address("WineCertificate") == manifest.address("WineCertificate")
    assert chain.blocks.head.number == blocks_before, "nothing may be sent when everything is deployed"
    assert again.roles["issuers"], "a reuse keeps the recorded roles"


def test_deploy__recorded_address_without_code__deploys_anew(admin, tmp_path, chain):
    gone = to_checksum_address("0x" + "ab" * 20)
    stale = Manifest(chain_id=chain.chain_id, path=tmp_path / f"{chain.chain_id}.json",
                     contracts={"WineCertificate": {"address": gone, "abi": []}},
                     roles={"issuers": {"0x" + "cd" * 20: "Gone"}})
    stale.save()
    fresh = deploy_all(admin, directory=tmp_path)
    assert fresh.address("WineCertificate") != gone
    assert len(chain.provider.get_code(fresh.address("WineCertificate"))) > 0
    assert fresh.roles.get("issuers") == {}, "a new contract starts without the stale roles"


def test_revoke_issuer__updates_chain_and_manifest(manifest, cert, admin, other_winery):
    grant_issuer(manifest, admin, other_winery.address, "Clos Autre")
    assert json.loads(manifest.path.read_text())["roles"]["issuers"][other_winery.address] == "Clos Autre"
    revoke_issuer(manifest, admin, other_winery.address)
    assert not cert.is_issuer(other_winery)
    assert other_winery.address not in json.loads(manifest.path.read_text())["roles"]["issuers"]


def test_manifest__missing_file__clear_error(tmp_path):
    with pytest.raises(ManifestError, match="run `ape run deploy` first"):
        Manifest.load(tmp_path / "1.json")


def test_manifest__unknown_contract__clear_error(manifest):
    with pytest.raises(ManifestError, match="records no Marketplace"):
        manifest.address("Marketplace")


LOT = {
    "producer": "Domaine Test", "wine": "Cuvée", "region": "Pauillac", "bottle_count": 3,
    "volume_ml": 750, "bottling_date": "2024-06-01", "custodian": "0x" + "11" * 20, "vintage": 2019,
}


def test_lot_file__json_and_csv__same_description(tmp_path):
    (tmp_path / "lot.json").write_text(json.dumps(LOT))
    header = ",".join(LOT)
    (tmp_path / "lot.csv").write_text(header + "\n" + ",".join(str(v) for v in LOT.values()) + "\n")
    from_json = lots.LotDescription.from_file(tmp_path / "lot.json")
    from_csv = lots.LotDescription.from_file(tmp_path / "lot.csv")
    assert from_json == from_csv
    assert from_json.bottling_date == 1_717_200_000


@pytest.mark.parametrize("change,message", [
    ({"wine": ""}, "missing field"),
    ({"bottle_count": 0}, "bottle_count"),
    ({"bottle_count": "many"}, "whole numbers"),
    ({"vintage": 70_000}, "vintage"),
    ({"custodian": "cellar"}, "not an address"),
    ({"bottling_date": "June"}, "bottling_date"),
    ({"tags": ["0x" + "22" * 20]}, "tags: 1 given for 3 bottles"),
])
def test_lot_file__bad_field__names_the_problem(change, message):
    with pytest.raises(lots.LotFileError, match=message):
        lots.LotDescription.from_mapping({**LOT, **change})


def test_lot_issue__writes_bottles_file_with_keys_proofs_and_urls(cert, winery, custodian, tmp_path):
    description = lots.LotDescription.from_mapping({**LOT, "custodian": custodian.address})
    issued = lots.issue(cert, winery, description)
    out = lots.write_bottles(tmp_path / "bottles.json", issued.lot_id, issued.bottles, "http://v.example/")
    assert stat.S_IMODE(out.stat().st_mode) == 0o600, "the file holds tag private keys"
    rows = json.loads(out.read_text())["bottles"]
    assert [r["serial"] for r in rows] == [1, 2, 3]
    for row in rows:
        token = int(row["token_id"])
        assert row["verify_url"] == f"http://v.example/verify/{token}"
        from eth_account import Account
        assert Account.from_key(row["tag_private_key"]).address == row["tag_address"]
        proof = [bytes.fromhex(p[2:]) for p in row["proof"]]
        assert cert.verify_tag(token, row["tag_address"], proof)
    assert cert.lot(issued.lot_id).metadata_hash == lots.metadata_hash(description.metadata_document())


def test_lot_issue__given_tags__no_keys_written(cert, winery, custodian, tmp_path):
    tags = ["0x" + f"{i:040x}" for i in (5, 6, 7)]
    description = lots.LotDescription.from_mapping({**LOT, "custodian": custodian.address, "tags": tags})
    issued = lots.issue(cert, winery, description)
    assert all(b.tag_private_key is None for b in issued.bottles)
    assert issued.tree.root == merkle.TagTree.build(tags).root
    out = lots.write_bottles(tmp_path / "bottles.csv", issued.lot_id, issued.bottles, "http://v")
    assert out.read_text().splitlines()[0].startswith("serial,token_id,tag_address,tag_private_key")


@pytest.mark.parametrize("count", [1, 2, 3, 5, 8, 13])
def test_tag_tree__every_proof_verifies_and_none_crosses(count):
    tags = ["0x" + f"{i + 1:040x}" for i in range(count)]
    tree = merkle.TagTree.build(tags)
    for serial in range(1, count + 1):
        assert merkle.verify(tree.root, serial, tags[serial - 1], tree.proof(serial))
        if count > 1:
            other = serial % count + 1
            assert not merkle.verify(tree.root, other, tags[serial - 1], tree.proof(serial))


def test_manifest__records_the_money_contracts_wired_together(manifest, project, admin):
    for name in ("Stablecoin", "PointsToken", "UtilityToken"):
        assert manifest.contracts[name]["deploy_block"] > 0, name
    assert manifest.contracts["Stablecoin"]["contract"] == "ReferenceStablecoin"
    points = project.PointsToken.at(manifest.address("PointsToken"))
    assert points.STABLECOIN() == manifest.address("Stablecoin")
    assert points.SCALE() == 10**12 and points.owner() == admin


def test_deploy__existing_stablecoin_address__points_use_it(admin, project, tmp_path):
    external = admin.deploy(project.MockPlainToken, 6, 0)
    m = deploy_all(admin, directory=tmp_path, tokens=TokenSettings(stablecoin=external.address))
    assert m.contracts["Stablecoin"]["contract"] == "external"
    assert project.PointsToken.at(m.address("PointsToken")).STABLECOIN() == external.address
    # Switching stablecoin later redeploys the points token, which is bound to it.
    first_points = m.address("PointsToken")
    m2 = deploy_all(admin, directory=tmp_path)
    assert m2.contracts["Stablecoin"]["contract"] == "ReferenceStablecoin"
    assert m2.address("PointsToken") != first_points
    # The lending contract stays: the certificate trusts it for good.
    assert m2.address("PledgeLending") == m.address("PledgeLending")
    assert project.PledgeLending.at(m2.address("PledgeLending")).STABLECOIN() == external.address


def test_deploy__lending_wired_into_the_certificate_and_recorded(manifest, project, cert, registry):
    record = manifest.contracts["PledgeLending"]
    assert record["deploy_block"] > 0
    assert {item["name"] for item in record["abi"] if item["type"] == "function"} >= {
        "accept_offer", "accept_offer_with_signature", "repay", "foreclose", "extend_loan", "collateral"}
    lending = project.PledgeLending.at(record["address"])
    assert cert.lending() == lending.address
    assert (lending.CERTIFICATE(), lending.REGISTRY(), lending.STABLECOIN()) == (
        cert.address, registry.address, manifest.address("Stablecoin"))


def test_deploy__run_twice__keeps_the_wired_lending_contract(manifest, admin, chain):
    again = deploy_all(admin, directory=manifest.path.parent)
    assert again.address("PledgeLending") == manifest.address("PledgeLending")


def test_deploy__non_local_network_without_stablecoin__refused(admin, tmp_path, monkeypatch):
    import amphora.deploy

    monkeypatch.setattr(amphora.deploy, "LOCAL_CHAIN_IDS", frozenset())
    with pytest.raises(ValueError, match="needs the address of an existing stablecoin"):
        deploy_all(admin, directory=tmp_path)


def test_manifest__records_the_custody_registry_bound_to_the_certificate(manifest, project, cert):
    record = manifest.contracts["CustodyRegistry"]
    assert record["deploy_block"] > 0
    assert {item["name"] for item in record["abi"] if item["type"] == "function"} >= {
        "attest_storage", "post_reserve_root", "verify_reserve", "custody"}
    assert project.CustodyRegistry.at(record["address"]).CERTIFICATE() == cert.address


def test_deploy__new_certificate__gets_a_new_custody_registry(admin, project, tmp_path):
    first = deploy_all(admin, directory=tmp_path)
    old_certificate, old_registry = first.address("WineCertificate"), first.address("CustodyRegistry")
    first.contracts.pop("WineCertificate")  # the certificate is redeployed on the next run
    first.save()

    second = deploy_all(admin, directory=tmp_path)

    assert second.address("WineCertificate") != old_certificate
    assert second.address("CustodyRegistry") != old_registry
    registry = project.CustodyRegistry.at(second.address("CustodyRegistry"))
    assert registry.CERTIFICATE() == second.address("WineCertificate")


def _record_as(manifest: Manifest, name: str, other: str) -> str:
    """Make the manifest record ``name`` at ``other``'s address (another contract's code)."""
    address = manifest.address(other)
    manifest.contracts[name] = {**manifest.contracts[name], "address": address}
    manifest.save()
    return address


def test_deploy__recorded_address_holding_other_code__deploys_anew_on_a_local_chain(admin, project, tmp_path):
    # An older manifest whose addresses, on a fresh node, hold other contracts.
    first = deploy_all(admin, directory=tmp_path)
    wrong = _record_as(first, "Stablecoin", "CustodyRegistry")

    second = deploy_all(admin, directory=tmp_path)

    assert second.address("Stablecoin") != wrong
    stablecoin = project.ReferenceStablecoin.at(second.address("Stablecoin"))
    assert stablecoin.decimals() == 6
    assert project.PointsToken.at(second.address("PointsToken")).STABLECOIN() == stablecoin.address


def test_deploy__recorded_address_holding_other_code__refused_on_a_real_network(admin, tmp_path, monkeypatch, chain):
    import amphora.deploy

    first = deploy_all(admin, directory=tmp_path)
    wrong = _record_as(first, "WineCertificate", "UtilityToken")
    monkeypatch.setattr(amphora.deploy, "LOCAL_CHAIN_IDS", frozenset())
    blocks_before = chain.blocks.head.number
    with pytest.raises(ValueError, match=f"WineCertificate: {wrong} in the manifest holds other code"):
        deploy_all(admin, directory=tmp_path, tokens=TokenSettings(stablecoin=first.address("Stablecoin")))
    assert chain.blocks.head.number == blocks_before, "nothing may be sent"
