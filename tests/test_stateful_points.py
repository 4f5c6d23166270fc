"""A hypothesis state machine over the points token and the stablecoin
together: merchants issue and redeem (amounts at decimal edges included),
holders transfer (directly, and relayed by EIP-3009 with nonces that collide
on purpose), sign permits, caps change, both tokens pause, stablecoin is sent
to the reserve by mistake. After every step: the reserve backs every point
exactly, the stablecoin held covers the reserve, balances, permit nonces (which
share a storage word with the balance), used EIP-3009 nonces and merchant
totals match a Python model, and nobody got out more than was paid in.

With `derandomize` every run must take the same steps (the step fingerprint
printed at the end is the same in every run), whatever ran before in the same
session. Two things made them differ with test order: Hypothesis also draws
"local constants", literals collected from every module of this project that
is imported at the time (test modules included), and the model started from
whatever other tests had left on the shared deployment. The machine runs with
no local constants and on a stablecoin and points token of its own."""

from __future__ import annotations

import hashlib
import importlib
import sys
from dataclasses import dataclass, field

import pytest
from determinism import forget_cached_constants, without_local_constants
from fastchain import FastChain
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule, run_state_machine_as_test

from amphora import eip712

SCALE = 10**12
USD = 10**6
STEPS_PER_EXAMPLE = 50
EXAMPLES = 30
MIN_STEPS = 1_000
#: Successful issues, redemptions and authorized transfers: the machine must
#: really exercise each of them.
COVERAGE = {"issued": 0, "redeemed": 0, "authorized": 0, "setup": 0}
MIN_EACH = 10
FUNDING = 10**15  # stablecoin units per merchant
FAR = 2**40
#: EIP-3009 nonces are drawn from words 0 and 1 only, so they collide often.
NONCES = st.integers(0, 511)

# Stablecoin amounts: one unit, odd amounts, large ones.
STABLE_AMOUNTS = st.one_of(st.just(1), st.integers(1, 999), st.integers(1, 5_000 * USD), st.just(10**12))


@dataclass
class Model:
    balance: dict[str, int] = field(default_factory=dict)
    reserve: int = 0
    surplus: int = 0
    cap: dict[str, int] = field(default_factory=dict)
    issued: dict[str, int] = field(default_factory=dict)
    redeemed: dict[str, int] = field(default_factory=dict)
    paid_in: int = 0
    paid_out: int = 0
    paused: bool = False
    stable_paused: bool = False
    open_redemption: bool = False
    permits: dict[str, int] = field(default_factory=dict)
    used_nonces: dict[str, set[int]] = field(default_factory=dict)


