"""CaskShares: one test per eligibility rule and agent power (allowed and
refused), distributions, bottling, and the attacks the issue names."""

from __future__ import annotations

import secrets

import ape
import pytest
from cask_fixtures import BANNED, FAR, FRANCE, SUPPLY, SWITZERLAND, USD, declare, sign_claim

from amphora import eip712
from amphora.deploy import record_investor

pytest_plugins = ["cask_fixtures"]


@pytest.fixture
def funded(eligible, winery, holder):
    """``holder`` bought 1,000 shares from the issuer."""
    eligible.transfer(holder, 1_000, sender=winery)
    return eligible


def _authorization(cask, chain_id, signer, to, value, nonce=None):
    nonce = nonce or secrets.token_bytes(32)
    message = eip712.authorization_message(signer.address, str(to), value, 0, FAR, nonce)
    data = eip712.typed_data("TransferWithAuthorization", message, chain_id, cask.address,
                             name="Cask Test", version="1")
    v, r, s = eip712.split_signature(eip712.sign(data, signer.private_key))
    return (signer.address, str(to), value, 0, FAR, nonce, v, r, s)


def _permit(cask, chain_id, signer, spender, value):
    message = eip712.permit_message(signer.address, str(spender), value, cask.nonces(signer), FAR)
    data = eip712.typed_data("Permit", message, chain_id, cask.address, name="Cask Test", version="1")
    return eip712.split_signature(eip712.sign(data, signer.private_key))


# ------------------------------------------------------------ deployment


def test_deploy__mints_fixed_supply_to_issuer_with_the_facts(cask, winery, custodian, cert, stablecoin):
    assert cask.totalSupply() == SUPPLY == cask.balanceOf(winery)
    assert cask.owner() == winery and cask.holder_count() == 1
    facts = cask.facts()
    assert (facts.producer, facts.vintage, facts.volume_litres, facts.expected_bottles) == (
        "Domaine Amphora", 2023, 225, 300)
    assert facts.cellar == custodian.address and facts.document_hash == b"\xab" * 32
    assert facts.certificate == cert.address and facts.stablecoin == stablecoin.address


def test_mint__no_entry_point_exists(cask):
    names = {item.name for item in cask.contract_type.abi if item.type == "function"}
    assert not names & {"mint", "_mint", "burn", "burnFrom", "forced_transfer"}


def test_claim_bottles_typehash__matches_python_definition(cask, chain_id):
    assert eip712.encode_type("ClaimBottles") == (
        "ClaimBottles(address holder,uint256 bottles,bool remainder,uint256 validAfter,uint256 validBefore,"
        "bytes32 nonce)")
    assert cask.CLAIM_BOTTLES_TYPEHASH() == eip712.typehash("ClaimBottles")
    assert cask.DOMAIN_SEPARATOR() == eip712.domain_separator(chain_id, cask.address, "Cask Test",
                                                              eip712.CASK_DOMAIN_VERSION)


# ------------------------------------------------------------ eligibility


def test_transfer__between_eligible_holders__moves_shares(funded, holder, recipient):
    tx = funded.transfer(recipient, 10, sender=holder)
    assert funded.balanceOf(recipient) == 10 and funded.holder_count() == 3
    assert [(e.sender, e.receiver, e.value) for e in tx.decode_logs(funded.Transfer)] == [
        (holder.address, recipient.address, 10)]


def test_transfer__to_unrecorded_address__reverts(funded, holder, accounts):
    stranger = accounts[18]
    assert not funded.can_transfer(holder, stranger, 1)
    assert funded.transfer_restriction(holder, stranger, 1) == "shares: recipient is not an eligible investor"
    with ape.reverts("shares: recipient is not an eligible investor"):
        funded.transfer(stranger, 1, sender=holder)


def test_transfer__from_unrecorded_address__reverts(eligible, winery, accounts, holder, agent):
    stranger = accounts[18]
    record_investor(eligible, agent, stranger.address, FRANCE, FAR)
    eligible.transfer(stranger, 5, sender=winery)
    eligible.set_investor(stranger, FRANCE, 0, sender=agent)  # eligibility withdrawn
    with ape.reverts("shares: sender is not an eligible investor"):
        eligible.transfer(holder, 1, sender=stranger)


