"""The winery's issuance as a background job (:mod:`api.jobs`): start one
(`POST /issuer/lot-jobs`, 202 with where to follow it) and follow it
(`GET /issuer/jobs/{job_id}`: its step and counts, then the lot or the reason it
failed). Up to :data:`api.issuer.MAX_BOTTLES_JOB` bottles; `POST /issuer/lots`
keeps issuing small lots within one request."""

from __future__ import annotations

from typing import Annotated, Literal, cast

from fastapi import APIRouter, Path, Request, Response
from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel, Field

from api.business import roles_of
from api.deps import ChainDep, UserDep
from api.errors import InvalidRequest, NotFound, ServiceUnavailable, error_responses
from api.issuer import MAX_BOTTLES_JOB, AlreadyIssued, LotDocumentInvalid, require_valid
from api.jobs import IssuanceJobs, Job, JobRunning
from api.routers.issuer import _ROLE_ERRORS, LotDocumentBody

router = APIRouter(tags=["issuer"])

#: Each step's place in the job (1 to 4), for "step 2 of 4" (a wallet account's `wallet` in place of `send`).
STEP_NUMBERS = {"keys": 1, "tree": 2, "send": 3, "wallet": 3, "labels": 4}
#: How many steps a job has (``wallet`` and ``send`` are one place).
STEP_COUNT = len(set(STEP_NUMBERS.values()))
#: Bottles a label sheet request covers (`GET /lots/{lot_id}/labels.pdf?first=&last=`).
LABELS_PER_SHEET = 1_000

JobIdPath = Annotated[str, Path(pattern=r"^[A-Za-z0-9_-]{16,64}$", description="The job's id.")]


def issuance_jobs(request: Request) -> IssuanceJobs:
    return cast(IssuanceJobs, request.app.state.issuance_jobs)


class LabelRange(BaseModel):
    first: int
    last: int
    url: str = Field(description="The label sheet of bottles `first`..`last` (PDF; version 2 documents only).")


class IssuanceJob(BaseModel):
    """An issuance job: where it is, and once done, the lot."""

    job_id: str
    state: Literal["queued", "running", "done", "failed"] = Field(
        description="`queued`, `running` (see `step`, `done`, `total`), `done` (see `lot_id`) or `failed` (see "
                    "`error` and `reason`).")
    step: Literal["keys", "tree", "send", "wallet", "labels"] | None = Field(
        description="`keys` (tag keys made, counted in bottles), `tree` (the tag tree and proofs, in bottles), "
                    "`send` (the transaction, 0 or 1), `wallet` (a wallet account, instead of `send`: the "
                    "transaction is prepared, see `prepared_id`, and the job waits for the lot on chain), `labels` "
                    "(keys sealed and document deposited, 0 or 1).")
    done: int = Field(description="How much of the step is done.")
    total: int = Field(description="Of how much.")
    bottle_count: int
    metadata_hash: str = Field(description="keccak256 of the document being issued (reserved for this issuer).")
    lot_id: str | None = Field(description="The lot's id once issued (decimal).")
    tx_hash: str | None
    block_number: int | None
    error: str | None = Field(description="Why it failed, as a code: an API error code (`would_revert`, "
                              "`gas_unfunded`, `transaction_failed`, ...), `restarted` (the service stopped during "
                              "the job), `pending` (sent, not confirmed yet), `wallet_expired` (a wallet account's "
                              "lot not sent in time), `internal`.")
    reason: str | None = Field(description="The failure in words (or, for a job completed after a restart, a note).")
    prepared_id: str | None = Field(
        default=None, description="A wallet account's job: the `issue_lot` transaction prepared for its wallet. Read "
        "it at `GET /me/business/transactions/{id}` and send it from the wallet before it expires; the job watches "
        "the chain and ends `done` when the lot lands (reporting the hash is optional), or `failed` "
        "(`wallet_expired`, the document released) when it was not sent in time.")
    document_url: str | None
    labels: list[LabelRange] = Field(description=f"Label sheets, {LABELS_PER_SHEET:,} bottles each (done, version 2 "
                                     "documents only).")
    bottles_url: str | None = Field(description="The bottles file with the tag keys, ONCE (done only).")
    created_at: float
    updated_at: float


