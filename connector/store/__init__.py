"""The state store: what this service knows about each dossier, kept across restarts.

SQLAlchemy Core, async; a SQLite file by default, PostgreSQL by URL. For now one table, the sync ledger;
schema migrations (Alembic) arrive with the operators' tools.
"""

from connector.store.ledger import LedgerEntry, StateStore, StoreUnavailable, Synced

__all__ = ["LedgerEntry", "StateStore", "StoreUnavailable", "Synced"]
