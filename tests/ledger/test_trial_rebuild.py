"""The trial's state after a sender's pending transactions (ledger/trial.py) is not built
afresh, re-applying all of them, whenever a peer can make it so (docs/protocol.md 6): a
transaction evicted or dropped with its sender's later ones is undone on the kept state (a red
team evicted the last of 4,000 pending transfers with a better payer and sent it again: each
round re-applied the 4,000, 14 ms)."""

from __future__ import annotations

from pathlib import Path

import pytest

from gridnet.errors import InsufficientBalance
from gridnet.ledger.chain import Chain
from tests.helpers import new_chain, test_keys, test_params
from tests.ledger.test_mempool_replacement import Counted

ALICE, BOB, CAROL = test_keys(3)
REFUSED = InsufficientBalance("refused by block building")


@pytest.fixture
def chain(tmp_path: Path) -> Chain:
    return new_chain(tmp_path / "c", test_params([ALICE, BOB, CAROL], gnc=1_000_000))


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
