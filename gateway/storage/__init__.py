"""Durable storage: SQLAlchemy tables, engine set-up, Alembic migrations and the store stage."""
