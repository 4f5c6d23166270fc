"""The winery's side of the service: check a lot document field by field, issue
it from the issuer's own address, and keep the bottles' tag keys.

A lot is issued as ``ape run issue_lot`` issues it (:mod:`amphora.lots`): fresh
tag keys per bottle, their Merkle root and the document's hash on chain, the
document deposited where ``GET /lots/{lot_id}/metadata.json`` serves it. Here
the service signs ``issue_lot`` with the custodial account's own key
(:class:`api.business.BusinessSender`), so on chain the winery's address
issues, and the contract (issuer role, registered custodian, not paused) stays
the authority.

The tag keys are secrets: whoever holds a bottle's key can prove to be that
bottle. :class:`TagKeyVault` keeps them encrypted at rest (AES-256-GCM under a
key derived from ``AMPHORA_MASTER_KEY`` with its own HKDF label, bound to the
chain, lot and issuer) and hands them out **once**: the first download of the
bottles file carries them, later downloads leave the key column empty.

A document is issued at most once per issuer: its keccak256 (which covers the
random ``serial_salt`` a preview fixes) is reserved before anything is sent, so
a double submit or a retry of the same document is refused (409) instead of
issuing a second lot.
"""

from __future__ import annotations

import csv
import io
import json
import os
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from eth_utils import to_checksum_address
from web3.exceptions import MismatchedABI

from amphora import gs1, lots
from amphora.merkle import TagTree
from api.business import TransactionFailed
from api.chain import ChainService
from api.errors import AmphoraError, Conflict, ServiceUnavailable
from api.settings import Settings
from api.users import parse_master_key
from storage.db import Database, Store

