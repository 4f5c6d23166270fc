"""The indexer's tables (portable DDL: SQLite and PostgreSQL).

Every row carries the chain id, so one database can index several networks.

Raw material, the truth the rest is derived from:

* ``ix_blocks``: the blocks the follower has seen, with hash and parent hash
  (every block near the head; far behind it, the blocks with events and the
  end of each batch). A reorg is found by comparing them with the node.
* ``ix_events``: every decoded event, exactly once by (chain, block hash, log
  index), with the token, lot, loan and the first two indexed addresses pulled
  out into columns for the queries.
* ``ix_cursor``: how far the index goes (the last block ingested and its hash)
  and the head the follower saw, updated in the same transaction as the rows.
* ``ix_lease``: which instance indexes (one at a time).

Read models, derived from the events by :mod:`indexer.projections`:

* ``ix_lots``: each lot's facts (from ``LotIssued``) and custodian.
* ``ix_tokens``: every certificate that ever left its lot's unsold range or
  changed state: holder and lifecycle state. A bottle without a row is still
  with its lot's issuer, active (ERC-2309: a lot of a million bottles is one
  ``ix_lots`` row and no ``ix_tokens`` rows).
* ``ix_loans``: each loan and its state.
* ``ix_merchants``: each merchant's points totals.
* ``ix_undo``: the previous value of each read-model row changed in a block
  not yet final, so a reorg rolls the models back without a rebuild.

Amounts (beyond 64 bits) and token ids (lot << 32 | serial, up to 96 bits) are
decimal ``TEXT``.
"""