def test_transfer__recipient_check_expired__reverts(funded, holder, recipient, agent, chain):
    expiry = chain.pending_timestamp + 100
    funded.set_investor(recipient, FRANCE, expiry, sender=agent)
    funded.transfer(recipient, 1, sender=holder)  # still valid
    chain.pending_timestamp = expiry + 1
    with ape.reverts("shares: recipient's eligibility has expired"):
        funded.transfer(recipient, 1, sender=holder)


def test_transfer__sender_check_expired__reverts(funded, holder, recipient, agent, chain):
    expiry = chain.pending_timestamp + 100
    funded.set_investor(holder, FRANCE, expiry, sender=agent)
    chain.mine(timestamp=expiry + 1)
    assert funded.transfer_restriction(holder, recipient, 1) == "shares: sender's eligibility has expired"
    with ape.reverts("shares: sender's eligibility has expired"):
        funded.transfer(recipient, 1, sender=holder)


def test_transfer__to_banned_country__reverts_until_lifted(funded, holder, recipient, agent):
    funded.set_investor(recipient, BANNED, FAR, sender=agent)
    funded.set_country_banned(BANNED, True, sender=agent)
    with ape.reverts("shares: recipient's country is banned"):
        funded.transfer(recipient, 1, sender=holder)
    funded.set_country_banned(BANNED, False, sender=agent)
    funded.transfer(recipient, 1, sender=holder)
    assert funded.balanceOf(recipient) == 1


def test_transfer__beyond_max_holders__reverts_but_between_existing_holders_works(funded, holder, recipient,
                                                                                   relayer, agent):
    funded.set_max_holders(3, sender=agent)  # winery, holder, + one
    funded.transfer(recipient, 5, sender=holder)
    with ape.reverts("shares: too many holders"):
        funded.transfer(relayer, 5, sender=holder)
    funded.transfer(recipient, 5, sender=holder)  # an existing holder: fine
    funded.transfer(relayer, 10, sender=recipient)  # recipient leaves, relayer joins: count unchanged
    assert funded.holder_count() == 3 and funded.balanceOf(recipient) == 0


def test_transfer__during_lockup__only_issuer_sells(create_cask, agent, winery, holder, recipient, chain):
    end = chain.pending_timestamp + 1_000
    cask = create_cask(lockup_end=end)
    for account in (holder, recipient):
        record_investor(cask, agent, account.address, FRANCE, FAR)
    cask.transfer(holder, 10, sender=winery)  # the primary sale
    with ape.reverts("shares: lock-up has not ended"):
        cask.transfer(recipient, 1, sender=holder)
    chain.pending_timestamp = end
    cask.transfer(recipient, 1, sender=holder)
    assert cask.balanceOf(recipient) == 1


def test_set_investor__by_non_agent__reverts(cask, attacker):
    with ape.reverts("shares: caller is not the agent"):
        cask.set_investor(attacker, FRANCE, FAR, sender=attacker)


@pytest.mark.parametrize(("country", "expiry", "reason"), [
    (0, FAR, "shares: country code out of range"),
    (1_000, FAR, "shares: country code out of range"),
    (FRANCE, 1, "shares: expiry is in the past"),
    (FRANCE, 2**64, "shares: expiry out of range"),
])
def test_set_investor__bad_record__reverts(cask, agent, holder, country, expiry, reason):
    with ape.reverts(reason):
        cask.set_investor(holder, country, expiry, sender=agent)


def test_set_investor__records_and_logs(cask, agent, holder):
    tx = cask.set_investor(holder, SWITZERLAND, FAR, sender=agent)
    record = cask.investor(holder)
    assert (record.eligible, record.country, record.expiry, record.frozen) == (True, SWITZERLAND, FAR, False)
    assert [(e.account, e.country, e.expiry) for e in tx.decode_logs(cask.InvestorRecorded)] == [
        (holder.address, SWITZERLAND, FAR)]


