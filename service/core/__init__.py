"""Business rules: lock and load a host's accounting, decide with pure functions that return
change sets, and hand them to `service.db.apply.apply`.

A request's transaction is opened, committed and closed in one place, `service.core.unit`: the
operations here take its session and never commit, so a failure anywhere changes nothing. The
few that run several transactions (a migration's `drive`, an evacuation, the sweeper) take a
`unit.Database` or a session from `unit.several` and commit each step themselves.
"""
