"""A user's transaction is tried on the head before it is accepted (ledger/trial.py): refused
with the rule a miner would refuse it by, whatever the pool holds; accepted when it depends on
pending transactions a miner takes before it; one application per transaction of a burst."""

from __future__ import annotations

from functools import partial
from pathlib import Path

import pytest

import gridnet.ledger.trial as trial_module
from gridnet.crypto.keys import PrivateKey
from gridnet.errors import InvalidCertificate, UnknownIdentity
from gridnet.ledger.chain import Chain
from gridnet.ledger.mempool import EventKind, Mempool
from gridnet.ledger.params import ChainParams
from gridnet.ledger.registry import Payload
from gridnet.ledger.state import ACCOUNTS
from gridnet.ledger.transactions import Transaction
from gridnet.ledger.trial import TrialState
from gridnet.ledger.txs.authority import RegisterAuthority
from gridnet.ledger.txs.bond import Bond
from gridnet.ledger.txs.meter import METERS, registration
from gridnet.ledger.txs.transfer import Transfer
from gridnet.meter.certificate import issue_certificate
from gridnet.security.roles import Role
from tests.helpers import extend, new_chain, register_identity, sign, test_keys, test_params

ALICE, BOB, CAROL, MAKER = test_keys(4)


class Pool:
    """A mempool whose admissions are tried on the head, as a node does for its users."""

    def __init__(self, chain: Chain) -> None:
        self.chain = chain
        self.pool = Mempool(chain.params, chain.chain_id)
        self.trial = TrialState(chain)
        self.nonces: dict[bytes, int] = {}

    def sign(self, key: PrivateKey, payload: Payload, fee: int | None = None) -> Transaction:
        nonce = self.nonces.get(key.address, self.chain.account(key.address).nonce)
        self.nonces[key.address] = nonce + 1
        return sign(self.chain, key, payload, nonce, fee)

    def admit(self, tx: Transaction) -> None:
        """Admit as a user's transaction (raises the rule)."""
        self.pool.admit(tx, self.chain.account, check=partial(self.trial.check, self.pool))

    def relay(self, tx: Transaction) -> None:
        """Admit as a peer's transaction (no trial)."""
        assert self.pool.add(tx, self.chain.account)[0].kind is EventKind.ACCEPTED


def small_blocks(keys: list[PrivateKey], max_block_bytes: int) -> ChainParams:
    return test_params(keys, max_block_bytes=max_block_bytes)


def test_a_bond_without_an_identity_is_refused_on_an_idle_and_on_a_busy_node(tmp_path: Path) -> None:
    # Blocks of about five transfers; the pool holds far more than a block of others' ones.
    chain = new_chain(tmp_path / "c", small_blocks([ALICE, BOB, CAROL], 1_200))
    p = Pool(chain)
    with pytest.raises(UnknownIdentity):
        p.admit(p.sign(ALICE, Bond(100)))
    p.nonces.clear()
    for i in range(40):
        p.relay(p.sign(BOB if i % 2 else CAROL, Transfer(ALICE.address, 1_000), fee=10_000))
    with pytest.raises(UnknownIdentity):
        p.admit(p.sign(ALICE, Bond(100)))
    assert ALICE.address not in p.pool.by_sender


def test_a_sender_pending_more_than_a_block_is_still_tried_in_nonce_order(tmp_path: Path) -> None:
    chain = new_chain(tmp_path / "c", small_blocks([ALICE, BOB], 1_200))
    p = Pool(chain)
    for _ in range(12):  # more than two blocks' worth, all from ALICE
        p.admit(p.sign(ALICE, Transfer(BOB.address, 1_000)))
    p.admit(p.sign(ALICE, Transfer(BOB.address, 1_000)))
    assert len(p.pool.by_sender[ALICE.address]) == 13


