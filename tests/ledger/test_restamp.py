"""A miner re-stamps its block template rather than build it again, when the block it gets is
the very block a fresh build would give (same head, same candidates, no rule that read the
block's time), and extends it with what arrived since rather than apply it all again."""

from __future__ import annotations

import sqlite3
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from gridnet.crypto.hashing import header_hash
from gridnet.crypto.keys import PrivateKey
from gridnet.encoding import encode
from gridnet.errors import BadStateRoot
from gridnet.ledger.blocks import Block
from gridnet.ledger.chain import BlockTemplate, Chain
from gridnet.ledger.params import ChainParams
from gridnet.ledger.transition import VerifiedTx, validate_transaction
from gridnet.ledger.txs.base import BlockEnv
from gridnet.ledger.txs.transfer import Transfer
from gridnet.units import UNITS_PER_GNC
from tests.helpers import GENESIS_TIME, INTERVAL, extend, new_chain, remine, sign, test_keys, test_params

KEYS = test_keys(3)
MINER = PrivateKey.from_label("restamp-miner").address


def transfers(chain: Chain, n: int) -> list[VerifiedTx]:
    txs = [sign(chain, KEYS[i % 2], Transfer(KEYS[2].address, UNITS_PER_GNC), i // 2) for i in range(n)]
    return [validate_transaction(t, chain.params, chain.chain_id) for t in txs]


def test_a_restamped_template_is_the_block_a_fresh_build_gives_at_that_time(tmp_path: Path) -> None:
    chain = new_chain(tmp_path / "c", test_params(KEYS))
    extend(chain)
    candidates = transfers(chain, 6)
    t0 = chain.head.header.timestamp + INTERVAL
    tpl = chain.build_block(MINER, candidates, now=t0)
    assert len(tpl.included) == 6 and not tpl.timestamp_read
    for later in (t0 + 1, t0 + 7 * INTERVAL, t0 + 3_600_000):
        restamped = chain.restamp(tpl, later)
        assert restamped is not None
        fresh = chain.build_block(MINER, candidates, now=later)
        assert encode(restamped.block) == encode(fresh.block)
        assert restamped.included == fresh.included


def test_a_time_before_the_median_is_moved_past_it_as_a_build_would(tmp_path: Path) -> None:
    chain = new_chain(tmp_path / "c", test_params(KEYS))
    for _ in range(3):
        extend(chain)
    tpl = chain.build_block(MINER, transfers(chain, 2), now=chain.head.header.timestamp + INTERVAL)
    early = GENESIS_TIME  # long before the chain's median time
    restamped = chain.restamp(tpl, early)
    assert restamped is not None
    assert encode(restamped.block) == encode(chain.build_block(MINER, transfers(chain, 2), now=early).block)
    assert restamped.block.header.timestamp == chain.median_time_past(chain.head) + 1


def test_a_template_off_the_head_or_that_read_the_time_is_built_again(tmp_path: Path) -> None:
    chain = new_chain(tmp_path / "c", test_params(KEYS))
    tpl = chain.build_block(MINER, transfers(chain, 2), now=GENESIS_TIME + INTERVAL)
    assert chain.restamp(replace(tpl, timestamp_read=True), GENESIS_TIME + 2 * INTERVAL) is None
    extend(chain)  # the head moves on
    assert chain.restamp(tpl, GENESIS_TIME + 2 * INTERVAL) is None


def test_a_rule_that_reads_the_block_time_marks_its_environment(tmp_path: Path) -> None:
    params: ChainParams = test_params(KEYS)
    env = BlockEnv(params, b"\0" * 32, 1, MINER, GENESIS_TIME)
    assert not env.timestamp_read
    env.height, env.fees = 2, 5  # what every block sets is no reading of its time
    assert not env.timestamp_read
    env.restamp(GENESIS_TIME + 5)  # not read yet: it may move
    assert env.peek_timestamp() == GENESIS_TIME + 5 and not env.timestamp_read
    assert env.timestamp == GENESIS_TIME + 5
    assert env.timestamp_read
    with pytest.raises(ValueError, match="read the block's time"):
        env.restamp(GENESIS_TIME + 6)


def test_an_extended_template_is_the_block_of_its_transactions_then_the_new_ones(tmp_path: Path) -> None:
    chain = new_chain(tmp_path / "c", test_params(KEYS))
    extend(chain)
    txs = transfers(chain, 8)
    first, later = txs[:4], txs[4:]
    t0 = chain.head.header.timestamp + INTERVAL
    tpl = chain.build_block(MINER, first, now=t0)
    before = encode(tpl.block)
    extended = chain.extend(tpl, txs, t0 + 30_000)  # all candidates: the held ones are skipped
    assert extended is not None and not extended.rejected
    assert [v.txid for v in extended.included] == [v.txid for v in txs]
    fresh = chain.build_block(MINER, first + later, now=t0 + 30_000)
    assert encode(extended.block) == encode(fresh.block)
    assert encode(tpl.block) == before and len(tpl.included) == 4  # the first template is as it was
    again = chain.extend(extended, [], t0 + 60_000)  # nothing new: the same block, re-stamped
    assert again is not None
    assert encode(again.block) == encode(chain.build_block(MINER, txs, now=t0 + 60_000).block)


def test_an_extension_refuses_what_does_not_apply_and_keeps_the_rest(tmp_path: Path) -> None:
    chain = new_chain(tmp_path / "c", test_params(KEYS))
    extend(chain)
    txs = transfers(chain, 4)
    replayed = txs[0]  # held already: skipped, not refused
    gap = validate_transaction(
        sign(chain, KEYS[0], Transfer(KEYS[2].address, UNITS_PER_GNC), 9), chain.params, chain.chain_id
    )
    t0 = chain.head.header.timestamp + INTERVAL
    tpl = chain.build_block(MINER, txs[:2], now=t0)
    extended = chain.extend(tpl, [replayed, gap, *txs[2:]], t0 + 1)
    assert extended is not None
    assert [type(e).__name__ for _, e in extended.rejected] == ["NonceGap"]
    assert [v.txid for v in extended.included] == [v.txid for v in txs]


def test_a_template_off_the_head_or_that_read_the_time_is_not_extended(tmp_path: Path) -> None:
    chain = new_chain(tmp_path / "c", test_params(KEYS))
    txs = transfers(chain, 3)
    tpl = chain.build_block(MINER, txs[:1], now=GENESIS_TIME + INTERVAL)
    assert chain.extend(replace(tpl, timestamp_read=True), txs, GENESIS_TIME + 2 * INTERVAL) is None
    extend(chain)
    assert chain.extend(tpl, txs, GENESIS_TIME + 2 * INTERVAL) is None


def test_a_rule_that_needed_the_time_reached_lets_the_block_move_later_only(tmp_path: Path) -> None:
    params: ChainParams = test_params(KEYS)
    env = BlockEnv(params, b"\0" * 32, 1, MINER, GENESIS_TIME + 100)
    assert env.time_reached(GENESIS_TIME + 50)  # yes: stays yes later (a contract may close)
    assert not env.timestamp_read and env.time_floor == GENESIS_TIME + 50
    env.restamp(GENESIS_TIME + 500)
    with pytest.raises(ValueError):
        env.restamp(GENESIS_TIME + 49)  # before what the rule relied on
    assert not env.time_reached(GENESIS_TIME + 10_000)  # no: a later time may say yes
    assert env.timestamp_read


def test_a_template_moves_no_earlier_than_a_time_its_rules_relied_on(tmp_path: Path) -> None:
    chain = new_chain(tmp_path / "c", test_params(KEYS))
    extend(chain)
    t0 = chain.head.header.timestamp + INTERVAL
    tpl = chain.build_block(MINER, transfers(chain, 2), now=t0)
    assert tpl.draft is not None
    tpl.draft.env.time_floor = t0 + 1_000  # as a closed contract's end would set it
    assert chain.restamp(tpl, t0 + 999) is None
    assert chain.extend(tpl, [], t0 + 999) is None
    moved = chain.restamp(tpl, t0 + 1_000)
    assert moved is not None and moved.block.header.timestamp == t0 + 1_000


def test_a_template_left_on_the_commitment_is_gone_once_a_block_arrives(tmp_path: Path) -> None:
    """A template's changes stay on the chain's commitment for the next template's root;
    a block that moves the head finds the head's commitment, and so do the store and the
    next template."""
    params = test_params(KEYS)
    chain, other = new_chain(tmp_path / "a", params), new_chain(tmp_path / "b", params)
    extend(other)
    t0 = other.head.header.timestamp
    txs = transfers(chain, 6)
    first = chain.build_block(MINER, txs[:3], now=t0)
    assert chain.extend(first, txs, t0 + 1) is not None
    arrived = other.block_at(1)
    assert arrived is not None
    chain.add_block(arrived, now=t0)  # (its state root is checked on the head's commitment)
    assert chain.commitment.root == chain.head.header.state_root == arrived.header.state_root
    tpl = chain.build_block(MINER, txs, now=t0 + INTERVAL)
    solved = remine(tpl.block)
    other.add_block(solved, now=solved.header.timestamp)  # (its state root is checked there)
    assert other.head.hash == header_hash(encode(solved.header))
    chain.close()
    reopened = Chain.open(tmp_path / "a")  # (the stored state is the head's)
    assert reopened.commitment.root == arrived.header.state_root
    reopened.close()


def counting_applies(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Heights of the blocks the chain module applies from here on."""
    from gridnet.ledger import chain as chain_module

    applied: list[int] = []
    real = chain_module.apply_block

    def counted(state: Any, commitment: Any, block: Block, *args: Any, **kw: Any) -> Any:
        applied.append(block.header.height)
        return real(state, commitment, block, *args, **kw)

    monkeypatch.setattr(chain_module, "apply_block", counted)
    return applied


def test_a_mined_template_is_adopted_not_applied_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    params = test_params(KEYS)
    chain, other = new_chain(tmp_path / "a", params), new_chain(tmp_path / "b", params)
    applied = counting_applies(monkeypatch)
    txs = transfers(chain, 6)
    t0 = GENESIS_TIME + INTERVAL
    tpl = chain.build_block(MINER, txs[:2], now=t0)
    tpl = chain.extend(tpl, txs, t0 + 1)
    assert tpl is not None
    tpl = chain.restamp(tpl, t0 + 2)  # (no rule read the time: the same changes)
    assert tpl is not None
    solved = remine(tpl.block)
    chain.add_block(solved, now=solved.header.timestamp)
    assert applied == []  # adopted: sealing the template applied it
    other.add_block(solved, now=solved.header.timestamp)  # applied there, from scratch
    assert applied == [1]
    assert chain.values == other.values
    assert chain.commitment.root == other.commitment.root == solved.header.state_root
    chain.close()
    assert Chain.open(tmp_path / "a").values == other.values  # (stored as an applied block is)


def test_a_block_under_another_header_is_checked_against_that_header(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The template's result is not taken for another header, even with the same tuple of
    transactions: the block's own coinbase and roots are checked (``test_template_reuse``)."""
    chain, other = new_chain(tmp_path / "a", test_params(KEYS)), new_chain(tmp_path / "b", test_params(KEYS))
    applied = counting_applies(monkeypatch)
    tpl = chain.build_block(MINER, transfers(chain, 4), now=GENESIS_TIME + INTERVAL)
    moved = remine(tpl.block, timestamp=tpl.block.header.timestamp + 1)  # the same tuple of txs
    assert moved.txs is tpl.block.txs
    chain.add_block(moved, now=moved.header.timestamp)
    other.add_block(moved, now=moved.header.timestamp)
    assert applied == [1]  # (by the other chain only)
    assert chain.values == other.values and chain.commitment.root == moved.header.state_root
    bad = remine(next_block_template(chain).block, state_root=bytes(32))
    with pytest.raises(BadStateRoot):
        chain.add_block(bad, now=bad.header.timestamp)
    assert chain.head.hash == header_hash(encode(moved.header))


def next_block_template(chain: Chain) -> BlockTemplate:
    return chain.build_block(MINER, [], now=chain.head.header.timestamp + INTERVAL)


def test_an_adopted_block_whose_write_fails_leaves_the_head_and_its_root(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The adopted template's changes are on the commitment before the block is written: a
    write that fails (a full disk) takes them off again, and the block is whole next time."""
    chain = new_chain(tmp_path / "a", test_params(KEYS))
    head, root = chain.head.hash, chain.commitment.root
    tpl = chain.build_block(MINER, transfers(chain, 4), now=GENESIS_TIME + INTERVAL)
    solved = remine(tpl.block)

    def full(*_args: Any) -> None:
        raise sqlite3.OperationalError("database or disk is full")

    monkeypatch.setattr(chain.store, "connect", full)
    with pytest.raises(sqlite3.OperationalError):
        chain.add_block(solved, now=solved.header.timestamp)
    assert chain.head.hash == head and chain.commitment.root == root
    monkeypatch.undo()
    chain.add_block(solved, now=solved.header.timestamp)
    assert chain.head.hash == header_hash(encode(solved.header))
    assert chain.commitment.root == solved.header.state_root
