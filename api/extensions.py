"""Loan extensions: the lender offers more time, the borrower accepts.

``PledgeLending.extend_loan`` moves an open loan's due date later (with a new
repayment) only on both parties' EIP-712 signatures of one
``LoanExtension(loanId, dueAt, repayment, deadline)``. The two signatures are
made at different times by different people, so the service keeps the
lender's half here until the borrower decides:

* the lender proposes (:func:`propose`): the service signs for a custodial
  lender with its own key, or checks the signature an API client made itself;
* the borrower reads the proposal (:func:`for_loan`) and accepts it
  (:func:`accept`): the service signs for a custodial borrower (or checks the
  wallet borrower's signature) and relays ``extend_loan`` with both
  signatures through the relayer's one submit path;
* the lender may withdraw a pending proposal (:func:`withdraw`).

A proposal never changes once made: new terms are a new proposal (number
``n + 1``), which withdraws the loan's pending one. So the terms a borrower
accepts are always the terms the borrower was shown under that number, and a
proposal replaced while the borrower read it is refused (409), not silently
swapped. The lender's signature never leaves the service (no read returns
it), so a withdrawn proposal cannot be relayed by anyone else either.

A proposal moves from ``pending`` to ``accepted`` or ``withdrawn`` with one
compare-and-set, so two acceptances of one proposal (a double submit, a
replay) relay once; the chain refuses a second ``extend_loan`` with the same
due date anyway ("lending: due date is not later").

Kept in the relayer's database (PostgreSQL when ``DATABASE_URL`` names one,
else its SQLite), so every instance sees the same proposals.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from eth_account import Account
from eth_account.messages import encode_typed_data

from amphora import eip712
from api import lending
from api.chain import ChainService
from api.errors import Conflict, Forbidden, InvalidRequest, NotFound
from api.lender import BPS, MAX_YEARLY_RATE_BPS, YEAR
from api.relayer import Origin, Relayer
from api.schemas import LoanExtensionRelayRequest, LoanState, LoanView
from api.users import User, UserStore
from storage.db import Database

#: Proposals one loan may have had (each new one withdraws the pending one).
MAX_PER_LOAN = 100
#: The contract keeps due dates in 40 bits and amounts in 128.
MAX_DUE_AT = 2**40 - 1
MAX_REPAYMENT = 2**128 - 1

PENDING, ACCEPTED, WITHDRAWN = "pending", "accepted", "withdrawn"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS loan_extensions (
    loan_id TEXT NOT NULL,
    n INTEGER NOT NULL,
    lender TEXT NOT NULL,
    borrower TEXT NOT NULL,
    due_at BIGINT NOT NULL,
    repayment TEXT NOT NULL,
    deadline BIGINT NOT NULL,
    previous_due_at BIGINT NOT NULL,
    previous_repayment TEXT NOT NULL,
    lender_signature TEXT NOT NULL,
    state TEXT NOT NULL,
    proposed_at DOUBLE PRECISION NOT NULL,
    decided_at DOUBLE PRECISION,
    request_id TEXT,
    PRIMARY KEY (loan_id, n)
);
"""


@dataclass(frozen=True)
class Proposal:
    """One proposal as stored (``lender_signature`` stays inside the service)."""

    loan_id: int
    n: int
    lender: str
    borrower: str
    due_at: int
    repayment: int
    deadline: int
    previous_due_at: int
    previous_repayment: int
    lender_signature: str
    state: str
    proposed_at: float
    decided_at: float | None
    request_id: str | None

    def shown_state(self, now: int) -> str:
        """``pending`` past its deadline reads ``expired``."""
        return "expired" if self.state == PENDING and self.deadline < now else self.state


_COLUMNS = ("loan_id, n, lender, borrower, due_at, repayment, deadline, previous_due_at, previous_repayment, "
            "lender_signature, state, proposed_at, decided_at, request_id")


def _proposal(row: dict[str, Any]) -> Proposal:
    return Proposal(int(row["loan_id"]), int(row["n"]), row["lender"], row["borrower"], int(row["due_at"]),
                    int(row["repayment"]), int(row["deadline"]), int(row["previous_due_at"]),
                    int(row["previous_repayment"]), row["lender_signature"], row["state"], float(row["proposed_at"]),
                    None if row["decided_at"] is None else float(row["decided_at"]), row["request_id"])


