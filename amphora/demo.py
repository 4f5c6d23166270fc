"""Seed a local chain with a sample winery, custodian, lot, holders and a relayed
transfer, so that `make demo` shows a living system."""

from __future__ import annotations

import os
import secrets
from dataclasses import dataclass, field
from pathlib import Path

from amphora import custody, eip712, lots
from amphora.deploy import CertificateSettings, custody_registry, deploy_all, grant_custodian, grant_issuer
from amphora.manifest import Manifest
from amphora.merkle import ReserveTree
from amphora.settlement import Statement, statement

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
EXAMPLE_LOT = EXAMPLES / "demo-lot.json"
STORAGE_REPORT = EXAMPLES / "demo-storage-report.txt"


@dataclass
class DemoWorld:
    manifest: Manifest
    lot_id: int
    bottles: list[lots.Bottle]
    holders: dict[str, str]
    relayer_key: str
    sample_token: int
    flagged_token: int
    redeemed_token: int
    gift_token: int
    #: The claim link's secret of the pending gift (a demo only prints it).
    gift_secret: str
    reserve_file: Path
    merchants: dict[str, str]
    settlement: Statement
    settlement_files: tuple[Path, Path]
    #: The custodial accounts' master key and the operator token of this demo
    #: run (random each run unless AMPHORA_MASTER_KEY / AMPHORA_ADMIN_TOKEN are set).
    master_key: str = field(default_factory=lambda: os.environ.get("AMPHORA_MASTER_KEY") or secrets.token_hex(32))
    admin_token: str = field(default_factory=lambda: os.environ.get("AMPHORA_ADMIN_TOKEN")
                             or secrets.token_urlsafe(24))


def seed_points(manifest: Manifest, out_dir: Path) -> tuple[dict[str, str], Statement, tuple[Path, Path]]:
    """Two merchants: a wine bar issues points to Alice, who spends some at a
    cellar shop, which redeems them; then the clearing statement of it all."""
    import json

    from ape import accounts, chain, project

    admin, alice = accounts.test_accounts[0], accounts.test_accounts[3]
    wine_bar, cellar_shop = accounts.test_accounts[10], accounts.test_accounts[11]
    usd = 10**6
    stablecoin = project.ReferenceStablecoin.at(manifest.address("Stablecoin"))
    points = project.PointsToken.at(manifest.address("PointsToken"))
    start = chain.blocks.head.number + 1
    stablecoin.configureMinter(admin, 1_000_000 * usd, sender=admin)
    for name, merchant in (("Le Bar à Vin", wine_bar), ("La Cave du Port", cellar_shop)):
        stablecoin.mint(merchant, 100_000 * usd, sender=admin)
        points.register_merchant(merchant, name, 50_000 * usd * points.SCALE(), sender=admin)
        stablecoin.approve(points, 2**256 - 1, sender=merchant)
    points.issue(alice, 50 * usd, sender=wine_bar)
    points.transfer(cellar_shop, 20 * usd * points.SCALE(), sender=alice)
    points.redeem(20 * usd * points.SCALE(), sender=cellar_shop)

    record = manifest.contract("PointsToken")
    result = statement(chain.provider.web3, record["address"], record["abi"], start, chain.blocks.head.number)
    out_dir.mkdir(parents=True, exist_ok=True)
    csv_path, json_path = out_dir / "settlement.csv", out_dir / "settlement.json"
    csv_path.write_text(result.to_csv())
    json_path.write_text(json.dumps(result.to_json(), indent=2) + "\n")
    merchants = {"wine bar": wine_bar.address, "cellar shop": cellar_shop.address}
    return merchants, result, (csv_path, json_path)


def public_dir(bottles_out: Path) -> Path:
    """What the demo publishes under /demo/: never the bottles file, which holds
    the tags' private keys."""
    return bottles_out.parent / "public"


