"""What `make demo` seeds: the world `amphora.demo.seed` builds on a fresh
deployment, checked on chain, so the URLs the demo prints show what they say."""

import json
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from eth_utils import keccak
from fastapi.testclient import TestClient
from web3 import Web3

from amphora import eip712
from amphora.demo import (
    APPRAISAL,
    BUSINESS_ETH,
    BUSINESS_STABLECOIN,
    LOAN_PRINCIPAL,
    STORAGE_REPORT,
    demo_settings,
    describe,
    seed,
)
from amphora.manifest import MANIFEST_DIR_ENV
from amphora.merkle import verify_reserve
from api.main import create_app

BASE_URL = "http://127.0.0.1:8000"


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """One seeded demo for the module (Ape reverts what each test does to the chain)."""
    tmp_path = tmp_path_factory.mktemp("demo")
    with pytest.MonkeyPatch.context() as monkeypatch:
        monkeypatch.setenv(MANIFEST_DIR_ENV, str(tmp_path / "deployments"))
        return seed(BASE_URL, tmp_path / ".demo" / "bottles.json")


@pytest.fixture
def demo_api(world, chain):
    """The API `make demo` serves, on the databases the seeding wrote."""
    settings = demo_settings(world.relay_db.parent, BASE_URL, world.manifest, world.relayer_key, world.master_key,
                             world.admin_token, chain.provider.uri)
    with TestClient(create_app(settings), base_url=BASE_URL) as client:
        yield client


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


def test_seed__holders_actions_went_through_the_apis_relayer(world, demo_api, chain):
    """The operator view does not start empty: each holder action was posted to
    the API's relay endpoints, sent by the relayer's key and confirmed."""
    assert set(world.relayed) == {"transfer", "redemption", "gift", "points payment", "loan acceptance"}
    relayer = Web3().eth.account.from_key(world.relayer_key).address
    w3 = chain.provider.web3
    for action, request_id in world.relayed.items():
        status = demo_api.get(f"/relay/{request_id}").json()
        assert status["status"] == "confirmed", (action, status)
        assert w3.eth.get_transaction(status["tx_hash"])["from"] == relayer, action

    usage = demo_api.get("/admin/usage", headers={"Authorization": f"Bearer {world.admin_token}"})

    assert usage.status_code == 200, usage.text
    assert usage.json()["requests"] == {"confirmed": len(world.relayed)}
    total = next(row for row in usage.json()["usage"] if row["account"] == "*")
    assert total["actions"] == len(world.relayed) and total["gas"] > 0


def test_seed__a_running_loan_an_appraisal_and_an_open_offer(world, demo_api, project):
    lending = project.PledgeLending.at(world.manifest.address("PledgeLending"))

    loan = demo_api.get(f"/collateral/{world.loan_token}").json()["loan"]
    board = demo_api.get("/offers", params={"token_id": world.sample_token}).json()

    assert (loan["state"], loan["borrower"], loan["lender"], loan["loan_id"]) == (
        "open", world.holders["dave"], world.lender, str(world.loan_id))
    assert loan["principal"] == str(LOAN_PRINCIPAL)
    assert lending.appraisal(world.lot_id).value_per_bottle == APPRAISAL
    assert lending.is_appraiser(world.appraiser)
    assert [o["offer_hash"] for o in board["offers"]] == [world.open_offer_hash]
    assert board["offers"][0]["offer"]["lender"] == world.lender


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


def test_seed__the_sample_bottles_digital_link_opens_its_e_label_one_tap_from_its_page(world, demo_api,
                                                                                       monkeypatch):
    # Where the seeding kept the lot document (`make demo` serves from the same folder).
    monkeypatch.setenv(MANIFEST_DIR_ENV, str(world.manifest.path.parent))
    path = urlsplit(world.sample_digital_link).path
    response = demo_api.get(path, follow_redirects=False)
    assert response.status_code == 307  # the demo lot is sold in the EU: its default link is the e-label
    assert response.headers["location"] == f"{BASE_URL}/e-label{path}"
    label = demo_api.get(f"/e-label{path}")
    assert label.status_code == 200 and "<strong>sulphites</strong>" in label.text
    assert f'href="{BASE_URL}/verify/{world.sample_token}"' in label.text


def test_seed__the_printed_app_login_opens_a_cellar_holding_her_bottle(world, demo_api, demo_cert):
    from amphora.demo import APP_LOGIN

    text = describe(world, BASE_URL, "http://127.0.0.1:8545")
    assert f"log in as {APP_LOGIN} with {world.app_password}" in text
    session = demo_api.post("/auth/login", json={"identifier": APP_LOGIN, "password": world.app_password})
    assert session.status_code == 200, session.text
    assert demo_cert.ownerOf(world.app_token).lower() == session.json()["address"].lower()
    headers = {"Authorization": f"Bearer {session.json()['token']}"}
    deadline = time.monotonic() + 20  # the served API's indexer catches up with the seeded chain
    while not (held := demo_api.get("/me/certificates", headers=headers).json()["certificates"]) \
            and time.monotonic() < deadline:
        time.sleep(0.2)
    assert [item["token_id"] for item in held] == [str(world.app_token)]


