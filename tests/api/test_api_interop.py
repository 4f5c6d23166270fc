"""Interop with an independent EIP-712 signer: every relayed self-custody
action is signed by ethers (npm; `tests/interop/sign_typed_data.mjs`) over
the typed data the API serves, posted to the relay, and must take effect on
chain. The API and the other tests sign with eth_account; a misreading of
EIP-712 that both sides of this project shared would pass them and fail here.

Each signature is also compared with eth_account's over the same payload:
both sign deterministically (RFC 6979), so two correct implementations give
the same bytes.

A pure test at the end builds each of our types' digests by hand, from
keccak(typeHash ‖ encoded fields), and holds eth_account's encoding (what
``amphora.eip712.digest`` returns) to it.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from api_fixtures import SCALE, USD, wait_for_status
from eth_account import Account
from eth_account.messages import encode_typed_data
from eth_utils import keccak, to_checksum_address

from amphora import eip712

#: The API fixtures (apps and clients on the test deployment).
pytest_plugins = ["api_fixtures"]

SIGNER = Path(__file__).resolve().parents[1] / "interop" / "sign_typed_data.mjs"
ORDER = keccak(text="deliver to 1 rue du Chai, Bordeaux")
REASON = keccak(text="police report 2026-118")
PRINCIPAL, REPAYMENT = 1_000 * USD, 1_050 * USD
DAY = 86_400


def _run_signer(payload: dict, private_key) -> subprocess.CompletedProcess:
    node = shutil.which("node")
    assert node, "node is not on PATH: the interop tests need Node.js and `npm install` (make install)"
    key = "0x" + bytes(Account.from_key(private_key).key).hex()
    return subprocess.run([node, str(SIGNER)], input=json.dumps(payload), capture_output=True, text=True,
                          env={**os.environ, "AMPHORA_SIGNER_KEY": key}, timeout=60, check=False)


def ethers_sign(payload: dict, private_key) -> str:
    """``payload`` signed by ethers' ``Wallet.signTypedData`` in a Node process
    (``node`` from PATH, ethers from the project's node_modules: ``make test``
    installs both), checked against eth_account's signature of the same payload."""
    result = _run_signer(payload, private_key)
    assert result.returncode == 0, f"ethers could not sign: {result.stderr}"
    signature = result.stdout.strip()
    assert re.fullmatch(r"0x[0-9a-f]{130}", signature), signature
    theirs = Account.sign_message(encode_typed_data(full_message=payload), private_key).signature
    assert signature == "0x" + bytes(theirs).hex()
    return signature


def _typed_data(client, path: str, **params) -> dict:
    response = client.get(path, params=params)
    assert response.status_code == 200, response.text
    return response.json()


def _relayed(client, path: str, body: dict) -> dict:
    """Post ``body`` to the relay; the request once confirmed on chain."""
    response = client.post(path, json=body)
    assert response.status_code == 202, response.text
    return wait_for_status(client, response.json()["request_id"], "confirmed")


@pytest.fixture
def claim_key():
    return Account.create()


def test_ethers_signer__primary_type_not_the_root_of_its_types__refused(holder):
    """The script must not pick a primary type of its own: a payload whose
    ``primaryType`` is not its types' root is an error, not a signature."""
    data = eip712.typed_data("Transfer", eip712.transfer_message(holder.address, holder.address, 1, 0, 1), 1,
                             holder.address)

    result = _run_signer({**data, "primaryType": "Flag"}, holder.private_key)

    assert result.returncode == 1 and result.stdout == ""
    assert "the types' primary type is Transfer, the payload says Flag" in result.stderr


# ------------------------------------------------------------ certificates


