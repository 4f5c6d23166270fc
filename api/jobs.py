"""The winery's issuance as a background job, with its progress in the database.

A lot of up to :data:`api.issuer.MAX_BOTTLES_JOB` bottles takes tens of seconds
to issue (a fresh tag key per bottle, their Merkle tree, the transaction), too
long for one request. ``POST /issuer/lot-jobs`` checks the document, reserves it
(:class:`api.issuer.TagKeyVault`: a document is issued at most once) and answers
at once; a thread of the API process then runs the steps, writing after each
thousand bottles how far it got, so a reload of the progress page, or another
API instance sharing the database, reads the same state:

``keys``   tag keys made (done/total: bottles)
``tree``   the tag tree and its proofs built (done/total: bottles)
``send``   the lot sent and confirmed on chain (:class:`api.business.BusinessSender`)
``wallet`` (a wallet account, instead of ``send``) the ``issue_lot`` transaction
           prepared for the account's own wallet (``prepared_id``,
           :mod:`api.business_wallet`), and the chain watched for the lot
``labels`` the keys sealed under the lot and its document deposited, so the
           bottles file and the label sheets are ready

A job is ``queued``, ``running`` (with its step and counts), ``done`` (lot id,
transaction) or ``failed`` (an error code and the reason in words). Nothing is
half-kept: when the lot was not sent the reservation and the keys are released,
so the issuer may start again. The keys are sealed (staged) before the send,
so a lot that lands while the service stops keeps them.

One issuer account runs one job at a time (409 ``job_running``). A job survives
no restart: at start-up, :meth:`IssuanceJobs.recover` ends the jobs a stopped
process left unfinished. The chain is the authority: when the lot did land (a
``LotIssued`` event from the issuer with the document's hash) the job ends done
with the staged keys; otherwise it ends failed, "the service restarted", and the
document is released.

A wallet account (``users.kind = 'wallet'``) holds its own key, so the service
cannot send its lot. Its job makes and stages the keys as above, then prepares
the call for the wallet (simulated first: a refusal ends the job failed, nothing
kept) and watches the chain, not the wallet's report (which may never come),
for the issuer's ``LotIssued`` with the document's hash, about once a second
until the prepared transaction expires (plus :data:`WALLET_GRACE_SECONDS` for
one sent at the last moment). When it lands the staged keys are adopted under
the lot and the job ends done as a custodial one; when it does not, the job
ends failed (``wallet_expired``) and the document and keys are released. After
a restart, such a job whose lot has not landed and whose prepared transaction is
still valid is watched again rather than ended.
"""

from __future__ import annotations

import json
import logging
import secrets
import threading
import time
from dataclasses import dataclass
from typing import Any

from eth_typing import HexStr
from web3.exceptions import TimeExhausted

from amphora import lots
from api.business import BusinessSender, Sent, TransactionFailed
from api.chain import CERTIFICATE, ChainService, node_errors
from api.errors import AmphoraError, Conflict, Forbidden
from api.issuer import TagKeyVault, issue_call, issued_lot_id
from api.settings import Settings
from api.users import User
from storage.db import Database, Row, Store

logger = logging.getLogger(__name__)

#: The steps of an issuance, in order.
STEPS = ("keys", "tree", "send", "labels")
#: The step a wallet account's job waits in instead of ``send``: its wallet sends the prepared transaction.
WALLET_STEP = "wallet"
#: Seconds between two looks at the chain while a wallet account's lot is awaited.
WALLET_POLL_SECONDS = 1.0
#: Seconds the chain is still watched after the prepared transaction expired (one sent at the last moment).
WALLET_GRACE_SECONDS = 60.0
#: Seconds between two writes of a waiting wallet job's ``updated_at`` (well under :data:`STALE_SECONDS`).
WALLET_TOUCH_SECONDS = 30.0
#: The reason a wallet account's job ends with when its lot did not land in time.
WALLET_EXPIRED = ("the lot was not sent from the wallet in time: nothing was kept and the document is free again; "
                  "start the issuance again")