def test_rules__set_by_non_agent__revert(cask, attacker):
    for call in (lambda: cask.set_country_banned(BANNED, True, sender=attacker),
                 lambda: cask.set_max_holders(1, sender=attacker),
                 lambda: cask.pause(sender=attacker),
                 lambda: cask.set_frozen(attacker, True, sender=attacker),
                 lambda: cask.set_frozen_amount(attacker, 0, sender=attacker),
                 lambda: cask.recover(attacker, attacker, sender=attacker)):
        with ape.reverts("shares: caller is not the agent"):
            call()


# ------------------------------------------------------------ agent powers


def test_freeze__blocks_sending_and_receiving_until_lifted(funded, holder, recipient, agent):
    tx = funded.set_frozen(holder, True, sender=agent)
    assert [(e.account, e.frozen) for e in tx.decode_logs(funded.AccountFrozen)] == [(holder.address, True)]
    with ape.reverts("shares: sender is frozen"):
        funded.transfer(recipient, 1, sender=holder)
    with ape.reverts("shares: recipient is frozen"):
        funded.transfer(holder, 0, sender=recipient)
    funded.set_frozen(holder, False, sender=agent)
    funded.transfer(recipient, 1, sender=holder)
    assert funded.balanceOf(recipient) == 1


def test_freeze_amount__only_the_rest_moves(funded, holder, recipient, agent):
    funded.set_frozen_amount(holder, 900, sender=agent)
    assert funded.investor(holder).frozen_amount == 900
    funded.transfer(recipient, 100, sender=holder)
    with ape.reverts("shares: amount exceeds unfrozen shares"):
        funded.transfer(recipient, 1, sender=holder)
    funded.set_frozen_amount(holder, 0, sender=agent)
    funded.transfer(recipient, 1, sender=holder)


def test_freeze_amount__above_balance__reverts(funded, holder, agent):
    with ape.reverts("shares: frozen amount exceeds balance"):
        funded.set_frozen_amount(holder, 1_001, sender=agent)


def test_recover__moves_everything_to_new_address_of_same_holder(funded, holder, agent, accounts, stablecoin,
                                                                  winery):
    new = accounts[18]
    record_investor(funded, agent, new.address, FRANCE, FAR)
    funded.deposit_distribution(1_000 * USD, sender=winery)
    owed = funded.claimable(holder)
    funded.set_frozen_amount(holder, 10, sender=agent)

    tx = funded.recover(holder, new, sender=agent)

    assert [(e.lost, e.new, e.amount) for e in tx.decode_logs(funded.SharesRecovered)] == [
        (holder.address, new.address, 1_000)]
    assert funded.balanceOf(new) == 1_000 and funded.balanceOf(holder) == 0
    assert funded.claimable(new) == owed and funded.claimable(holder) == 0
    assert funded.investor(new).frozen_amount == 10
    lost = funded.investor(holder)
    assert lost.frozen and not lost.eligible and funded.holder_count() == 2


def test_recover__to_other_country__reverts(funded, holder, agent, accounts):
    new = accounts[18]
    record_investor(funded, agent, new.address, SWITZERLAND, FAR)
    with ape.reverts("shares: new address is of another country"):
        funded.recover(holder, new, sender=agent)


def test_recover__to_ineligible_address__reverts(funded, holder, agent, accounts):
    with ape.reverts("shares: new address is not eligible"):
        funded.recover(holder, accounts[18], sender=agent)


def test_recover__to_frozen_address__reverts(funded, holder, agent, accounts):
    new = accounts[18]
    record_investor(funded, agent, new.address, FRANCE, FAR)
    funded.set_frozen(new, True, sender=agent)
    with ape.reverts("shares: new address is frozen"):
        funded.recover(holder, new, sender=agent)


def test_pause__stops_transfers_and_claims_until_unpaused(funded, holder, recipient, agent):
    funded.pause(sender=agent)
    assert funded.transfer_restriction(holder, recipient, 1) == "shares: transfers are paused"
    with ape.reverts("shares: transfers are paused"):
        funded.transfer(recipient, 1, sender=holder)
    funded.unpause(sender=agent)
    funded.transfer(recipient, 1, sender=holder)


