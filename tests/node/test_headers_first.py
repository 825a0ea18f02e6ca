"""Sync starts with headers: a node behind a peer asks for its headers, checks them as a
chain (links, proof-of-work, retarget, time) and only then asks for the blocks — and only
imports blocks of the headers it checked. A peer sending a bad header is faulted before any
body is downloaded."""

from __future__ import annotations

from pathlib import Path

import msgspec
import pytest

from gridnet.crypto.hashing import header_hash
from gridnet.crypto.keys import PrivateKey
from gridnet.encoding import encode
from gridnet.errors import BadMerkleRoot, BlockTooLarge, ConflictsWithFinal, KnownInvalid, WrongType
from gridnet.ledger.blocks import Header
from gridnet.ledger.chain import Chain
from gridnet.ledger.mempool import EventKind
from gridnet.ledger.txs.transfer import Transfer
from gridnet.node.messages import (
    MAX_HEADERS,
    BlockMsg,
    BlocksMsg,
    GetBlocksMsg,
    GetHeadersMsg,
    HeadersMsg,
    decode_message,
    encode_message,
)
from gridnet.node.node import Node, NodeConfig, Outgoing
from tests.helpers import extend, new_chain, remine, sign, test_keys, test_params

KEYS = test_keys(2)


def ahead_and_behind(tmp_path: Path, blocks: int = 5) -> tuple[Node, Node]:
    params = test_params(KEYS)
    ahead, behind = new_chain(tmp_path / "a", params), new_chain(tmp_path / "b", params)
    for _ in range(blocks):
        extend(ahead, miner=PrivateKey.from_label("headers-miner"))
    return Node("A", ahead), Node("B", behind)


def now(chain: Chain) -> int:
    return chain.head.header.timestamp + 1_000


def only(out: list[Outgoing], kind: type) -> object:
    (msg,) = [m for _, m in out if isinstance(m, kind)]
    return msg


def test_a_node_behind_asks_for_headers_then_for_the_blocks(tmp_path: Path) -> None:
    a, b = ahead_and_behind(tmp_path)
    t = now(a.chain)
    ask = b.handle("A", a.status(), t)
    assert [type(m) for _, m in ask] == [GetHeadersMsg]  # no body before the headers
    headers = a.handle("B", only(ask, GetHeadersMsg), t)  # type: ignore[arg-type]
    assert len(only(headers, HeadersMsg).headers) == 5  # type: ignore[attr-defined]
    ask_blocks = b.handle("A", only(headers, HeadersMsg), t)  # type: ignore[arg-type]
    assert [type(m) for _, m in ask_blocks] == [GetBlocksMsg]
    blocks = a.handle("B", only(ask_blocks, GetBlocksMsg), t)  # type: ignore[arg-type]
    b.handle("A", only(blocks, BlocksMsg), t)  # type: ignore[arg-type]
    assert b.chain.head.hash == a.chain.head.hash


def test_a_bad_header_faults_the_peer_and_no_block_is_asked_for(tmp_path: Path) -> None:
    a, b = ahead_and_behind(tmp_path)
    t = now(a.chain)
    b.handle("A", a.status(), t)
    good = [a.chain.main[h].header for h in range(1, 6)]
    forged = msgspec.structs.replace(good[2], nonce=good[2].nonce + 1)  # its proof-of-work breaks
    out = b.handle("A", HeadersMsg((*good[:2], forged, *good[3:])), t)
    assert out == [] and b.stats.peer_faults == {"A": 1} and b.stats.invalid_blocks == 1
    assert b.chain.height == 0


