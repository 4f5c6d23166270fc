"""The points clearing statement: what each merchant issued and redeemed over a
block range, and whether the totals reconcile with the reserve on chain.

:func:`settle` is the arithmetic: from the range's ``PointsIssued`` and
``PointsRedeemed`` events (wherever they were read), the merchants' names and
the points contract's ``reserve()`` just before and at the end of the range,
the statement. :func:`statement` reads all of it from the chain (web3; used by
``ape run settlement``); the API reads the events and names from its index
(:func:`indexer.ledgers.statement`) and only the reserve from the chain.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from typing import Any

from eth_utils import to_checksum_address
from web3 import Web3

CSV_FIELDS = ("merchant", "name", "points_issued", "points_redeemed", "stablecoin_paid_in",
              "stablecoin_paid_out", "net_position")


class SettlementError(ValueError):
    """A range that cannot be settled (inverted, beyond the chain head)."""


@dataclass
class MerchantLine:
    merchant: str
    name: str = ""
    points_issued: int = 0
    points_redeemed: int = 0
    stablecoin_paid_in: int = 0
    stablecoin_paid_out: int = 0

    @property
    def net_position(self) -> int:
        """Stablecoin the merchant put into the reserve minus what it took out:
        positive means the network owes it nothing and it funds others' redemptions."""
        return self.stablecoin_paid_in - self.stablecoin_paid_out

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "net_position": self.net_position}


@dataclass
class Statement:
    points: str
    from_block: int
    to_block: int
    lines: list[MerchantLine] = field(default_factory=list)
    reserve_before: int = 0
    reserve_after: int = 0
    issued_events: int = 0
    redeemed_events: int = 0

    @property
    def total_paid_in(self) -> int:
        return sum(line.stablecoin_paid_in for line in self.lines)

    @property
    def total_paid_out(self) -> int:
        return sum(line.stablecoin_paid_out for line in self.lines)

    @property
    def reserve_movement(self) -> int:
        return self.reserve_after - self.reserve_before

    @property
    def discrepancies(self) -> list[str]:
        """Empty when the statement reconciles with the chain."""
        found = []
        if self.total_paid_in - self.total_paid_out != self.reserve_movement:
            found.append(
                f"paid in {self.total_paid_in} - paid out {self.total_paid_out} = "
                f"{self.total_paid_in - self.total_paid_out}, but the reserve moved by {self.reserve_movement} "
                f"(from {self.reserve_before} to {self.reserve_after})"
            )
        if sum(line.net_position for line in self.lines) != self.reserve_movement:
            found.append("the merchants' net positions do not sum to the reserve movement")
        return found

    @property
    def reconciled(self) -> bool:
        return not self.discrepancies

    def to_json(self) -> dict[str, Any]:
        return {
            "points": self.points,
            "from_block": self.from_block,
            "to_block": self.to_block,
            "merchants": [line.to_json() for line in self.lines],
            "totals": {
                "points_issued": sum(line.points_issued for line in self.lines),
                "points_redeemed": sum(line.points_redeemed for line in self.lines),
                "stablecoin_paid_in": self.total_paid_in,
                "stablecoin_paid_out": self.total_paid_out,
                "net_position": self.total_paid_in - self.total_paid_out,
            },
            "reserve": {"before": self.reserve_before, "after": self.reserve_after,
                        "movement": self.reserve_movement},
            "reconciled": self.reconciled,
            "discrepancies": self.discrepancies,
        }

    def to_csv(self) -> str:
        out = io.StringIO()
        writer = csv.writer(out)
        writer.writerow(CSV_FIELDS)
        for line in self.lines:
            row = line.to_json()
            writer.writerow([row[f] for f in CSV_FIELDS])
        totals = self.to_json()["totals"]
        writer.writerow(["TOTAL", "", *(totals[f] for f in CSV_FIELDS[2:])])
        return out.getvalue()


@dataclass(frozen=True)
class PointsMovement:
    """One ``PointsIssued`` (``stablecoin`` paid in) or ``PointsRedeemed`` (paid out) event's figures."""

    merchant: str
    points: int
    stablecoin: int


