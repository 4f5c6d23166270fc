"""Lot issuance, the verification views, tag proofs and roles."""

from __future__ import annotations

import random

import ape
import pytest
from ape.utils import ZERO_ADDRESS

from amphora import merkle
from amphora.lots import token_id

BOTTLING_DATE = 1_717_200_000  # as in conftest.py

ROOT = b"\x11" * 32


def issue_args(custodian, count=10, **overrides):
    args = {
        "custodian": custodian.address, "bottle_count": count, "vintage": 2019, "volume_ml": 750,
        "bottling_date": BOTTLING_DATE, "metadata_hash": b"\x22" * 32, "tag_root": ROOT,
        "producer": "Domaine Test", "wine": "Cuvée", "region": "Pauillac", "metadata_uri": "ipfs://x",
    }
    args.update(overrides)
    return list(args.values())


class TestIssueLot:
    @pytest.mark.parametrize("count", [1, 10_000])
    def test_issue_lot__any_size__whole_range_belongs_to_winery(self, cert, create_lot, winery, count):
        before = cert.balanceOf(winery)
        supply = cert.totalSupply()
        lot = create_lot(count)
        assert cert.balanceOf(winery) == before + count
        assert cert.totalSupply() == supply + count
        for serial in {1, count // 2 or 1, count}:
            assert cert.ownerOf(lot.token(serial)) == winery
            assert not cert.locked(lot.token(serial))
        with ape.reverts("certificate: token does not exist"):
            cert.ownerOf(lot.token(count + 1))
        with ape.reverts("certificate: token does not exist"):
            cert.ownerOf(lot.token(0))

    def test_issue_lot__emits_one_consecutive_transfer_and_lot_issued(self, cert, winery, custodian):
        tx = cert.issue_lot(*issue_args(custodian, 10_000), sender=winery)
        lot_id = cert.lot_count()
        ranges = list(tx.decode_logs(cert.ConsecutiveTransfer))
        assert len(ranges) == 1
        assert ranges[0].fromTokenId == token_id(lot_id, 1)
        assert ranges[0].toTokenId == token_id(lot_id, 10_000)
        assert ranges[0].fromAddress == ZERO_ADDRESS and ranges[0].toAddress == winery
        assert list(tx.decode_logs(cert.Transfer)) == []
        issued = list(tx.decode_logs(cert.LotIssued))
        assert len(issued) == 1
        event = issued[0]
        assert (event.lot_id, event.issuer, event.custodian) == (lot_id, winery, custodian)
        assert (event.bottle_count, event.vintage, event.volume_ml) == (10_000, 2019, 750)
        assert (event.producer, event.wine, event.region, event.metadata_uri) == (
            "Domaine Test", "Cuvée", "Pauillac", "ipfs://x")
        assert event.tag_root == ROOT and event.first_token_id == token_id(lot_id, 1)

    def test_issue_lot__gas_does_not_depend_on_bottle_count(self, cert, chain, winery, custodian):
        cert.issue_lot(*issue_args(custodian, 5), sender=winery)  # the winery already holds stock
        snapshot = chain.snapshot()
        small = cert.issue_lot(*issue_args(custodian, 1), sender=winery).gas_used
        chain.restore(snapshot)
        large = cert.issue_lot(*issue_args(custodian, 10_000), sender=winery).gas_used
        # Only the calldata bytes of the count differ.
        assert abs(large - small) <= 100, (small, large)
        assert large <= 250_000

    def test_issue_lot__stores_lot_facts(self, cert, chain, winery, custodian):
        cert.issue_lot(*issue_args(custodian, 12, vintage=0, volume_ml=1500), sender=winery)
        lot_id = cert.lot_count()
        lot = cert.lot(lot_id)
        assert lot.issuer == winery and lot.custodian == custodian
        assert (lot.bottle_count, lot.vintage, lot.volume_ml) == (12, 0, 1500)
        assert lot.bottling_date == BOTTLING_DATE
        assert lot.issued_at == chain.blocks.head.timestamp
        assert lot.metadata_hash == b"\x22" * 32 and lot.tag_root == ROOT
        assert (lot.first_token_id, lot.last_token_id) == (token_id(lot_id, 1), token_id(lot_id, 12))

    @pytest.mark.parametrize("field,value,message", [
        ("bottle_count", 0, "certificate: lot has no bottles"),
        ("bottle_count", 1_000_001, "certificate: lot exceeds MAX_BOTTLES_PER_LOT"),
        ("vintage", 65_536, "certificate: vintage out of range"),
        ("volume_ml", 0, "certificate: volume out of range"),
        ("volume_ml", 2**32, "certificate: volume out of range"),
        ("bottling_date", 2**48, "certificate: bottling date out of range"),
        ("tag_root", b"\x00" * 32, "certificate: tag root is empty"),
    ])
    def test_issue_lot__bad_field__reverts_and_changes_nothing(self, cert, winery, custodian, field, value,
                                                              message):
        count, balance = cert.lot_count(), cert.balanceOf(winery)
        with ape.reverts(message):
            cert.issue_lot(*issue_args(custodian, **{field: value}), sender=winery)
        assert (cert.lot_count(), cert.balanceOf(winery)) == (count, balance)

    def test_issue_lot__by_non_issuer__reverts(self, cert, attacker, custodian):
        with ape.reverts("certificate: caller is not an issuer"):
            cert.issue_lot(*issue_args(custodian), sender=attacker)

    def test_issue_lot__unregistered_custodian__reverts(self, cert, winery, attacker):
        with ape.reverts("certificate: custodian is not registered"):
            cert.issue_lot(*issue_args(attacker), sender=winery)

    def test_issue_lot__while_paused__reverts(self, cert, admin, winery, custodian):
        cert.pause(sender=admin)
        with ape.reverts("pausable: contract is paused"):
            cert.issue_lot(*issue_args(custodian), sender=winery)

    def test_issue_lot__revoked_issuer__reverts_but_its_certificates_stay(self, cert, admin, lot, winery,
                                                                          custodian):
        cert.revoke_issuer(winery, sender=admin)
        with ape.reverts("certificate: caller is not an issuer"):
            cert.issue_lot(*issue_args(custodian), sender=winery)
        view = cert.certificate(lot.token(1))
        assert view.exists and view.owner == winery
        assert not view.issuer_active and view.issuer_name == "Domaine Test"


class TestVerificationView:
    def test_certificate__untouched_bottle__reports_everything(self, cert, lot, winery, custodian):
        view = cert.certificate(lot.token(7))
        assert view.exists and view.token_id == lot.token(7)
        assert (view.lot_id, view.serial) == (lot.lot_id, 7)
        assert view.owner == winery and view.state == 0 and not view.locked
        assert (view.issuer, view.issuer_name, view.issuer_active) == (winery, "Domaine Test", True)
        assert (view.custodian, view.custodian_name, view.custodian_active) == (custodian, "Cave Test", True)
        assert (view.bottle_count, view.vintage, view.volume_ml) == (10, 2019, 750)
        assert view.bottling_date == BOTTLING_DATE and view.tag_root == lot.tree.root

    def test_certificate__after_transfer_and_flag__reports_owner_and_state(self, cert, held_token, holder):
        cert.flag(held_token, b"\x01" * 32, sender=holder)
        view = cert.certificate(held_token)
        assert view.owner == holder and view.state == cert.FLAGGED() and view.locked

    @pytest.mark.parametrize("serial_offset", ["zero", "past_end", "no_lot"])
    def test_certificate__never_issued__exists_false(self, cert, lot, serial_offset):
        token = {"zero": lot.token(0), "past_end": lot.token(11), "no_lot": token_id(10**6, 1)}[serial_offset]
        view = cert.certificate(token)
        assert not view.exists and view.owner == ZERO_ADDRESS and view.lot_id == 0
        with ape.reverts("certificate: token does not exist"):
            cert.ownerOf(token)

    def test_lot__unknown__reverts(self, cert):
        with ape.reverts("certificate: lot does not exist"):
            cert.lot(10**6)

    def test_token_id_of__encodes_lot_and_serial(self, cert):
        assert cert.token_id_of(3, 42) == (3 << 32) | 42
        with ape.reverts("certificate: serial out of range"):
            cert.token_id_of(3, 0)


class TestTagProof:
    def test_verify_tag__genuine_tags__true(self, cert, create_lot):
        lot = create_lot(37)
        for serial in (1, 2, 18, 36, 37):
            tag = lot.tree.tags[serial - 1]
            assert cert.verify_tag(lot.token(serial), tag, lot.tree.proof(serial))

    def test_verify_tag__ten_thousand_bottles__sampled_proofs_true(self, cert, create_lot):
        lot = create_lot(10_000)
        rng = random.Random(7)
        for serial in [1, 10_000, *rng.sample(range(2, 10_000), 8)]:
            proof = lot.tree.proof(serial)
            assert len(proof) <= 14
            assert cert.verify_tag(lot.token(serial), lot.tree.tags[serial - 1], proof)

    def test_verify_tag__other_bottles_tag__false(self, cert, lot):
        # Bottle 2's genuine tag and proof do not vouch for bottle 3.
        assert not cert.verify_tag(lot.token(3), lot.tree.tags[1], lot.tree.proof(2))
        assert not cert.verify_tag(lot.token(3), lot.tree.tags[1], lot.tree.proof(3))

    def test_verify_tag__copied_qr_with_made_up_tag__false(self, cert, lot, fresh_key):
        assert not cert.verify_tag(lot.token(3), fresh_key.address, lot.tree.proof(3))

    def test_verify_tag__tampered_proof__false(self, cert, lot):
        proof = lot.tree.proof(3)
        proof[0] = bytes(32)
        assert not cert.verify_tag(lot.token(3), lot.tree.tags[2], proof)

    def test_verify_tag__never_issued_token__false(self, cert, lot):
        assert not cert.verify_tag(lot.token(11), lot.tree.tags[0], lot.tree.proof(1))


class TestRoles:
    def test_grant_issuer__by_admin__registers_name_and_emits(self, cert, admin, other_winery):
        tx = cert.grant_issuer(other_winery, "Clos Autre", sender=admin)
        assert cert.is_issuer(other_winery) and cert.party_name(other_winery) == "Clos Autre"
        events = list(tx.decode_logs(cert.IssuerGranted))
        assert len(events) == 1 and events[0].account == other_winery and events[0].name == "Clos Autre"

    @pytest.mark.parametrize("fn", ["grant_issuer", "grant_custodian"])
    def test_grant__by_stranger__reverts(self, cert, attacker, fn):
        with ape.reverts("ownable: caller is not the owner"):
            getattr(cert, fn)(attacker, "Me", sender=attacker)
        assert not cert.is_issuer(attacker) and not cert.is_custodian(attacker)

    @pytest.mark.parametrize("fn", ["revoke_issuer", "revoke_custodian"])
    def test_revoke__by_stranger__reverts(self, cert, attacker, winery, custodian, fn):
        with ape.reverts("ownable: caller is not the owner"):
            getattr(cert, fn)(winery if fn == "revoke_issuer" else custodian, sender=attacker)

    def test_grant__zero_address_or_empty_name__reverts(self, cert, admin, other_winery):
        with ape.reverts("certificate: account is the zero address"):
            cert.grant_issuer(ZERO_ADDRESS, "X", sender=admin)
        with ape.reverts("certificate: name is empty"):
            cert.grant_custodian(other_winery, "", sender=admin)

    def test_revoke__account_without_role__reverts(self, cert, admin, attacker):
        with ape.reverts("certificate: account is not an issuer"):
            cert.revoke_issuer(attacker, sender=admin)
        with ape.reverts("certificate: account is not a custodian"):
            cert.revoke_custodian(attacker, sender=admin)

    def test_revoke_custodian__new_lots_refused(self, cert, admin, winery, custodian):
        tx = cert.revoke_custodian(custodian, sender=admin)
        assert len(list(tx.decode_logs(cert.CustodianRevoked))) == 1
        with ape.reverts("certificate: custodian is not registered"):
            cert.issue_lot(*issue_args(custodian), sender=winery)

    def test_admin_transfer__two_steps__new_admin_takes_over(self, cert, admin, other_winery):
        cert.transfer_ownership(other_winery, sender=admin)
        assert cert.owner() == admin and cert.pending_owner() == other_winery
        cert.accept_ownership(sender=other_winery)
        assert cert.owner() == other_winery and cert.pending_owner() == ZERO_ADDRESS
        with ape.reverts("ownable: caller is not the owner"):
            cert.pause(sender=admin)
        cert.pause(sender=other_winery)
        assert cert.paused()

    def test_admin_transfer__accept_by_stranger__reverts(self, cert, admin, other_winery, attacker):
        cert.transfer_ownership(other_winery, sender=admin)
        with ape.reverts("ownable_2step: caller is not the new owner"):
            cert.accept_ownership(sender=attacker)
        assert cert.owner() == admin

    def test_renounce_ownership__not_exposed(self, cert):
        names = {item.name for item in cert.contract_type.abi if item.type == "function"}
        assert "renounce_ownership" not in names and "transfer_ownership" in names

    def test_pause__by_stranger__reverts(self, cert, attacker):
        with ape.reverts("ownable: caller is not the owner"):
            cert.pause(sender=attacker)


def test_python_tag_tree__all_ten_thousand_proofs_verify_offline(fresh_key):
    tags = [f"0x{i:040x}" for i in range(1, 10_001)]
    tree = merkle.TagTree.build(tags)
    assert all(merkle.verify(tree.root, s, tree.tags[s - 1], tree.proof(s)) for s in range(1, 10_001))
    assert not merkle.verify(tree.root, 2, tree.tags[0], tree.proof(1))
