"""Seed a local chain with a sample winery, custodian, lot, holders, points,
and a lender with an offer on the board and a running loan, so that `make demo`
shows a living system. What holders do (a transfer, a redemption request, a
gift, a points payment, a loan acceptance) goes through the API's own relayer,
the way a holder's app would send it, so the operator's view (`/admin/usage`)
and every request's status (`/relay/{id}`) show it."""

from __future__ import annotations

import os
import secrets
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

from amphora import custody, eip712, lots, qr
from amphora.deploy import (
    CaskSettings,
    CertificateSettings,
    custody_registry,
    deploy_all,
    deploy_cask,
    grant_appraiser,
    grant_custodian,
    grant_issuer,
    record_investor,
)
from amphora.manifest import Manifest
from amphora.merkle import ReserveTree
from amphora.settlement import Statement, statement

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
EXAMPLE_LOT = EXAMPLES / "demo-lot.json"
STORAGE_REPORT = EXAMPLES / "demo-storage-report.txt"
USD = 10**6
DAY = 24 * 3600
#: The demo cask's holders: ISO 3166-1 numeric France, eligibility checked for a year.
CASK_COUNTRY = 250
CASK_SHARES = {"alice": 120, "bob": 60}
#: The demo's loan: 1,000 stablecoin against a bottle appraised at 2,500, due in 30 days.
LOAN_PRINCIPAL = 1_000 * USD
LOAN_REPAYMENT = 1_050 * USD
APPRAISAL = 2_500 * USD
#: The wallet-less holder whose login the demo prints: her account holds bottle APP_BOTTLE.
APP_LOGIN = "erin@demo.amphora.example"
APP_BOTTLE = 6
#: The businesses' custodial logins the demo prints, one per console role, and the names their grants carry.
BUSINESS_LOGINS = {
    "issuer": ("winery@demo.amphora.example", "Domaine Amphora (console)"),
    "custodian": ("cellar@demo.amphora.example", "Cave Amphora (console)"),
    "appraiser": ("appraiser@demo.amphora.example", "Amphora Appraisals (console)"),
    "lender": ("lender-console@demo.amphora.example", "Amphora Lending (console)"),
    "merchant": ("merchant@demo.amphora.example", "Le Comptoir Amphora (console)"),
}
#: What each business account gets to act on its own: ETH for its gas, and stablecoin where the role spends it.
BUSINESS_ETH = 10**18
BUSINESS_STABLECOIN = {"lender": 50_000 * USD, "merchant": 50_000 * USD}
#: What the console's merchant may issue, in points units (18 decimals: 50,000 stablecoin of points).
BUSINESS_MERCHANT_CAP = 50_000 * USD * 10**12


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
    #: The relayer's SQLite database, which the seeding API and the served API share.
    relay_db: Path
    #: The loan offer board's SQLite database, likewise.
    offer_db: Path
    #: What the holders asked the API's relayer to do: action => request id.
    relayed: dict[str, str]
    lender: str
    appraiser: str
    #: Dave's bottle, pledged for the running loan.
    loan_token: int
    loan_id: int
    #: The lot-wide offer left on the board.
    open_offer_hash: str
    #: The custodial accounts' master key and the operator token of this demo
    #: run (random each run unless AMPHORA_MASTER_KEY / AMPHORA_ADMIN_TOKEN are set).
    master_key: str = field(default_factory=lambda: os.environ.get("AMPHORA_MASTER_KEY") or secrets.token_hex(32))
    admin_token: str = field(default_factory=lambda: os.environ.get("AMPHORA_ADMIN_TOKEN")
                             or secrets.token_urlsafe(24))
    #: The demo cask's shares contract (recorded in the manifest as ``CaskShares``).
    cask: str = ""
    #: The sample bottle's GS1 Digital Link (what its QR code will carry), answered by the API's resolver.
    sample_digital_link: str = ""
    #: The lot's EU e-label (the bottles' default link, as the demo lot is marked for the EU market).
    elabel_url: str = ""
    #: The password of the wallet-less holder's account (:data:`APP_LOGIN`, random each run) and her bottle.
    app_password: str = ""
    app_token: int = 0
    #: The businesses' logins: role => (identifier, password, custodial address), each role granted on chain.
    business: dict[str, tuple[str, str, str]] = field(default_factory=dict)


