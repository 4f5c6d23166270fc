"""How long the slow parts of issuing a lot take for a given number of bottles.

Run with ``python bench/issuance_keys.py 10000`` (and ``100000``). It times, as the
issuance job does them (:mod:`api.jobs`): the fresh tag keys (a random secp256k1
key per bottle and its address), the tag tree over them (:class:`amphora.merkle.TagTree`),
every bottle's proof, and the bottles file the tag printer gets
(:func:`api.issuer.bottles_file`, CSV). No node is needed. The figures chose the
job's cap (``api.issuer.MAX_BOTTLES_JOB``); docs/console-issuer.md quotes them.
"""

from __future__ import annotations

import argparse
import secrets
import time

from eth_account import Account

from amphora.merkle import TagTree
from api.issuer import bottles_file


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("bottles", type=int, nargs="?", default=10_000)
    parser.add_argument("--file", action="store_true", help="also time the bottles file (CSV)")
    bottles = parser.parse_args().bottles
    started = time.perf_counter()
    keys = [secrets.token_bytes(32) for _ in range(bottles)]
    addresses = [Account.from_key(k).address for k in keys]
    made = time.perf_counter()
    tree = TagTree.build(addresses)
    built = time.perf_counter()
    for serial in range(1, bottles + 1):
        tree.proof(serial)
    proved = time.perf_counter()
    print(f"bottles={bottles} tag_keys_s={made - started:.1f} tag_tree_s={built - made:.1f} "
          f"proofs_s={proved - built:.1f} together_s={proved - started:.1f}")
    if parser.parse_args().file:
        body = bottles_file(1, list(tree.tags), ["0x" + k.hex() for k in keys], "https://amphora.example", None, "csv")
        print(f"bottles_file_s={time.perf_counter() - proved:.1f} bottles_file_mb={len(body) / 1e6:.1f}")


if __name__ == "__main__":
    main()
