"""The decoder's fast paths give what the libraries they replace give."""

from __future__ import annotations

from eth_utils import to_checksum_address
from hypothesis import given
from hypothesis import strategies as st

from indexer.events import _checksummed


@given(raw=st.binary(min_size=20, max_size=20))
def test_checksummed__any_address__equals_eth_utils(raw):
    address = "0x" + raw.hex()
    assert _checksummed(address) == to_checksum_address(address)


def test_checksummed__known_eip55_vectors__match():
    # From EIP-55's own list.
    for expected in ("0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed", "0xfB6916095ca1df60bB79Ce92cE3Ea74c37c5d359",
                     "0xdbF03B407c01E7cD3CBea99509d93f8DDDC8C6FB", "0xD1220A0cf47c7B9Be7A2E6BA89F429762e7b9aDb"):
        assert _checksummed(expected.lower()) == expected
