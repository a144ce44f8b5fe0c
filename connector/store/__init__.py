"""The state store: what this service knows about each dossier, kept across restarts.

SQLAlchemy Core, async; a SQLite file by default, PostgreSQL by URL. Two tables for now, the sync ledger
and the failures; schema migrations (Alembic) arrive with the operators' tools.
"""

from connector.store.state import Failure, LedgerEntry, StateStore, StoreUnavailable, Synced

__all__ = ["Failure", "LedgerEntry", "StateStore", "StoreUnavailable", "Synced"]
