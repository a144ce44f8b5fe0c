"""Alembic migrations of the state store. ``connector.store.schema`` runs them; each revision is explicit
(no autogenerate at run time), and ``tables.py`` describes the schema at the newest one."""
