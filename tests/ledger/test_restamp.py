"""A miner re-stamps its block template rather than build it again, when the block it gets is
the very block a fresh build would give (same head, same candidates, no rule that read the
block's time), and extends it with what arrived since rather than apply it all again."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from gridnet.crypto.keys import PrivateKey
from gridnet.encoding import encode
from gridnet.ledger.chain import Chain
from gridnet.ledger.params import ChainParams
from gridnet.ledger.transition import VerifiedTx, validate_transaction
from gridnet.ledger.txs.base import BlockEnv
from gridnet.ledger.txs.transfer import Transfer
from gridnet.units import UNITS_PER_GNC
from tests.helpers import GENESIS_TIME, INTERVAL, extend, new_chain, sign, test_keys, test_params

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
