"""A certificate's history from the index, in chain order and in words.

The history of a bottle is every event that names it (its transfers, gifts,
redemption, flags, pledges, approvals, the loans it secures) plus the events
of its lot that concern every bottle in it: the issuance (``LotIssued`` and
the ERC-2309 ``ConsecutiveTransfer`` range that covers it), custody moves,
storage attestations, a successor issuer, appraisals, and the proof-of-reserve
roots posted by whichever custodian held the lot at the time. The contract's
echoes of other events (``Locked``, ``Unlocked``, ``MetadataUpdate``,
``BatchMetadataUpdate``) say nothing new and are left out.

Each entry carries a ``summary``: one plain English sentence a page can show
("Moved from 0xAbCd…1234 to 0x9F8e…5678").
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from indexer.events import CERTIFICATE, CUSTODY, SERIAL_BITS
from indexer.reader import Page, encode_cursor
from storage.db import Transaction

ZERO = "0x0000000000000000000000000000000000000000"
#: Certificate events that only repeat what another event of the same transaction says.
ECHO_EVENTS = ("Locked", "Unlocked", "MetadataUpdate", "BatchMetadataUpdate")
#: Events of a lot (not of one bottle) that belong to every bottle's history.
LOT_EVENTS = ("LotIssued", "ConsecutiveTransfer", "CustodyMoved", "StorageAttested", "SuccessorIssuerNamed",
              "AppraisalPosted")
_AFTER = "(block_number > ? OR (block_number = ? AND log_index > ?))"
_BEFORE = "(block_number < ? OR (block_number = ? AND log_index < ?))"
_COLUMNS = "block_number, log_index, block_time, tx_hash, contract, event, args"
#: Chain order, written so that it cannot be read off ``ix_events_order``: a
#: SQLite index without statistics would otherwise walk the whole chain's events
#: in that index's order instead of the few rows of the token, lot or party.
CHAIN_ORDER = "ORDER BY block_number + 0, log_index"


@dataclass(frozen=True)
class HistoryEntry:
    block_number: int
    log_index: int
    block_time: int | None
    tx_hash: str
    contract: str
    event: str
    args: dict[str, Any]
    summary: str

    @property
    def position(self) -> tuple[int, int]:
        return (self.block_number, self.log_index)


def short(address: Any) -> str:
    """``0xAbCd…1234``: an address as a sentence can carry it."""
    text = str(address)
    return f"{text[:6]}…{text[-4:]}" if len(text) == 42 else text


def day(timestamp: Any) -> str:
    """A unix time as its UTC date (``2026-12-31``)."""
    try:
        return datetime.fromtimestamp(int(timestamp), tz=UTC).strftime("%Y-%m-%d")
    except (OverflowError, OSError, ValueError):
        return str(timestamp)


def _serial(token_id: Any) -> int:
    return int(token_id) & ((1 << SERIAL_BITS) - 1)


def summary(event: str, args: dict[str, Any]) -> str:  # noqa: C901, PLR0911, PLR0912 (one sentence per event)
    """One plain English sentence for an event of a certificate's history."""
    a = args
    if event == "LotIssued":
        vintage = f" {a['vintage']}" if a.get("vintage") else ""
        return (f"Lot {a['lot_id']} issued by {short(a['issuer'])}: {a['bottle_count']} bottles of "
                f"{a['wine']}{vintage} from {a['producer']}, kept by {short(a['custodian'])}")
    if event == "ConsecutiveTransfer":
        return (f"Bottles {_serial(a['fromTokenId'])} to {_serial(a['toTokenId'])} of the lot created for "
                f"{short(a['toAddress'])}")
    if event == "Transfer":
        if a.get("sender") == ZERO:
            return f"Issued to {short(a['receiver'])}"
        if a.get("receiver") == ZERO:
            return f"Burned from {short(a['sender'])}"
        return f"Moved from {short(a['sender'])} to {short(a['receiver'])}"
    if event == "Approval":
        if a.get("approved") == ZERO:
            return f"Approval cleared by {short(a['owner'])}"
        return f"{short(a['owner'])} approved {short(a['approved'])} to move it"
    if event == "GiftCreated":
        return f"Gift created for claim until {day(a['expiry'])}"
    if event == "GiftClaimed":
        return f"Gift claimed by {short(a['recipient'])}"
    if event == "GiftRevoked":
        return f"Gift revoked by {short(a['by'])}; back with {short(a['holder'])}"
    if event == "RedemptionRequested":
        return f"Redemption requested by {short(a['holder'])} from custodian {short(a['custodian'])}"
    if event == "RedemptionRejected":
        return f"Redemption rejected by custodian {short(a['custodian'])}"
    if event == "CertificateRedeemed":
        return f"Redeemed: bottle handed over by custodian {short(a['custodian'])} to {short(a['holder'])}"
    if event == "CertificateFlagged":
        return f"Reported lost or stolen by {short(a['by'])}"
    if event == "FlagCleared":
        return f"Loss or theft report cleared by {short(a['by'])}"
    if event == "CertificatePledged":
        return f"Pledged as collateral by {short(a['holder'])}"
    if event == "CertificateReleased":
        return f"Released from pledge to {short(a['receiver'])}"
    if event == "LoanStarted":
        return (f"Pledged as collateral for loan {a['loan_id']}: {a['principal']} stablecoin units lent by "
                f"{short(a['lender'])}, {a['repayment']} due by {day(a['due_at'])}")
    if event == "LoanRepaid":
        late = " late" if a.get("late") else ""
        return f"Loan {a['loan_id']} repaid{late} by {short(a['payer'])}"
    if event == "LoanForeclosed":
        return f"Loan {a['loan_id']} foreclosed: the certificate goes to lender {short(a['lender'])}"
    if event == "LoanExtended":
        return f"Loan {a['loan_id']} extended: {a['repayment']} due by {day(a['due_at'])}"
    if event == "LoanClockRestarted":
        return f"Loan {a['loan_id']} due date moved to {day(a['due_at'])}"
    if event == "RepaymentHeld":
        return f"Repayment of loan {a['loan_id']} held for lender {short(a['lender'])}"
    if event == "RepaymentRefused":
        return f"Repayment of loan {a['loan_id']} by {short(a['payer'])} refused"
    if event == "CustodyMoved":
        return f"Custody moved from {short(a['previous_custodian'])} to {short(a['custodian'])}"
    if event == "StorageAttested":
        return f"Storage attested by custodian {short(a['custodian'])} (document {a['document_uri']})"
    if event == "SuccessorIssuerNamed":
        if a.get("successor") == ZERO:
            return "Successor issuer removed"
        return f"Successor issuer named: {short(a['successor'])}"
    if event == "AppraisalPosted":
        return f"Appraised at {a['value_per_bottle']} stablecoin units a bottle by {short(a['appraiser'])}"
    if event == "ReserveRootPosted":
        return f"Custodian {short(a['custodian'])} posted its reserve: {a['bottle_count']} bottles"
    return event


