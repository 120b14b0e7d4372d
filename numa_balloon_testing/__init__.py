"""What the tests, the benchmarks and the demo share, in one place that all three import (and
that nothing shipped imports): the uvicorn launcher (`server`), a hand-moved clock (`clock`)
and the engine's pure-Python reference (`reference`). Like the client and the agents it never
imports `service` (the accounting audit reads the database: `service.db.invariants`). Not part
of the service's wheel."""
