"""The audit kept up with a chain as it grows (``verify.Replay``): a replay followed a part
at a time, across reorganisations shallow and deep and a failure that leaves the main
chain, ends where ``verify_chain``'s replay from genesis does."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from gridnet.crypto.hashing import header_hash
from gridnet.crypto.keys import PrivateKey
from gridnet.encoding import encode
from gridnet.ledger.blocks import Block, encode_body
from gridnet.ledger.chain import AddStatus, Chain
from gridnet.ledger.params import ChainParams
from gridnet.ledger.store import DB_NAME, Store
from gridnet.ledger.txs.transfer import Transfer
from gridnet.ledger.verify import Replay, VerifyReport, verify_chain
from gridnet.units import UNITS_PER_GNC
from tests.helpers import extend, new_chain, sign, test_keys, test_params

KEYS = test_keys(3)
A, B, C = KEYS
MINER_P = PrivateKey.from_label("replay-miner-p")
MINER_Q = PrivateKey.from_label("replay-miner-q")


@pytest.fixture
def params() -> ChainParams:
    return test_params(KEYS)


def advance(replay: Replay, path: Path, behind: int = 0) -> VerifyReport | None:
    store = Store(path, readonly=True)
    try:
        with store.snapshot():
            return replay.advance(store, behind=behind)
    finally:
        store.close()


def finish(replay: Replay, path: Path) -> VerifyReport:
    store = Store(path, readonly=True)
    try:
        with store.snapshot():
            return replay.finish(store)
    finally:
        store.close()


def forks(tmp_path: Path, params: ChainParams, p_len: int, q_len: int) -> tuple[Chain, Chain, Chain]:
    """x on a shared prefix of two blocks then P's ``p_len`` blocks; Q's ``q_len`` blocks
    (more work when longer) are mined on the prefix but not given to x yet."""
    p, q, x = (new_chain(tmp_path / n, params) for n in ("p", "q", "x"))
    prefix = [extend(p, [sign(p, A, Transfer(B.address, UNITS_PER_GNC), n)]) for n in range(2)]
    for b in prefix:
        q.add_block(b, now=b.header.timestamp)
        x.add_block(b, now=b.header.timestamp)
    for n in range(p_len):
        b = extend(p, [sign(p, B, Transfer(C.address, UNITS_PER_GNC), n)], miner=MINER_P)
        x.add_block(b, now=b.header.timestamp)
    for n in range(q_len):
        extend(q, [sign(q, A, Transfer(C.address, 2 * UNITS_PER_GNC), 2 + n)], miner=MINER_Q)
    return p, q, x


def switch(x: Chain, q: Chain) -> None:
    """Give x every block of q's main chain (a reorganisation onto it)."""
    statuses = []
    for h in range(1, q.height + 1):
        b = q.block_at(h)
        assert b is not None
        statuses.append(x.add_block(b, now=b.header.timestamp).status)
    assert AddStatus.REORG in statuses
    assert x.head.hash == q.head.hash


def test_following_a_chain_ends_as_the_replay_from_genesis(tmp_path: Path, params: ChainParams) -> None:
    p, q, x = forks(tmp_path, params, 2, 0)
    replay = Replay()
    assert advance(replay, tmp_path / "x", behind=1) is None
    assert len(replay.hashes) == x.height  # the head left for later
    for n in range(3):  # the chain grows; the replay keeps up
        extend(x, [sign(x, A, Transfer(C.address, UNITS_PER_GNC), 2 + n)])
        assert advance(replay, tmp_path / "x") is None
        assert len(replay.hashes) == x.height + 1
    report = finish(replay, tmp_path / "x")
    whole = verify_chain(tmp_path / "x")
    assert report.ok and whole.ok
    assert (report.height, report.blocks, report.transactions) == (
        whole.height,
        whole.blocks,
        whole.transactions,
    )
    assert replay.values == x.values
    for c in (p, q, x):
        c.close()


@pytest.mark.parametrize("depth", [Replay.UNDO_DEPTH, 1], ids=["stepped-back", "from-genesis"])
def test_a_reorganisation_below_the_replay_is_followed(
    tmp_path: Path, params: ChainParams, depth: int
) -> None:
    """P's two blocks are replayed, then x switches to Q's three: the replay steps back two
    blocks (or, able to step back only one, starts again from genesis) and ends on Q."""
    p, q, x = forks(tmp_path, params, 2, 3)

    class Shallow(Replay):
        UNDO_DEPTH = depth

    replay = Shallow()
    assert advance(replay, tmp_path / "x") is None
    assert replay.hashes[-1] == p.head.hash
    switch(x, q)
    assert advance(replay, tmp_path / "x") is None
    assert replay.hashes[-1] == q.head.hash
    report = finish(replay, tmp_path / "x")
    assert report.ok, report
    assert report.transactions == verify_chain(tmp_path / "x").transactions == 5
    assert replay.values == x.values
    assert replay.commitment.root == x.head.header.state_root
    for c in (p, q, x):
        c.close()


def forge_signature(path: Path, block: Block) -> None:
    """Flip a bit of the stored block's transaction signature (it still decodes)."""
    signature = block.txs[1].signature
    db = sqlite3.connect(path / DB_NAME)
    (raw,) = db.execute(
        "SELECT txs FROM blocks WHERE hash=?", (header_hash(encode(block.header)),)
    ).fetchone()
    at = bytes(raw).index(signature)
    forged = bytes(raw[:at]) + bytes([raw[at] ^ 1]) + bytes(raw[at + 1 :])
    db.execute("UPDATE blocks SET txs=? WHERE hash=?", (forged, header_hash(encode(block.header))))
    db.commit()
    db.close()


def mend(path: Path, block: Block) -> None:
    """Store the block's own transactions again."""
    db = sqlite3.connect(path / DB_NAME)
    h = header_hash(encode(block.header))
    db.execute("UPDATE blocks SET txs=? WHERE hash=?", (encode_body(block), h))
    db.commit()
    db.close()


def test_a_failure_stands_while_its_block_is_on_the_main_chain(tmp_path: Path, params: ChainParams) -> None:
    p, q, x = forks(tmp_path, params, 2, 4)
    bad = x.block_at(3)
    assert bad is not None
    forge_signature(tmp_path / "x", bad)
    replay = Replay()
    failed = advance(replay, tmp_path / "x")
    assert failed is not None and not failed.ok and failed.bad_height == 3
    extend(x, [sign(x, A, Transfer(C.address, UNITS_PER_GNC), 2)])
    again = finish(replay, tmp_path / "x")
    assert (again.ok, again.bad_height, again.rule) == (False, 3, failed.rule)
    assert failed.rule == "BadMerkleRoot"  # (the signature is part of its id)
    assert again.rule == verify_chain(tmp_path / "x").rule

    mend(tmp_path / "x", bad)  # (x checks each block it disconnects: it reads back as its header's)
    switch(x, q)  # the block the replay failed at leaves the main chain: the replay goes on on Q
    report = finish(replay, tmp_path / "x")
    assert report.ok, report
    assert replay.values == x.values
    for c in (p, q, x):
        c.close()
