"""Business transactions of wallet accounts: the service prepares, the wallet sends.

A business whose key is in its own browser wallet (``users.kind = 'wallet'``)
acts on chain like a custodial one, from its own address, but the service has
no key to sign with. So where :class:`api.business.BusinessSender` would sign,
it prepares instead (:meth:`WalletTransactions.prepare`):

1. the call is simulated from the wallet's address, exactly as for a custodial
   account: one that would revert is refused with the contract's reason (409
   ``would_revert``) and nothing is prepared;
2. the transaction (``to``, ``data``, ``value``, ``chainId``, ``gas``) is kept
   in the database under a random 128-bit id, bound to the account, usable once
   and for :data:`PREPARED_TTL_SECONDS`; the route answers 409
   ``wallet_must_send`` (:class:`WalletSendRequired`) naming it in the
   ``Amphora-Prepared-Transaction`` header;
3. the wallet sends it (``eth_sendTransaction``) and pays its gas; the client
   reports the hash (``POST /me/business/transactions/{id}/sent``), and
   :meth:`WalletTransactions.confirm` checks that the node's transaction of that
   hash is the prepared one (same sender, contract, data, value and chain),
   spends the id and waits for the receipt: the outcome, or
   :class:`api.business.TransactionFailed` in words when it reverted.

Which checks stop which attack (each has a test in tests/web/test_console_wallet.py):
another account's id is unknown to this one (404, the same answer as a made-up
id); a hash of another transaction (other data, sender or contract) is refused
and leaves the id usable; an id reported with a second, different hash is
refused (one prepared action, one transaction); an expired id is refused.
Reporting the same hash again only reads its receipt again (a retry after a
timeout).
"""

from __future__ import annotations

import logging
import secrets
import time
from dataclasses import dataclass
from typing import Any

from eth_utils import to_checksum_address
from hexbytes import HexBytes
from web3.contract.contract import ContractFunction
from web3.exceptions import ContractLogicError, TimeExhausted, TransactionNotFound
from web3.types import Nonce, TxParams, Wei

from api.chain import ChainService, node_errors, revert_reason
from api.errors import AmphoraError, InvalidRequest, NotFound, WouldRevert
from api.users import User
from storage.db import Database

logger = logging.getLogger(__name__)

SCHEMA = """
CREATE TABLE IF NOT EXISTS business_wallet_transactions (
    id TEXT PRIMARY KEY,
    user_id TEXT NOT NULL,
    sender TEXT NOT NULL,
    target TEXT NOT NULL,
    data TEXT NOT NULL,
    value TEXT NOT NULL,
    chain_id BIGINT NOT NULL,
    gas BIGINT NOT NULL,
    subject TEXT NOT NULL,
    function TEXT NOT NULL,
    expires_at DOUBLE PRECISION NOT NULL,
    used_at DOUBLE PRECISION,
    tx_hash TEXT
);
CREATE INDEX IF NOT EXISTS business_wallet_transactions_by_expiry ON business_wallet_transactions (expires_at)
"""

#: How long a prepared transaction can be sent and reported (seconds): time to read, confirm and send.
PREPARED_TTL_SECONDS = 15 * 60
#: Gas above the node's estimate, in percent (as for custodial sends).
GAS_MARGIN_PERCENT = 25
#: Seconds to wait for the receipt of a reported transaction before answering that it is still pending.
RECEIPT_TIMEOUT = 30.0
#: The response header naming a prepared transaction.
PREPARED_HEADER = "Amphora-Prepared-Transaction"
#: A prepared transaction's id: 32 lower-case hex digits.
ID_CHARS = 32


@dataclass(frozen=True)
class Prepared:
    """A transaction prepared for a wallet account to send from its own address."""

    id: str
    sender: str
    to: str
    data: str
    value: int
    chain_id: int
    gas: int
    subject: str
    expires_at: float
    #: The contract function it calls (``flag``, ``post_appraisal``, …): what the page says it does.
    function: str = ""
    #: The hash reported for it (once reported, the id takes no other).
    tx_hash: str | None = None


@dataclass(frozen=True)
class Reported:
    """A reported transaction's outcome: ``block_number`` None while still pending."""

    tx_hash: str
    block_number: int | None
    logs: tuple[Any, ...] = ()


