"""Operating a node: ``/status`` (the node's getblockchaininfo), ``/peers``, ``/health`` and
``/metrics`` (Prometheus), plus the middleware that times and logs every request."""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Iterator
from typing import TYPE_CHECKING, Final

from fastapi import FastAPI, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from pydantic import BaseModel, Field

from gridnet import __version__
from gridnet.node.api.common import ApiError
from gridnet.node.config import format_host_port
from gridnet.node.node import Node

if TYPE_CHECKING:
    from gridnet.net.tcp import TcpTransport

HEARTBEAT_LIMIT_S: Final = 10.0
"""The node is unhealthy when its tick loop has not run for this long."""
_log = logging.getLogger("gridnet.api")
_METHODS: Final = frozenset({"GET", "POST", "HEAD", "OPTIONS", "PUT", "PATCH", "DELETE"})


class SyncOut(BaseModel):
    target_height: int = Field(description="Highest height known: ours, a peer's or a checked header's")
    progress: float = Field(description="Our height over the target height (1.0: caught up)")
    syncing: bool
    headers_pending: int = Field(description="Checked headers whose blocks are not here yet")


class MempoolStatusOut(BaseModel):
    size: int
    bytes: int = Field(description="Encoded size of the pending transactions [bytes]")
    max_txs: int


class PeerCountOut(BaseModel):
    count: int
    inbound: int
    outbound: int


class StatusOut(BaseModel):
    chain: str = Field(description="The chain's name (from its genesis)")
    chain_id: str
    version: str
    address: str = Field(description="The node key's address")
    height: int
    head: str
    total_work: str = Field(description="Cumulative proof-of-work of the head's branch (decimal)")
    head_time: int = Field(description="The head block's timestamp [ms since 1970]")
    transactions: int = Field(description="Signed transactions in the main chain")
    sync: SyncOut
    mempool: MempoolStatusOut
    peers: PeerCountOut
    mining: bool
    uptime_s: float
    listen: str | None = Field(description="Peer-to-peer HOST:PORT (none without a transport)")


class PeerOut(BaseModel):
    address: str = Field(description="The peer's node key address")
    remote: str | None = Field(description="HOST:PORT of the link")
    direction: str | None = Field(description="outbound (we dialled it) or inbound")
    height: int | None = Field(description="The height it last announced")
    total_work: str | None = Field(description="The cumulative work it last announced (decimal)")
    faults: int = Field(description="Rule-breaking messages it sent on this link")
    bytes_in: int | None
    bytes_out: int | None
    connected_s: float | None = Field(description="How long the link has been up [s]")


class HealthOut(BaseModel):
    status: str
    heartbeat_age_s: float = Field(description="Seconds since the node's event loop last ticked")


class _NodeCollector(Collector):
    """Reads the node's figures when Prometheus scrapes (no bookkeeping on the hot path)."""

    def __init__(self, node: Node, transport: TcpTransport | None) -> None:
        self.node = node
        self.transport = transport

    def collect(self) -> Iterator[Metric]:
        node, stats = self.node, self.node.stats
        yield GaugeMetricFamily("gridnet_height", "Height of the main chain's head", value=node.chain.height)
        yield GaugeMetricFamily(
            "gridnet_sync_target_height", "Highest height known", value=node.sync_target()
        )
        peers = GaugeMetricFamily("gridnet_peers", "Linked peers", labels=["direction"])
        links = list(self.transport.links.values()) if self.transport is not None else []
        outbound = sum(1 for link in links if link.outbound)
        peers.add_metric(["outbound"], outbound)
        peers.add_metric(["inbound"], len(node.peers) - outbound)
        yield peers
        yield GaugeMetricFamily(
            "gridnet_mempool_transactions", "Pending transactions", value=len(node.mempool)
        )
        yield GaugeMetricFamily(
            "gridnet_mempool_bytes", "Size of the pending transactions", value=node.mempool.bytes
        )
        for name, help_text, value in (
            (
                "gridnet_blocks_imported",
                "Blocks from peers connected to the main chain",
                stats.blocks_imported,
            ),
            ("gridnet_blocks_mined", "Blocks mined by this node", stats.blocks_mined),
            ("gridnet_reorgs", "Reorganisations of the main chain", stats.reorgs),
            (
                "gridnet_block_requests_delayed",
                "Peers' block and header requests that waited for their host's serving budget",
                stats.block_requests_delayed,
            ),
        ):
            yield CounterMetricFamily(name, help_text, value=value)
        for name, help_text, counts in (
            ("gridnet_tx_rejections", "Transactions refused, evicted or dropped, by rule", stats.tx_rules),
            ("gridnet_invalid_blocks", "Invalid blocks and headers received, by rule", stats.block_rules),
            ("gridnet_peer_faults", "Rule-breaking messages from peers, by rule", stats.fault_rules),
            (
                "gridnet_orders_refused",
                "Peers' orders whose owner or meter failed the auction's rules on our head (no fault)",
                stats.orders_refused,
            ),
            (
                "gridnet_votes_refused",
                "Finality votes not kept (no fault: too late, ahead, ...)",
                stats.votes_refused,
            ),
            (
                "gridnet_block_requests_refused",
                "Peers' block and header requests not answered (no fault: queue full, superseded, expired)",
                stats.block_requests_refused,
            ),
        ):
            family = CounterMetricFamily(name, help_text, labels=["rule"])
            for rule, n in sorted(counts.items()):
                family.add_metric([rule], n)
            yield family
        outcomes = CounterMetricFamily("gridnet_tx_outcomes", "Mempool outcomes by kind", labels=["kind"])
        for kind, n in sorted(stats.tx_outcomes.items()):
            outcomes.add_metric([kind], n)
        yield outcomes
        for name, help_text, attr in (
            ("gridnet_peer_received_bytes", "Bytes received on the current links", "bytes_in"),
            ("gridnet_peer_sent_bytes", "Bytes sent on the current links", "bytes_out"),
        ):
            yield GaugeMetricFamily(name, help_text, value=sum(getattr(link, attr) for link in links))