class ExtensionBook:
    """The proposals, in the relayer's database."""

    def __init__(self, db: Database) -> None:
        self._db = db
        db.migrate(_SCHEMA)

    def propose(self, loan: LoanView, due_at: int, repayment: int, deadline: int, lender_signature: str,
                now: float | None = None) -> Proposal:
        """Store a new proposal for ``loan`` (numbered after the loan's last) and withdraw the loan's
        pending one; the pending proposal itself when it has these very terms (a retry is one proposal).
        :class:`Conflict` after :data:`MAX_PER_LOAN` proposals."""
        at = time.time() if now is None else now
        key = str(loan.loan_id)
        with self._db.transaction() as tx:
            if self._db.postgres:  # one loan's proposals numbered one after another
                tx.execute("SELECT pg_advisory_xact_lock(hashtext(?))", (f"extensions:{key}",))
            same = tx.one(f"SELECT {_COLUMNS} FROM loan_extensions WHERE loan_id = ? AND state = ? AND due_at = ? "
                          "AND repayment = ? AND deadline = ?", (key, PENDING, due_at, str(repayment), deadline))
            if same is not None:
                return _proposal(same)
            last = tx.one("SELECT COALESCE(MAX(n), 0) AS n FROM loan_extensions WHERE loan_id = ?", (key,))
            n = int(last["n"]) + 1 if last is not None else 1
            if n > MAX_PER_LOAN:
                raise Conflict(f"loan {key} has had {MAX_PER_LOAN} extension proposals: no more can be made")
            tx.execute("UPDATE loan_extensions SET state = ?, decided_at = ? WHERE loan_id = ? AND state = ?",
                       (WITHDRAWN, at, key, PENDING))
            tx.execute(f"INSERT INTO loan_extensions ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                       (key, n, loan.lender, loan.borrower, due_at, str(repayment), deadline, int(loan.due_at),
                        str(loan.repayment), lender_signature, PENDING, at, None, None))
            row = tx.one(f"SELECT {_COLUMNS} FROM loan_extensions WHERE loan_id = ? AND n = ?", (key, n))
        assert row is not None
        return _proposal(row)

    def get(self, loan_id: int, n: int) -> Proposal | None:
        with self._db.transaction() as tx:
            row = tx.one(f"SELECT {_COLUMNS} FROM loan_extensions WHERE loan_id = ? AND n = ?", (str(loan_id), n))
        return None if row is None else _proposal(row)

    def for_loan(self, loan_id: int) -> list[Proposal]:
        """The loan's proposals, newest first."""
        with self._db.transaction() as tx:
            rows = tx.all(f"SELECT {_COLUMNS} FROM loan_extensions WHERE loan_id = ? ORDER BY n DESC",
                          (str(loan_id),))
        return [_proposal(row) for row in rows]

    def decide(self, loan_id: int, n: int, state: str, *, was: str = PENDING, request_id: str | None = None,
               now: float | None = None) -> bool:
        """Move the proposal from ``was`` to ``state``: False when it was not in ``was`` (someone else
        decided first)."""
        at = time.time() if now is None else now
        with self._db.transaction() as tx:
            changed = tx.execute("UPDATE loan_extensions SET state = ?, decided_at = ?, request_id = ? "
                                 "WHERE loan_id = ? AND n = ? AND state = ?",
                                 (state, None if state == PENDING else at, request_id, str(loan_id), n, was))
        return changed == 1


# ---------------------------------------------------------------- services


@dataclass(frozen=True)
class ExtensionTerms:
    """What a lender offers: a later due date, and the new repayment or a yearly rate for the added time."""

    due_at: int
    deadline: int
    repayment: int | None = None
    yearly_rate_bps: int | None = None
    lender_signature: bytes | None = None


