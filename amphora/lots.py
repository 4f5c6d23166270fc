"""Lot descriptions, bottle tag keys and the files an issuer hands to the tag printer.

A lot is described in JSON (one object) or CSV (a header row and one data row)
with the fields of :class:`LotDescription`. Issuing it produces, per bottle, the
tag key to program into the bottle's tag, the tag's address (its commitment),
the Merkle proof of that commitment, and the bottle's token id and verify URL.

A description with ``"document_version": 2`` is a lot document version 2
(``amphora/schemas/lot-document-v2.json``, served by the API at
``/schemas/lot-document-v2.json``): GS1 identifiers, ingredients, nutrition and
translations besides the lot's facts. It is validated against the schema, and its
GTIN check digit and nutrition checked, before anything is sent. A description
without ``document_version`` is version 1 and is issued as before.
"""

from __future__ import annotations

import csv
import json
import os
import secrets
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

from eth_account import Account
from eth_utils import keccak, to_checksum_address
from jsonschema import Draft202012Validator, FormatChecker

from amphora import gs1
from amphora.merkle import TagTree

SERIAL_BITS = 32
MAX_BOTTLES_PER_LOT = 1_000_000
REQUIRED = ("producer", "wine", "region", "bottle_count", "volume_ml", "bottling_date", "custodian")
SCHEMAS = Path(__file__).resolve().parent / "schemas"
LOT_DOCUMENT_V2 = "lot-document-v2.json"
#: kcal = kJ / 4.184; both are declared rounded to whole numbers.
KJ_PER_KCAL = 4.184


class LotFileError(ValueError):
    """A lot description that cannot be issued; the message names the field."""


def lot_document_schema() -> dict[str, Any]:
    """The JSON Schema of lot documents version 2."""
    loaded: dict[str, Any] = json.loads((SCHEMAS / LOT_DOCUMENT_V2).read_text())
    return loaded


_FORMATS = FormatChecker()


@_FORMATS.checks("gtin", raises=gs1.GS1Error)
def _is_gtin(value: object) -> bool:
    return not isinstance(value, str) or gs1.validate_gtin(value) == value


def schema_validator() -> Draft202012Validator:
    return Draft202012Validator(lot_document_schema(), format_checker=_FORMATS)


def _amount(value: float | str) -> float:
    return 0.0 if isinstance(value, str) else float(value)


def validate_document(doc: dict[str, Any]) -> None:
    """Check a version 2 lot document: the JSON Schema (with the GTIN's check digit),
    then the rules a schema cannot say. Raises :class:`LotFileError` naming the field."""
    errors = sorted(schema_validator().iter_errors(doc), key=lambda e: list(e.absolute_path))
    if errors:
        first = errors[0]
        where = "/".join(str(p) for p in first.absolute_path) or "document"
        cause = first.cause or first.message
        raise LotFileError(f"{where}: {cause}")
    n = doc["nutrition_per_100ml"]
    if abs(n["energy_kj"] - n["energy_kcal"] * KJ_PER_KCAL) > KJ_PER_KCAL:
        raise LotFileError(f"nutrition_per_100ml: {n['energy_kj']} kJ is not {n['energy_kcal']} kcal")
    if _amount(n["saturates"]) > _amount(n["fat"]):
        raise LotFileError("nutrition_per_100ml/saturates: more than the fat they are part of")
    if _amount(n["sugars"]) > _amount(n["carbohydrate"]):
        raise LotFileError("nutrition_per_100ml/sugars: more than the carbohydrate they are part of")
    try:
        gs1.validate_lot(doc["lot_code"])
        if doc["vintage"]:
            gs1.validate_vintage(str(doc["vintage"]))
    except gs1.GS1Error as err:
        raise LotFileError(str(err)) from err


def is_v2(doc: dict[str, Any]) -> bool:
    return doc.get("document_version") == 2


def digital_link(doc: dict[str, Any], serial: int | None = None) -> gs1.DigitalLink:
    """The Digital Link identifiers of a version 2 lot, or of its bottle ``serial``."""
    return gs1.DigitalLink(
        gtin=doc["gtin"], lot=doc["lot_code"], vintage=str(doc["vintage"]) if doc["vintage"] else None,
        serial=gs1.gs1_serial(doc["serial_salt"], serial) if serial is not None else None,
    )


def token_id(lot_id: int, serial: int) -> int:
    return (lot_id << SERIAL_BITS) | serial


def split_token_id(token: int) -> tuple[int, int]:
    return token >> SERIAL_BITS, token & ((1 << SERIAL_BITS) - 1)


