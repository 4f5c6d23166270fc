"""A hypothesis state machine over the whole certificate lifecycle: transfers,
gifts created (directly or signed), claimed (also by front-runners and with
wrong keys), revoked and expired, redemptions requested, confirmed and
rejected, flags raised and cleared, custody moved between custodians, and
pauses, checked against a Python model of owners, states, balances, nonces,
claim keys and custodians.

After every step the chain must agree with the model on every bottle's owner
and state, every actor's balance and nonce, the supply and every lot's
custodian; and no locked bottle may have moved since it was locked.

Transactions go through a bare web3 client to anvil's unlocked accounts
(``tests/fastchain.py``); each example runs between an ``evm_snapshot`` and an
``evm_revert``. Time moves only by the ``warp`` rule (two thousand seconds at
once) and gifts expire one or five thousand seconds after they are made, so a
gift's expiry is never near the chain's clock and the model always knows which
gifts have expired.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

import pytest
from eth_account import Account
from fastchain import FastChain, as_address
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    consumes,
    invariant,
    multiple,
    rule,
    run_state_machine_as_test,
)

from amphora import eip712

ACTIVE, GIFT_PENDING, PLEDGED, REDEMPTION_REQUESTED, REDEEMED, FLAGGED = range(6)
STATE_NAMES = {ACTIVE: "active", GIFT_PENDING: "gift pending", REDEMPTION_REQUESTED: "redemption requested",
               FLAGGED: "flagged"}
PAUSED = "pausable: contract is paused"
NO_TOKEN = "certificate: token does not exist"
NOT_HOLDER = "certificate: caller is not the holder"
# Gift lifetimes and the warp are such that a gift's expiry is always at least
# a thousand seconds from the chain's clock: the model never has to guess.
GIFT_LIFETIMES = (1_000, 5_000)  # seconds
WARP = 2_000  # seconds
FAR = 2**40
ORDER = b"\x0a" * 32
REASON = b"\x0b" * 32
STEPS_PER_EXAMPLE = 50
EXAMPLES = 40
MIN_STEPS = 1_000


def state_error(state: int) -> str:
    return f"certificate: token is {STATE_NAMES[state]}"


@dataclass
class Model:
    owner: dict[int, str]
    issuer: dict[int, str]  # lot id -> issuer
    custodian: dict[int, str]  # lot id -> custodian
    balance: dict[str, int]
    nonce: dict[str, int]
    supply: int
    state: dict[int, int] = field(default_factory=dict)
    gift: dict[int, tuple[Account, int]] = field(default_factory=dict)  # token -> (claim key, expiry)
    used_keys: list[Account] = field(default_factory=list)
    locked_owner: dict[int, str] = field(default_factory=dict)  # owner when the current lock began
    paused: bool = False
    now: int = 0

    def state_of(self, token: int) -> int:
        return self.state.get(token, ACTIVE)


def make_machine(fast: FastChain, cert, tokens, issuers, actors, keys, custodians, admin, chain_id, done: Counter):
    """The machine class over ``tokens`` (``issuers``: lot id -> issuer);
    ``done`` counts the transitions that went through, by kind."""
    contract = fast.contract(cert.address, cert)
    fns = contract.functions
    address = cert.address

    def batch(calls):
        return fast.reads([(contract, name, args) for name, *args in calls])

    def sign(primary_type: str, message: dict, key) -> bytes:
        return eip712.sign(eip712.typed_data(primary_type, message, chain_id, address), key)

    class LifecycleMachine(RuleBasedStateMachine):
        # Bottles with a pending gift, a requested redemption, a flag: the
        # rules that end those states draw from here, so they do not wait for
        # a random draw to find one.
        gifts = Bundle("gifts")
        requests = Bundle("requests")
        flags = Bundle("flags")

        def __init__(self):
            super().__init__()
            self.snapshot = fast.snapshot()
            reads = batch([("ownerOf", t) for t in tokens] + [("balanceOf", a) for a in actors]
                          + [("nonces", a) for a in actors] + [("totalSupply",)]
                          + [("custodian_of", t) for t in tokens])
            n, k = len(tokens), len(actors)
            self.m = Model(
                owner={t: as_address(v) for t, v in zip(tokens, reads[:n], strict=True)},
                issuer=dict(issuers),
                custodian={t >> 32: as_address(v) for t, v in zip(tokens, reads[n + 2 * k + 1:], strict=True)},
                balance=dict(zip(actors, reads[n:n + k], strict=True)),
                nonce=dict(zip(actors, reads[n + k:n + 2 * k], strict=True)),
                supply=reads[n + 2 * k],
            )
            # A fresh block: after evm_revert the newest block may predate earlier warps.
            fast.w3.provider.make_request("evm_mine", [])
            self.m.now = fast.w3.eth.get_block("latest")["timestamp"]
            self.m.owner = {t: self._actor(o) for t, o in self.m.owner.items()}
            self.m.custodian = {lot: self._actor(o) for lot, o in self.m.custodian.items()}

        def teardown(self):
            fast.revert(self.snapshot)

        @staticmethod
        def _actor(lowercase: str) -> str:
            return next(a for a in actors if a.lower() == lowercase)

        def send(self, call, sender, reason):
            if reason is not None:
                done[f"refused: {reason}"] += 1
            fast.send(call, sender, reason is None, reason)

        # ---- model helpers ---------------------------------------------------
        def set_state(self, token: int, state: int):
            if state in (ACTIVE, REDEEMED):
                self.m.locked_owner.pop(token, None)
            elif self.m.state_of(token) == ACTIVE:
                self.m.locked_owner[token] = self.m.owner[token]
            self.m.state[token] = state

        def move(self, token: int, to: str):
            frm = self.m.owner[token]
            self.m.balance[frm] -= 1
            self.m.balance[to] += 1
            self.m.owner[token] = to

        def pick(self, data, state: int) -> int:
            """A bottle, usually one in ``state`` when there is one (so that
            transitions go through, not only refusals)."""
            ready = [t for t in tokens if self.m.state_of(t) == state]
            if ready and data.draw(st.integers(0, 3), label="prefer") != 0:
                return data.draw(st.sampled_from(ready), label="token")
            return data.draw(st.sampled_from(tokens), label="token")

        def aim(self, data, token: int) -> int:
            """``token`` (drawn from a bundle) four times in five, else any
            bottle, so that refusals are tried as well."""
            if data.draw(st.integers(0, 4), label="aim") != 0:
                return token
            return data.draw(st.sampled_from(tokens), label="any token")

        def keep(self, token: int, state: int):
            """Put ``token`` back in its bundle while it is still in ``state``."""
            return token if self.m.state_of(token) == state else multiple()

        def caller(self, data, usual: str) -> str:
            """``usual`` three times in four, else someone else."""
            if data.draw(st.integers(0, 3), label="usual caller") != 0:
                return usual
            return data.draw(st.sampled_from([a for a in actors if a != usual]), label="caller")

        def expired(self, token: int) -> bool:
            return self.m.gift[token][1] < self.m.now

        # ---- rules ---------------------------------------------------------
        @rule(data=st.data())
        def transfer(self, data):
            token = self.pick(data, ACTIVE)
            owner = self.m.owner[token]
            spender = self.caller(data, owner)
            to = data.draw(st.sampled_from(actors))
            state = self.m.state_of(token)
            if self.m.paused:
                reason = PAUSED
            elif state == REDEEMED:
                reason = NO_TOKEN
            elif state != ACTIVE:
                reason = state_error(state)
            elif spender != owner:
                reason = "certificate: caller is not token owner or approved"
            else:
                reason = None
            self.send(fns.transferFrom(owner, to, token), spender, reason)
            if reason is None:
                done["transfer"] += 1
                self.move(token, to)

        @rule(target=gifts, data=st.data(), reuse_key=st.sampled_from([False, False, False, True]),
              signed=st.booleans(), forged=st.sampled_from([False, False, False, True]),
              lifetime=st.sampled_from(GIFT_LIFETIMES))
        def create_gift(self, data, reuse_key, signed, forged, lifetime):
            token = self.pick(data, ACTIVE)
            owner = self.m.owner[token]
            caller = self.caller(data, owner)
            key = data.draw(st.sampled_from(self.m.used_keys)) if reuse_key and self.m.used_keys else Account.create()
            expiry = self.m.now + lifetime
            forged = signed and forged
            if forged:
                reason = "certificate: invalid signature"
            elif key in self.m.used_keys:
                reason = "certificate: claim key already used"
            else:
                reason = self.holder_lock_failure(token, caller)
            if signed:
                nonce = self.m.nonce[caller]
                message = eip712.create_gift_message(caller, token, key.address, expiry, nonce, FAR)
                signer = next(a for a in actors if a != caller) if forged else caller
                call = fns.create_gift_with_signature(caller, token, key.address, expiry, nonce, FAR,
                                                      sign("CreateGift", message, keys[signer]))
                self.send(call, actors[-1], reason)
            else:
                self.send(fns.create_gift(token, key.address, expiry), caller, reason)
            if reason is None:
                done["create_gift"] += 1
                done["create_gift signed"] += signed
                self.m.used_keys.append(key)
                self.m.gift[token] = (key, expiry)
                self.set_state(token, GIFT_PENDING)
                if signed:
                    self.m.nonce[caller] += 1
                return token
            return multiple()

        @rule(target=gifts, gift=consumes(gifts), data=st.data(),
              how=st.sampled_from(["claim", "claim", "claim", "front-run", "wrong-key"]))
        def claim_gift(self, gift, data, how):
            token = self.aim(data, gift)
            recipient = data.draw(st.sampled_from(actors))
            submitter = data.draw(st.sampled_from(actors))
            state = self.m.state_of(token)
            key = self.m.gift[token][0] if state == GIFT_PENDING and how != "wrong-key" else Account.create()
            signed_for = next(a for a in actors if a != recipient) if how == "front-run" else recipient
            signature = eip712.sign_gift_claim(key.key, token, signed_for, chain_id, address)
            if self.m.paused:
                reason = PAUSED
            elif state == REDEEMED:
                reason = NO_TOKEN
            elif state != GIFT_PENDING:
                reason = state_error(state)
            elif self.expired(token):
                reason = "certificate: gift expired"
            elif how != "claim":
                reason = "certificate: invalid claim signature"
            else:
                reason = None
            self.send(fns.claim_gift(token, recipient, signature), submitter, reason)
            if reason is None:
                done["claim_gift"] += 1
                self.set_state(token, ACTIVE)
                self.move(token, recipient)
                del self.m.gift[token]
            return self.keep(gift, GIFT_PENDING)

        @rule(target=gifts, gift=consumes(gifts), data=st.data(), signed=st.booleans(),
              forged=st.sampled_from([False, False, False, True]))
        def revoke_gift(self, gift, data, signed, forged):
            token = self.aim(data, gift)
            owner = self.m.owner[token]
            caller = self.caller(data, owner)
            state = self.m.state_of(token)
            forged = signed and forged
            if forged:
                reason = "certificate: invalid signature"
            elif state == REDEEMED:
                reason = NO_TOKEN
            elif state != GIFT_PENDING:
                reason = state_error(state)
            elif caller != owner and not self.expired(token):
                reason = NOT_HOLDER
            else:
                reason = None
            if signed:
                nonce = self.m.nonce[caller]
                message = eip712.revoke_gift_message(caller, token, nonce, FAR)
                signer = next(a for a in actors if a != caller) if forged else caller
                call = fns.revoke_gift_with_signature(caller, token, nonce, FAR,
                                                      sign("RevokeGift", message, keys[signer]))
                self.send(call, actors[-1], reason)
            else:
                self.send(fns.revoke_gift(token), caller, reason)
            if reason is None:
                done["revoke_gift"] += 1
                done["revoke_gift after expiry by another"] += caller != owner
                done["revoke_gift signed"] += signed
                self.set_state(token, ACTIVE)
                del self.m.gift[token]
                if signed:
                    self.m.nonce[caller] += 1
            return self.keep(gift, GIFT_PENDING)

        @rule()
        def warp(self):
            fast.w3.provider.make_request("evm_increaseTime", [WARP])
            fast.w3.provider.make_request("evm_mine", [])
            self.m.now = fast.w3.eth.get_block("latest")["timestamp"]

        @rule(target=requests, data=st.data(), signed=st.booleans())
        def request_redemption(self, data, signed):
            token = self.pick(data, ACTIVE)
            owner = self.m.owner[token]
            caller = self.caller(data, owner)
            reason = self.holder_lock_failure(token, caller)
            if signed:
                nonce = self.m.nonce[caller]
                message = eip712.request_redemption_message(caller, token, ORDER, nonce, FAR)
                call = fns.request_redemption_with_signature(caller, token, ORDER, nonce, FAR,
                                                             sign("RequestRedemption", message, keys[caller]))
                self.send(call, actors[-1], reason)
            else:
                self.send(fns.request_redemption(token, ORDER), caller, reason)
            if reason is None:
                done["request_redemption"] += 1
                done["request_redemption signed"] += signed
                self.set_state(token, REDEMPTION_REQUESTED)
                if signed:
                    self.m.nonce[caller] += 1
                return token
            return multiple()

        def holder_lock_failure(self, token: int, caller: str) -> str | None:
            """Why the holder's lock of an active bottle (a gift, a redemption
            request) fails for ``caller``, in the contract's order; None if it does not."""
            state = self.m.state_of(token)
            if self.m.paused:
                return PAUSED
            if state == REDEEMED:
                return NO_TOKEN
            if caller != self.m.owner[token]:
                return NOT_HOLDER
            if state != ACTIVE:
                return state_error(state)
            return None

        def custodian_failure(self, token: int, caller: str) -> str | None:
            state = self.m.state_of(token)
            if state == REDEEMED:
                return NO_TOKEN
            if caller != self.m.custodian[token >> 32]:
                return "certificate: caller is not the custodian"
            if state != REDEMPTION_REQUESTED:
                return state_error(state)
            return None

        def custodian_caller(self, data, token: int) -> str:
            """The lot's custodian usually; else a custodian or a stranger."""
            if data.draw(st.booleans(), label="right custodian"):
                return self.m.custodian[token >> 32]
            return data.draw(st.sampled_from([*custodians, actors[-1]]), label="custodian")

        @rule(target=requests, request=consumes(requests), data=st.data())
        def confirm_redemption(self, request, data):
            token = self.aim(data, request)
            caller = self.custodian_caller(data, token)
            reason = PAUSED if self.m.paused else self.custodian_failure(token, caller)
            self.send(fns.confirm_redemption(token), caller, reason)
            if reason is None:
                done["confirm_redemption"] += 1
                self.m.balance[self.m.owner[token]] -= 1
                self.m.supply -= 1
                self.set_state(token, REDEEMED)
            return self.keep(request, REDEMPTION_REQUESTED)

        @rule(target=requests, request=consumes(requests), data=st.data())
        def reject_redemption(self, request, data):
            token = self.aim(data, request)
            caller = self.custodian_caller(data, token)
            reason = self.custodian_failure(token, caller)
            self.send(fns.reject_redemption(token, REASON), caller, reason)
            if reason is None:
                done["reject_redemption"] += 1
                self.set_state(token, ACTIVE)
            return self.keep(request, REDEMPTION_REQUESTED)

        @rule(target=flags, data=st.data(), signed=st.booleans())
        def flag(self, data, signed):
            token = self.pick(data, ACTIVE)
            owner, issuer = self.m.owner[token], self.m.issuer[token >> 32]
            caller = self.caller(data, data.draw(st.sampled_from([owner, issuer]), label="flagger"))
            state = self.m.state_of(token)
            if state == REDEEMED:
                reason = NO_TOKEN
            elif caller not in (owner, issuer):
                reason = "certificate: caller is not the holder or the issuer"
            elif state != ACTIVE:
                reason = state_error(state)
            else:
                reason = None
            if signed:
                nonce = self.m.nonce[caller]
                message = eip712.flag_message(caller, token, REASON, nonce, FAR)
                call = fns.flag_with_signature(caller, token, REASON, nonce, FAR, sign("Flag", message, keys[caller]))
                self.send(call, actors[-1], reason)
            else:
                self.send(fns.flag(token, REASON), caller, reason)
            if reason is None:
                done["flag"] += 1
                done["flag signed"] += signed
                self.set_state(token, FLAGGED)
                if signed:
                    self.m.nonce[caller] += 1
                return token
            return multiple()

        @rule(target=flags, flagged=consumes(flags), data=st.data())
        def clear_flag(self, flagged, data):
            token = self.aim(data, flagged)
            issuer = self.m.issuer[token >> 32]
            caller = self.caller(data, issuer)
            state = self.m.state_of(token)
            if state == REDEEMED:
                reason = NO_TOKEN
            elif caller != issuer:
                reason = "certificate: caller is not the issuer"
            elif state != FLAGGED:
                reason = state_error(state)
            else:
                reason = None
            self.send(fns.clear_flag(token), caller, reason)
            if reason is None:
                done["clear_flag"] += 1
                self.set_state(token, ACTIVE)
            return self.keep(flagged, FLAGGED)

        @rule(token=st.sampled_from(tokens), to=st.sampled_from(custodians + [actors[-1]]))
        def move_custody(self, token, to):
            lot = token >> 32
            if to not in custodians:
                reason = "certificate: custodian is not registered"
            elif to == self.m.custodian[lot]:
                reason = "certificate: lot is already with this custodian"
            else:
                reason = None
            self.send(fns.move_custody(lot, to), admin, reason)
            if reason is None:
                done["move_custody"] += 1
                self.m.custodian[lot] = to

        # Mostly unpause: a paused chain refuses most rules, so pauses stay short.
        @rule(pause=st.sampled_from([True, False, False, False]))
        def toggle_pause(self, pause):
            if pause == self.m.paused:
                reason = PAUSED if pause else "pausable: contract is not paused"
            else:
                reason = None
            self.send(fns.pause() if pause else fns.unpause(), admin, reason)
            if reason is None:
                self.m.paused = pause

        # ---- invariants ----------------------------------------------------
        @invariant()
        def chain_matches_model(self):
            live = [t for t in tokens if self.m.state_of(t) != REDEEMED]
            calls = [("state_of", t) for t in tokens] + [("ownerOf", t) for t in live]
            calls += [("balanceOf", a) for a in actors] + [("nonces", a) for a in actors]
            calls += [("totalSupply",)] + [("custodian_of", t) for t in tokens]
            out = iter(batch(calls))
            for t in tokens:
                assert next(out) == self.m.state_of(t), f"state of {t}"
            for t in live:
                owner = as_address(next(out))
                assert owner == self.m.owner[t].lower(), f"owner of {t}"
                if t in self.m.locked_owner:
                    assert owner == self.m.locked_owner[t].lower(), f"locked token {t} moved"
            for a in actors:
                assert next(out) == self.m.balance[a], f"balance of {a}"
            for a in actors:
                assert next(out) == self.m.nonce[a], f"nonce of {a}"
            assert next(out) == self.m.supply
            for t in tokens:
                assert as_address(next(out)) == self.m.custodian[t >> 32].lower(), f"custodian of {t}"

    return LifecycleMachine


