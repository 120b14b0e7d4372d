"""Names for the ids the API answers with, so tables and messages say `web on compute-07`.

Read lazily and at most once per invocation: every host in one list (hosts are few), domains one
by one when a table names a few of them and in one list when it names many. An id nothing is
named for any more (a deleted domain in a migration's history) stays an id.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from numa_balloon_client import Client, NotFound, NumaBalloonError

UUID_IN_TEXT = re.compile(r"\b[0-9a-fA-F]{8}-(?:[0-9a-fA-F]{4}-){3}[0-9a-fA-F]{12}\b")
#: Above this many unknown domain ids, one list of every domain beats a GET each.
FEW = 8
#: At most this many ids of one message are looked up (an error path stays cheap).
MESSAGE_IDS = 10


class Names:
    def __init__(self, nb: Client) -> None:
        self.nb = nb
        self._hosts: dict[str, str] | None = None
        self._domains: dict[str, str] = {}

    def host(self, host_id: str | None) -> str | None:
        if host_id is None:
            return None
        if self._hosts is None:
            self._hosts = {h.id: h.name for h in self.nb.iter_hosts()}
        return self._hosts.get(host_id, host_id)

    def domain(self, domain_id: str | None) -> str | None:
        if domain_id is None:
            return None
        self.domains([domain_id])
        return self._domains.get(domain_id, domain_id)

    def domains(self, ids: Iterable[str | None]) -> None:
        """Read the names of `ids` (once each), before a table asks for them one by one."""
        missing = {i for i in ids if i is not None and i not in self._domains}
        if len(missing) > FEW:
            self._domains.update({d.id: d.name for d in self.nb.iter_domains()})
            missing -= self._domains.keys()
        for domain_id in missing:
            try:
                self._domains[domain_id] = self.nb.get_domain(domain_id).name
            except NotFound:
                self._domains[domain_id] = domain_id

    def known(
        self, hosts: Iterable[tuple[str, str]] = (), domains: Iterable[tuple[str, str]] = ()
    ) -> None:
        """Names the caller already holds (id, name), so nothing is read again for them."""
        if self._hosts is not None:
            self._hosts.update(hosts)
        self._domains.update(domains)

    def in_text(self, text: str) -> str:
        """`text` with each host or domain id in it replaced by the name; ids that name nothing
        (a migration's, a step's), and every id when the lookups fail, stay as they are."""
        ids = list(dict.fromkeys(UUID_IN_TEXT.findall(text)))[:MESSAGE_IDS]
        if not ids:
            return text
        names: dict[str, str] = {}
        try:
            for i in ids:
                name = self.host(i)
                if name == i:
                    name = self.domain(i)
                if name is not None and name != i:
                    names[i] = name
        except NumaBalloonError:
            pass  # the message as the service wrote it is still true
        return UUID_IN_TEXT.sub(lambda m: names.get(m.group(0), m.group(0)), text)