def to_unix(value: Any) -> int:
    if isinstance(value, int):
        return value
    text = str(value).strip()
    if text.isdigit():
        return int(text)
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError as err:
        raise LotFileError(f"bottling_date: {text!r} is neither a unix time nor an ISO date") from err
    if isinstance(parsed, datetime) and parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return int(parsed.timestamp())


@dataclass
class LotDescription:
    producer: str
    wine: str
    region: str
    bottle_count: int
    volume_ml: int
    bottling_date: int
    custodian: str
    vintage: int = 0
    metadata_uri: str = ""
    #: Addresses of existing tags (serial order). Empty: fresh keys are made.
    tags: list[str] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_mapping(cls, data: dict[str, Any]) -> LotDescription:
        missing = [k for k in REQUIRED if data.get(k) in (None, "")]
        if missing:
            raise LotFileError(f"missing field(s): {', '.join(missing)}")
        known = set(REQUIRED) | {"vintage", "metadata_uri", "tags"}
        try:
            count = int(data["bottle_count"])
            volume = int(data["volume_ml"])
            vintage = int(data.get("vintage") or 0)
        except (TypeError, ValueError) as err:
            raise LotFileError(f"bottle_count, volume_ml and vintage must be whole numbers: {err}") from err
        if not 1 <= count <= MAX_BOTTLES_PER_LOT:
            raise LotFileError(f"bottle_count: {count} is not between 1 and {MAX_BOTTLES_PER_LOT}")
        if not 1 <= volume < 2**32:
            raise LotFileError(f"volume_ml: {volume} is out of range")
        if not 0 <= vintage < 2**16:
            raise LotFileError(f"vintage: {vintage} is out of range (0 for non-vintage)")
        tags = data.get("tags") or []
        if isinstance(tags, str):
            tags = [t for t in tags.replace(";", " ").split() if t]
        if tags and len(tags) != count:
            raise LotFileError(f"tags: {len(tags)} given for {count} bottles")
        try:
            custodian = to_checksum_address(str(data["custodian"]))
            tags = [to_checksum_address(t) for t in tags]
        except ValueError as err:
            raise LotFileError(f"not an address: {err}") from err
        extra = {k: v for k, v in data.items() if k not in known}
        if "document_version" in extra and not is_v2(extra):
            raise LotFileError(f"document_version: {extra['document_version']!r} is not 2 (omit it for version 1)")
        if is_v2(extra) and not extra.get("serial_salt"):
            extra["serial_salt"] = gs1.new_salt()
        lot = cls(
            producer=str(data["producer"]), wine=str(data["wine"]), region=str(data["region"]),
            bottle_count=count, volume_ml=volume, bottling_date=to_unix(data["bottling_date"]),
            custodian=custodian, vintage=vintage, metadata_uri=str(data.get("metadata_uri") or ""),
            tags=tags, extra=extra,
        )
        if is_v2(extra):
            validate_document(lot.metadata_document())
        return lot

    @classmethod
    def from_file(cls, path: Path) -> LotDescription:
        path = Path(path)
        text = path.read_text()
        if path.suffix.lower() == ".csv":
            rows = list(csv.DictReader(text.splitlines()))
            if len(rows) != 1:
                raise LotFileError(f"{path}: a lot CSV has a header row and exactly one data row")
            return cls.from_mapping(dict(rows[0]))
        try:
            data = json.loads(text)
        except json.JSONDecodeError as err:
            raise LotFileError(f"{path}: not valid JSON: {err}") from err
        if not isinstance(data, dict):
            raise LotFileError(f"{path}: a lot JSON file holds one object")
        return cls.from_mapping(data)

    def metadata_document(self) -> dict[str, Any]:
        """The lot's metadata document; its canonical JSON is hashed on chain."""
        doc = {k: v for k, v in asdict(self).items() if k not in ("tags", "extra", "metadata_uri")}
        doc["bottling_date_iso"] = date.fromtimestamp(self.bottling_date).isoformat()
        doc.update(self.extra)
        return doc


def canonical_json(doc: dict[str, Any]) -> bytes:
    return json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def metadata_hash(doc: dict[str, Any]) -> bytes:
    return keccak(canonical_json(doc))


def documents_dir(chain_id: int, base: Path | None = None) -> Path:
    """Where lot metadata documents are kept for the API to serve:
    ``<deployments>/documents/<chain id>/`` unless ``base`` is given."""
    from amphora.manifest import manifest_dir

    return (base or manifest_dir() / "documents") / str(chain_id)


