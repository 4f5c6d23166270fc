"""Deploying and operating Amphora's contracts through Ape.

``scripts/deploy.py`` and the operator scripts are thin click wrappers around
these functions; the tests and the demo call them directly, so what is tested
is what operators run.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from amphora import eip712
from amphora.manifest import Manifest

logger = logging.getLogger(__name__)

#: Chains where Amphora may deploy its own local-only pieces and skip confirmation.
LOCAL_CHAIN_IDS = frozenset({1337, 31337})


@dataclass(frozen=True)
class CertificateSettings:
    name: str = "Amphora Wine Certificate"
    symbol: str = "WINE"
    base_uri: str = "http://127.0.0.1:8000/metadata/"
    eip712_name: str = eip712.CERTIFICATE_DOMAIN_NAME
    eip712_version: str = eip712.CERTIFICATE_DOMAIN_VERSION

    def constructor_args(self) -> list[Any]:
        return [self.name, self.symbol, self.base_uri, self.eip712_name, self.eip712_version]


def _abi_json(contract_type: Any) -> list[dict[str, Any]]:
    return [item.model_dump(mode="json", by_alias=True, exclude_none=True) for item in contract_type.abi]


def _code_at(address: str) -> bytes:
    from ape import chain

    return bytes(chain.provider.get_code(address))


def _runs(address: str, container: Any) -> bool:
    """Whether ``address`` holds this build of ``container``'s contract: its
    runtime code followed by its immutables. Raises ``ValueError`` when the
    address holds other code on a non-local network, where deploying anew in
    its place would orphan what the old contract holds."""
    from ape import chain
    from eth_utils import to_bytes

    code = _code_at(address)
    if not code:
        return False
    runtime = to_bytes(hexstr=container.contract_type.runtime_bytecode.bytecode)
    if code.startswith(runtime) or _deploys(container, code, len(runtime)):
        return True
    name = container.contract_type.name
    if chain.chain_id not in LOCAL_CHAIN_IDS:
        raise ValueError(f"{name}: {address} in the manifest holds other code than this build of {name}; "
                         "move the manifest aside to deploy anew, or check out the matching version")
    logger.warning("%s: %s in the manifest holds other code on this chain; deploying anew", name, address)
    return False


def _deploys(container: Any, code: bytes, runtime_size: int) -> bool:
    """Whether ``code`` starts with the runtime this build's init code deploys.
    Vyper's Venom pipeline (the certificate's) reports a runtime a byte longer,
    its offsets shifted, than the one its init code copies out; that one is
    what runs, so it is compared whole (all but the last bytes of the reported
    size, where the immutables start)."""
    from eth_utils import to_bytes

    init = to_bytes(hexstr=container.contract_type.deployment_bytecode.bytecode)
    start = init.find(code[:64])
    if start < 0:
        return False
    embedded = init[start:]
    same = next((i for i, (a, b) in enumerate(zip(code, embedded, strict=False)) if a != b),
                min(len(code), len(embedded)))
    return same >= runtime_size - 32


def deploy_or_reuse(manifest: Manifest, name: str, deployer: Any, args: list[Any], *,
                    contract: str | None = None, fresh: bool = False) -> tuple[Any, bool]:
    """The contract the manifest records under ``name`` if its address still runs
    this build of it (and ``fresh`` is not asked for); otherwise a new deployment of
    ``contract`` (default: ``name``), recorded in the manifest. The flag says
    whether it was deployed now."""
    from ape import chain, project

    container = getattr(project, contract or name)
    recorded = manifest.contracts.get(name)
    if recorded and recorded.get("contract", name) != (contract or name):
        fresh = True  # the record is of another contract (e.g. an external stablecoin)
    if recorded and not fresh and _runs(recorded["address"], container):
        logger.info("%s: reusing %s from the manifest", name, recorded["address"])
        return container.at(recorded["address"]), False
    if recorded and fresh:
        logger.info("%s: replacing %s from the manifest", name, recorded["address"])
    elif recorded and not _code_at(recorded["address"]):
        logger.warning("%s: %s in the manifest has no code on this chain; deploying anew",
                       name, recorded["address"])
    instance = deployer.deploy(container, *args)
    receipt = chain.get_receipt(instance.txn_hash) if instance.txn_hash else None
    manifest.contracts[name] = {
        "contract": contract or name,
        "address": instance.address,
        "abi": _abi_json(container.contract_type),
        "deploy_block": receipt.block_number if receipt else None,
        "deploy_tx": instance.txn_hash,
        "deployer": deployer.address,
        "constructor_args": args,
    }
    logger.info("%s: deployed at %s", name, instance.address)
    return instance, True


@dataclass(frozen=True)
class LendingSettings:
    #: How old (seconds) an appraisal may be for an offer with a maximum loan-to-value.
    max_appraisal_age: int = 30 * 24 * 3600
    eip712_name: str = eip712.LENDING_DOMAIN_NAME
    eip712_version: str = eip712.LENDING_DOMAIN_VERSION


@dataclass(frozen=True)
class TokenSettings:
    #: An existing stablecoin on a real network; None deploys ReferenceStablecoin
    #: (allowed on local and test networks only).
    stablecoin: str | None = None
    stablecoin_name: str = "Amphora Test USD"
    stablecoin_symbol: str = "tUSD"
    points_name: str = "Amphora Points"
    points_symbol: str = "PTS"
    points_decimals: int = 18
    utility_name: str = "Amphora Utility"
    utility_symbol: str = "AMPU"
    utility_cap: int = 1_000_000_000 * 10**18


def deploy_all(deployer: Any, *, directory: Path | None = None,
               certificate: CertificateSettings | None = None,
               tokens: TokenSettings | None = None, lending: LendingSettings | None = None) -> Manifest:
    """Deploy (or reuse) every Amphora contract and write the manifest."""
    from ape import chain, project

    chain_id = chain.chain_id
    manifest = Manifest.load_or_new(chain_id, directory)
    manifest.network = chain.provider.network.choice
    settings = certificate or CertificateSettings()
    money = tokens or TokenSettings()
    cert, deployed = deploy_or_reuse(manifest, "WineCertificate", deployer, settings.constructor_args())
    if deployed:
        # A new certificate starts with no issuers or custodians.
        manifest.roles = {}
    record_roles(manifest, cert)
    # The custodians' registry follows one certificate: a new certificate needs a new registry.
    registry_address = str((manifest.contracts.get("CustodyRegistry") or {}).get("address") or "")
    stale_registry = bool(registry_address) and _runs(registry_address, project.CustodyRegistry) and (
        project.CustodyRegistry.at(registry_address).CERTIFICATE() != cert.address)
    registry, _ = deploy_or_reuse(manifest, "CustodyRegistry", deployer, [cert.address], fresh=stale_registry)

    if money.stablecoin is None:
        if chain_id not in LOCAL_CHAIN_IDS:
            raise ValueError("a non-local network needs the address of an existing stablecoin (--stablecoin)")
        stablecoin, _ = deploy_or_reuse(
            manifest, "Stablecoin", deployer,
            [money.stablecoin_name, money.stablecoin_symbol, money.stablecoin_name, "1"],
            contract="ReferenceStablecoin")
    else:
        stablecoin = project.ReferenceStablecoin.at(money.stablecoin)  # any ERC-20: only its ABI is used
        recorded = manifest.contracts.get("Stablecoin", {})
        if recorded.get("address") != stablecoin.address:
            manifest.contracts["Stablecoin"] = {
                "contract": "external", "address": stablecoin.address,
                "abi": _abi_json(project.ReferenceStablecoin.contract_type), "deploy_block": None,
            }
    points_address = str((manifest.contracts.get("PointsToken") or {}).get("address") or "")
    stale = bool(points_address) and _runs(points_address, project.PointsToken) and (
        project.PointsToken.at(points_address).STABLECOIN() != stablecoin.address)
    deploy_or_reuse(
        manifest, "PointsToken", deployer,
        [stablecoin.address, money.points_name, money.points_symbol, money.points_decimals, money.points_name, "1"],
        fresh=stale)
    deploy_or_reuse(
        manifest, "UtilityToken", deployer,
        [money.utility_name, money.utility_symbol, money.utility_cap, money.utility_name, "1"])
    # Last, so that adding it left every earlier contract's address as it was.
    deploy_lending(manifest, deployer, cert, registry, stablecoin, lending or LendingSettings())
    manifest.save()
    return manifest


def deploy_lending(manifest: Manifest, deployer: Any, cert: Any, registry: Any, stablecoin: Any,
                   settings: LendingSettings) -> Any:
    """PledgeLending over ``cert`` and ``stablecoin``, wired into the certificate.

    The certificate accepts its lending contract once (``set_lending``): if it
    is already wired, that contract is the one recorded, whatever stablecoin it
    lends (a warning says so when the stablecoin changed: lending in another
    one needs a new certificate)."""
    from ape import project

    wired = cert.lending()
    if int(wired, 16):
        lending = project.PledgeLending.at(wired)
        if lending.STABLECOIN() != stablecoin.address:
            logger.warning("PledgeLending %s stays bound to stablecoin %s: the certificate trusts it for good; "
                           "lending in %s needs a new certificate", wired, lending.STABLECOIN(), stablecoin.address)
        if (manifest.contracts.get("PledgeLending") or {}).get("address") != wired:
            manifest.contracts["PledgeLending"] = {
                "contract": "PledgeLending", "address": wired,
                "abi": _abi_json(project.PledgeLending.contract_type), "deploy_block": None,
            }
        return lending
    recorded = str((manifest.contracts.get("PledgeLending") or {}).get("address") or "")
    stale = bool(recorded) and _runs(recorded, project.PledgeLending) and (
        project.PledgeLending.at(recorded).CERTIFICATE() != cert.address)
    lending, _ = deploy_or_reuse(
        manifest, "PledgeLending", deployer,
        [cert.address, registry.address, stablecoin.address, settings.max_appraisal_age,
         settings.eip712_name, settings.eip712_version], fresh=stale)
    cert.set_lending(lending.address, sender=deployer)
    logger.info("WineCertificate: lending contract set to %s", lending.address)
    return lending


def record_roles(manifest: Manifest, cert: Any) -> None:
    """Refresh the manifest's roles from the chain (admin) and its own record."""
    roles = manifest.roles
    roles["admin"] = cert.owner()
    pending = cert.pending_owner()
    roles["pending_admin"] = pending if int(pending, 16) else None
    for key in ("issuers", "custodians", "appraisers"):
        roles.setdefault(key, {})


