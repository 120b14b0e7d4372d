"""A 1 MiB hostile body against a real uvicorn (1 worker, SQLite): how long until it is answered,
unauthenticated and authenticated, and what /healthz latency does meanwhile.

The body is the one that stalled a worker for about an hour before: `"` followed by escaped
quotes, an unterminated JSON string. Run: ``.venv/bin/python -m bench.hostile [--quick]``.
Headline (last line): ``hostile 1MiB: unauth_ms=.. auth_ms=.. healthz_idle_p50_ms=..
healthz_under_attack_p50_ms=..``
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import threading
import time

import httpx

from numa_balloon_testing.server import Server
from service.db.alembic import upgrade

HOSTILE = b'"' + b'\\"' * ((1 << 19) - 1)
JSON = {"Content-Type": "application/json"}


def _post_ms(http: httpx.Client, token: str | None) -> tuple[float, int]:
    headers = dict(JSON, **({"Authorization": f"Bearer {token}"} if token else {}))
    t0 = time.perf_counter()
    r = http.post("/v1/hosts", content=HOSTILE, headers=headers)
    return (time.perf_counter() - t0) * 1e3, r.status_code


def _healthz_ms(http: httpx.Client, n: int) -> list[float]:
    out = []
    for _ in range(n):
        t0 = time.perf_counter()
        http.get("/healthz")
        out.append((time.perf_counter() - t0) * 1e3)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--quick", action="store_true", help="a short smoke run")
    repeats = 3 if ap.parse_args().quick else 15
    with tempfile.TemporaryDirectory() as tmp:
        url = f"sqlite:///{tmp}/bench.db"
        upgrade(url)
        server = Server(url, workers=1)
        with server, httpx.Client(base_url=server.url, timeout=600) as http:
            idle = _healthz_ms(http, 50)
            unauth = [_post_ms(http, None) for _ in range(repeats)]
            auth = [_post_ms(http, server.admin_token) for _ in range(repeats)]
            attack = threading.Event()

            def attacker() -> None:
                with httpx.Client(base_url=server.url, timeout=600) as h:
                    while not attack.is_set():
                        _post_ms(h, None)
                        _post_ms(h, server.admin_token)

            t = threading.Thread(target=attacker)
            t.start()
            under = _healthz_ms(http, 50)
            attack.set()
            t.join()
    print("| request | status | p50 ms | max ms |\n|---|---|---|---|")
    for name, rows in (("1 MiB, no token", unauth), ("1 MiB, admin token", auth)):
        ms = [m for m, _ in rows]
        print(f"| {name} | {rows[0][1]} | {statistics.median(ms):.1f} | {max(ms):.1f} |")
    for name, ms in (("/healthz idle", idle), ("/healthz under attack", under)):
        print(f"| {name} | 200 | {statistics.median(ms):.1f} | {max(ms):.1f} |")
    print(
        f"hostile 1MiB: unauth_ms={statistics.median(m for m, _ in unauth):.1f} "
        f"auth_ms={statistics.median(m for m, _ in auth):.1f} "
        f"healthz_idle_p50_ms={statistics.median(idle):.1f} "
        f"healthz_under_attack_p50_ms={statistics.median(under):.1f}"
    )


if __name__ == "__main__":
    main()
