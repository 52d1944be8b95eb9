"""The serving store (SQLite or PostgreSQL, SQLAlchemy) and its Alembic migrations."""