def seed(base_url: str, bottles_out: Path) -> DemoWorld:
    from ape import accounts, chain, project
    from eth_account import Account
    from eth_utils import keccak

    admin, winery, custodian, alice, bob, carol, relayer = accounts.test_accounts[:7]
    manifest = deploy_all(admin, certificate=CertificateSettings(base_uri=f"{base_url}/metadata/"))
    cert = project.WineCertificate.at(manifest.address("WineCertificate"))
    if not cert.is_issuer(winery):
        grant_issuer(manifest, admin, winery.address, "Domaine Amphora")
    if not cert.is_custodian(custodian):
        grant_custodian(manifest, admin, custodian.address, "Cave Centrale de Pauillac")

    description = lots.LotDescription.from_file(EXAMPLE_LOT)
    description.custodian = custodian.address
    description.metadata_uri = f"{base_url}/lots/{cert.lot_count() + 1}/metadata.json"
    issued = lots.issue(cert, winery, description)
    lots.write_document(lots.document_path(chain.chain_id, issued.lot_id), issued.metadata)
    lots.write_bottles(bottles_out, issued.lot_id, issued.bottles, base_url)
    token = lambda serial: lots.token_id(issued.lot_id, serial)  # noqa: E731

    # First sales: the winery sells bottles 1 to 3.
    for serial, buyer in ((1, alice), (2, bob), (3, carol)):
        cert.transferFrom(winery, buyer, token(serial), sender=winery)
    # Alice passes bottle 1 to Bob without paying gas: she signs, the relayer submits.
    deadline = chain.pending_timestamp + 3600
    data = eip712.typed_data(
        "Transfer", eip712.transfer_message(alice.address, bob.address, token(1), cert.nonces(alice), deadline),
        chain.chain_id, cert.address,
    )
    signature = eip712.sign(data, alice.private_key)
    cert.transfer_with_signature(alice, bob, token(1), cert.nonces(alice), deadline, signature, sender=relayer)
    # Bob asks for bottle 2 to be delivered (signed, relayed); the cellar ships it.
    order_hash = keccak(text="demo delivery order: bottle 2 to Bob")
    data = eip712.typed_data("RequestRedemption", eip712.request_redemption_message(
        bob.address, token(2), order_hash, cert.nonces(bob), deadline), chain.chain_id, cert.address)
    cert.request_redemption_with_signature(bob, token(2), order_hash, cert.nonces(bob), deadline,
                                           eip712.sign(data, bob.private_key), sender=relayer)
    cert.confirm_redemption(token(2), sender=custodian)
    # Carol gifts bottle 3 by claim link: the link's secret is a fresh key.
    claim_key = Account.create()
    expiry = chain.pending_timestamp + 7 * 24 * 3600
    data = eip712.typed_data("CreateGift", eip712.create_gift_message(
        carol.address, token(3), claim_key.address, expiry, cert.nonces(carol), deadline), chain.chain_id, cert.address)
    cert.create_gift_with_signature(carol, token(3), claim_key.address, expiry, cert.nonces(carol), deadline,
                                    eip712.sign(data, carol.private_key), sender=relayer)
    # Bottle 5 went missing in a shipment: the winery flags it.
    cert.flag(token(5), b"\x01" * 32, sender=winery)
    # The cellar attests the lot's storage and proves which bottles it holds.
    registry = custody_registry(manifest)
    # Both documents are published by the demo's API under /demo/ (see `serve`).
    public = public_dir(bottles_out)
    public.mkdir(parents=True, exist_ok=True)
    report = public / STORAGE_REPORT.name
    report.write_bytes(STORAGE_REPORT.read_bytes())
    custody.attest_storage(registry, custodian, issued.lot_id, report.read_bytes(), f"{base_url}/demo/{report.name}")
    tree = ReserveTree.build([token(b.serial) for b in issued.bottles if b.serial != 2])
    custody.post_reserve_root(registry, custodian, tree, f"{base_url}/demo/reserve.json")
    reserve_file = custody.write_reserve_document(public / "reserve.json", tree)

    merchants, settlement, files = seed_points(manifest, bottles_out.parent)
    return DemoWorld(
        merchants=merchants, settlement=settlement, settlement_files=files,
        manifest=manifest, lot_id=issued.lot_id, bottles=issued.bottles,
        holders={"alice": alice.address, "bob": bob.address, "carol": carol.address},
        relayer_key=str(relayer.private_key),
        sample_token=token(1), flagged_token=token(5), redeemed_token=token(2), gift_token=token(3),
        gift_secret="0x" + claim_key.key.hex(), reserve_file=reserve_file,
    )


def describe(world: DemoWorld, base_url: str, rpc_url: str) -> str:
    first = world.bottles[0]
    proof = ",".join(first.proof)
    sample = world.sample_token
    lines = [
        "",
        "Amphora demo is running (Ctrl-C stops the API and the node).",
        f"  node (anvil)          {rpc_url}",
        f"  manifest              {world.manifest.path}",
        f"  API docs              {base_url}/docs",
        f"  verify a bottle       {base_url}/verify/{sample}",
        f"  same, as JSON         {base_url}/certificates/{sample}",
        f"  with its tag proof    {base_url}/certificates/{sample}?tag={first.tag_address}&proof={proof}",
        f"  a flagged bottle      {base_url}/verify/{world.flagged_token}",
        f"  a redeemed bottle     {base_url}/verify/{world.redeemed_token}",
        f"  a pending gift        {base_url}/verify/{world.gift_token} (claim it into a new account: "
        f"POST {base_url}/auth/signup, then POST {base_url}/me/relay/gift-claims with token_id "
        f"{world.gift_token} and claim_secret {world.gift_secret})",
        f"  operator              {base_url}/admin/usage (Authorization: Bearer {world.admin_token})",
        f"  reserve proofs        {base_url}/demo/{world.reserve_file.name}",
        f"  health                {base_url}/health",
        f"  holders               {', '.join(f'{k} {v}' for k, v in world.holders.items())}",
        f"  merchants             {', '.join(f'{k} {v}' for k, v in world.merchants.items())}",
        f"  settlement            {world.settlement_files[0]} "
        f"({'reconciled' if world.settlement.reconciled else 'NOT reconciled'}; "
        f"{base_url}/points/settlement?from_block={world.settlement.from_block}"
        f"&to_block={world.settlement.to_block})",
        f"  balances of alice     {base_url}/accounts/{world.holders['alice']}/balances",
        "",
    ]
    return "\n".join(lines)


def serve(world: DemoWorld, rpc_url: str, host: str, port: int) -> None:
    import uvicorn
    from pydantic import SecretStr
    from starlette.staticfiles import StaticFiles

    from api.main import create_app
    from api.settings import Settings

    # A fresh relayer database per demo: the node is fresh too, and an old
    # outbox would hold relayer nonces this chain never saw.
    relay_db = world.reserve_file.parent.parent / "relay.sqlite"
    for stale in relay_db.parent.glob(relay_db.name + "*"):
        stale.unlink()
    settings = Settings(rpc_url=rpc_url, manifest_path=world.manifest.path,
                        relayer_private_key=SecretStr(world.relayer_key), public_base_url=f"http://{host}:{port}",
                        relay_db=relay_db, master_key=SecretStr(world.master_key),
                        admin_token=SecretStr(world.admin_token))
    app = create_app(settings)
    # The custodian's published documents, at the URIs attested on chain.
    app.mount("/demo", StaticFiles(directory=world.reserve_file.parent), name="demo")
    uvicorn.run(app, host=host, port=port, log_level="info")


