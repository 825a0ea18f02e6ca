"""Replacing pending transactions (docs/protocol.md 6): a replacement pays 10% more and the
minimum fee of its size more (``ReplacementUnderpriced``), a sender's replacements between
blocks are bounded (``TooManyReplacements``), and the node's work on them is bounded: the
trial applies no earlier transaction of the sender again for a replacement (a red team froze
a node for 51 s with one message of 2,000 replacements of the last of 4,000 pending ones, each
applying the 3,999 before it again), and a refused transaction applies its sender's pending
ones on the pool's state once, not once per refusal."""

from __future__ import annotations

from functools import partial
from pathlib import Path

import pytest

import gridnet.ledger.trial as trial_module
from gridnet.crypto.keys import PrivateKey
from gridnet.errors import ReplacementUnderpriced, TooManyReplacements, UnknownIdentity
from gridnet.ledger.chain import Chain
from gridnet.ledger.mempool import MAX_REPLACEMENTS, Mempool
from gridnet.ledger.state import StateView
from gridnet.ledger.transactions import Transaction
from gridnet.ledger.transition import VerifiedTx, validate_transaction
from gridnet.ledger.trial import TrialState
from gridnet.ledger.txs.base import BlockEnv
from gridnet.ledger.txs.bond import Bond
from gridnet.ledger.txs.transfer import Transfer
from tests.helpers import extend, new_chain, sign, test_keys, test_params

ALICE, BOB, CAROL = test_keys(3)


class Counted:
    """A mempool whose admissions are tried on the head, counting the trial's applications."""

    def __init__(self, chain: Chain, monkeypatch: pytest.MonkeyPatch, **pool: int) -> None:
        self.chain = chain
        self.pool = Mempool(chain.params, chain.chain_id, **pool)
        self.trial = TrialState(chain)
        self.applied = 0
        original = trial_module.apply_transaction

        def counting(view: StateView, env: BlockEnv, vtx: VerifiedTx) -> None:
            self.applied += 1
            original(view, env, vtx)

        monkeypatch.setattr(trial_module, "apply_transaction", counting)

    def tx(self, key: PrivateKey, nonce: int, amount: int = 1_000, fee: int | None = None) -> Transaction:
        return sign(self.chain, key, Transfer(CAROL.address, amount), nonce, fee)

    def replacement(self, key: PrivateKey, nonce: int, amount: int = 1_000) -> Transaction:
        """A transfer replacing ``key``'s pending ``nonce``, paying the least it may."""
        replaced = self.pool.by_sender[key.address][nonce]
        fee = self.pool.replacement_fee(
            replaced, _verified(self.chain, self.tx(key, nonce, amount, replaced.tx.fee * 3)).size
        )
        return self.tx(key, nonce, amount, fee)

    def admit(self, tx: Transaction) -> None:
        self.pool.admit(tx, self.chain.account, check=partial(self.trial.check, self.pool))

    def fill(self, key: PrivateKey, count: int) -> None:
        first = self.chain.account(key.address).nonce
        for n in range(first, first + count):
            self.admit(self.tx(key, n))


@pytest.fixture
def chain(tmp_path: Path) -> Chain:
    return new_chain(tmp_path / "c", test_params([ALICE, BOB, CAROL], gnc=1_000_000))


def test_a_replacement_pays_ten_percent_and_its_own_minimum_fee_more(
    chain: Chain, monkeypatch: pytest.MonkeyPatch
) -> None:
    p = Counted(chain, monkeypatch)
    per_byte = chain.params.min_fee_per_byte
    # A low fee: the replacement's own minimum fee is the larger part of the bump.
    p.admit(p.tx(ALICE, 0))
    old = p.pool.by_sender[ALICE.address][0]
    fee = p.replacement(ALICE, 0).fee
    size = _verified(chain, p.tx(ALICE, 0, fee=fee)).size
    assert fee == old.tx.fee + size * per_byte
    with pytest.raises(ReplacementUnderpriced, match=f"at least {fee}"):
        p.admit(p.tx(ALICE, 0, fee=fee - 1))
    p.admit(p.tx(ALICE, 0, fee=fee))
    # A high fee: 10% of it, rounded up, is the larger part.
    p.admit(p.tx(BOB, 0, fee=100_001))
    high = p.pool.by_sender[BOB.address][0]
    assert p.pool.replacement_fee(high, 200) == 100_001 + 10_001
    with pytest.raises(ReplacementUnderpriced):
        p.admit(p.tx(BOB, 0, fee=110_001))
    p.admit(p.tx(BOB, 0, fee=110_002))


def test_replacements_between_blocks_are_bounded_by_count(
    chain: Chain, monkeypatch: pytest.MonkeyPatch
) -> None:
    p = Counted(chain, monkeypatch)
    p.fill(ALICE, 3)
    for _ in range(MAX_REPLACEMENTS):  # the last one, again and again: no set-back
        p.admit(p.replacement(ALICE, 2))
    with pytest.raises(TooManyReplacements, match=f"replaced {MAX_REPLACEMENTS} pending"):
        p.admit(p.replacement(ALICE, 2))
    p.admit(p.tx(BOB, 0))  # another sender has its own
    p.admit(p.replacement(BOB, 0))
    p.admit(p.tx(ALICE, 3))  # a new transaction is no replacement
    # After a block the sender may replace again.
    first = p.pool.by_sender[ALICE.address][0]
    extend(chain, [first.tx])
    p.pool.update_after_block([first.txid], chain.account)
    p.admit(p.replacement(ALICE, 3))


