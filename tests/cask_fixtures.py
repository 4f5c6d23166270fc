"""Fixtures of the cask-shares tests: one cask per test module (deployed
through ``amphora.deploy.deploy_cask``, what operators run), the compliance
agent, and builders for signed claims. Test modules load it with
``pytest_plugins = ["cask_fixtures"]``."""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable
from dataclasses import replace

import pytest

from amphora import eip712
from amphora.deploy import CaskSettings, deploy_cask, record_investor
from amphora.manifest import Manifest

USD = 10**6
SUPPLY = 1_000_000
#: ISO 3166-1 numeric: France, Switzerland, and one the tests ban.
FRANCE, SWITZERLAND, BANNED = 250, 756, 408
#: Eligibility checks in these tests expire far in the future.
FAR = 2**40


@pytest.fixture(scope="session")
def agent(accounts):
    """The cask's compliance agent."""
    return accounts[17]


@pytest.fixture(scope="session")
def cask_settings(custodian) -> CaskSettings:
    return CaskSettings(name="Cask Test", symbol="CSKT", supply=SUPPLY, cellar=custodian.address,
                        document_hash="0x" + "ab" * 32)


@pytest.fixture
def stablecoin(project, manifest, admin, minter, winery, holder, recipient):
    coin = project.ReferenceStablecoin.at(manifest.address("Stablecoin"))
    coin.configureMinter(minter, 10**18, sender=admin)
    for account in (winery, holder, recipient):
        coin.mint(account, 10**12, sender=minter)
    return coin


@pytest.fixture(scope="module")
def cask_manifest(manifest, tmp_path_factory) -> Manifest:
    """A copy of the shared deployment's manifest that the casks are recorded
    in: the shared one outlives the chain snapshots, the casks do not."""
    path = tmp_path_factory.mktemp("cask-manifest") / f"{manifest.chain_id}.json"
    return Manifest(chain_id=manifest.chain_id, network=manifest.network, contracts=dict(manifest.contracts),
                    roles=dict(manifest.roles), path=path)


@pytest.fixture
def create_cask(project, cask_manifest, winery, agent, cask_settings, stablecoin) -> Callable[..., object]:
    """Builder: a fresh cask issued by ``winery``, the winery itself recorded
    eligible (French) and the stablecoin approved for deposits."""

    def _create(record: str | None = None, **overrides: object) -> object:
        settings = replace(cask_settings, **overrides)
        cask = deploy_cask(cask_manifest, winery, agent.address, settings,
                           record=record or f"Cask-{secrets.token_hex(4)}")
        record_investor(cask, agent, winery.address, FRANCE, FAR)
        stablecoin.approve(cask, 2**256 - 1, sender=winery)
        return cask

    return _create


@pytest.fixture
def cask(create_cask):
    return create_cask()


@pytest.fixture
def eligible(cask, agent, holder, recipient, relayer, attacker):
    """holder, recipient, relayer and attacker recorded as eligible French investors."""
    for account in (holder, recipient, relayer, attacker):
        record_investor(cask, agent, account.address, FRANCE, FAR)
    return cask


@pytest.fixture
def bottling_ready(cert, admin, cask):
    """The certificate's admin lets the cask issue its bottling lot."""
    cert.grant_issuer(cask, "Cask Test", sender=admin)
    return cask


def sign_claim(cask, chain_id: int, signer, holder: str, bottles: int, remainder: bool,
               nonce: bytes | None = None, valid_before: int | None = None) -> tuple:
    """The arguments of ``claim_with_authorization`` signed by ``signer``."""
    nonce = nonce or secrets.token_bytes(32)
    before = valid_before if valid_before is not None else int(time.time()) + 10**8
    message = eip712.claim_bottles_message(holder, bottles, remainder, 0, before, nonce)
    fields, name, version, *_ = cask.eip712Domain()
    data = eip712.typed_data("ClaimBottles", message, chain_id, cask.address, name=name, version=version)
    v, r, s = eip712.split_signature(eip712.sign(data, signer.private_key))
    return (holder, bottles, remainder, 0, before, nonce, v, r, s)


def declare(cask, winery, shares_per_bottle: int, price: int = 0) -> object:
    """``winery`` declares ``cask`` bottled (750 ml bottles)."""
    return cask.declare_bottled(shares_per_bottle, price, 750, 1_717_200_000, b"\x01" * 32, b"\x02" * 32,
                                "Pauillac AOC", "ipfs://bafycask", sender=winery)