def test_headers_stamped_ahead_of_the_clock_keep_those_before_them_and_fault_nobody(tmp_path: Path) -> None:
    """A peer whose clock runs 200 s ahead: its last headers are too far in the future for now
    (TimestampTooFarInFuture), which time cures. The whole batch was dropped and the peer cut
    off, so the valid blocks before them never synced; now those sync, and the rest follows
    once the clock has caught up."""
    params = test_params(KEYS)
    ahead, behind = new_chain(tmp_path / "a", params), new_chain(tmp_path / "b", params)
    for _ in range(5):
        extend(
            ahead,
            miner=PrivateKey.from_label("headers-miner"),
            timestamp=ahead.head.header.timestamp + 200_000,
        )
    a, b = Node("A", ahead), Node("B", behind)
    t = ahead.main[3].header.timestamp + 1_000  # blocks 4 and 5 are 199 and 399 s ahead of it
    b.handle("A", a.status(), t)
    out = b.handle("A", HeadersMsg(tuple(ahead.main[h].header for h in range(1, 6))), t)
    asked = only(out, GetBlocksMsg)
    blocks = a.handle("B", asked, t)  # type: ignore[arg-type]
    b.handle("A", only(blocks, BlocksMsg), t)  # type: ignore[arg-type]
    assert b.chain.height == 3 and not b.stats.peer_faults and b.stats.invalid_blocks == 0
    assert b.stats.declined["HeadersAhead"] == 1
    later = now(ahead)
    ask = b.handle("A", a.status(), later)
    headers = a.handle("B", only(ask, GetHeadersMsg), later)  # type: ignore[arg-type]
    ask_blocks = b.handle("A", only(headers, HeadersMsg), later)  # type: ignore[arg-type]
    b.handle("A", only(a.handle("B", only(ask_blocks, GetBlocksMsg), later), BlocksMsg), later)  # type: ignore[arg-type]
    assert b.chain.head.hash == ahead.head.hash


def test_a_gossiped_block_stamped_ahead_of_the_clock_is_declined_not_a_fault(tmp_path: Path) -> None:
    a, b = ahead_and_behind(tmp_path, blocks=0)
    block = extend(a.chain, timestamp=a.chain.head.header.timestamp + 200_000)
    early = block.header.timestamp - 199_000
    assert b.handle("A", BlockMsg(block), early) == []
    assert b.chain.height == 0 and not b.stats.peer_faults and b.stats.declined["HeadersAhead"] == 1
    b.handle("A", BlockMsg(block), block.header.timestamp)  # announced again once it is due
    assert b.chain.head.hash == a.chain.head.hash


def test_blocks_that_are_not_of_the_checked_headers_are_not_imported(tmp_path: Path) -> None:
    a, b = ahead_and_behind(tmp_path)
    t = now(a.chain)
    b.handle("A", a.status(), t)
    b.handle("A", HeadersMsg(tuple(a.chain.main[h].header for h in range(1, 3))), t)
    other = new_chain(tmp_path / "other", a.chain.params)
    stranger = extend(other, miner=PrivateKey.from_label("someone else"))  # valid, but never announced
    b.handle("A", BlocksMsg((stranger,)), t)
    assert b.chain.height == 0 and stranger.header.prev_hash == b.chain.head.hash


def test_a_headers_message_is_bounded() -> None:
    header = Header(1, 1, bytes(32), bytes(32), bytes(32), 0, bytes(32), 0, bytes(20))
    with pytest.raises(WrongType):
        decode_message(encode_message(HeadersMsg((header,) * (MAX_HEADERS + 1))))


def copy_of(chain: Chain, path: Path) -> Chain:
    """A fresh chain holding ``chain``'s main blocks."""
    twin = new_chain(path, chain.params)
    for height in range(1, chain.height + 1):
        block = chain.block_at(height)
        assert block is not None
        twin.add_block(block, now=block.header.timestamp)
    return twin


def grow(chain: Chain, blocks: int, miner: str) -> Chain:
    for _ in range(blocks):
        extend(chain, miner=PrivateKey.from_label(miner))
    return chain


def exchange(a: Node, b: Node, first: list[tuple[str, str, object]], t: int, drop: type | None = None) -> int:
    """Deliver messages between two nodes at once until none is left (or 2,000 went);
    ``drop``: a message type lost on the way. Returns how many were delivered."""
    nodes = {"A": a, "B": b}
    queue, sent = list(first), 0
    while queue and sent < 2_000:
        src, dst, msg = queue.pop(0)
        if drop is not None and isinstance(msg, drop):
            continue
        sent += 1
        queue.extend((dst, p, m) for p, m in nodes[dst].handle(src, msg, t) if p in nodes)  # type: ignore[arg-type]
    return sent