def test_transfer__signed_by_ethers__relayed_and_moved(client, cert, held_token, holder, recipient, deadline):
    data = _typed_data(client, "/relay/typed-data/transfer", **{
        "from": holder.address, "to": recipient.address, "token_id": held_token, "deadline": deadline})

    request = _relayed(client, "/relay/transfers", {
        "from": holder.address, "to": recipient.address, "token_id": held_token,
        "nonce": data["message"]["nonce"], "deadline": deadline,
        "signature": ethers_sign(data, holder.private_key)})

    assert request["actor"] == holder.address
    assert cert.ownerOf(held_token) == recipient.address
    assert cert.nonces(holder) == 1


def _holder_action(client, action: str, path: str, holder, token_id: int, deadline: int, **fields) -> dict:
    data = _typed_data(client, f"/relay/typed-data/{action}", holder=holder.address, token_id=token_id,
                       deadline=deadline, **fields)
    return _relayed(client, path, {
        "holder": holder.address, "token_id": token_id, "nonce": data["message"]["nonce"], "deadline": deadline,
        "signature": ethers_sign(data, holder.private_key), **fields})


@pytest.mark.parametrize("action, path, state", [
    ("gift", "/relay/gifts", "GIFT_PENDING"),
    ("redemption", "/relay/redemptions", "REDEMPTION_REQUESTED"),
    ("flag", "/relay/flags", "FLAGGED"),
])
def test_holder_action__signed_by_ethers__relayed_and_state_changed(
        client, cert, held_token, holder, claim_key, deadline, action, path, state):
    fields = {"gift": {"claim_key": claim_key.address, "expiry": deadline + DAY},
              "redemption": {"order_hash": "0x" + ORDER.hex()},
              "flag": {"reason_hash": "0x" + REASON.hex()}}[action]

    _holder_action(client, action, path, holder, held_token, deadline, **fields)

    assert cert.state_of(held_token) == getattr(cert, state)()
    assert cert.ownerOf(held_token) == holder.address
    assert cert.nonces(holder) == 1


def test_gift_revocation__signed_by_ethers__unlocks(client, cert, held_token, holder, claim_key, deadline):
    _holder_action(client, "gift", "/relay/gifts", holder, held_token, deadline,
                   claim_key=claim_key.address, expiry=deadline + DAY)

    _holder_action(client, "gift-revocation", "/relay/gift-revocations", holder, held_token, deadline)

    assert cert.state_of(held_token) == cert.ACTIVE()
    assert cert.nonces(holder) == 2


def test_gift_claim__claim_key_signature_by_ethers__certificate_moves(
        client, cert, held_token, holder, recipient, claim_key, deadline):
    _holder_action(client, "gift", "/relay/gifts", holder, held_token, deadline,
                   claim_key=claim_key.address, expiry=deadline + DAY)
    data = _typed_data(client, "/relay/typed-data/gift-claim", token_id=held_token, recipient=recipient.address)

    _relayed(client, "/relay/gift-claims", {"token_id": held_token, "recipient": recipient.address,
                                            "signature": ethers_sign(data, claim_key.key)})

    assert cert.ownerOf(held_token) == recipient.address
    assert cert.state_of(held_token) == cert.ACTIVE()


# ------------------------------------------------------------------ points


def test_points_transfer__authorization_signed_by_ethers__relayed_and_paid(
        client, deployed_points, issue_points, customer, merchant, chain):
    issue_points(customer, 10 * USD)
    value = 3 * USD * SCALE
    before = deployed_points.balanceOf(merchant), deployed_points.balanceOf(customer)
    valid_before = chain.pending_timestamp + 3_600
    data = _typed_data(client, "/relay/typed-data/points-transfer", **{
        "from": customer.address, "to": merchant.address, "value": value, "valid_before": valid_before})

    request = _relayed(client, "/relay/points-transfers", {
        "from": customer.address, "to": merchant.address, "value": value, "valid_after": 0,
        "valid_before": valid_before, "nonce": data["message"]["nonce"],
        "signature": ethers_sign(data, customer.private_key)})

    assert request["actor"] == customer.address
    assert (deployed_points.balanceOf(merchant), deployed_points.balanceOf(customer)) == (
        before[0] + value, before[1] - value)
    assert deployed_points.authorizationState(customer, data["message"]["nonce"]) is True


