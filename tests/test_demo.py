"""What `make demo` seeds: the world `amphora.demo.seed` builds on a fresh
deployment, checked on chain, so the URLs the demo prints show what they say."""

import json

import pytest
from eth_utils import keccak

from amphora import eip712
from amphora.demo import STORAGE_REPORT, describe, seed
from amphora.manifest import MANIFEST_DIR_ENV
from amphora.merkle import verify_reserve

BASE_URL = "http://127.0.0.1:8000"


@pytest.fixture
def world(tmp_path, monkeypatch):
    monkeypatch.setenv(MANIFEST_DIR_ENV, str(tmp_path / "deployments"))
    return seed(BASE_URL, tmp_path / ".demo" / "bottles.json")


@pytest.fixture
def demo_cert(project, world):
    return project.WineCertificate.at(world.manifest.address("WineCertificate"))


@pytest.fixture
def demo_registry(project, world):
    return project.CustodyRegistry.at(world.manifest.address("CustodyRegistry"))


def test_seed__every_printed_bottle_is_in_the_state_its_url_names(world, demo_cert):
    states = {t: demo_cert.certificate(t).state for t in
              (world.sample_token, world.redeemed_token, world.gift_token, world.flagged_token)}
    assert states == {
        world.sample_token: demo_cert.ACTIVE(),
        world.redeemed_token: demo_cert.REDEEMED(),
        world.gift_token: demo_cert.GIFT_PENDING(),
        world.flagged_token: demo_cert.FLAGGED(),
    }
    assert demo_cert.ownerOf(world.sample_token) == world.holders["bob"]
    assert demo_cert.ownerOf(world.gift_token) == world.holders["carol"]
    assert demo_cert.balanceOf(world.holders["bob"]) == 1


def test_seed__the_redeemed_record_names_the_custodian(world, demo_cert, custodian):
    record = demo_cert.certificate(world.redeemed_token)
    assert record.redeemed_by == custodian.address
    assert record.redeemed_at > 0


def test_seed__the_gift_secret_claims_the_gift_once(world, demo_cert, chain, recipient, relayer, attacker):
    signature = eip712.sign_gift_claim(world.gift_secret, world.gift_token, recipient.address,
                                       chain.chain_id, demo_cert.address)
    demo_cert.claim_gift(world.gift_token, recipient, signature, sender=relayer)
    assert demo_cert.ownerOf(world.gift_token) == recipient.address
    again = eip712.sign_gift_claim(world.gift_secret, world.gift_token, attacker.address,
                                   chain.chain_id, demo_cert.address)
    with pytest.raises(Exception, match="certificate: token is active"):
        demo_cert.claim_gift(world.gift_token, attacker, again, sender=relayer)


def test_seed__custody_shows_the_attested_report_and_the_reserve_root(world, demo_registry):
    record = demo_registry.custody(world.sample_token)
    assert record.storage_document_hash == keccak(STORAGE_REPORT.read_bytes())
    published = json.loads(world.reserve_file.read_text())
    assert record.reserve_root.hex().removeprefix("0x") == published["root"].removeprefix("0x")
    assert record.reserve_bottle_count == len(published["proofs"]) == len(world.bottles) - 1


def test_seed__the_reserve_proves_held_bottles_and_not_the_shipped_one(world, demo_registry):
    published = json.loads(world.reserve_file.read_text())
    root = bytes.fromhex(published["root"][2:])
    proof = [bytes.fromhex(p[2:]) for p in published["proofs"][str(world.sample_token)]]
    assert demo_registry.verify_reserve(world.sample_token, proof)
    assert verify_reserve(root, world.sample_token, proof)
    assert str(world.redeemed_token) not in published["proofs"]
    assert not verify_reserve(root, world.redeemed_token, proof)


def test_seed__publishes_no_tag_key(world):
    public = world.reserve_file.parent
    assert sorted(p.name for p in public.iterdir()) == sorted(["reserve.json", STORAGE_REPORT.name])
    keys = {b.tag_private_key for b in world.bottles if b.tag_private_key}
    text = "".join(p.read_text() for p in public.iterdir())
    assert keys and not any(k.removeprefix("0x") in text for k in keys)


def test_describe__prints_the_url_of_each_seeded_state(world):
    text = describe(world, BASE_URL, "http://127.0.0.1:8545")
    for token in (world.sample_token, world.redeemed_token, world.gift_token, world.flagged_token):
        assert f"{BASE_URL}/verify/{token}" in text
    assert world.gift_secret in text
    assert "reconciled" in text and "NOT reconciled" not in text