def ops_routes(app: FastAPI, node: Node, transport: TcpTransport | None) -> None:
    """Add /status, /peers, /health and /metrics, and time every request."""
    started = time.time()
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_NodeCollector(node, transport))
    latency = Histogram(
        "gridnet_api_request_seconds",
        "Time to answer an API request",
        ["method", "route"],
        registry=registry,
        buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5),
    )

    @app.middleware("http")
    async def timed(request: Request, call_next: Callable[[Request], Awaitable[Response]]) -> Response:
        began = time.perf_counter()
        response = await call_next(request)
        elapsed = time.perf_counter() - began
        route = request.scope.get("route")
        template = getattr(route, "path", "unmatched")
        method = request.method if request.method in _METHODS else "other"  # (bounded labels)
        latency.labels(method, template).observe(elapsed)
        if _log.isEnabledFor(logging.DEBUG):
            _log.debug(
                "%s %s %d %.1f ms", request.method, request.url.path, response.status_code, elapsed * 1e3
            )
        return response

    @app.get(
        "/status", response_model=StatusOut, summary="The node at a glance (chain, sync, mempool, peers)"
    )
    async def status() -> StatusOut:
        chain = node.chain
        head = chain.head
        target = node.sync_target()
        links = list(transport.links.values()) if transport is not None else []
        outbound = sum(1 for link in links if link.outbound)
        return StatusOut(
            chain=chain.params.name,
            chain_id=chain.chain_id.hex(),
            version=__version__,
            address=node.name,
            height=head.height,
            head=head.hash.hex(),
            total_work=str(head.total_work),
            head_time=head.header.timestamp,
            transactions=chain.tx_count,
            sync=SyncOut(
                target_height=target,
                progress=round(head.height / target, 6) if target else 1.0,
                syncing=head.height < target,
                headers_pending=node.headers_pending(),
            ),
            mempool=MempoolStatusOut(
                size=len(node.mempool), bytes=node.mempool.bytes, max_txs=node.mempool.max_txs
            ),
            peers=PeerCountOut(count=len(node.peers), inbound=len(node.peers) - outbound, outbound=outbound),
            mining=node.config.miner is not None,
            uptime_s=round(time.time() - started, 3),
            listen=None if transport is None else format_host_port(transport.listen[0], transport.port),
        )

    @app.get("/peers", response_model=list[PeerOut], summary="Linked peers")
    async def peers() -> list[PeerOut]:
        links = transport.links if transport is not None else {}
        now = time.time()
        out = []
        for name in node.peers:
            link = links.get(name)
            work = node.peer_work.get(name)
            out.append(
                PeerOut(
                    address=name,
                    remote=None if link is None else link.remote,
                    direction=None if link is None else ("outbound" if link.outbound else "inbound"),
                    height=node.peer_height.get(name),
                    total_work=None if work is None else str(work),
                    faults=node.stats.peer_faults.get(name, 0),
                    bytes_in=None if link is None else link.bytes_in,
                    bytes_out=None if link is None else link.bytes_out,
                    connected_s=None if link is None else round(now - link.since, 3),
                )
            )
        return out

    @app.get(
        "/health",
        response_model=HealthOut,
        summary="200 while the node ticks and writes its store; 503 when it has stalled, cannot write it "
        "or found it damaged",
        responses={503: {"description": "The node has stalled, cannot write its store, or found it damaged"}},
    )
    async def health() -> HealthOut:
        now = time.monotonic()
        age = 0.0 if transport is None else now - transport.last_tick
        if age > HEARTBEAT_LIMIT_S:
            raise ApiError(503, "Unhealthy", f"the node's event loop last ticked {age:.1f} s ago")
        damage = node.chain.store.damage
        if damage is not None:  # (what it found damaged is never served; restart it once mended)
            raise ApiError(503, "Unhealthy", f"the node's store is damaged: {damage}")
        failure = None if transport is None else transport.store_failure
        if failure is not None:
            raise ApiError(
                503,
                "Unhealthy",
                f"the node cannot write its store: {failure.reason} (failing for "
                f"{now - failure.since:.1f} s, {failure.attempts} attempt(s), retrying); "
                f"its head, height {node.chain.height}, may be stale",
            )
        return HealthOut(status="ok", heartbeat_age_s=round(age, 3))

    @app.get("/metrics", summary="Prometheus metrics (text exposition format)", response_class=Response)
    async def metrics() -> Response:
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)