class DemoApi:
    """The API the demo serves, run in process while seeding: holders' actions
    are posted to its relay endpoints (each with an ``Idempotency-Key``, as an
    app retrying safely would) and followed until confirmed."""

    def __init__(self, settings: Any):
        from fastapi.testclient import TestClient

        from api.main import create_app

        self.client = TestClient(create_app(settings), base_url=settings.public_base_url)

    def __enter__(self) -> DemoApi:
        self.client.__enter__()  # starts the relayer's outbox worker
        return self

    def __exit__(self, *exc: object) -> None:
        self.client.__exit__(*exc)

    def post(self, path: str, body: dict[str, Any], token: str | None = None, expect: int = 202) -> dict[str, Any]:
        headers = {"Idempotency-Key": secrets.token_hex(16)}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        response = self.client.post(path, json=body, headers=headers)
        for _ in range(3):  # a rate limit (e.g. on signups) asks to come back: do, as an app would
            if response.status_code != 429:
                break
            time.sleep(min(float(response.headers.get("Retry-After") or 1), 30.0))
            response = self.client.post(path, json=body, headers=headers)
        if response.status_code != expect:
            raise RuntimeError(f"demo seeding: POST {path} answered {response.status_code}: {response.text}")
        return response.json()

    def sign_up(self, identifier: str, password: str | None = None) -> dict[str, Any]:
        """A user of the holders' app: its session (``token``) and custodial ``address``."""
        body = {"identifier": identifier, "password": password or secrets.token_urlsafe(18)}
        return self.post("/auth/signup", body, expect=201)

    def relay(self, path: str, body: dict[str, Any], token: str, timeout: float = 30.0) -> str:
        """POST a signed action to the relayer as the user of ``token`` and wait
        until it is confirmed: its request id."""
        request_id = self.post(path, body, token)["request_id"]
        deadline = time.monotonic() + timeout
        while True:
            status = self.client.get(f"/relay/{request_id}").json()
            if status["status"] == "confirmed":
                return str(request_id)
            if status["status"] == "failed" or time.monotonic() > deadline:
                raise RuntimeError(f"demo seeding: {path} request {request_id} ended {status}")
            time.sleep(0.05)


def demo_settings(world_dir: Path, base_url: str, manifest: Manifest, relayer_key: str, master_key: str,
                  admin_token: str, rpc_url: str) -> Any:
    """The API settings of one demo run: the seeding API and the served one share them."""
    from pydantic import SecretStr

    from api.settings import Settings

    return Settings(rpc_url=rpc_url, manifest_path=manifest.path, relayer_private_key=SecretStr(relayer_key),
                    public_base_url=base_url, relay_db=world_dir / "relay.sqlite",
                    offer_db=world_dir / "offers.sqlite", master_key=SecretStr(master_key),
                    admin_token=SecretStr(admin_token), relay_poll_seconds=0.05)


def seed_points(manifest: Manifest, out_dir: Path, api: DemoApi,
                tokens: dict[str, str]) -> tuple[dict[str, str], Statement, tuple[Path, Path], str]:
    """Two merchants: a wine bar issues points to Alice, who pays some to a
    cellar shop by a signed EIP-3009 transfer the relayer submits; the shop
    redeems them; then the clearing statement of it all. Also the relay
    request id of Alice's payment."""
    import json

    from ape import accounts, chain, project

    admin, alice = accounts.test_accounts[0], accounts.test_accounts[3]
    wine_bar, cellar_shop = accounts.test_accounts[10], accounts.test_accounts[11]
    stablecoin = project.ReferenceStablecoin.at(manifest.address("Stablecoin"))
    points = project.PointsToken.at(manifest.address("PointsToken"))
    start = chain.blocks.head.number + 1
    stablecoin.configureMinter(admin, 1_000_000 * USD, sender=admin)
    for name, merchant in (("Le Bar à Vin", wine_bar), ("La Cave du Port", cellar_shop)):
        stablecoin.mint(merchant, 100_000 * USD, sender=admin)
        points.register_merchant(merchant, name, 50_000 * USD * points.SCALE(), sender=admin)
        stablecoin.approve(points, 2**256 - 1, sender=merchant)
    points.issue(alice, 50 * USD, sender=wine_bar)
    value, nonce, valid_before = 20 * USD * points.SCALE(), secrets.token_bytes(32), chain.pending_timestamp + DAY
    data = eip712.typed_data("TransferWithAuthorization", eip712.authorization_message(
        alice.address, cellar_shop.address, value, 0, valid_before, nonce), chain.chain_id, points.address,
        name=points.eip712Domain()[1], version=points.eip712Domain()[2])
    payment = api.relay("/relay/points-transfers", {
        "from": alice.address, "to": cellar_shop.address, "value": value, "valid_after": 0,
        "valid_before": valid_before, "nonce": "0x" + nonce.hex(),
        "signature": "0x" + eip712.sign(data, alice.private_key).hex()}, tokens["alice"])
    points.redeem(value, sender=cellar_shop)

    record = manifest.contract("PointsToken")
    result = statement(chain.provider.web3, record["address"], record["abi"], start, chain.blocks.head.number)
    out_dir.mkdir(parents=True, exist_ok=True)
    csv_path, json_path = out_dir / "settlement.csv", out_dir / "settlement.json"
    csv_path.write_text(result.to_csv())
    json_path.write_text(json.dumps(result.to_json(), indent=2) + "\n")
    merchants = {"wine bar": wine_bar.address, "cellar shop": cellar_shop.address}
    return merchants, result, (csv_path, json_path), payment


