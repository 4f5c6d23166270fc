"""The businesses' side of the service: which roles an address holds on chain,
and how the service acts for a custodial business account.

A winery, a cellar, an appraiser or a merchant logs in like a holder. What its
console shows follows the roles its address holds *on chain*
(:func:`roles_of`: ``WineCertificate.is_issuer`` / ``is_custodian``,
``PledgeLending.is_appraiser``, ``PointsToken.merchants(..).active``); the
contracts stay the authority, so a role granted or revoked on chain shows at
the next page.

The actions of those roles (issue a lot, confirm a delivery, post a reserve
root or an appraisal, issue points) are calls the contracts accept only from
the role holder itself, so the relayer cannot send them for the account.
:class:`BusinessSender` signs them with the custodial account's own key and
sends them from its own address, which pays the gas from its own balance (a
business funds its address; the relayer sponsors holders only). For a wallet
account it prepares the transaction for the wallet to send instead
(:mod:`api.business_wallet`). Every call is
simulated first: one that would revert is refused with the contract's reason
(409 ``would_revert``) and nothing is sent; an address too poor to pay the gas
is refused in words (409 ``gas_unfunded``). Sends from one address are
serialised in this process, so two clicks cannot take the same nonce.
"""

from __future__ import annotations

import logging
import threading
from collections import defaultdict
from dataclasses import dataclass
from typing import Any

from eth_utils import to_checksum_address
from hexbytes import HexBytes
from web3.contract.contract import ContractFunction
from web3.exceptions import ContractLogicError, TimeExhausted, Web3RPCError
from web3.types import Wei

from api.business_wallet import WalletSendRequired, WalletTransactions
from api.chain import CERTIFICATE, LENDING, POINTS, BlockRef, ChainService, node_errors, revert_reason
from api.errors import AmphoraError, Forbidden, WouldRevert
from api.users import User, UserStore

logger = logging.getLogger(__name__)

#: The roles a console has a section for, in the order it shows them. ``lender`` needs no grant:
#: anyone with stablecoin may offer loans.
ROLES = ("issuer", "custodian", "appraiser", "lender", "merchant")
#: Seconds to wait for a business transaction's receipt before answering that it is still pending.
RECEIPT_TIMEOUT = 30.0
#: Calls after whose receipt the service keeps something the transaction depends on (a lot's tag keys, made
#: for this transaction and kept once its lot id is known): a wallet account cannot send them in one request
#: (403); its lots are issued by a background job (:mod:`api.jobs`), which prepares and watches the chain.
WALLET_UNSUPPORTED = frozenset({"issue_lot"})
#: Gas above the node's estimate, in percent: a transaction that lands in a later block may need more.
GAS_MARGIN_PERCENT = 25


class GasUnfunded(AmphoraError):
    status_code = 409
    code = "gas_unfunded"
    meaning = ("The account's own address has too little ETH to pay for this transaction's gas: a business "
               "account pays its own gas (the relayer sponsors holders only). `detail` names the address to fund. "
               "Nothing was sent.")


class TransactionFailed(AmphoraError):
    status_code = 502
    code = "transaction_failed"
    meaning = ("The transaction was sent from the account's address but reverted on chain (the chain changed "
               "between the check and the block); `detail` names the transaction. Nothing changed but the gas paid.")


@dataclass(frozen=True)
class Roles:
    """The roles ``address`` holds at ``block``."""

    address: str
    block: BlockRef
    issuer: bool
    custodian: bool
    appraiser: bool
    merchant: bool
    #: Anyone may lend: the console always offers the lender's section.
    lender: bool = True

    def held(self) -> tuple[str, ...]:
        """The names of the roles held, in :data:`ROLES` order."""
        return tuple(role for role in ROLES if getattr(self, role))

    def require(self, role: str) -> None:
        """:class:`Forbidden`, in words, unless the address holds ``role``."""
        if role not in ROLES:
            raise ValueError(f"unknown role {role!r}")
        if not getattr(self, role):
            raise Forbidden(f"{self.address} does not hold the {role} role on chain: an operator grants it "
                            "(`ape run roles`), and the contract would refuse the action without it")


def roles_of(chain: ChainService, address: str) -> Roles:
    """The roles ``address`` holds, read from the contracts at one block (named
    by its hash, so a grant landing between two reads cannot mix states). A
    contract missing from the deployment (no lending, no points) grants nothing."""
    account = to_checksum_address(address)
    block = chain.latest_block_ref()
    at = HexBytes(block.hash)
    certificate = chain.certificate_contract
    with node_errors():
        issuer = bool(certificate.functions.is_issuer(account).call(block_identifier=at))
        custodian = bool(certificate.functions.is_custodian(account).call(block_identifier=at))
    appraiser = merchant = False
    lending = chain.contract(LENDING)
    if lending is not None:
        with node_errors("the lending contract"):
            appraiser = bool(lending.functions.is_appraiser(account).call(block_identifier=at))
    points = chain.contract(POINTS)
    if points is not None:
        with node_errors("the points contract"):
            merchant = bool(points.functions.merchants(account).call(block_identifier=at)[1])  # (name, active, ...)
    return Roles(account, block, issuer=issuer, custodian=custodian, appraiser=appraiser, merchant=merchant)