def test_replacements_between_blocks_set_back_at_most_the_senders_pending(
    chain: Chain, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A replacement of nonce k sets back the sender's pending transactions after k (the
    trial applies them again when a later one comes); the set-back of its replacements since
    the last block may reach its pending count, not pass it."""
    p = Counted(chain, monkeypatch)
    p.fill(ALICE, 10)
    p.admit(p.replacement(ALICE, 0))  # sets back 9 of 10
    p.admit(p.replacement(ALICE, 9))  # the last: sets back none
    p.admit(p.replacement(ALICE, 9))
    p.admit(p.replacement(ALICE, 9))
    with pytest.raises(TooManyReplacements, match=r"set back 9 .* 2 more, past its 10 pending"):
        p.admit(p.replacement(ALICE, 7))
    p.admit(p.replacement(ALICE, 8))  # 9 + 1 = 10: at the bound
    with pytest.raises(TooManyReplacements):
        p.admit(p.replacement(ALICE, 8))
    p.admit(p.replacement(ALICE, 9))  # the last one still may
    # New transactions earn set-back: the node applied each once.
    for n in range(10, 12):
        p.admit(p.tx(ALICE, n))
    p.admit(p.replacement(ALICE, 9))  # 10 + 2 = 12 of 12
    # A refused replacement counts too (the trial took the state back to before it).
    broke = chain.account(ALICE.address).balance
    with pytest.raises(TooManyReplacements):
        p.admit(p.tx(ALICE, 10, amount=broke, fee=10**6))


def test_replacing_the_last_of_many_pending_applies_none_of_the_earlier_again(
    chain: Chain, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The red team's attack (scripts rbf_churn.py, rbf_stall.py): 400 pending, then the
    last replaced as often as the pool lets it. Each replacement cost 399 applications;
    now it costs one (the trial goes back to the mark before the replaced one)."""
    pending = 400
    p = Counted(chain, monkeypatch)
    p.fill(ALICE, pending)
    assert p.applied <= 2 * pending
    p.applied = 0
    refused = 0
    for _ in range(2 * MAX_REPLACEMENTS):
        try:
            p.admit(p.replacement(ALICE, pending - 1))
        except TooManyReplacements:
            refused += 1
    assert refused == MAX_REPLACEMENTS
    assert p.applied <= MAX_REPLACEMENTS + 2  # one each (the refused ones are refused before the trial)
    p.applied = 0
    p.admit(p.tx(ALICE, pending))  # and the next one: one application, the kept state serves
    assert p.applied <= 2


def test_any_mix_of_replacements_costs_a_bounded_work_per_transaction(
    chain: Chain, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Going back and forth (the first pending, then the last, then a new one, ...) makes the
    trial apply again what followed the replaced one: bounded by the set-back the pool
    allows, so the applications stay within a few per transaction received."""
    pending = 300
    p = Counted(chain, monkeypatch)
    p.fill(ALICE, pending)
    p.applied = 0
    received = 0
    top = pending
    for i in range(200):
        received += 1
        try:
            if i % 3 == 0:
                p.admit(p.replacement(ALICE, 0))
            elif i % 3 == 1:
                p.admit(p.replacement(ALICE, top - 1))
            else:
                p.admit(p.tx(ALICE, top))
                top += 1
        except TooManyReplacements:
            pass
    # Without the bound: ~133 replacements x ~300 applications each.
    assert p.applied <= 3 * received + 2 * top


def test_the_kept_state_after_replacements_is_the_state_built_afresh(
    chain: Chain, monkeypatch: pytest.MonkeyPatch
) -> None:
    p = Counted(chain, monkeypatch)
    p.fill(ALICE, 20)
    p.admit(p.replacement(ALICE, 19, amount=7))
    p.admit(p.replacement(ALICE, 12, amount=5))  # back, then on with new ones
    p.admit(p.tx(ALICE, 20, amount=3))
    p.admit(p.replacement(ALICE, 12, amount=11))
    p.admit(p.tx(ALICE, 21, amount=2))
    kept = p.trial._states[ALICE.address]
    assert kept.next_nonce == 22
    fresh = TrialState(chain)
    built = fresh._sender_state(p.pool, _verified(chain, p.tx(ALICE, 22)), fresh._env(None), peer=True)
    assert built.next_nonce == 22 and built.bytes == kept.bytes
    for who in (ALICE, CAROL):
        assert kept.view.account(who.address) == built.view.account(who.address)
    assert (
        kept.view.account(CAROL.address).balance
        == chain.account(CAROL.address).balance + 1_000 * 18 + 7 + 11 + 3 + 2
    )


def _verified(chain: Chain, tx: Transaction) -> VerifiedTx:
    return validate_transaction(tx, chain.params, chain.chain_id)


def test_refused_transactions_apply_their_senders_pending_ones_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A sender with more pending than a block holds sends transactions that fail (a bond
    without an identity): each is tried after a block's worth of the pool and the sender's own
    pending ones; those stay applied to the pool's state, so a refusal costs a few
    applications, not the sender's pending count (it did: 200 refused bonds behind 300
    pending transfers, 60,000 applications)."""
    chain = new_chain(tmp_path / "c", test_params([ALICE, BOB, CAROL], gnc=1_000_000, max_block_bytes=1_200))
    p = Counted(chain, monkeypatch)
    pending = 300
    p.fill(ALICE, pending)
    p.admit(p.tx(BOB, 0))  # (the pool holds another sender's too)
    p.applied = 0
    refusals = 200
    for amount in range(1, refusals + 1):
        with pytest.raises(UnknownIdentity):
            p.admit(sign(chain, ALICE, Bond(amount), pending))
    assert p.applied <= pending + 3 * refusals + 20
    assert len(p.pool.by_sender[ALICE.address]) == pending
