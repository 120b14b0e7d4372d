"""Idempotency-Key on every create (issue #22, item 6): a retry gets the first response, the
secret it showed included, and concurrent retries on PostgreSQL all get that one response.

The secret is kept for the replay, sealed under the Idempotency-Key (which is stored only as a
digest), and deleted with the record when the idempotency window ends.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import event, func, select

from service.core import domains
from service.core.sweeper import purge_idempotency_records
from service.db.idempotency import key_digest
from service.db.models import ApiKey, Domain, Host, IdempotencyRecord, Migration
from service.db.sealed import Unsealable, unseal
from tests.api.client import ApiClient
from tests.api.factories import domain_body, host_body


def count(client: ApiClient, model: Any) -> int:
    with client.app.state.sessionmaker() as s:
        return int(s.scalar(select(func.count()).select_from(model)) or 0)


def records(client: ApiClient) -> list[IdempotencyRecord]:
    with client.app.state.sessionmaker() as s:
        return list(s.scalars(select(IdempotencyRecord)))


def test_an_api_key_create_replays_the_same_key_and_its_secret(client: ApiClient) -> None:
    key = {"Idempotency-Key": str(uuid.uuid4())}
    body = {"name": "scheduler-1", "role": "viewer"}
    first = client.post("/v1/api-keys", json=body, headers=key)
    again = client.post("/v1/api-keys", json=body, headers=key)
    assert first.status_code == again.status_code == 201, again.text
    assert again.headers["idempotent-replayed"] == "true"
    assert again.json() == first.json() and again.json()["secret"].startswith("nbk_")
    assert again.headers["location"] == first.headers["location"]
    assert again.headers["cache-control"] == "no-store"
    assert count(client, ApiKey) == 1
    # The replayed secret is the key's: it authenticates.
    assert client.get("/v1/hosts", token=again.json()["secret"]).status_code == 200
    other = client.post("/v1/api-keys", json={**body, "role": "admin"}, headers=key)
    assert other.status_code == 422
    assert other.json()["errors"][0]["loc"] == ["header", "Idempotency-Key"]


def test_host_and_domain_replays_show_their_tokens_again(client: ApiClient) -> None:
    hkey, dkey = {"Idempotency-Key": "h-" + uuid.uuid4().hex}, {"Idempotency-Key": uuid.uuid4().hex}
    host = client.post("/v1/hosts", json=host_body("h1"), headers=hkey).json()
    replayed = client.post("/v1/hosts", json=host_body("h1"), headers=hkey)
    assert replayed.json()["agent_token"] == host["agent_token"] is not None
    assert replayed.headers["cache-control"] == "no-store"
    body = domain_body("d1", [1024], host_id=host["id"])
    dom = client.post("/v1/domains", json=body, headers=dkey).json()
    again = client.post("/v1/domains", json=body, headers=dkey)
    assert again.status_code == 201 and again.json() == dom and dom["guest_token"] is not None
    assert again.headers["location"] == f"/v1/domains/{dom['id']}"
    agent = client.get(f"/v1/agent/hosts/{host['id']}/steps", token=replayed.json()["agent_token"])
    assert agent.status_code == 200
    assert client.get("/v1/guest/topology", token=again.json()["guest_token"]).status_code == 200


def test_the_secrets_are_stored_sealed_under_the_key_and_the_key_only_as_a_digest(
    client: ApiClient,
) -> None:
    idem = str(uuid.uuid4())
    created = client.post(
        "/v1/api-keys", json={"name": "k1", "role": "viewer"}, headers={"Idempotency-Key": idem}
    ).json()
    (record,) = records(client)
    stored = repr(
        (record.key_digest, record.response_body, record.response_headers, record.sealed_secrets)
    )
    assert created["secret"] not in stored and idem not in stored
    assert created["secret"].removeprefix("nbk_") not in stored
    assert record.response_body["secret"] is None and record.key_digest == key_digest(idem)
    assert record.sealed_secrets is not None
    context = f"admin\n{record.request_hash}"
    assert unseal(idem, context, record.sealed_secrets) == {"secret": created["secret"]}
    with pytest.raises(Unsealable):
        unseal(str(uuid.uuid4()), context, record.sealed_secrets)  # another key
    with pytest.raises(Unsealable):
        unseal(idem, "key:other\n" + record.request_hash, record.sealed_secrets)  # another actor


def test_records_and_their_sealed_secrets_go_when_the_window_ends(client: ApiClient) -> None:
    idem = {"Idempotency-Key": str(uuid.uuid4())}
    client.post("/v1/api-keys", json={"name": "k2", "role": "viewer"}, headers=idem)
    (record,) = records(client)
    factory = client.app.state.sessionmaker
    assert purge_idempotency_records(factory, record.expires_at - timedelta(seconds=1)) == 0
    assert len(records(client)) == 1
    assert purge_idempotency_records(factory, record.expires_at) == 1
    assert records(client) == []


# -- concurrent retries (PostgreSQL: row locks and real concurrency) --------------------------


def _race(client: ApiClient, n: int, send: Callable[[], Any]) -> list[Any]:
    with ThreadPoolExecutor(max_workers=n) as pool:
        return list(pool.map(lambda _: send(), range(n)))


def _same_201(results: list[Any]) -> dict[str, Any]:
    assert [r.status_code for r in results] == [201] * len(results), [r.text for r in results]
    bodies = [r.json() for r in results]
    assert all(b == bodies[0] for b in bodies), bodies
    assert sum(r.headers.get("idempotent-replayed") == "true" for r in results) == len(results) - 1
    first: dict[str, Any] = bodies[0]
    return first


@pytest.mark.postgres
@pytest.mark.parametrize("n", [2, 12])
def test_concurrent_retries_of_a_domain_create_all_get_the_one_201(
    pg_client: ApiClient, n: int
) -> None:
    host = pg_client.post("/v1/hosts", json=host_body("h")).json()
    body = domain_body("web", [2048, 2048], host_id=host["id"])
    headers = {"Idempotency-Key": str(uuid.uuid4())}
    out = _same_201(
        _race(pg_client, n, lambda: pg_client.post("/v1/domains", json=body, headers=headers))
    )
    assert out["guest_token"] is not None
    assert count(pg_client, Domain) == 1


@pytest.mark.postgres
def test_a_retry_that_looked_before_the_first_committed_replays_instead_of_409(
    pg_client: ApiClient,
) -> None:
    """The interleaving the hostile client hit with 2 workers, forced: both retries look for
    the key's record before either committed, then the second runs its create after the
    first committed. Its name check then saw the first's domain: 409 "name exists". Both
    must look, and find the record, only once the first committed."""
    host = pg_client.post("/v1/hosts", json=host_body("h")).json()
    body = domain_body("web", [2048, 2048], host_id=host["id"])
    headers = {"Idempotency-Key": str(uuid.uuid4())}
    looked: list[float] = []
    second_looked = threading.Event()
    lock = threading.Lock()

    def hold_lookups(_c: Any, _cur: Any, statement: str, *_: Any) -> None:
        if not (statement.startswith("SELECT") and "FROM idempotency_records" in statement):
            return
        with lock:
            looked.append(time.monotonic())
            first = len(looked) == 1
        if first:  # wait (a little) for the twin to look too
            second_looked.wait(timeout=1.0)
        else:
            second_looked.set()
            time.sleep(0.3)  # meanwhile the first creates and commits

    engine = pg_client.app.state.engine
    event.listen(engine, "after_cursor_execute", hold_lookups)
    try:
        out = _same_201(
            _race(pg_client, 2, lambda: pg_client.post("/v1/domains", json=body, headers=headers))
        )
    finally:
        event.remove(engine, "after_cursor_execute", hold_lookups)
    assert len(looked) == 2 and out["guest_token"] is not None
    assert count(pg_client, Domain) == 1


@pytest.mark.postgres
def test_retries_of_an_unplaced_create_wait_while_it_tries_its_next_host(
    pg_client: ApiClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An unpinned create whose first host fails tries the next one. It used to end the whole
    transaction between hosts, releasing the Idempotency-Key's lock with it: a concurrent retry
    then ran its own create and one of the two got 409 "name exists" instead of the replay."""
    for name in ("a", "b"):
        pg_client.post("/v1/hosts", json=host_body(name))
    first_host_of: set[int] = set()
    try_host = domains._try_host

    def first_host_fails(session: Any, host_id: str, *args: Any) -> Any:
        if id(session) not in first_host_of:
            first_host_of.add(id(session))
            time.sleep(0.05)  # a retry arrives while this one moves to its next host
            return f"host {host_id}: refused for the test"
        return try_host(session, host_id, *args)

    monkeypatch.setattr(domains, "_try_host", first_host_fails)
    body = domain_body("web", [2048, 2048])
    headers = {"Idempotency-Key": str(uuid.uuid4())}
    _same_201(
        _race(pg_client, 6, lambda: pg_client.post("/v1/domains", json=body, headers=headers))
    )
    assert count(pg_client, Domain) == 1


