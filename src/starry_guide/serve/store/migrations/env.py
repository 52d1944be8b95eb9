"""Alembic environment of the serving store: migrations run on the connection that
:func:`starry_guide.serve.store.database.upgrade` opened (inside its lock), never from an ini file.

New revision: ``alembic -x`` is not needed — write ``versions/NNNN_what.py`` by hand with
``down_revision`` the previous one, and mirror the change in ``store.py``'s tables.
"""

from alembic import context

connection = context.config.attributes["connection"]
# batch mode lets ALTER TABLE work on SQLite (copy-and-move)
context.configure(connection=connection, render_as_batch=True)
with context.begin_transaction():
    context.run_migrations()