def test_a_transaction_that_needs_another_senders_pending_one_is_accepted(tmp_path: Path) -> None:
    chain = new_chain(tmp_path / "c", test_params([ALICE, MAKER]))
    extend(chain, [register_identity(chain, k) for k in (ALICE, MAKER)])
    p = Pool(chain)
    meter = PrivateKey.from_label("trial-meter")
    cert = issue_certificate(MAKER, meter.public_key, vendor="Acme", model="M1", firmware="1", serial="1")
    register = p.sign(ALICE, registration(meter, cert, "north", ALICE.address, chain.chain_id))
    # Alone on the head it fails: its maker is no manufacturer yet ...
    with pytest.raises(InvalidCertificate):
        p.admit(register)
    # ... but after the maker's pending registration as a manufacturer, it applies.
    p.admit(p.sign(MAKER, RegisterAuthority(int(Role.MANUFACTURER), "Acme")))
    p.admit(register)
    extend(chain, [v.tx for v in p.pool.candidates()])  # and a block takes both
    assert chain.view().get(METERS, meter.address) is not None


def test_a_burst_from_one_sender_costs_one_application_each(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    chain = new_chain(tmp_path / "c", test_params([ALICE, BOB]))
    p = Pool(chain)
    applied = 0
    original = trial_module.apply_transaction

    def counting(*args: object) -> None:
        nonlocal applied
        applied += 1
        original(*args)  # type: ignore[arg-type]

    monkeypatch.setattr(trial_module, "apply_transaction", counting)
    burst = 300
    for _ in range(burst):
        p.admit(p.sign(ALICE, Transfer(BOB.address, 1_000)))
    # Each is tried once and, when the next comes, applied once to the kept state.
    assert applied <= 2 * burst
    # A replaced transaction (same nonce, higher fee) invalidates what was kept: still right.
    queue = p.pool.by_sender[ALICE.address]
    last = max(queue)
    p.nonces[ALICE.address] = last
    p.admit(p.sign(ALICE, Transfer(BOB.address, 2_000), fee=2 * queue[last].tx.fee + 100))
    p.admit(p.sign(ALICE, Transfer(BOB.address, 1_000)))
    assert len(p.pool.by_sender[ALICE.address]) == burst + 1
    extend(chain)  # the head moves: what was kept is dropped, the next trial starts afresh
    p.admit(p.sign(ALICE, Transfer(BOB.address, 1_000)))
    assert len(p.pool.by_sender[ALICE.address]) == burst + 2


def test_a_kept_state_counts_its_undo_log_in_the_trials_bytes(tmp_path: Path) -> None:
    """A kept state holds its undo log: every entry its transactions wrote, with the value it
    restores (here 3 of them per transfer: the sender's account twice, the recipient's once).
    The trial's bound on its kept states counts it beside their transactions, so a state whose
    transactions alone fit is let go once another sender's comes."""
    chain = new_chain(tmp_path / "c", test_params([ALICE, BOB, CAROL]))
    p = Pool(chain)
    count = 100
    txs = [p.sign(ALICE, Transfer(BOB.address, 1_000)) for _ in range(count)]
    for tx in txs:
        p.admit(tx)
    kept = p.trial._states[ALICE.address]
    tx_bytes = sum(v.size for v in p.pool.by_sender[ALICE.address].values())
    entries = 3 * count
    assert len(kept.view._journal or ()) == entries
    key = len(ACCOUNTS.prefix + ALICE.address)
    assert kept.bytes == tx_bytes + kept.view.undo_bytes(0) > tx_bytes + entries * key
    # A bound its transactions fit in, not its undo log: the next sender pushes it out.
    bound = tx_bytes + 1_000
    p.trial = TrialState(chain, max_bytes=bound)
    p.admit(p.sign(ALICE, Transfer(BOB.address, 1_000)))  # (built afresh: 101 transfers)
    assert p.trial._states[ALICE.address].bytes > bound
    p.admit(p.sign(CAROL, Transfer(BOB.address, 1_000)))
    assert ALICE.address not in p.trial._states
    assert p.trial._bytes == p.trial._states[CAROL.address].bytes <= bound
