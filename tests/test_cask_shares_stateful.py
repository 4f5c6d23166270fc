"""A hypothesis state machine over one cask: shares move (directly and by
EIP-3009, between eligible and ineligible, frozen and banned holders, past the
holder limit, while paused), the agent records, freezes, bans and recovers,
the issuer deposits distributions and bottles the cask, holders claim
distributions and bottles. After every step: shares are conserved (supply is
the sum of the balances and the burns), the holder count is the number of
non-zero balances, distributions paid never exceed deposits, each holder's
entitlement matches an exact (rational) model within the rounding the
contract documents, and bottles delivered × shares per bottle equals the
shares burned for bottles, every undelivered bottle still held by the cask.

Deterministic as the points machine is (`derandomize`, no local constants,
tokens and certificate of its own)."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from fractions import Fraction

import pytest
from determinism import forget_cached_constants, without_local_constants
from fastchain import FastChain
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule, run_state_machine_as_test

from amphora import eip712

SUPPLY = 10_000
STEPS_PER_EXAMPLE = 50
EXAMPLES = 30
MIN_STEPS = 1_000
MIN_EACH = 8
FAR = 2**40
FRANCE, BANNED = 250, 408
USD = 10**6
NONCES = st.integers(0, 511)

pytest_plugins = ["cask_fixtures"]

#: Successful transfers, authorized transfers, distribution claims and bottle claims.
COVERAGE = {"transfers": 0, "authorized": 0, "distribution_claims": 0, "bottle_claims": 0, "setup": 0}


@dataclass
class Model:
    balance: dict[str, int]
    eligible: dict[str, bool]
    country: dict[str, int]
    frozen: dict[str, bool]
    frozen_amount: dict[str, int]
    banned: set[int] = field(default_factory=set)
    max_holders: int = 0
    paused: bool = False
    supply: int = SUPPLY
    deposited: int = 0
    paid: int = 0
    #: Exact entitlement per holder (every deposit split pro rata, no rounding).
    exact: dict[str, Fraction] = field(default_factory=dict)
    claimed: dict[str, int] = field(default_factory=dict)
    #: Rounding allowance per holder: deposits plus its balance changes plus one.
    roundings: dict[str, int] = field(default_factory=dict)
    deposits: int = 0
    bottled: bool = False
    spb: int = 0
    price: int = 0
    bottles_issued: int = 0
    delivered: dict[str, int] = field(default_factory=dict)
    burned_for_bottles: int = 0
    fund: int = 0
    remainder_paid: int = 0
    used_nonces: dict[str, set[int]] = field(default_factory=dict)

    def holders(self) -> int:
        return sum(1 for b in self.balance.values() if b)


def make_machine(fast: FastChain, cask, coin, cert, issuer: str, agent: str, investors: list[str], outsider: str,
                 keys: dict[str, str], chain_id: int, trace):
    c = fast.contract(cask.address, cask)
    s = fast.contract(coin.address, coin)
    w = fast.contract(cert.address, cert)
    actors = [issuer, *investors, outsider]

    def send(call, sender: str, ok: bool, reason: str | None = None) -> None:
        args = call.args[:-3] if call.fn_name == "transferWithAuthorization" else call.args
        trace.update(f"{call.fn_name}{args}{sender}{ok}\n".encode())
        fast.send(call, sender, ok, reason)

    class CaskMachine(RuleBasedStateMachine):
        def __init__(self):
            super().__init__()
            self.snapshot = fast.snapshot()
            balances = {a: 0 for a in actors}
            balances[issuer] = SUPPLY
            # Every example starts with shares in the investors' hands.
            for i, a in enumerate(investors):
                send(c.functions.transfer(a, 1_000 + 337 * i), issuer, True)
                COVERAGE["setup"] += 1
                balances[issuer] -= 1_000 + 337 * i
                balances[a] = 1_000 + 337 * i
            self.m = Model(
                balance=balances,
                eligible={a: a != outsider for a in actors},
                country={a: FRANCE if a != outsider else 0 for a in actors},
                frozen={a: False for a in actors},
                frozen_amount={a: 0 for a in actors},
                exact={a: Fraction(0) for a in actors},
                claimed={a: 0 for a in actors},
                roundings={a: 1 for a in actors},
                delivered={a: 0 for a in actors},
                used_nonces={a: set() for a in actors},
            )

        def teardown(self):
            fast.revert(self.snapshot)

        # ------------------------------------------------------------ the rules' model

        def restriction(self, frm: str, to: str, amount: int) -> str | None:
            m = self.m
            if m.paused:
                return "shares: transfers are paused"
            if m.frozen[frm]:
                return "shares: sender is frozen"
            if m.frozen[to]:
                return "shares: recipient is frozen"
            if not m.eligible[frm]:
                return "shares: sender is not an eligible investor"
            if not m.eligible[to]:
                return "shares: recipient is not an eligible investor"
            if m.country[to] in m.banned:
                return "shares: recipient's country is banned"
            held = m.balance[frm]
            if amount > held:
                return "erc20: transfer amount exceeds balance"
            if amount > held - min(m.frozen_amount[frm], held):
                return "shares: amount exceeds unfrozen shares"
            if m.spb and amount % m.spb:
                return "shares: bottled, move whole bottles only"
            if (amount and frm != to and m.balance[to] == 0 and amount != held and m.max_holders
                    and m.holders() >= m.max_holders):
                return "shares: too many holders"
            return None

        def moved(self, who: str, delta: int) -> None:
            self.m.balance[who] += delta
            self.m.roundings[who] += 1

        # ------------------------------------------------------------ shares

        @rule(frm=st.sampled_from(actors), to=st.sampled_from(actors), data=st.data(),
              nonce=st.one_of(st.none(), NONCES))
        def transfer(self, frm, to, data, nonce):
            held = self.m.balance[frm]
            whole = max(1, self.m.spb)
            amount = data.draw(st.one_of(st.integers(0, held), st.just(held), st.just(held + 1),
                                         st.integers(0, held // whole).map(lambda n: n * whole)))
            reason = self.restriction(frm, to, amount)
            if nonce is None:
                send(c.functions.transfer(to, amount), frm, reason is None, reason)
            else:
                if nonce in self.m.used_nonces[frm]:
                    reason = "eip3009: authorization is used or canceled"
                nonce_bytes = nonce.to_bytes(32, "big")
                message = eip712.authorization_message(frm, to, amount, 0, FAR, nonce_bytes)
                data_ = eip712.typed_data("TransferWithAuthorization", message, chain_id, cask.address,
                                          name="Cask Machine", version="1")
                v, r, sig_s = eip712.split_signature(eip712.sign(data_, keys[frm]))
                call = c.functions.transferWithAuthorization(frm, to, amount, 0, FAR, nonce_bytes, v, r, sig_s)
                send(call, outsider, reason is None, reason)  # relayed by anyone
                if reason is None:
                    self.m.used_nonces[frm].add(nonce)
            if reason is None:
                COVERAGE["authorized" if nonce is not None else "transfers"] += 1
                self.moved(frm, -amount)
                self.moved(to, amount)

        # ------------------------------------------------------------ the agent

        @rule(who=st.sampled_from(actors), eligible=st.sampled_from([True, True, False]),
              banned_country=st.sampled_from([False, False, False, True]))
        def record(self, who, eligible, banned_country):
            country = BANNED if banned_country else FRANCE
            send(c.functions.set_investor(who, country, FAR if eligible else 0), agent, True)
            self.m.eligible[who] = eligible
            self.m.country[who] = country

        @rule(who=st.sampled_from(actors), frozen=st.sampled_from([True, False, False, False]))
        def freeze(self, who, frozen):
            send(c.functions.set_frozen(who, frozen), agent, True)
            self.m.frozen[who] = frozen

        @rule(who=st.sampled_from(actors), data=st.data())
        def freeze_amount(self, who, data):
            held = self.m.balance[who]
            amount = data.draw(st.one_of(st.just(0), st.integers(0, held), st.just(held + 1)))
            ok = amount <= held
            send(c.functions.set_frozen_amount(who, amount), agent, ok,
                 None if ok else "shares: frozen amount exceeds balance")
            if ok:
                self.m.frozen_amount[who] = amount

        @rule(banned=st.booleans())
        def ban(self, banned):
            send(c.functions.set_country_banned(BANNED, banned), agent, True)
            (self.m.banned.add if banned else self.m.banned.discard)(BANNED)

        @rule(limit=st.sampled_from([0, 0, 2, 3, 4]))
        def max_holders(self, limit):
            send(c.functions.set_max_holders(limit), agent, True)
            self.m.max_holders = limit

        @rule(pause=st.sampled_from([True] + [False] * 9))
        def pause(self, pause):
            ok = pause != self.m.paused
            send(c.functions.pause() if pause else c.functions.unpause(), agent, ok)
            if ok:
                self.m.paused = pause

        @rule(lost=st.sampled_from(actors), new=st.sampled_from(actors))
        def recover(self, lost, new):
            m = self.m
            reason = None
            if lost == new:
                reason = "shares: lost and new address are the same"
            elif not m.eligible[new]:
                reason = "shares: new address is not eligible"
            elif m.frozen[new]:
                reason = "shares: new address is frozen"
            elif m.country[lost] != m.country[new]:
                reason = "shares: new address is of another country"
            elif m.balance[lost] == 0:
                reason = "shares: lost address holds no shares"
            send(c.functions.recover(lost, new), agent, reason is None, reason)
            if reason is None:
                amount = m.balance[lost]
                self.moved(lost, -amount)
                self.moved(new, amount)
                # What was owed follows the shares: the exact model moves it too.
                for book in (m.exact, m.claimed):
                    book[new] += book[lost]
                    book[lost] = type(book[lost])(0)
                m.roundings[new] += m.roundings[lost]
                m.frozen_amount[new] += m.frozen_amount[lost]
                m.frozen_amount[lost] = 0
                m.frozen[lost] = True
                m.eligible[lost] = False

        # ------------------------------------------------------------ distributions

        @rule(amount=st.sampled_from([1, 999, USD, 10**9 + 7]))
        def deposit(self, amount):
            ok = self.m.supply > 0
            send(c.functions.deposit_distribution(amount), issuer, ok, None if ok else "shares: no shares outstanding")
            if ok:
                self.m.deposited += amount
                self.m.deposits += 1
                for a in actors:
                    self.m.exact[a] += Fraction(amount * self.m.balance[a], self.m.supply)
                    self.m.roundings[a] += 1

        @rule(who=st.sampled_from(actors))
        def claim_distribution(self, who):
            owed = c.functions.claimable(who).call()
            reason = "shares: account is frozen" if self.m.frozen[who] else (
                "shares: nothing to claim" if owed == 0 else None)
            send(c.functions.claim_distribution(who), outsider, reason is None, reason)
            if reason is None:
                COVERAGE["distribution_claims"] += 1
                self.m.paid += owed
                self.m.claimed[who] += owed

        # ------------------------------------------------------------ bottling

        @precondition(lambda self: not self.m.bottled)
        @rule(spb=st.sampled_from([1, 7, 7, 100, 1_000]), price=st.sampled_from([0, 3]))
        def declare(self, spb, price):
            call = c.functions.declare_bottled(spb, price, 750, 1_717_200_000, b"\x01" * 32, b"\x02" * 32,
                                               "Pauillac AOC", "ipfs://machine")
            ok = self.m.supply // spb > 0
            send(call, issuer, ok, None if ok else "shares: less than one bottle outstanding")
            if ok:
                m = self.m
                m.bottled, m.spb, m.price, m.bottles_issued = True, spb, price, m.supply // spb
                m.fund = price * (spb - 1) * m.holders()

        # Drawn twice as often as the other rules (two rules share it): claims
        # succeed only after the declaration, by an eligible, unfrozen holder.
        @rule(who=st.sampled_from(actors), bottles=st.sampled_from([1, 1, 2]), remainder=st.booleans())
        def claim_few_bottles(self, who, bottles, remainder):
            self._claim(who, bottles, remainder)

        @rule(who=st.sampled_from(actors), bottles=st.sampled_from([0, 1, 2, 3, 50, 51]), remainder=st.booleans())
        def claim_bottles(self, who, bottles, remainder):
            self._claim(who, bottles, remainder)

        def _claim(self, who, bottles, remainder):
            m = self.m
            held = m.balance[who]
            unfrozen = held - min(m.frozen_amount[who], held)
            burned = bottles * m.spb
            rest = (held - min(burned, held)) % m.spb if remainder and m.spb else 0
            reason = None
            if m.paused:
                reason = "pausable: contract is paused"
            elif not m.bottled:
                reason = "shares: cask not bottled"
            elif m.frozen[who]:
                reason = "shares: account is frozen"
            elif not m.eligible[who]:
                reason = "shares: holder is not eligible"
            elif bottles > 50:
                reason = "shares: too many bottles in one claim"
            elif bottles == 0 and rest == 0:
                reason = "shares: nothing to claim"
            elif burned + rest > unfrozen:
                reason = "shares: claim exceeds unfrozen shares"
            elif sum(m.delivered.values()) + bottles > m.bottles_issued:
                reason = "shares: claim exceeds the bottles held"
            elif m.remainder_paid + rest * m.price > m.fund:
                reason = "shares: remainder fund exhausted"
            send(c.functions.claim(bottles, remainder), who, reason is None, reason)
            if reason is None:
                COVERAGE["bottle_claims"] += 1
                self.moved(who, -(burned + rest))
                m.supply -= burned + rest
                m.delivered[who] += bottles
                m.burned_for_bottles += burned
                m.remainder_paid += rest * m.price

        # ------------------------------------------------------------ invariants

        @invariant()
        def shares_are_conserved(self):
            reads = fast.reads([(c, "balanceOf", (a,)) for a in actors] + [(c, "totalSupply", ()),
                                                                            (c, "holder_count", ())])
            balances, (supply, holders) = reads[:len(actors)], reads[len(actors):]
            assert dict(zip(actors, balances, strict=True)) == self.m.balance
            assert supply == sum(balances) == self.m.supply
            assert supply + self.m.burned_for_bottles + self.m.remainder_paid // max(1, self.m.price) <= SUPPLY
            assert holders == self.m.holders()

        @invariant()
        def distributions_match_the_exact_model(self):
            m = self.m
            reads = fast.reads([(c, "claimable", (a,)) for a in actors]
                               + [(c, "distributions_paid", ()), (c, "distributions_deposited", ())])
            claimable, (paid, deposited) = reads[:len(actors)], reads[len(actors):]
            assert (paid, deposited) == (m.paid, m.deposited)
            assert paid + sum(claimable) <= deposited
            for a, owed in zip(actors, claimable, strict=True):
                got = owed + m.claimed[a]
                assert abs(got - m.exact[a]) <= m.roundings[a], (a, got, m.exact[a])

        @invariant()
        def bottles_match_shares_burned(self):
            m = self.m
            if not m.bottled:
                return
            b = c.functions.bottling().call()
            delivered = sum(m.delivered.values())
            assert b[6] == delivered and b[6] * m.spb == m.burned_for_bottles
            assert b[8] == m.remainder_paid <= b[7] == m.fund
            reads = fast.reads([(w, "balanceOf", (a,)) for a in [*actors, cask.address]]
                               + [(s, "balanceOf", (cask.address,))])
            assert dict(zip(actors, reads[:len(actors)], strict=True)) == m.delivered
            assert reads[len(actors)] == m.bottles_issued - delivered >= m.supply // m.spb
            assert reads[-1] == m.deposited - m.paid + m.fund - m.remainder_paid

    return CaskMachine


@pytest.fixture
def machine_world(project, admin, winery, custodian, minter, agent, holder, recipient, customer, attacker):
    """A certificate, stablecoin and cask of the machine's own."""
    from amphora.deploy import CaskSettings

    cert = admin.deploy(project.WineCertificate, "Machine Wine", "MW", "https://m/", "Machine Wine", "1")
    cert.grant_issuer(winery, "Machine Winery", sender=admin)
    cert.grant_custodian(custodian, "Machine Cellar", sender=admin)
    coin = admin.deploy(project.ReferenceStablecoin, "Machine Dollar", "MUSD", "Machine Dollar", "1")
    coin.configureMinter(minter, 10**18, sender=admin)
    coin.mint(winery, 10**15, sender=minter)
    settings = CaskSettings(name="Cask Machine", symbol="CSKM", supply=SUPPLY, cellar=custodian.address)
    cask = winery.deploy(project.CaskShares, *settings.constructor_args(cert.address, coin.address, agent.address))
    cert.grant_issuer(cask, "Machine Cask", sender=admin)
    coin.approve(cask, 2**256 - 1, sender=winery)
    for a in (winery, holder, recipient, customer):
        cask.set_investor(a, FRANCE, FAR, sender=agent)
    return cask, coin, cert


