"""A miner that gets another miner's block holding its own template's transactions, in its
order, takes the template's changes with the block's coinbase instead of applying the
transactions again (``Chain._as_template``). The result is the block's as a node without a
template computes it; any block that does not match is applied from scratch and refused by
the rule it breaks."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gridnet.crypto.hashing import header_hash
from gridnet.crypto.keys import PrivateKey
from gridnet.encoding import encode
from gridnet.errors import BadMerkleRoot, BadStateRoot, GridnetError, WrongReward
from gridnet.ledger.blocks import Block
from gridnet.ledger.chain import Chain
from gridnet.ledger.merkle import merkle_root
from gridnet.ledger.params import ChainParams
from gridnet.ledger.transactions import tx_id
from gridnet.ledger.transition import VerifiedTx
from tests.helpers import GENESIS_TIME, INTERVAL, new_chain, remine, test_params
from tests.ledger.test_restamp import KEYS, MINER, counting_applies, transfers

PEER = PrivateKey.from_label("template-reuse-peer").address


class Three:
    """The same chain three times: ``own`` holds a template, ``peer`` mines a block,
    ``plain`` applies that block with no template (the reference)."""

    def __init__(self, root: Path, params: ChainParams | None = None) -> None:
        params = params or test_params(KEYS)
        self.own = new_chain(root / "own", params)
        self.peer = new_chain(root / "peer", params)
        self.plain = new_chain(root / "plain", params)
        self.t0 = GENESIS_TIME + INTERVAL

    def peer_block(self, txs: list[VerifiedTx], at: int | None = None) -> Block:
        """The peer's block of ``txs``, mined (and added to the peer's chain)."""
        tpl = self.peer.build_block(PEER, txs, now=self.t0 if at is None else at)
        assert not tpl.rejected
        block = remine(tpl.block)
        self.peer.add_block(block, now=block.header.timestamp)
        return block

    def close(self) -> None:
        for chain in (self.own, self.peer, self.plain):
            chain.close()


def same_head(a: Chain, b: Chain) -> None:
    assert a.head.hash == b.head.hash
    assert a.values == b.values
    assert a.commitment.root == b.commitment.root == a.head.header.state_root


def test_a_peer_block_of_the_templates_transactions_is_not_applied_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    three = Three(tmp_path)
    txs = transfers(three.own, 6)
    first = three.own.build_block(MINER, txs[:2], now=three.t0)
    assert three.own.extend(first, txs, three.t0 + 5) is not None  # (extended: the same order)
    block = three.peer_block(txs, at=three.t0 + 40)  # (later: no rule read the time)
    applied = counting_applies(monkeypatch)
    three.own.add_block(block, now=block.header.timestamp)
    assert applied == []
    three.plain.add_block(block, now=block.header.timestamp)
    assert applied == [1]
    same_head(three.own, three.plain)
    assert three.own.account(PEER).balance > 0 and three.own.account(MINER).balance == 0
    # The template's own coinbase is gone: the next template, and the store, are the head's.
    nxt = three.own.build_block(MINER, [], now=block.header.timestamp + INTERVAL)
    mined = remine(nxt.block)
    three.own.add_block(mined, now=mined.header.timestamp)
    three.plain.add_block(mined, now=mined.header.timestamp)
    assert three.plain.head.hash == header_hash(encode(mined.header))
    same_head(three.own, three.plain)
    three.own.close()
    reopened = Chain.open(tmp_path / "own")
    assert reopened.values == three.plain.values
    reopened.close()
    three.plain.close()
    three.peer.close()


def test_a_peer_block_in_another_order_or_with_other_transactions_is_applied(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    three = Three(tmp_path)
    txs = transfers(three.own, 6)
    three.own.build_block(MINER, txs[:2] + txs[3:4] + txs[2:3] + txs[4:], now=three.t0)
    applied = counting_applies(monkeypatch)
    block = three.peer_block(txs)
    three.own.add_block(block, now=block.header.timestamp)
    three.plain.add_block(block, now=block.header.timestamp)
    assert applied == [1, 1]
    same_head(three.own, three.plain)
    three.own.build_block(MINER, transfers(three.own, 8)[6:], now=block.header.timestamp + INTERVAL)
    fewer = three.peer_block([], at=block.header.timestamp + INTERVAL)
    three.own.add_block(fewer, now=fewer.header.timestamp)
    three.plain.add_block(fewer, now=fewer.header.timestamp)
    assert applied == [1, 1, 2, 2]
    same_head(three.own, three.plain)
    three.close()


def _read_the_time(three: Three, draft: Any) -> None:
    draft.env.timestamp_read = True  # as a rule reading the block's time marks it


def _relied_on_a_later_time(three: Three, draft: Any) -> None:
    draft.env.time_floor = three.t0 + 1  # as a closed contract's end would set it


def _changed_after_its_seal(three: Three, draft: Any) -> None:
    draft.view.credit(MINER, 1)  # as an extension that failed half way leaves it


@pytest.mark.parametrize(
    "spoil",
    [_read_the_time, _relied_on_a_later_time, _changed_after_its_seal],
    ids=["a-rule-read-the-time", "block-earlier-than-a-time-relied-on", "changed-since-sealed"],
)
def test_a_template_that_does_not_hold_the_peer_blocks_state_applies_the_block(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, spoil: Callable[[Three, Any], None]
) -> None:
    """A template whose rules read the block's time, that relied on a time later than the
    peer's block, or that took a change after its last seal: the block is applied in full."""
    three = Three(tmp_path)
    txs = transfers(three.own, 4)
    tpl = three.own.build_block(MINER, txs, now=three.t0)
    assert tpl.draft is not None
    spoil(three, tpl.draft)
    applied = counting_applies(monkeypatch)
    block = three.peer_block(txs)
    three.own.add_block(block, now=block.header.timestamp)
    assert applied == [1]
    same_head(three.own, three.peer)
    three.close()


