"""The chain's events as EPCIS 2.0 ObjectEvents, one per bottle, read from the index.

Which chain events become which EPCIS events (CBV 2.0 business steps and dispositions;
"owner" is the owning party, "custodian" the possessing party):

==========================  =================  ========================  ===================================
chain event                 bizStep            disposition               parties
==========================  =================  ========================  ===================================
``LotIssued``               commissioning      active (action ADD)       to: issuer owns, custodian possesses
``StorageAttested``         storing            sellable_not_accessible   (bizLocation: the custodian's cellar)
``CustodyMoved``            receiving          sellable_not_accessible   possession: old -> new custodian
``Transfer`` (not mint,     accepting          sellable_not_accessible   ownership: sender -> receiver
burn)
``CertificatePledged``      reserving          reserved                  (owner stays)
``CertificateReleased``     reserving          sellable_not_accessible   the reservation ends
``CertificateFlagged``      (none)             stolen
``FlagCleared``             (none)             sellable_not_accessible
``CertificateRedeemed``     decommissioning    inactive (action DELETE)  possession: custodian -> holder
==========================  =================  ========================  ===================================

Events of a lot (issuance, storage attestations, custody moves) concern each of its
bottles and are exported once per bottle, so that ``MATCH_epc`` with one bottle's URI
finds its whole history; a bottle redeemed before such an event is left out of it.
Only lots with a version 2 document have GS1 identifiers (GTIN, lot, serial); lots
without one are not exported (see docs/epcis.md). Every event carries the chain
transaction and log index as extension fields, which also keeps two otherwise equal
events (two attestations in one block) apart in their hash.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from amphora import epcis
from amphora.epcis import OWNING_PARTY, POSSESSING_PARTY, LotIdentity
from indexer.events import CERTIFICATE, CUSTODY, SERIAL_BITS, SERIAL_MASK
from indexer.reader import Page, encode_cursor
from storage.db import Transaction

ZERO = "0x0000000000000000000000000000000000000000"
#: Chain events of a lot (token id NULL in the index) that concern each of its bottles.
LOT_LEVEL = ("LotIssued", "StorageAttested", "CustodyMoved")
#: Chain events of one bottle that have an EPCIS counterpart.
BOTTLE_LEVEL = ("Transfer", "CertificatePledged", "CertificateReleased", "CertificateFlagged", "FlagCleared",
                "CertificateRedeemed")
#: The business step each chain event is exported with (flags have none).
BIZ_STEP = {"LotIssued": "commissioning", "StorageAttested": "storing", "CustodyMoved": "receiving",
            "Transfer": "accepting", "CertificatePledged": "reserving", "CertificateReleased": "reserving",
            "CertificateRedeemed": "decommissioning"}
#: Rows read from the index at a time while a page fills.
_BATCH = 500


@dataclass(frozen=True)
class EventFilter:
    """A query's subset: lots (None: every exported lot), one bottle, a business step, a time window."""

    lot_ids: frozenset[int] | None = None
    bottle: tuple[int, int] | None = None  # (lot id, bottle number)
    biz_step: str | None = None  # bare CBV name
    since: int | None = None  # unix seconds, inclusive
    until: int | None = None  # unix seconds, exclusive


def _event(base: str, lot: LotIdentity, number: int, name: str, args: dict[str, Any],
           row: Mapping[str, Any]) -> dict[str, Any] | None:
    """The EPCIS event of chain event ``name`` for bottle ``number``, or None if it has none."""
    extensions: dict[str, str | int] = {"transaction": str(row["tx_hash"]), "logIndex": int(row["log_index"])}
    common: dict[str, Any] = {"timestamp": int(row["block_time"]), "epcs": [epcis.bottle_uri(base, lot, number)],
                              "extensions": extensions}
    if name == "LotIssued":
        return epcis.object_event(base, **common, action="ADD", biz_step="commissioning", disposition="active",
                                  destinations=[(OWNING_PARTY, args["issuer"]), (POSSESSING_PARTY, args["custodian"])],
                                  location=args["custodian"])
    if name == "StorageAttested":
        extensions["documentHash"] = str(args["document_hash"])
        return epcis.object_event(base, **common, action="OBSERVE", biz_step="storing",
                                  disposition="sellable_not_accessible", location=args["custodian"])
    if name == "CustodyMoved":
        return epcis.object_event(base, **common, action="OBSERVE", biz_step="receiving",
                                  disposition="sellable_not_accessible",
                                  sources=[(POSSESSING_PARTY, args["previous_custodian"])],
                                  destinations=[(POSSESSING_PARTY, args["custodian"])], location=args["custodian"])
    if name == "Transfer":
        if ZERO in (args["sender"], args["receiver"]):
            return None  # a mint (the lot's commissioning says it) or the burn of a redemption
        return epcis.object_event(base, **common, action="OBSERVE", biz_step="accepting",
                                  disposition="sellable_not_accessible", sources=[(OWNING_PARTY, args["sender"])],
                                  destinations=[(OWNING_PARTY, args["receiver"])])
    if name == "CertificatePledged":
        return epcis.object_event(base, **common, action="OBSERVE", biz_step="reserving", disposition="reserved")
    if name == "CertificateReleased":
        return epcis.object_event(base, **common, action="OBSERVE", biz_step="reserving",
                                  disposition="sellable_not_accessible")
    if name == "CertificateFlagged":
        return epcis.object_event(base, **common, action="OBSERVE", biz_step=None, disposition="stolen")
    if name == "FlagCleared":
        return epcis.object_event(base, **common, action="OBSERVE", biz_step=None,
                                  disposition="sellable_not_accessible")
    if name == "CertificateRedeemed":
        return epcis.object_event(base, **common, action="DELETE", biz_step="decommissioning", disposition="inactive",
                                  sources=[(POSSESSING_PARTY, args["custodian"])],
                                  destinations=[(OWNING_PARTY, args["holder"]), (POSSESSING_PARTY, args["holder"])])
    return None


