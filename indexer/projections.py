"""The read models, derived from the events in chain order.

:func:`apply` takes one event and updates the rows it changes through
:class:`Models`, which caches the rows of one ingestion transaction, writes
them at :meth:`Models.flush`, and journals the previous value of every row
changed in a block that is not final yet (``ix_undo``), so that
:func:`roll_back` can return the models to any such block after a reorg.

The lifecycle of a certificate follows the contract's named events
(``GiftCreated``, ``CertificatePledged``, ...), not its ``Locked`` /
``MetadataUpdate`` echoes; its holder follows ``Transfer``. A bottle that never
moved and never changed state has no ``ix_tokens`` row: it is in its lot's
range, with the lot's issuer, active.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

from indexer.events import CERTIFICATE, CUSTODY, LENDING, POINTS, SERIAL_BITS, SERIAL_MASK, Event
from indexer.schema import MODELS
from storage.db import Transaction

ZERO = "0x0000000000000000000000000000000000000000"

#: Certificate lifecycle states, as the API names them.
ACTIVE = "active"
GIFT_PENDING = "gift_pending"
PLEDGED = "pledged"
REDEMPTION_REQUESTED = "redemption_requested"
REDEEMED = "redeemed"
FLAGGED = "flagged"
STATES = (ACTIVE, GIFT_PENDING, PLEDGED, REDEMPTION_REQUESTED, REDEEMED, FLAGGED)

#: Certificate events that set a state (the holder's ``Transfer`` aside).
_STATE_OF_EVENT = {
    "GiftCreated": GIFT_PENDING,
    "GiftClaimed": ACTIVE,
    "GiftRevoked": ACTIVE,
    "RedemptionRequested": REDEMPTION_REQUESTED,
    "RedemptionRejected": ACTIVE,
    "CertificateRedeemed": REDEEMED,
    "CertificateFlagged": FLAGGED,
    "FlagCleared": ACTIVE,
    "CertificatePledged": PLEDGED,
    "CertificateReleased": ACTIVE,
}
_LOAN_STATE_OF_EVENT = {"LoanRepaid": "repaid", "LoanForeclosed": "foreclosed"}
_TOKEN_ARGS = ("token_id", "tokenId", "_tokenId")


#: Keys per query when :meth:`Models.prefetch` reads rows ahead.
_PREFETCH = 500


def _key_value(table: str, key: str) -> Any:
    return int(key) if MODELS[table] == "lot_id" else key


class Models:
    """The read-model rows one ingestion transaction reads and changes."""

    def __init__(self, tx: Transaction, chain_id: int, journal_from: int) -> None:
        self.tx = tx
        self.chain_id = chain_id
        #: Changes in blocks from this one on are journaled (not final yet).
        self.journal_from = journal_from
        self._rows: dict[tuple[str, str], dict[str, Any] | None] = {}
        self._dirty: set[tuple[str, str]] = set()
        self._journaled: set[tuple[int, str, str]] = set()
        self._undo: list[tuple[Any, ...]] = []
        self._seq: int | None = None

    def get(self, table: str, key: Any) -> dict[str, Any] | None:
        slot = (table, str(key))
        if slot not in self._rows:
            row = self.tx.one(f"SELECT * FROM {table} WHERE chain_id = ? AND {MODELS[table]} = ?",
                              (self.chain_id, _key_value(table, str(key))))
            self._rows[slot] = row
        row = self._rows[slot]
        return dict(row) if row is not None else None

    def prefetch(self, table: str, keys: Iterable[Any]) -> None:
        """Read the rows of ``keys`` not read yet, a few hundred per query
        (at catch-up, one SELECT per row was a large share of the work); a
        key without a row is remembered as absent."""
        wanted = sorted({str(key) for key in keys if (table, str(key)) not in self._rows})
        column = MODELS[table]
        for start in range(0, len(wanted), _PREFETCH):
            chunk = wanted[start:start + _PREFETCH]
            found = {str(row[column]): row for row in self.tx.all(
                f"SELECT * FROM {table} WHERE chain_id = ? AND {column} IN ({', '.join('?' for _ in chunk)})",
                (self.chain_id, *(_key_value(table, key) for key in chunk)))}
            for key in chunk:
                self._rows[(table, key)] = found.get(key)

    def put(self, table: str, key: Any, row: dict[str, Any], block: int) -> None:
        slot = (table, str(key))
        old = self.get(table, key)
        if block >= self.journal_from and (block, *slot) not in self._journaled:
            self._journaled.add((block, *slot))
            if self._seq is None:
                last = self.tx.one("SELECT MAX(seq) AS seq FROM ix_undo WHERE chain_id = ?", (self.chain_id,))
                self._seq = int(last["seq"]) if last and last["seq"] is not None else 0
            self._seq += 1
            self._undo.append((self.chain_id, block, self._seq, table, slot[1],
                               json.dumps(old) if old is not None else None))
        self._rows[slot] = {**row, "chain_id": self.chain_id, "block_number": block}
        self._dirty.add(slot)

    def flush(self) -> None:
        """Write every changed row and the journal."""
        by_table: dict[str, list[dict[str, Any]]] = {}
        for table, key in sorted(self._dirty):
            row = self._rows[(table, key)]
            if row is not None:
                by_table.setdefault(table, []).append(row)
        for table, rows in by_table.items():
            upsert(self.tx, table, rows)
        self.tx.execute_many("INSERT INTO ix_undo (chain_id, block_number, seq, tbl, row_key, old) "
                             "VALUES (?, ?, ?, ?, ?, ?)", self._undo)
        self._dirty.clear()
        self._undo.clear()


def upsert(tx: Transaction, table: str, rows: list[dict[str, Any]]) -> None:
    """Insert ``rows`` into ``table``, replacing the rows with the same key."""
    if not rows:
        return
    columns = list(rows[0])
    key = MODELS[table]
    updates = ", ".join(f"{c} = excluded.{c}" for c in columns if c not in ("chain_id", key))
    tx.execute_many(
        f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({', '.join('?' for _ in columns)}) "
        f"ON CONFLICT (chain_id, {key}) DO UPDATE SET {updates}",
        [[row[c] for c in columns] for row in rows])


def roll_back(tx: Transaction, chain_id: int, above: int) -> bool:
    """Return the read models to their state at the end of block ``above``
    from the journal; False when the journal does not reach back that far
    (the caller rebuilds instead)."""
    rows = tx.all("SELECT block_number, seq, tbl, row_key, old FROM ix_undo WHERE chain_id = ? "
                  "AND block_number > ? ORDER BY block_number DESC, seq DESC", (chain_id, above))
    for row in rows:
        table, key = str(row["tbl"]), str(row["row_key"])
        if row["old"] is None:
            tx.execute(f"DELETE FROM {table} WHERE chain_id = ? AND {MODELS[table]} = ?",
                       (chain_id, _key_value(table, key)))
        else:
            upsert(tx, table, [json.loads(row["old"])])
    tx.execute("DELETE FROM ix_undo WHERE chain_id = ? AND block_number > ?", (chain_id, above))
    return True


def token_of(event: Event) -> int | None:
    for name in _TOKEN_ARGS:
        if name in event.args:
            return int(event.args[name])
    return None


def _addresses(event: Event) -> list[str]:
    return [value for value in event.args.values() if isinstance(value, str) and len(value) == 42
            and value.startswith("0x")]


def columns(event: Event, models: Models) -> tuple[str | None, int | None, str | None, str | None, str | None]:
    """The (token id, lot id, loan id, first address, second address) of an
    event, for the ``ix_events`` columns the queries use. A loan's later events
    carry its certificate too (read from the loan's row)."""
    token: int | None = None
    lot: int | None = None
    loan: str | None = None
    if event.contract == CERTIFICATE:
        token = token_of(event) if event.name != "BatchMetadataUpdate" else None
        if event.name == "ConsecutiveTransfer":
            lot = int(event.args["fromTokenId"]) >> SERIAL_BITS
        elif event.name == "BatchMetadataUpdate":
            lot = int(event.args["_fromTokenId"]) >> SERIAL_BITS
        elif "lot_id" in event.args:
            lot = int(event.args["lot_id"])
    elif event.contract == LENDING:
        if "loan_id" in event.args:
            loan = str(event.args["loan_id"])
            if "token_id" in event.args:
                token = int(event.args["token_id"])
            else:
                row = models.get("ix_loans", loan)
                token = int(row["token_id"]) if row else None
        if "lot_id" in event.args:
            lot = int(event.args["lot_id"])
    elif event.contract == CUSTODY and "lot_id" in event.args:
        lot = int(event.args["lot_id"])
    if token is not None and lot is None:
        lot = token >> SERIAL_BITS
    parties = _addresses(event)
    return (str(token) if token is not None else None, lot, loan,
            parties[0] if parties else None, parties[1] if len(parties) > 1 else None)


def prefetch(events: Iterable[Event], models: Models) -> None:
    """Read ahead, in a few queries, every read-model row :func:`columns` and
    :func:`apply` will look up for ``events``."""
    tokens: set[int] = set()
    lots: set[int] = set()
    loans: set[str] = set()
    merchants: set[str] = set()
    for event in events:
        args = event.args
        if event.contract == CERTIFICATE:
            if "lot_id" in args:
                lots.add(int(args["lot_id"]))
            token = token_of(event)
            if token is not None:
                tokens.add(token)
                lots.add(token >> SERIAL_BITS)
        elif event.contract == LENDING and "loan_id" in args:
            loans.add(str(args["loan_id"]))
        elif event.contract == POINTS:
            merchant = args.get("merchant") or (args.get("receiver") if event.name == "Transfer" else None)
            if merchant is not None:
                merchants.add(merchant)
    models.prefetch("ix_lots", lots)
    models.prefetch("ix_tokens", tokens)
    models.prefetch("ix_loans", loans)
    models.prefetch("ix_merchants", merchants)


def apply(event: Event, models: Models) -> None:
    """Update the read models for ``event``."""
    if event.contract == CERTIFICATE:
        _certificate(event, models)
    elif event.contract == LENDING:
        _lending(event, models)
    elif event.contract == POINTS:
        _points(event, models)


def _token_row(models: Models, token_id: int) -> dict[str, Any]:
    row = models.get("ix_tokens", token_id)
    if row is not None:
        return row
    lot = token_id >> SERIAL_BITS
    lot_row = models.get("ix_lots", lot)
    return {"token_id": str(token_id), "lot_id": lot, "serial": token_id & SERIAL_MASK,
            "owner": lot_row["issuer"] if lot_row else None, "state": ACTIVE, "gift_expiry": None}


def _certificate(event: Event, models: Models) -> None:
    args, block = event.args, event.block_number
    if event.name == "LotIssued":
        lot = int(args["lot_id"])
        models.put("ix_lots", lot, {
            "lot_id": lot, "issuer": args["issuer"], "custodian": args["custodian"], "successor": None,
            "first_token_id": str(args["first_token_id"]), "bottle_count": int(args["bottle_count"]),
            "vintage": int(args["vintage"]), "volume_ml": int(args["volume_ml"]),
            "bottling_date": int(args["bottling_date"]), "metadata_hash": args["metadata_hash"],
            "tag_root": args["tag_root"], "producer": args["producer"], "wine": args["wine"],
            "region": args["region"], "metadata_uri": args["metadata_uri"], "issued_block": block,
            "issued_at": event.block_time, "issued_tx": event.tx_hash,
        }, block)
    elif event.name in ("CustodyMoved", "SuccessorIssuerNamed"):
        lot_row = models.get("ix_lots", int(args["lot_id"]))
        if lot_row is not None:
            if event.name == "CustodyMoved":
                lot_row["custodian"] = args["custodian"]
            else:
                lot_row["successor"] = args["successor"]
            models.put("ix_lots", lot_row["lot_id"], lot_row, block)
    elif event.name == "Transfer":
        token_id = int(args["token_id"])
        row = _token_row(models, token_id)
        receiver = args["receiver"]
        row["owner"] = None if receiver == ZERO else receiver
        if receiver == ZERO:
            row["state"] = REDEEMED
        models.put("ix_tokens", token_id, row, block)
    elif event.name in _STATE_OF_EVENT:
        token_id = int(args["token_id"])
        row = _token_row(models, token_id)
        row["state"] = _STATE_OF_EVENT[event.name]
        row["gift_expiry"] = int(args["expiry"]) if event.name == "GiftCreated" else None
        if event.name == "CertificateRedeemed":
            row["owner"] = None
        models.put("ix_tokens", token_id, row, block)


def _lending(event: Event, models: Models) -> None:
    args, block = event.args, event.block_number
    if event.name == "LoanStarted":
        loan = str(args["loan_id"])
        models.put("ix_loans", loan, {
            "loan_id": loan, "lender": args["lender"], "borrower": args["borrower"],
            "token_id": str(args["token_id"]), "principal": str(args["principal"]),
            "repayment": str(args["repayment"]), "due_at": int(args["due_at"]),
            "grace_period": int(args["grace_period"]), "state": "active", "late": 0,
            "started_block": block, "started_at": event.block_time,
        }, block)
        return
    if "loan_id" not in args:
        return
    row = models.get("ix_loans", str(args["loan_id"]))
    if row is None:
        return
    if event.name in _LOAN_STATE_OF_EVENT:
        row["state"] = _LOAN_STATE_OF_EVENT[event.name]
        if event.name == "LoanRepaid":
            row["late"] = int(bool(args["late"]))
    elif event.name == "LoanExtended":
        row["due_at"], row["repayment"] = int(args["due_at"]), str(args["repayment"])
    elif event.name == "LoanClockRestarted":
        row["due_at"] = int(args["due_at"])
    else:
        return
    models.put("ix_loans", row["loan_id"], row, block)


def _merchant_row(models: Models, merchant: str) -> dict[str, Any]:
    return models.get("ix_merchants", merchant) or {
        "merchant": merchant, "name": "", "cap": "0", "registered": 0, "points_issued": "0",
        "points_redeemed": "0", "points_accepted": "0", "stablecoin_paid_in": "0", "stablecoin_paid_out": "0"}


def _add(row: dict[str, Any], column: str, amount: int) -> None:
    row[column] = str(int(row[column]) + amount)


def _points(event: Event, models: Models) -> None:
    args, block = event.args, event.block_number
    if event.name == "Transfer":
        receiver = args["receiver"]
        if args["sender"] == ZERO or receiver == ZERO:
            return  # issuance and redemption have events of their own
        row = models.get("ix_merchants", receiver)
        if row is None or not row["registered"]:
            return
        _add(row, "points_accepted", int(args["value"]))
        models.put("ix_merchants", receiver, row, block)
        return
    merchant = args.get("merchant")
    if merchant is None:
        return
    row = _merchant_row(models, merchant)
    if event.name == "MerchantRegistered":
        row.update(name=args["name"], cap=str(args["cap"]), registered=1)
    elif event.name == "MerchantCapChanged":
        row["cap"] = str(args["cap"])
    elif event.name == "MerchantRemoved":
        row["registered"] = 0
    elif event.name == "PointsIssued":
        _add(row, "points_issued", int(args["points"]))
        _add(row, "stablecoin_paid_in", int(args["stablecoin_paid_in"]))
    elif event.name == "PointsRedeemed":
        _add(row, "points_redeemed", int(args["points"]))
        _add(row, "stablecoin_paid_out", int(args["stablecoin_paid_out"]))
    else:
        return
    models.put("ix_merchants", merchant, row, block)
