"""A hypothesis state machine drives the certificate with a mix of issuance,
transfers (direct, safe and signed), approvals, operators, flags and pauses,
and checks every answer against a Python model of owners, balances, states
and approvals.

Transactions go through web3 to anvil's unlocked accounts (Ape adds a lot of
per-transaction work that this many steps cannot afford). Each example runs
between an ``evm_snapshot`` and an ``evm_revert``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest
from fastchain import FastChain, as_address
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from amphora import eip712

ZERO = "0x0000000000000000000000000000000000000000"
ACTIVE, FLAGGED = 0, 5
STEPS_PER_EXAMPLE = 50
EXAMPLES = 30
MIN_STEPS = 1_000


@dataclass
class Model:
    lots: dict[int, tuple[str, int]] = field(default_factory=dict)  # lot id -> (issuer, count)
    owner: dict[int, str] = field(default_factory=dict)  # touched tokens only
    state: dict[int, int] = field(default_factory=dict)
    approved: dict[int, str] = field(default_factory=dict)
    operators: set[tuple[str, str]] = field(default_factory=set)
    balance: dict[str, int] = field(default_factory=dict)
    nonce: dict[str, int] = field(default_factory=dict)
    paused: bool = False

    def owner_of(self, token: int) -> str:
        return self.owner.get(token) or self.lots[token >> 32][0]


def make_machine(fast: FastChain, cert, actors, keys, issuers, admin, lot_count_start, supply_start, chain_id):
    contract = fast.contract(cert.address, cert)
    fns = contract.functions
    cert_address = cert.address

    def batch_call(names_args):
        return fast.reads([(contract, name, args) for name, *args in names_args])

    class CertificateMachine(RuleBasedStateMachine):
        def __init__(self):
            super().__init__()
            self.snapshot = fast.snapshot()
            self.m = Model()
            self.m.balance = dict(zip(actors, batch_call([("balanceOf", a) for a in actors]), strict=True))
            self.m.nonce = dict(zip(actors, batch_call([("nonces", a) for a in actors]), strict=True))
            self.next_lot = lot_count_start + 1
            self.tokens: list[int] = []
            self.last_token: int | None = None

        def teardown(self):
            fast.revert(self.snapshot)

        def send(self, call, sender, ok: bool, reason: str | None = None):
            fast.send(call, sender, ok, reason)

        def move(self, token: int, frm: str, to: str):
            self.m.balance[frm] -= 1
            self.m.balance[to] += 1
            self.m.owner[token] = to
            self.m.approved.pop(token, None)

        def transfer_failure(self, token: int, frm: str, to: str, spender: str) -> str | None:
            owner = self.m.owner_of(token)
            if self.m.paused:
                return "pausable: contract is paused"
            if to == ZERO:
                return "certificate: transfer to the zero address"
            if owner != frm:
                return "certificate: transfer from incorrect owner"
            if self.m.state.get(token, ACTIVE) == FLAGGED:
                return "certificate: token is flagged"
            if spender != owner and (owner, spender) not in self.m.operators \
                    and self.m.approved.get(token) != spender:
                return "certificate: caller is not token owner or approved"
            return None

        # ---- rules ---------------------------------------------------------
        @rule(issuer=st.sampled_from(issuers), count=st.one_of(st.integers(1, 4), st.just(10_000)))
        def issue(self, issuer, count):
            call = fns.issue_lot(actors[2], count, 2020, 750, 1_700_000_000, b"\x01" * 32, b"\x02" * 32,
                                 "P", "W", "R", "")
            ok = not self.m.paused
            self.send(call, issuer, ok, None if ok else "pausable: contract is paused")
            if ok:
                lot_id = self.next_lot
                self.next_lot += 1
                self.m.lots[lot_id] = (issuer, count)
                self.m.balance[issuer] += count
                serials = sorted({1, 2, count} & set(range(1, count + 1)))
                self.tokens.extend((lot_id << 32) | s for s in serials)

        @precondition(lambda self: self.tokens)
        @rule(data=st.data(), kind=st.sampled_from(["transferFrom", "safeTransferFrom"]))
        def transfer(self, data, kind):
            token = data.draw(st.sampled_from(self.tokens))
            owner = self.m.owner_of(token)
            spender = data.draw(st.sampled_from(actors))
            frm = data.draw(st.sampled_from([owner, owner, owner, spender]))
            to = data.draw(st.sampled_from([*actors, ZERO]))
            reason = self.transfer_failure(token, frm, to, spender)
            self.send(getattr(fns, kind)(frm, to, token), spender, reason is None, reason)
            if reason is None:
                self.move(token, frm, to)
            self.last_token = token

        @precondition(lambda self: self.tokens)
        @rule(data=st.data(), tamper=st.booleans())
        def signed_transfer(self, data, tamper):
            token = data.draw(st.sampled_from(self.tokens))
            owner = self.m.owner_of(token)
            to = data.draw(st.sampled_from(actors))
            relayer = data.draw(st.sampled_from(actors))
            nonce = self.m.nonce[owner]
            signed_to = actors[-1] if tamper and to != actors[-1] else to
            payload = eip712.typed_data("Transfer", eip712.transfer_message(owner, signed_to, token, nonce, 2**40),
                                        chain_id, cert_address)
            sig = eip712.sign(payload, keys[owner])
            reason = self.transfer_failure(token, owner, to, owner)
            if signed_to != to:
                reason = "certificate: invalid signature"
            self.send(fns.transfer_with_signature(owner, to, token, nonce, 2**40, sig), relayer,
                      reason is None, reason)
            if reason is None:
                self.m.nonce[owner] += 1
                self.move(token, owner, to)
            self.last_token = token

        @precondition(lambda self: self.tokens)
        @rule(data=st.data())
        def approve(self, data):
            token = data.draw(st.sampled_from(self.tokens))
            caller = data.draw(st.sampled_from(actors))
            spender = data.draw(st.sampled_from([*actors, ZERO]))
            owner = self.m.owner_of(token)
            if spender == owner:
                reason = "certificate: approval to current owner"
            elif caller != owner and (owner, caller) not in self.m.operators:
                reason = "certificate: caller is not token owner or approved for all"
            else:
                reason = None
            self.send(fns.approve(spender, token), caller, reason is None, reason)
            if reason is None:
                self.m.approved[token] = spender
            self.last_token = token

        @rule(owner=st.sampled_from(actors), operator=st.sampled_from(actors), approved=st.booleans())
        def set_operator(self, owner, operator, approved):
            reason = "certificate: approve to caller" if owner == operator else None
            self.send(fns.setApprovalForAll(operator, approved), owner, reason is None, reason)
            if reason is None:
                (self.m.operators.add if approved else self.m.operators.discard)((owner, operator))

        @precondition(lambda self: self.tokens)
        @rule(data=st.data())
        def flag(self, data):
            token = data.draw(st.sampled_from(self.tokens))
            caller = data.draw(st.sampled_from(actors))
            owner, issuer = self.m.owner_of(token), self.m.lots[token >> 32][0]
            state = self.m.state.get(token, ACTIVE)
            if caller not in (owner, issuer):
                reason = "certificate: caller is not the holder or the issuer"
            elif state == FLAGGED:
                reason = "certificate: token is flagged"
            else:
                reason = None
            self.send(fns.flag(token, b"\x03" * 32), caller, reason is None, reason)
            if reason is None:
                self.m.state[token] = FLAGGED
                self.m.owner[token] = owner
            self.last_token = token

        @precondition(lambda self: self.tokens)
        @rule(data=st.data())
        def clear_flag(self, data):
            token = data.draw(st.sampled_from(self.tokens))
            caller = data.draw(st.sampled_from(actors))
            issuer = self.m.lots[token >> 32][0]
            if caller != issuer:
                reason = "certificate: caller is not the issuer"
            elif self.m.state.get(token, ACTIVE) != FLAGGED:
                reason = "certificate: token is active"
            else:
                reason = None
            self.send(fns.clear_flag(token), caller, reason is None, reason)
            if reason is None:
                self.m.state[token] = ACTIVE
            self.last_token = token

        @rule(pause=st.booleans())
        def toggle_pause(self, pause):
            if pause == self.m.paused:
                reason = "pausable: contract is paused" if pause else "pausable: contract is not paused"
            else:
                reason = None
            self.send(fns.pause() if pause else fns.unpause(), admin, reason is None, reason)
            if reason is None:
                self.m.paused = pause

        # ---- invariants ----------------------------------------------------
        @invariant()
        def chain_matches_model(self):
            """One batched round trip reads everything the model predicts."""
            calls = [("balanceOf", a) for a in actors]
            calls += [("totalSupply",), ("lot_count",)]
            token = self.last_token
            if token is not None:
                calls += [("ownerOf", token), ("state_of", token), ("locked", token), ("getApproved", token)]
            out = batch_call(calls)
            for a, got in zip(actors, out, strict=False):
                assert got == self.m.balance[a], f"balance of {a}: chain {got}, model {self.m.balance[a]}"
            supply, lots = out[len(actors)], out[len(actors) + 1]
            issued = sum(c for _, c in self.m.lots.values())
            assert supply == supply_start + issued
            assert lots == lot_count_start + len(self.m.lots)
            if token is not None:
                owner, state, locked, approved = out[-4:]
                assert as_address(owner) == self.m.owner_of(token).lower()
                assert state == self.m.state.get(token, ACTIVE)
                assert locked == (self.m.state.get(token, ACTIVE) != ACTIVE)
                assert as_address(approved) == self.m.approved.get(token, ZERO).lower()

    return CertificateMachine


@pytest.mark.slow
def test_certificate_state_machine__matches_model(chain, cert, admin, winery, other_winery, holder, recipient,
                                                  operator, attacker, custodian):
    cert.grant_issuer(other_winery, "Clos Autre", sender=admin)
    fast = FastChain(chain.provider.uri)
    people = [winery, other_winery, custodian, holder, recipient, operator, attacker]
    actors = [p.address for p in people]
    keys = {p.address: p.private_key for p in people}
    machine = make_machine(fast, cert, actors, keys, [winery.address, other_winery.address],
                           admin.address, cert.lot_count(), cert.totalSupply(), chain.chain_id)
    run_state_machine_as_test(machine, settings=settings(
        max_examples=EXAMPLES, stateful_step_count=STEPS_PER_EXAMPLE, deadline=None, database=None,
        suppress_health_check=list(HealthCheck),
    ))
    print(f"state machine: {fast.steps} steps")
    assert fast.steps >= MIN_STEPS, f"only {fast.steps} steps ran"