# ----------------------------------------------------------------- lending


@pytest.fixture
def lending(project, manifest):
    return project.PledgeLending.at(manifest.address("PledgeLending"))


@pytest.fixture
def ethers_loan(client, chain, lending, deployed_stablecoin, mint_stablecoin, held_token, holder, lender) -> int:
    """A loan on ``held_token``: the lender's offer and the borrower's
    acceptance both signed by ethers, posted to the board and relayed. Its id."""
    mint_stablecoin(lender, PRINCIPAL)
    deployed_stablecoin.approve(lending, PRINCIPAL, sender=lender)
    lot_id = held_token >> 32
    terms = {"lot_id": lot_id, "token_id": held_token, "principal": PRINCIPAL, "repayment": REPAYMENT,
             "duration": 30 * DAY, "grace_period": 7 * DAY, "expiry": chain.pending_timestamp + DAY, "nonce": 7}
    offer_data = _typed_data(client, "/relay/typed-data/loan-offer", lender=lender.address, **terms)
    offer = {"lender": lender.address, "currency": deployed_stablecoin.address, "max_ltv_bps": 0, **terms}
    posted = client.post("/offers", json={"offer": offer, "signature": ethers_sign(offer_data, lender.private_key)})
    assert posted.status_code == 201, posted.text
    deadline = chain.pending_timestamp + 3_600
    acceptance = _typed_data(client, "/relay/typed-data/loan-acceptance", offer_hash=posted.json()["offer_hash"],
                             token_id=held_token, borrower=holder.address, deadline=deadline)

    _relayed(client, "/relay/loan-acceptances", {
        "offer": offer, "lender_signature": posted.json()["signature"], "token_id": held_token,
        "borrower": holder.address, "deadline": deadline,
        "borrower_signature": ethers_sign(acceptance, holder.private_key)})

    return int(client.get(f"/collateral/{held_token}").json()["loan"]["loan_id"])


def test_loan_acceptance__offer_and_acceptance_signed_by_ethers__pledged_and_paid(
        ethers_loan, cert, lending, deployed_stablecoin, held_token, holder, lender):
    loan = lending.loan(ethers_loan)

    assert (loan.state, loan.lender, loan.borrower) == (lending.LOAN_OPEN(), lender.address, holder.address)
    assert (loan.principal, loan.repayment) == (PRINCIPAL, REPAYMENT)
    assert cert.state_of(held_token) == cert.PLEDGED()
    assert deployed_stablecoin.balanceOf(holder) == PRINCIPAL


def test_loan_extension__both_signatures_by_ethers__due_date_and_repayment_move(
        client, ethers_loan, lending, chain, holder, lender):
    due_at, repayment, deadline = lending.loan(ethers_loan).due_at + 10 * DAY, REPAYMENT + 20 * USD, \
        chain.pending_timestamp + 3_600
    data = _typed_data(client, "/relay/typed-data/loan-extension", loan_id=ethers_loan, due_at=due_at,
                       repayment=repayment, deadline=deadline)

    _relayed(client, "/relay/loan-extensions", {
        "loan_id": ethers_loan, "due_at": due_at, "repayment": repayment, "deadline": deadline,
        "lender_signature": ethers_sign(data, lender.private_key),
        "borrower_signature": ethers_sign(data, holder.private_key)})

    loan = lending.loan(ethers_loan)
    assert (loan.due_at, loan.repayment, loan.state) == (due_at, repayment, lending.LOAN_OPEN())