@dataclass(frozen=True)
class Sent:
    """A business transaction the service signed and sent for an account."""

    tx_hash: str
    #: The block it landed in; None while still pending after :data:`RECEIPT_TIMEOUT`.
    block_number: int | None
    #: The receipt's logs (decoded by the caller when it needs an event's values).
    logs: tuple[Any, ...] = ()


class BusinessSender:
    """Signs and sends a custodial business account's contract calls from its own address."""

    def __init__(self, chain: ChainService, users: UserStore, receipt_timeout: float = RECEIPT_TIMEOUT,
                 wallet: WalletTransactions | None = None) -> None:
        self._chain = chain
        self._users = users
        #: Where a wallet account's transactions are prepared for its wallet to send (None: refused, 403).
        self.wallet = wallet
        self._receipt_timeout = receipt_timeout
        self._locks: defaultdict[str, threading.Lock] = defaultdict(threading.Lock)
        self._locks_guard = threading.Lock()

    @staticmethod
    def require_sendable(user: User, function: str) -> None:
        """:class:`Forbidden`, in words, when ``user`` is a wallet account and ``function`` is one
        the service must send itself (:data:`WALLET_UNSUPPORTED`); before any work is done for it."""
        if user.wallet and function in WALLET_UNSUPPORTED:
            raise Forbidden(f"{function} cannot be sent from a wallet account in one request: the service keeps "
                            "what it depends on (a lot's tag keys) only once it sees the lot land; issue it as a "
                            "background job (POST /issuer/lot-jobs), which prepares it for the wallet and watches "
                            "the chain")

    def _lock(self, address: str) -> threading.Lock:
        with self._locks_guard:
            return self._locks[address.lower()]

    def send(self, user: User, call: ContractFunction, subject: str = CERTIFICATE) -> Sent:
        """Simulate ``call`` from ``user``'s address, then sign it with the
        account's key and send it; wait for its receipt. :class:`WouldRevert`
        (nothing sent) with the contract's reason, :class:`GasUnfunded` when the
        address cannot pay, :class:`TransactionFailed` when it reverted on chain.
        A wallet account's call is simulated and prepared for its wallet to send
        instead: :class:`api.business_wallet.WalletSendRequired` names it."""
        if user.wallet and self.wallet is not None:
            self.require_sendable(user, call.fn_name)
            raise WalletSendRequired(self.wallet.prepare(user, call, subject))
        w3 = self._chain.w3
        sender = to_checksum_address(user.address)
        with self._lock(sender):
            with node_errors(subject):
                try:
                    gas = call.estimate_gas({"from": sender}, block_identifier="pending")
                except ContractLogicError as err:
                    raise WouldRevert(revert_reason(err)) from err
                fees = w3.eth.fee_history(1, "latest", [50])
                base = int(fees["baseFeePerGas"][-1])
                tip = int(w3.eth.max_priority_fee)
                limit, max_fee = gas * (100 + GAS_MARGIN_PERCENT) // 100, 2 * base + tip
                transaction = dict(call.build_transaction({
                    "from": sender, "chainId": self._chain.chain_id,
                    "nonce": w3.eth.get_transaction_count(sender, "pending"),
                    "gas": limit, "maxFeePerGas": Wei(max_fee), "maxPriorityFeePerGas": Wei(tip),
                }))
                balance = int(w3.eth.get_balance(sender, "pending"))
                if balance < limit * max_fee:
                    raise GasUnfunded(f"{sender} has too little ETH to pay the gas of this transaction: fund it "
                                      "(a business account pays its own gas)")
                raw = self._users.sign_transaction(user, transaction)
                try:
                    tx_hash = w3.eth.send_raw_transaction(raw)
                except Web3RPCError as err:
                    if "insufficient funds" in (err.message or "").lower():
                        raise GasUnfunded(f"{sender} has too little ETH to pay the gas of this transaction: "
                                          "fund it") from err
                    raise
                try:
                    receipt = w3.eth.wait_for_transaction_receipt(tx_hash, timeout=self._receipt_timeout)
                except TimeExhausted:
                    logger.warning("business transaction %s from %s still pending", tx_hash.hex(), sender)
                    return Sent("0x" + bytes(tx_hash).hex(), None)
        hex_hash = "0x" + bytes(tx_hash).hex()
        if int(receipt["status"]) != 1:
            raise TransactionFailed(f"transaction {hex_hash} from {sender} reverted on chain")
        logger.info("business transaction %s from %s in block %d", hex_hash, sender, receipt["blockNumber"])
        return Sent(hex_hash, int(receipt["blockNumber"]), tuple(receipt["logs"]))