def repayment_with_rate(loan: LoanView, due_at: int, yearly_rate_bps: int) -> int:
    """The loan's repayment plus simple interest on its principal at ``yearly_rate_bps`` for the time the
    due date moves (rounded up to the stablecoin's smallest unit)."""
    added = max(due_at - int(loan.due_at), 0)
    return int(loan.repayment) + -(-int(loan.principal) * yearly_rate_bps * added // (BPS * YEAR))


def typed_data(chain: ChainService, loan_id: int, due_at: int, repayment: int, deadline: int) -> dict[str, Any]:
    """The ``LoanExtension`` both parties sign, in PledgeLending's domain."""
    return lending.lending_typed_data(chain, "LoanExtension",
                                      eip712.loan_extension_message(loan_id, due_at, repayment, deadline))


def _signed_by(chain: ChainService, who: str, data: dict[str, Any], signature: bytes) -> bool:
    """Whether ``signature`` of ``data`` is ``who``'s: ECDSA, or for a contract account its ERC-1271 answer."""
    try:
        signer = str(Account.recover_message(encode_typed_data(full_message=data), signature=signature))
    except Exception:  # not a 65-byte ECDSA signature: perhaps a contract wallet's
        signer = ""
    return signer.lower() == who.lower() or chain.erc1271_valid(who, eip712.digest(data), signature)


def _open_loan(chain: ChainService, loan_id: int) -> tuple[LoanView, int]:
    """The loan (:class:`NotFound` if it never existed) and the latest block's time."""
    snapshot = lending.loan_snapshot(chain, loan_id)
    assert snapshot.loan is not None
    return snapshot.loan, snapshot.block_timestamp


def propose(chain: ChainService, book: ExtensionBook, users: UserStore, user: User, loan_id: int,
            terms: ExtensionTerms) -> Proposal:
    """The lender's proposal of ``terms`` for open loan ``loan_id``, signed by the service for a custodial
    lender (or the given signature, checked). :class:`Forbidden` unless ``user`` is the loan's lender,
    :class:`Conflict` for a loan that is not open, :class:`InvalidRequest` (in words) for terms the contract
    would refuse: a due date not later than today's or the current one, a repayment below the current one,
    an expired deadline."""
    loan, now = _open_loan(chain, loan_id)
    if loan.lender.lower() != user.address.lower():
        raise Forbidden(f"loan {loan_id} is lent by {loan.lender}: only its lender may offer more time")
    if loan.state != LoanState.open:
        raise Conflict(f"loan {loan_id} is {loan.state.value}: only an open loan can be given more time")
    if (terms.repayment is None) == (terms.yearly_rate_bps is None):
        raise InvalidRequest("repayment, yearly_rate_bps: give exactly one of them")
    problems = []
    if terms.due_at <= now:
        problems.append(f"due_at: {terms.due_at} is not later than today (the latest block is at {now})")
    elif terms.due_at <= int(loan.due_at):
        problems.append(f"due_at: {terms.due_at} is not later than the loan's current due date {loan.due_at}")
    elif terms.due_at > MAX_DUE_AT:
        problems.append(f"due_at: at most {MAX_DUE_AT}")
    if terms.yearly_rate_bps is not None and not 0 <= terms.yearly_rate_bps <= MAX_YEARLY_RATE_BPS:
        problems.append(f"yearly_rate_bps: from 0 to {MAX_YEARLY_RATE_BPS} (1,000 % a year)")
    repayment = terms.repayment if terms.repayment is not None else repayment_with_rate(
        loan, terms.due_at, terms.yearly_rate_bps or 0)
    if repayment < int(loan.repayment):
        problems.append(f"repayment: {repayment} is below the loan's current repayment {loan.repayment}")
    elif repayment > MAX_REPAYMENT:
        problems.append("repayment: at most 2**128 - 1")
    if terms.deadline <= now:
        problems.append(f"deadline: {terms.deadline} has passed (the latest block is at {now})")
    elif terms.deadline > MAX_DUE_AT:
        problems.append(f"deadline: at most {MAX_DUE_AT}")
    if problems:
        raise InvalidRequest("; ".join(problems))
    data = typed_data(chain, loan_id, terms.due_at, repayment, terms.deadline)
    if terms.lender_signature is not None:
        if not _signed_by(chain, loan.lender, data, terms.lender_signature):
            raise InvalidRequest(f"lender_signature: not the lender {loan.lender}'s signature of this "
                                 "LoanExtension (typed data from GET /relay/typed-data/loan-extension)")
        signature = terms.lender_signature
    elif user.wallet:
        raise InvalidRequest("lender_signature: a wallet account signs the LoanExtension itself (typed data from "
                             "GET /relay/typed-data/loan-extension)")
    else:
        signature = users.sign_typed_data(user, data)
    return book.propose(loan, terms.due_at, repayment, terms.deadline, "0x" + signature.hex())


def _party(loan: LoanView, user: User) -> str | None:
    me = user.address.lower()
    return "lender" if loan.lender.lower() == me else "borrower" if loan.borrower.lower() == me else None


def for_loan(chain: ChainService, book: ExtensionBook, user: User, loan_id: int) -> tuple[LoanView, int,
                                                                                             list[Proposal]]:
    """The loan, the latest block's time and its proposals (newest first), for its lender or borrower only."""
    loan, now = _open_loan(chain, loan_id)
    if _party(loan, user) is None:
        raise Forbidden(f"loan {loan_id} is between {loan.lender} and {loan.borrower}: only they see its "
                        "extensions")
    return loan, now, book.for_loan(loan_id)


def _proposal_of(book: ExtensionBook, loan_id: int, n: int) -> Proposal:
    proposal = book.get(loan_id, n)
    if proposal is None:
        raise NotFound(f"loan {loan_id} has no extension proposal {n}")
    return proposal


def withdraw(chain: ChainService, book: ExtensionBook, user: User, loan_id: int, n: int) -> Proposal:
    """The lender takes back pending proposal ``n``: :class:`Forbidden` for anyone else, :class:`Conflict`
    once accepted. Withdrawing a withdrawn proposal returns it."""
    loan, _ = _open_loan(chain, loan_id)
    if loan.lender.lower() != user.address.lower():
        raise Forbidden(f"loan {loan_id} is lent by {loan.lender}: only its lender may withdraw its proposals")
    proposal = _proposal_of(book, loan_id, n)
    if proposal.state == ACCEPTED:
        raise Conflict(f"proposal {n} of loan {loan_id} was accepted by the borrower: it can no longer be withdrawn")
    book.decide(loan_id, n, WITHDRAWN)
    return _proposal_of(book, loan_id, n)


def accept(chain: ChainService, book: ExtensionBook, users: UserStore, relayer: Relayer, user: User,
           loan_id: int, n: int, origin: Origin, borrower_signature: bytes | None = None) -> tuple[Proposal, Any]:
    """The borrower accepts proposal ``n``: signed for a custodial borrower (or the wallet borrower's
    signature, checked) and relayed as ``extend_loan`` with the lender's signature. :class:`Forbidden` for
    anyone but the borrower; :class:`Conflict` for a proposal withdrawn, already accepted, expired, or made
    for terms the loan no longer has; the relayer's own refusals pass through. The proposal and the relay
    record."""
    loan, now = _open_loan(chain, loan_id)
    if loan.borrower.lower() != user.address.lower():  # before saying whether the proposal exists
        raise Forbidden(f"loan {loan_id} is borrowed by {loan.borrower}: only its borrower may accept more time")
    proposal = _proposal_of(book, loan_id, n)
    if proposal.state == WITHDRAWN:
        raise Conflict(f"proposal {n} of loan {loan_id} was withdrawn by the lender: nothing was sent")
    if proposal.state == ACCEPTED:
        raise Conflict(f"proposal {n} of loan {loan_id} is already accepted (request {proposal.request_id}): "
                       "nothing more was sent")
    if loan.state != LoanState.open:
        raise Conflict(f"loan {loan_id} is {loan.state.value}: only an open loan can be given more time")
    if proposal.deadline <= now:
        raise Conflict(f"proposal {n} of loan {loan_id} expired at {proposal.deadline}: ask the lender for a new one")
    if (int(loan.due_at), int(loan.repayment)) != (proposal.previous_due_at, proposal.previous_repayment):
        raise Conflict(f"loan {loan_id} changed since proposal {n} was made (due at {loan.due_at}, repayment "
                       f"{loan.repayment}): nothing was sent")
    data = typed_data(chain, loan_id, proposal.due_at, proposal.repayment, proposal.deadline)
    if borrower_signature is not None:
        if not _signed_by(chain, loan.borrower, data, borrower_signature):
            raise InvalidRequest(f"borrower_signature: not the borrower {loan.borrower}'s signature of this "
                                 "LoanExtension (typed data from GET /relay/typed-data/loan-extension)")
        signature = borrower_signature
    elif user.wallet:
        raise InvalidRequest("borrower_signature: a wallet account signs the LoanExtension itself (typed data "
                             "from GET /relay/typed-data/loan-extension)")
    else:
        signature = users.sign_typed_data(user, data)
    if not book.decide(loan_id, n, ACCEPTED):  # another acceptance (or the withdrawal) came first
        raise Conflict(f"proposal {n} of loan {loan_id} was decided meanwhile: nothing more was sent")
    request = LoanExtensionRelayRequest.model_validate({
        "loan_id": loan_id, "due_at": proposal.due_at, "repayment": proposal.repayment,
        "deadline": proposal.deadline, "lender_signature": proposal.lender_signature,
        "borrower_signature": "0x" + signature.hex()})
    try:
        record = relayer.relay_loan_extension(request, origin)
    except Exception:
        book.decide(loan_id, n, PENDING, was=ACCEPTED)  # nothing was sent: the borrower may try again
        raise
    book.decide(loan_id, n, ACCEPTED, was=ACCEPTED, request_id=record.request_id)
    return _proposal_of(book, loan_id, n), record


def pending(book: ExtensionBook, loan: LoanView | None, now: int) -> Proposal | None:
    """The open loan's proposal a borrower can accept now (not expired, made for the loan's present terms),
    or None."""
    if loan is None or loan.state != LoanState.open:
        return None
    for proposal in book.for_loan(int(loan.loan_id)):
        if proposal.shown_state(now) == PENDING and (proposal.previous_due_at, proposal.previous_repayment) == (
                int(loan.due_at), int(loan.repayment)):
            return proposal
    return None
