"""A hypothesis state machine over PledgeLending and the certificate together:
signed offers (single-bottle and lot-wide, with and without a loan-to-value
limit, fresh, reused, cancelled and expired nonces), acceptances direct and
relayed, repayments by the borrower or a stranger, foreclosures (early, late,
by the wrong party), appraisals, cancellations, flags, transfer attempts, time
jumps and shutdown, checked against a Python model.

After every step: stablecoin is conserved between lenders and borrowers and
the lending contract holds none; every certificate's owner and state match the
model; every pledged certificate has exactly one open loan, with the model's
terms, and no other certificate has one; every credit record matches the model.

Time moves only by the ``warp`` rule (four thousand seconds). Loan durations,
grace periods and appraisal ages are odd multiples of a thousand seconds away
from any instant the machine acts at, so the model never has to guess which
side of a boundary the chain is on (the boundaries themselves are tested in
``test_lending.py``).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

import pytest
from determinism import forget_cached_constants, without_local_constants
from fastchain import FastChain, as_address
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule, run_state_machine_as_test

from amphora import eip712

ACTIVE, PLEDGED, FLAGGED = 0, 2, 5
STATE_NAMES = {ACTIVE: "active", PLEDGED: "pledged", FLAGGED: "flagged"}
LOAN_OPEN = 1
USD = 10**6
WARP = 4_000
DURATIONS = (3_000, 7_000)
GRACES = (0, 2_000)
APPRAISAL_OFFSETS = (0, 1_000)
MAX_AGE = 5_500
PRINCIPALS = (500 * USD, 1_000 * USD)
VALUES = (1_000 * USD, 3_000 * USD)
LTVS = (0, 0, 5_000)
FAR = 2**40
REASON = b"\x0b" * 32
PAUSED = "pausable: contract is paused"
STEPS_PER_EXAMPLE = 50
EXAMPLES = 70
MIN_STEPS = 2_000


@dataclass
class Loan:
    lender: str
    borrower: str
    principal: int
    repayment: int
    due: int
    grace_end: int
    seq: int


@dataclass
class Model:
    owner: dict[int, str]
    balance: dict[str, int]
    state: dict[int, int] = field(default_factory=dict)
    loans: dict[int, Loan] = field(default_factory=dict)  # open loans by token
    seq: dict[int, int] = field(default_factory=dict)
    used: set[tuple[str, int]] = field(default_factory=set)
    floor: dict[str, int] = field(default_factory=dict)
    next_nonce: dict[str, int] = field(default_factory=dict)
    appraisal: dict[int, tuple[int, int]] = field(default_factory=dict)  # lot -> (value, at)
    credit: dict[str, list[int]] = field(default_factory=dict)  # taken, on time, late, defaulted, borrowed, repaid
    paused: bool = False
    now: int = 0


def make_machine(fast: FastChain, cert, lending, stable, tokens, lots, issuer, lenders, borrowers, strangers,
                 keys, admin, appraiser, chain_id, done: Counter):
    c = fast.contract(cert.address, cert)
    lend = fast.contract(lending.address, lending)
    coin = fast.contract(stable.address, stable)
    people = lenders + borrowers + strangers

    def words(calls):
        """Batched eth_calls answered as lists of 32-byte words (ints)."""
        requests = [("eth_call", [{"to": k.address, "data": getattr(k.functions, fn)(*args)._encode_transaction_data()},
                                  "latest"]) for k, fn, args in calls]
        out = []
        for r in fast.w3.provider.make_batch_request(requests):
            raw = bytes.fromhex(r["result"][2:])
            out.append([int.from_bytes(raw[i:i + 32], "big") for i in range(0, len(raw), 32)])
        return out

    class LendingMachine(RuleBasedStateMachine):
        def __init__(self):
            super().__init__()
            self.snapshot = fast.snapshot()
            fast.w3.provider.make_request("evm_mine", [])
            reads = fast.reads([(c, "ownerOf", (t,)) for t in tokens] + [(coin, "balanceOf", (a,)) for a in people])
            n = len(tokens)
            by_lower = {a.lower(): a for a in people + [issuer]}
            self.m = Model(owner={t: by_lower[as_address(v)] for t, v in zip(tokens, reads[:n], strict=True)},
                           balance=dict(zip(people, reads[n:], strict=True)))
            self.m.now = fast.w3.eth.get_block("latest")["timestamp"]
            self.m.credit = {a: [0] * 6 for a in people}
            self.m.floor = {a: 0 for a in lenders}
            self.m.next_nonce = {a: 0 for a in lenders}

        def teardown(self):
            fast.revert(self.snapshot)

        def send(self, call, sender, reason):
            if reason is not None:
                done[f"refused: {reason}"] += 1
            fast.send(call, sender, reason is None, reason)

        def state_of(self, token):
            return self.m.state.get(token, ACTIVE)

        def sign(self, primary_type, message, signer):
            return eip712.sign(eip712.lending_typed_data(primary_type, message, chain_id, lending.address),
                               keys[signer])

        # ---- rules ---------------------------------------------------------
        @rule(data=st.data(), lot_wide=st.booleans(), relayed=st.booleans(),
              nonce_kind=st.sampled_from(["fresh"] * 6 + ["used", "below floor"]),
              expired=st.sampled_from([False] * 7 + [True]), forged=st.sampled_from([False] * 9 + [True]),
              duration=st.sampled_from(DURATIONS), grace=st.sampled_from(GRACES),
              principal=st.sampled_from(PRINCIPALS), ltv=st.sampled_from(LTVS))
        def accept(self, data, lot_wide, relayed, nonce_kind, expired, forged, duration, grace, principal, ltv):
            ready = [t for t in tokens if self.state_of(t) == ACTIVE and self.m.owner[t] in borrowers]
            if ready and data.draw(st.integers(0, 4), label="prefer") != 0:
                token = data.draw(st.sampled_from(ready), label="token")
            else:
                token = data.draw(st.sampled_from(tokens), label="token")
            lot = token >> 32
            lender = data.draw(st.sampled_from(lenders), label="lender")
            owner = self.m.owner[token]
            borrower = owner if data.draw(st.integers(0, 5), label="right borrower") else data.draw(
                st.sampled_from(borrowers), label="borrower")
            if nonce_kind == "used" and any(lo == lender for lo, _ in self.m.used):
                nonce = data.draw(st.sampled_from(sorted(n for lo, n in self.m.used if lo == lender)), label="nonce")
            elif nonce_kind == "below floor" and self.m.floor[lender] > 0:
                nonce = self.m.floor[lender] - 1
            else:
                nonce = max(self.m.next_nonce[lender], self.m.floor[lender])
            repayment = principal + principal // 20
            expiry = self.m.now - 5_000 if expired else self.m.now + 5_000
            message = eip712.loan_offer_message(lender, stable.address, lot, 0 if lot_wide else token, principal,
                                                repayment, duration, grace, ltv, expiry, nonce)
            signature = self.sign("LoanOffer", message, strangers[0] if forged else lender)
            value, at = self.m.appraisal.get(lot, (0, 0))
            state = self.state_of(token)
            if self.m.paused:
                reason = PAUSED
            elif expired:
                reason = "lending: offer expired"
            elif borrower == lender:
                reason = "lending: borrower is the lender"
            elif ltv and value == 0:
                reason = "lending: lot has no appraisal"
            elif ltv and self.m.now - at > MAX_AGE:
                reason = "lending: appraisal is stale"
            elif ltv and principal * 10_000 > ltv * value:
                reason = "lending: loan-to-value above the offer's limit"
            elif nonce < self.m.floor[lender]:
                reason = "lending: offer cancelled"
            elif (lender, nonce) in self.m.used:
                reason = "lending: offer used or cancelled"
            elif forged:
                reason = "lending: invalid lender signature"
            elif owner != borrower:
                reason = "certificate: borrower is not the holder"
            elif state != ACTIVE:
                reason = f"certificate: token is {STATE_NAMES[state]}"
            elif self.m.balance[lender] < principal:
                reason = "erc20: transfer amount exceeds balance"
            else:
                reason = None
            args = eip712.loan_offer_args(message)
            if relayed:
                offer_hash = eip712.digest(eip712.lending_typed_data("LoanOffer", message, chain_id, lending.address))
                acceptance = self.sign("AcceptOffer", eip712.accept_offer_message(offer_hash, token, borrower, FAR),
                                       borrower)
                call = lend.functions.accept_offer_with_signature(args, signature, token, borrower, FAR, acceptance)
                self.send(call, strangers[-1], reason)
            else:
                self.send(lend.functions.accept_offer(args, signature, token), borrower, reason)
            if reason is None:
                done["accept"] += 1
                done["accept relayed"] += relayed
                done["accept lot-wide"] += lot_wide
                done["accept with ltv"] += bool(ltv)
                start = fast.w3.eth.get_block("latest")["timestamp"]
                seq = self.m.seq.get(token, 0) + 1
                self.m.seq[token] = seq
                self.m.loans[token] = Loan(lender, borrower, principal, repayment, start + duration,
                                           start + duration + grace, seq)
                self.m.used.add((lender, nonce))
                self.m.next_nonce[lender] = max(self.m.next_nonce[lender], nonce + 1)
                self.m.state[token] = PLEDGED
                self.m.balance[lender] -= principal
                self.m.balance[borrower] += principal
                record = self.m.credit[borrower]
                record[0] += 1
                record[4] += principal

        def pick_loan(self, data):
            """An open loan usually, else any token (whose loan may be closed or missing)."""
            open_tokens = sorted(self.m.loans)
            if open_tokens and data.draw(st.integers(0, 5), label="open") != 0:
                token = data.draw(st.sampled_from(open_tokens), label="loan token")
            else:
                token = data.draw(st.sampled_from(tokens), label="token")
            return token, (max(self.m.seq.get(token, 0), 1) << 96) | token

        @rule(data=st.data())
        def repay(self, data):
            token, loan_id = self.pick_loan(data)
            loan = self.m.loans.get(token)
            payer = data.draw(st.sampled_from([loan.borrower] * 3 + strangers if loan else people), label="payer")
            if loan is None:
                reason = "lending: loan is not open"
            elif self.m.now > loan.grace_end:
                reason = "lending: loan is past its grace period"
            elif self.m.balance[payer] < loan.repayment:
                reason = "erc20: transfer amount exceeds balance"
            else:
                reason = None
            self.send(lend.functions.repay(loan_id), payer, reason)
            if reason is None:
                done["repay"] += 1
                late = self.m.now > loan.due
                done["repay late" if late else "repay on time"] += 1
                done["repay by a stranger"] += payer != loan.borrower
                self.m.balance[payer] -= loan.repayment
                self.m.balance[loan.lender] += loan.repayment
                record = self.m.credit[loan.borrower]
                record[2 if late else 1] += 1
                record[5] += loan.principal
                self.m.state[token] = ACTIVE
                del self.m.loans[token]

        @rule(data=st.data())
        def foreclose(self, data):
            token, loan_id = self.pick_loan(data)
            loan = self.m.loans.get(token)
            caller = data.draw(st.sampled_from([loan.lender] * 5 + borrowers if loan else people), label="caller")
            if loan is None:
                reason = "lending: loan is not open"
            elif caller != loan.lender:
                reason = "lending: caller is not the lender"
            elif self.m.now <= loan.grace_end:
                reason = "lending: grace period has not ended"
            else:
                reason = None
            self.send(lend.functions.foreclose(loan_id), caller, reason)
            if reason is None:
                done["foreclose"] += 1
                self.m.credit[loan.borrower][3] += 1
                self.m.state[token] = ACTIVE
                self.m.owner[token] = loan.lender
                del self.m.loans[token]

        @rule(lot=st.sampled_from(lots), value=st.sampled_from(VALUES), offset=st.sampled_from(APPRAISAL_OFFSETS),
              by_appraiser=st.sampled_from([True] * 5 + [False]))
        def appraise(self, lot, value, offset, by_appraiser):
            at = self.m.now - offset
            if not by_appraiser:
                reason = "lending: caller is not an appraiser"
            elif at <= self.m.appraisal.get(lot, (0, 0))[1]:
                reason = "lending: appraisal older than the lot's latest"
            else:
                reason = None
            self.send(lend.functions.post_appraisal(lot, value, at), appraiser if by_appraiser else lenders[0], reason)
            if reason is None:
                done["appraise"] += 1
                self.m.appraisal[lot] = (value, at)

        @rule(lender=st.sampled_from(lenders), below=st.booleans())
        def cancel(self, lender, below):
            nonce = self.m.next_nonce[lender]
            if below:
                target = max(self.m.floor[lender], nonce) + 1
                self.send(lend.functions.cancel_offers_below(target), lender, None)
                self.m.floor[lender] = target
            else:
                self.send(lend.functions.cancel_offer(nonce), lender, None)
                self.m.used.add((lender, nonce))
            self.m.next_nonce[lender] = nonce + 1
            done["cancel"] += 1

        @rule(token=st.sampled_from(tokens), flag=st.sampled_from([True, False, False]))
        def flag_or_clear(self, token, flag):
            state = self.state_of(token)
            if flag:
                reason = None if state == ACTIVE else f"certificate: token is {STATE_NAMES[state]}"
                self.send(c.functions.flag(token, REASON), self.m.owner[token], reason)
            else:
                reason = None if state == FLAGGED else f"certificate: token is {STATE_NAMES[state]}"
                self.send(c.functions.clear_flag(token), issuer, reason)
            if reason is None:
                done["flag" if flag else "clear flag"] += 1
                self.m.state[token] = FLAGGED if flag else ACTIVE

        @rule(token=st.sampled_from(tokens), to=st.sampled_from(borrowers))
        def transfer(self, token, to):
            state = self.state_of(token)
            reason = None if state == ACTIVE else f"certificate: token is {STATE_NAMES[state]}"
            owner = self.m.owner[token]
            self.send(c.functions.transferFrom(owner, to, token), owner, reason)
            if reason is None:
                done["transfer"] += 1
                self.m.owner[token] = to

        @rule()
        def warp(self):
            fast.w3.provider.make_request("evm_increaseTime", [WARP])
            fast.w3.provider.make_request("evm_mine", [])
            self.m.now = fast.w3.eth.get_block("latest")["timestamp"]

        @rule(pause=st.sampled_from([True, False, False]))
        def shutdown(self, pause):
            if pause == self.m.paused:
                reason = PAUSED if pause else "pausable: contract is not paused"
            else:
                reason = None
            self.send(lend.functions.pause() if pause else lend.functions.unpause(), admin, reason)
            if reason is None:
                done["shutdown" if pause else "reopen"] += 1
                self.m.paused = pause

        # ---- invariants ----------------------------------------------------
        @invariant()
        def chain_matches_model(self):
            calls = [(coin, "balanceOf", (a,)) for a in people] + [(coin, "balanceOf", (lending.address,))]
            calls += [(c, "state_of", (t,)) for t in tokens] + [(c, "ownerOf", (t,)) for t in tokens]
            calls += [(lend, "collateral", (t,)) for t in tokens]
            calls += [(lend, "credit_record", (a,)) for a in people]
            out = iter(words(calls))
            total = 0
            for a in people:
                value = next(out)[0]
                assert value == self.m.balance[a], f"stablecoin balance of {a}"
                total += value
            assert total == sum(self.m.balance.values())
            assert next(out)[0] == 0, "the lending contract holds no stablecoin"
            for t in tokens:
                assert next(out)[0] == self.state_of(t), f"state of {t}"
            for t in tokens:
                assert as_address(next(out)[0]) == self.m.owner[t].lower(), f"owner of {t}"
            for t in tokens:
                w = next(out)
                # Collateral: loan (12 words: id, token, lot, state, lender, borrower, principal, repayment,
                # started, due, grace, grace end), then seconds to due and grace end, certificate state...
                loan_state, certificate_state = w[3], w[15]
                assert certificate_state == self.state_of(t)
                model = self.m.loans.get(t)
                if model is None:
                    assert loan_state != LOAN_OPEN, f"{t} has an open loan the model does not"
                    assert certificate_state != PLEDGED
                    continue
                assert certificate_state == PLEDGED and loan_state == LOAN_OPEN, f"{t} pledged with one open loan"
                assert w[0] == (model.seq << 96) | t
                assert (as_address(w[4]), as_address(w[5])) == (model.lender.lower(), model.borrower.lower())
                assert (w[6], w[7], w[9], w[11]) == (model.principal, model.repayment, model.due, model.grace_end)
            for a in people:
                w = next(out)
                m = self.m.credit[a]
                assert w[:4] == m[:4], f"credit counts of {a}"
                assert w[4] == m[0] - m[1] - m[2] - m[3], f"open loans of {a}"
                assert w[5:7] == m[4:6], f"principal borrowed and repaid of {a}"

    return LendingMachine


@pytest.mark.slow
def test_lending_state_machine__conserves_stablecoin_and_matches_model(
    chain, project, cert, accounts, manifest, admin, winery, holder, attacker, relayer, lender, borrower,
    appraiser, minter, create_lot, monkeypatch
):
    from amphora.deploy import grant_appraiser

    lending = project.PledgeLending.at(manifest.address("PledgeLending"))
    stable = project.ReferenceStablecoin.at(manifest.address("Stablecoin"))
    other_lender = accounts[18]
    lenders = [lender.address, other_lender.address]
    borrowers = [borrower.address, holder.address]
    strangers = [attacker.address, relayer.address]
    stable.configureMinter(minter, 10**15, sender=admin)
    for account, amount in ((lender, 4_000), (other_lender, 2_500), (borrower, 300), (holder, 300), (attacker, 2_000),
                            (relayer, 0)):
        if amount:
            stable.mint(account, amount * USD, sender=minter)
        stable.approve(lending, 2**256 - 1, sender=account)
    grant_appraiser(manifest, admin, appraiser.address, "Machine Appraiser")
    lending.set_max_appraisal_age(MAX_AGE, sender=admin)
    lot_a, lot_b = create_lot(3), create_lot(2)
    tokens = [lot_a.token(s) for s in (1, 2, 3)] + [lot_b.token(s) for s in (1, 2)]
    for i, t in enumerate(tokens):
        cert.transferFrom(winery, (borrower, holder)[i % 2], t, sender=winery)
    people = [lender, other_lender, borrower, holder, attacker, relayer]
    keys = {p.address: p.private_key for p in people}
    fast = FastChain(chain.provider.uri)
    done: Counter = Counter()
    machine = make_machine(fast, cert, lending, stable, tokens, [lot_a.lot_id, lot_b.lot_id], winery.address, lenders,
                           borrowers, strangers, keys, admin.address, appraiser.address, chain.chain_id, done)
    without_local_constants(monkeypatch)  # the same steps whatever tests ran before
    run_state_machine_as_test(machine, settings=settings(
        max_examples=EXAMPLES, stateful_step_count=STEPS_PER_EXAMPLE, deadline=None, database=None,
        derandomize=True, suppress_health_check=list(HealthCheck),
    ))
    forget_cached_constants()
    print(f"lending state machine: {fast.steps} steps; went through: {dict(sorted(done.items()))}")
    assert fast.steps >= MIN_STEPS, f"only {fast.steps} steps ran"
    missing = {"accept", "accept relayed", "accept lot-wide", "accept with ltv", "repay on time", "repay late",
               "repay by a stranger", "foreclose", "appraise", "cancel", "shutdown", "reopen", "flag",
               "transfer"} - {k for k, n in done.items() if n}
    assert not missing, f"never went through: {sorted(missing)}"
