"""Where a scenario runs.

``MemoryBackend``: full nodes on the in-memory network, on a simulated clock (``gridnet
simulate``). ``DevnetBackend``: node processes on 127.0.0.1 driven through their HTTP APIs,
on a scenario clock running faster than real time (``gridnet devnet --scenario``). The
scenario's participants do the same things on either: submit transactions to their node,
read its state, post orders and read a market topic.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Sequence
from typing import Any, Protocol
from urllib.parse import quote

from gridnet.crypto.address import address_from_text, address_to_text
from gridnet.encoding import decode, encode
from gridnet.errors import GridnetError, InvalidOrder, NodeUnavailable, OrderRefused
from gridnet.grid.commands import SignedCommand
from gridnet.ledger.chain import Chain
from gridnet.ledger.mempool import EventKind, PoolEvent
from gridnet.ledger.state import StateView, table_of
from gridnet.ledger.transactions import Transaction, tx_id
from gridnet.market.orders import SignedOrder, topic
from gridnet.net.memory import MemoryNetwork
from gridnet.node.client import LostTxAnswer, NodeClient, data_dir_token, lost_since
from gridnet.node.clock import Clock
from gridnet.node.devnet import LOCAL, Devnet, DevNode, stop_all
from gridnet.units import Address, Hash32, Interval


class Backend(Protocol):
    chain_id: Hash32
    act_every_ms: int
    """How often [clock ms] the scenario looks for deferred transactions that became possible."""

    def now(self) -> int:
        """The scenario's clock [ms since the Unix epoch]."""
        ...

    def advance(self, duration_ms: int) -> None:
        """Let ``duration_ms`` of the scenario's clock pass (the nodes work meanwhile)."""
        ...

    def submit(self, node: str, tx: Transaction) -> PoolEvent:
        """Hand ``tx`` to ``node``: its mempool outcome (accepted, or rejected with the rule)."""
        ...

    def submit_many(self, node: str, txs: Sequence[Transaction]) -> list[PoolEvent]:
        """``submit`` of each of ``txs``, in order, handed to ``node`` together; their outcomes."""
        ...

    def lost(self, node: str, after: int) -> tuple[list[PoolEvent], int]:
        """The transactions ``node``'s pool let go without a block (evicted, dropped: each
        event holds its transaction) numbered after ``after``, and the number to read after
        next time."""
        ...

    def next_nonce(self, node: str, address: Address) -> int:
        """The nonce ``address``'s next transaction needs, as ``node`` sees it."""
        ...

    def height(self, node: str) -> int:
        """The height of ``node``'s head."""
        ...

    def view(self, node: str) -> StateView:
        """Read access to ``node``'s head state (a fresh view: it caches what it reads)."""
        ...

    def post_order(self, node: str, signed: SignedOrder) -> str:
        """Post an order at ``node`` (which gossips it); "" or the rule that refused it."""
        ...

    def orders(self, node: str, area: str, interval: Interval) -> list[SignedOrder]:
        """The orders ``node`` holds on the market topic of ``area`` and ``interval``."""
        ...

    def post_command(self, node: str, signed: SignedCommand) -> str:
        """Post a DSO command at ``node`` for its area's devices; "" or the rule that refused it."""
        ...

    def commands(self, node: str, area: str, after: int) -> tuple[list[SignedCommand], int]:
        """The commands ``node`` holds for ``area`` after sequence number ``after``, and the
        number to read after next time."""
        ...

    def settled(self) -> bool:
        """Every mempool is empty and every node has the same head."""
        ...

    def stop(self) -> None:
        """Stop the nodes' work (their chains stay readable)."""
        ...

    def chain(self) -> Chain:
        """The first node's chain (after ``stop``, for the report)."""
        ...

    def node_figures(self) -> dict[str, dict[str, Any]]:
        """Per node: height and blocks mined, and what else the backend knows."""
        ...

    def close(self) -> None: ...


# --- the in-memory network ---------------------------------------------------------------


