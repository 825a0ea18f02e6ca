"""Mempool: fee priority, per-sender nonce order, cap with eviction, named outcomes."""

from __future__ import annotations

from pathlib import Path

import msgspec
import pytest

from gridnet.crypto.keys import PrivateKey
from gridnet.encoding import encode
from gridnet.errors import DealStarted, NonceGap
from gridnet.ledger.chain import Chain
from gridnet.ledger.mempool import EventKind, LostLog, Mempool, PoolEvent
from gridnet.ledger.transactions import Transaction, tx_id
from gridnet.ledger.transition import validate_transaction
from gridnet.ledger.txs.transfer import Transfer
from tests.helpers import extend, new_chain, sign, test_keys, test_params


@pytest.fixture
def chain(tmp_path: Path) -> Chain:
    return new_chain(tmp_path / "c", test_params(test_keys(6)))


def transfer(chain: Chain, key: PrivateKey, nonce: int, fee: int, amount: int = 1_000) -> Transaction:
    return sign(chain, key, Transfer(test_keys(6)[5].address, amount), nonce, fee)


def test_candidates_by_fee_rate_with_sender_nonce_order(chain: Chain) -> None:
    a, b, c = test_keys(3)
    pool = Mempool(chain.params, chain.chain_id)
    txs = [
        transfer(chain, a, 0, 200),
        transfer(chain, a, 1, 900),  # pays most, but must follow a's nonce 0
        transfer(chain, b, 0, 500),
        transfer(chain, c, 0, 300),
    ]
    for tx in txs:
        assert pool.add(tx, chain.account)[0].kind is EventKind.ACCEPTED
    order = [(v.tx.fee, v.tx.nonce) for v in pool.candidates()]
    assert order == [(500, 0), (300, 0), (200, 0), (900, 1)]


def test_replay_and_gap_are_rejected_by_name(chain: Chain) -> None:
    a = test_keys(1)[0]
    tx0 = transfer(chain, a, 0, 200)
    extend(chain, [tx0])
    pool = Mempool(chain.params, chain.chain_id)
    replay = pool.add(tx0, chain.account)[0]
    assert (replay.kind, replay.rule) == (EventKind.REJECTED, "NonceTooLow")
    gap = pool.add(transfer(chain, a, 5, 200), chain.account)[0]
    assert (gap.kind, gap.rule) == (EventKind.REJECTED, "NonceGap")


def test_forged_signature_rejected(chain: Chain) -> None:
    a = test_keys(1)[0]
    tx = transfer(chain, a, 0, 200)
    forged = msgspec.structs.replace(tx, signature=bytes(64))
    event = Mempool(chain.params, chain.chain_id).add(forged, chain.account)[0]
    assert (event.kind, event.rule) == (EventKind.REJECTED, "BadSignature")


def test_full_pool_evicts_lowest_payer_or_refuses(chain: Chain) -> None:
    a, b, c, d = test_keys(4)
    pool = Mempool(chain.params, chain.chain_id, max_txs=3)
    for key, fee in ((a, 300), (b, 200), (c, 400)):
        assert pool.add(transfer(chain, key, 0, fee), chain.account)[0].kind is EventKind.ACCEPTED
    low = pool.add(transfer(chain, d, 0, 150), chain.account)
    assert [(e.kind, e.rule) for e in low] == [(EventKind.REJECTED, "MempoolFull")]
    high = pool.add(transfer(chain, d, 0, 500), chain.account)
    assert [(e.kind, e.rule) for e in high] == [
        (EventKind.ACCEPTED, ""),
        (EventKind.EVICTED, "MempoolFull"),
    ]
    assert high[1].sender == b.address
    assert len(pool) == 3


def test_eviction_takes_the_senders_later_nonces_too(chain: Chain) -> None:
    a, b = test_keys(2)
    pool = Mempool(chain.params, chain.chain_id, max_txs=3)
    pool.add(transfer(chain, a, 0, 150), chain.account)
    pool.add(transfer(chain, a, 1, 900), chain.account)
    pool.add(transfer(chain, b, 0, 300), chain.account)
    events = pool.add(transfer(chain, b, 1, 400), chain.account)
    evicted = [(e.sender, e.rule) for e in events if e.kind is EventKind.EVICTED]
    assert evicted == [(a.address, "MempoolFull"), (a.address, "MempoolFull")]
    assert all(v.sender == b.address for v in pool.by_id.values())