#: On a database shared by several instances (PostgreSQL), a job whose progress was not written for this long
#: is taken for one a stopped instance left behind (longer than any step's silence: the receipt wait).
STALE_SECONDS = 600.0
#: How long the job waits for its transaction's receipt after the sender's own wait ran out.
RECEIPT_WAIT_SECONDS = 300.0
#: The reason a job left unfinished by a stopped service ends with.
RESTARTED = "the service restarted before the lot was issued; nothing was kept, start the issuance again"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS issuer_jobs (
    job_id TEXT PRIMARY KEY,
    chain_id BIGINT NOT NULL,
    issuer TEXT NOT NULL,
    state TEXT NOT NULL,
    step TEXT,
    done BIGINT NOT NULL,
    total BIGINT NOT NULL,
    bottle_count BIGINT NOT NULL,
    metadata_hash TEXT NOT NULL,
    document TEXT NOT NULL,
    from_block BIGINT NOT NULL,
    lot_id BIGINT,
    tx_hash TEXT,
    block_number BIGINT,
    error TEXT,
    reason TEXT,
    prepared_id TEXT,
    created_at DOUBLE PRECISION NOT NULL,
    updated_at DOUBLE PRECISION NOT NULL
);
CREATE INDEX IF NOT EXISTS issuer_jobs_by_issuer ON issuer_jobs (chain_id, issuer, created_at);
CREATE UNIQUE INDEX IF NOT EXISTS issuer_jobs_one_active ON issuer_jobs (chain_id, issuer)
    WHERE state IN ('queued', 'running')
