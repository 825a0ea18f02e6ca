"""The mempool is bounded by bytes as well as by count: past either bound a transaction that
pays more per byte evicts the lowest payers, each with its sender's later nonces, as many as it
needs; else it is refused (``MempoolFull``) and nothing changes. A transaction larger than the
whole pool is refused. Full batches of readings (~108 KB each) stand for large transactions."""

from __future__ import annotations

from functools import cache
from pathlib import Path

import pytest

from gridnet.crypto.keys import PrivateKey
from gridnet.errors import FeeTooLow
from gridnet.ledger.chain import Chain
from gridnet.ledger.mempool import EventKind, Mempool
from gridnet.ledger.registry import Payload
from gridnet.ledger.transactions import Transaction, min_fee, tx_body, tx_id, tx_size
from gridnet.ledger.transition import validate_transaction
from gridnet.ledger.txs.meter import MAX_READINGS_PER_TX, SubmitReadings
from gridnet.ledger.txs.transfer import Transfer
from gridnet.meter.reading import Reading, sign_reading
from tests.helpers import new_chain, sign, test_keys, test_params

KEYS = test_keys(8)
SINK = KEYS[-1].address


@pytest.fixture
def chain(tmp_path: Path) -> Chain:
    return new_chain(tmp_path / "c", test_params(KEYS, gnc=100_000))


@cache
def full_batch() -> SubmitReadings:
    """The most readings one transaction holds. (The pool alone does not look at the meter:
    the head does, ``ledger/trial.py``.)"""
    meter = PrivateKey.from_label("bounds-meter")
    return SubmitReadings(
        tuple(
            sign_reading(meter, Reading(meter.address, 2_000_000 + i, 10, 0, 10 * (i + 1), 0, "1.0.0"))
            for i in range(MAX_READINGS_PER_TX)
        )
    )


def paying(chain: Chain, key: PrivateKey, payload: Payload, nonce: int, per_byte: int) -> Transaction:
    """``payload`` signed with a fee of ``per_byte`` base units per byte of its size."""
    return sign(chain, key, payload, nonce, min_fee(per_byte, payload, nonce))


def size(tx: Transaction) -> int:
    return tx_size(tx_body(tx))


def test_a_large_transaction_paying_more_per_byte_evicts_as_many_low_payers_as_it_needs(chain: Chain) -> None:
    # Five senders with eight transfers each, sender i paying 2 + i per byte.
    small = [paying(chain, KEYS[i], Transfer(SINK, 1_000), n, 2 + i) for i in range(5) for n in range(8)]
    big = paying(chain, KEYS[5], full_batch(), 0, 10)
    # Room for the big one only once about ten transfers are gone.
    room = size(big) + sum(map(size, small)) - 10 * size(small[0])
    pool = Mempool(chain.params, chain.chain_id, max_bytes=room)
    for tx in small:
        assert pool.add(tx, chain.account)[0].kind is EventKind.ACCEPTED
    events = pool.add(big, chain.account)
    assert events[0].kind is EventKind.ACCEPTED
    # The two lowest payers go, each with all its later nonces (no gap left behind).
    evicted = [e for e in events[1:] if e.kind is EventKind.EVICTED]
    assert {e.txid for e in evicted} == {tx_id(t) for t in small[:16]}
    assert {e.rule for e in evicted} == {"MempoolFull"}
    assert pool.bytes <= pool.max_bytes
    assert set(pool.by_id) == {tx_id(t) for t in small[16:]} | {tx_id(big)}


