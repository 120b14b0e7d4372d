"""Business rules: lock and load a host's accounting, decide with pure functions that return
change sets, and hand them to `service.db.apply.apply`.

Nothing here commits: the router owns the transaction, so a failure anywhere changes nothing.
"""