def certificate(manifest: Manifest) -> Any:
    from ape import project

    return project.WineCertificate.at(manifest.address("WineCertificate"))


def custody_registry(manifest: Manifest) -> Any:
    from ape import project

    return project.CustodyRegistry.at(manifest.address("CustodyRegistry"))


def grant_issuer(manifest: Manifest, admin: Any, account: str, name: str) -> None:
    cert = certificate(manifest)
    cert.grant_issuer(account, name, sender=admin)
    manifest.roles.setdefault("issuers", {})[str(account)] = name
    manifest.save()


def revoke_issuer(manifest: Manifest, admin: Any, account: str) -> None:
    cert = certificate(manifest)
    cert.revoke_issuer(account, sender=admin)
    manifest.roles.setdefault("issuers", {}).pop(str(account), None)
    manifest.save()


def grant_custodian(manifest: Manifest, admin: Any, account: str, name: str) -> None:
    cert = certificate(manifest)
    cert.grant_custodian(account, name, sender=admin)
    manifest.roles.setdefault("custodians", {})[str(account)] = name
    manifest.save()


def revoke_custodian(manifest: Manifest, admin: Any, account: str) -> None:
    cert = certificate(manifest)
    cert.revoke_custodian(account, sender=admin)
    manifest.roles.setdefault("custodians", {}).pop(str(account), None)
    manifest.save()


