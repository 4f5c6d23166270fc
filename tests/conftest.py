"""Shared fixtures: actors by role, the deployment (through the real deploy
code), and builders for lots and signatures. Ape snapshots the chain around
every test, so tests never see each other's state."""

from __future__ import annotations

import secrets
from collections.abc import Callable
from dataclasses import dataclass

import pytest
from _pytest.unraisableexception import gc_collect_iterations_key
from eth_account import Account

from amphora import eip712
from amphora.deploy import CertificateSettings, deploy_all, grant_custodian, grant_issuer
from amphora.lots import LotDescription, issue
from amphora.merkle import TagTree


def pytest_configure(config: pytest.Config) -> None:
    # At the session's end pytest collects garbage five times over (to report exceptions raised in
    # finalizers); with the suite's several-GB heap that took about four minutes of CI time after the
    # last test. One collection still finds them.
    config.stash[gc_collect_iterations_key] = 1


BOTTLING_DATE = 1_717_200_000  # 2024-06-01
BASE_URI = "https://verify.amphora.example/metadata/"


@pytest.fixture(scope="session")
def admin(accounts):
    return accounts[0]


@pytest.fixture(scope="session")
def winery(accounts):
    return accounts[1]


@pytest.fixture(scope="session")
def custodian(accounts):
    return accounts[2]


@pytest.fixture(scope="session")
def holder(accounts):
    return accounts[3]


@pytest.fixture(scope="session")
def recipient(accounts):
    return accounts[4]


@pytest.fixture(scope="session")
def operator(accounts):
    return accounts[5]


@pytest.fixture(scope="session")
def relayer(accounts):
    return accounts[6]


@pytest.fixture(scope="session")
def attacker(accounts):
    return accounts[7]


@pytest.fixture(scope="session")
def other_winery(accounts):
    return accounts[8]


@pytest.fixture(scope="session")
def merchant(accounts):
    return accounts[10]


@pytest.fixture(scope="session")
def other_merchant(accounts):
    return accounts[11]


@pytest.fixture(scope="session")
def customer(accounts):
    return accounts[12]


@pytest.fixture(scope="session")
def minter(accounts):
    """A stablecoin minter (the fiat issuer's mint desk)."""
    return accounts[13]


@pytest.fixture(scope="session")
def lender(accounts):
    """Lends stablecoin against certificates."""
    return accounts[14]


@pytest.fixture(scope="session")
def appraiser(accounts):
    """Posts lots' values per bottle to the lending contract."""
    return accounts[15]


@pytest.fixture(scope="session")
def borrower(accounts):
    """Holds certificates and pledges them for loans."""
    return accounts[16]


@pytest.fixture(scope="session")
def manifest(admin, winery, custodian, tmp_path_factory):
    """The deployment made by the same code `ape run deploy` runs."""
    directory = tmp_path_factory.mktemp("deployments")
    m = deploy_all(admin, directory=directory, certificate=CertificateSettings(base_uri=BASE_URI))
    grant_issuer(m, admin, winery.address, "Domaine Test")
    grant_custodian(m, admin, custodian.address, "Cave Test")
    return m


@pytest.fixture(scope="session")
def cert(project, manifest):
    return project.WineCertificate.at(manifest.address("WineCertificate"))


@pytest.fixture(scope="session")
def registry(project, manifest):
    """The custodians' registry deployed beside the certificate."""
    return project.CustodyRegistry.at(manifest.address("CustodyRegistry"))


@dataclass
class IssuedTestLot:
    lot_id: int
    tree: TagTree
    keys: list[str | None]
    receipt_gas: int

    def token(self, serial: int) -> int:
        return (self.lot_id << 32) | serial


@pytest.fixture(scope="session")
def create_lot(cert, winery, custodian) -> Callable[..., IssuedTestLot]:
    """Builder: issue a lot of ``count`` bottles (fresh tag keys unless ``tags``)."""

    def _create(count: int = 10, issuer=None, tags: list[str] | None = None, **overrides) -> IssuedTestLot:
        fields = {
            "producer": "Domaine Test", "wine": "Cuvée Essai", "region": "Pauillac AOC",
            "bottle_count": count, "volume_ml": 750, "bottling_date": BOTTLING_DATE,
            "custodian": custodian.address, "vintage": 2019,
            "metadata_uri": "ipfs://bafylot", "tags": tags or [],
        }
        fields.update(overrides)
        issued = issue(cert, issuer or winery, LotDescription.from_mapping(fields))
        keys = [b.tag_private_key for b in issued.bottles]
        return IssuedTestLot(issued.lot_id, issued.tree, keys, issued.gas_used)

    return _create


@pytest.fixture
def lot(create_lot):
    return create_lot(10)


@pytest.fixture
def token(lot):
    """Bottle 1 of a fresh lot, still held by the winery."""
    return lot.token(1)


@pytest.fixture
def held_token(cert, lot, winery, holder):
    """Bottle 2 of a fresh lot, sold to ``holder``."""
    token_id = lot.token(2)
    cert.transferFrom(winery, holder, token_id, sender=winery)
    return token_id


@pytest.fixture(scope="session")
def chain_id(chain):
    return chain.chain_id


@pytest.fixture(scope="session")
def sign_transfer(cert, chain_id) -> Callable[..., bytes]:
    """Builder: an EIP-712 transfer signature by ``signer`` (an Ape test account
    or a raw private key)."""

    def _sign(signer, sender: str, to: str, token_id: int, nonce: int, deadline: int,
              chain: int | None = None, contract: str | None = None) -> bytes:
        key = signer if isinstance(signer, (bytes, str)) else signer.private_key
        data = eip712.typed_data(
            "Transfer", eip712.transfer_message(sender, to, token_id, nonce, deadline),
            chain if chain is not None else chain_id, contract or cert.address,
        )
        return eip712.sign(data, key)

    return _sign


@pytest.fixture(scope="session")
def sign_typed(cert, chain_id) -> Callable[..., bytes]:
    """Builder: ``signer`` (an Ape test account or a raw private key) signs the
    certificate-domain message ``primary_type`` built from ``message``."""

    def _sign(signer, primary_type: str, message: dict, chain: int | None = None,
              contract: str | None = None) -> bytes:
        key = signer if isinstance(signer, (bytes, str)) else signer.private_key
        data = eip712.typed_data(primary_type, message, chain if chain is not None else chain_id,
                                 contract or cert.address)
        return eip712.sign(data, key)

    return _sign


@pytest.fixture
def fresh_key():
    """A private key nobody else holds (a bottle tag, a claim key)."""
    return Account.from_key(secrets.token_bytes(32))