def check_range(from_block: int, to_block: int, head: int) -> None:
    """:class:`SettlementError` unless ``from_block..to_block`` is a range that ends by block ``head``."""
    if from_block < 0 or to_block < from_block:
        raise SettlementError(f"from_block {from_block} to to_block {to_block} is not a range")
    if to_block > head:
        raise SettlementError(f"to_block {to_block} is beyond the latest block {head}")


def settle(points: str, from_block: int, to_block: int, issued: Iterable[PointsMovement],
           redeemed: Iterable[PointsMovement], name_of: Callable[[str], str], reserve_before: int,
           reserve_after: int) -> Statement:
    """The statement of blocks ``from_block`` to ``to_block`` from their
    issuances and redemptions, each merchant's name (``name_of``, given the
    checksummed address) and the reserve before and at the end of the range."""
    lines: dict[str, MerchantLine] = {}

    def line(merchant: str) -> MerchantLine:
        merchant = to_checksum_address(merchant)
        if merchant not in lines:
            lines[merchant] = MerchantLine(merchant=merchant)
        return lines[merchant]

    issued_events = redeemed_events = 0
    for movement in issued:
        entry = line(movement.merchant)
        entry.points_issued += movement.points
        entry.stablecoin_paid_in += movement.stablecoin
        issued_events += 1
    for movement in redeemed:
        entry = line(movement.merchant)
        entry.points_redeemed += movement.points
        entry.stablecoin_paid_out += movement.stablecoin
        redeemed_events += 1
    for merchant, entry in lines.items():
        entry.name = name_of(merchant)
    return Statement(
        points=to_checksum_address(points), from_block=from_block, to_block=to_block,
        lines=sorted(lines.values(), key=lambda entry: entry.merchant.lower()),
        reserve_before=reserve_before, reserve_after=reserve_after, issued_events=issued_events,
        redeemed_events=redeemed_events,
    )


def reserve_at(w3: Web3, points_address: str, points_abi: list[dict[str, Any]], block: int) -> int:
    """The points contract's ``reserve()`` at ``block`` (0 before the contract existed)."""
    contract = w3.eth.contract(address=to_checksum_address(points_address), abi=points_abi)
    if block < 0 or not w3.eth.get_code(contract.address, block_identifier=block):
        return 0
    return int(contract.functions.reserve().call(block_identifier=block))


def _logs(event: Any, from_block: int, to_block: int, step: int) -> list[Any]:
    if step <= 0:
        return list(event.get_logs(from_block=from_block, to_block=to_block))
    found: list[Any] = []
    for start in range(from_block, to_block + 1, step):
        found.extend(event.get_logs(from_block=start, to_block=min(to_block, start + step - 1)))
    return found


def statement(w3: Web3, points_address: str, points_abi: list[dict[str, Any]], from_block: int,
              to_block: int | None = None, *, log_block_range: int = 0) -> Statement:
    """The clearing statement of blocks ``from_block`` to ``to_block`` (inclusive;
    default: the latest block)."""
    head = w3.eth.block_number
    to_block = head if to_block is None else to_block
    check_range(from_block, to_block, head)
    contract = w3.eth.contract(address=to_checksum_address(points_address), abi=points_abi)
    issued = _logs(contract.events.PointsIssued(), from_block, to_block, log_block_range)
    redeemed = _logs(contract.events.PointsRedeemed(), from_block, to_block, log_block_range)
    return settle(
        contract.address, from_block, to_block,
        [PointsMovement(log["args"]["merchant"], int(log["args"]["points"]), int(log["args"]["stablecoin_paid_in"]))
         for log in issued],
        [PointsMovement(log["args"]["merchant"], int(log["args"]["points"]),
                        int(log["args"]["stablecoin_paid_out"])) for log in redeemed],
        lambda merchant: str(contract.functions.merchants(merchant).call(block_identifier=to_block)[0]),
        reserve_at(w3, contract.address, points_abi, from_block - 1),
        reserve_at(w3, contract.address, points_abi, to_block),
    )
