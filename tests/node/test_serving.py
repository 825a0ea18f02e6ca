"""Answers to peers' sync requests (blocks and headers) are bounded per host, and delayed
rather than dropped (``node/serving.py``), on the node's own clock: a peer asking for the same
blocks or headers in a loop is sent them at no more than the rate; every key of one host
shares its budget, and linking again starts no new one; an honest peer syncing a chain over
the budget (headers first, then blocks) gets every block at close to the rate and never waits
out its request timeout; a host's queue is bounded, by a named rule that is not a fault, and a
request refused by it is answered busy (``BusyMsg``): the asker asks another peer, or the busy
one again after a bounded back-off, and never counts it ``RequestUnanswered``."""

from __future__ import annotations

import logging
from collections import Counter
from pathlib import Path

import pytest

from gridnet.encoding import encode
from gridnet.ledger.chain import Chain
from gridnet.net.memory import MemoryNetwork
from gridnet.node.api.ops import _NodeCollector  # (what GET /metrics serves)
from gridnet.node.messages import BlocksMsg, BusyMsg, GetBlocksMsg, GetHeadersMsg, HeadersMsg
from gridnet.node.node import BUSY_MAX_TIMEOUTS, Node, NodeConfig, Outgoing
from tests.helpers import GENESIS_TIME, INTERVAL, served_chain

RATE = 4_000
"""Block bytes a host may be sent per second of the node's clock, in these tests."""


def sent_bytes(out: list[Outgoing], peer: str | None = None) -> int:
    """Block bytes of the BlocksMsg answers in ``out`` (to ``peer``, or to anyone)."""
    return sum(
        len(encode(b))
        for to, msg in out
        if isinstance(msg, BlocksMsg) and (peer is None or to == peer)
        for b in msg.blocks
    )


def answers(out: list[Outgoing]) -> list[str]:
    return [to for to, msg in out if isinstance(msg, BlocksMsg | HeadersMsg)]


def header_bytes(out: list[Outgoing]) -> int:
    """Header bytes of the HeadersMsg answers in ``out``."""
    return sum(len(encode(h)) for _, msg in out if isinstance(msg, HeadersMsg) for h in msg.headers)


def spied(node: Node) -> Counter[str]:
    """Block and header bytes the node sends in answers (what its ``handle`` and ``tick``
    return: at once or after a wait), by kind."""
    sent: Counter[str] = Counter()
    handle, tick = node.handle, node.tick

    def count(out: list[Outgoing]) -> list[Outgoing]:
        sent["blocks"] += sent_bytes(out)
        sent["headers"] += header_bytes(out)
        return out

    node.handle = lambda peer, msg, now: count(handle(peer, msg, now))  # type: ignore[method-assign]
    node.tick = lambda now: count(tick(now))  # type: ignore[method-assign]
    return sent


def limited(chain: Chain, **config: int) -> Node:
    settings: dict[str, int] = {"serve_bytes_per_s": RATE, "serve_burst_bytes": RATE, "blocks_per_request": 4}
    settings.update(config)
    return Node("server", chain, NodeConfig(**settings))  # type: ignore[arg-type]