@pytest.mark.postgres
def test_concurrent_retries_of_every_other_create_get_the_one_201(pg_client: ApiClient) -> None:
    n = 8
    key = {"Idempotency-Key": str(uuid.uuid4())}
    made = _same_201(
        _race(
            pg_client,
            n,
            lambda: pg_client.post(
                "/v1/api-keys", json={"name": "k", "role": "viewer"}, headers=key
            ),
        )
    )
    assert made["secret"] is not None and count(pg_client, ApiKey) == 1
    key = {"Idempotency-Key": str(uuid.uuid4())}
    host = _same_201(
        _race(pg_client, n, lambda: pg_client.post("/v1/hosts", json=host_body("src"), headers=key))
    )
    assert host["agent_token"] is not None and count(pg_client, Host) == 1
    dst = pg_client.post("/v1/hosts", json=host_body("dst")).json()
    dom = pg_client.post("/v1/domains", json=domain_body("vm", [1024], host_id=host["id"])).json()
    move = {"domain_id": dom["id"], "destination_host_id": dst["id"]}
    key = {"Idempotency-Key": str(uuid.uuid4())}
    _same_201(_race(pg_client, n, lambda: pg_client.post("/v1/migrations", json=move, headers=key)))
    assert count(pg_client, Migration) == 1
