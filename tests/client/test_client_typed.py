"""The client answers with the API's models everywhere (issue #23: evacuate, API keys, the
placement preview and the agent's report were plain dicts), and finds the log's head."""

from __future__ import annotations

import asyncio
import math
import random
from collections.abc import Sequence

import pytest

from numa_balloon_client import AsyncClient, Client
from numa_balloon_client import models as m
from numa_balloon_testing.server import Server
from tests.client.conftest import small_domain, two_socket
from tests.client.incli import uniq
from tests.conftest import ADMIN_TOKEN


def _search(log: Sequence[int]) -> tuple[int, int]:
    """Drive the head search over an in-memory log of seqs: (the head it finds, reads made)."""
    from numa_balloon_client._core import head_search  # new with this change

    ordered = sorted(log)
    search = head_search()
    since, reads = next(search), 0
    while True:
        reads += 1
        after = next((s for s in ordered if s > since), None)
        try:
            since = search.send(after)
        except StopIteration as done:
            return int(done.value), reads


@pytest.mark.parametrize(
    "log",
    [
        [],
        [1],
        [7],
        list(range(1, 1001)),
        sorted(random.Random(4).sample(range(1, 50_000), 3_000)),  # rolled-back seqs leave gaps
        [5, 2**31 - 2],
        [2**31 - 1],
    ],
    ids=["empty", "one", "one-late", "dense", "gaps", "far-apart", "at-the-bound"],
)
def test_the_head_search_finds_the_newest_seq_in_logarithmic_reads(log: list[int]) -> None:
    head, reads = _search(log)
    assert head == max(log, default=0)
    assert reads <= 2 * math.log2(max(head, 2)) + 3


def test_latest_event_seq_against_the_service(server: Server, nb: Client) -> None:
    for _ in range(3):
        nb.create_host(two_socket(uniq("seq")))
    head = max(e.seq for e in nb.iter_events())
    assert nb.latest_event_seq() == head

    async def latest() -> int:
        async with AsyncClient(server.url, ADMIN_TOKEN) as anb:
            return await anb.latest_event_seq()

    assert asyncio.run(latest()) == head


def test_evacuate_keys_preview_and_report_are_models(server: Server, nb: Client) -> None:
    a = nb.create_host(two_socket(uniq("ta")))
    nb.create_host(two_socket(uniq("tb")))
    dom = nb.create_domain(small_domain(uniq("tvm"), a.id))

    preview = nb.place(small_domain(uniq("pre")), limit=1)
    assert isinstance(preview, m.PlacementPreview) and len(preview.hosts) == 1

    report = nb.with_token(a.agent_token).agent_report(
        a.id, {"pnodes": [{"index": 0, "free_mib": 14000}, {"index": 1, "free_mib": 14000}]}
    )
    assert isinstance(report, m.AgentReportOut) and report.host_id == a.id

    evac = nb.evacuate(a.id)
    assert isinstance(evac, m.EvacuationOut)
    assert [x.domain_id for x in evac.migrations] == [dom.id] and evac.unplaced == []
    aborted = nb.abort_migration(evac.migrations[0].id, runs_on="source")
    assert aborted.state == "aborted"

    name = uniq("typed")
    created = nb.create_api_key(name, "viewer")
    assert isinstance(created, m.ApiKeyCreated) and created.secret.startswith("nbk_")
    listed = [k for k in nb.iter_api_keys() if k.id == created.id]
    assert len(listed) == 1 and isinstance(listed[0], m.ApiKeyOut)
    assert isinstance(nb.get_api_key(created.id), m.ApiKeyOut)
    rotated = nb.rotate_api_key(created.id)
    assert isinstance(rotated, m.ApiKeyCreated) and rotated.secret != created.secret

    async def the_async_client() -> None:
        async with AsyncClient(server.url, ADMIN_TOKEN) as anb:
            assert isinstance(await anb.get_api_key(created.id), m.ApiKeyOut)
            assert isinstance(await anb.place(small_domain(uniq("apre"))), m.PlacementPreview)
            keys = [k async for k in anb.iter_api_keys()]
            assert all(isinstance(k, m.ApiKeyOut) for k in keys)

    asyncio.run(the_async_client())
