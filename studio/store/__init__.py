"""Persistence: history tables, migrations, the store, queries, shares, content-addressed assets, PNG metadata."""