def test_set_agent__only_issuer__and_old_agent_loses_powers(cask, winery, agent, attacker, relayer):
    with ape.reverts("ownable: caller is not the owner"):
        cask.set_agent(attacker, sender=attacker)
    cask.set_agent(relayer, sender=winery)
    with ape.reverts("shares: caller is not the agent"):
        cask.pause(sender=agent)
    cask.pause(sender=relayer)
    assert cask.paused()


# ------------------------------------------------------------ attacks: ineligible recipient


def test_attack__transfer_from_to_ineligible__reverts(funded, holder, relayer, accounts):
    funded.approve(relayer, 100, sender=holder)
    with ape.reverts("shares: recipient is not an eligible investor"):
        funded.transferFrom(holder, accounts[18], 1, sender=relayer)
    assert funded.allowance(holder, relayer) == 100


def test_attack__permit_then_transfer_to_ineligible__reverts(funded, holder, relayer, accounts, chain_id):
    v, r, s = _permit(funded, chain_id, holder, relayer, 50)
    funded.permit(holder, relayer, 50, FAR, v, r, s, sender=relayer)
    with ape.reverts("shares: recipient is not an eligible investor"):
        funded.transferFrom(holder, accounts[18], 50, sender=relayer)


def test_attack__eip3009_to_ineligible__reverts_and_nonce_stays_free(funded, holder, relayer, accounts, chain_id):
    args = _authorization(funded, chain_id, holder, accounts[18], 5)
    with ape.reverts("shares: recipient is not an eligible investor"):
        funded.transferWithAuthorization(*args, sender=relayer)
    assert not funded.authorizationState(holder, args[5])


def test_eip3009__between_eligible__moves_shares(funded, holder, recipient, relayer, chain_id):
    funded.transferWithAuthorization(*_authorization(funded, chain_id, holder, recipient, 5), sender=relayer)
    assert funded.balanceOf(recipient) == 5


# ------------------------------------------------------------ distributions


def test_distribution__pro_rata_and_correct_across_transfers(funded, winery, holder, recipient, stablecoin):
    funded.deposit_distribution(1_000 * USD, sender=winery)  # holder: 1,000 of 1,000,000 shares
    assert funded.claimable(holder) == 1 * USD
    funded.transfer(recipient, 500, sender=holder)  # after the first, before the second deposit
    funded.deposit_distribution(2_000 * USD, sender=winery)
    assert funded.claimable(holder) == 1 * USD + 1 * USD
    assert funded.claimable(recipient) == 1 * USD
    before = stablecoin.balanceOf(holder)
    tx = funded.claim_distribution(holder, sender=recipient)  # anyone submits; the holder is paid
    assert stablecoin.balanceOf(holder) == before + 2 * USD
    assert [(e.holder, e.amount) for e in tx.decode_logs(funded.DistributionClaimed)] == [(holder.address, 2 * USD)]


def test_attack__distribution_claimed_twice__second_reverts(funded, winery, holder):
    funded.deposit_distribution(1_000 * USD, sender=winery)
    funded.claim_distribution(holder, sender=holder)
    with ape.reverts("shares: nothing to claim"):
        funded.claim_distribution(holder, sender=holder)


def test_attack__transfer_between_claims__does_not_double_count(funded, winery, holder, recipient, stablecoin):
    funded.deposit_distribution(1_000 * USD, sender=winery)
    funded.claim_distribution(holder, sender=holder)
    funded.transfer(recipient, 1_000, sender=holder)  # the same shares claim again from recipient
    with ape.reverts("shares: nothing to claim"):
        funded.claim_distribution(recipient, sender=recipient)
    assert funded.distributions_paid() == 1 * USD


def test_distribution__frozen_holder__cannot_claim(funded, winery, holder, agent):
    funded.deposit_distribution(1_000 * USD, sender=winery)
    funded.set_frozen(holder, True, sender=agent)
    with ape.reverts("shares: account is frozen"):
        funded.claim_distribution(holder, sender=holder)


def test_distribution__zero_amount__reverts(cask, winery):
    with ape.reverts("shares: amount is zero"):
        cask.deposit_distribution(0, sender=winery)


