"""Sync against hostile peers (sans-IO): pending headers are bounded per peer and overall,
expire, go with their peer and never block another peer's; a branch lighter than our best
known header is not kept, nor a side block's body on its own; a branch below the chain's
minimum work is checked without being kept (presync); and a peer that leaves leaves nothing
behind. Each refusal is counted under its rule (``Node.stats.declined``)."""

from __future__ import annotations

import dataclasses
from collections import deque
from collections.abc import Mapping
from pathlib import Path

import msgspec
import pytest

from gridnet.crypto.hashing import header_hash
from gridnet.crypto.keys import PrivateKey
from gridnet.encoding import encode
from gridnet.errors import WrongType
from gridnet.ledger.blocks import Block, Header
from gridnet.ledger.chain import Chain
from gridnet.ledger.genesis import chain_id_of
from gridnet.ledger.params import ChainParams
from gridnet.ledger.transactions import Transaction
from gridnet.ledger.txs.transfer import Transfer
from gridnet.node.gossip import TX
from gridnet.node.messages import (
    MAX_BLOCKS,
    MAX_HEADERS,
    MAX_INVENTORY,
    MAX_LOCATOR,
    MAX_TXS,
    BlockMsg,
    BlocksMsg,
    GetBlocksMsg,
    GetHeadersMsg,
    HaveMsg,
    HeadersMsg,
    Message,
    StatusMsg,
    TxRejectedMsg,
    TxsMsg,
    decode_message,
    encode_message,
    encode_work,
)
from gridnet.node.node import Node, NodeConfig, Outgoing
from tests.helpers import extend, new_chain, sign, test_keys, test_params
from tests.node.branches import cheap_branch

KEYS = test_keys(2)
HUGE = 10**30
"""Work a lying peer announces."""
SMALL = NodeConfig(max_headers_per_peer=25, max_pending_headers=35, headers_per_request=10)


class Liar:
    """A peer that serves a forged header branch and no block."""

    def __init__(self, params: ChainParams, headers: list[Header], name: str = "liar") -> None:
        self.name = name
        self.genesis = chain_id_of(params)
        self.asked: list[type] = []
        self.serve(headers)

    def serve(self, headers: list[Header]) -> None:
        self.headers = headers
        self.index = {header_hash(encode(h)): i for i, h in enumerate(headers)}

    def answer(self, msg: GetHeadersMsg) -> HeadersMsg:
        start = 0
        for h in msg.locator:
            if h in self.index:
                start = self.index[h] + 1
                break
            if h == self.genesis:
                break
        return HeadersMsg(tuple(self.headers[start : start + min(msg.limit, MAX_HEADERS)]))

    def feed(self, node: Node, now: int, work: int = HUGE, watch: list[int] | None = None) -> None:
        """Announce ``work`` and answer every header request of ``node`` (asks for blocks go
        unanswered); ``watch`` collects the node's pending headers after each answer."""
        queue: deque[Outgoing] = deque(node.handle(self.name, status(work), now))
        while queue:
            to, msg = queue.popleft()
            if to != self.name:
                continue
            self.asked.append(type(msg))
            if isinstance(msg, GetHeadersMsg):
                queue.extend(node.handle(self.name, self.answer(msg), now))
                if watch is not None:
                    watch.append(node.headers_pending())


def status(work: int) -> StatusMsg:
    return StatusMsg(0, bytes(32), encode_work(work))


def exchange(nodes: dict[str, Node], first: list[tuple[str, str, Message]], now: int) -> None:
    """Deliver messages between ``nodes`` until none is left."""
    queue = deque(first)
    for _ in range(10_000):
        if not queue:
            return
        src, dst, msg = queue.popleft()
        queue.extend((dst, p, m) for p, m in nodes[dst].handle(src, msg, now) if p in nodes)
    raise AssertionError("the exchange did not settle")


def grown(path: Path, params: ChainParams, blocks: int, miner: str = "honest miner") -> Chain:
    chain = new_chain(path, params)
    for _ in range(blocks):
        extend(chain, miner=PrivateKey.from_label(miner))
    return chain


def later(*chains: Chain) -> int:
    return max(c.head.header.timestamp for c in chains) + 1_000


# --- 1. pending headers: per peer, overall, expiry, departure ------------------------------