class WalletSendRequired(AmphoraError):
    status_code = 409
    code = "wallet_must_send"
    meaning = ("This is a wallet account: the service holds no key and cannot sign. The call was simulated and "
               "would succeed; the transaction is prepared and named by the `Amphora-Prepared-Transaction` "
               "header: read it at `GET /me/business/transactions/{id}`, send it from the account's wallet "
               "(`eth_sendTransaction`, the wallet pays the gas), then report its hash to "
               "`POST /me/business/transactions/{id}/sent`. Nothing was sent yet.")

    def __init__(self, prepared: Prepared) -> None:
        super().__init__(f"{prepared.sender} is a wallet account: send prepared transaction {prepared.id} from the "
                         f"wallet (GET /me/business/transactions/{prepared.id}), then report its hash to "
                         f"POST /me/business/transactions/{prepared.id}/sent within "
                         f"{PREPARED_TTL_SECONDS // 60} minutes", headers={PREPARED_HEADER: prepared.id})
        self.prepared = prepared


class TransactionMismatch(AmphoraError):
    status_code = 409
    code = "transaction_mismatch"
    meaning = ("The reported transaction is not the prepared one (another sender, contract, data, value or chain), "
               "or the prepared transaction was already reported with another hash, or it expired. `detail` says "
               "which. A mismatch leaves the prepared transaction as it was.")


def _row(row: Any) -> Prepared:
    return Prepared(id=str(row["id"]), sender=str(row["sender"]), to=str(row["target"]), data=str(row["data"]),
                    value=int(row["value"]), chain_id=int(row["chain_id"]), gas=int(row["gas"]),
                    subject=str(row["subject"]), expires_at=float(row["expires_at"]), function=str(row["function"]),
                    tx_hash=None if row["tx_hash"] is None else str(row["tx_hash"]))


def _hex(value: Any) -> str:
    return "0x" + bytes(HexBytes(value)).hex()