@pytest.mark.slow
def test_cask_state_machine__shares_distributions_and_bottles_always_add_up(
        chain, machine_world, winery, agent, holder, recipient, customer, attacker, monkeypatch):
    without_local_constants(monkeypatch)
    cask, coin, cert = machine_world
    fast = FastChain(chain.provider.uri)
    trace = hashlib.sha256()
    COVERAGE.update({k: 0 for k in COVERAGE})
    keys = {a.address: a.private_key for a in (winery, holder, recipient, customer, attacker)}
    machine = make_machine(fast, cask, coin, cert, winery.address, agent.address,
                           [holder.address, recipient.address, customer.address], attacker.address, keys,
                           chain.chain_id, trace)
    run_state_machine_as_test(machine, settings=settings(
        max_examples=EXAMPLES, stateful_step_count=STEPS_PER_EXAMPLE, deadline=None, database=None,
        suppress_health_check=list(HealthCheck), derandomize=True,
    ))
    forget_cached_constants()
    steps = fast.steps - COVERAGE["setup"]
    print(f"cask state machine: {steps} steps, {COVERAGE}, step fingerprint {trace.hexdigest()[:16]}")
    assert steps >= MIN_STEPS, f"only {steps} steps ran"
    assert min(v for k, v in COVERAGE.items() if k != "setup") >= MIN_EACH, f"too little exercised: {COVERAGE}"