def test_a_peer_holds_its_share_of_pending_headers_and_never_blocks_another(tmp_path: Path) -> None:
    params = test_params(KEYS)
    honest = Node("honest", grown(tmp_path / "honest", params, 40))
    liar, sybil = (
        Liar(params, cheap_branch(params, 100)),
        Liar(params, cheap_branch(params, 100, b"2"), "sybil"),
    )
    node = Node("victim", new_chain(tmp_path / "victim", params), dataclasses.replace(SMALL))
    t = later(honest.chain) + 100 * params.block_interval_ms
    liar.feed(node, t)
    assert liar.asked == [GetHeadersMsg] * 3 + [GetBlocksMsg]  # 25 kept: then its blocks
    assert node.headers_pending() == 25
    assert node.stats.declined["PendingHeadersFull"] == 1  # 5 of its third answer
    # The sybil's headers are checked but not kept (presync) until its branch has more work
    # than the liar's pending tip (30 headers), then fetched again and kept: overall room for
    # 10, so it pushes out the larger share to take 25.
    sybil.feed(node, t)
    assert sybil.asked == [GetHeadersMsg] * 6 + [GetBlocksMsg]
    assert node.headers_pending() == 25 and node.headers.held("liar") == 0
    # The honest peer's headers push out the largest share in turn, and it syncs while both
    # stay linked.
    exchange({"victim": node, "honest": honest}, [("honest", "victim", honest.status())], t)
    assert node.chain.head.hash == honest.chain.head.hash
    assert node.headers_pending() <= 10  # the liar's branch made room; the sybil's is lighter


def test_pending_headers_go_with_their_peer(tmp_path: Path) -> None:
    params = test_params(KEYS)
    liar = Liar(params, cheap_branch(params, 100))
    node = Node("victim", new_chain(tmp_path / "victim", params), dataclasses.replace(SMALL))
    liar.feed(node, params.genesis_time + 200 * params.block_interval_ms)
    assert node.headers_pending() == 25 and node.sync_target() == 25
    node.remove_peer("liar")
    assert node.headers_pending() == 0 and node.sync_target() == 0


def test_pending_headers_without_progress_expire(tmp_path: Path) -> None:
    params = test_params(KEYS)
    liar = Liar(params, cheap_branch(params, 100))
    node = Node("victim", new_chain(tmp_path / "victim", params), dataclasses.replace(SMALL))
    t = params.genesis_time + 200 * params.block_interval_ms
    liar.feed(node, t)
    expiry = SMALL.pending_expiry_timeouts * SMALL.request_timeout_ms
    node.tick(t + expiry - 1)
    assert node.headers_pending() == 25  # its blocks are late, not yet given up
    node.tick(t + expiry)
    assert node.headers_pending() == 0
    assert node.stats.declined["PendingHeadersExpired"] == 1


def test_a_branch_ending_lighter_than_the_best_known_header_is_not_kept(tmp_path: Path) -> None:
    params = test_params(KEYS)
    honest = Node("honest", grown(tmp_path / "honest", params, 40))
    node = Node("victim", new_chain(tmp_path / "victim", params))
    t = later(honest.chain)
    (ask,) = node.handle("honest", honest.status(), t)
    (headers,) = honest.handle("victim", ask[1], t)
    node.handle("honest", headers[1], t)  # 40 headers pending, their blocks asked for
    assert node.headers_pending() == 40
    liar = Liar(params, cheap_branch(params, 30))
    liar.feed(node, t)  # it claims more work, but its whole branch is lighter
    assert liar.asked == [GetHeadersMsg]
    assert node.headers_pending() == 40
    assert node.stats.declined["LighterBranch"] == 1


def test_a_peer_whose_branch_was_declined_is_not_followed_again_for_a_while(tmp_path: Path) -> None:
    """Checking a branch costs the node, not the peer: after one is declined, the same peer's
    claims of more work are not followed until the expiry time has passed."""
    params = test_params(KEYS)
    node = Node("victim", grown(tmp_path / "victim", params, 40))
    liar = Liar(params, cheap_branch(params, 30))
    t = later(node.chain)
    liar.feed(node, t)
    assert liar.asked == [GetHeadersMsg] and node.stats.declined["LighterBranch"] == 1
    assert node.handle("liar", status(2 * HUGE), t + 1_000) == []
    assert node.handle("liar", status(2 * HUGE), t + node.headers.expiry_ms - 1) == []
    (ask,) = node.handle("liar", status(2 * HUGE), t + node.headers.expiry_ms)
    assert isinstance(ask[1], GetHeadersMsg)


# --- 2. side blocks ----------------------------------------------------------------------