def _names(biz_step: str | None) -> tuple[str, ...]:
    names = LOT_LEVEL + BOTTLE_LEVEL
    return names if biz_step is None else tuple(name for name in names if BIZ_STEP.get(name) == biz_step)


class _Redemptions:
    """When each bottle of a lot was redeemed, read once per lot per query."""

    def __init__(self, tx: Transaction, chain_id: int) -> None:
        self.tx, self.chain_id = tx, chain_id
        self._by_lot: dict[int, dict[int, tuple[int, int]]] = {}

    def of(self, lot_id: int) -> dict[int, tuple[int, int]]:
        if lot_id not in self._by_lot:
            rows = self.tx.all("SELECT token_id, block_number, log_index FROM ix_events WHERE chain_id = ? AND "
                               "lot_id = ? AND contract = ? AND event = 'CertificateRedeemed'",
                               (self.chain_id, lot_id, CERTIFICATE))
            self._by_lot[lot_id] = {int(r["token_id"]) & SERIAL_MASK: (int(r["block_number"]), int(r["log_index"]))
                                    for r in rows}
        return self._by_lot[lot_id]


def _rows(tx: Transaction, chain_id: int, lot_ids: list[int], names: tuple[str, ...], flt: EventFilter,
          start: tuple[int, int], inclusive: bool) -> list[dict[str, Any]]:
    lots = ", ".join("?" for _ in lot_ids)
    events = ", ".join("?" for _ in names)
    sql = ("SELECT block_number, log_index, block_time, tx_hash, contract, event, token_id, lot_id, args "
           f"FROM ix_events WHERE chain_id = ? AND contract IN (?, ?) AND event IN ({events}) AND lot_id IN ({lots}) "
           f"AND (block_number > ? OR (block_number = ? AND log_index {'>=' if inclusive else '>'} ?)) "
           "AND block_time IS NOT NULL")
    params: list[Any] = [chain_id, CERTIFICATE, CUSTODY, *names, *lot_ids, start[0], start[0], start[1]]
    if flt.bottle is not None:
        lot_id, number = flt.bottle
        sql += " AND (token_id IS NULL OR token_id = ?)"
        params.append(str((lot_id << SERIAL_BITS) | number))
    if flt.since is not None:
        sql += " AND block_time >= ?"
        params.append(flt.since)
    if flt.until is not None:
        sql += " AND block_time < ?"
        params.append(flt.until)
    return tx.all(f"{sql} ORDER BY block_number, log_index LIMIT ?", (*params, _BATCH))


def _numbers(row: Mapping[str, Any], lot: LotIdentity, flt: EventFilter, after: int) -> Iterator[int]:
    """The bottles (numbers above ``after``) a row concerns."""
    if row["token_id"] is not None:
        number = int(row["token_id"]) & SERIAL_MASK
        if number > after:
            yield number
    elif flt.bottle is not None:
        if flt.bottle[1] > after:
            yield flt.bottle[1]
    else:
        yield from range(max(after, 0) + 1, lot.bottle_count + 1)


def events(tx: Transaction, chain_id: int, lots: Mapping[int, LotIdentity], base_url: str, flt: EventFilter, *,
           after: tuple[int, int, int] | None, limit: int) -> Page[dict[str, Any]]:
    """EPCIS events of the ``lots`` (the exported ones, by lot id) that ``flt`` selects, in chain order
    (block, log index, bottle number) after position ``after``, ``limit`` of them; the page's cursor is
    the last event's position."""
    wanted = sorted(lots if flt.lot_ids is None else flt.lot_ids & set(lots))
    if flt.bottle is not None:
        wanted = [lot_id for lot_id in wanted if lot_id == flt.bottle[0]]
    names = _names(flt.biz_step)
    found: list[tuple[tuple[int, int, int], dict[str, Any]]] = []
    if not wanted or not names:
        return Page([], None)
    redemptions = _Redemptions(tx, chain_id)
    position = after or (-1, -1, -1)
    start, inclusive = (position[0], position[1]), True
    while len(found) <= limit:
        rows = _rows(tx, chain_id, wanted, names, flt, start, inclusive)
        for row in rows:
            block, log = int(row["block_number"]), int(row["log_index"])
            lot = lots[int(row["lot_id"])]
            args = json.loads(row["args"])
            name = str(row["event"])
            redeemed = redemptions.of(lot.lot_id) if name in LOT_LEVEL else {}
            skip_to = position[2] if (block, log) == position[:2] else -1
            for number in _numbers(row, lot, flt, skip_to):
                if not 1 <= number <= lot.bottle_count:
                    continue
                if number in redeemed and redeemed[number] < (block, log):
                    continue  # no longer in custody: later lot events do not concern it
                event = _event(base_url, lot, number, name, args, row)
                if event is not None:
                    found.append(((block, log, number), event))
                    if len(found) > limit:
                        break
            if len(found) > limit:
                break
        if len(rows) < _BATCH or len(found) > limit:
            break
        start, inclusive = (int(rows[-1]["block_number"]), int(rows[-1]["log_index"])), False
    page = found[:limit]
    return Page([event for _, event in page], encode_cursor(*page[-1][0]) if len(found) > limit else None)


def lot_facts(tx: Transaction, chain_id: int) -> dict[int, str]:
    """Lot id => the ``metadata_hash`` the chain committed at issuance, for every lot the index holds."""
    return {int(row["lot_id"]): str(row["metadata_hash"]).lower()
            for row in tx.all("SELECT lot_id, metadata_hash FROM ix_lots WHERE chain_id = ?", (chain_id,))}