def test_a_lost_block_reply_is_asked_for_again_after_the_timeout(tmp_path: Path) -> None:
    a, b = ahead_and_behind(tmp_path)
    t = now(a.chain)
    exchange(a, b, [("A", "B", a.status())], t, drop=BlocksMsg)
    assert b.chain.height == 0
    exchange(a, b, [("A", "B", a.status())], t + 1_000)  # still waiting for the lost answer
    assert b.chain.height == 0
    exchange(a, b, [("A", "B", a.status())], t + b.config.request_timeout_ms)
    assert b.chain.head.hash == a.chain.head.hash


def test_a_chain_longer_than_the_header_room_syncs_in_turns(tmp_path: Path) -> None:
    a, _ = ahead_and_behind(tmp_path, blocks=30)
    b = Node("B", new_chain(tmp_path / "b2", a.chain.params), NodeConfig(max_pending_headers=10))
    sent = exchange(a, b, [("A", "B", a.status())], now(a.chain))
    assert b.chain.head.hash == a.chain.head.hash and sent < 40


def test_a_peer_that_reorganises_between_headers_and_blocks_is_followed(tmp_path: Path) -> None:
    a, b = ahead_and_behind(tmp_path)
    heavier = grow(new_chain(tmp_path / "heavier", a.chain.params), 8, "another miner")
    t = heavier.head.header.timestamp + 1_000
    (ask,) = b.handle("A", a.status(), t)
    (headers,) = a.handle("B", ask[1], t)
    (get_blocks,) = b.handle("A", headers[1], t)
    for height in range(1, heavier.height + 1):  # A switches to a heavier chain meanwhile
        block = heavier.block_at(height)
        assert block is not None
        a.chain.add_block(block, now=t)
    exchange(a, b, [("B", "A", get_blocks[1]), ("A", "B", a.status())], t)
    assert b.chain.head.hash == heavier.head.hash


def test_a_node_on_a_long_weaker_branch_switches_to_the_heavier_one(tmp_path: Path) -> None:
    common = grow(new_chain(tmp_path / "common", test_params(KEYS)), 100, "common miner")
    ours = grow(copy_of(common, tmp_path / "ours"), 150, "our miner")
    theirs = grow(copy_of(common, tmp_path / "theirs"), 160, "their miner")
    assert theirs.head.total_work > ours.head.total_work
    a, b = Node("A", theirs), Node("B", ours)
    sent = exchange(a, b, [("A", "B", a.status())], now(theirs))
    assert b.chain.head.hash == theirs.head.hash and sent < 20


def test_headers_nobody_asked_for_are_not_kept(tmp_path: Path) -> None:
    a, b = ahead_and_behind(tmp_path)
    headers = HeadersMsg(tuple(a.chain.main[h].header for h in range(1, 6)))
    assert b.handle("A", headers, now(a.chain)) == []
    assert b.handle("A", a.status(), now(a.chain)) != []  # (asked now: headers first)


def test_a_reorg_drops_what_follows_a_returned_transaction_that_fails(tmp_path: Path) -> None:
    # On B's branch Y paid S, and S spent part of it (its nonce 0); S's nonce 1 waits in B's
    # pool. A's heavier branch has Y's nonce 0 paying Z instead: S's nonce 0, back from the
    # losing branch, cannot pay (InsufficientBalance), so nonce 1 follows a gap no block can
    # fill. It is dropped at once (not held until block building gives up on it), and every
    # transaction that left is in B's log of lost ones, with its rule.
    y, z = KEYS
    s = PrivateKey.from_label("reorg-spender")
    params = test_params(KEYS)
    ours, theirs = new_chain(tmp_path / "b", params), new_chain(tmp_path / "a", params)
    paid = sign(ours, y, Transfer(s.address, 1_000_000), 0)
    spent = sign(ours, s, Transfer(z.address, 500_000), 0)
    extend(ours, [paid, spent])
    extend(theirs, [sign(theirs, y, Transfer(z.address, 7), 0)])
    grow(theirs, 2, "their miner")
    a, b = Node("A", theirs), Node("B", ours)
    waiting = sign(ours, s, Transfer(z.address, 1_000), 1)
    assert b.submit_tx(waiting, now=now(ours))[0][0].kind is EventKind.ACCEPTED
    exchange(a, b, [("A", "B", a.status())], now(theirs))
    assert ours.head.hash == theirs.head.hash and len(b.mempool) == 0
    lost = [(e.tx, e.rule) for _, e in b.lost.since(0)]
    assert lost == [(paid, "NonceTooLow"), (spent, "InsufficientBalance"), (waiting, "NonceGap")]
    assert all(e.tx is None for e in b.events)  # (the recent outcomes hold no transaction's bytes)
    assert ours.account(s.address).nonce == 0  # S signs its nonce 0 again: nothing is in the way