def test_a_transaction_that_would_need_to_evict_better_payers_is_refused_and_nothing_changes(
    chain: Chain,
) -> None:
    held = [paying(chain, KEYS[i], full_batch(), 0, 5 + i) for i in range(2)]
    pool = Mempool(chain.params, chain.chain_id, max_bytes=sum(map(size, held)))
    for tx in held:
        assert pool.add(tx, chain.account)[0].kind is EventKind.ACCEPTED
    before = (dict(pool.by_id), pool.bytes)
    low = pool.add(paying(chain, KEYS[2], full_batch(), 0, 4), chain.account)
    assert [(e.kind, e.rule) for e in low] == [(EventKind.REJECTED, "MempoolFull")]
    assert "per byte" in low[0].message
    # Even a small transaction paying less per byte than the lowest finds no room.
    tiny = pool.add(paying(chain, KEYS[3], Transfer(SINK, 1), 0, 4), chain.account)
    assert [(e.kind, e.rule) for e in tiny] == [(EventKind.REJECTED, "MempoolFull")]
    assert (dict(pool.by_id), pool.bytes) == before
    # One paying more per byte than the lowest evicts it (and only it).
    rich = pool.add(paying(chain, KEYS[2], full_batch(), 0, 6), chain.account)
    assert [(e.kind, e.txid) for e in rich[1:]] == [(EventKind.EVICTED, tx_id(held[0]))]
    assert pool.bytes <= pool.max_bytes


def test_a_transaction_larger_than_the_whole_pool_is_refused(chain: Chain) -> None:
    big = paying(chain, KEYS[0], full_batch(), 0, 100)
    pool = Mempool(chain.params, chain.chain_id, max_bytes=size(big) - 1)
    event = pool.add(big, chain.account)[0]
    assert (event.kind, event.rule) == (EventKind.REJECTED, "MempoolFull")
    assert f"{size(big):,} bytes" in event.message
    assert len(pool) == 0 and pool.bytes == 0


def test_a_replacement_that_grows_past_the_byte_bound_evicts_lower_payers(chain: Chain) -> None:
    small = [paying(chain, KEYS[i], Transfer(SINK, 1_000), 0, 2 + i) for i in range(4)]
    big = paying(chain, KEYS[0], full_batch(), 0, 50)  # replaces KEYS[0]'s transfer (same nonce)
    pool = Mempool(chain.params, chain.chain_id, max_bytes=size(big) + 2 * size(small[0]))
    for tx in small:
        assert pool.add(tx, chain.account)[0].kind is EventKind.ACCEPTED
    events = pool.add(big, chain.account)
    outcomes = [(e.kind, e.rule, e.txid) for e in events]
    assert outcomes == [
        (EventKind.ACCEPTED, "", tx_id(big)),
        (EventKind.EVICTED, "Replaced", tx_id(small[0])),
        (EventKind.EVICTED, "MempoolFull", tx_id(small[1])),  # the lowest payer of the others
    ]
    assert pool.bytes <= pool.max_bytes


def test_the_fee_grows_with_the_size(chain: Chain) -> None:
    """The least fee is the size times ``min_fee_per_byte`` (a consensus rule): a batch of
    readings ~800 times a transfer's size pays ~800 times its fee, and a transfer's fee (or
    any fee short of its size's) is ``FeeTooLow``, in the pool as in a block."""
    per_byte = chain.params.min_fee_per_byte
    transfer, batch = Transfer(SINK, 1), full_batch()
    cheap = sign(chain, KEYS[0], transfer, 0)
    needed = min_fee(per_byte, batch, 0)
    assert needed == size(sign(chain, KEYS[0], batch, 0, needed)) * per_byte
    assert needed > 500 * cheap.fee
    pool = Mempool(chain.params, chain.chain_id)
    for fee in (cheap.fee, needed - 1):
        event = pool.add(sign(chain, KEYS[0], batch, 0, fee), chain.account)[0]
        assert (event.kind, event.rule) == (EventKind.REJECTED, "FeeTooLow")
    with pytest.raises(FeeTooLow):
        validate_transaction(sign(chain, KEYS[0], batch, 0, needed - 1), chain.params, chain.chain_id)
    assert pool.add(sign(chain, KEYS[0], batch, 0, needed), chain.account)[0].kind is EventKind.ACCEPTED