def test_distribution__dust_is_carried_to_the_next_deposit(funded, winery, holder):
    # 1 unit over 1,000,000 shares: below a unit a share, nothing lost.
    for _ in range(3):
        funded.deposit_distribution(1, sender=winery)
    funded.deposit_distribution(1_000_000 - 3, sender=winery)
    assert funded.claimable(holder) == 1_000
    assert funded.claimable(holder) * SUPPLY // 1_000 <= funded.distributions_deposited()


# ------------------------------------------------------------ bottling


def test_declare_bottled__without_issuer_role__reverts(funded, winery):
    with ape.reverts("shares: cask is not an issuer on the certificate"):
        declare(funded, winery, 1_000)


def test_declare_bottled__by_non_issuer__reverts(bottling_ready, attacker):
    with ape.reverts("ownable: caller is not the owner"):
        declare(bottling_ready, attacker, 1_000)


def test_declare_bottled__issues_lot_owned_by_the_cask(bottling_ready, eligible, winery, holder, cert, stablecoin,
                                                        custodian):
    eligible.transfer(holder, 1_500, sender=winery)
    fund_before = stablecoin.balanceOf(winery)
    tx = declare(eligible, winery, 1_000, price=2 * USD)

    b = eligible.bottling()
    assert b.bottled and b.bottles_issued == SUPPLY // 1_000
    lot = cert.lot(b.lot_id)
    assert lot.issuer == eligible.address and lot.bottle_count == 1_000 and lot.custodian == custodian.address
    assert cert.balanceOf(eligible) == 1_000
    fund = 2 * USD * 999 * 2  # two holders at the declaration
    assert stablecoin.balanceOf(winery) == fund_before - fund
    backing = eligible.backing()
    assert backing.covered and backing.remainder_fund_left == fund == backing.remainder_fund_needed
    assert [(e.lot_id, e.bottles) for e in tx.decode_logs(eligible.CaskBottled)] == [(b.lot_id, 1_000)]
    with ape.reverts("shares: cask already bottled"):
        declare(eligible, winery, 1_000)


def test_claim__burns_shares_for_bottles_and_pays_remainder(bottling_ready, eligible, winery, holder, cert,
                                                           stablecoin):
    eligible.transfer(holder, 2_500, sender=winery)
    declare(eligible, winery, 1_000, price=3 * USD)
    first = eligible.bottling().first_token_id
    before = stablecoin.balanceOf(holder)

    tx = eligible.claim(2, True, sender=holder)

    assert cert.ownerOf(first) == holder.address and cert.ownerOf(first + 1) == holder.address
    assert eligible.balanceOf(holder) == 0 and stablecoin.balanceOf(holder) == before + 500 * 3 * USD
    event = next(iter(tx.decode_logs(eligible.BottlesClaimed)))
    assert (event.bottles, event.shares_burned, event.remainder_shares) == (2, 2_000, 500)
    b = eligible.bottling()
    assert b.bottles_delivered * b.shares_per_bottle == 2_000
    assert eligible.backing().covered


def test_claim__signed_through_relayer__delivers_to_holder(bottling_ready, eligible, winery, holder, relayer, cert,
                                                          chain_id):
    eligible.transfer(holder, 1_000, sender=winery)
    declare(eligible, winery, 1_000)
    args = sign_claim(eligible, chain_id, holder, holder.address, 1, False)
    eligible.claim_with_authorization(*args, sender=relayer)
    assert cert.ownerOf(eligible.bottling().first_token_id) == holder.address
    with ape.reverts("eip3009: authorization is used or canceled"):
        eligible.claim_with_authorization(*args, sender=relayer)


def test_attack__claim_signed_by_someone_else__reverts(bottling_ready, eligible, winery, holder, attacker, chain_id):
    eligible.transfer(holder, 1_000, sender=winery)
    declare(eligible, winery, 1_000)
    args = sign_claim(eligible, chain_id, attacker, holder.address, 1, False)
    with ape.reverts("eip3009: invalid signature"):
        eligible.claim_with_authorization(*args, sender=attacker)


def test_attack__claim_beyond_balance__reverts(bottling_ready, eligible, winery, holder):
    eligible.transfer(holder, 1_000, sender=winery)
    declare(eligible, winery, 1_000)
    with ape.reverts("shares: claim exceeds unfrozen shares"):
        eligible.claim(2, False, sender=holder)


