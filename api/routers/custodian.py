"""What holders wrote for the custodian, off chain: the delivery address of a
redemption and the reason of a loss or theft report (see
:mod:`api.holder_notes`). Read with the operator token: the custodian's staff
look up the ``order_hash`` of a ``RedemptionRequested`` event (or the
``reason_hash`` of a flag) here, and can check the answer against the chain by
hashing ``canonical``."""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Literal

from fastapi import APIRouter, Path, Request
from pydantic import BaseModel, Field

from api.deps import AdminDep
from api.errors import Forbidden, InvalidRequest, NotFound, ServiceUnavailable, Unauthorized, error_responses
from api.holder_notes import notes_of
from api.schemas import BYTES32_PATTERN

router = APIRouter(prefix="/custodian", tags=["operator"])


class HolderNote(BaseModel):
    hash: str = Field(description="keccak256 of `canonical`: the redemption's `order_hash` or the flag's "
                      "`reason_hash` on chain.")
    kind: Literal["delivery", "flag"] = Field(description="`delivery`: a redemption's delivery address; `flag`: "
                                              "the reason of a loss or theft report.")
    token_id: str = Field(description="The certificate, in decimal.")
    fields: dict[str, str] = Field(description="What the holder wrote, by form field (`name`, `address`, `phone` "
                                   "for a delivery; `reason` for a flag), normalised as hashed.")
    canonical: str = Field(description="The exact UTF-8 text whose keccak256 is `hash`.")
    request_id: str | None = Field(description="The relayed request that put the hash on chain.")
    created_at: dt.datetime


@router.get("/notes/{note_hash}", response_model=HolderNote, summary="Read a holder's delivery address or report",
            responses=error_responses(Unauthorized, Forbidden, NotFound, InvalidRequest, ServiceUnavailable))
def holder_note(note_hash: Annotated[str, Path(pattern=BYTES32_PATTERN, description="The on-chain `order_hash` "
                                               "or `reason_hash`.")],
                request: Request, _: AdminDep) -> HolderNote:
    """The note behind an on-chain hash, decrypted for the custodian. 404 when
    the service keeps none under that hash (written by another client)."""
    note = notes_of(request.app.state).get(note_hash)
    return HolderNote(hash=note.hash, kind=note.kind, token_id=str(note.token_id),  # type: ignore[arg-type]
                      fields=note.fields, canonical=note.document.decode(), request_id=note.request_id,
                      created_at=dt.datetime.fromtimestamp(note.created_at, dt.UTC))
