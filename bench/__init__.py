"""Benchmarks. They run BLAS single-threaded, as the service does (see service/__init__.py)."""

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