def test_attack__claims_beyond_backing__impossible(bottling_ready, eligible, winery, holder, recipient):
    # Every share claimed: exactly the lot's bottles go out, and not one more.
    eligible.transfer(holder, 999_000, sender=winery)
    declare(eligible, winery, 1_000)
    eligible.transfer(recipient, 1_000, sender=winery)
    for _ in range(19):
        eligible.claim(50, False, sender=holder)
    eligible.claim(49, False, sender=holder)
    eligible.claim(1, False, sender=recipient)
    b = eligible.bottling()
    assert b.bottles_delivered == b.bottles_issued == 1_000 and eligible.totalSupply() == 0
    with ape.reverts("shares: claim exceeds unfrozen shares"):
        eligible.claim(1, False, sender=recipient)


def test_claim__before_bottling__reverts(funded, holder):
    with ape.reverts("shares: cask not bottled"):
        funded.claim(1, False, sender=holder)


def test_claim__frozen_holder__reverts(bottling_ready, eligible, winery, holder, agent):
    eligible.transfer(holder, 1_000, sender=winery)
    declare(eligible, winery, 1_000)
    eligible.set_frozen(holder, True, sender=agent)
    with ape.reverts("shares: account is frozen"):
        eligible.claim(1, False, sender=holder)


def test_transfer__after_bottling__only_whole_bottles(bottling_ready, eligible, winery, holder, recipient):
    eligible.transfer(holder, 2_000, sender=winery)
    declare(eligible, winery, 1_000)
    with ape.reverts("shares: bottled, move whole bottles only"):
        eligible.transfer(recipient, 500, sender=holder)
    eligible.transfer(recipient, 1_000, sender=holder)
    assert eligible.balanceOf(recipient) == 1_000


def test_attack__claim_signed_for_another_cask__reverts(bottling_ready, eligible, create_cask, winery, holder,
                                                         chain_id):
    eligible.transfer(holder, 1_000, sender=winery)
    declare(eligible, winery, 1_000)
    other = create_cask()
    args = sign_claim(other, chain_id, holder, holder.address, 1, False)
    with ape.reverts("eip3009: invalid signature"):
        eligible.claim_with_authorization(*args, sender=holder)


def test_attack__transfer_authorization_replayed_as_claim__reverts(bottling_ready, eligible, winery, holder,
                                                                   relayer, chain_id):
    # The same nonce and fields under another typehash do not verify: a signed
    # transfer cannot be turned into a claim.
    eligible.transfer(holder, 1_000, sender=winery)
    declare(eligible, winery, 1_000)
    auth = _authorization(eligible, chain_id, holder, holder.address, 1)
    with ape.reverts("eip3009: invalid signature"):
        eligible.claim_with_authorization(holder, 1, False, 0, FAR, auth[5], *auth[6:], sender=relayer)


def test_pause__stops_bottle_claims_but_not_recovery(bottling_ready, eligible, winery, holder, agent, accounts):
    eligible.transfer(holder, 1_000, sender=winery)
    declare(eligible, winery, 1_000)
    eligible.pause(sender=agent)
    with ape.reverts("pausable: contract is paused"):
        eligible.claim(1, False, sender=holder)
    new = accounts[18]
    record_investor(eligible, agent, new.address, FRANCE, FAR)
    eligible.recover(holder, new, sender=agent)
    assert eligible.balanceOf(new) == 1_000


def test_recover__merged_remainders__never_exceed_the_fund(bottling_ready, eligible, winery, holder, recipient,
                                                          agent, stablecoin):
    # Two holders with remainders at the declaration; one loses its key and
    # its shares merge into the other's: the remainder fund still pays.
    eligible.transfer(holder, 1_700, sender=winery)
    eligible.transfer(recipient, 800, sender=winery)
    declare(eligible, winery, 1_000, price=1)
    eligible.recover(recipient, holder, sender=agent)  # 2,500: 2 bottles + 500
    before = stablecoin.balanceOf(holder)
    eligible.claim(2, True, sender=holder)
    assert stablecoin.balanceOf(holder) == before + 500
    b = eligible.bottling()
    assert b.remainder_paid <= b.remainder_fund and eligible.backing().covered
