"""Points: ``GET /points/settlement``, the clearing statement between merchants
(what each issued and redeemed over a block range), reconciled with the reserve."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query
from fastapi.responses import Response

from amphora.settlement import SettlementError, Statement, check_range
from api.chain import POINTS, ChainService
from api.deps import ChainDep, IndexDep, SettingsDep
from api.errors import IndexBehind, InvalidRequest, NotDeployed, UpstreamUnavailable, error_responses
from api.schemas import SettlementStatement, StatementFormat
from api.settings import Settings
from indexer import ledgers
from indexer.reader import IndexReader

router = APIRouter(prefix="/points", tags=["points"])

CSV_MEDIA_TYPE = "text/csv"
CSV_EXAMPLE = (
    "merchant,name,points_issued,points_redeemed,stablecoin_paid_in,stablecoin_paid_out,net_position\r\n"
    "0x976EA74026E726554dB657fA54763abd0C3a0aa9,Wine Bar,30000000000000000000,0,30000000,0,30000000\r\n"
    "0x14dC79964da2C08b23698B3D3cc7Ca32193d9955,Cellar Shop,0,12000000000000000000,0,12000000,-12000000\r\n"
    "TOTAL,,30000000000000000000,12000000000000000000,30000000,12000000,18000000\r\n"
)


def points_statement(chain: ChainService, index: IndexReader, settings: Settings, from_block: int | None,
                     to_block: int | None) -> Statement:
    """The clearing statement from ``from_block`` (default: the points token's
    deploy block) to ``to_block`` (default: the latest block): the events and
    names from the index, the reserve from the chain. :class:`InvalidRequest`
    for a range that is not one or reaches beyond the chain head,
    :class:`IndexBehind` when the index does not reach ``to_block`` in time."""
    points = chain.require_contract(POINTS)
    chain.require_code(points.address)  # else the statement would be empty and "reconciled"
    head = chain.latest_block()
    start = chain.deploy_block_of(POINTS) if from_block is None else from_block
    end = head if to_block is None else to_block
    try:
        check_range(start, end, head)
    except SettlementError as err:
        raise InvalidRequest(str(err)) from err
    chain_id = chain.chain_id
    status = index.wait_for(chain_id, end, settings.index_read_wait_seconds, settings.index_max_lag_blocks)
    if status.indexed_block is None or status.indexed_block < end:
        raise IndexBehind(f"the index reaches block {status.indexed_block}, not yet to_block {end}: "
                          "try again shortly")
    return index.answer(chain_id, lambda tx, _: ledgers.statement(
        tx, chain_id, points.address, start, end, chain.points_reserve)).value


@router.get(
    "/settlement",
    response_model=SettlementStatement,
    summary="Points clearing statement for a block range",
    responses={
        200: {
            "description": "The statement: JSON, or CSV with `format=csv`.",
            "content": {CSV_MEDIA_TYPE: {"schema": {"type": "string"}, "example": CSV_EXAMPLE}},
        },
        **error_responses(InvalidRequest, UpstreamUnavailable, NotDeployed, IndexBehind),
    },
)
def settlement(
    chain: ChainDep,
    index: IndexDep,
    settings: SettingsDep,
    from_block: Annotated[int | None, Query(ge=0, description="First block (default: the block the "
                                            "PointsToken was deployed in, from the deploy manifest).")] = None,
    to_block: Annotated[int | None, Query(ge=0, description="Last block, inclusive (default: the latest).")] = None,
    fmt: Annotated[StatementFormat, Query(alias="format", description="`json` (default) or `csv`.")] = (
        StatementFormat.json),
) -> SettlementStatement | Response:
    """Per merchant: points issued and redeemed, stablecoin paid into and out of
    the reserve, and its net position, from the PointsToken's `PointsIssued` and
    `PointsRedeemed` events in the range (read from the index); their totals;
    and the contract's `reserve()` before and after the range (read from the
    chain). 503 `index_behind` when the index has not reached `to_block`.

    `reconciled` says whether the statement matches the chain: total paid in
    minus total paid out, and the sum of the net positions, must both equal the
    reserve's movement over the range. When they do not, `discrepancies` says
    how they differ (and the statement must not be settled).

    `format=csv` answers `text/csv`: a header row, one row per merchant and a
    `TOTAL` row. A range that is inverted or reaches beyond the latest block is
    422 with the reason."""
    result = points_statement(chain, index, settings, from_block, to_block)
    if fmt is StatementFormat.csv:
        filename = f"points-settlement-{result.from_block}-{result.to_block}.csv"
        return Response(result.to_csv(), media_type=CSV_MEDIA_TYPE,
                        headers={"Content-Disposition": f'attachment; filename="{filename}"'})
    return SettlementStatement.model_validate(result.to_json())