def _entry(row: dict[str, Any]) -> HistoryEntry:
    args = json.loads(row["args"])
    name = str(row["event"])
    return HistoryEntry(block_number=int(row["block_number"]), log_index=int(row["log_index"]),
                        block_time=int(row["block_time"]) if row["block_time"] is not None else None,
                        tx_hash=str(row["tx_hash"]), contract=str(row["contract"]), event=name, args=args,
                        summary=summary(name, args))


def _custody_periods(tx: Transaction, chain_id: int, lot_id: int) -> list[tuple[str, tuple[int, int],
                                                                                  tuple[int, int] | None]]:
    """(custodian, from position, until position or None) for each custodian the lot had."""
    rows = tx.all(f"SELECT {_COLUMNS} FROM ix_events WHERE chain_id = ? AND lot_id = ? AND token_id IS NULL "
                  "AND contract = ? AND event IN ('LotIssued', 'CustodyMoved') ORDER BY block_number, log_index",
                  (chain_id, lot_id, CERTIFICATE))
    periods: list[tuple[str, tuple[int, int], tuple[int, int] | None]] = []
    for row in rows:
        position = (int(row["block_number"]), int(row["log_index"]))
        if periods:
            custodian, start, _ = periods[-1]
            periods[-1] = (custodian, start, position)
        periods.append((str(json.loads(row["args"])["custodian"]), position, None))
    return periods


