"""Taking back transactions the pool took (``Mempool.withdraw``: a node whose store could not
write a local batch): the pool holds what it held before them, what they replaced and evicted
included, and the trial's kept state of each sender goes back to before them
(``TrialState.take_back``). A withdrawn replacement left its sender's later transactions after
a missing nonce: no block could include them, the sender's next nonce was refused
(``NonceGap``) and the next build of its state met the missing one (``KeyError``)."""

from __future__ import annotations

from functools import partial
from pathlib import Path

import pytest

from gridnet.ledger.chain import Chain
from gridnet.ledger.mempool import Mempool, Taken
from gridnet.ledger.transactions import Transaction
from gridnet.ledger.trial import TrialState
from gridnet.units import Address, Hash32
from tests.helpers import new_chain, test_keys, test_params
from tests.ledger.test_mempool_replacement import Counted, _verified
from tests.ledger.test_trial_rebuild import REFUSED

ALICE, BOB, CAROL = test_keys(3)

Content = tuple[dict[Address, dict[int, Hash32]], int, dict[Address, int], dict[Hash32, int]]


@pytest.fixture
def chain(tmp_path: Path) -> Chain:
    return new_chain(tmp_path / "c", test_params([ALICE, BOB, CAROL], gnc=1_000_000))


def content(pool: Mempool) -> Content:
    """Each sender's pending transactions by nonce, their bytes, the senders' versions and
    the deferrals of block building."""
    queues = {s: {n: v.txid for n, v in sorted(q.items())} for s, q in pool.by_sender.items()}
    assert set(pool.by_id) == {t for q in queues.values() for t in q.values()}
    return queues, pool.bytes, {s: pool.version(s) for s in queues}, dict(pool._deferred)


def take(p: Counted, tx: Transaction, taken: list[Taken]) -> None:
    p.pool.admit(tx, p.chain.account, check=partial(p.trial.check, p.pool), taken=taken)


def withdraw(p: Counted, taken: list[Taken]) -> None:
    """As a node takes back a batch: last first, the trial with the pool."""
    for t in reversed(taken):
        p.pool.withdraw(t)
        p.trial.take_back(t.vtx)


def carol_on_kept_state(p: Counted) -> int:
    return p.trial._states[ALICE.address].view.account(CAROL.address).balance


def test_a_withdrawn_replacement_puts_back_the_one_it_replaced(
    chain: Chain, monkeypatch: pytest.MonkeyPatch
) -> None:
    p = Counted(chain, monkeypatch)
    p.fill(ALICE, 20)
    before = content(p.pool)
    taken: list[Taken] = []
    take(p, p.replacement(ALICE, 12, amount=5), taken)
    take(p, p.tx(ALICE, 20, amount=3), taken)  # (the trial applies 13 to 19 again)
    take(p, p.replacement(ALICE, 19, amount=4), taken)
    assert [t.replaced is not None for t in taken] == [True, False, True]
    withdraw(p, taken)
    assert content(p.pool) == before
    # The sender's next transaction is tried on the kept state, back before nonce 12: it
    # applies 12 to 19 (the ones put back) and itself, not the 20 from the start.
    p.applied = 0
    p.admit(p.tx(ALICE, 20, amount=7))
    assert p.applied == 9
    start = chain.account(CAROL.address).balance
    assert carol_on_kept_state(p) == start + 1_000 * 20 + 7
    # A replacement of a later one builds nothing afresh either (a state built afresh from
    # the queue met the missing nonce 12: KeyError), and the kept state is the one built afresh.
    p.applied = 0
    p.admit(p.replacement(ALICE, 15, amount=2))
    assert p.applied == 1
    kept = p.trial._states[ALICE.address]
    fresh = TrialState(chain)
    built = fresh._sender_state(p.pool, _verified(chain, p.tx(ALICE, 16)), fresh._env(None), peer=True)
    assert (built.next_nonce, built.bytes) == (kept.next_nonce, kept.bytes) == (16, kept.bytes)
    for who in (ALICE, CAROL):
        assert kept.view.account(who.address) == built.view.account(who.address)
    assert kept.view.account(CAROL.address).balance == start + 1_000 * 15 + 2


def test_a_withdrawn_transaction_puts_back_what_it_evicted_with_their_deferrals(
    chain: Chain, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A better payer evicted ALICE's last three from a full pool, one of them deferred by
    block building: withdrawn, they are back, deferred since the same height, and ALICE's
    kept state (which the eviction left as it was) serves her next transaction."""
    p = Counted(chain, monkeypatch, max_txs=10)
    fee = p.tx(ALICE, 0).fee
    for n in range(7):
        p.admit(p.tx(ALICE, n, fee=3 * fee))
    for n, more in zip(range(7, 10), (3, 1, 2), strict=True):  # the lowest, 8, goes with 9
        p.admit(p.tx(ALICE, n, fee=fee + more))
    deferred_at = chain.head.height + 1
    assert p.pool.remove_rejected(p.pool.by_sender[ALICE.address][8], REFUSED, deferred_at) == []
    before = content(p.pool)
    taken: list[Taken] = []
    for n in range(3):  # (the first evicts 8 and 9, the third 7: the lowest payers left)
        take(p, p.tx(BOB, n, fee=2 * fee), taken)
    assert sorted(p.pool.by_sender[ALICE.address]) == list(range(7))
    assert [len(t.evicted) for t in taken] == [2, 0, 1]
    withdraw(p, taken)
    assert content(p.pool) == before
    assert p.pool._deferred == {p.pool.by_sender[ALICE.address][8].txid: deferred_at}
    assert BOB.address not in p.pool.by_sender
    p.pool.max_txs += 1
    p.applied = 0
    p.admit(p.tx(ALICE, 10))
    assert p.applied == 1
    assert carol_on_kept_state(p) == chain.account(CAROL.address).balance + 1_000 * 11