@pytest.mark.slow
def test_lifecycle_state_machine__matches_model(chain, cert, accounts, admin, winery, other_winery, custodian,
                                                holder, recipient, attacker, relayer, create_lot):
    other_custodian = accounts[9]
    cert.grant_custodian(other_custodian, "Entrepôt Autre", sender=admin)
    cert.grant_issuer(other_winery, "Clos Autre", sender=admin)
    lot_a = create_lot(4)
    lot_b = create_lot(3, issuer=other_winery)
    tokens = [lot_a.token(s) for s in (1, 2, 3, 4)] + [lot_b.token(s) for s in (1, 2, 3)]
    # Some bottles start with holders, so that holders, not only wineries, act.
    cert.transferFrom(winery, holder, lot_a.token(2), sender=winery)
    cert.transferFrom(other_winery, recipient, lot_b.token(2), sender=other_winery)
    people = [winery, other_winery, custodian, other_custodian, holder, recipient, attacker, relayer]
    actors = [p.address for p in people]
    keys = {p.address: p.private_key for p in people}
    fast = FastChain(chain.provider.uri)
    done: Counter = Counter()
    issuers = {lot_a.lot_id: winery.address, lot_b.lot_id: other_winery.address}
    machine = make_machine(fast, cert, tokens, issuers, actors, keys, [custodian.address, other_custodian.address],
                           admin.address, chain.chain_id, done)
    run_state_machine_as_test(machine, settings=settings(
        max_examples=EXAMPLES, stateful_step_count=STEPS_PER_EXAMPLE, deadline=None, database=None,
        suppress_health_check=list(HealthCheck),
    ))
    print(f"lifecycle state machine: {fast.steps} steps; went through: {dict(sorted(done.items()))}")
    assert fast.steps >= MIN_STEPS, f"only {fast.steps} steps ran"
    # Every transition of the table went through somewhere, not only refusals,
    # and so did the signed forms.
    done["signed"] = sum(n for k, n in done.items() if k.endswith(" signed"))
    missing = {"transfer", "create_gift", "claim_gift", "revoke_gift", "request_redemption", "confirm_redemption",
               "reject_redemption", "flag", "clear_flag", "move_custody", "signed"} - {k for k, n in done.items() if n}
    assert not missing, f"never went through: {sorted(missing)}"
