"""The state transition, one rule per test: each builds a block that breaks exactly one
rule, asserts the named rejection through ``Chain.add_block``, and dumps the case as a
consensus vector (tests/vectors/<name>.json, replayed by test_vectors.py).

Blocks that must carry an invalid transaction are hand-built (tests/ledger/forge.py):
the block builder would filter the transaction out.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import msgspec
import pytest

from gridnet.crypto.keys import PrivateKey
from gridnet.encoding import decode_lenient
from gridnet.errors import (
    BadHeight,
    BadMerkleRoot,
    BadProofOfWork,
    BadSignature,
    BadStateRoot,
    BadVersion,
    BlockTooLarge,
    BlockTransactionInvalid,
    DuplicateTransaction,
    FeeTooLow,
    InsufficientBalance,
    InsufficientBond,
    InvalidBlock,
    InvalidTransaction,
    MalformedTransaction,
    MisplacedCoinbase,
    MissingCoinbase,
    NonceGap,
    NonceTooLow,
    TimestampTooFarInFuture,
    TimestampTooOld,
    WrongReward,
    WrongTarget,
)
from gridnet.identity import find_identity_proof
from gridnet.ledger.blocks import Block
from gridnet.ledger.chain import AddStatus, Chain
from gridnet.ledger.merkle import merkle_root
from gridnet.ledger.params import block_reward, max_supply
from gridnet.ledger.state import ACCOUNTS, UNBONDING, Account, height_key
from gridnet.ledger.transactions import tx_id
from gridnet.ledger.transition import validate_transaction
from gridnet.ledger.txs.bond import Bond, Unbond
from gridnet.ledger.txs.identity import RegisterIdentity
from gridnet.ledger.txs.transfer import Transfer
from gridnet.units import UNITS_PER_GNC
from gridnet.work import target_from_bits, target_to_bytes
from tests.helpers import INTERVAL, extend, new_chain, next_block, remine, sign, test_keys, test_params
from tests.ledger.forge import MINER, coinbase_tx, forge_block, without_pow
from tests.ledger.vectors import record_rejection, record_valid, snapshot

GNC = UNITS_PER_GNC
KEYS = test_keys(4)
A, B, C, D = KEYS


@pytest.fixture
def chain(tmp_path: Path) -> Iterator[Chain]:
    c = new_chain(tmp_path / "chain", test_params(KEYS))
    yield c
    c.close()


def reject(
    chain: Chain, block: Block, error: type[InvalidBlock], name: str, description: str, now: int | None = None
) -> InvalidBlock:
    """Add ``block``, expect ``error``, check nothing changed, and write the vector."""
    pre = snapshot(chain)
    now = block.header.timestamp if now is None else now
    head, values, root = chain.head.hash, dict(chain.values), chain.commitment.root
    with pytest.raises(error) as info:
        chain.add_block(block, now=now)
    assert chain.head.hash == head
    assert chain.values == values
    assert chain.commitment.root == root == chain.head.header.state_root
    record_rejection(name, description, pre, block, now, info.value)
    return info.value


def reject_tx(
    chain: Chain,
    block: Block,
    error: type[InvalidTransaction],
    name: str,
    description: str,
    index: int = 1,
) -> None:
    """As :func:`reject`, for a block whose transaction ``index`` breaks ``error``."""
    exc = reject(chain, block, BlockTransactionInvalid, name, description)
    assert isinstance(exc, BlockTransactionInvalid)
    assert exc.rule == error.__name__
    assert type(exc.error) is error
    assert exc.index == index


def accept(chain: Chain, block: Block, name: str | None = None, description: str = "") -> None:
    pre = snapshot(chain)
    result = chain.add_block(block, now=block.header.timestamp)
    assert result.status is AddStatus.EXTENDED
    if name is not None:
        record_valid(name, description, pre, block, block.header.timestamp, chain)


def pay(chain: Chain, key: PrivateKey, to: PrivateKey, gnc: int, nonce: int, fee: int | None = None):  # type: ignore[no-untyped-def]
    return sign(chain, key, Transfer(to.address, gnc * GNC), nonce, fee)


# --- valid blocks ------------------------------------------------------------------------


def test_valid_transfer_block_moves_coin_and_pays_miner(chain: Chain) -> None:
    tx = pay(chain, A, B, 7, 0)
    block = next_block(chain, [tx])
    accept(chain, block, "valid_transfer", "A pays B 7 GNC; miner gets reward plus fee")
    assert chain.account(A.address) == Account(balance=1000 * GNC - 7 * GNC - tx.fee, nonce=1)
    assert chain.account(B.address).balance == 1007 * GNC
    assert chain.account(MINER.address).balance == block_reward(chain.params, 1) + tx.fee


def test_empty_block_pays_only_the_reward(chain: Chain) -> None:
    accept(chain, next_block(chain), "valid_empty_block", "a block with only its coinbase")
    assert chain.account(MINER.address).balance == block_reward(chain.params, 1)


# --- signatures, nonces, balances, fees ---------------------------------------------------


def test_forged_signature_is_rejected(chain: Chain) -> None:
    honest = pay(chain, A, B, 5, 0)
    # The forger (B) signs A's transaction body with its own key, keeping A as sender.
    forged_sig = sign(chain, B, honest.payload, 0, honest.fee).signature
    forged = msgspec.structs.replace(honest, signature=forged_sig)
    reject_tx(
        chain, forge_block(chain, [forged]), BadSignature, "bad_signature", "A's transfer signed by B's key"
    )


def test_tampered_amount_breaks_the_signature(chain: Chain) -> None:
    honest = pay(chain, A, B, 5, 0)
    tampered = msgspec.structs.replace(honest, payload=Transfer(B.address, 6 * GNC))  # same encoded size
    reject_tx(
        chain,
        forge_block(chain, [tampered]),
        BadSignature,
        "bad_signature_tampered_amount",
        "the amount of a signed transfer changed after signing",
    )


def test_signature_for_another_chain_is_rejected(chain: Chain, tmp_path: Path) -> None:
    other = new_chain(tmp_path / "other", test_params(KEYS, name="another-chain"))
    assert other.chain_id != chain.chain_id
    foreign = sign(other, A, Transfer(B.address, 5 * GNC), 0)
    other.close()
    with pytest.raises(BadSignature):
        validate_transaction(foreign, chain.params, chain.chain_id)
    reject_tx(
        chain,
        forge_block(chain, [foreign]),
        BadSignature,
        "bad_signature_other_chain",
        "a transaction signed for another chain id (cross-chain replay)",
    )


def test_replayed_transaction_is_rejected(chain: Chain) -> None:
    tx = pay(chain, A, B, 5, 0)
    extend(chain, [tx])
    reject_tx(
        chain,
        forge_block(chain, [tx]),
        NonceTooLow,
        "replayed_transaction",
        "a transaction already mined in block 1 included again in block 2",
    )
    assert chain.account(B.address).balance == 1005 * GNC


def test_nonce_gap_is_rejected(chain: Chain) -> None:
    reject_tx(
        chain,
        forge_block(chain, [pay(chain, A, B, 5, 1)]),
        NonceGap,
        "nonce_gap",
        "nonce 1 while the account's next nonce is 0",
    )


def test_second_transaction_with_same_nonce_in_one_block_is_rejected(chain: Chain) -> None:
    first, second = pay(chain, A, B, 5, 0), pay(chain, A, C, 5, 0)
    reject_tx(
        chain,
        forge_block(chain, [first, second]),
        NonceTooLow,
        "double_spend_same_block",
        "A pays B then C with the same nonce in one block",
        index=2,
    )


def test_overspend_is_rejected_and_exact_spend_accepted(chain: Chain) -> None:
    fee = sign(chain, A, Transfer(B.address, 1000 * GNC), 0).fee  # the minimum at nonce 0
    over = sign(chain, A, Transfer(B.address, 1000 * GNC - fee + 1), 0, fee)
    reject_tx(
        chain,
        forge_block(chain, [over]),
        InsufficientBalance,
        "insufficient_balance",
        "A spends one base unit more than its balance minus the fee",
    )
    exact = sign(chain, A, Transfer(B.address, 1000 * GNC - fee), 0, fee)
    extend(chain, [exact])
    assert chain.account(A.address).balance == 0
    assert chain.account(B.address).balance == 2000 * GNC - fee


def test_unfunded_sender_cannot_pay_the_fee(chain: Chain) -> None:
    poor = PrivateKey.from_label("unfunded")
    reject_tx(
        chain,
        forge_block(chain, [pay(chain, poor, B, 1, 0)]),
        InsufficientBalance,
        "insufficient_balance_for_fee",
        "an address that never held coin sends a transfer",
    )


def test_fee_below_minimum_is_rejected(chain: Chain) -> None:
    payload = Transfer(B.address, 5 * GNC)
    fee = sign(chain, A, payload, 0).fee  # the minimum at nonce 0
    validate_transaction(sign(chain, A, payload, 0, fee), chain.params, chain.chain_id)
    low = sign(chain, A, payload, 0, fee - 1)
    with pytest.raises(FeeTooLow):
        validate_transaction(low, chain.params, chain.chain_id)
    reject_tx(
        chain,
        forge_block(chain, [low]),
        FeeTooLow,
        "fee_too_low",
        "fee one unit below size x min_fee_per_byte",
    )


def test_zero_transfer_is_malformed(chain: Chain) -> None:
    reject_tx(
        chain,
        forge_block(chain, [sign(chain, A, Transfer(B.address, 0), 0)]),
        MalformedTransaction,
        "zero_transfer",
        "a transfer of zero coin",
    )


# --- block structure ------------------------------------------------------------------------


def test_bad_merkle_root_is_rejected(chain: Chain) -> None:
    block = forge_block(chain, [pay(chain, A, B, 5, 0)])
    ids = [tx_id(t) for t in block.txs]
    bad = remine(block, tx_root=merkle_root(ids[::-1]))
    reject(
        chain, bad, BadMerkleRoot, "bad_merkle_root", "header commits to the transactions in another order"
    )


def test_bad_proof_of_work_is_rejected(chain: Chain) -> None:
    block = without_pow(next_block(chain, [pay(chain, A, B, 5, 0)]))
    reject(chain, block, BadProofOfWork, "bad_proof_of_work", "header hash not below its target")


def test_wrong_reward_is_rejected(chain: Chain) -> None:
    tx = pay(chain, A, B, 5, 0)
    reward = block_reward(chain.params, 1)
    greedy = coinbase_tx(1, reward + 1, tx.fee)
    block = forge_block(chain, [tx], coinbase=greedy)
    reject(chain, block, WrongReward, "wrong_reward", "coinbase claims the reward plus one unit")
    # The honest block with the same transaction is accepted.
    accept(chain, forge_block(chain, [tx]))


def test_wrong_fees_in_coinbase_are_rejected(chain: Chain) -> None:
    tx = pay(chain, A, B, 5, 0)
    greedy = coinbase_tx(1, block_reward(chain.params, 1), tx.fee + 1)
    reject(
        chain,
        forge_block(chain, [tx], coinbase=greedy),
        WrongReward,
        "wrong_fees",
        "coinbase claims one unit more than the block's fees",
    )


def test_coinbase_for_another_height_is_rejected(chain: Chain) -> None:
    cb = coinbase_tx(2, block_reward(chain.params, 1), 0)
    reject(
        chain,
        forge_block(chain, coinbase=cb),
        WrongReward,
        "wrong_coinbase_height",
        "coinbase names height 2",
    )


def test_block_without_coinbase_is_rejected(chain: Chain) -> None:
    reject(
        chain,
        forge_block(chain, with_coinbase=False),
        MissingCoinbase,
        "missing_coinbase_empty",
        "a block with no transactions at all",
    )


def test_block_starting_with_signed_transaction_is_rejected(chain: Chain) -> None:
    reject(
        chain,
        forge_block(chain, [pay(chain, A, B, 5, 0)], with_coinbase=False),
        MissingCoinbase,
        "missing_coinbase_signed_first",
        "the first transaction is a signed transfer",
    )


def test_coinbase_with_a_fee_is_rejected(chain: Chain) -> None:
    cb = msgspec.structs.replace(coinbase_tx(1, block_reward(chain.params, 1), 0), fee=1)
    reject(
        chain,
        forge_block(chain, coinbase=cb),
        MissingCoinbase,
        "coinbase_with_fee",
        "a coinbase paying a fee",
    )


def test_second_coinbase_is_rejected(chain: Chain) -> None:
    extra = coinbase_tx(1, block_reward(chain.params, 1), 0)
    reject_tx(
        chain,
        forge_block(chain, [extra]),
        MisplacedCoinbase,
        "misplaced_coinbase",
        "a second coinbase after the first",
    )


def test_duplicate_transaction_is_rejected(chain: Chain) -> None:
    tx = pay(chain, A, B, 5, 0)
    reject(
        chain,
        forge_block(chain, [tx, tx]),
        DuplicateTransaction,
        "duplicate_transaction",
        "the same transaction twice in a block",
    )


def test_bad_state_root_is_rejected(chain: Chain) -> None:
    block = forge_block(chain, [pay(chain, A, B, 5, 0)])
    bad = remine(block, state_root=bytes(32))
    reject(chain, bad, BadStateRoot, "bad_state_root", "header state root does not match the state after it")


def test_bad_height_is_rejected(chain: Chain) -> None:
    reject(chain, forge_block(chain, height=2), BadHeight, "bad_height", "height 2 on top of genesis")


def test_bad_version_is_rejected(chain: Chain) -> None:
    reject(chain, forge_block(chain, version=2), BadVersion, "bad_version", "header version 2")


def test_oversized_block_is_rejected(tmp_path: Path) -> None:
    small = new_chain(tmp_path / "small", test_params(KEYS, max_block_bytes=1024))
    txs = [pay(small, A, B, 1, n) for n in range(10)]
    block = forge_block(small, txs)
    assert len(msgspec.msgpack.encode(block)) > 1024
    reject(
        small, block, BlockTooLarge, "block_too_large", "ten transfers in a chain limited to 1024-byte blocks"
    )
    accept(small, forge_block(small, txs[:3]))
    small.close()


def test_wrong_target_is_rejected(chain: Chain) -> None:
    easier = target_to_bytes(target_from_bits(3))
    reject(
        chain,
        forge_block(chain, target=easier),
        WrongTarget,
        "wrong_target_easier",
        "target easier than the rule",
    )
    harder = target_to_bytes(target_from_bits(5))
    reject(
        chain,
        forge_block(chain, target=harder),
        WrongTarget,
        "wrong_target_harder",
        "target harder than the rule",
    )


# --- timestamps -----------------------------------------------------------------------------


def test_timestamp_too_far_in_future_is_rejected(chain: Chain) -> None:
    now = chain.head.header.timestamp + INTERVAL
    limit = now + chain.params.max_future_ms
    reject(
        chain,
        forge_block(chain, timestamp=limit + 1),
        TimestampTooFarInFuture,
        "timestamp_too_far_in_future",
        "timestamp one ms beyond the local clock plus max_future_ms",
        now=now,
    )
    block = forge_block(chain, timestamp=limit)
    assert chain.add_block(block, now=now).status is AddStatus.EXTENDED


def test_timestamp_not_after_median_is_rejected(chain: Chain) -> None:
    for _ in range(5):
        extend(chain)
    stamps = sorted(chain.block_at(h).header.timestamp for h in range(6))  # type: ignore[union-attr]
    median = stamps[len(stamps) // 2]
    assert chain.median_time_past(chain.head) == median
    reject(
        chain,
        forge_block(chain, timestamp=median),
        TimestampTooOld,
        "timestamp_too_old",
        "timestamp equal to the median of the previous blocks",
        now=chain.head.header.timestamp + INTERVAL,
    )
    block = forge_block(chain, timestamp=median + 1)
    assert chain.add_block(block, now=chain.head.header.timestamp).status is AddStatus.EXTENDED


# --- bonds -----------------------------------------------------------------------------------


def register(chain: Chain, key: PrivateKey, nonce: int):  # type: ignore[no-untyped-def]
    proof = find_identity_proof(key.address, chain.params.identity_target_int)
    return sign(chain, key, RegisterIdentity(proof), nonce)


def test_unbond_more_than_bonded_is_rejected(chain: Chain) -> None:
    extend(chain, [register(chain, A, 0), sign(chain, A, Bond(10 * GNC), 1)])
    assert chain.account(A.address).bonded == 10 * GNC
    reject_tx(
        chain,
        forge_block(chain, [sign(chain, A, Unbond(10 * GNC + 1), 2)]),
        InsufficientBond,
        "insufficient_bond",
        "unbond one unit more than bonded",
    )
    extend(chain, [sign(chain, A, Unbond(10 * GNC), 2)])
    assert chain.account(A.address).bonded == 0


def test_bond_more_than_balance_is_rejected(chain: Chain) -> None:
    extend(chain, [register(chain, A, 0)])
    balance = chain.account(A.address).balance
    bond = Bond(balance)  # the fee comes first, so the whole balance is too much
    reject_tx(
        chain,
        forge_block(chain, [sign(chain, A, bond, 1)]),
        InsufficientBalance,
        "bond_more_than_balance",
        "bond the whole balance, leaving nothing for the fee",
    )


def test_unbonded_coin_returns_after_the_delay(chain: Chain) -> None:
    delay = chain.params.unbonding_delay
    extend(chain, [register(chain, A, 0), sign(chain, A, Bond(10 * GNC), 1)])
    unbond = sign(chain, A, Unbond(4 * GNC), 2)
    extend(chain, [unbond])  # height 2: released at 2 + delay
    release = 2 + delay
    after_unbond = chain.account(A.address)
    assert (after_unbond.bonded, after_unbond.unbonding) == (6 * GNC, 4 * GNC)
    assert chain.values.get(UNBONDING.key(height_key(release))) is not None
    while chain.height < release - 1:
        extend(chain)
        assert chain.account(A.address) == after_unbond, f"coin returned early at height {chain.height}"
    block = next_block(chain)
    accept(
        chain, block, "unbonding_release", "coin unbonded at height 2 returns at height 2 + unbonding_delay"
    )
    released = chain.account(A.address)
    assert released == Account(after_unbond.balance + 4 * GNC, after_unbond.nonce, 6 * GNC, 0)
    assert chain.values.get(UNBONDING.key(height_key(release))) is None


# --- reward schedule and supply -------------------------------------------------------------


def test_block_reward_halves_every_interval(tmp_path: Path) -> None:
    params = test_params(KEYS, halving_interval=3, initial_reward=1000)
    assert [block_reward(params, h) for h in range(11)] == [
        0,
        1000,
        1000,
        1000,
        500,
        500,
        500,
        250,
        250,
        250,
        125,
    ]
    assert block_reward(params, 3 * 10 + 1) == 1000 >> 10 == 0
    assert max_supply(params) == sum(a.amount for a in params.allocations) + 3 * (
        1000 + 500 + 250 + 125 + 62 + 31 + 15 + 7 + 3 + 1
    )
    chain = new_chain(tmp_path / "halving", params)
    for _ in range(3):
        extend(chain)
    block = next_block(chain)
    accept(chain, block, "reward_after_halving", "block 4 pays half the initial reward (halving_interval 3)")
    extend(chain)
    assert chain.account(MINER.address).balance == 3 * 1000 + 2 * 500
    # A coinbase claiming the pre-halving reward after the halving is rejected.
    stale = forge_block(chain, coinbase=coinbase_tx(6, 1000, 0))
    reject(chain, stale, WrongReward, "wrong_reward_after_halving", "block 6 claims the pre-halving reward")
    chain.close()


def total_coin(chain: Chain) -> int:
    total = 0
    for key, raw in chain.values.items():
        if key.startswith(ACCOUNTS.prefix):
            acct = decode_lenient(raw, Account)
            total += acct.balance + acct.bonded + acct.unbonding
    return total


def test_coin_supply_is_conserved(chain: Chain) -> None:
    allocated = sum(a.amount for a in chain.params.allocations)
    assert total_coin(chain) == allocated
    blocks = [
        [register(chain, A, 0), pay(chain, B, C, 3, 0)],
        [sign(chain, A, Bond(50 * GNC), 1), pay(chain, C, D, 100, 0), pay(chain, D, A, 1, 0)],
        [sign(chain, A, Unbond(20 * GNC), 2)],
        [pay(chain, B, MINER, 2, 1)],
        [],
        [pay(chain, MINER, A, 1, 0)],
        [],
    ]
    for i, txs in enumerate(blocks, start=1):
        extend(chain, txs)
        minted = sum(block_reward(chain.params, h) for h in range(1, i + 1))
        assert total_coin(chain) == allocated + minted, f"supply off after block {i}"
    assert chain.account(A.address).unbonding == 0  # released at height 3 + delay = 6
