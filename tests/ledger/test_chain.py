"""Fork choice by cumulative work, reorgs that replace the state exactly, and the
chain-level rejections (unknown parent, known invalid).

Branches are mined by separate chains ("nodes") that share a genesis, then fed to
an observer chain block by block, as a peer would deliver them.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import msgspec
import pytest

from gridnet.crypto.hashing import header_hash
from gridnet.crypto.keys import PrivateKey
from gridnet.encoding import encode
from gridnet.errors import (
    BadStateRoot,
    BlockTransactionInvalid,
    InsufficientBalance,
    InsufficientBond,
    InvalidTransaction,
    KnownInvalid,
    NonceTooLow,
    UnknownIdentity,
    UnknownParent,
    WorkNotFound,
)
from gridnet.identity import find_identity_proof
from gridnet.ledger.blocks import Block
from gridnet.ledger.chain import AddResult, AddStatus, Chain
from gridnet.ledger.miner import produce_block
from gridnet.ledger.params import ChainParams, block_reward
from gridnet.ledger.registry import Payload
from gridnet.ledger.state import IDENTITIES, UNBONDING
from gridnet.ledger.transition import validate_transaction
from gridnet.ledger.txs.bond import Bond, Unbond
from gridnet.ledger.txs.coinbase import Coinbase
from gridnet.ledger.txs.identity import RegisterIdentity
from gridnet.ledger.txs.transfer import Transfer
from gridnet.ledger.verify import verify_chain
from gridnet.units import UNITS_PER_GNC
from gridnet.work import target_from_bits, target_from_bytes, target_to_bytes, work_of_target
from tests.helpers import (
    GENESIS_TIME,
    INTERVAL,
    extend,
    new_chain,
    next_block,
    remine,
    sign,
    test_keys,
    test_params,
)
from tests.ledger.forge import forge_block

GNC = UNITS_PER_GNC
KEYS = test_keys(4)
A, B, C, D = KEYS
MINER_P = PrivateKey.from_label("miner-p")
MINER_Q = PrivateKey.from_label("miner-q")


def feed(chain: Chain, *blocks: Block) -> AddResult:
    result = None
    for b in blocks:
        result = chain.add_block(b, now=b.header.timestamp)
    assert result is not None
    return result


def main_blocks(chain: Chain) -> list[Block]:
    blocks = [chain.block_at(h) for h in range(1, chain.height + 1)]
    assert all(b is not None for b in blocks)
    return blocks  # type: ignore[return-value]


def replay(path: Path, params: ChainParams, blocks: Iterable[Block]) -> Chain:
    """A fresh chain fed ``blocks`` in order: the state a replay from genesis gives."""
    fresh = new_chain(path, params)
    for b in blocks:
        result = fresh.add_block(b, now=b.header.timestamp)
        assert result.status is AddStatus.EXTENDED
    return fresh


def assert_same_state(chain: Chain, other: Chain) -> None:
    assert chain.head.hash == other.head.hash
    assert chain.values == other.values
    assert chain.commitment.root == other.commitment.root == chain.head.header.state_root
    assert dict(chain.store.state_items()) == chain.values  # the store agrees with memory


def balances(chain: Chain) -> dict[bytes, int]:
    return {k.address: chain.account(k.address).balance for k in (*KEYS, MINER_P, MINER_Q)}


@pytest.fixture
def params() -> ChainParams:
    return test_params(KEYS)


# --- double spend across a fork ----------------------------------------------------------------


def test_double_spend_across_a_fork_keeps_only_the_winning_spend(tmp_path: Path, params: ChainParams) -> None:
    observer = new_chain(tmp_path / "observer", params)
    p = new_chain(tmp_path / "p", params)
    q = new_chain(tmp_path / "q", params)
    common = extend(p)
    feed(q, common)
    feed(observer, common)

    # Same sender, same nonce: A pays C on branch P and B on branch Q.
    pays_c = sign(p, A, Transfer(C.address, 100 * GNC), 0)
    pays_b = sign(q, A, Transfer(B.address, 100 * GNC), 0)
    p2 = extend(p, [pays_c], miner=MINER_P)
    q2 = extend(q, [pays_b], miner=MINER_Q)
    q3 = extend(q, miner=MINER_Q)

    assert feed(observer, p2).status is AddStatus.EXTENDED
    assert observer.account(C.address).balance == 1100 * GNC
    assert feed(observer, q2).status is AddStatus.SIDE  # equal work: P's block stays
    assert observer.head.hash == header_hash(encode(p2.header))
    assert observer.account(C.address).balance == 1100 * GNC

    result = feed(observer, q3)
    assert result.status is AddStatus.REORG
    assert result.disconnected == [p2]
    assert result.connected == [q2, q3]
    # The losing spend is gone, the winning one is in.
    assert observer.account(C.address).balance == 1000 * GNC
    assert observer.account(B.address).balance == 1100 * GNC
    assert observer.account(A.address).balance == 900 * GNC - pays_b.fee
    assert observer.account(A.address).nonce == 1
    assert observer.account(MINER_P.address).balance == 0
    # Exactly the state of a replay of the winning branch from genesis.
    fresh = replay(tmp_path / "replay", params, [common, q2, q3])
    assert_same_state(observer, fresh)
    assert_same_state(observer, q)

    # The losing spend cannot be mined on the winning branch: its nonce is used.
    with pytest.raises(BlockTransactionInvalid) as info:
        feed(observer, forge_block(observer, [pays_c]))
    assert info.value.rule == "NonceTooLow"
    assert isinstance(info.value.error, NonceTooLow)
    for c in (observer, p, q, fresh):
        c.close()


# --- fork choice -----------------------------------------------------------------------------------


def test_equal_work_keeps_the_first_seen_head(tmp_path: Path, params: ChainParams) -> None:
    p, q = new_chain(tmp_path / "p", params), new_chain(tmp_path / "q", params)
    p1 = extend(p, [sign(p, A, Transfer(C.address, GNC), 0)], miner=MINER_P)
    q1 = extend(q, [sign(q, A, Transfer(B.address, GNC), 0)], miner=MINER_Q)
    x, y = new_chain(tmp_path / "x", params), new_chain(tmp_path / "y", params)
    feed(x, p1)
    assert feed(x, q1).status is AddStatus.SIDE
    feed(y, q1)
    assert feed(y, p1).status is AddStatus.SIDE
    assert x.head.hash == header_hash(encode(p1.header))
    assert y.head.hash == header_hash(encode(q1.header))
    entry_p, entry_q = x.entries[header_hash(encode(p1.header))], x.entries[header_hash(encode(q1.header))]
    assert entry_p.total_work == entry_q.total_work
    assert_same_state(x, p)
    assert_same_state(y, q)
    # Adding a known block again changes nothing.
    assert feed(x, q1).status is AddStatus.DUPLICATE
    assert_same_state(x, p)
    for c in (p, q, x, y):
        c.close()


def test_more_work_beats_more_blocks(tmp_path: Path) -> None:
    """Retarget every 2 blocks: a branch mined with fast timestamps gets harder targets,
    so 3 of its blocks carry more work than 8 blocks of a slow branch."""
    params = test_params(KEYS, retarget_window=2, max_retarget_factor=4)
    fast = new_chain(tmp_path / "fast", params)
    slow = new_chain(tmp_path / "slow", params)
    for i in range(1, 4):
        extend(fast, timestamp=GENESIS_TIME + i, miner=MINER_P)
    for i in range(1, 9):
        extend(slow, timestamp=GENESIS_TIME + 3_000 * i, miner=MINER_Q)
    fast_targets = [b.header.target for b in main_blocks(fast)]
    slow_targets = [b.header.target for b in main_blocks(slow)]
    assert set(slow_targets) == {params.initial_target}  # slow blocks never retarget harder
    assert target_from_bytes(fast_targets[-1]) == params.initial_target_int // 4
    assert fast.head.total_work > slow.head.total_work
    assert fast.height < slow.height
    assert fast.head.total_work == sum(
        work_of_target(target_from_bytes(t)) for t in fast_targets
    ) + work_of_target(target_from_bits(4))

    # Slow branch first, then the fast one: the heavier, shorter branch wins.
    x = new_chain(tmp_path / "x", params)
    feed(x, *main_blocks(slow))
    statuses = [feed(x, b).status for b in main_blocks(fast)]
    assert statuses == [AddStatus.SIDE, AddStatus.SIDE, AddStatus.REORG]
    assert x.height == 3
    assert_same_state(x, fast)
    x.close()
    report = verify_chain(tmp_path / "x")  # replays the retargets
    assert report.ok and report.height == 3, report

    # Fast branch first: eight slow blocks never take over.
    y = new_chain(tmp_path / "y", params)
    feed(y, *main_blocks(fast))
    assert {feed(y, b).status for b in main_blocks(slow)} == {AddStatus.SIDE}
    assert_same_state(y, fast)
    for c in (fast, slow, y):
        c.close()


# --- reorgs restore state exactly ------------------------------------------------------------------


def test_reorg_back_and_forth_restores_state_exactly(tmp_path: Path, params: ChainParams) -> None:
    """Branch P registers, bonds and unbonds (creating and deleting identity and
    unbonding entries); branch Q does other things. The observer follows whichever
    branch has more work, several times over; its state must always equal the state of
    the node that mined that branch, and a replay from genesis."""
    p, q, x = (new_chain(tmp_path / n, params) for n in ("p", "q", "x"))
    proof = find_identity_proof(A.address, params.identity_target_int)
    prefix = [
        extend(p, [sign(p, D, Transfer(A.address, 10 * GNC), 0)]),
        extend(p, [sign(p, A, RegisterIdentity(proof), 0), sign(p, A, Bond(30 * GNC), 1)]),
        extend(p, [sign(p, A, Unbond(10 * GNC), 2)]),  # height 3: released at 6
    ]
    feed(q, *prefix)
    feed(x, *prefix)

    # P: the unbonding returns at height 6 (its queue entry is deleted), B registers,
    # A unbonds again (a new queue entry at height 5 + 3 = 8).
    p_blocks = [
        extend(
            p, [sign(p, B, RegisterIdentity(find_identity_proof(B.address, params.identity_target_int)), 0)]
        ),
        extend(p, [sign(p, A, Unbond(5 * GNC), 3)]),
        extend(p, [sign(p, A, Transfer(C.address, 7 * GNC), 4)]),
    ]
    assert p.values.get(UNBONDING.key((6).to_bytes(8, "big"))) is None
    assert p.values.get(UNBONDING.key((8).to_bytes(8, "big"))) is not None
    # Q: A spends differently, the same height-6 release happens on this branch too.
    q_blocks = [
        extend(q, [sign(q, A, Transfer(D.address, 3 * GNC), 3)], miner=MINER_Q),
        extend(q, miner=MINER_Q),
        extend(q, miner=MINER_Q),
        extend(q, [sign(q, C, Transfer(A.address, GNC), 0)], miner=MINER_Q),
    ]

    feed(x, *p_blocks)
    assert_same_state(x, p)
    snapshot_p = (dict(x.values), balances(x))

    assert feed(x, *q_blocks).status is AddStatus.REORG
    assert_same_state(x, q)
    assert x.view().get(IDENTITIES, B.address) is None  # B's registration undone
    assert x.values.get(UNBONDING.key((8).to_bytes(8, "big"))) is None
    snapshot_q = (dict(x.values), balances(x))

    # P catches up and overtakes: back to P.
    p_more = [extend(p, miner=MINER_P), extend(p, miner=MINER_P)]
    assert feed(x, p_more[0]).status is AddStatus.SIDE
    assert feed(x, p_more[1]).status is AddStatus.REORG
    assert_same_state(x, p)
    assert balances(x)[B.address] == snapshot_p[1][B.address]

    # Q overtakes again: exactly Q's state as before plus its new block.
    q_more = [extend(q, miner=MINER_Q), extend(q, miner=MINER_Q)]
    feed(x, *q_more)
    assert_same_state(x, q)
    fresh = replay(tmp_path / "replay", params, [*prefix, *q_blocks, *q_more])
    assert_same_state(x, fresh)
    assert snapshot_q[1][A.address] == balances(x)[A.address]
    for c in (p, q, x, fresh):
        c.close()


def test_reopened_store_after_reorg_has_the_same_head_and_state(tmp_path: Path, params: ChainParams) -> None:
    p, q, x = (new_chain(tmp_path / n, params) for n in ("p", "q", "x"))
    p_blocks = [extend(p, [sign(p, A, Transfer(B.address, GNC), n)], miner=MINER_P) for n in range(2)]
    q_blocks = [extend(q, [sign(q, A, Transfer(C.address, 2 * GNC), n)], miner=MINER_Q) for n in range(3)]
    feed(x, *p_blocks)
    assert x.tx_count == 2
    assert feed(x, *q_blocks).status is AddStatus.REORG
    assert x.tx_count == 3 == x.store.main_tx_count()  # kept in step through the reorg
    head, values, root, height = x.head.hash, dict(x.values), x.commitment.root, x.height
    x.close()

    reopened = Chain.open(tmp_path / "x")
    assert (reopened.head.hash, reopened.height, reopened.commitment.root) == (head, height, root)
    assert reopened.tx_count == 3
    assert reopened.values == values
    assert_same_state(reopened, q)
    # The side branch is still known: re-adding it is a duplicate, not new work.
    assert all(feed(reopened, b).status is AddStatus.DUPLICATE for b in p_blocks)
    report = verify_chain(tmp_path / "x")
    assert report.ok, report
    assert report.height == 3
    for c in (p, q, reopened):
        c.close()


# --- pruning side branches -------------------------------------------------------------------------


def test_side_branches_deep_below_the_head_are_pruned_unless_kept(
    tmp_path: Path, params: ChainParams
) -> None:
    p, q, x = (new_chain(tmp_path / n, params) for n in ("p", "q", "x"))
    q_blocks = [extend(q, miner=MINER_Q) for _ in range(2)]  # a branch forking at genesis
    recent = [extend(p, miner=MINER_P) for _ in range(3)]
    feed(x, *recent)
    assert feed(x, *q_blocks).status is AddStatus.SIDE
    side = [header_hash(encode(b.header)) for b in q_blocks]
    assert x.prune_side_branches(4) == 0  # it leaves the main chain only 3 blocks below the head
    feed(x, extend(p, miner=MINER_P))
    assert x.prune_side_branches(4, keep=[side[1]]) == 0  # (a branch being downloaded stays)
    assert x.prune_side_branches(4) == 2
    assert all(h not in x.entries and x.store.block_data(h) is None for h in side)
    x.close()
    reopened = Chain.open(tmp_path / "x")
    assert all(h not in reopened.entries for h in side)
    assert feed(reopened, *q_blocks).status is AddStatus.SIDE  # it may come back
    assert verify_chain(tmp_path / "x").ok
    for c in (p, q, reopened):
        c.close()


# --- rejections ------------------------------------------------------------------------------------


def test_block_with_unknown_parent_is_rejected(tmp_path: Path, params: ChainParams) -> None:
    p, x = new_chain(tmp_path / "p", params), new_chain(tmp_path / "x", params)
    b1, b2 = extend(p), extend(p)
    with pytest.raises(UnknownParent):
        feed(x, b2)
    assert x.height == 0
    feed(x, b1, b2)
    assert_same_state(x, p)
    for c in (p, x):
        c.close()


def test_known_invalid_block_and_its_descendants_are_refused(tmp_path: Path, params: ChainParams) -> None:
    chain = new_chain(tmp_path / "c", params)
    extend(chain)
    bad = remine(next_block(chain, [sign(chain, A, Transfer(B.address, GNC), 0)]), state_root=bytes(32))
    with pytest.raises(BadStateRoot):
        feed(chain, bad)
    with pytest.raises(KnownInvalid):
        feed(chain, bad)
    bad_hash = header_hash(encode(bad.header))
    child_header = msgspec.structs.replace(
        bad.header, height=bad.header.height + 1, prev_hash=bad_hash, timestamp=bad.header.timestamp + 1000
    )
    child = remine(Block(child_header, bad.txs))
    with pytest.raises(KnownInvalid):
        feed(chain, child)
    assert chain.height == 1
    # The honest block at the same height is still accepted.
    extend(chain, [sign(chain, A, Transfer(B.address, GNC), 0)])
    assert chain.height == 2
    chain.close()


def test_invalid_blocks_that_just_arrived_cost_no_walk_of_the_index(
    tmp_path: Path, params: ChainParams
) -> None:
    """A block found invalid as it arrives has no descendants: the index is not walked for
    them (nor for the best tip again), so a stream of invalid blocks with valid proof of work
    costs each its own check, not one that grows with what the node holds."""

    class Counted(dict[bytes, object]):
        walks = 0

        def values(self):  # type: ignore[no-untyped-def, override]
            Counted.walks += 1
            return super().values()

    chain = new_chain(tmp_path / "c", params)
    for _ in range(3):
        extend(chain)
    chain.best_tip()
    chain.entries = Counted(chain.entries)  # type: ignore[assignment]
    for n in range(20):
        bad = remine(
            next_block(chain, [sign(chain, A, Transfer(B.address, GNC), 0)]), state_root=bytes([n + 1]) * 32
        )
        with pytest.raises(BadStateRoot):
            feed(chain, bad)
        with pytest.raises(KnownInvalid):
            feed(chain, bad)
    assert chain.best_tip() is chain.head
    assert Counted.walks == 0
    extend(chain, [sign(chain, A, Transfer(B.address, GNC), 0)])
    assert chain.height == 4
    chain.close()


def test_failed_reorg_keeps_the_old_head_and_state(tmp_path: Path, params: ChainParams) -> None:
    """A side branch whose second block is invalid (bad state root) gains more work
    with a third block: switching fails at the invalid block, and the chain must be
    left exactly on its old head, in memory, in the store and after reopening."""
    x, q = new_chain(tmp_path / "x", params), new_chain(tmp_path / "q", params)
    main = [extend(x, [sign(x, A, Transfer(B.address, GNC), n)], miner=MINER_P) for n in range(2)]
    q1 = extend(q, [sign(q, A, Transfer(C.address, 5 * GNC), 0)], miner=MINER_Q)
    q2_bad = remine(
        next_block(q, [sign(q, A, Transfer(C.address, 5 * GNC), 1)], miner=MINER_Q), state_root=bytes(32)
    )
    q3_header = msgspec.structs.replace(
        q2_bad.header,
        height=3,
        prev_hash=header_hash(encode(q2_bad.header)),
        timestamp=q2_bad.header.timestamp + 1000,
    )
    q3 = remine(Block(q3_header, q2_bad.txs))
    before = (x.head.hash, dict(x.values), x.commitment.root)

    assert feed(x, q1).status is AddStatus.SIDE
    assert feed(x, q2_bad).status is AddStatus.SIDE  # equal work: not validated yet
    with pytest.raises(BadStateRoot):
        feed(x, q3)
    assert (x.head.hash, x.values, x.commitment.root) == before
    assert x.commitment.root == x.head.header.state_root
    assert dict(x.store.state_items()) == x.values
    with pytest.raises(KnownInvalid):
        feed(x, q3)
    # The chain goes on normally from its head.
    extend(x, [sign(x, A, Transfer(B.address, GNC), 2)], miner=MINER_P)
    head = x.head.hash
    x.close()

    reopened = Chain.open(tmp_path / "x")
    assert reopened.head.hash == head
    with pytest.raises(KnownInvalid):
        feed(reopened, q3)
    fresh = replay(tmp_path / "replay", params, [*main, reopened.block_at(3)])  # type: ignore[list-item]
    assert_same_state(reopened, fresh)
    assert verify_chain(tmp_path / "x").ok
    for c in (q, reopened, fresh):
        c.close()


# --- building blocks ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("payload", "error"),
    [
        (Transfer(C.address, 2000 * GNC), InsufficientBalance),  # pays the fee, not the amount
        (Bond(GNC), UnknownIdentity),  # B has no identity
        (Unbond(GNC), InsufficientBond),  # B has nothing bonded
    ],
    ids=["overspend", "bond-without-identity", "unbond-without-bond"],
)
def test_builder_rejection_leaves_no_fee(
    tmp_path: Path, params: ChainParams, payload: Payload, error: type[InvalidTransaction]
) -> None:
    """A candidate that passes the nonce and fee checks and then fails its type's own
    rule is rejected by the builder; the block it builds must still be valid, so the
    rejected candidate's fee must not be counted in the coinbase.

    Fails today: Chain.build_block rolls the state view back but not ``env.fees``, which
    ``apply_transaction`` already raised; the coinbase claims the rejected fee and the
    node's own block is refused with WrongReward.
    """
    chain = new_chain(tmp_path / "c", params)
    good = sign(chain, A, Transfer(B.address, GNC), 0)
    bad = sign(chain, B, payload, 0)
    vtxs = [validate_transaction(t, chain.params, chain.chain_id) for t in (good, bad)]
    ts = chain.head.header.timestamp + INTERVAL
    block, template = produce_block(chain, MINER_P.address, vtxs, now=ts, timestamp=ts)
    assert [type(e) for _, e in template.rejected] == [error]
    assert [v.tx for v in template.included] == [good]
    assert block.txs[1:] == (good,)
    coinbase = block.txs[0].payload
    assert isinstance(coinbase, Coinbase)
    assert (coinbase.reward, coinbase.fees) == (block_reward(params, 1), good.fee)
    assert chain.add_block(block, now=ts).status is AddStatus.EXTENDED
    chain.close()


def test_a_miner_that_finds_no_work_within_its_attempts_adds_nothing(tmp_path: Path) -> None:
    """A target of 128 zero bits cannot be met in 300 hashes: the search stops with the
    named error and the chain stays at genesis."""
    hard = target_to_bytes(target_from_bits(128))
    chain = new_chain(tmp_path / "c", test_params(KEYS, initial_target=hard))
    ts = chain.head.header.timestamp + INTERVAL
    with pytest.raises(WorkNotFound, match="no proof-of-work found in 300 attempts"):
        produce_block(chain, MINER_P.address, now=ts, timestamp=ts, max_attempts=300)
    assert chain.height == 0
    chain.close()