def with_coinbase(block: Block, **changes: object) -> Block:
    """``block`` with its coinbase's payload changed, the header's transaction root too."""
    cb = block.txs[0]
    cb = msgspec.structs.replace(cb, payload=msgspec.structs.replace(cb.payload, **changes))  # type: ignore[arg-type]
    txs = (cb, *block.txs[1:])
    root = merkle_root([tx_id(t) for t in txs])
    return Block(msgspec.structs.replace(block.header, tx_root=root), txs, block.votes)


@pytest.mark.parametrize(
    ("forge", "error"),
    [
        (lambda b: remine(with_coinbase(b, reward=b.txs[0].payload.reward + 1)), WrongReward),
        (lambda b: remine(with_coinbase(b, fees=b.txs[0].payload.fees + 1)), WrongReward),
        (lambda b: remine(b, state_root=bytes(32)), BadStateRoot),
        (lambda b: Block(b.header, with_coinbase(b, reward=0).txs, b.votes), BadMerkleRoot),
    ],
    ids=["reward", "fees", "state-root", "body-not-the-headers"],
)
def test_a_forged_peer_block_of_the_templates_transactions_is_refused_by_name(
    tmp_path: Path, forge: object, error: type[GridnetError]
) -> None:
    three = Three(tmp_path)
    txs = transfers(three.own, 4)
    three.own.build_block(MINER, txs, now=three.t0)
    honest = three.peer_block(txs)
    head, root = three.own.head.hash, three.own.head.header.state_root  # (the template stays)
    bad = forge(honest)  # type: ignore[operator]
    with pytest.raises(error):
        three.own.add_block(bad, now=bad.header.timestamp)
    assert three.own.head.hash == head and three.own.commitment.root == root
    three.own.add_block(honest, now=honest.header.timestamp)  # (the honest block still comes)
    same_head(three.own, three.peer)
    three.close()


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    sizes=st.lists(st.integers(0, 6), min_size=1, max_size=3),
    split=st.floats(0, 1),
    later=st.integers(0, 50_000),
)
def test_a_reused_template_gives_the_state_a_full_apply_gives(
    tmp_path_factory: pytest.TempPathFactory, sizes: list[int], split: float, later: int
) -> None:
    """Blocks of transfers, each held by ``own``'s template (built with the first part,
    extended with the rest), mined by the peer at another time: ``own`` ends where a chain
    that applies every block does."""
    three = Three(tmp_path_factory.mktemp("reuse"))
    every = transfers(three.own, sum(sizes))
    at, start = three.t0, 0
    for size in sizes:
        txs, start = every[start : start + size], start + size
        cut = round(split * size)
        tpl = three.own.build_block(MINER, txs[:cut], now=at)
        if cut < size:
            assert three.own.extend(tpl, txs, at + 1) is not None
        block = three.peer_block(txs, at=at + later)
        with pytest.MonkeyPatch.context() as monkeypatch:
            applied = counting_applies(monkeypatch)
            three.own.add_block(block, now=block.header.timestamp)
            assert applied == []
            three.plain.add_block(block, now=block.header.timestamp)
            assert applied == [block.header.height]
        same_head(three.own, three.plain)
        at = block.header.timestamp + INTERVAL
    three.close()