class MemoryBackend:
    act_every_ms = 60_000

    def __init__(self, net: MemoryNetwork, tick_ms: int) -> None:
        self.net = net
        self.tick_ms = tick_ms
        self.chain_id = net.nodes["n0"].chain.chain_id

    def now(self) -> int:
        return self.net.now

    def advance(self, duration_ms: int) -> None:
        self.net.run_for(duration_ms, self.tick_ms)

    def submit(self, node: str, tx: Transaction) -> PoolEvent:
        return self.net.submit(node, tx)[0]

    def submit_many(self, node: str, txs: Sequence[Transaction]) -> list[PoolEvent]:
        return [events[0] for events in self.net.submit_many(node, txs)]

    def lost(self, node: str, after: int) -> tuple[list[PoolEvent], int]:
        log = self.net.nodes[node].lost
        page = log.since(after)
        return [e for _, e in page], page[-1][0] if page else log.total

    def next_nonce(self, node: str, address: Address) -> int:
        n = self.net.nodes[node]
        return n.chain.account(address).nonce + len(n.mempool.by_sender.get(address, {}))

    def height(self, node: str) -> int:
        return self.net.nodes[node].chain.height

    def view(self, node: str) -> StateView:
        return self.net.nodes[node].chain.view()

    def post_order(self, node: str, signed: SignedOrder) -> str:
        try:
            self.net.send(node, self.net.nodes[node].post_order(signed, self.net.now))
        except (InvalidOrder, OrderRefused) as exc:
            return exc.rule
        return ""

    def orders(self, node: str, area: str, interval: Interval) -> list[SignedOrder]:
        return list(self.net.nodes[node].book.topic_orders(topic(area, interval)).values())

    def post_command(self, node: str, signed: SignedCommand) -> str:
        try:
            self.net.nodes[node].post_command(signed)
        except GridnetError as exc:
            return exc.rule
        return ""

    def commands(self, node: str, area: str, after: int) -> tuple[list[SignedCommand], int]:
        held, next_after = self.net.nodes[node].commands.since(area, after)
        return [c for _, c in held], next_after

    def settled(self) -> bool:
        nodes = self.net.nodes.values()
        return all(len(n.mempool) == 0 for n in nodes) and len({n.chain.head.hash for n in nodes}) == 1

    def stop(self) -> None:
        """Nothing runs between calls: the simulated clock stands still."""

    def chain(self) -> Chain:
        return self.net.nodes["n0"].chain

    def node_figures(self) -> dict[str, dict[str, Any]]:
        return {
            node.name: {
                "height": node.chain.height,
                "blocks_mined": node.stats.blocks_mined,
                "reorgs": node.stats.reorgs,
                "validation_s": round(node.stats.validation_seconds, 3),
            }
            for node in self.net.nodes.values()
        }

    def close(self) -> None:
        for node in self.net.nodes.values():
            node.close()


# --- node processes over HTTP ------------------------------------------------------------


class HttpState:
    """A node's head state as a ``StateSource``: ``StateView(HttpState(client))`` reads it
    through ``GET /state/{table}/{key}`` and decodes it as a local view would."""

    def __init__(self, client: NodeClient) -> None:
        self.client = client

    def get(self, key: bytes, /) -> bytes | None:
        table = table_of(key)
        if table is None:
            raise KeyError(f"no state table has the prefix of key {key.hex()}")
        body = self.client.get(f"/state/{table.name}/{key[len(table.prefix) :].hex()}")
        return None if body is None else bytes.fromhex(body["hex"])


