"""Persistence: typed ORM models, sessions with per-host locking, and repositories."""
