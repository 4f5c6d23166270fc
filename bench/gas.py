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
    return results


def table(results: dict[str, int]) -> str:
    rows = [f"{'measurement':<28}{'gas':>12}   {'reference':<40}{'ref gas':>12}"]
    for key, gas in results.items():
        label, ref = REFERENCES[key]
        if key == "signed_transfer":
            ref = results["transfer_holder_to_holder"] + 15_000
        rows.append(f"{key:<28}{gas:>12,}   {label:<40}{(f'{ref:,}' if ref else '-'):>12}")
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
