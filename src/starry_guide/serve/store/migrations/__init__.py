"""Alembic migrations of the serving store (applied by
:func:`starry_guide.serve.store.database.upgrade`)."""