SCHEMA = """
CREATE TABLE IF NOT EXISTS ix_blocks (
    chain_id BIGINT NOT NULL,
    number BIGINT NOT NULL,
    hash TEXT NOT NULL,
    parent_hash TEXT,
    timestamp BIGINT,
    PRIMARY KEY (chain_id, number)
);
CREATE TABLE IF NOT EXISTS ix_events (
    chain_id BIGINT NOT NULL,
    block_hash TEXT NOT NULL,
    log_index INTEGER NOT NULL,
    block_number BIGINT NOT NULL,
    block_time BIGINT,
    tx_hash TEXT NOT NULL,
    contract TEXT NOT NULL,
    event TEXT NOT NULL,
    token_id TEXT,
    lot_id BIGINT,
    loan_id TEXT,
    party_a TEXT,
    party_b TEXT,
    args TEXT NOT NULL,
    PRIMARY KEY (chain_id, block_hash, log_index)
);
CREATE INDEX IF NOT EXISTS ix_events_order ON ix_events (chain_id, block_number, log_index);
CREATE INDEX IF NOT EXISTS ix_events_token ON ix_events (chain_id, token_id, block_number);
DROP INDEX IF EXISTS ix_events_lot;
CREATE INDEX IF NOT EXISTS ix_events_lot_level ON ix_events (chain_id, lot_id, block_number, log_index)
    WHERE token_id IS NULL;
DROP INDEX IF EXISTS ix_events_loan;
CREATE INDEX IF NOT EXISTS ix_events_party_a ON ix_events (chain_id, contract, party_a, block_number);
CREATE INDEX IF NOT EXISTS ix_events_party_b ON ix_events (chain_id, contract, party_b, block_number);
CREATE INDEX IF NOT EXISTS ix_events_kind ON ix_events (chain_id, contract, event, block_number);
CREATE TABLE IF NOT EXISTS ix_cursor (
    chain_id BIGINT PRIMARY KEY,
    block_number BIGINT NOT NULL,
    block_hash TEXT,
    head_block BIGINT NOT NULL,
    final_block BIGINT NOT NULL,
    updated_at DOUBLE PRECISION NOT NULL,
    holder TEXT
);
CREATE TABLE IF NOT EXISTS ix_lease (
    name TEXT PRIMARY KEY,
    holder TEXT NOT NULL,
    expires_at DOUBLE PRECISION NOT NULL
);
CREATE TABLE IF NOT EXISTS ix_lots (
    chain_id BIGINT NOT NULL,
    lot_id BIGINT NOT NULL,
    issuer TEXT NOT NULL,
    custodian TEXT NOT NULL,
    successor TEXT,
    first_token_id TEXT NOT NULL,
    bottle_count BIGINT NOT NULL,
    vintage BIGINT NOT NULL,
    volume_ml BIGINT NOT NULL,
    bottling_date BIGINT NOT NULL,
    metadata_hash TEXT NOT NULL,
    tag_root TEXT NOT NULL,
    producer TEXT NOT NULL,
    wine TEXT NOT NULL,
    region TEXT NOT NULL,
    metadata_uri TEXT NOT NULL,
    issued_block BIGINT NOT NULL,
    issued_at BIGINT,
    issued_tx TEXT NOT NULL,
    block_number BIGINT NOT NULL,
    PRIMARY KEY (chain_id, lot_id)
);
CREATE INDEX IF NOT EXISTS ix_lots_issuer ON ix_lots (chain_id, issuer, lot_id);
CREATE INDEX IF NOT EXISTS ix_lots_custodian ON ix_lots (chain_id, custodian, lot_id);
CREATE TABLE IF NOT EXISTS ix_tokens (
    chain_id BIGINT NOT NULL,
    token_id TEXT NOT NULL,
    lot_id BIGINT NOT NULL,
    serial BIGINT NOT NULL,
    owner TEXT,
    state TEXT NOT NULL,
    gift_expiry BIGINT,
    block_number BIGINT NOT NULL,
    PRIMARY KEY (chain_id, token_id)
);
CREATE INDEX IF NOT EXISTS ix_tokens_owner ON ix_tokens (chain_id, owner, lot_id, serial);
CREATE INDEX IF NOT EXISTS ix_tokens_lot ON ix_tokens (chain_id, lot_id, serial);
CREATE INDEX IF NOT EXISTS ix_tokens_lot_state ON ix_tokens (chain_id, lot_id, state, owner);
CREATE TABLE IF NOT EXISTS ix_loans (
    chain_id BIGINT NOT NULL,
    loan_id TEXT NOT NULL,
    lender TEXT NOT NULL,
    borrower TEXT NOT NULL,
    token_id TEXT NOT NULL,
    principal TEXT NOT NULL,
    repayment TEXT NOT NULL,
    due_at BIGINT NOT NULL,
    grace_period BIGINT NOT NULL,
    state TEXT NOT NULL,
    late INTEGER NOT NULL,
    started_block BIGINT NOT NULL,
    started_at BIGINT,
    block_number BIGINT NOT NULL,
    PRIMARY KEY (chain_id, loan_id)
);
CREATE INDEX IF NOT EXISTS ix_loans_lender ON ix_loans (chain_id, lender, loan_id);
CREATE INDEX IF NOT EXISTS ix_loans_borrower ON ix_loans (chain_id, borrower, loan_id);
CREATE TABLE IF NOT EXISTS ix_merchants (
    chain_id BIGINT NOT NULL,
    merchant TEXT NOT NULL,
    name TEXT NOT NULL,
    cap TEXT NOT NULL,
    registered INTEGER NOT NULL,
    points_issued TEXT NOT NULL,
    points_redeemed TEXT NOT NULL,
    points_accepted TEXT NOT NULL,
    stablecoin_paid_in TEXT NOT NULL,
    stablecoin_paid_out TEXT NOT NULL,
    block_number BIGINT NOT NULL,
    PRIMARY KEY (chain_id, merchant)
);
CREATE TABLE IF NOT EXISTS ix_undo (
    chain_id BIGINT NOT NULL,
    block_number BIGINT NOT NULL,
    seq BIGINT NOT NULL,
    tbl TEXT NOT NULL,
    row_key TEXT NOT NULL,
    old TEXT,
    PRIMARY KEY (chain_id, block_number, seq)
)
"""

#: Each read model: its table and key column (besides ``chain_id``), in the
#: order a rebuild clears them.
MODELS: dict[str, str] = {
    "ix_lots": "lot_id",
    "ix_tokens": "token_id",
    "ix_loans": "loan_id",
    "ix_merchants": "merchant",
}
