"""What a node sends its peers in answer to their sync requests (``GetBlocksMsg`` and
``GetHeadersMsg``), bounded per host.

Each host (the address a peer's link comes from: every key and link of one machine shares
it) has one budget of the bytes of both kinds of answer (blocks and headers: 2,000 headers
are some 350 KB for an 8-byte request): ``burst`` at first, refilled at ``rate`` and never
above ``burst``. A request is answered at once while its host's budget is not negative and
nothing of that host waits; the answer's bytes are then taken from the budget, which may run
into debt by one answer (at most ``MAX_REPLY_BYTES``). Otherwise the request waits in its
host's queue and is answered, in order, once the budget is back to zero or more (``take``,
every tick): delayed, never dropped, so an honest peer that keeps one request in flight
(headers, then blocks) waits at most one answer's bytes over the rate (3 MiB at 16 MiB/s:
0.19 s) — well inside its request timeout — and is sent blocks at close to the rate, while a
peer asking for the same blocks or headers in a loop is sent no more. Over any span of the
node's clock a host is sent at most ``burst`` + ``rate`` × the span + one answer.

A request waits only while it can be answered in time: its host's queue holds what the rate
sends within ``max_wait_ms`` (half the request timeout: the other half is for the answer to
travel), reckoned in bytes — the host's debt and the answers waiting before it, each
estimated by the node without building it (``admit``'s ``size``: a request's headers or the
stored sizes of its blocks). A request that would wait longer is ``ServeQueueFull`` at once,
not answered: the node tells the asker it is busy (``BusyMsg``, with the time until its host's
queue could take the request), and the asker asks another peer, or this node later. So
a queued request is answered within ``max_wait_ms``, at any rate and however many peers its
host has (16 at 1 MiB/s: the few that fit wait, the others are refused at once rather than
answered after their askers gave up). A request that has waited ``expiry_ms`` (the request
timeout) all the same — the node's ticks came late, or a chain that moved made an answer
larger than estimated — is dropped, not answered (``expire``: ``RequestExpired``; its
asker is told it is busy too). A host's queue holds one request per peer: a peer that
asks again before it is answered asks for the later one instead (the earlier is
``RequestSuperseded``; it keeps its place). None of these is a fault: an honest peer with a
short timeout, or behind a crowded host, meets them.

A host's budget outlives its peers' links (linking again starts with no new burst); a host
whose budget has refilled and that has nothing waiting is forgotten (``prune``), as it would
start again the same. While no host is over its budget this costs a dictionary look-up per
request and nothing per tick.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field

from gridnet.errors import RequestSuperseded, ServeQueueFull
from gridnet.node.messages import GetBlocksMsg, GetHeadersMsg

ServeRequest = GetBlocksMsg | GetHeadersMsg
"""A request answered within its host's budget (one queue holds both kinds)."""


@dataclass
class _Waiting:
    msg: ServeRequest
    since: int
    """When the peer asked [ms, node clock]."""
    size: int
    """Its answer's estimated size [bytes]."""


@dataclass
class _Host:
    level: float
    """Bytes it may be sent now (below 0: in debt) as of ``at``."""
    at: int
    """When ``level`` was reckoned [ms, node clock]."""
    waiting: OrderedDict[str, _Waiting] = field(default_factory=OrderedDict)
    """Peer -> its request waiting for the budget, oldest first."""
    waiting_bytes: int = 0
    """The estimated sizes of the answers waiting [bytes]."""