def document_path(chain_id: int, lot_id: int, base: Path | None = None) -> Path:
    return documents_dir(chain_id, base) / f"lot-{lot_id}.json"


def write_document(path: Path, doc: dict[str, Any]) -> Path:
    """Write exactly the bytes whose keccak256 is the lot's ``metadata_hash``: to a
    temporary file renamed over ``path``, so a reader sees the old document or the new
    one, never half of one, and the folder's mtime changes (the resolver relists then)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    try:
        temporary.write_bytes(canonical_json(doc))
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)
    return path


@dataclass
class Bottle:
    serial: int
    tag_address: str
    tag_private_key: str | None
    proof: list[str]


def make_tags(lot: LotDescription,
              progress: Callable[[str, int], None] | None = None) -> tuple[TagTree, list[str | None]]:
    """The lot's tag tree, and the private keys of freshly made tags (None for given tags).
    ``progress(step, done)``: ``("keys", n)`` every 1,000 keys made and ``("tree", n)`` every
    1,000 leaves hashed, each step announced with 0 first (the slow parts of a big lot)."""
    tree_progress = None if progress is None else (lambda done: progress("tree", done))
    if lot.tags:
        if progress is not None:
            progress("tree", 0)
        return TagTree.build(lot.tags, tree_progress), [None] * len(lot.tags)
    if progress is not None:
        progress("keys", 0)
    keys: list[bytes] = []
    addresses: list[str] = []
    for n in range(1, lot.bottle_count + 1):
        keys.append(secrets.token_bytes(32))
        addresses.append(Account.from_key(keys[-1]).address)
        if progress is not None and n % 1_000 == 0:
            progress("keys", n)
    if progress is not None:
        progress("tree", 0)
    return TagTree.build(addresses, tree_progress), ["0x" + k.hex() for k in keys]


def bottles_of(tree: TagTree, keys: list[str | None]) -> list[Bottle]:
    return [
        Bottle(serial=i + 1, tag_address=tree.tags[i], tag_private_key=keys[i],
               proof=["0x" + p.hex() for p in tree.proof(i + 1)])
        for i in range(len(tree.tags))
    ]


def write_bottles(path: Path, lot_id: int, bottles: list[Bottle], verify_base_url: str,
                  document: dict[str, Any] | None = None) -> Path:
    """Write the per-bottle file for the tag printer (private keys: mode 0600). For a
    version 2 lot ``document``, each row also has the bottle's GS1 serial and Digital Link."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    rows: list[dict[str, Any]] = []
    for b in bottles:
        tid = token_id(lot_id, b.serial)
        row: dict[str, Any] = {
            "serial": b.serial, "token_id": str(tid), "tag_address": b.tag_address,
            "tag_private_key": b.tag_private_key or "", "proof": b.proof,
            "verify_url": f"{verify_base_url.rstrip('/')}/verify/{tid}",
        }
        if document is not None and is_v2(document):
            link = digital_link(document, b.serial)
            row["gs1_serial"] = link.serial
            row["digital_link"] = link.uri(verify_base_url)
        rows.append(row)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        if path.suffix.lower() == ".csv":
            writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
            writer.writeheader()
            for row in rows:
                writer.writerow({**row, "proof": ";".join(row["proof"])})
        else:
            json.dump({"lot_id": lot_id, "bottles": rows}, fh, indent=1)
    return path


@dataclass
class IssuedLot:
    lot_id: int
    tx_hash: str
    gas_used: int
    tree: TagTree
    bottles: list[Bottle]
    metadata: dict[str, Any]


def issue(cert: Any, issuer: Any, lot: LotDescription) -> IssuedLot:
    """Issue ``lot`` on ``cert`` from ``issuer`` (an Ape account)."""
    tree, keys = make_tags(lot)
    doc = lot.metadata_document()
    receipt = cert.issue_lot(
        lot.custodian, lot.bottle_count, lot.vintage, lot.volume_ml, lot.bottling_date,
        metadata_hash(doc), tree.root, lot.producer, lot.wine, lot.region, lot.metadata_uri,
        sender=issuer,
    )
    events = list(receipt.decode_logs(cert.LotIssued))
    lot_id = int(events[0].lot_id)
    return IssuedLot(lot_id=lot_id, tx_hash=receipt.txn_hash, gas_used=receipt.gas_used, tree=tree,
                     bottles=bottles_of(tree, keys), metadata=doc)