def test_a_side_block_is_not_stored_on_its_own_but_its_branch_is_once_heavier(tmp_path: Path) -> None:
    params = test_params(KEYS)
    node = Node("victim", grown(tmp_path / "victim", params, 3))
    other = new_chain(tmp_path / "other", params)
    side = extend(other, miner=PrivateKey.from_label("side miner"))  # forks at genesis
    h = header_hash(encode(side.header))
    assert node.handle("other", BlockMsg(side), later(node.chain)) == []
    assert h not in node.chain.entries and node.chain.store.block_data(h) is None
    assert node.stats.declined["LighterBranch"] == 1
    for _ in range(4):  # its branch grows past ours: headers first, then its blocks, stored
        extend(other, miner=PrivateKey.from_label("side miner"))
    peer = Node("other", other)
    t = later(node.chain, other)
    exchange({"victim": node, "other": peer}, [("other", "victim", peer.status())], t)
    assert node.chain.head.hash == other.head.hash


def test_orphans_are_bounded_in_bytes_per_peer_and_go_with_it(tmp_path: Path) -> None:
    params = test_params(KEYS)
    source = new_chain(tmp_path / "source", params)
    blocks = [extend(source) for _ in range(10)]
    size = len(encode(blocks[1]))
    config = NodeConfig(max_orphan_bytes_per_peer=3 * size + size // 2)
    node = Node("victim", new_chain(tmp_path / "victim", params), config)
    for b in blocks[1:]:  # every one lacks its parent
        node.handle("peer", BlockMsg(b), b.header.timestamp)
    assert len(node.orphans) == 3
    node.remove_peer("peer")
    assert len(node.orphans) == 0


def test_a_node_prunes_side_branches_deep_below_its_head(tmp_path: Path) -> None:
    params = test_params(KEYS)
    node = Node("victim", grown(tmp_path / "victim", params, 2), NodeConfig(keep_side_depth=3))
    side = extend(new_chain(tmp_path / "other", params), miner=PrivateKey.from_label("side miner"))
    node.chain.add_block(side, now=later(node.chain))  # (stored before: a reorg undone, say)
    h = header_hash(encode(side.header))
    node.tick(later(node.chain))
    assert h in node.chain.entries  # it leaves the main chain 2 blocks below the head
    extend(node.chain)
    node.tick(later(node.chain) + node.config.status_interval_ms)
    assert h not in node.chain.entries and node.chain.store.block_data(h) is None


# --- 1. minimum chain work -----------------------------------------------------------------


def min_work_params(blocks: int) -> ChainParams:
    """Test rules whose minimum chain work is that of ``blocks`` blocks on genesis."""
    target = test_params(KEYS).initial_target_int
    minimum = (blocks + 1) * ((1 << 256) // target)
    return test_params(KEYS, min_chain_work=minimum.to_bytes(32, "big"))


def test_a_branch_below_the_minimum_work_is_checked_but_never_kept(tmp_path: Path) -> None:
    params = min_work_params(25)
    config = NodeConfig(headers_per_request=10)
    node = Node("victim", new_chain(tmp_path / "victim", params), config)
    liar = Liar(params, cheap_branch(params, 24))
    t = params.genesis_time + 100 * params.block_interval_ms
    pending: list[int] = []
    liar.feed(node, t, watch=pending)
    assert liar.asked == [GetHeadersMsg] * 3 and pending == [0, 0, 0]  # presynced, none kept
    assert node.stats.declined["BelowMinChainWork"] == 1
    # Its announcement alone, and a block of a branch below the minimum, are refused too.
    assert node.handle("liar", status(100), t) == []
    low = extend(new_chain(tmp_path / "low", params))
    assert node.handle("liar", BlockMsg(low), t) == []
    assert node.chain.height == 0 and node.chain.store.block_data(header_hash(encode(low.header))) is None
    assert node.stats.declined["BelowMinChainWork"] == 3


def test_a_branch_reaching_the_minimum_work_is_fetched_again_and_kept(tmp_path: Path) -> None:
    params = min_work_params(25)
    honest = Node("honest", grown(tmp_path / "honest", params, 30))
    node = Node("victim", new_chain(tmp_path / "victim", params), NodeConfig(headers_per_request=10))
    exchange({"victim": node, "honest": honest}, [("honest", "victim", honest.status())], later(honest.chain))
    assert node.chain.head.hash == honest.chain.head.hash
    assert node.headers_pending() == 0 and not node.headers.proofs and not node.headers.presyncs


def test_a_branch_swapped_after_its_presync_is_not_kept(tmp_path: Path) -> None:
    params = min_work_params(25)
    honest = grown(tmp_path / "honest", params, 30)
    real = [honest.main[h].header for h in range(1, 31)]
    node = Node("victim", new_chain(tmp_path / "victim", params), NodeConfig(headers_per_request=10))
    liar = Liar(params, real)
    t = later(honest)
    queue: deque[Outgoing] = deque(node.handle("liar", status(HUGE), t))
    while queue:
        _, msg = queue.popleft()
        liar.asked.append(type(msg))
        assert isinstance(msg, GetHeadersMsg)
        if node.headers.proofs and liar.headers is real:  # presynced: now serve a cheap branch
            liar.serve(cheap_branch(params, 24))
        queue.extend(node.handle("liar", liar.answer(msg), t))
        assert node.headers_pending() == 0
    assert GetBlocksMsg not in liar.asked
    assert node.stats.declined["BelowMinChainWork"] == 1


# --- 3. message bounds and a departed peer's state ----------------------------------------


@pytest.mark.parametrize(
    "message",
    [
        StatusMsg(1, bytes(32), b"\xff" * 3_900_000),  # a 3.9 MB "work"
        GetHeadersMsg((bytes(32),) * (MAX_LOCATOR + 1), 10),
        GetBlocksMsg((bytes(32),) * (MAX_LOCATOR + 1), 10),
        HaveMsg((bytes(32),) * (MAX_INVENTORY + 1), ()),
        TxRejectedMsg(bytes(32), "x" * 65, ""),
        TxRejectedMsg(bytes(32), "NonceGap", "x" * 1025),
    ],
    ids=["work", "headers-locator", "blocks-locator", "inventory", "rule", "reason"],
)
def test_every_field_a_peer_sends_is_bounded(message: Message) -> None:
    with pytest.raises(WrongType):
        decode_message(encode_message(message))


def test_counts_of_transactions_and_blocks_in_a_message_are_bounded(tmp_path: Path) -> None:
    chain = new_chain(tmp_path / "c", test_params(KEYS))
    tx = sign(chain, KEYS[0], Transfer(KEYS[1].address, 1), 0)
    block = extend(chain)
    with pytest.raises(WrongType):
        decode_message(encode_message(TxsMsg((tx,) * (MAX_TXS + 1))))
    with pytest.raises(WrongType):
        decode_message(encode_message(BlocksMsg((block,) * (MAX_BLOCKS + 1))))


def mentions(value: object, name: str, seen: set[int]) -> list[str]:
    """Where ``name`` appears in ``value`` (dicts, sequences, sets, dataclasses, objects)."""
    if isinstance(value, str):
        return ["here"] if value == name else []
    if id(value) in seen or isinstance(value, (bytes, int, float, bool, type(None), Chain)):
        return []
    seen.add(id(value))
    found: list[str] = []
    if isinstance(value, Mapping):
        for k, v in value.items():
            found += [f"[{k!r}]{w}" for w in mentions(k, name, seen) + mentions(v, name, seen)]
    elif isinstance(value, (list, tuple, set, frozenset, deque)):
        for v in value:
            found += [f"[]{w}" for w in mentions(v, name, seen)]
    elif isinstance(value, (msgspec.Struct, Block, Transaction)):
        return []
    else:
        fields = getattr(value, "__dict__", {}) | {
            s: getattr(value, s) for s in getattr(type(value), "__slots__", ()) if hasattr(value, s)
        }
        for k, v in fields.items():
            found += [f".{k}{w}" for w in mentions(v, name, seen)]
    return found


def test_a_peer_that_leaves_leaves_nothing_behind(tmp_path: Path) -> None:
    params = test_params(KEYS)
    node = Node("victim", new_chain(tmp_path / "victim", params), dataclasses.replace(SMALL))
    node.add_peer("other")
    peer = "gone"
    node.add_peer(peer)
    t = params.genesis_time + 200 * params.block_interval_ms
    Liar(params, cheap_branch(params, 100), peer).feed(node, t)  # its work, headers, a request
    source = new_chain(tmp_path / "source", params)
    blocks = [extend(source) for _ in range(2)]
    node.handle(peer, BlockMsg(blocks[1]), t)  # an orphan
    txs = [sign(node.chain, KEYS[0], Transfer(KEYS[1].address, 1), n) for n in range(3)]
    node.handle(peer, TxsMsg((txs[0], txs[2])), t)  # one taken, one held for its gap
    node.handle(peer, HaveMsg((bytes(32),), ()), t)  # an id asked of it
    node.handle(peer, BlockMsg(msgspec.structs.replace(blocks[0], txs=blocks[0].txs * 2)), t)  # a fault
    node.inventory.tell(TX, [peer], bytes(32))
    node.tick(t)  # (announcements to it)
    assert mentions(node, peer, set())  # it is known all over the node
    node.remove_peer(peer)
    assert mentions(node, peer, set()) == []
    assert len(node.early) == 0 and len(node.orphans) == 0 and node.headers_pending() == 0