def seed_lending(manifest: Manifest, api: DemoApi, tokens: dict[str, str], lot_id: int,
                 loan_token: int) -> tuple[str, str, int, str, str]:
    """An appraiser values the lot; a lender funds itself and posts two signed
    offers to the API's board, one for Dave's bottle and one for any bottle of
    the lot; Dave accepts the first by a signature the relayer submits. The
    lender, the appraiser, the loan id, the open offer's hash and the relay
    request id of the acceptance."""
    from ape import accounts, chain, project

    admin, lender, appraiser, dave = (accounts.test_accounts[i] for i in (0, 14, 15, 16))
    lending = project.PledgeLending.at(manifest.address("PledgeLending"))
    stablecoin = project.ReferenceStablecoin.at(manifest.address("Stablecoin"))
    grant_appraiser(manifest, admin, appraiser.address, "Bordeaux Wine Appraisals")
    lending.post_appraisal(lot_id, APPRAISAL, chain.blocks.head.timestamp, sender=appraiser)
    stablecoin.configureMinter(admin, 1_000_000 * USD, sender=admin)
    stablecoin.mint(lender, 100_000 * USD, sender=admin)
    stablecoin.approve(lending, 2**256 - 1, sender=lender)

    def offer(token_id: int, nonce: int, repayment: int) -> dict[str, Any]:
        message = eip712.loan_offer_message(
            lender.address, stablecoin.address, lot_id, token_id, LOAN_PRINCIPAL, repayment, 30 * DAY, 7 * DAY,
            6_000, chain.pending_timestamp + 30 * DAY, nonce)
        signature = eip712.sign(eip712.lending_typed_data("LoanOffer", message, chain.chain_id, lending.address),
                                lender.private_key)
        names = {"lotId": "lot_id", "tokenId": "token_id", "gracePeriod": "grace_period",
                 "maxLtvBps": "max_ltv_bps"}
        return {"offer": {names.get(k, k): v for k, v in message.items()}, "signature": "0x" + signature.hex()}

    for_dave = api.post("/offers", offer(loan_token, 1, LOAN_REPAYMENT), tokens["lender"], expect=201)
    lot_wide = api.post("/offers", offer(0, 2, 1_060 * USD), tokens["lender"], expect=201)
    deadline = chain.pending_timestamp + 3600
    acceptance = eip712.lending_typed_data("AcceptOffer", eip712.accept_offer_message(
        bytes.fromhex(for_dave["offer_hash"][2:]), loan_token, dave.address, deadline), chain.chain_id,
        lending.address)
    request_id = api.relay("/relay/loan-acceptances", {
        "offer": for_dave["offer"], "lender_signature": for_dave["signature"], "token_id": loan_token,
        "borrower": dave.address, "deadline": deadline,
        "borrower_signature": "0x" + eip712.sign(acceptance, dave.private_key).hex()}, tokens["dave"])
    loan_id = int(lending.loan_id_of(loan_token))
    return lender.address, appraiser.address, loan_id, str(lot_wide["offer_hash"]), request_id


