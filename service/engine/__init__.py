"""Pure numpy engine: no SQLAlchemy, no FastAPI, no I/O."""
