"""Gas of the certificate's main paths, from transaction receipts on anvil.

Run with ``make bench``. Prints a table with the reference figure beside each
measurement and writes ``bench/results/gas.json``. Every measurement starts
from the same chain snapshot, so the numbers compare like with like.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from pathlib import Path
from tempfile import TemporaryDirectory

RESULTS = Path(__file__).resolve().parent / "results" / "gas.json"
BOTTLING_DATE = 1_717_200_000

# Reference figures (gas): floors and well-known implementations.
REFERENCES = {
    "issue_lot_1": ("ERC-721 floor, mint 1", 72_600),
    "issue_lot_100": ("OpenZeppelin ERC721, 100 × 25,017", 100 * 25_017),
    "issue_lot_10000": ("ERC721A, 10,000 × 1,967", 10_000 * 1_967),
    "transfer_first_from_lot": ("OpenZeppelin ERC721 transfer", 42_600),
    "transfer_holder_to_holder": ("ERC-721 floor, to existing holder", 40_900),
    "approve": ("(no reference given)", None),
    "signed_transfer": ("target: holder-to-holder + 15,000", None),
    "signed_transfer_first": ("first-time signer", None),
    "erc20_transfer": ("ERC-20 floor ≈ 33,400; target ≤ 1.05 × floor", 33_400),
    "erc20_approve": ("(no reference given)", None),
    "erc20_permit": ("common: ≈ 1.64 × approve; target ≤ 1.6 ×", None),
    "erc20_transfer_with_authorization": ("common: ≈ 1.42 × transfer; target ≤ 1.4 ×", None),
    "erc20_transfer_with_authorization_first_in_word": ("first nonce of a bitmap word", None),
    "erc20_transfer_with_authorization_random_nonce": ("random 32-byte nonce (new word)", None),
    "points_issue": ("(no reference given)", None),
    "points_redeem": ("(no reference given)", None),
    "utility_pay": ("(no reference given)", None),
}

#: Ratio targets: measurement -> (the measurement it is compared with, the most it may be).
RATIO_TARGETS = {
    "erc20_transfer": (None, 1.05 * 33_400),
    "erc20_permit": ("erc20_approve", 1.6),
    "erc20_transfer_with_authorization": ("erc20_transfer", 1.4),
}


def measure() -> dict[str, int]:
    from ape import accounts, chain, networks

    from amphora import eip712
    from amphora.deploy import CertificateSettings, deploy_all, grant_custodian, grant_issuer
    from amphora.lots import LotDescription, issue, token_id

    with networks.ethereum.local.use_provider("foundry"), TemporaryDirectory() as tmp:
        admin, winery, custodian, alice, bob, carol, relayer, spender = accounts.test_accounts[:8]
        manifest = deploy_all(admin, directory=Path(tmp), certificate=CertificateSettings())
        grant_issuer(manifest, admin, winery.address, "Bench Winery")
        grant_custodian(manifest, admin, custodian.address, "Bench Cellar")
        from ape import project

        cert = project.WineCertificate.at(manifest.address("WineCertificate"))

        def lot(count: int) -> LotDescription:
            return LotDescription.from_mapping({
                "producer": "Bench Winery", "wine": "Grand Vin", "region": "Pauillac AOC",
                "bottle_count": count, "volume_ml": 750, "bottling_date": BOTTLING_DATE,
                "custodian": custodian.address, "vintage": 2020, "metadata_uri": "ipfs://bench",
                "tags": [custodian.address] * count,
            })

        # The winery already holds stock, as a working winery does.
        first = issue(cert, winery, lot(10)).lot_id
        results: dict[str, int] = {}

        base = chain.snapshot()
        for count in (1, 100, 10_000):
            results[f"issue_lot_{count}"] = issue(cert, winery, lot(count)).gas_used
            chain.restore(base)
            base = chain.snapshot()

        def sign(owner, to, tid) -> bytes:
            data = eip712.typed_data(
                "Transfer",
                eip712.transfer_message(owner.address, to.address, tid, cert.nonces(owner), 2**40),
                chain.chain_id, cert.address,
            )
            return eip712.sign(data, owner.private_key)

        t1, t2, t3, t4 = (token_id(first, s) for s in (1, 2, 3, 4))
        # First sale of an untouched bottle to a new holder.
        results["transfer_first_from_lot"] = cert.transferFrom(winery, alice, t1, sender=winery).gas_used
        cert.transferFrom(winery, bob, t2, sender=winery)
        cert.transferFrom(winery, alice, t3, sender=winery)
        cert.transferFrom(winery, carol, t4, sender=winery)
        # A touched bottle between two existing holders.
        results["transfer_holder_to_holder"] = cert.transferFrom(alice, bob, t1, sender=alice).gas_used
        results["approve"] = cert.approve(spender, t2, sender=bob).gas_used
        # Carol signs for the first time; Alice has signed before.
        sig = sign(carol, bob, t4)
        results["signed_transfer_first"] = cert.transfer_with_signature(
            carol, bob, t4, 0, 2**40, sig, sender=relayer).gas_used
        sig = sign(alice, carol, t3)
        cert.transfer_with_signature(alice, carol, t3, 0, 2**40, sig, sender=relayer)
        cert.transferFrom(carol, alice, t3, sender=carol)
        sig = sign(alice, bob, t3)
        results["signed_transfer"] = cert.transfer_with_signature(
            alice, bob, t3, 1, 2**40, sig, sender=relayer).gas_used
        results.update(measure_tokens(manifest, chain, accounts.test_accounts))
    return results


def measure_tokens(manifest, chain, people) -> dict[str, int]:
    """ERC-20 figures on the points token (the one holders use most), and the
    points and utility token's own paths."""
    from ape import project
    from eth_utils import keccak

    from amphora import eip712

    admin, alice, bob, carol, relayer, spender = (people[i] for i in (0, 3, 4, 5, 6, 7))
    merchant, shop, minter = people[10], people[11], people[13]
    usd, scale = 10**6, 10**12
    stable = project.ReferenceStablecoin.at(manifest.address("Stablecoin"))
    points = project.PointsToken.at(manifest.address("PointsToken"))
    utility = project.UtilityToken.at(manifest.address("UtilityToken"))
    stable.configureMinter(minter, 10**15, sender=admin)
    for m in (merchant, shop):
        stable.mint(m, 10**12, sender=minter)
        points.register_merchant(m, "Bench Merchant", 10**40, sender=admin)
        stable.approve(points, 2**256 - 1, sender=m)
    points.issue(alice, 500 * usd, sender=merchant)  # the reserve and supply words exist
    points.issue(bob, 500 * usd, sender=merchant)
    points.issue(shop, 100 * usd, sender=merchant)
    out: dict[str, int] = {}
    out["points_issue"] = points.issue(carol, 100 * usd, sender=merchant).gas_used
    out["points_redeem"] = points.redeem(50 * usd * scale, sender=shop).gas_used
    out["erc20_transfer"] = points.transfer(bob, 10 * scale, sender=alice).gas_used
    out["erc20_approve"] = points.approve(spender, 10 * scale, sender=alice).gas_used
    deadline = 2**40  # fixed, like the nonce: the signed bytes cost calldata gas
    permit = eip712.typed_data("Permit", eip712.permit_message(bob.address, spender.address, 10 * scale,
                                                                points.nonces(bob), deadline),
                               chain.chain_id, points.address, name="Amphora Points", version="1")
    sig = eip712.sign(permit, bob.private_key)
    out["erc20_permit"] = points.permit(bob, spender, 10 * scale, deadline, *eip712.split_signature(sig),
                                        sender=relayer).gas_used

    def authorize(nonce: bytes) -> int:
        auth = eip712.typed_data("TransferWithAuthorization",
                                 eip712.authorization_message(alice.address, bob.address, 10 * scale, 0,
                                                              deadline, nonce),
                                 chain.chain_id, points.address, name="Amphora Points", version="1")
        sig = eip712.sign(auth, alice.private_key)
        return points.transferWithAuthorization(
            alice, bob, 10 * scale, 0, deadline, nonce, *eip712.split_signature(sig), sender=relayer).gas_used

    # Nonces are a bitmap, 256 to a storage word. The API hands out the next
    # free bit in a word the payer already used (0, 1, 2, ...), so the common
    # case changes a used word; the first nonce of a word, or a random one
    # as wallets make, fills a new word (17,100 gas more). Fixed nonces, so
    # the figures repeat run to run (their calldata bytes cost gas).
    out["erc20_transfer_with_authorization_first_in_word"] = authorize((0).to_bytes(32, "big"))
    out["erc20_transfer_with_authorization"] = authorize((1).to_bytes(32, "big"))
    out["erc20_transfer_with_authorization_random_nonce"] = authorize(keccak(text="amphora bench authorization"))
    provider = people[2]
    utility.mint(alice, 10**21, sender=admin)
    utility.mint(provider, 10**18, sender=admin)
    utility.register_provider(provider, "Bench Cellar storage", sender=admin)
    out["utility_pay"] = utility.pay(provider, 10**18, b"\x0d" * 32, sender=alice).gas_used
    return out