def seed_cask(manifest: Manifest, winery: Any, custodian: Any, agent: Any, holders: dict[str, Any]) -> str:
    """One cask of shares issued by the winery, kept by the demo's cellar, its
    compliance agent a test account; the winery, Alice and Bob recorded as
    eligible, Alice and Bob holding shares. Not bottled. Its address."""
    from ape import chain

    cask = deploy_cask(manifest, winery, agent.address, CaskSettings(cellar=custodian.address))
    expiry = chain.pending_timestamp + 365 * DAY
    for account in (winery, *holders.values()):
        record_investor(cask, agent, account.address, CASK_COUNTRY, expiry)
    for name, shares in CASK_SHARES.items():
        cask.transfer(holders[name], shares, sender=winery)
    return str(cask.address)


def seed_business(manifest: Manifest, api: DemoApi) -> dict[str, tuple[str, str, str]]:
    """A custodial account for every console role (:data:`BUSINESS_LOGINS`),
    its role granted on chain by the admin, ETH for its own gas (business
    accounts sign their transactions from their own address) and stablecoin
    where the role spends it (the lender lends it, the merchant backs points
    with it). Role => (identifier, password, address)."""
    from ape import accounts, project

    admin = accounts.test_accounts[0]
    stablecoin = project.ReferenceStablecoin.at(manifest.address("Stablecoin"))
    points = project.PointsToken.at(manifest.address("PointsToken"))
    stablecoin.configureMinter(admin, sum(BUSINESS_STABLECOIN.values()), sender=admin)
    logins = {}
    for role, (identifier, name) in BUSINESS_LOGINS.items():
        password = secrets.token_urlsafe(12)
        address = str(api.sign_up(identifier, password)["address"])
        if role == "issuer":
            grant_issuer(manifest, admin, address, name)
        elif role == "custodian":
            grant_custodian(manifest, admin, address, name)
        elif role == "appraiser":
            grant_appraiser(manifest, admin, address, name)
        elif role == "merchant":
            points.register_merchant(address, name, BUSINESS_MERCHANT_CAP, sender=admin)
        admin.transfer(address, BUSINESS_ETH)
        if role in BUSINESS_STABLECOIN:
            stablecoin.mint(address, BUSINESS_STABLECOIN[role], sender=admin)
        logins[role] = (identifier, password, address)
    return logins


def public_dir(bottles_out: Path) -> Path:
    """What the demo publishes under /demo/: never the bottles file, which holds
    the tags' private keys."""
    return bottles_out.parent / "public"


