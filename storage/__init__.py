"""The database every Amphora service shares: SQLite embedded by default,
PostgreSQL when a URL names one (see :mod:`storage.db`)."""