class WalletTransactions:
    """The transactions prepared for wallet accounts, in the service's database
    (every instance sees them, so the report may land on another one)."""

    def __init__(self, db: Database, chain: ChainService, receipt_timeout: float = RECEIPT_TIMEOUT,
                 ttl: float = PREPARED_TTL_SECONDS) -> None:
        self._db = db
        self._chain = chain
        self._receipt_timeout = receipt_timeout
        #: Seconds a prepared transaction can be sent and reported (:data:`PREPARED_TTL_SECONDS`; tests shorten it).
        self._ttl = ttl
        db.migrate(SCHEMA)

    def prepare(self, user: User, call: ContractFunction, subject: str) -> Prepared:
        """Simulate ``call`` from ``user``'s address (:class:`WouldRevert` with
        the contract's reason, nothing prepared) and keep the transaction to send."""
        sender = to_checksum_address(user.address)
        with node_errors(subject):
            try:
                gas = call.estimate_gas({"from": sender}, block_identifier="pending")
            except ContractLogicError as err:
                raise WouldRevert(revert_reason(err)) from err
            # Fixed fee fields and nonce only so that web3 does not ask the node: the wallet picks its own.
            params: TxParams = {"from": sender, "chainId": self._chain.chain_id, "nonce": Nonce(0), "gas": gas,
                                "maxFeePerGas": Wei(1), "maxPriorityFeePerGas": Wei(1)}
            built = call.build_transaction(params)
        now = time.time()
        prepared = Prepared(id=secrets.token_hex(ID_CHARS // 2), sender=sender, to=to_checksum_address(built["to"]),
                            data=_hex(built["data"]), value=int(built.get("value", 0)),
                            chain_id=self._chain.chain_id, gas=gas * (100 + GAS_MARGIN_PERCENT) // 100,
                            subject=subject, expires_at=float(int(now) + self._ttl),
                            function=call.fn_name)
        with self._db.transaction() as tx:
            tx.execute("DELETE FROM business_wallet_transactions WHERE expires_at < ?", (now - PREPARED_TTL_SECONDS,))
            tx.execute("INSERT INTO business_wallet_transactions (id, user_id, sender, target, data, value, chain_id, "
                       "gas, subject, function, expires_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                       (prepared.id, str(user.id), prepared.sender, prepared.to, prepared.data, str(prepared.value),
                        prepared.chain_id, prepared.gas, subject, prepared.function, prepared.expires_at))
        return prepared

    def _mine(self, user: User, prepared_id: str) -> Any:
        if len(prepared_id) != ID_CHARS or not all(c in "0123456789abcdef" for c in prepared_id):
            raise NotFound("no such prepared transaction for this account")
        with self._db.read() as tx:
            row = tx.one("SELECT * FROM business_wallet_transactions WHERE id = ? AND user_id = ?",
                         (prepared_id, str(user.id)))
        if row is None:  # another account's id answers exactly like a made-up one
            raise NotFound("no such prepared transaction for this account")
        return row

    def get(self, user: User, prepared_id: str) -> Prepared:
        """``user``'s prepared transaction ``prepared_id``; 404 for any other."""
        return _row(self._mine(user, prepared_id))

    def expiry(self, prepared_id: str) -> float | None:
        """When prepared transaction ``prepared_id`` expires (None when unknown): for the service's own
        bookkeeping (an issuance job awaiting it), never an account's answer."""
        with self._db.read() as tx:
            row = tx.one("SELECT expires_at FROM business_wallet_transactions WHERE id = ?", (prepared_id,))
        return None if row is None else float(row["expires_at"])

    def confirm(self, user: User, prepared_id: str, tx_hash: str) -> Reported:
        """Check that ``tx_hash`` is the prepared transaction as the node has it,
        spend the id, and wait for the receipt. :class:`TransactionMismatch` (the
        id left as it was) for another transaction; :class:`InvalidRequest` for a
        hash the node does not know; :class:`api.business.TransactionFailed`
        when it reverted on chain."""
        from api.business import TransactionFailed  # the sender imports this module

        row = self._mine(user, prepared_id)
        prepared = _row(row)
        tx_hash = tx_hash.lower()
        if row["used_at"] is not None and row["tx_hash"] != tx_hash:
            raise TransactionMismatch(f"prepared transaction {prepared_id} was already reported with another "
                                      "transaction: one prepared action is one transaction; prepare it again")
        if row["used_at"] is None and prepared.expires_at <= time.time():
            raise TransactionMismatch(f"prepared transaction {prepared_id} has expired: prepare it again (a "
                                      "transaction sent anyway is on chain; the activity shows it)")
        w3 = self._chain.w3
        with node_errors(prepared.subject):
            try:
                sent = w3.eth.get_transaction(HexBytes(tx_hash))
            except TransactionNotFound as err:
                raise InvalidRequest(f"tx_hash: the node knows no transaction {tx_hash}: send it from the wallet "
                                     "first, then report its hash") from err
        differences = [name for name, ours, theirs in (
            ("sender", prepared.sender.lower(), str(sent.get("from", "")).lower()),
            ("contract", prepared.to.lower(), str(sent.get("to") or "").lower()),
            ("data", prepared.data, _hex(sent.get("input", b""))),
            ("value", prepared.value, int(sent.get("value", 0))),
            ("chain", prepared.chain_id, int(sent.get("chainId", prepared.chain_id))),
        ) if ours != theirs]
        if differences:
            raise TransactionMismatch(f"transaction {tx_hash} is not prepared transaction {prepared_id}: its "
                                      f"{', '.join(differences)} differ; nothing was recorded")
        if row["used_at"] is None:
            with self._db.transaction() as tx:
                spent = tx.one("UPDATE business_wallet_transactions SET used_at = ?, tx_hash = ? WHERE id = ? "
                               "AND used_at IS NULL RETURNING id", (time.time(), tx_hash, prepared_id))
            if spent is None:  # another report spent it since the read: the same hash may read its receipt
                with self._db.read() as tx:
                    again = tx.one("SELECT tx_hash FROM business_wallet_transactions WHERE id = ?", (prepared_id,))
                if again is None or again["tx_hash"] != tx_hash:
                    raise TransactionMismatch(f"prepared transaction {prepared_id} was already reported with "
                                              "another transaction: prepare it again")
        with node_errors(prepared.subject):
            try:
                receipt = w3.eth.wait_for_transaction_receipt(HexBytes(tx_hash), timeout=self._receipt_timeout)
            except TimeExhausted:
                logger.warning("wallet business transaction %s from %s still pending", tx_hash, prepared.sender)
                return Reported(tx_hash, None)
        if int(receipt["status"]) != 1:
            raise TransactionFailed(f"transaction {tx_hash} from {prepared.sender} reverted on chain: nothing "
                                    "changed but the gas the wallet paid")
        logger.info("wallet business transaction %s from %s in block %d", tx_hash, prepared.sender,
                    receipt["blockNumber"])
        return Reported(tx_hash, int(receipt["blockNumber"]), tuple(receipt["logs"]))
