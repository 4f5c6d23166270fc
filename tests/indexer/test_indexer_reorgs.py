"""Reorgs on anvil: the follower indexes a branch, the node switches to
another (``evm_snapshot`` before the branch, ``evm_revert`` and different
blocks after), and the follower's tables must then equal a clean rebuild of
the new chain, whether it rolled back with its undo journal (within the reorg
window) or replayed the read models from the stored events (beyond it)."""

from __future__ import annotations

import pytest
from ix_fixtures import USD, rows

from indexer.follower import Cursor

#: The indexer fixtures.
pytest_plugins = ["ix_fixtures"]

#: The follower's test windows: 64 (the default) keeps every depth here in the
#: journal; 4 puts a reorg of depth 10 below the final block (the replay path).
WIDE, NARROW = 64, 4


def _branch(world, actors, depth: int) -> tuple[list[list[str]], dict]:
    """``depth`` blocks that issue a lot, sell a bottle, start a loan and issue
    points (spread over the blocks), and what they change."""
    actions = world.actions
    sold, pledged = world.token(10), world.token(1)
    work = [actions.issue_lot(7), actions.transfer(sold, actors.winery, actors.holder),
            actions.accept_loan(world.lot_id, pledged), actions.issue_points(50 * USD)]
    blocks: list[list[str]] = [[] for _ in range(depth)]
    for i, raw in enumerate(work):
        blocks[i % depth].append(raw)
    return blocks, {"sold": sold, "pledged": pledged}


def _facts(db, chain_id: int, world, merchant: str) -> dict:
    def one(sql: str, *params):
        found = rows(db, sql, chain_id, *params)
        return found[0] if found else None

    return {
        "lots": [r["lot_id"] for r in rows(db, "SELECT lot_id FROM ix_lots WHERE chain_id = ? ORDER BY lot_id",
                                           chain_id)],
        "sold": one("SELECT owner, state FROM ix_tokens WHERE chain_id = ? AND token_id = ?", str(world.token(10))),
        "pledged": one("SELECT owner, state FROM ix_tokens WHERE chain_id = ? AND token_id = ?",
                       str(world.token(1))),
        "loans": len(rows(db, "SELECT loan_id FROM ix_loans WHERE chain_id = ?", chain_id)),
        "points": one("SELECT points_issued FROM ix_merchants WHERE chain_id = ? AND merchant = ?", merchant),
    }


@pytest.mark.parametrize(("depth", "window"), [(1, WIDE), (3, WIDE), (10, WIDE), (10, NARROW)],
                         ids=["depth-1", "depth-3", "depth-10", "depth-10-beyond-the-window"])
def test_reorg__of_a_branch_with_a_lot_a_sale_a_loan_and_points__tables_equal_a_clean_rebuild(
        depth, window, world, actors, signer, make_indexer, assert_equals_rebuild, manifest, merchant, recipient):
    indexer = make_indexer(reorg_window=window)
    indexer.run_until_synced()
    chain_id = manifest.chain_id
    before = _facts(indexer.db, chain_id, world, merchant.address)
    fork = signer.snapshot()
    fork_block = int(signer.w3.eth.block_number)

    blocks, _ = _branch(world, actors, depth)
    signer.mine(blocks)
    indexer.run_until_synced()
    on_branch = _facts(indexer.db, chain_id, world, merchant.address)
    cursor: Cursor = indexer.cursor()
    # The branch is in the index: a new lot, the bottle sold, the loan, the points.
    assert len(on_branch["lots"]) == len(before["lots"]) + 1
    assert on_branch["sold"] == {"owner": actors.address(actors.holder), "state": "active"}
    assert on_branch["pledged"]["state"] == "pledged"
    assert on_branch["loans"] == before["loans"] + 1
    assert int(on_branch["points"]["points_issued"]) > int(before["points"]["points_issued"] if before["points"]
                                                           else 0)
    # Within the window the journal rolls back; beyond it the models are replayed.
    assert (fork_block < cursor.final_block) == (depth > window)

    signer.revert(fork)
    other_sale = world.token(11)
    other = [[world.actions.transfer(other_sale, actors.winery, actors.recipient)]] + [[] for _ in range(depth)]
    head = signer.mine(other)
    indexer.run_until_synced()

    after = _facts(indexer.db, chain_id, world, merchant.address)
    assert after == before, "the branch's lot, sale, loan and points must be gone"
    sold_now = rows(indexer.db, "SELECT owner FROM ix_tokens WHERE chain_id = ? AND token_id = ?", chain_id,
                    str(other_sale))
    assert sold_now == [{"owner": recipient.address}]
    assert indexer.cursor().number == head
    assert_equals_rebuild(indexer.db, head)


def test_reorg__to_a_shorter_chain__rolls_back_to_the_fork(world, actors, signer, make_indexer,
                                                           assert_equals_rebuild):
    indexer = make_indexer()
    indexer.run_until_synced()
    fork = signer.snapshot()
    start = int(signer.w3.eth.block_number)
    blocks, _ = _branch(world, actors, 3)
    signer.mine(blocks)
    indexer.run_until_synced()

    signer.revert(fork)
    head = signer.mine([[world.actions.transfer(world.token(12), actors.winery, actors.recipient)]])
    assert head == start + 1  # below the index's block: the follower must still notice
    indexer.step()

    assert indexer.cursor().number == head
    assert_equals_rebuild(indexer.db, head)


def test_reorg__while_catching_up_in_pages__tables_equal_a_clean_rebuild(
        world, actors, signer, make_indexer, assert_equals_rebuild):
    # A window of 1: everything but the head is caught up in eth_getLogs pages,
    # whose blocks are not all stored; the fork point is found among those that are.
    indexer = make_indexer(reorg_window=1)
    indexer.run_until_synced()
    fork = signer.snapshot()
    blocks, _ = _branch(world, actors, 4)
    signer.mine(blocks + [[] for _ in range(6)])
    indexer.run_until_synced()

    signer.revert(fork)
    head = signer.mine([[world.actions.issue_points(3 * USD)]] + [[] for _ in range(12)])
    indexer.run_until_synced()

    assert indexer.cursor().number == head
    assert_equals_rebuild(indexer.db, head)
