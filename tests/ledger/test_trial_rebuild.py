"""The trial's state after a sender's pending transactions (ledger/trial.py) is not built
afresh, re-applying all of them, whenever a peer can make it so (docs/protocol.md 6): a
transaction evicted or dropped with its sender's later ones is undone on the kept state (the
last of 4,000 pending transfers evicted by a better payer and sent again re-applied the 4,000
each round, 14 ms), and a state pushed out of the trial's bounds by other senders is built
afresh from more than ``REBUILD_BYTES`` of its sender's pending transactions once per sender
and head (4,096 other senders, then one transaction of the sender with 4,000 pending: the
4,000 re-applied each round, 14 ms, ``TooManyRebuilds`` now but for the first)."""

from __future__ import annotations

from functools import partial
from pathlib import Path

import pytest

from gridnet.crypto.keys import PrivateKey
from gridnet.errors import InsufficientBalance, TooManyRebuilds
from gridnet.ledger.chain import Chain
from gridnet.ledger.trial import REBUILD_BYTES
from tests.helpers import extend, new_chain, test_keys, test_params
from tests.ledger.test_mempool_replacement import Counted, _verified

ALICE, BOB, CAROL, DAVE = test_keys(4)
REFUSED = InsufficientBalance("refused by block building")


@pytest.fixture
def chain(tmp_path: Path) -> Chain:
    return new_chain(tmp_path / "c", test_params([ALICE, BOB, CAROL, DAVE], gnc=1_000_000))


def test_an_eviction_from_a_full_pool_undoes_the_evicted_on_the_kept_state(
    chain: Chain, monkeypatch: pytest.MonkeyPatch
) -> None:
    pending = 300
    p = Counted(chain, monkeypatch, max_txs=pending)
    fee = 2 * p.tx(ALICE, 0).fee
    for n in range(pending - 1):
        p.admit(p.tx(ALICE, n, fee=fee))
    last = p.tx(ALICE, pending - 1)  # the lowest payer per byte: evicted alone
    p.admit(last)
    p.applied = 0
    for r in range(5):
        p.admit(p.tx(BOB, r, fee=10 * fee))  # a better payer evicts ALICE's last
        assert last.signature not in {v.tx.signature for v in p.pool.by_sender[ALICE.address].values()}
        p.pool.max_txs += 1
        p.admit(last)  # sent again: one application, not the 299 before it
    assert p.applied <= 2 * 5
    # The kept state is the one built afresh: ALICE's 300 applied once each.
    kept = p.trial._states[ALICE.address]
    assert kept.next_nonce == pending
    assert kept.view.account(ALICE.address).nonce == pending
    assert kept.view.account(CAROL.address).balance == chain.account(CAROL.address).balance + 1_000 * pending


def test_a_dropped_suffix_is_undone_and_a_transaction_taken_without_the_trial_is_not_missed(
    chain: Chain, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Block building drops a pending transaction with those after it: the sender's next one
    (with the first dropped nonce) goes back on the kept state. One taken without the trial
    (a reorg returns it) makes the next build afresh: the kept state never applied it."""
    p = Counted(chain, monkeypatch)
    p.fill(ALICE, 20)
    dropped = p.pool.by_sender[ALICE.address][12]
    p.pool.defer_blocks = 0
    events = p.pool.remove_rejected(dropped, REFUSED, chain.head.height + 1)
    assert len(events) == 8 and len(p.pool.by_sender[ALICE.address]) == 12
    p.applied = 0
    p.admit(p.tx(ALICE, 12, amount=5))
    assert p.applied == 1
    kept = p.trial._states[ALICE.address]
    assert kept.view.account(CAROL.address).balance == chain.account(CAROL.address).balance + 1_000 * 12 + 5
    # Dropped again, then nonce 12 taken without a check: the next is built afresh.
    p.pool.remove_rejected(p.pool.by_sender[ALICE.address][12], REFUSED, chain.head.height + 1)
    p.pool.add(p.tx(ALICE, 12, amount=7), chain.account)
    p.applied = 0
    p.admit(p.tx(ALICE, 13, amount=3))
    assert p.applied == 14
    carol = p.trial._states[ALICE.address].view.account(CAROL.address)
    assert carol.balance == chain.account(CAROL.address).balance + 1_000 * 12 + 7 + 3


def test_a_state_pushed_out_is_built_afresh_beyond_rebuild_bytes_once_per_sender_and_head(
    chain: Chain, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The trial keeps the states of two senders here: a third pushes out the least recently
    used. A state built afresh from more than ``REBUILD_BYTES`` is built once per sender and
    head; one from fewer, whenever it is needed."""
    p = Counted(chain, monkeypatch)
    p.trial.senders = 2
    pending = REBUILD_BYTES // _verified(chain, p.tx(ALICE, 0)).size + 20
    p.fill(ALICE, pending)  # (one application each: its state is carried on)
    p.fill(BOB, 3)

    def send(key: PrivateKey) -> None:
        p.admit(p.tx(key, chain.account(key.address).nonce + len(p.pool.by_sender.get(key.address, {}))))

    def push_out(key: PrivateKey) -> None:
        send(CAROL)
        send(DAVE)
        assert key.address not in p.trial._states

    push_out(ALICE)
    p.applied = 0
    send(ALICE)  # built afresh: the first time on this head
    assert p.applied == pending + 1
    push_out(ALICE)
    p.applied = 0
    with pytest.raises(TooManyRebuilds, match="send it again after the next block"):
        send(ALICE)
    assert p.applied == 0
    for _ in range(3):  # BOB's few pending transactions: built afresh each time
        push_out(BOB)
        p.applied = 0
        send(BOB)
        assert p.applied == len(p.pool.by_sender[BOB.address])
    # After a block, ALICE's once more.
    first = p.pool.by_sender[ALICE.address][0]
    extend(chain, [first.tx])
    p.pool.update_after_block([first.txid], chain.account)
    p.applied = 0
    send(ALICE)
    assert p.applied == pending + 1


def test_a_users_transaction_is_built_afresh_however_often_a_peers_churn_pushed_its_state_out(
    chain: Chain, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The bound on rebuilds is a peer's: a node's own user (a DSO settling a large area, say)
    whose state a stranger's churn pushed out again and again is built afresh each time, not
    refused ``TooManyRebuilds`` until the next block."""
    p = Counted(chain, monkeypatch)
    p.trial.senders = 2
    pending = REBUILD_BYTES // _verified(chain, p.tx(ALICE, 0)).size + 20
    p.fill(ALICE, pending)

    def send(key: PrivateKey, peer: bool = True) -> None:
        nonce = chain.account(key.address).nonce + len(p.pool.by_sender.get(key.address, {}))
        p.pool.admit(p.tx(key, nonce), chain.account, check=partial(p.trial.check, p.pool, peer=peer))

    for _ in range(3):
        send(CAROL)
        send(DAVE)
        assert ALICE.address not in p.trial._states
        p.applied = 0
        send(ALICE, peer=False)
        assert p.applied == len(p.pool.by_sender[ALICE.address])
    send(CAROL)
    send(DAVE)
    send(ALICE)  # a peer's: built afresh once on this head ...
    send(CAROL)
    send(DAVE)
    with pytest.raises(TooManyRebuilds):  # ... then refused
        send(ALICE)