def history(tx: Transaction, chain_id: int, token_id: int, *, after: tuple[int, int] | None,
            limit: int) -> Page[HistoryEntry]:
    """The certificate's history after position ``after`` (block, log index;
    None: from the start), ``limit`` entries in chain order."""
    lot_id = token_id >> SERIAL_BITS
    begin = after or (-1, -1)
    cut = (begin[0], begin[0], begin[1])
    echoes = ", ".join(f"'{name}'" for name in ECHO_EVENTS)
    lot_names = ", ".join(f"'{name}'" for name in LOT_EVENTS)
    found = [_entry(row) for row in tx.all(
        f"SELECT {_COLUMNS} FROM ix_events WHERE chain_id = ? AND token_id = ? AND {_AFTER} "
        f"AND event NOT IN ({echoes}) {CHAIN_ORDER} LIMIT ?",
        (chain_id, str(token_id), *cut, limit + 1))]
    for row in tx.all(
            # Read off the partial index of lot-level events (ix_events_lot_level), in its order.
            f"SELECT {_COLUMNS} FROM ix_events WHERE chain_id = ? AND lot_id = ? AND token_id IS NULL "
            f"AND (block_number, log_index) > (?, ?) AND event IN ({lot_names}) "
            "ORDER BY block_number, log_index LIMIT ?",
            (chain_id, lot_id, *begin, limit + 1)):
        entry = _entry(row)
        if entry.event == "ConsecutiveTransfer" and not (
                int(entry.args["fromTokenId"]) <= token_id <= int(entry.args["toTokenId"])):
            continue  # another range of the lot
        found.append(entry)
    for custodian, start, until in _custody_periods(tx, chain_id, lot_id):
        if until is not None and until <= begin:
            continue
        since = max(start, begin)
        # The custodian's registry events are its attestations and its roots; "not an attestation" (rather
        # than "= 'ReserveRootPosted'") lets the planner pick the party's index over the event kind's.
        sql = (f"SELECT {_COLUMNS} FROM ix_events WHERE chain_id = ? AND contract = ? AND party_a = ? "
               f"AND event <> 'StorageAttested' AND {_AFTER}")
        params: list[Any] = [chain_id, CUSTODY, custodian, since[0], since[0], since[1]]
        if until is not None:
            sql += f" AND {_BEFORE}"
            params += [until[0], until[0], until[1]]
        found += [_entry(row) for row in tx.all(f"{sql} {CHAIN_ORDER} LIMIT ?", (*params, limit + 1))
                  if row["event"] == "ReserveRootPosted"]
    found.sort(key=lambda entry: entry.position)
    page = found[:limit]
    return Page(page, encode_cursor(*page[-1].position) if len(found) > limit else None)


def storage_document_uri(tx: Transaction, chain_id: int, lot_id: int, document_hash: str) -> str | None:
    """The URI the lot's newest ``StorageAttested`` of document ``document_hash`` named."""
    for row in tx.all("SELECT args FROM ix_events WHERE chain_id = ? AND lot_id = ? AND token_id IS NULL "
                      "AND contract = ? AND event = 'StorageAttested' ORDER BY block_number DESC, log_index DESC",
                      (chain_id, lot_id, CUSTODY)):
        args = json.loads(row["args"])
        if str(args.get("document_hash", "")).lower() == document_hash.lower():
            return str(args["document_uri"])
    return None