def test_a_body_that_is_not_its_headers_own_costs_only_its_sender_its_branch(tmp_path: Path) -> None:
    """The red team's peer copied an honest peer's headers and answered the request for their
    blocks with the first block's header over another body (BadMerkleRoot): the node forgot
    every peer's branch through that header, so the honest peer's blocks, in flight, were
    discarded and its headers fetched again (a 3,000-block sync took twice as long). Only the
    sender's branch goes now: the honest answer is imported as it comes."""
    a, b = ahead_and_behind(tmp_path)
    t = now(a.chain)
    asked_a = only(b.handle("A", a.status(), t), GetHeadersMsg)
    blocks_of_a = only(b.handle("A", only(a.handle("B", asked_a, t), HeadersMsg), t), GetBlocksMsg)  # type: ignore[arg-type]
    lie = msgspec.structs.replace(a.status(), head=b"\x07" * 32)  # a head of its own: asked for headers
    asked_h = only(b.handle("H", lie, t), GetHeadersMsg)
    copies = only(a.handle("B", asked_h, t), HeadersMsg)  # type: ignore[arg-type]
    blocks_of_h = b.handle("H", copies, t)  # type: ignore[arg-type]
    assert blocks_of_h == [("H", blocks_of_a)]
    real = a.chain.block_at(1)
    assert real is not None
    bad = msgspec.structs.replace(real, txs=real.txs + real.txs)
    assert b.handle("H", BlocksMsg((bad,)), t) == []
    assert b.stats.peer_faults == {"H": 1} and b.stats.block_rules["BadMerkleRoot"] == 1
    assert b.headers.holders(a.chain.main[1].hash) == ["A"] and b.headers.held("H") == 0
    out = b.handle("A", only(a.handle("B", blocks_of_a, t), BlocksMsg), t)  # type: ignore[arg-type]
    assert b.chain.head.hash == a.chain.head.hash and b.headers_pending() == 0
    assert not any(isinstance(m, GetHeadersMsg) for _, m in out)  # nothing fetched again


def test_a_block_found_invalid_drops_every_branch_through_it(tmp_path: Path) -> None:
    """A header whose block breaks the chain's rules (here its state root) is invalid
    whoever sends it: every peer's pending branch through it goes."""
    a, b = ahead_and_behind(tmp_path, blocks=1)
    real = a.chain.block_at(1)
    assert real is not None
    forged = remine(real, state_root=bytes(32))  # its body is the header's own
    t = now(a.chain)
    for peer, head in (("A", b"\x01"), ("H", b"\x02")):
        status = msgspec.structs.replace(a.status(), head=head * 32)
        only(b.handle(peer, status, t), GetHeadersMsg)
        b.handle(peer, HeadersMsg((forged.header,)), t)
    h = header_hash(encode(forged.header))
    assert sorted(b.headers.holders(h)) == ["A", "H"]
    b.handle("H", BlocksMsg((forged,)), t)
    assert b.chain.entries[h].invalid and b.stats.peer_faults == {"H": 1}
    assert b.headers.holders(h) == [] and b.headers_pending() == 0


def test_a_header_that_conflicts_with_finality_condemns_every_copy_of_it(tmp_path: Path) -> None:
    """The chain raises ``ConflictsWithFinal`` (a branch leaving the main chain below its last
    final block) and ``KnownInvalid`` before it indexes a block, so it marks nothing: the
    header alone earns them, whoever sends its block, and every peer's branch through it goes
    (as for a block the chain marked invalid); a body that is not the header's own condemns
    only the copy its sender sent."""
    a, b = ahead_and_behind(tmp_path, blocks=1)
    real = a.chain.block_at(1)
    assert real is not None
    h = header_hash(encode(real.header))
    for error in (ConflictsWithFinal("below the last final block"), KnownInvalid("an ancestor")):
        assert b._condemned(h, real.header, error)
    assert not b._condemned(h, real.header, BadMerkleRoot("another body"))
    assert not b._condemned(h, real.header, BlockTooLarge("padded"))