class DevnetBackend:
    """A devnet of node processes (already started) on one scenario clock."""

    def __init__(self, devnet: Devnet, act_every_ms: int) -> None:
        self.devnet = devnet
        self.clock: Clock = devnet.clock
        self.act_every_ms = act_every_ms
        self.chain_id: Hash32 = devnet.chain_id
        self.clients = {node.name: NodeClient(f"{LOCAL}:{node.api_port}") for node in devnet.nodes}
        self._chain: Chain | None = None

    def now(self) -> int:
        return self.clock.now()

    def wait_linked(self, timeout_s: float) -> None:
        """Wait until every node answers its API and is linked to all the others; take each
        node's API token (to submit and post through it)."""
        deadline = time.monotonic() + timeout_s
        want = len(self.devnet.nodes) - 1
        while not all((s.peers or 0) >= want and s.height is not None for s in self.devnet.status()):
            self._check_alive()
            if time.monotonic() > deadline:
                raise NodeUnavailable(
                    f"the devnet's nodes did not all link up within {timeout_s:.0f} s (see their node.log in "
                    f"{self.devnet.root})"
                )
            time.sleep(0.1)
        for node in self.devnet.nodes:  # each wrote its API token before its API answered
            self.clients[node.name].token = data_dir_token(node.data_dir)

    def advance(self, duration_ms: int) -> None:
        end = time.monotonic() + self.clock.wall_seconds(duration_ms)
        while (left := end - time.monotonic()) > 0:
            self._check_alive()
            time.sleep(min(left, 0.5))

    def _check_alive(self) -> None:
        for node in self.devnet.nodes:
            if node.process is not None and node.process.poll() is not None:
                raise NodeUnavailable(f"node {node.name} exited (see {node.data_dir / 'node.log'})")

    def submit(self, node: str, tx: Transaction) -> PoolEvent:
        status, body = self.clients[node].call("POST", "/transactions", {"tx": encode(tx).hex()})
        txid = tx_id(tx)
        if status == 202:
            return PoolEvent(EventKind.ACCEPTED, txid, None)
        if status in (400, 422):
            return PoolEvent(EventKind.REJECTED, txid, None, body["code"], body["message"])
        raise NodeUnavailable(f"node {node}: POST /transactions answered {status}: {body}")

    def submit_many(self, node: str, txs: Sequence[Transaction]) -> list[PoolEvent]:
        return [self.submit(node, tx) for tx in txs]  # (its API takes one at a time)

    def lost(self, node: str, after: int) -> tuple[list[PoolEvent], int]:
        entries, after = lost_since(self.clients[node], after)
        return [lost_event(e) for e in entries], after

    def next_nonce(self, node: str, address: Address) -> int:
        return int(self.clients[node].get(f"/accounts/{address_to_text(address)}")["next_nonce"])

    def height(self, node: str) -> int:
        return int(self.clients[node].get("/head")["height"])

    def view(self, node: str) -> StateView:
        return StateView(HttpState(self.clients[node]))

    def post_order(self, node: str, signed: SignedOrder) -> str:
        status, body = self.clients[node].call("POST", "/orders", {"order": encode(signed).hex()})
        if status == 202:
            return ""
        if status in (400, 422):
            return str(body["code"])
        raise NodeUnavailable(f"node {node}: POST /orders answered {status}: {body}")

    def orders(self, node: str, area: str, interval: Interval) -> list[SignedOrder]:
        out: list[SignedOrder] = []
        offset: int | None = 0
        while offset is not None:  # every page of the topic
            body = self.clients[node].get(f"/orders/{quote(area, safe='')}/{interval}?offset={offset}")
            out.extend(decode(bytes.fromhex(o["hex"]), SignedOrder) for o in body["orders"])
            offset = body["next_offset"]
        return out

    def post_command(self, node: str, signed: SignedCommand) -> str:
        status, body = self.clients[node].call("POST", "/commands", {"command": encode(signed).hex()})
        if status == 202:
            return ""
        if status in (400, 422):
            return str(body["code"])
        raise NodeUnavailable(f"node {node}: POST /commands answered {status}: {body}")

    def commands(self, node: str, area: str, after: int) -> tuple[list[SignedCommand], int]:
        body = self.clients[node].get(f"/commands/{quote(area, safe='')}?after={after}")
        held = [decode(bytes.fromhex(c["hex"]), SignedCommand) for c in body["commands"]]
        return held, int(body["next_after"])

    def settled(self) -> bool:
        heads = [self.clients[n.name].get("/head") for n in self.devnet.nodes]
        return all(h["mempool_size"] == 0 for h in heads) and len({h["hash"] for h in heads}) == 1

    def stop(self) -> None:
        for client in self.clients.values():
            client.close()
        stop_all(self.devnet.nodes)

    def chain(self) -> Chain:
        if self._chain is None:
            self._chain = Chain.open(self.devnet.nodes[0].data_dir, readonly=True)
        return self._chain

    def node_figures(self) -> dict[str, dict[str, Any]]:
        chain = self.chain()
        mined = Counter(entry.header.miner for entry in chain.main[1:])  # (the headers held in memory)
        return {
            node.name: {"height": node.stored_height(), "blocks_mined": mined.get(_miner(node), 0)}
            for node in self.devnet.nodes
        }

    def close(self) -> None:
        self.stop()
        if self._chain is not None:
            self._chain.close()
            self._chain = None


def lost_event(entry: LostTxAnswer) -> PoolEvent:
    """The mempool event of one entry of ``GET /mempool/lost``, with its transaction."""
    return PoolEvent(
        EventKind(entry.kind),
        bytes.fromhex(entry.txid),
        address_from_text(entry.sender) if entry.sender else None,
        entry.rule,
        entry.message,
        decode(bytes.fromhex(entry.hex), Transaction) if entry.hex else None,
    )


def _miner(node: DevNode) -> bytes:
    return address_from_text(json.loads((node.data_dir / "node.json").read_text())["address"])