class ServeLimit:
    """Per-host budgets of the bytes sent in answer to sync requests (sans-IO: every call
    takes the node's clock ``now`` [ms])."""

    def __init__(self, rate_bytes_per_s: int, burst_bytes: int, max_wait_ms: int, expiry_ms: int) -> None:
        self.rate = rate_bytes_per_s / 1000
        """Refill [bytes per ms]."""
        self.burst = float(burst_bytes)
        self.max_wait_ms = max_wait_ms
        """A request waits only if its host's rate sends what is before it within this."""
        self.expiry_ms = expiry_ms
        """A request waiting this long is dropped (its asker has asked again)."""
        self._host_of: dict[str, str] = {}
        """Peer -> its host (a peer the transport named no host for is a host of its own)."""
        self._hosts: dict[str, _Host] = {}
        """Host -> its budget and queue (only hosts below a full budget, or with requests
        waiting)."""
        self.queued: dict[str, None] = {}
        """Hosts with requests waiting, in the order they began to wait (empty: ``take`` has
        nothing to do)."""

    def add_peer(self, peer: str, host: str | None) -> None:
        self._host_of[peer] = peer if host is None else host

    def remove_peer(self, peer: str) -> None:
        """Forget ``peer``'s waiting request (its host's budget stays)."""
        host = self._host_of.pop(peer, peer)
        state = self._hosts.get(host)
        if state is not None and (gone := state.waiting.pop(peer, None)) is not None:
            state.waiting_bytes -= gone.size
            if not state.waiting:
                self.queued.pop(host, None)

    def host_of(self, peer: str) -> str:
        return self._host_of.get(peer, peer)

    def waiting(self) -> int:
        """Requests waiting, of all hosts."""
        return sum(len(self._hosts[h].waiting) for h in self.queued)

    def admit(self, peer: str, msg: ServeRequest, now: int, size: Callable[[], int]) -> bool:
        """Whether to answer ``msg`` now (then ``charge`` its answer); False: it waits for
        its host's budget (``size``: its answer's estimated bytes, asked only then).
        ``ServeRefused`` when it is refused (``ServeQueueFull``), or when it takes the place of
        the peer's earlier request (``RequestSuperseded``)."""
        host = self._host_of.get(peer, peer)
        state = self._hosts.get(host)
        if state is None:  # a full budget: nobody of that host was sent anything lately
            return True
        self._refill(state, now)
        if state.level >= 0 and not state.waiting:
            return True
        earlier = state.waiting.get(peer)
        if earlier is not None:  # (keeps its place in the queue)
            later = earlier.size if earlier.msg == msg else size()
            state.waiting[peer] = _Waiting(msg, now, later)
            state.waiting_bytes += later - earlier.size
            raise RequestSuperseded(
                "it asked again before its earlier request was answered: the earlier one dropped"
            )
        wait_ms = (state.waiting_bytes - min(state.level, 0.0)) / self.rate
        if wait_ms > self.max_wait_ms:
            raise ServeQueueFull(
                f"{len(state.waiting)} requests of its host ({host}) wait already, and with its "
                f"debt they take {wait_ms:.0f} ms of its budget (at most {self.max_wait_ms}): not "
                "answered (it is told to ask again later)",
                math.ceil(wait_ms - self.max_wait_ms),
            )
        state.waiting[peer] = _Waiting(msg, now, size())
        state.waiting_bytes += state.waiting[peer].size
        self.queued[host] = None
        return False

    def charge(self, peer: str, size: int, now: int) -> None:
        """``peer`` is sent ``size`` bytes: taken from its host's budget."""
        host = self._host_of.get(peer, peer)
        state = self._hosts.get(host)
        if state is None:
            state = self._hosts[host] = _Host(self.burst, now)
        else:
            self._refill(state, now)
        state.level -= size

    def take(self, now: int) -> list[tuple[str, ServeRequest]]:
        """The first waiting request of each host whose budget has refilled to zero or more,
        taken off its queue (the caller answers each and ``charge``s it, then calls again
        until none is left)."""
        due: list[tuple[str, ServeRequest]] = []
        for host in list(self.queued):
            state = self._hosts[host]
            self._refill(state, now)
            if state.level < 0:
                continue
            peer, first = state.waiting.popitem(last=False)
            state.waiting_bytes -= first.size
            due.append((peer, first.msg))
            if not state.waiting:
                del self.queued[host]
        return due

    def expire(self, now: int) -> list[tuple[str, ServeRequest, int]]:
        """Drop the requests that have waited ``expiry_ms`` or more: (peer, its request, how
        long [ms])."""
        expired: list[tuple[str, ServeRequest, int]] = []
        for host in list(self.queued):
            state = self._hosts[host]
            for peer, entry in list(state.waiting.items()):
                if now - entry.since >= self.expiry_ms:
                    del state.waiting[peer]
                    state.waiting_bytes -= entry.size
                    expired.append((peer, entry.msg, now - entry.since))
            if not state.waiting:
                del self.queued[host]
        return expired

    def prune(self, now: int) -> None:
        """Forget the hosts whose budget is full again and that have nothing waiting."""
        for host, state in list(self._hosts.items()):
            if not state.waiting:
                self._refill(state, now)
                if state.level >= self.burst:
                    del self._hosts[host]

    def _refill(self, state: _Host, now: int) -> None:
        elapsed = now - state.at
        if elapsed > 0:  # (a clock that stepped back refills nothing, and restarts from now)
            state.level = min(self.burst, state.level + self.rate * elapsed)
        state.at = now