def test_a_peer_asking_for_the_same_blocks_in_a_loop_is_sent_them_at_the_rate(tmp_path: Path) -> None:
    """It asked for the same blocks again and again and was answered every time, taking the
    node's time and upload for as long as it read them: now, over a minute of the node's
    clock, it is sent at most the burst, the rate and one answer (the last may run the budget
    into debt), and no less than the rate allows (its requests wait, none is lost for good)."""
    chain = served_chain(tmp_path / "c", 8)
    node = limited(chain)
    node.add_peer("looper", host="10.0.0.7")
    ask = GetBlocksMsg((chain.main[0].hash,), 64)
    answer = sent_bytes(node.handle("looper", ask, GENESIS_TIME))
    assert RATE / 2 < answer <= 4 * RATE  # (four blocks, the first answer: within the burst)
    start, span = GENESIS_TIME + 1, 60_000
    served = 0
    for t in range(start, start + span, 10):  # a request every 10 ms, a tick every 100 ms
        served += sent_bytes(node.handle("looper", ask, t))
        if t % 100 == start % 100:
            served += sent_bytes(node.tick(t))
    served += answer
    allowed = RATE + RATE * span // 1000  # the burst (a second's worth) and the rate
    assert allowed - answer <= served <= allowed + answer
    assert node.stats.block_requests_delayed >= served // answer - 1
    assert node.stats.block_requests_refused["RequestSuperseded"] > 5_000  # (each ask replaced the last)
    assert node.stats.block_requests_refused["ServeQueueFull"] == 0
    assert node.stats.peer_faults == {}  # (not a fault: an honest peer with a short timeout asks again too)
    scraped = {
        (s.name, s.labels.get("rule", "")): s.value
        for family in _NodeCollector(node, None).collect()
        for s in family.samples
        if s.name.startswith("gridnet_block_requests")
    }
    assert scraped[("gridnet_block_requests_delayed_total", "")] == node.stats.block_requests_delayed
    assert scraped[("gridnet_block_requests_refused_total", "RequestSuperseded")] > 5_000


def test_a_peer_asking_for_the_same_headers_in_a_loop_is_sent_them_at_the_rate(tmp_path: Path) -> None:
    """Headers cost the node as much as blocks to send (2,000 of them, some 350 KB, for an
    8-byte request): they were answered every time, outside the budget. Now a peer asking for
    the same headers in a loop is sent, over a minute, at most the burst, the rate and one
    answer, and no less than the rate allows."""
    chain = served_chain(tmp_path / "c", 12)
    node = limited(chain)
    node.add_peer("looper", host="10.0.0.7")
    ask = GetHeadersMsg((chain.main[0].hash,), 2_000)
    answer = header_bytes(node.handle("looper", ask, GENESIS_TIME))
    assert RATE / 2 < answer <= RATE  # (twelve headers, the first answer: within the burst)
    start, span = GENESIS_TIME + 1, 60_000
    served = 0
    for t in range(start, start + span, 10):
        served += header_bytes(node.handle("looper", ask, t))
        if t % 100 == start % 100:
            served += header_bytes(node.tick(t))
    served += answer
    allowed = RATE + RATE * span // 1000
    assert allowed - answer <= served <= allowed + answer
    assert node.stats.block_requests_delayed >= served // answer - 1
    assert node.stats.block_requests_refused["RequestSuperseded"] > 5_000
    assert node.stats.peer_faults == {}


