"""CustodyRegistry hardening (issue 12, item 27): a storage attestation names
only lots that exist. The registry's everyday behaviour is tested beside the
certificate's lifecycle in ``test_lifecycle.py``."""

from __future__ import annotations

import ape
import pytest
from eth_utils import keccak

DOCUMENT_HASH = keccak(text="cellar report")
DOCUMENT_URI = "ipfs://cellar-report"
NO_LOT = "custody: lot does not exist"


@pytest.mark.parametrize("high_bits", [1 << 224, 1 << 250, (2**256 - 1) ^ ((1 << 224) - 1)],
                         ids=["2**224", "2**250", "all high bits"])
def test_attest_storage__lot_id_that_wraps_onto_a_real_lot__reverts_and_logs_no_phantom_lot(
    registry, lot, custodian, high_bits
):
    """Shifted left by the 32 serial bits, ``lot_id + k * 2**224`` loses its
    high bits and names the real lot's first bottle: the real custodian could
    attest for a lot id that does not exist."""
    phantom = lot.lot_id | high_bits
    with ape.reverts(NO_LOT):
        registry.attest_storage(phantom, DOCUMENT_HASH, DOCUMENT_URI, sender=custodian)
    assert registry.custody(lot.token(1)).storage_document_hash == b"\x00" * 32


@pytest.mark.parametrize("lot_id", ["next", 2**64 - 1, 2**64, 0])
def test_attest_storage__lot_never_issued_or_out_of_range__reverts(registry, lot, custodian, lot_id):
    lot_id = lot.lot_id + 1 if lot_id == "next" else lot_id
    with ape.reverts(NO_LOT):
        registry.attest_storage(lot_id, DOCUMENT_HASH, DOCUMENT_URI, sender=custodian)


def test_attest_storage__the_real_lot__still_attests(registry, lot, custodian):
    registry.attest_storage(lot.lot_id, DOCUMENT_HASH, DOCUMENT_URI, sender=custodian)
    assert registry.custody(lot.token(1)).storage_document_hash == DOCUMENT_HASH
