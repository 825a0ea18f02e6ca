"""Sync starts with headers: a node behind a peer asks for its headers, checks them as a
chain (links, proof-of-work, retarget, time) and only then asks for the blocks — and only
imports blocks of the headers it checked. A peer sending a bad header is faulted before any
body is downloaded."""

from __future__ import annotations

from pathlib import Path

import msgspec
import pytest

from gridnet.crypto.keys import PrivateKey
from gridnet.errors import WrongType
from gridnet.ledger.blocks import Header
from gridnet.ledger.chain import Chain
from gridnet.node.messages import (
    MAX_HEADERS,
    BlocksMsg,
    GetBlocksMsg,
    GetHeadersMsg,
    HeadersMsg,
    decode_message,
    encode_message,
)
from gridnet.node.node import Node, Outgoing
from tests.helpers import extend, new_chain, test_keys, test_params

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
