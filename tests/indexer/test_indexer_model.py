"""The indexer's read models against a model built from the same actions.

A hypothesis state machine acts on the test chain (a lot of its own, the shared
lending and points contracts): certificate transfers, gifts (created, claimed,
revoked), redemptions (requested, confirmed, rejected), flags (raised,
cleared), loans (started, repaid, foreclosed after a jump in time past their end) and points
(issued to holders, paid to merchants, redeemed by merchants). Only actions the
contracts accept are drawn: what is under test is the index, not the contracts.

After each history a fresh :class:`indexer.follower.Indexer` on a fresh
in-memory database follows the chain to its head (a small reorg window, so the
history goes through both the catch-up pages and the block-by-block path) and
the read models must equal the test's model: ``ix_tokens`` (holder, state) for
exactly the bottles that moved or changed state, ``ix_loans`` (state, lender,
borrower, certificate) and ``ix_merchants`` (the points totals, counted from
what they were before the history).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import pytest
from determinism import forget_cached_constants, without_local_constants
from eth_account import Account
from fastchain import FastChain
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, rule, run_state_machine_as_test

from amphora import eip712
from indexer.follower import IndexConfig, Indexer
from indexer.node import Node
from storage.db import Database

SCALE = 10**12
USD = 10**6
PRINCIPAL, REPAYMENT = 100 * USD, 105 * USD
#: Loans last DURATION seconds without grace; WARP moves time past every open loan's end.
DURATION, WARP = 3_000, 4_000
FAR = 2**40
BOTTLES = 12
#: Bottles sold to the holders before the histories start (the rest stay with the issuer).
SOLD = 8
EXAMPLES = 50
STEPS_PER_EXAMPLE = 50
#: Each of these must happen this often over the run, or the test proves little.
MIN_EACH = 5
KINDS = ("transfer", "gift", "claim", "revoke", "request", "confirm", "reject", "flag", "clear", "borrow",
         "repay", "foreclose", "issue points", "pay points", "redeem points")


@dataclass
class Loan:
    loan_id: int
    token: int
    lender: str
    borrower: str
    state: str = "active"
    overdue: bool = False


@dataclass
class Model:
    owner: dict[int, str | None]
    state: dict[int, str] = field(default_factory=dict)
    touched: set[int] = field(default_factory=set)
    gifts: dict[int, Any] = field(default_factory=dict)  # token -> claim key account
    loans: dict[int, Loan] = field(default_factory=dict)  # by loan id
    loan_count: Counter[int] = field(default_factory=Counter)  # loans ever started per token
    points: dict[str, int] = field(default_factory=dict)
    merchants: dict[str, dict[str, int]] = field(default_factory=dict)


def merchant_totals(db: Database, chain_id: int, merchants: list[str]) -> dict[str, dict[str, int]]:
    columns = ("points_issued", "points_redeemed", "points_accepted", "stablecoin_paid_in", "stablecoin_paid_out")
    out = {}
    with db.read() as tx:
        for merchant in merchants:
            row = tx.one("SELECT * FROM ix_merchants WHERE chain_id = ? AND merchant = ?", (chain_id, merchant))
            out[merchant] = {c: int(row[c]) if row else 0 for c in columns}
    return out


def index_chain(uri: str, manifest: Any) -> tuple[Database, Indexer]:
    """A fresh follower on a fresh in-memory database, synced to the head."""
    db = Database()
    indexer = Indexer(db, Node(uri), manifest, IndexConfig(reorg_window=8, lease_seconds=600))
    indexer.run_until_synced(timeout=120)
    return db, indexer


def make_machine(fast: FastChain, uri: str, manifest: Any, cert: Any, lending: Any, points: Any, stable: Any,
                 tokens: list[int], lot_id: int, issuer: str, custodian: str, holders: list[str], lender: str,
                 merchants: list[str], keys: dict[str, str], chain_id: int, baseline: dict[str, dict[str, int]],
                 done: Counter[str]) -> type[RuleBasedStateMachine]:
    c = fast.contract(cert.address, cert)
    lend = fast.contract(lending.address, lending)
    pts = fast.contract(points.address, points)
    people = [issuer, *holders, lender]

    class IndexMachine(RuleBasedStateMachine):
        def __init__(self) -> None:
            super().__init__()
            self.snapshot = fast.snapshot()
            self.m = Model(owner={t: issuer for t in tokens})
            for i, token in enumerate(tokens[:SOLD]):
                self.set_token(token, holders[i % len(holders)], "active")
            self.m.points = dict(zip(holders + merchants, fast.reads([(pts, "balanceOf", (a,))
                                                                       for a in holders + merchants]), strict=True))
            self.m.merchants = {m: dict(totals) for m, totals in baseline.items()}
            self.nonce = 1_000  # the lender's offer nonces (fresh in every example: the chain is reverted)

        def teardown(self) -> None:
            try:
                self.check_index()
            finally:
                fast.revert(self.snapshot)

        # ---- helpers -------------------------------------------------------
        def send(self, call: Any, sender: str | None, kind: str) -> None:
            assert sender is not None, "the model picked a burned certificate's holder"
            fast.send(call, sender, True)
            done[kind] += 1

        def pick(self, data: st.DataObject, state: str = "active", owners: list[str] | None = None) -> int | None:
            ready = [t for t in tokens if self.m.state.get(t, "active") == state
                     and self.m.owner[t] is not None and (owners is None or self.m.owner[t] in owners)]
            return data.draw(st.sampled_from(ready), label="token") if ready else None

        def set_token(self, token: int, owner: str | None, state: str) -> None:
            self.m.owner[token], self.m.state[token] = owner, state
            self.m.touched.add(token)

        # ---- certificates --------------------------------------------------
        @rule(data=st.data(), to=st.sampled_from(people))
        def transfer(self, data: st.DataObject, to: str) -> None:
            token = self.pick(data)
            if token is None or self.m.owner[token] == to:
                return
            owner = self.m.owner[token]
            self.send(c.functions.transferFrom(owner, to, token), owner, "transfer")
            self.set_token(token, to, "active")

        @rule(data=st.data())
        def gift(self, data: st.DataObject) -> None:
            token = self.pick(data)
            if token is None:
                return
            key = Account.create()
            self.send(c.functions.create_gift(token, key.address, FAR), self.m.owner[token], "gift")
            self.m.gifts[token] = key
            self.set_token(token, self.m.owner[token], "gift_pending")

        @rule(data=st.data(), recipient=st.sampled_from(holders + [lender]), claim=st.booleans())
        def end_gift(self, data: st.DataObject, recipient: str, claim: bool) -> None:
            token = self.pick(data, "gift_pending")
            if token is None:
                return
            owner = self.m.owner[token]
            if claim and recipient != owner:
                signature = eip712.sign_gift_claim(self.m.gifts[token].key, token, recipient, chain_id, cert.address)
                self.send(c.functions.claim_gift(token, recipient, signature), recipient, "claim")
                self.set_token(token, recipient, "active")
            else:
                self.send(c.functions.revoke_gift(token), owner, "revoke")
                self.set_token(token, owner, "active")

        @rule(data=st.data())
        def request_redemption(self, data: st.DataObject) -> None:
            token = self.pick(data)
            if token is None:
                return
            self.send(c.functions.request_redemption(token, b"\x05" * 32), self.m.owner[token], "request")
            self.set_token(token, self.m.owner[token], "redemption_requested")

        @rule(data=st.data(), confirm=st.sampled_from([True, False, False]))
        def answer_redemption(self, data: st.DataObject, confirm: bool) -> None:
            token = self.pick(data, "redemption_requested")
            if token is None:
                return
            if confirm:
                self.send(c.functions.confirm_redemption(token), custodian, "confirm")
                self.set_token(token, None, "redeemed")
            else:
                self.send(c.functions.reject_redemption(token, b"\x06" * 32), custodian, "reject")
                self.set_token(token, self.m.owner[token], "active")

        @rule(data=st.data())
        def flag(self, data: st.DataObject) -> None:
            token = self.pick(data)
            if token is None:
                return
            self.send(c.functions.flag(token, b"\x07" * 32), self.m.owner[token], "flag")
            self.set_token(token, self.m.owner[token], "flagged")

        @rule(data=st.data())
        def clear_flag(self, data: st.DataObject) -> None:
            token = self.pick(data, "flagged")
            if token is None:
                return
            self.send(c.functions.clear_flag(token), issuer, "clear")
            self.set_token(token, self.m.owner[token], "active")

        # ---- loans ---------------------------------------------------------
        @rule(data=st.data())
        def borrow(self, data: st.DataObject) -> None:
            token = self.pick(data, owners=holders)
            if token is None:
                return
            borrower = self.m.owner[token]
            assert borrower is not None
            self.nonce += 1
            message = eip712.loan_offer_message(lender, stable.address, lot_id, token, PRINCIPAL, REPAYMENT,
                                                DURATION, 0, 0, FAR, self.nonce)
            signature = eip712.sign(eip712.lending_typed_data("LoanOffer", message, chain_id, lending.address),
                                    keys[lender])
            self.send(lend.functions.accept_offer(eip712.loan_offer_args(message), signature, token), borrower,
                      "borrow")
            self.m.loan_count[token] += 1
            loan_id = self.m.loan_count[token] << 96 | token
            assert lend.functions.loan_id_of(token).call() == loan_id
            self.m.loans[loan_id] = Loan(loan_id, token, lender, borrower)
            self.set_token(token, borrower, "pledged")

        def open_loan(self, data: st.DataObject, overdue: bool) -> Loan | None:
            ready = [loan for loan in self.m.loans.values() if loan.state == "active" and loan.overdue == overdue]
            return data.draw(st.sampled_from(ready), label="loan") if ready else None

        @rule(data=st.data())
        def repay(self, data: st.DataObject) -> None:
            loan = self.open_loan(data, overdue=False)
            if loan is None:
                return
            self.send(lend.functions.repay(loan.loan_id), loan.borrower, "repay")
            loan.state = "repaid"
            self.set_token(loan.token, loan.borrower, "active")

        @rule(data=st.data())
        def foreclose(self, data: st.DataObject) -> None:
            """The lender takes the certificate of an open loan, time first moved past its end if need be."""
            ready = [loan for loan in self.m.loans.values() if loan.state == "active"]
            if not ready:
                return
            loan = data.draw(st.sampled_from(ready), label="loan")
            if not loan.overdue:
                fast.w3.provider.make_request("evm_increaseTime", [WARP])
                fast.w3.provider.make_request("evm_mine", [])
                done["warp"] += 1
                for other in self.m.loans.values():
                    other.overdue = True
            self.send(lend.functions.foreclose(loan.loan_id), loan.lender, "foreclose")
            loan.state = "foreclosed"
            self.set_token(loan.token, loan.lender, "active")

        # ---- points --------------------------------------------------------
        @rule(merchant=st.sampled_from(merchants), customer=st.sampled_from(holders),
              amount=st.integers(1, 50 * USD))
        def issue_points(self, merchant: str, customer: str, amount: int) -> None:
            self.send(pts.functions.issue(customer, amount), merchant, "issue points")
            self.m.points[customer] += amount * SCALE
            totals = self.m.merchants[merchant]
            totals["points_issued"] += amount * SCALE
            totals["stablecoin_paid_in"] += amount

        @rule(customer=st.sampled_from(holders), merchant=st.sampled_from(merchants), data=st.data())
        def pay_points(self, customer: str, merchant: str, data: st.DataObject) -> None:
            if not self.m.points[customer]:
                return
            value = data.draw(st.integers(1, self.m.points[customer]), label="value")
            self.send(pts.functions.transfer(merchant, value), customer, "pay points")
            self.m.points[customer] -= value
            self.m.points[merchant] += value
            self.m.merchants[merchant]["points_accepted"] += value

        @rule(merchant=st.sampled_from(merchants), data=st.data())
        def redeem_points(self, merchant: str, data: st.DataObject) -> None:
            units = self.m.points[merchant] // SCALE
            if not units:
                return
            payout = data.draw(st.integers(1, units), label="payout")
            self.send(pts.functions.redeem(payout * SCALE + data.draw(st.integers(0, SCALE - 1), label="dust")),
                      merchant, "redeem points")
            self.m.points[merchant] -= payout * SCALE
            totals = self.m.merchants[merchant]
            totals["points_redeemed"] += payout * SCALE
            totals["stablecoin_paid_out"] += payout

        # ---- the index -----------------------------------------------------
        def check_index(self) -> None:
            db, indexer = index_chain(uri, manifest)
            try:
                with db.read() as tx:
                    rows = tx.all("SELECT token_id, owner, state FROM ix_tokens WHERE chain_id = ? AND lot_id = ?",
                                  (chain_id, lot_id))
                    loans = tx.all("SELECT loan_id, token_id, lender, borrower, state FROM ix_loans "
                                   "WHERE chain_id = ?", (chain_id,))
                indexed = {int(r["token_id"]): (r["owner"], r["state"]) for r in rows}
                expected = {t: (self.m.owner[t], self.m.state.get(t, "active")) for t in self.m.touched}
                assert indexed == expected, "ix_tokens differs from the model"
                ours = {int(r["loan_id"]): (int(r["token_id"]), r["lender"], r["borrower"], r["state"])
                        for r in loans if int(r["token_id"]) >> 32 == lot_id}
                assert ours == {i: (lo.token, lo.lender, lo.borrower, lo.state) for i, lo in self.m.loans.items()}, (
                    "ix_loans differs from the model")
                assert merchant_totals(db, chain_id, merchants) == self.m.merchants, "ix_merchants differs"
                done["indexed histories"] += 1
            finally:
                indexer.release_lease()
                db.close()

    return IndexMachine


@pytest.mark.slow
def test_index__random_histories__read_models_equal_the_model(
    chain, project, manifest, cert, create_lot, admin, winery, custodian, holder, recipient, borrower, customer,
    lender, merchant, other_merchant, minter, monkeypatch
):
    lending = project.PledgeLending.at(manifest.address("PledgeLending"))
    points = project.PointsToken.at(manifest.address("PointsToken"))
    stable = project.ReferenceStablecoin.at(manifest.address("Stablecoin"))
    holders = [holder.address, recipient.address, borrower.address, customer.address]
    merchants = [merchant.address, other_merchant.address]
    stable.configureMinter(minter, 10**18, sender=admin)
    for account in (holder, recipient, borrower, customer, lender):
        stable.mint(account, 10**6 * USD, sender=minter)
        stable.approve(lending, 2**256 - 1, sender=account)
    for account in (merchant, other_merchant):
        stable.mint(account, 10**6 * USD, sender=minter)
        stable.approve(points, 2**256 - 1, sender=account)
        if not points.merchants(account).active:
            points.register_merchant(account, "Index Bar", 10**40, sender=admin)
    # Points in every hand from the start, so payments and redemptions can happen at once.
    for account in (holder, recipient, borrower, customer, other_merchant):
        points.issue(account, 100 * USD, sender=merchant)
    points.issue(merchant, 100 * USD, sender=other_merchant)
    lot = create_lot(BOTTLES)
    tokens = [lot.token(serial) for serial in range(1, BOTTLES + 1)]
    holder_accounts = (holder, recipient, borrower, customer)
    for i, token in enumerate(tokens[:SOLD]):
        cert.transferFrom(winery, holder_accounts[i % len(holder_accounts)], token, sender=winery)
    uri = chain.provider.uri
    db, indexer = index_chain(uri, manifest)
    baseline = merchant_totals(db, chain.chain_id, merchants)
    indexer.release_lease()
    db.close()
    keys = {lender.address: lender.private_key}
    done: Counter[str] = Counter()
    fast = FastChain(uri)
    machine = make_machine(fast, uri, manifest, cert, lending, points, stable, tokens, lot.lot_id, winery.address,
                           custodian.address, holders, lender.address, merchants, keys, chain.chain_id, baseline,
                           done)
    without_local_constants(monkeypatch)  # the same steps whatever tests ran before
    run_state_machine_as_test(machine, settings=settings(
        max_examples=EXAMPLES, stateful_step_count=STEPS_PER_EXAMPLE, deadline=None, database=None,
        derandomize=True, suppress_health_check=list(HealthCheck),
    ))
    forget_cached_constants()
    print(f"index model: {fast.steps} steps; {dict(sorted(done.items()))}")
    assert done["indexed histories"] >= EXAMPLES
    rare = {kind: done[kind] for kind in KINDS if done[kind] < MIN_EACH}
    assert not rare, f"too few of these actions to say much: {rare}"
