"""The indexer: every event of the deployment's contracts in the database,
following the chain through reorgs, and the read models the API and the pages
read (holdings, histories, lots, loans, merchants' ledgers).

No HTTP here: :mod:`indexer.follower` writes, :mod:`indexer.reader` reads (with the queries
of :mod:`indexer.holdings`, :mod:`indexer.history` and :mod:`indexer.ledgers`),
:mod:`indexer.service` runs the follower in a process (the API's, or
``python -m indexer run`` on its own).
"""