"""


class JobRunning(Conflict):
    code = "job_running"
    meaning = ("This issuer account is already issuing a lot: one issuance runs at a time per account. `detail` "
               "names the running job; start the next one when it has ended.")


@dataclass(frozen=True)
class Job:
    """One issuance job as stored."""

    job_id: str
    chain_id: int
    issuer: str
    state: str
    step: str | None
    done: int
    total: int
    bottle_count: int
    metadata_hash: str
    #: Whether the document is a version 2 one (its lot has an e-label and label sheets).
    labelled: bool
    from_block: int
    lot_id: int | None
    tx_hash: str | None
    block_number: int | None
    error: str | None
    reason: str | None
    created_at: float
    updated_at: float
    #: A wallet account's job: the id of the ``issue_lot`` transaction prepared for its wallet.
    prepared_id: str | None = None

    @classmethod
    def of(cls, row: Row) -> Job:
        return cls(job_id=row["job_id"], chain_id=int(row["chain_id"]), issuer=row["issuer"], state=row["state"],
                   step=row["step"], done=int(row["done"]), total=int(row["total"]),
                   bottle_count=int(row["bottle_count"]), metadata_hash=row["metadata_hash"],
                   labelled=lots.is_v2(json.loads(row["document"])),
                   from_block=int(row["from_block"]),
                   lot_id=None if row["lot_id"] is None else int(row["lot_id"]), tx_hash=row["tx_hash"],
                   block_number=None if row["block_number"] is None else int(row["block_number"]),
                   error=row["error"], reason=row["reason"], created_at=float(row["created_at"]),
                   updated_at=float(row["updated_at"]), prepared_id=row["prepared_id"])


class _Failed(Exception):
    """A job's end in failure: its error code and reason."""

    def __init__(self, code: str, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason


class IssuanceJobs(Store):
    """Issuance jobs: their table, and the threads that run them in this process."""

    def __init__(self, db: Database, chain: ChainService, sender: BusinessSender, vault: TagKeyVault,
                 settings: Settings, wallet_grace: float = WALLET_GRACE_SECONDS) -> None:
        super().__init__(db, _SCHEMA)
        #: Seconds a wallet account's lot is still awaited after its prepared transaction expired.
        self.wallet_grace = wallet_grace
        self._chain = chain
        self._sender = sender
        self._vault = vault
        self._settings = settings
        self._threads: dict[str, threading.Thread] = {}
        self._guard = threading.Lock()
        #: Set at shutdown: a wallet job stops watching, left running for the next start's recovery.
        self._stopping = threading.Event()

    # ------------------------------------------------------------------ reading

    def get(self, job_id: str, issuer: str) -> Job | None:
        """The job ``job_id`` of ``issuer`` (None for an unknown job or another account's)."""
        with self._db.read() as tx:
            row = tx.one("SELECT * FROM issuer_jobs WHERE job_id = ? AND issuer = ?", (job_id, issuer))
        return Job.of(row) if row is not None else None

    def active(self, chain_id: int, issuer: str) -> str | None:
        """The id of ``issuer``'s queued or running job, if it has one."""
        with self._db.read() as tx:
            row = tx.one("SELECT job_id FROM issuer_jobs WHERE chain_id = ? AND issuer = ? AND state IN "
                         "('queued', 'running')", (chain_id, issuer))
        return None if row is None else str(row["job_id"])

    # ------------------------------------------------------------------ starting

    def start(self, user: User, lot: lots.LotDescription) -> Job:
        """Reserve ``lot``'s document for ``user`` and start issuing it in a thread; the job as queued.
        :class:`JobRunning` while the account runs another, :class:`api.issuer.AlreadyIssued` for a document
        it issued (or is issuing) already. Nothing is reserved on a refusal."""
        doc = lot.metadata_document()
        digest = "0x" + lots.metadata_hash(doc).hex()
        chain_id = self._chain.chain_id
        issuer = user.address
        with node_errors():
            from_block = int(self._chain.w3.eth.block_number)
        job_id = secrets.token_urlsafe(16)
        now = time.time()
        with self._db.lock(f"issuer-jobs:{chain_id}:{issuer.lower()}"):
            active = self.active(chain_id, issuer)
            if active is not None:
                raise JobRunning(f"this account is already issuing a lot (job {active}): wait for it to end, then "
                                 "start the next one")
            self._vault.reserve(chain_id, issuer, digest)
            try:
                with self._db.transaction() as tx:
                    tx.execute("INSERT INTO issuer_jobs (job_id, chain_id, issuer, state, step, done, total, "
                               "bottle_count, metadata_hash, document, from_block, created_at, updated_at) VALUES "
                               "(?, ?, ?, 'queued', NULL, 0, ?, ?, ?, ?, ?, ?, ?)",
                               (job_id, chain_id, issuer, lot.bottle_count, lot.bottle_count, digest,
                                json.dumps(doc), from_block, now, now))
            except BaseException:
                self._vault.release(chain_id, issuer, digest)
                raise
        thread = threading.Thread(target=self._run, args=(job_id, user, lot, doc, digest),
                                  name=f"issuance-{job_id[:8]}", daemon=True)
        found = self.get(job_id, issuer)
        assert found is not None
        with self._guard:
            self._threads[job_id] = thread
        thread.start()
        return found

    def stop(self) -> None:
        """Stop watching the chain for wallet accounts' lots (the app's shutdown): their jobs stay running, and
        the next start's :meth:`recover` reads the chain for them."""
        self._stopping.set()

    def wait(self, timeout: float | None = None) -> None:
        """Wait for this process's running jobs to end (the app's shutdown, tests)."""
        with self._guard:
            threads = list(self._threads.values())
        for thread in threads:
            thread.join(timeout)

    # ------------------------------------------------------------------ running

    def _progress(self, job_id: str, step: str, done: int, total: int) -> None:
        with self._db.transaction() as tx:
            tx.execute("UPDATE issuer_jobs SET state = 'running', step = ?, done = ?, total = ?, updated_at = ? "
                       "WHERE job_id = ? AND state IN ('queued', 'running')", (step, done, total, time.time(), job_id))

    def _end(self, job_id: str, state: str, **fields: Any) -> None:
        names = ["state", "updated_at", *fields]
        values = [state, time.time(), *fields.values()]
        with self._db.transaction() as tx:
            tx.execute(f"UPDATE issuer_jobs SET {', '.join(n + ' = ?' for n in names)} WHERE job_id = ? "  # noqa: S608
                       "AND state IN ('queued', 'running')", (*values, job_id))

    def _run(self, job_id: str, user: User, lot: lots.LotDescription, doc: dict[str, Any], digest: str) -> None:
        chain_id, count = self._chain.chain_id, lot.bottle_count
        sent: Sent | None = None
        handed = False  # a wallet account's transaction prepared: it may land, so the keys stay staged
        try:
            tree, keys = lots.make_tags(lot, lambda step, done: self._progress(job_id, step, done, count)
                                        if done < count else None)
            self._vault.stage(chain_id, user.address, digest, tree, keys)
            if user.wallet:
                prepared_id, expires_at = self._prepare_for_wallet(job_id, user, issue_call(self._chain, lot, doc,
                                                                                            tree.root))
                handed = True
                self._await_wallet(job_id, user.address, prepared_id, expires_at, doc, "0x" + tree.root.hex())
                return
            self._progress(job_id, "send", 0, 1)
            sent = self._sender.send(user, issue_call(self._chain, lot, doc, tree.root))
            logs = sent.logs
            if sent.block_number is None:
                logs = self._late_receipt(sent)
            lot_id = issued_lot_id(self._chain, logs)
            self._progress(job_id, "labels", 0, 1)
            self._vault.keep(chain_id, user.address, digest, lot_id, tree, keys)
            self._deposit(chain_id, lot_id, doc)
            self._end(job_id, "done", step="labels", done=1, total=1, lot_id=lot_id, tx_hash=sent.tx_hash,
                      block_number=sent.block_number or self._block_of(sent.tx_hash))
        except _Failed as failed:
            self._end(job_id, "failed", error=failed.code, reason=failed.reason,
                      tx_hash=sent.tx_hash if sent else None)
        except AmphoraError as err:
            if sent is None and not handed:
                self._vault.release(chain_id, user.address, digest)
            self._end(job_id, "failed", error=err.code, reason=err.detail, tx_hash=sent.tx_hash if sent else None)
        except Exception as err:  # a job's thread ends in words, never in silence
            logger.exception("issuance job %s failed", job_id)
            if sent is None and not handed:
                self._vault.release(chain_id, user.address, digest)
            self._end(job_id, "failed", error="internal", reason=f"the issuance stopped on an error: {err}",
                      tx_hash=sent.tx_hash if sent else None)
        finally:
            with self._guard:
                self._threads.pop(job_id, None)

    def _prepare_for_wallet(self, job_id: str, user: User, call: Any) -> tuple[str, float]:
        """Prepare a wallet account's ``issue_lot`` for its wallet to send (simulated first:
        :class:`api.errors.WouldRevert`, nothing prepared, when the contract refuses) and record it on the job:
        the prepared transaction's id and expiry."""
        wallet = self._sender.wallet
        if wallet is None:
            raise Forbidden("issue_lot cannot be prepared for a wallet account: this service has no wallet "
                            "transactions configured")
        prepared = wallet.prepare(user, call, CERTIFICATE)
        with self._db.transaction() as tx:
            tx.execute("UPDATE issuer_jobs SET state = 'running', step = ?, done = 0, total = 1, prepared_id = ?, "
                       "updated_at = ? WHERE job_id = ? AND state IN ('queued', 'running')",
                       (WALLET_STEP, prepared.id, time.time(), job_id))
        return prepared.id, prepared.expires_at

    def _await_wallet(self, job_id: str, issuer: str, prepared_id: str, expires_at: float,
                      doc: dict[str, Any], root: str | None = None) -> None:
        """Watch the chain (not the wallet's report, which may never come) for the wallet account's lot until
        it lands (the job done, as a custodial one) or the prepared transaction expired
        (:class:`_Failed` ``wallet_expired``, document and keys released). ``root``: the staged keys' tag
        root when the caller has their tree (else it is rebuilt from the staged tags: seconds for a big lot)."""
        job = self.get(job_id, issuer)
        assert job is not None
        logger.info("issuance job %s: waiting for the wallet to send prepared transaction %s", job_id, prepared_id)
        deadline, touched = expires_at + self.wallet_grace, time.monotonic()
        if root is None:
            root = self._vault.staged_root(job.chain_id, job.issuer, job.metadata_hash)
        if root is None:
            raise _Failed("internal", "the tag keys staged for this lot were not found: nothing can be kept for it")
        while True:
            try:
                landed = self._landed(job, root)
            except Exception:  # noqa: BLE001 - the node may be back at the next look; the deadline still holds
                logger.warning("issuance job %s: could not read the chain", job_id, exc_info=True)
                landed = None
            if landed is not None:
                break
            if time.time() >= deadline:
                self._vault.release(job.chain_id, job.issuer, job.metadata_hash)
                raise _Failed("wallet_expired", WALLET_EXPIRED)
            if self._stopping.wait(WALLET_POLL_SECONDS):
                return  # the service stops: the job stays running, the next start reads the chain
            if time.monotonic() - touched >= WALLET_TOUCH_SECONDS:  # alive, for the other instances
                self._progress(job_id, WALLET_STEP, 0, 1)
                touched = time.monotonic()
        lot_id, tx_hash, block = landed
        self._progress(job_id, "labels", 0, 1)
        if not self._vault.adopt(job.chain_id, job.issuer, job.metadata_hash, lot_id):
            raise _Failed("internal", f"the lot landed as lot {lot_id} but its staged tag keys were not found: do "
                          "not use its tags, and flag its bottles")
        self._deposit(job.chain_id, lot_id, doc)
        self._end(job_id, "done", step="labels", done=1, total=1, lot_id=lot_id, tx_hash=tx_hash, block_number=block)

    def _late_receipt(self, sent: Sent) -> tuple[Any, ...]:
        """The logs of a transaction still pending after the sender's wait; :class:`_Failed` (the reservation
        and staged keys kept: the lot may yet land) when it stays pending."""
        try:
            receipt = self._chain.w3.eth.wait_for_transaction_receipt(HexStr(sent.tx_hash),
                                                                      timeout=RECEIPT_WAIT_SECONDS)
        except TimeExhausted:
            raise _Failed("pending", f"the transaction {sent.tx_hash} was sent but is still not confirmed; "
                          "the document stays reserved: look for the lot in your lots later") from None
        if int(receipt["status"]) != 1:
            raise TransactionFailed(f"transaction {sent.tx_hash} reverted on chain")
        return tuple(receipt["logs"])

    def _block_of(self, tx_hash: str) -> int | None:
        receipt = self._chain.w3.eth.get_transaction_receipt(HexStr(tx_hash))
        return int(receipt["blockNumber"])

    def _deposit(self, chain_id: int, lot_id: int, doc: dict[str, Any]) -> None:
        lots.write_document(self._settings.lot_document_path(chain_id, lot_id), doc)

    # ------------------------------------------------------------------ restart

    def recover(self) -> int:
        """End the jobs a stopped process left queued or running (at start-up): every one on SQLite (one
        instance), those whose progress went stale on PostgreSQL. A lot the chain shows landed ends done
        with its staged keys; any other ends failed, its document released. The number ended."""
        with self._guard:
            mine = set(self._threads)
        stale_before = time.time() - STALE_SECONDS if self._db.postgres else float("inf")
        with self._db.read() as tx:
            rows = tx.all("SELECT * FROM issuer_jobs WHERE state IN ('queued', 'running') AND updated_at < ?",
                          (stale_before,))
        ended = 0
        for row in rows:
            job = Job.of(row)
            if job.job_id in mine:
                continue
            try:
                if not self._recover(job, json.loads(row["document"])):
                    continue
            except Exception:  # noqa: BLE001 - one job's recovery never stops the start-up
                logger.exception("could not recover issuance job %s", job.job_id)
                continue
            ended += 1
        return ended

    def _recover(self, job: Job, doc: dict[str, Any]) -> bool:
        """End ``job`` by the chain's word; False when it is a wallet account's job whose prepared transaction
        is still valid: it is watched again (its wallet may still send it)."""
        landed = None
        if job.step in ("send", WALLET_STEP, "labels"):
            try:
                root = self._vault.staged_root(job.chain_id, job.issuer, job.metadata_hash) if job.prepared_id \
                    else None
                landed = self._landed(job, root)
            except Exception as err:  # noqa: BLE001 - the node's failure is said in the job's reason
                self._end(job.job_id, "failed", error="restarted",
                          reason="the service restarted while the lot was being sent, and the blockchain could "
                                 f"not be read to tell whether it landed ({err}): look at your lots before "
                                 "issuing it again")
                self._vault.release(job.chain_id, job.issuer, job.metadata_hash)
                return True
        if landed is None and job.step == WALLET_STEP and job.prepared_id and self._sender.wallet is not None:
            expires_at = self._sender.wallet.expiry(job.prepared_id)
            if expires_at is not None and time.time() < expires_at + self.wallet_grace:
                self._watch_again(job, doc, expires_at)
                return False
        if landed is None:
            self._vault.release(job.chain_id, job.issuer, job.metadata_hash)
            self._end(job.job_id, "failed", error="restarted", reason=RESTARTED)
            return True
        lot_id, tx_hash, block = landed
        kept = self._vault.adopt(job.chain_id, job.issuer, job.metadata_hash, lot_id)
        self._deposit(job.chain_id, lot_id, doc)
        if kept:
            self._end(job.job_id, "done", step="labels", done=1, total=1, lot_id=lot_id, tx_hash=tx_hash,
                      block_number=block, reason="the service restarted after the lot landed; it is complete")
        else:
            self._end(job.job_id, "failed", error="restarted", lot_id=lot_id, tx_hash=tx_hash, block_number=block,
                      reason=f"the service restarted; the lot was issued as lot {lot_id} but its tag keys were "
                             "not kept: do not use its tags, and flag its bottles")
        return True

    def _watch_again(self, job: Job, doc: dict[str, Any], expires_at: float) -> None:
        """Watch the chain again, in a thread, for a wallet account's lot a stopped process was awaiting."""
        assert job.prepared_id is not None
        prepared_id = job.prepared_id

        def watch() -> None:
            try:
                self._await_wallet(job.job_id, job.issuer, prepared_id, expires_at, doc)
            except _Failed as failed:
                self._end(job.job_id, "failed", error=failed.code, reason=failed.reason)
            except Exception as err:  # the keys stay staged: the lot may still land
                logger.exception("issuance job %s failed", job.job_id)
                self._end(job.job_id, "failed", error="internal", reason=f"the issuance stopped on an error: {err}")
            finally:
                with self._guard:
                    self._threads.pop(job.job_id, None)

        thread = threading.Thread(target=watch, name=f"issuance-{job.job_id[:8]}", daemon=True)
        with self._guard:
            self._threads[job.job_id] = thread
        thread.start()

    def _landed(self, job: Job, tag_root: str | None = None) -> tuple[int, str, int] | None:
        """The lot, transaction and block of the issuer's ``LotIssued`` for the job's document since the job
        started, if the chain has one; with ``tag_root``, only one carrying that root (a wallet account's lot:
        the transaction left the service's hands, and only a lot with the staged keys' root is theirs)."""
        event = self._chain.certificate_contract.events.LotIssued()
        found = event.get_logs(from_block=job.from_block, argument_filters={"issuer": job.issuer})
        for log in found:
            if "0x" + bytes(log["args"]["metadata_hash"]).hex() == job.metadata_hash and (
                    tag_root is None or "0x" + bytes(log["args"]["tag_root"]).hex() == tag_root):
                return (int(log["args"]["lot_id"]), "0x" + bytes(log["transactionHash"]).hex(),
                        int(log["blockNumber"]))
        return None
