"""numa-balloon control plane.

BLAS runs single-threaded in the service: a worker's parallelism is its concurrent requests,
and OpenBLAS threads spinning against each other and against the other workers doubled the CPU
of ranking a 10,000-host cluster (92 ms -> 46 ms per ranking on the 2-core machine). This must
be set before numpy loads; an operator's own OPENBLAS_NUM_THREADS wins.
"""

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