def table(results: dict[str, int]) -> str:
    width = max(28, *(len(k) + 2 for k in results))
    rows = [f"{'measurement':<{width}}{'gas':>10}   {'reference':<44}{'ref gas':>12}"]
    for key, gas in results.items():
        label, ref = REFERENCES.get(key, ("", None))
        if key == "signed_transfer":
            ref = results["transfer_holder_to_holder"] + 15_000
        rows.append(f"{key:<{width}}{gas:>10,}   {label:<44}{(f'{ref:,}' if ref else '-'):>12}")
    for key, (base, limit) in RATIO_TARGETS.items():
        if key not in results:
            rows.append(f"{key}: not measured")
            continue
        if base is None:
            verdict = "met" if results[key] <= limit else "MISSED"
            rows.append(f"{key} = {results[key]:,} (target ≤ {limit:,.0f}: {verdict})")
        else:
            ratio = results[key] / results[base]
            rows.append(f"{key} / {base} = {ratio:.3f} (target ≤ {limit}: {'met' if ratio <= limit else 'MISSED'})")
    first, later = (results.get(f"erc20_transfer_with_authorization{k}") for k in ("_first_in_word", ""))
    if first and later:
        amortised = (first + 255 * later) / 256
        rows.append(f"erc20_transfer_with_authorization, 256 nonces of one word in turn: {amortised:,.0f} gas "
                    f"on average = {amortised / results['erc20_transfer']:.3f} × erc20_transfer")
    per_bottle = (results["issue_lot_10000"] - results["issue_lot_1"]) / 9_999
    rows.append("")
    rows.append(f"issue_lot_10000 / issue_lot_1 = {results['issue_lot_10000'] / results['issue_lot_1']:.4f}"
                f"  (target ≤ 1.05); marginal gas per bottle = {per_bottle:.3f}")
    rows.append(f"issue_lot_10000 per bottle = {results['issue_lot_10000'] / 10_000:.1f}"
                "  (target ≤ 25; ERC721A ≈ 1,967)")
    return "\n".join(rows)


def main() -> int:
    logging.basicConfig(level=logging.WARNING)
    from ape.logging import logger as ape_logger

    ape_logger.set_level("WARNING")
    started = time.time()
    results = measure()
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(results, indent=2) + "\n")
    sys.stdout.write(table(results) + f"\n\nwritten to {RESULTS} in {time.time() - started:.0f} s\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