def pledge_lending(manifest: Manifest) -> Any:
    from ape import project

    return project.PledgeLending.at(manifest.address("PledgeLending"))


def grant_appraiser(manifest: Manifest, admin: Any, account: str, name: str) -> None:
    """Let ``account`` post lot appraisals to PledgeLending (``name`` is kept in the manifest)."""
    pledge_lending(manifest).set_appraiser(account, True, sender=admin)
    manifest.roles.setdefault("appraisers", {})[str(account)] = name
    manifest.save()


@dataclass(frozen=True)
class CaskSettings:
    """One cask's shares contract: its token, its facts and its rules."""

    name: str = "Amphora Cask 1"
    symbol: str = "CASK1"
    supply: int = 1_200
    decimals: int = 0
    producer: str = "Domaine Amphora"
    wine: str = "Pauillac Grand Vin, cask 1"
    vintage: int = 2023
    volume_litres: int = 225
    expected_bottles: int = 300
    #: The custodian keeping the cask (and later its bottles).
    cellar: str = ""
    document_hash: str = "0x" + "00" * 32
    #: Until this unix time only the issuer's shares move (the primary sale).
    lockup_end: int = 0

    def constructor_args(self, certificate: str, stablecoin: str, agent: str) -> list[Any]:
        facts = (self.producer, self.wine, self.vintage, self.volume_litres, self.expected_bottles, self.cellar,
                 self.document_hash, self.lockup_end, certificate, stablecoin)
        return [certificate, stablecoin, agent, self.supply, self.decimals, self.name, self.symbol, self.name,
                eip712.CASK_DOMAIN_VERSION, facts]


def deploy_cask(manifest: Manifest, deployer: Any, agent: str, settings: CaskSettings, *,
                record: str = "CaskShares") -> Any:
    """A cask's shares contract over the manifest's certificate and stablecoin,
    recorded in the manifest under ``record`` (reused if it still runs this
    build). The deployer is the issuer and receives every share; the issuer
    is recorded as an eligible investor by ``agent`` afterwards (see
    :func:`record_investor`)."""
    cert = certificate(manifest)
    stablecoin = manifest.address("Stablecoin")
    if not settings.cellar:
        raise ValueError("a cask needs its cellar (a registered custodian)")
    cask, _ = deploy_or_reuse(manifest, record, deployer,
                              settings.constructor_args(cert.address, stablecoin, agent), contract="CaskShares")
    manifest.save()
    return cask


def record_investor(cask: Any, agent: Any, account: str, country: int, expiry: int) -> None:
    """The compliance agent records ``account`` as eligible (ISO 3166-1 numeric
    ``country``, check valid until ``expiry``)."""
    cask.set_investor(account, country, expiry, sender=agent)
