"""What the tests, the benchmarks and the demo share, in one place that all three import (and
that nothing shipped imports): the uvicorn launcher (`server`), the invariant audit (`audit`) and
the engine's pure-Python reference (`reference`). Not part of the service's wheel."""
