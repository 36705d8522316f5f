"""The SQL store: schema (``tables``), migrations and engines (``migrate``).

SQLite by default, PostgreSQL in production; both run the same Alembic revisions.
"""
