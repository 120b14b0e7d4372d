"""Business logic between the routers and the engine: load state, call the engine, persist.

Nothing here commits: the router owns the transaction, so a failure anywhere changes nothing.
"""