def test_headers_and_blocks_share_a_hosts_budget_and_queue(tmp_path: Path) -> None:
    """A host over its budget with blocks waits for its headers too, in the same queue, in
    the order its peers asked."""
    chain = served_chain(tmp_path / "c", 8)
    node = limited(chain, serve_burst_bytes=1_000)
    for peer in ("p", "q"):
        node.add_peer(peer, "10.0.0.7")
    t = GENESIS_TIME
    first = node.handle("p", GetBlocksMsg((chain.main[0].hash,), 64), t)
    assert answers(first) == ["p"]
    assert node.handle("q", GetHeadersMsg((chain.main[0].hash,), 2_000), t) == []  # it waits
    assert node.handle("p", GetHeadersMsg((chain.main[4].hash,), 2_000), t) == []
    debt_ms = (sent_bytes(first) - 1_000) * 1000 // RATE
    assert answers(node.tick(t + debt_ms - 50)) == []
    waited = node.tick(t + debt_ms + 50)
    assert answers(waited) == ["q"] and header_bytes(waited) == 8 * len(encode(chain.main[8].header))
    assert answers(node.tick(t + debt_ms + 50 + header_bytes(waited) * 1000 // RATE + 50)) == ["p"]
    assert node.stats.block_requests_delayed == 2


def test_the_keys_of_one_host_share_its_budget_and_linking_again_starts_none(tmp_path: Path) -> None:
    """Node keys cost nothing, and links can be made again: the budget is the host's. Two
    keys of one host wait in one queue, answered in the order they asked once the budget
    has refilled; a key of another host is answered meanwhile; a key that leaves and links
    again is still over its host's budget."""
    chain = served_chain(tmp_path / "c", 8)
    node = limited(chain, serve_burst_bytes=1_000)
    for peer, host in (("p", "10.0.0.7"), ("q", "10.0.0.7"), ("other", "10.0.0.8")):
        node.add_peer(peer, host)
    ask = GetBlocksMsg((chain.main[0].hash,), 64)
    t = GENESIS_TIME
    first = node.handle("p", ask, t)
    assert answers(first) == ["p"]
    debt_ms = (sent_bytes(first) - 1_000) * 1000 // RATE
    assert debt_ms > 200
    assert node.handle("q", ask, t) == []  # another key of the same host: it waits
    assert node.handle("p", ask, t) == []
    assert answers(node.handle("other", ask, t)) == ["other"]  # another host: its own budget
    assert node.serving.waiting() == 2
    node.remove_peer("p")  # p leaves (its waiting request goes) and links again
    node.add_peer("p", "10.0.0.7")
    assert node.handle("p", ask, t + 1) == []  # still the host's debt, no new burst
    assert answers(node.tick(t + debt_ms - 50)) == []
    assert answers(node.tick(t + debt_ms + 50)) == ["q"]  # in order: q asked first
    later = t + debt_ms + 50 + (sent_bytes(first) * 1000 // RATE)
    assert answers(node.tick(later)) == ["p"]
    assert node.stats.block_requests_delayed == 3
    assert sum(node.stats.block_requests_refused.values()) == 0


def crowded_host(tmp_path: Path) -> tuple[Node, list[str], GetBlocksMsg]:
    """A node serving at a low rate, 16 peers of one host, and the request they all make."""
    chain = served_chain(tmp_path / "c", 8)
    node = limited(chain)
    peers = [f"k{i:02}" for i in range(16)]
    for peer in peers:
        node.add_peer(peer, "10.0.0.7")
    return node, peers, GetBlocksMsg((chain.main[0].hash,), 64)


def test_a_hosts_queue_holds_what_its_rate_answers_in_half_a_request_timeout(tmp_path: Path) -> None:
    """16 peers of one host ask at once at a low rate (answers of some 2.9 KB at 4 KB/s: 16
    of them take 12 s, as 16 answers of 3 MiB at 4 MiB/s would). Each request is answered
    within half its asker's request timeout of its asking, or refused at once
    (``ServeQueueFull``: counted, not a fault); none is answered after its asker gave up, nor
    waits to be dropped; the waiting ones are answered in the order they asked. (A bound by
    count, 16 waiting, answered the last after 10 s, its asker long gone.)"""
    node, peers, ask = crowded_host(tmp_path)
    t = GENESIS_TIME
    at_once = [peer for peer in peers if answers(node.handle(peer, ask, t))]
    waiting = node.serving.waiting()
    refused = node.stats.block_requests_refused["ServeQueueFull"]
    assert at_once and waiting >= 2 and refused >= 8
    assert len(at_once) + waiting + refused == len(peers)
    assert node.stats.block_requests_delayed == waiting and node.stats.peer_faults == {}
    answered_at: dict[str, int] = {}
    for now in range(t, t + 20_000, 100):
        answered_at.update(dict.fromkeys(answers(node.tick(now)), now))
    timeout = node.config.request_timeout_ms
    assert list(answered_at) == [peer for peer in peers if peer not in at_once][:waiting]  # in order
    assert max(answered_at.values()) - t <= timeout // 2 + 100  # (+ a tick)
    assert node.stats.block_requests_refused.get("RequestExpired", 0) == 0


def test_a_request_that_waited_a_request_timeout_is_dropped_not_answered(tmp_path: Path) -> None:
    """The node's ticks came late (a busy machine): a request that has waited its asker's
    request timeout is dropped by its rule (``RequestExpired``: counted, not a fault) rather
    than answered, as its asker has asked again or moved on; one that asked later (a peer's
    later ask starts its wait anew) is still answered."""
    chain = served_chain(tmp_path / "c", 8)
    node = limited(chain, serve_burst_bytes=1_000)
    for peer in ("p", "q"):
        node.add_peer(peer, "10.0.0.7")
    ask = GetBlocksMsg((chain.main[0].hash,), 64)
    t = GENESIS_TIME
    timeout = node.config.request_timeout_ms
    assert answers(node.handle("p", ask, t)) == ["p"]
    assert node.handle("q", ask, t) == []  # it waits, to be answered within half a second
    assert node.handle("p", ask, t + timeout - 2_000) == []  # p asks again, behind q
    assert answers(node.tick(t + timeout)) == ["p"]  # the next tick comes late: q's asker gave up
    assert node.stats.block_requests_refused == {"RequestExpired": 1}
    assert node.stats.peer_faults == {} and node.serving.waiting() == 0


def test_a_waiting_answer_is_estimated_as_it_is_sent(tmp_path: Path) -> None:
    """What a request would send is reckoned without building its answer (the stored sizes
    of its blocks, its headers' count times one's size), and it is what the answer sends."""
    chain = served_chain(tmp_path / "c", 8)
    node = limited(chain, serve_bytes_per_s=1 << 30, serve_burst_bytes=1 << 30)
    for ask in (
        GetBlocksMsg((chain.main[0].hash,), 64),
        GetBlocksMsg((chain.main[6].hash,), 64),
        GetBlocksMsg((chain.main[8].hash,), 64),
        GetHeadersMsg((chain.main[0].hash,), 2_000),
        GetHeadersMsg((chain.main[7].hash,), 2_000),
    ):
        out = node.handle("p", ask, GENESIS_TIME)
        assert node._answer_size(ask) == sent_bytes(out) + header_bytes(out)


def test_an_honest_peer_syncing_over_the_budget_gets_every_block_at_close_to_the_rate(tmp_path: Path) -> None:
    """A node syncing a chain several times the burst from a limited peer (one request in
    flight, as nodes ask: headers first, then blocks, both charged) gets every block, none of
    its requests refused, and never waits out its request timeout (it does not flag the
    server ``RequestUnanswered``), sent at 80% of the rate or more on the simulated clock — and
    not faster than the rate."""
    blocks = 60
    server_chain = served_chain(tmp_path / "s", blocks)
    total = sum(len(encode(server_chain.block_at(h))) for h in range(1, blocks + 1))
    assert total > 10 * RATE  # (ten seconds' worth at the rate)
    start = GENESIS_TIME + (blocks + 10) * INTERVAL
    net = MemoryNetwork(start_ms=start, latency_ms=50, jitter_ms=20, seed=3)
    server = net.add(limited(server_chain))
    sent = spied(server)
    asker = net.add(Node("asker", Chain.create(tmp_path / "a", server_chain.params)))
    net.link("server", "asker")
    assert asker.config.request_timeout_ms == 5_000
    while asker.chain.height < blocks and net.now < start + 600_000:
        net.step(100)
    assert asker.chain.head.hash == server_chain.head.hash
    elapsed_s = (net.now - start) / 1000
    assert server.stats.block_requests_delayed > 5  # (it was over the budget, most of the time)
    assert sum(server.stats.block_requests_refused.values()) == 0
    assert asker.stats.declined["RequestUnanswered"] == 0
    assert sent["blocks"] == total and sent["headers"] >= blocks * len(encode(server_chain.main[1].header))
    served = sent["blocks"] + sent["headers"]
    largest = 4 * max(len(encode(server_chain.block_at(h))) for h in range(1, blocks + 1))  # (an answer)
    assert served - RATE - largest <= RATE * elapsed_s  # never over the rate (headers included)
    assert served / elapsed_s >= 0.8 * RATE, f"{served / elapsed_s:.0f} bytes/s"


def test_a_damaged_block_met_answering_a_waiting_request_does_not_stop_the_node(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A waiting request is answered by a tick: a block the store cannot read back then is
    this node's fault, logged; the tick goes on and answers the other hosts' requests."""
    chain = served_chain(tmp_path / "c", 8)
    with chain.store.db:
        chain.store.db.execute("UPDATE blocks SET txs=? WHERE hash=?", (b"\x91\xa1x", chain.main[2].hash))
    node = limited(chain, serve_burst_bytes=1_000)
    for peer, host in (("p", "10.0.0.7"), ("q", "10.0.0.7"), ("r", "10.0.0.8"), ("s", "10.0.0.8")):
        node.add_peer(peer, host)
    past_damage = GetBlocksMsg((chain.main[3].hash,), 64)
    t = GENESIS_TIME
    assert answers(node.handle("p", past_damage, t)) == ["p"]
    assert answers(node.handle("r", past_damage, t)) == ["r"]
    assert node.handle("q", GetBlocksMsg((chain.main[0].hash,), 64), t) == []  # (through block 2)
    assert node.handle("s", past_damage, t) == []
    with caplog.at_level(logging.ERROR, logger="gridnet.net"):
        served = answers(node.tick(t + 2_000))  # (within a request timeout)
    assert served == ["s"]
    assert any("cannot serve q" in r.getMessage() for r in caplog.records)


def busy(out: list[Outgoing]) -> dict[str, BusyMsg]:
    return {to: msg for to, msg in out if isinstance(msg, BusyMsg)}


def test_a_request_refused_or_dropped_is_answered_busy(tmp_path: Path) -> None:
    """A request its host's queue cannot take (``ServeQueueFull``) is answered at once with
    ``BusyMsg`` — the kind of request, and when the queue could take it — and one dropped
    after waiting a request timeout (``RequestExpired``) is answered busy too; its asker then
    asks elsewhere instead of waiting out its timeout. A request superseded by the same peer's
    later one is not (the later one waits), nor is a waiting one."""
    node, peers, ask = crowded_host(tmp_path)
    t = GENESIS_TIME
    told: dict[str, BusyMsg] = {}
    at_once: list[str] = []
    for peer in peers:
        out = node.handle(peer, ask, t)
        told.update(busy(out))
        at_once += answers(out)
    refused = node.stats.block_requests_refused["ServeQueueFull"]
    assert refused >= 8 and len(told) == refused
    # (the time until the queue, a few answers at 4 KB/s, could take one more)
    assert all(not m.headers and 0 < m.retry_after_ms <= 20_000 for m in told.values())
    waiting = [p for p in peers if p not in told and p not in at_once]
    assert waiting and len(waiting) == node.serving.waiting()
    assert busy(node.handle(waiting[0], ask, t + 1)) == {}  # superseded: its later ask waits
    headers = busy(node.handle(next(iter(told)), GetHeadersMsg(ask.locator, 2_000), t + 2))
    assert [m.headers for m in headers.values()] == [True]
    late = node.tick(t + node.config.request_timeout_ms + 10)  # (ticks came late: all expire)
    assert set(busy(late)) == set(waiting) and all(m.retry_after_ms == 0 for m in busy(late).values())
    assert node.stats.block_requests_refused["RequestExpired"] == len(waiting)
    assert node.stats.peer_faults == {}


def test_askers_sharing_a_busy_host_sync_without_counting_it_unanswered(tmp_path: Path) -> None:
    """Six nodes behind one address sync from one server whose rate their host's queue cannot
    hold at once: some requests are refused (``ServeQueueFull``). Each refused asker is told it
    is busy and asks again after a back-off; every asker gets the whole chain, and none waits
    out a request timeout or flags the honest, busy server ``RequestUnanswered``."""
    server_chain = served_chain(tmp_path / "s", 24)
    start = GENESIS_TIME + 40 * INTERVAL
    net = MemoryNetwork(start_ms=start, latency_ms=50, jitter_ms=20, seed=5)
    server = net.add(limited(server_chain))
    askers = [net.add(Node(f"a{i}", Chain.create(tmp_path / f"a{i}", server_chain.params))) for i in range(6)]
    for asker in askers:
        net.link("server", asker.name)
        server.add_peer(asker.name, "10.0.0.7")  # (all behind one address)
    while any(a.chain.height < 24 for a in askers) and net.now < start + 600_000:
        net.step(100)
    assert all(a.chain.head.hash == server_chain.head.hash for a in askers)
    assert server.stats.block_requests_refused["ServeQueueFull"] > 0
    assert [a.stats.declined["RequestUnanswered"] for a in askers] == [0] * 6
    assert sum(a.stats.declined["PeerBusy"] for a in askers) > 0
    assert server.stats.peer_faults == {} and all(a.stats.peer_faults == {} for a in askers)


def test_a_server_busy_for_ever_is_asked_after_a_bounded_back_off_and_others_instead(
    tmp_path: Path,
) -> None:
    """A server whose budget for its askers' hosts will not refill for an hour answers their
    headers, then every request busy. An asker alone with it asks it again after a back-off
    that doubles up to ``BUSY_MAX_TIMEOUTS`` request timeouts (not at every status, 2 s, nor
    every timeout) and never counts it ``RequestUnanswered``; an asker that another peer
    announcing the same chain links meanwhile asks that one for the blocks (its headers are
    held by a busy peer) and is synced within seconds."""
    blocks = 16
    server_chain = served_chain(tmp_path / "s", blocks)
    start = GENESIS_TIME + (blocks + 10) * INTERVAL
    net = MemoryNetwork(start_ms=start, latency_ms=50, jitter_ms=20, seed=7)
    server = net.add(limited(server_chain, serve_bytes_per_s=1, serve_burst_bytes=1))
    asked: Counter[str] = Counter()
    handle = server.handle

    def counting(peer: str, msg: object, now: int) -> list[Outgoing]:
        if isinstance(msg, GetBlocksMsg | GetHeadersMsg):
            asked[peer] += 1
        return handle(peer, msg, now)  # type: ignore[arg-type]

    server.handle = counting  # type: ignore[method-assign]
    alone, other = (
        net.add(Node(n, Chain.create(tmp_path / n, server_chain.params))) for n in ("alone", "other")
    )
    net.link("server", "alone")
    net.link("server", "other")
    while other.stats.declined["PeerBusy"] == 0 and net.now < start + 30_000:
        net.step(100)
    assert other.chain.height == 0 and other.headers_pending() == blocks  # (its headers came)
    helper = net.add(Node("helper", served_chain(tmp_path / "h", blocks)))
    assert helper.chain.head.hash == server_chain.head.hash
    net.link("helper", "other")
    linked = net.now
    while other.chain.height < blocks and net.now < linked + 10_000:
        net.step(100)
    assert other.chain.head.hash == server_chain.head.hash
    span = 600_000
    net.run_until(start + span)
    timeout = alone.config.request_timeout_ms
    assert alone.chain.height == 0
    assert alone.stats.declined["PeerBusy"] >= span // (BUSY_MAX_TIMEOUTS * timeout)
    assert asked["alone"] <= 2 + span // (BUSY_MAX_TIMEOUTS * timeout)  # (not one per status)
    for asker in (alone, other):
        assert asker.stats.declined["RequestUnanswered"] == 0 and asker.stats.peer_faults == {}