def test_seed__every_business_login_works_and_its_roles_list_its_role(world, demo_api, project, chain):
    stablecoin = project.ReferenceStablecoin.at(world.manifest.address("Stablecoin"))
    w3 = chain.provider.web3
    assert set(world.business) == {"issuer", "custodian", "appraiser", "lender", "merchant"}
    for role, (identifier, password, address) in world.business.items():
        session = demo_api.post("/auth/login", json={"identifier": identifier, "password": password})
        assert session.status_code == 200, (role, session.text)
        assert session.json()["address"] == address
        roles = demo_api.get("/me/roles", headers={"Authorization": f"Bearer {session.json()['token']}"})
        assert roles.status_code == 200 and role in roles.json()["roles"], (role, roles.text)
        assert w3.eth.get_balance(address) == BUSINESS_ETH, role  # its own gas
        assert stablecoin.balanceOf(address) == BUSINESS_STABLECOIN.get(role, 0), role
    # Each account holds its own role, not the others' (lender needs no grant: everyone has it).
    issuer_roles = demo_api.get(f"/accounts/{world.business['issuer'][2]}/roles").json()["roles"]
    assert issuer_roles == ["issuer", "lender"]


def test_seed__the_printed_operator_token_opens_the_operator_console(world, demo_api):
    text = describe(world, BASE_URL, "http://127.0.0.1:8545")
    assert f"{BASE_URL}/console/operator (sign in with the operator token {world.admin_token})" in text

    signed = demo_api.post("/console/operator/sign-in", data={"token": world.admin_token},
                           headers={"Origin": BASE_URL}, follow_redirects=False)

    assert signed.status_code == 303
    assert "Usage and quotas today" in demo_api.get("/console/operator").text


def test_describe__prints_the_url_of_each_seeded_state(world):
    text = describe(world, BASE_URL, "http://127.0.0.1:8545")
    for token in (world.sample_token, world.redeemed_token, world.flagged_token):
        assert f"{BASE_URL}/verify/{token}" in text
    # The pending gift as its claim link, which opens the holder's app.
    assert f"{BASE_URL}/app/claim/{world.gift_token}#claim={world.gift_secret}" in text
    assert f"{BASE_URL}/01/09520001000003/22/2019/10/GV19-0615/21/" in text
    assert f"{BASE_URL}/e-label/01/09520001000003/22/2019/10/GV19-0615 " in text
    assert f"{BASE_URL}/collateral/{world.loan_token}" in text and f"{BASE_URL}/offers?token_id=" in text
    assert f"{BASE_URL}/relay/{world.relayed['transfer']}" in text
    assert "reconciled" in text and "NOT reconciled" not in text
    assert f"{BASE_URL}/console (log in at {BASE_URL}/app/login as):" in text
    for role, (identifier, password, _) in world.business.items():
        assert f"{role}" in text and f"{identifier} with {password}" in text


#: A server stopped the way `make demo` is, under a SIGINT handler like Ape's
#: (which exits with 130).
_STOPPED_BY_CTRL_C = """
import signal, sys
import uvicorn
from fastapi import FastAPI
from amphora.demo import serve_until_stopped
signal.signal(signal.SIGINT, lambda signum, frame: sys.exit(130))
serve_until_stopped(uvicorn.Server(uvicorn.Config(FastAPI(), host="127.0.0.1", port=int(sys.argv[1]))))
print("stopped cleanly")
"""


def test_serve__ctrl_c__the_demo_exits_with_status_0():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    process = subprocess.Popen([sys.executable, "-c", _STOPPED_BY_CTRL_C, str(port)], stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                assert process.poll() is None and time.monotonic() < deadline, process.communicate()
                time.sleep(0.1)
        process.send_signal(signal.SIGINT)
        out, err = process.communicate(timeout=30)
    finally:
        process.kill()
    assert process.returncode == 0, err
    assert "stopped cleanly" in out


def test_package_lock__lists_every_platforms_anvil__so_installing_leaves_it_unchanged():
    """`npm install` added the missing platforms' optional anvil packages to the
    tracked lock on every `make demo`; with all of them listed, `npm ci` (which
    never writes the lock) installs from it."""
    lock = json.loads((Path(__file__).resolve().parent.parent / "package-lock.json").read_text())
    packages = lock["packages"]
    anvil = packages["node_modules/@foundry-rs/anvil"]
    assert anvil.get("optionalDependencies")
    missing = [name for name in anvil["optionalDependencies"] if f"node_modules/{name}" not in packages]
    assert missing == []


def test_seed__demo_cask__recorded_in_the_manifest_with_its_holders(world, project, demo_api):
    from amphora.demo import CASK_SHARES

    assert world.manifest.address("CaskShares") == world.cask
    cask = project.CaskShares.at(world.cask)
    assert {name: cask.balanceOf(world.holders[name]) for name in CASK_SHARES} == CASK_SHARES
    body = demo_api.get(f"/casks/{world.cask}/holders/{world.holders['alice']}").json()
    assert body["shares"] == str(CASK_SHARES["alice"]) and body["eligible"] is True