def test_replacement_needs_a_higher_fee(chain: Chain) -> None:
    """By 10% and by the minimum fee of its size (docs/protocol.md 6): one base unit short
    of that is ``ReplacementUnderpriced`` (tests/ledger/test_mempool_replacement.py)."""
    a = test_keys(1)[0]
    pool = Mempool(chain.params, chain.chain_id)
    pool.add(transfer(chain, a, 0, 300), chain.account)
    same = pool.add(transfer(chain, a, 0, 300, amount=7), chain.account)[0]
    assert same.rule == "ReplacementUnderpriced"
    size = validate_transaction(transfer(chain, a, 0, 301, amount=7), chain.params, chain.chain_id).size
    need = pool.replacement_fee(pool.by_sender[a.address][0], size)
    assert (
        pool.add(transfer(chain, a, 0, need - 1, amount=7), chain.account)[0].rule == "ReplacementUnderpriced"
    )
    higher = pool.add(transfer(chain, a, 0, need, amount=7), chain.account)
    assert [(e.kind, e.rule) for e in higher] == [(EventKind.ACCEPTED, ""), (EventKind.EVICTED, "Replaced")]


def test_a_sender_at_its_pending_limit_is_refused_a_new_nonce_but_may_replace(chain: Chain) -> None:
    a, b = test_keys(2)
    pool = Mempool(chain.params, chain.chain_id, max_per_sender=3)
    for nonce in range(3):
        assert pool.add(transfer(chain, a, nonce, 200), chain.account)[0].kind is EventKind.ACCEPTED
    fourth = pool.add(transfer(chain, a, 3, 900), chain.account)
    assert [(e.kind, e.rule) for e in fourth] == [(EventKind.REJECTED, "TooManyPending")]
    assert "already has 3 pending" in fourth[0].message
    assert len(pool.by_sender[a.address]) == 3
    # Replacing one it has pending adds none; another sender has its own limit.
    replaced = pool.add(transfer(chain, a, 2, 400), chain.account)
    assert [(e.kind, e.rule) for e in replaced] == [(EventKind.ACCEPTED, ""), (EventKind.EVICTED, "Replaced")]
    assert pool.add(transfer(chain, b, 0, 200), chain.account)[0].kind is EventKind.ACCEPTED