def label_ranges(lot_id: int, bottle_count: int) -> list[LabelRange]:
    """The lot's label sheets, :data:`LABELS_PER_SHEET` bottles each (the label route's limit a request)."""
    ranges = []
    for first in range(1, bottle_count + 1, LABELS_PER_SHEET):
        last = min(first + LABELS_PER_SHEET - 1, bottle_count)
        ranges.append(LabelRange(first=first, last=last, url=f"/lots/{lot_id}/labels.pdf?first={first}&last={last}"))
    return ranges


def job_view(job: Job) -> IssuanceJob:
    done = job.state == "done" and job.lot_id is not None
    lot = job.lot_id
    ranges = label_ranges(lot, job.bottle_count) if done and lot is not None and job.labelled else []
    return IssuanceJob(job_id=job.job_id, state=job.state, step=job.step, done=job.done,  # type: ignore[arg-type]
                       total=job.total, bottle_count=job.bottle_count, metadata_hash=job.metadata_hash,
                       lot_id=None if lot is None else str(lot), tx_hash=job.tx_hash, block_number=job.block_number,
                       error=job.error, reason=job.reason, prepared_id=job.prepared_id, created_at=job.created_at,
                       updated_at=job.updated_at,
                       document_url=f"/lots/{lot}/metadata.json" if done else None, labels=ranges,
                       bottles_url=f"/issuer/lots/{lot}/bottles" if done else None)


@router.post("/issuer/lot-jobs", response_model=IssuanceJob, status_code=202,
             summary="Start issuing a lot in the background",
             responses={202: {"description": "The job, queued. Header `Location`: `/issuer/jobs/{job_id}`, to poll."},
                        **error_responses(LotDocumentInvalid, AlreadyIssued, JobRunning, *_ROLE_ERRORS,
                                          ServiceUnavailable)})
def start_issuance(document: LotDocumentBody, request: Request, response: Response, user: UserDep,
                   chain: ChainDep) -> IssuanceJob:
    """Checks the document as `POST /issuer/lots/preview` does (422 `invalid_lot_document` naming every failing
    field; at most 100,000 bottles, larger lots with `ape run issue_lot`), reserves it (409
    `already_issued` for a document this issuer issued or is issuing: send the preview's `document`) and
    answers at once; a background job then makes a fresh tag key per bottle, builds their tree, sends
    `issue_lot` from the signed-in account's own address (it pays the gas) and keeps the keys encrypted. For a
    wallet account the job prepares `issue_lot` instead (step `wallet`, `prepared_id`) for its own wallet to send,
    and watches the chain for the lot until the prepared transaction expires.
    Follow it at `GET /issuer/jobs/{job_id}` (the `Location`). One job runs at a time per account (409
    `job_running`). A refusal of the contract or a lack of ETH ends the job `failed` with the reason, the
    document released. The issuer role is required (403)."""
    roles_of(chain, user.address).require("issuer")
    lot = require_valid(document, MAX_BOTTLES_JOB)
    job = issuance_jobs(request).start(user, lot)
    response.headers["Location"] = f"/issuer/jobs/{job.job_id}"
    return job_view(job)


@router.get("/issuer/jobs/{job_id}", response_model=IssuanceJob, summary="Follow an issuance job",
            responses=error_responses(NotFound, InvalidRequest, *_ROLE_ERRORS))
async def issuance_job(job_id: JobIdPath, request: Request, user: UserDep, chain: ChainDep) -> IssuanceJob:
    """The job's state: `queued`; `running` with its step and counts; `done` with the lot, its transaction,
    the bottles file (tag keys once) and its label sheets range by range; or `failed` with the reason. 404 for
    an unknown job or another account's. The issuer role is required (403)."""
    await run_in_threadpool(lambda: roles_of(chain, user.address).require("issuer"))
    job = await run_in_threadpool(issuance_jobs(request).get, job_id, user.address)
    if job is None:
        raise NotFound(f"no issuance job {job_id} of this account")
    return job_view(job)