#: Bottles one issuance in a single request (``POST /issuer/lots``) may hold: its keys are made, stored and
#: served while the client waits. Larger lots are issued as a background job (``POST /issuer/lot-jobs``).
MAX_BOTTLES_ONLINE = 5_000
#: Bottles one background issuance job may hold: tag keys and their tree take about 20 s for 100,000 here
#: (docs/console-issuer.md, "Big lots and progress"). Larger lots are issued with ``ape run issue_lot``.
MAX_BOTTLES_JOB = 100_000
#: The HKDF label of the tag keys' cipher (never the custodial accounts' one).
_HKDF_INFO = b"amphora/issuer/tag-keys/v1"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS issuer_lots (
    chain_id BIGINT NOT NULL,
    issuer TEXT NOT NULL,
    metadata_hash TEXT NOT NULL,
    lot_id BIGINT,
    tag_addresses TEXT,
    tag_keys TEXT,
    created_at DOUBLE PRECISION NOT NULL,
    keys_downloaded_at DOUBLE PRECISION,
    PRIMARY KEY (chain_id, issuer, metadata_hash)
);
CREATE INDEX IF NOT EXISTS issuer_lots_by_lot ON issuer_lots (chain_id, lot_id)
"""


class LotDocumentInvalid(AmphoraError):
    status_code = 422
    code = "invalid_lot_document"
    meaning = ("The lot document does not pass the checks of `POST /issuer/lots/preview` (the lot description's "
               "fields, the lot document schema version 2, GTIN check digit, nutrition); `detail` names every "
               "field that fails, `field: problem` separated by `; `. Nothing was sent.")


class AlreadyIssued(Conflict):
    code = "already_issued"
    meaning = ("This issuer already issued (or is issuing) exactly this document (same keccak256): a double "
               "submit or a retry. `detail` names the lot. Nothing was sent.")


@dataclass(frozen=True)
class Problem:
    """One field of a lot document that fails, and why."""

    field: str
    message: str


def _split(message: str) -> Problem:
    """A :class:`amphora.lots.LotFileError` message (``field: why``) as a problem."""
    head, sep, tail = message.partition(": ")
    if sep and " " not in head.strip() and head:
        return Problem(head, tail)
    return Problem("document", message)


def _schema_problems(data: dict[str, Any]) -> list[Problem]:
    """Every schema error of a version 2 description, as the document it would make."""
    doc = {k: v for k, v in data.items() if k not in ("tags", "metadata_uri")}
    doc.setdefault("vintage", 0)
    doc.setdefault("serial_salt", "AAAAAAAA")
    try:
        stamp = lots.to_unix(data.get("bottling_date"))  # the same parse as issuance
        doc["bottling_date"] = stamp
        doc["bottling_date_iso"] = datetime.fromtimestamp(stamp, UTC).date().isoformat()
    except (lots.LotFileError, ValueError, OverflowError, OSError):
        pass
    for key in ("bottle_count", "volume_ml", "vintage"):
        try:
            doc[key] = int(doc[key])
        except (KeyError, TypeError, ValueError):
            pass
    validator = lots.schema_validator()  # the schema and GTIN checker issuance uses
    problems = []
    for error in sorted(validator.iter_errors(doc), key=lambda e: [str(p) for p in e.absolute_path]):
        where = "/".join(str(p) for p in error.absolute_path) or "document"
        problems.append(Problem(where, str(error.cause or error.message)))
    return problems


def check_document(data: dict[str, Any], max_bottles: int = MAX_BOTTLES_JOB
                   ) -> tuple[lots.LotDescription | None, list[Problem]]:
    """The lot description ``data`` makes, or every field that fails (then None); at most ``max_bottles``."""
    problems = [Problem(key, "missing") for key in lots.REQUIRED if data.get(key) in (None, "")]
    try:
        lot = lots.LotDescription.from_mapping(dict(data))
    except lots.LotFileError as err:
        first = [] if str(err).startswith("missing field") else [_split(str(err))]
        schema = _schema_problems(data) if lots.is_v2(data) else []
        return None, _unique(problems + first + schema) or [_split(str(err))]
    except (TypeError, AttributeError, gs1.GS1Error) as err:
        return None, [Problem("document", str(err))]
    except (ValueError, OverflowError, OSError) as err:  # a date the calendar cannot hold
        return None, [Problem("bottling_date", f"out of range ({err})")]
    try:
        lot.metadata_document()
    except (ValueError, OverflowError, OSError) as err:
        return None, [Problem("bottling_date", f"out of range ({err})")]
    if lot.tags:
        problems.append(Problem("tags", "the console makes fresh tag keys; issue a lot with existing tags with "
                                "`ape run issue_lot`"))
    if lot.bottle_count > max_bottles:
        problems.append(Problem("bottle_count", _too_many(lot.bottle_count, max_bottles)))
    return (None if problems else lot), problems


def _too_many(count: int, limit: int) -> str:
    if limit < MAX_BOTTLES_JOB:
        return (f"{count:,} bottles: at most {limit:,} in one request; issue up to {MAX_BOTTLES_JOB:,} as a "
                "background job with `POST /issuer/lot-jobs` (the console does), larger lots with "
                "`ape run issue_lot`")
    return f"{count:,} bottles: at most {limit:,} through the service; issue larger lots with `ape run issue_lot`"


def _unique(problems: list[Problem]) -> list[Problem]:
    seen: set[tuple[str, str]] = set()
    out = []
    for problem in problems:
        if (problem.field, problem.message) not in seen:
            seen.add((problem.field, problem.message))
            out.append(problem)
    return out


def require_valid(data: dict[str, Any], max_bottles: int = MAX_BOTTLES_JOB) -> lots.LotDescription:
    lot, problems = check_document(data, max_bottles)
    if lot is None:
        raise LotDocumentInvalid("; ".join(f"{p.field}: {p.message}" for p in problems))
    return lot


def parse_upload(name: str, body: bytes) -> dict[str, Any]:
    """The description in an uploaded lot file: a JSON object, or a CSV header row and one data row
    (the formats of ``ape run issue_lot``). :class:`LotDocumentInvalid` for anything else."""
    try:
        text = body.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        raise LotDocumentInvalid("file: not UTF-8 text") from err
    if name.lower().endswith(".csv") or not text.lstrip().startswith("{"):
        rows = list(csv.DictReader(io.StringIO(text)))
        if len(rows) != 1:
            raise LotDocumentInvalid(f"file: a lot CSV has a header row and exactly one data row ({len(rows)} rows)")
        row = {k.strip(): (v or "").strip() for k, v in rows[0].items() if k}
        for key, value in list(row.items()):
            if value[:1] in "[{":  # a nested field written as JSON in its cell
                try:
                    row[key] = json.loads(value)
                except json.JSONDecodeError:
                    pass
        if row.get("document_version") == "2":
            row["document_version"] = 2  # type: ignore[assignment]
        return _typed_v2(row) if lots.is_v2(row) else row
    try:
        data = json.loads(text)
    except json.JSONDecodeError as err:
        raise LotDocumentInvalid(f"file: not valid JSON ({err.msg} at line {err.lineno})") from err
    if not isinstance(data, dict):
        raise LotDocumentInvalid("file: a lot JSON file holds one object")
    return data


def _typed_v2(row: dict[str, Any]) -> dict[str, Any]:
    """A version 2 CSV row with its numbers and booleans as the schema types them."""
    for key in ("alcohol_percent",):
        try:
            row[key] = float(row[key])
        except (KeyError, ValueError, TypeError):
            pass
    for key in ("bottle_count", "volume_ml", "vintage"):
        try:
            row[key] = int(row[key])
        except (KeyError, ValueError, TypeError):
            pass
    if isinstance(row.get("eu_market"), str):
        row["eu_market"] = row["eu_market"].lower() in ("true", "1", "yes")
    return row


class TagKeyVault(Store):
    """The lots an issuer issued through the service, and their tag keys, encrypted."""

    def __init__(self, db: Database, settings: Settings) -> None:
        super().__init__(db, _SCHEMA)
        self._cipher: AESGCM | None = None
        master = settings.master_key.get_secret_value().strip() if settings.master_key else ""
        if master:
            try:
                raw = parse_master_key(master)
            except ValueError:
                raw = b""
            if raw:
                self._cipher = AESGCM(HKDF(algorithm=hashes.SHA256(), length=32, salt=None,
                                           info=_HKDF_INFO).derive(raw))

    def cipher(self) -> AESGCM:
        if self._cipher is None:
            raise ServiceUnavailable("tag keys cannot be kept: AMPHORA_MASTER_KEY is not configured")
        return self._cipher

    def reserve(self, chain_id: int, issuer: str, metadata_hash: str) -> None:
        """Claim ``metadata_hash`` for ``issuer`` before sending; :class:`AlreadyIssued` if it is taken."""
        self.cipher()
        with self._db.transaction() as tx:
            row = tx.one("SELECT lot_id FROM issuer_lots WHERE chain_id = ? AND issuer = ? AND metadata_hash = ?",
                         (chain_id, issuer, metadata_hash))
            if row is not None:
                lot = row["lot_id"]
                raise AlreadyIssued(f"this document was already issued as lot {lot}" if lot is not None
                                    else "this document is being issued now")
            tx.execute("INSERT INTO issuer_lots (chain_id, issuer, metadata_hash, created_at) VALUES (?, ?, ?, ?)",
                       (chain_id, issuer, metadata_hash, time.time()))

    def release(self, chain_id: int, issuer: str, metadata_hash: str) -> None:
        """Free a reservation whose issuance was refused (nothing was sent)."""
        with self._db.transaction() as tx:
            tx.execute("DELETE FROM issuer_lots WHERE chain_id = ? AND issuer = ? AND metadata_hash = ? "
                       "AND lot_id IS NULL", (chain_id, issuer, metadata_hash))

    def stage(self, chain_id: int, issuer: str, metadata_hash: str, tree: TagTree, keys: list[str | None]) -> None:
        """Keep a reserved document's tag keys (encrypted, bound to the document) before its lot is sent, so a
        lot that lands while the service stops is not left without its keys (:meth:`adopt`). :meth:`release`
        deletes them with the reservation; no download serves them until :meth:`keep` names the lot."""
        nonce = os.urandom(12)
        sealed = nonce + self.cipher().encrypt(nonce, json.dumps(keys).encode(),
                                               self._staged(chain_id, metadata_hash, issuer))
        with self._db.transaction() as tx:
            tx.execute("UPDATE issuer_lots SET tag_addresses = ?, tag_keys = ? WHERE chain_id = ? AND issuer = ? "
                       "AND metadata_hash = ? AND lot_id IS NULL",
                       (json.dumps(tree.tags), sealed.hex(), chain_id, issuer, metadata_hash))

    def adopt(self, chain_id: int, issuer: str, metadata_hash: str, lot_id: int) -> bool:
        """Bind the staged keys of ``metadata_hash`` to ``lot_id``, the lot the chain shows it was issued as;
        False when none were staged."""
        with self._db.transaction() as tx:
            row = tx.one("SELECT tag_addresses, tag_keys FROM issuer_lots WHERE chain_id = ? AND issuer = ? AND "
                         "metadata_hash = ? AND lot_id IS NULL", (chain_id, issuer, metadata_hash))
        if row is None or row["tag_keys"] is None:
            return False
        sealed = bytes.fromhex(row["tag_keys"])
        keys = json.loads(self.cipher().decrypt(sealed[:12], sealed[12:],
                                                self._staged(chain_id, metadata_hash, issuer)))
        tags = [to_checksum_address(a) for a in json.loads(row["tag_addresses"])]
        self.keep(chain_id, issuer, metadata_hash, lot_id, TagTree.build(tags), keys)
        return True

    def staged_root(self, chain_id: int, issuer: str, metadata_hash: str) -> str | None:
        """The tag root (``0x`` hex) of the keys staged for a reserved document, None when none are staged: the
        root its lot must carry for the staged keys to be its tags."""
        with self._db.read() as tx:
            row = tx.one("SELECT tag_addresses FROM issuer_lots WHERE chain_id = ? AND issuer = ? AND "
                         "metadata_hash = ? AND lot_id IS NULL", (chain_id, issuer, metadata_hash))
        if row is None or row["tag_addresses"] is None:
            return None
        return "0x" + TagTree.build([to_checksum_address(a) for a in json.loads(row["tag_addresses"])]).root.hex()

    @staticmethod
    def _staged(chain_id: int, metadata_hash: str, issuer: str) -> bytes:
        return f"{chain_id}:staged:{metadata_hash}:{issuer.lower()}".encode()

    def keep(self, chain_id: int, issuer: str, metadata_hash: str, lot_id: int, tree: TagTree,
             keys: list[str | None]) -> None:
        """Record the issued lot and its tag keys (encrypted, bound to chain, lot and issuer)."""
        nonce = os.urandom(12)
        sealed = nonce + self.cipher().encrypt(nonce, json.dumps(keys).encode(),
                                               self._bound(chain_id, lot_id, issuer))
        with self._db.transaction() as tx:
            tx.execute("UPDATE issuer_lots SET lot_id = ?, tag_addresses = ?, tag_keys = ? WHERE chain_id = ? AND "
                       "issuer = ? AND metadata_hash = ?",
                       (lot_id, json.dumps(tree.tags), sealed.hex(), chain_id, issuer, metadata_hash))

    @staticmethod
    def _bound(chain_id: int, lot_id: int, issuer: str) -> bytes:
        return f"{chain_id}:{lot_id}:{issuer.lower()}".encode()

    def issued(self, chain_id: int, lot_id: int) -> dict[str, Any] | None:
        """What the vault knows of a lot: its issuer, whether its keys were downloaded."""
        with self._db.transaction() as tx:
            row = tx.one("SELECT issuer, keys_downloaded_at FROM issuer_lots WHERE chain_id = ? AND lot_id = ?",
                         (chain_id, lot_id))
        return dict(row) if row is not None else None

    def take(self, chain_id: int, lot_id: int, issuer: str) -> tuple[list[str], list[str | None], float | None]:
        """The lot's tag addresses and, the first time only, their keys (else Nones, and when they were taken).
        The first caller marks them taken in the same transaction, so two downloads cannot both get them."""
        with self._db.transaction() as tx:
            row = tx.one("SELECT tag_addresses, tag_keys, keys_downloaded_at FROM issuer_lots WHERE chain_id = ? "
                         "AND lot_id = ? AND issuer = ?" + self._db.for_update, (chain_id, lot_id, issuer))
            if row is None or row["tag_addresses"] is None:
                raise KeyError(lot_id)
            addresses: list[str] = json.loads(row["tag_addresses"])
            if row["keys_downloaded_at"] is not None:
                return addresses, [None] * len(addresses), float(row["keys_downloaded_at"])
            changed = tx.execute("UPDATE issuer_lots SET keys_downloaded_at = ? WHERE chain_id = ? AND lot_id = ? "
                                 "AND issuer = ? AND keys_downloaded_at IS NULL",
                                 (time.time(), chain_id, lot_id, issuer))
            if changed != 1:
                return addresses, [None] * len(addresses), time.time()
        sealed = bytes.fromhex(row["tag_keys"])
        keys = json.loads(self.cipher().decrypt(sealed[:12], sealed[12:], self._bound(chain_id, lot_id, issuer)))
        return addresses, keys, None


def issue_call(chain: ChainService, lot: lots.LotDescription, doc: dict[str, Any], root: bytes) -> Any:
    """The certificate's ``issue_lot`` call for ``lot`` with document ``doc`` and tag root ``root``."""
    return chain.certificate_contract.functions.issue_lot(
        lot.custodian, lot.bottle_count, lot.vintage, lot.volume_ml, lot.bottling_date, lots.metadata_hash(doc),
        root, lot.producer, lot.wine, lot.region, lot.metadata_uri)


def issued_lot_id(chain: ChainService, logs: tuple[Any, ...]) -> int:
    """The lot id of the receipt's `LotIssued` (the other logs of the certificate are skipped)."""
    event = chain.certificate_contract.events.LotIssued()
    for log in logs:
        if log["address"] != chain.certificate_address:
            continue
        try:
            return int(event.process_log(log)["args"]["lot_id"])
        except MismatchedABI:
            continue
    raise TransactionFailed("the issuance landed without a LotIssued event")


def bottles_file(lot_id: int, addresses: list[str], keys: list[str | None], verify_base_url: str,
                 document: dict[str, Any] | None, fmt: str) -> bytes:
    """The bottles file of ``ape run issue_lot`` (CSV or JSON), written through :func:`amphora.lots.write_bottles`."""
    import tempfile
    from pathlib import Path

    tree = TagTree.build([to_checksum_address(a) for a in addresses])
    bottles = lots.bottles_of(tree, keys)
    with tempfile.TemporaryDirectory() as folder:
        path = lots.write_bottles(Path(folder) / f"bottles.{fmt}", lot_id, bottles, verify_base_url, document)
        return path.read_bytes()