def seed(base_url: str, bottles_out: Path) -> DemoWorld:
    from ape import accounts, chain, project
    from eth_account import Account
    from eth_utils import keccak

    admin, winery, custodian, alice, bob, carol, relayer = accounts.test_accounts[:7]
    dave = accounts.test_accounts[16]
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
    lots.write_bottles(bottles_out, issued.lot_id, issued.bottles, base_url, issued.metadata)
    token = lambda serial: lots.token_id(issued.lot_id, serial)  # noqa: E731

    # First sales: the winery sells bottles 1 to 4.
    for serial, buyer in ((1, alice), (2, bob), (3, carol), (4, dave)):
        cert.transferFrom(winery, buyer, token(serial), sender=winery)
    # Bottle 5 went missing in a shipment: the winery flags it.
    cert.flag(token(5), b"\x01" * 32, sender=winery)

    # A fresh relayer database per demo: the node is fresh too, and an old
    # outbox would hold relayer nonces this chain never saw.
    world_dir = bottles_out.parent
    world_dir.mkdir(parents=True, exist_ok=True)
    for name in ("relay.sqlite", "offers.sqlite"):
        for stale in world_dir.glob(name + "*"):
            stale.unlink()
    master_key = os.environ.get("AMPHORA_MASTER_KEY") or secrets.token_hex(32)
    admin_token = os.environ.get("AMPHORA_ADMIN_TOKEN") or secrets.token_urlsafe(24)
    app_password = secrets.token_urlsafe(12)
    settings = demo_settings(world_dir, base_url, manifest, str(relayer.private_key), master_key, admin_token,
                             chain.provider.uri)
    relayed: dict[str, str] = {}

    def holder_action(primary: str, message: dict[str, Any], signer: Any) -> str:
        return "0x" + eip712.sign(eip712.typed_data(primary, message, chain.chain_id, cert.address),
                                  signer.private_key).hex()

    # What holders do goes through the API's relayer, as their apps would send it.
    with DemoApi(settings) as api:
        # Each holder (and the lender) uses the app with an account of their own.
        # (Their sessions authorise the relay requests; their custodial keys stay unused here.)
        tokens = {name: str(api.sign_up(f"{name}@demo.amphora.example")["token"])
                  for name in ("alice", "bob", "carol", "dave", "lender")}
        # Erin has no wallet: the service keeps her key, and the winery sold her bottle 6.
        erin = api.sign_up(APP_LOGIN, app_password)
        cert.transferFrom(winery, erin["address"], token(APP_BOTTLE), sender=winery)
        deadline = chain.pending_timestamp + 3600
        # Alice passes bottle 1 to Bob without paying gas: she signs, the relayer submits.
        nonce = cert.nonces(alice)
        relayed["transfer"] = api.relay("/relay/transfers", {
            "from": alice.address, "to": bob.address, "token_id": token(1), "nonce": nonce, "deadline": deadline,
            "signature": holder_action("Transfer", eip712.transfer_message(
                alice.address, bob.address, token(1), nonce, deadline), alice)}, tokens["alice"])
        # Bob asks for bottle 2 to be delivered (signed, relayed); the cellar ships it.
        order_hash = keccak(text="demo delivery order: bottle 2 to Bob")
        nonce = cert.nonces(bob)
        relayed["redemption"] = api.relay("/relay/redemptions", {
            "holder": bob.address, "token_id": token(2), "order_hash": "0x" + order_hash.hex(), "nonce": nonce,
            "deadline": deadline, "signature": holder_action("RequestRedemption", eip712.request_redemption_message(
                bob.address, token(2), order_hash, nonce, deadline), bob)}, tokens["bob"])
        cert.confirm_redemption(token(2), sender=custodian)
        # Carol gifts bottle 3 by claim link: the link's secret is a fresh key.
        claim_key = Account.create()
        expiry = chain.pending_timestamp + 7 * DAY
        nonce = cert.nonces(carol)
        relayed["gift"] = api.relay("/relay/gifts", {
            "holder": carol.address, "token_id": token(3), "claim_key": claim_key.address, "expiry": expiry,
            "nonce": nonce, "deadline": deadline, "signature": holder_action("CreateGift", eip712.create_gift_message(
                carol.address, token(3), claim_key.address, expiry, nonce, deadline), carol)}, tokens["carol"])
        merchants, settlement, files, relayed["points payment"] = seed_points(manifest, world_dir, api, tokens)
        lender, appraiser, loan_id, open_offer, relayed["loan acceptance"] = seed_lending(
            manifest, api, tokens, issued.lot_id, token(4))
        business = seed_business(manifest, api)

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
    cask = seed_cask(manifest, winery, custodian, accounts.test_accounts[17], {"alice": alice, "bob": bob})

    return DemoWorld(
        merchants=merchants, settlement=settlement, settlement_files=files,
        manifest=manifest, lot_id=issued.lot_id, bottles=issued.bottles,
        holders={"alice": alice.address, "bob": bob.address, "carol": carol.address, "dave": dave.address},
        relayer_key=str(relayer.private_key),
        sample_token=token(1), flagged_token=token(5), redeemed_token=token(2), gift_token=token(3),
        gift_secret="0x" + claim_key.key.hex(), reserve_file=reserve_file,
        relay_db=settings.relay_db, offer_db=settings.offer_db, relayed=relayed, lender=lender,
        appraiser=appraiser, loan_token=token(4), loan_id=loan_id, open_offer_hash=open_offer,
        master_key=master_key, admin_token=admin_token, cask=cask,
        sample_digital_link=lots.digital_link(issued.metadata, 1).uri(base_url),
        elabel_url=base_url.rstrip("/") + "/e-label" + lots.digital_link(issued.metadata).path(),
        app_password=app_password, app_token=token(APP_BOTTLE), business=business,
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
        f"  its GS1 Digital Link  {world.sample_digital_link} (add ?linkType=linkset for every link)",
        f"  the lot's EU e-label  {world.elabel_url} (what the bottles' code opens: the lot is sold in the EU)",
        f"  its QR code           {base_url}/certificates/{sample}/qr (?format=png); the lot's label sheet "
        f"{base_url}/lots/{world.lot_id}/labels.pdf?first=1&last=24",
        f"  its EPCIS events      {base_url}/epcis/events?MATCH_epc={quote(world.sample_digital_link, safe='')}",
        f"  the holder's app      {base_url}/app/login (log in as {APP_LOGIN} with {world.app_password}: "
        f"her cellar holds bottle {world.app_token})",
        f"  same, as JSON         {base_url}/certificates/{sample}",
        f"  with its tag proof    {base_url}/certificates/{sample}?tag={first.tag_address}&proof={proof}",
        f"  a flagged bottle      {base_url}/verify/{world.flagged_token}",
        f"  a redeemed bottle     {base_url}/verify/{world.redeemed_token}",
        f"  a pending gift        {qr.claim_link(base_url, world.gift_token, world.gift_secret)} (open it in a "
        f"browser: sign up and accept it; or POST {base_url}/me/relay/gift-claims with token_id "
        f"{world.gift_token} and claim_secret {world.gift_secret})",
        f"  operator              {base_url}/admin/usage (Authorization: Bearer {world.admin_token}): "
        f"the holders' {len(world.relayed)} relayed actions",
        f"  operator console      {base_url}/console/operator (sign in with the operator token "
        f"{world.admin_token})",
        f"  business console      {base_url}/console (log in at {base_url}/app/login as):",
        *(f"    {role:<20}{identifier} with {password} ({address})"
          for role, (identifier, password, address) in world.business.items()),
        f"  a relayed transfer    {base_url}/relay/{world.relayed['transfer']}",
        f"  a running loan        {base_url}/collateral/{world.loan_token} (loan {world.loan_id}, "
        f"dave's bottle; {base_url}/loans/{world.loan_id})",
        f"  the offer board       {base_url}/offers?token_id={world.sample_token}",
        f"  reserve proofs        {base_url}/demo/{world.reserve_file.name}",
        f"  health                {base_url}/health",
        f"  holders               {', '.join(f'{k} {v}' for k, v in world.holders.items())}",
        f"  merchants             {', '.join(f'{k} {v}' for k, v in world.merchants.items())}",
        f"  settlement            {world.settlement_files[0]} "
        f"({'reconciled' if world.settlement.reconciled else 'NOT reconciled'}; "
        f"{base_url}/points/settlement?from_block={world.settlement.from_block}"
        f"&to_block={world.settlement.to_block})",
        f"  balances of alice     {base_url}/accounts/{world.holders['alice']}/balances",
        f"  a cask of shares      {base_url}/casks/{world.cask} (alice's: "
        f"{base_url}/casks/{world.cask}/holders/{world.holders['alice']})",
        "",
    ]
    return "\n".join(lines)