def test_loan_repayment__authorization_signed_by_ethers__repaid_without_gas_or_allowance(
        client, ethers_loan, cert, lending, deployed_stablecoin, mint_stablecoin, chain, w3, held_token, holder,
        lender):
    mint_stablecoin(holder, REPAYMENT - PRINCIPAL)  # the interest; the principal is the loan's
    assert deployed_stablecoin.allowance(holder, lending) == 0
    lender_before, eth_before = deployed_stablecoin.balanceOf(lender), w3.eth.get_balance(holder.address)
    valid_before = chain.pending_timestamp + 3_600
    data = _typed_data(client, "/relay/typed-data/loan-repayment", loan_id=ethers_loan, payer=holder.address,
                       valid_before=valid_before)

    _relayed(client, "/relay/loan-repayments", {
        "loan_id": ethers_loan, "payer": holder.address, "valid_after": 0, "valid_before": valid_before,
        "signature": ethers_sign(data, holder.private_key)})

    assert lending.loan(ethers_loan).state == lending.LOAN_REPAID()
    assert cert.state_of(held_token) == cert.ACTIVE() and cert.ownerOf(held_token) == holder.address
    assert deployed_stablecoin.balanceOf(lender) == lender_before + REPAYMENT
    assert deployed_stablecoin.balanceOf(holder) == 0
    assert w3.eth.get_balance(holder.address) == eth_before


# ---------------------------------------------------- digests, by hand

_CONTRACT = to_checksum_address("0x" + keccak(text="verifying contract").hex()[:40])


def _value(solidity_type: str, name: str):
    """A sample value for a field: full-width, different for every field name."""
    seed = keccak(text=name)
    if solidity_type == "address":
        return to_checksum_address("0x" + seed.hex()[:40])
    if solidity_type == "uint256":
        return int.from_bytes(seed, "big")
    if solidity_type == "bool":
        return True  # false encodes as zero, like an absent field: true shows the encoding
    assert solidity_type == "bytes32", solidity_type
    return seed


def _encode(solidity_type: str, value) -> bytes:
    if solidity_type == "address":
        return bytes(12) + bytes.fromhex(value[2:])
    if solidity_type == "uint256":
        return int(value).to_bytes(32, "big")
    if solidity_type == "bool":
        return (1 if value else 0).to_bytes(32, "big")
    return bytes(value)


def _hand_digest(primary_type: str, message: dict, name: str, version: str, chain_id: int, contract: str) -> bytes:
    fields = eip712.TYPES[primary_type]
    type_hash = keccak(text=f"{primary_type}({','.join(f['type'] + ' ' + f['name'] for f in fields)})")
    struct_hash = keccak(type_hash + b"".join(_encode(f["type"], message[f["name"]]) for f in fields))
    domain_hash = keccak(
        keccak(text="EIP712Domain(string name,string version,uint256 chainId,address verifyingContract)")
        + keccak(text=name) + keccak(text=version) + chain_id.to_bytes(32, "big") + _encode("address", contract))
    return keccak(b"\x19\x01" + domain_hash + struct_hash)


@pytest.mark.parametrize("as_served", [False, True], ids=["python values", "as the API serves them"])
@pytest.mark.parametrize("primary_type", sorted(eip712.TYPES))
def test_digest__eth_account_encoding__equals_keccak_of_typehash_and_fields_by_hand(primary_type, as_served):
    message = {f["name"]: _value(f["type"], f["name"]) for f in eip712.TYPES[primary_type]}
    data = eip712.typed_data(primary_type, message, 2**64 + 1, _CONTRACT, name="Amphora Interop", version="7")
    if as_served:  # JSON: numbers as decimal strings, bytes as 0x hex
        data = {**data, "message": {k: "0x" + v.hex() if isinstance(v, bytes) else v if isinstance(v, bool)
                                    else str(v) for k, v in message.items()}}

    expected = _hand_digest(primary_type, message, "Amphora Interop", "7", 2**64 + 1, _CONTRACT)

    assert eip712.digest(data) == expected
    assert all(f["type"] in ("address", "uint256", "bytes32", "bool") for f in eip712.TYPES[primary_type])
