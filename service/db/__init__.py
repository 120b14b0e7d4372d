"""Persistence: ORM models, loaders of a host's accounting, change sets and the one write path
(`apply`), sessions with per-host locking, and the queries the routers need."""