def test_pending_spending_cannot_exceed_balance(chain: Chain) -> None:
    a = test_keys(1)[0]
    balance = chain.account(a.address).balance
    pool = Mempool(chain.params, chain.chain_id)
    first = pool.add(transfer(chain, a, 0, 200, amount=balance // 2), chain.account)[0]
    assert first.kind is EventKind.ACCEPTED
    second = pool.add(transfer(chain, a, 1, 200, amount=balance // 2), chain.account)[0]
    assert (second.kind, second.rule) == (EventKind.REJECTED, "InsufficientBalance")


def test_a_replacement_frees_what_the_replaced_transaction_owed(chain: Chain) -> None:
    a = test_keys(1)[0]
    balance = chain.account(a.address).balance
    pool = Mempool(chain.params, chain.chain_id)
    assert (
        pool.add(transfer(chain, a, 0, 200, amount=balance - 1_000), chain.account)[0].kind
        is EventKind.ACCEPTED
    )
    too_much = pool.add(transfer(chain, a, 1, 200, amount=1_000), chain.account)[0]
    assert too_much.rule == "InsufficientBalance"
    # Replacing nonce 0 by a small transfer leaves room for nonce 1 (the old one no longer counts).
    assert pool.add(transfer(chain, a, 0, 400, amount=1), chain.account)[1].rule == "Replaced"
    assert pool.add(transfer(chain, a, 1, 200, amount=1_000), chain.account)[0].kind is EventKind.ACCEPTED
    # A block taking both leaves nothing owed: the whole balance is pendable again.
    pool.update_after_block(list(pool.by_id), chain.account)
    assert not pool.by_id
    left = pool.add(transfer(chain, a, 0, 200, amount=balance - 200), chain.account)[0]
    assert left.kind is EventKind.ACCEPTED


def test_block_updates_report_included_and_stale(chain: Chain) -> None:
    a, b = test_keys(2)
    pool = Mempool(chain.params, chain.chain_id)
    mined = transfer(chain, a, 0, 200)
    rival = transfer(chain, b, 0, 200, amount=5)
    competing = transfer(chain, b, 0, 250, amount=6)  # the chain will carry this one instead
    pool.add(mined, chain.account)
    pool.add(rival, chain.account)
    block = extend(chain, [mined, competing])

    events = pool.update_after_block({tx_id(t) for t in block.txs}, chain.account)
    assert sorted((e.kind.value, e.rule) for e in events) == [("dropped", "NonceTooLow"), ("included", "")]
    assert len(pool) == 0


def test_a_dropped_transaction_keeps_its_rule_and_its_followers_are_nonce_gaps(chain: Chain) -> None:
    a, b = test_keys(2)
    pool = Mempool(chain.params, chain.chain_id, defer_blocks=0)
    txs = [transfer(chain, a, n, 200) for n in range(3)]
    other = transfer(chain, b, 0, 200)
    for tx in [*txs, other]:
        pool.add(tx, chain.account)
    doomed = pool.by_id[tx_id(txs[1])]
    dropped = pool.remove_rejected(doomed, DealStarted("stand-in: the deal's first interval began"), height=3)
    assert [(e.kind, e.rule, e.tx) for e in dropped] == [
        (EventKind.DROPPED, "DealStarted", txs[1]),
        (EventKind.DROPPED, "NonceGap", txs[2]),  # no block could include it after the gap
    ]
    assert tx_id(txs[1]).hex()[:16] in dropped[1].message and "nonce 1" in dropped[1].message
    assert set(pool.by_id) == {tx_id(txs[0]), tx_id(other)}  # the earlier one and other senders' stay


def test_the_lost_log_numbers_what_left_and_forgets_the_oldest(chain: Chain) -> None:
    log = LostLog(kept=3)
    assert log.since(0) == [] and log.first_kept == 1 and log.total == 0
    events = [
        PoolEvent(
            EventKind.DROPPED, bytes([i]) * 32, None, "NonceGap", "", transfer(chain, test_keys(1)[0], i, 200)
        )
        for i in range(5)
    ]
    for e in events[:2]:
        log.add(e)
    assert log.since(0) == [(1, events[0]), (2, events[1])] and log.since(1) == [(2, events[1])]
    for e in events[2:]:
        log.add(e)
    assert log.first_kept == 3 and log.since(0) == [(3, events[2]), (4, events[3]), (5, events[4])]
    assert log.since(3, limit=1) == [(4, events[3])] and log.since(5) == [] and log.since(9) == []
    # Any number past the last is an empty page, one past a machine word too (islice's ValueError).
    for after in (2**63 - 1, 2**63, 10**30):
        assert log.since(after) == [] and log.since(after, limit=10, max_bytes=1) == []


def test_the_lost_log_keeps_at_most_its_bytes_of_transactions(chain: Chain) -> None:
    # A hostile peer may have large transactions evicted at will: the log is bounded in bytes.
    key = test_keys(1)[0]
    txs = [transfer(chain, key, n, 200) for n in range(6)]
    size = len(encode(txs[0]))
    log = LostLog(kept=100, max_bytes=3 * size)
    for tx in txs:
        log.add(PoolEvent(EventKind.EVICTED, tx_id(tx), None, "MempoolFull", "", tx))
    assert log.bytes <= 3 * size and log.first_kept == 4 and [n for n, _ in log.since(0)] == [4, 5, 6]


def test_a_page_of_the_lost_log_holds_at_most_its_bytes_but_always_one(chain: Chain) -> None:
    # A reader pages on from the last number it got: each page bounded, none skipped.
    key = test_keys(1)[0]
    txs = [transfer(chain, key, n, 200) for n in range(5)]
    size = len(encode(txs[0]))
    log = LostLog(kept=100)
    for tx in txs:
        log.add(PoolEvent(EventKind.EVICTED, tx_id(tx), None, "MempoolFull", "", tx))
    assert [n for n, _ in log.since(0, max_bytes=2 * size)] == [1, 2]
    assert [n for n, _ in log.since(2, max_bytes=2 * size + 1)] == [3, 4]
    assert [n for n, _ in log.since(1, limit=1, max_bytes=9 * size)] == [2]
    assert [n for n, _ in log.since(4, max_bytes=1)] == [5]  # one larger than the bound still comes
    assert log.since(5, max_bytes=1) == []


def test_a_transaction_block_building_refuses_waits_before_it_is_dropped(chain: Chain) -> None:
    a = test_keys(1)[0]
    pool = Mempool(chain.params, chain.chain_id, defer_blocks=2)
    pool.add(transfer(chain, a, 0, 200), chain.account)
    pool.add(transfer(chain, a, 1, 200), chain.account)
    first = next(pool.candidates())
    error = NonceGap("stand-in for a rule that may pass once a missing block arrives")
    assert pool.remove_rejected(first, error, height=5) == []
    assert pool.remove_rejected(first, error, height=6) == []
    dropped = pool.remove_rejected(first, error, height=7)
    assert [(e.kind, e.rule) for e in dropped] == [(EventKind.DROPPED, "NonceGap")] * 2
    assert len(pool) == 0