def make_machine(fast: FastChain, points, stable, merchants, customers, attacker, admin, keys, chain_id,
                 trace: hashlib._Hash):
    p = fast.contract(points.address, points)
    s = fast.contract(stable.address, stable)
    actors = [*merchants, *customers, attacker]

    def send(call, sender: str, ok: bool, reason: str | None = None) -> None:
        """``fast.send``, and the step added to ``trace`` (what was sent, by whom, and the prediction)."""
        # Not the token's address nor the signature (v, r, s) that covers it: the
        # address moves with the deployer's nonce, which earlier tests move.
        args = call.args[:-3] if call.fn_name in ("permit", "transferWithAuthorization") else call.args
        args = tuple("<points>" if arg == points.address else arg for arg in args)
        trace.update(f"{call.fn_name}{args}{sender}{ok}\n".encode())
        fast.send(call, sender, ok, reason)

    def sign(primary: str, message: dict, signer: str) -> tuple[int, bytes, bytes]:
        data = eip712.typed_data(primary, message, chain_id, points.address, name="Amphora Points", version="1")
        return eip712.split_signature(eip712.sign(data, keys[signer]))

    class PointsMachine(RuleBasedStateMachine):
        def __init__(self):
            super().__init__()
            self.snapshot = fast.snapshot()
            # Every example starts with points in every hand, so that
            # redemptions and transfers can succeed from the first step.
            for i, m in enumerate(merchants):
                for holder in (*customers, merchants[(i + 1) % len(merchants)]):
                    send(p.functions.issue(holder, 1_000 * USD), m, True)
                    COVERAGE["setup"] += 1
            # Then start from what the chain holds: on this test's own tokens,
            # exactly the setup above (the invariants check it after __init__).
            self.m = Model()
            reads = fast.reads([(p, "balanceOf", (a,)) for a in actors]
                               + [(p, "reserve", ()), (s, "balanceOf", (points.address,))])
            self.m.balance = dict(zip(actors, reads[:len(actors)], strict=True))
            self.m.reserve = reads[len(actors)]
            self.m.surplus = reads[len(actors) + 1] - self.m.reserve
            self.m.paid_in = self.m.reserve  # what is in the reserve was paid in
            self.others = p.functions.totalSupply().call() - sum(self.m.balance.values())
            self.m.cap = {m: 10**40 for m in merchants}
            records = {m: p.functions.merchants(m).call() for m in merchants}
            self.m.issued = {m: records[m][3] for m in merchants}
            self.m.redeemed = {m: records[m][4] for m in merchants}
            self.m.permits = dict(zip(actors, fast.reads([(p, "nonces", (a,)) for a in actors]), strict=True))
            words = fast.reads([(p, "authorization_bitmap", (a, w)) for a in actors for w in (0, 1)])
            self.m.used_nonces = {a: {w * 256 + b for w in (0, 1) for b in range(256)
                                      if words[2 * i + w] >> b & 1} for i, a in enumerate(actors)}

        def teardown(self):
            fast.revert(self.snapshot)

        @rule(who=st.sampled_from([*merchants, attacker]), customer=st.sampled_from([*customers, *merchants]),
              amount=st.one_of(STABLE_AMOUNTS, st.just(0)))
        def issue(self, who, customer, amount):
            pts = amount * SCALE
            reason = None
            if self.m.paused:
                reason = "pausable: contract is paused"
            elif who not in merchants:
                reason = "points: caller is not a merchant"
            elif amount == 0:
                reason = "points: amount is zero"
            elif self.m.issued[who] + pts > self.m.cap[who] + self.m.redeemed[who]:
                reason = "points: merchant cap exceeded"
            ok = reason is None and not self.m.stable_paused
            send(p.functions.issue(customer, amount), who, ok, reason)
            if ok:
                COVERAGE["issued"] += 1
                self.m.balance[customer] += pts
                self.m.reserve += amount
                self.m.paid_in += amount
                self.m.issued[who] += pts

        @rule(frm=st.sampled_from(actors), to=st.sampled_from([*actors, *merchants]), data=st.data(),
              nonce=st.one_of(st.none(), NONCES))
        def transfer(self, frm, to, data, nonce):
            """A plain transfer, or (with a nonce) one relayed by EIP-3009."""
            held = self.m.balance[frm]
            amount = data.draw(st.one_of(st.integers(0, held), st.just(held), st.just(held + 1),
                                         st.just(SCALE - 1)))
            reason = None if amount <= held else "erc20: transfer amount exceeds balance"
            if nonce is None:
                send(p.functions.transfer(to, amount), frm, reason is None, reason)
            else:
                if nonce in self.m.used_nonces[frm]:
                    reason = "eip3009: authorization is used or canceled"
                nonce_bytes = nonce.to_bytes(32, "big")
                v, r, sig_s = sign("TransferWithAuthorization",
                                   eip712.authorization_message(frm, to, amount, 0, FAR, nonce_bytes), frm)
                # Relayed by the attacker: a relayer gains nothing but gas spent.
                call = p.functions.transferWithAuthorization(frm, to, amount, 0, FAR, nonce_bytes, v, r, sig_s)
                send(call, attacker, reason is None, reason)
                if reason is None:
                    COVERAGE["authorized"] += 1
                    self.m.used_nonces[frm].add(nonce)
            if reason is None:
                self.m.balance[frm] -= amount
                self.m.balance[to] += amount

        @rule(owner=st.sampled_from(actors), spender=st.sampled_from(actors),
              value=st.one_of(st.integers(0, 10**30), st.just(2**256 - 1)), stale=st.booleans())
        def permit(self, owner, spender, value, stale):
            nonce = self.m.permits[owner] - 1 if stale and self.m.permits[owner] else self.m.permits[owner]
            v, r, sig_s = sign("Permit", eip712.permit_message(owner, spender, value, nonce, FAR), owner)
            ok = nonce == self.m.permits[owner]
            send(p.functions.permit(owner, spender, value, FAR, v, r, sig_s), attacker, ok,
                      None if ok else "erc20: invalid signature")
            if ok:
                self.m.permits[owner] += 1

        @rule(who=st.sampled_from([*merchants, *merchants, *customers, attacker]), data=st.data())
        def redeem(self, who, data):
            held = self.m.balance[who]
            # Whole stablecoin units too: `integers(0, held)` mostly draws dust below one unit.
            amount = data.draw(st.one_of(st.integers(0, held), st.just(held),
                                         st.integers(1, max(1, held // SCALE)).map(lambda units: units * SCALE),
                                         st.just(SCALE - 1), st.just(held + SCALE)))
            payout = amount // SCALE
            reason = None
            if self.m.paused:
                reason = "pausable: contract is paused"
            elif who not in merchants and not self.m.open_redemption:
                reason = "points: only merchants redeem"
            elif payout == 0:
                reason = "points: amount below one stablecoin unit"
            elif payout * SCALE > held:
                reason = "points: redeem amount exceeds balance"
            ok = reason is None and not self.m.stable_paused
            send(p.functions.redeem(amount), who, ok, reason)
            if ok:
                COVERAGE["redeemed"] += 1
                self.m.balance[who] -= payout * SCALE
                self.m.reserve -= payout
                self.m.paid_out += payout
                if who in merchants:
                    self.m.redeemed[who] += payout * SCALE

        @rule(merchant=st.sampled_from(merchants),
              cap=st.one_of(st.just(0), st.integers(0, 10_000 * USD * SCALE), st.just(10**40)))
        def set_cap(self, merchant, cap):
            send(p.functions.set_merchant_cap(merchant, cap), admin, True)
            self.m.cap[merchant] = cap

        # Pausing is drawn one time in ten, so most steps run unpaused.
        @rule(pause=st.sampled_from([True] + [False] * 9))
        def pause_points(self, pause):
            ok = pause != self.m.paused
            send(p.functions.pause() if pause else p.functions.unpause(), admin, ok)
            if ok:
                self.m.paused = pause

        @rule(pause=st.sampled_from([True] + [False] * 9))
        def pause_stablecoin(self, pause):
            ok = pause != self.m.stable_paused
            send(s.functions.pause() if pause else s.functions.unpause(), admin, ok)
            if ok:
                self.m.stable_paused = pause

        @rule(enabled=st.booleans())
        def open_redemption(self, enabled):
            send(p.functions.set_open_redemption(enabled), admin, True)
            self.m.open_redemption = enabled

        @rule(merchant=st.sampled_from(merchants), amount=st.integers(1, 10 * USD))
        def stablecoin_sent_by_mistake(self, merchant, amount):
            ok = not self.m.stable_paused
            send(s.functions.transfer(points.address, amount), merchant, ok)
            if ok:
                self.m.surplus += amount

        @invariant()
        def reserve_backs_every_point(self):
            reads = fast.reads(
                [(p, "balanceOf", (a,)) for a in actors]
                + [(p, "totalSupply", ()), (p, "reserve", ()), (s, "balanceOf", (points.address,))]
            )
            balances, (supply, reserve, held) = reads[:len(actors)], reads[len(actors):]
            assert dict(zip(actors, balances, strict=True)) == self.m.balance
            assert supply == sum(self.m.balance.values()) + self.others
            assert reserve == self.m.reserve and reserve * SCALE == supply
            assert held == reserve + self.m.surplus >= reserve
            assert self.m.paid_out <= self.m.paid_in

        @invariant()
        def nonces_match(self):
            reads = fast.reads([(p, "nonces", (a,)) for a in actors]
                               + [(p, "authorization_bitmap", (a, w)) for a in actors for w in (0, 1)])
            assert dict(zip(actors, reads[:len(actors)], strict=True)) == self.m.permits
            words = reads[len(actors):]
            for i, a in enumerate(actors):
                bitmap = words[2 * i] | words[2 * i + 1] << 256
                assert bitmap == sum(1 << n for n in self.m.used_nonces[a])

        @invariant()
        def merchant_totals_match(self):
            for m in merchants:
                record = p.functions.merchants(m).call()
                assert (record[3], record[4]) == (self.m.issued[m], self.m.redeemed[m])

    return PointsMachine


@pytest.fixture
def deploy_tokens(project, admin, minter, merchant, other_merchant):
    """Builder: a stablecoin and a points token of the machine's own, the
    merchants registered and funded: nothing another test did shows in them."""

    def _deploy():
        stable = admin.deploy(project.ReferenceStablecoin, "Machine Dollar", "MUSD", "Machine Dollar", "1")
        points = admin.deploy(project.PointsToken, stable, "Amphora Points", "PTS", 18, "Amphora Points", "1")
        stable.configureMinter(minter, 10 * FUNDING, sender=admin)
        for m in (merchant, other_merchant):
            stable.mint(m, FUNDING, sender=minter)
            points.register_merchant(m, "Merchant", 10**40, sender=admin)
            stable.approve(points, 2**256 - 1, sender=m)
        return stable, points

    return _deploy


@pytest.fixture
def machine_actors(merchant, other_merchant, customer, holder, attacker, admin):
    return merchant, other_merchant, customer, holder, attacker, admin


def run_machine(chain, tokens, actors, examples: int, monkeypatch) -> tuple[int, str]:
    """Run the machine for ``examples`` derandomized examples: (steps, fingerprint
    of every step sent)."""
    # No local constants in the draws (see `determinism.without_local_constants`): which
    # modules supply them depends on the tests that ran before.
    without_local_constants(monkeypatch)
    stable, points = tokens
    merchant, other_merchant, customer, holder, attacker, admin = actors
    fast = FastChain(chain.provider.uri)
    trace = hashlib.sha256()
    COVERAGE.update(issued=0, redeemed=0, authorized=0, setup=0)
    keys = {a.address: a.private_key for a in (merchant, other_merchant, customer, holder, attacker)}
    machine = make_machine(fast, points, stable, [merchant.address, other_merchant.address],
                           [customer.address, holder.address], attacker.address, admin.address, keys,
                           chain.chain_id, trace)
    run_state_machine_as_test(machine, settings=settings(
        max_examples=examples, stateful_step_count=STEPS_PER_EXAMPLE, deadline=None, database=None,
        suppress_health_check=list(HealthCheck),
        # Fixed examples: the coverage floor below must not depend on luck.
        derandomize=True,
    ))
    forget_cached_constants()
    return fast.steps - COVERAGE["setup"], trace.hexdigest()


@pytest.mark.slow
def test_points_state_machine__reserve_always_backs_points(chain, deploy_tokens, machine_actors, monkeypatch):
    steps, fingerprint = run_machine(chain, deploy_tokens(), machine_actors, EXAMPLES, monkeypatch)
    print(f"points state machine: {steps} steps, {COVERAGE}, step fingerprint {fingerprint[:16]}")
    assert steps >= MIN_STEPS, f"only {steps} steps ran"
    assert min(COVERAGE["issued"], COVERAGE["authorized"], COVERAGE["redeemed"]) >= MIN_EACH, (
        f"too few successful issues, redemptions or authorized transfers: {COVERAGE}")


@pytest.mark.slow
def test_points_state_machine__other_tests_ran_before__same_steps(
        chain, project, manifest, deploy_tokens, machine_actors, admin, minter, merchant, customer, holder,
        other_merchant, attacker, tmp_path, monkeypatch, request):
    """What earlier tests leave behind must not change the steps: modules they
    imported (whose literals Hypothesis would draw as "local constants") and
    points and stablecoin they put in the actors' hands on the shared deployment."""
    before = run_machine(chain, deploy_tokens(), machine_actors, 3, monkeypatch)
    (tmp_path / "earlier_test_module.py").write_text(
        "AMOUNTS = (204, 4_096, 77_777, 10**20 + 3, 2**255 - 19)\nNAMES = ('Earlier test', 'PTS')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    request.addfinalizer(lambda: sys.modules.pop("earlier_test_module", None))
    importlib.import_module("earlier_test_module")
    shared_stable = project.ReferenceStablecoin.at(manifest.address("Stablecoin"))
    shared_points = project.PointsToken.at(manifest.address("PointsToken"))
    shared_stable.configureMinter(minter, FUNDING, sender=admin)
    shared_stable.mint(merchant, FUNDING, sender=minter)
    shared_stable.approve(shared_points, FUNDING, sender=merchant)
    shared_points.register_merchant(merchant, "Earlier test", 10**40, sender=admin)
    for account in (customer, holder, other_merchant, attacker):
        shared_points.issue(account, 7 * USD + 3, sender=merchant)

    after = run_machine(chain, deploy_tokens(), machine_actors, 3, monkeypatch)

    assert after == before
