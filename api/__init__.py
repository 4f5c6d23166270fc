"""The Amphora HTTP API (FastAPI): certificate verification, the consumer
verification page, account balances, the points clearing statement and the
relayer. Run it with ``uvicorn api.main:app``; configure it with ``AMPHORA_*``
environment variables (see ``api.settings``)."""