def serve(world: DemoWorld, rpc_url: str, host: str, port: int) -> None:
    """Serve the API until Ctrl-C (SIGINT) or SIGTERM, then return normally: the
    demo ends with exit status 0, not as an interrupted program."""
    import uvicorn
    from starlette.staticfiles import StaticFiles

    from api.main import create_app

    # The same relayer and offer databases the seeding API wrote.
    settings = demo_settings(world.relay_db.parent, f"http://{host}:{port}", world.manifest, world.relayer_key,
                             world.master_key, world.admin_token, rpc_url)
    app = create_app(settings)
    # The custodian's published documents, at the URIs attested on chain.
    app.mount("/demo", StaticFiles(directory=world.reserve_file.parent), name="demo")
    serve_until_stopped(uvicorn.Server(uvicorn.Config(app, host=host, port=port, log_level="info")))


def serve_until_stopped(server: Any) -> None:
    """Run a uvicorn ``server`` until SIGINT (Ctrl-C) or SIGTERM, and return.

    uvicorn shuts down cleanly on either and then raises the signal again for
    the handler it found: under ``ape run`` that is Ape's, which exits with 130
    (143), and ``make demo`` reported ``Error 130``. Here the signal is the
    expected way to stop, so the handler it finds ignores it and the demo ends
    normally (status 0; Ape's atexit hook still stops the node)."""
    import signal

    for stop in (signal.SIGINT, signal.SIGTERM):
        signal.signal(stop, signal.SIG_IGN)
    server.run()
