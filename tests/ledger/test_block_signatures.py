"""A block's signatures are checked on all cores while its transactions are applied: the block
is taken only when every one holds, and it is refused for the same rule, at the same
transaction, as when each signature was checked in turn before anything was applied."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import msgspec
import pytest

from gridnet.crypto.hashing import header_hash
from gridnet.crypto.keys import verification_limit
from gridnet.encoding import encode
from gridnet.errors import BlockTransactionInvalid, DuplicateTransaction, InvalidBlock
from gridnet.ledger.chain import AddStatus, Chain
from gridnet.ledger.transactions import Transaction
from gridnet.ledger.txs.transfer import Transfer
from gridnet.units import UNITS_PER_GNC
from tests.helpers import new_chain, sign, test_keys, test_params
from tests.ledger.forge import forge_block

A, B = test_keys(2)
N = 160  # (enough for the checks to be spread over cores: checkers.SHARE_MIN)


@pytest.fixture(params=[1, 2], ids=["one-core", "two-cores"])
def chain(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Chain]:
    with verification_limit(request.param):
        c = new_chain(tmp_path / "c", test_params([A, B]))
        yield c
        c.close()


def payments(chain: Chain) -> list[Transaction]:
    return [sign(chain, A, Transfer(B.address, UNITS_PER_GNC), n) for n in range(N)]


def forged(tx: Transaction) -> Transaction:
    return msgspec.structs.replace(
        tx, signature=tx.signature[:5] + bytes([tx.signature[5] ^ 1]) + tx.signature[6:]
    )


def refusal(chain: Chain, txs: list[Transaction]) -> InvalidBlock:
    head = chain.head.hash
    block = forge_block(chain, txs)
    with pytest.raises(InvalidBlock) as caught:
        chain.add_block(block, now=block.header.timestamp)
    assert chain.head.hash == head
    return caught.value


def test_a_block_whose_signatures_all_hold_is_taken(chain: Chain) -> None:
    block = forge_block(chain, payments(chain))
    assert chain.add_block(block, now=block.header.timestamp).status is AddStatus.EXTENDED
    assert chain.account(A.address).nonce == N


def test_a_bad_signature_is_found_before_a_later_transactions_stateful_fault(chain: Chain) -> None:
    txs = payments(chain)
    txs[9] = sign(chain, A, Transfer(B.address, UNITS_PER_GNC), 1000)  # NonceGap, applied first
    txs[29] = forged(txs[29])
    error = refusal(chain, txs)
    assert isinstance(error, BlockTransactionInvalid)
    assert (error.index, error.rule) == (30, "BadSignature")


def test_an_earlier_stateless_fault_is_found_before_a_bad_signature(chain: Chain) -> None:
    txs = payments(chain)
    txs[19] = sign(chain, A, Transfer(B.address, UNITS_PER_GNC), 19, fee=1)
    txs[29] = forged(txs[29])
    error = refusal(chain, txs)
    assert isinstance(error, BlockTransactionInvalid)
    assert (error.index, error.rule) == (20, "FeeTooLow")


def test_an_earlier_bad_signature_is_found_before_a_stateless_fault(chain: Chain) -> None:
    txs = payments(chain)
    txs[9] = forged(txs[9])
    txs[19] = sign(chain, A, Transfer(B.address, UNITS_PER_GNC), 19, fee=1)
    error = refusal(chain, txs)
    assert isinstance(error, BlockTransactionInvalid)
    assert (error.index, error.rule) == (10, "BadSignature")


def test_a_bad_signature_is_found_before_a_duplicate(chain: Chain) -> None:
    txs = payments(chain)
    txs[35] = forged(txs[35])
    assert isinstance(refusal(chain, [*txs, txs[0]]), BlockTransactionInvalid)
    assert isinstance(refusal(chain, [*payments(chain), txs[0]]), DuplicateTransaction)


def test_the_last_signature_alone_bad_refuses_the_block(chain: Chain) -> None:
    txs = payments(chain)
    txs[-1] = forged(txs[-1])
    error = refusal(chain, txs)
    assert isinstance(error, BlockTransactionInvalid)
    assert (error.index, error.rule) == (N, "BadSignature")


def test_a_block_refused_for_a_signature_found_while_it_was_written_leaves_no_trace(
    chain: Chain, tmp_path: Path
) -> None:
    """The store writes a block while its last signatures are checked: a bad one rolls the
    writes back and leaves the state commitment as it was."""
    txs = payments(chain)
    root, head = chain.commitment.root, chain.head.hash
    txs[-1] = forged(txs[-1])
    block = forge_block(chain, txs)
    with pytest.raises(BlockTransactionInvalid):
        chain.add_block(block, now=block.header.timestamp)
    assert (chain.commitment.root, chain.head.hash) == (root, head)
    assert chain.account(A.address).nonce == 0
    path = tmp_path / "c"
    chain.close()
    reopened = Chain.open(path)
    try:
        assert (reopened.commitment.root, reopened.head.hash, reopened.height) == (root, head, 0)
        assert reopened.get_block(header_hash(encode(block.header))) is None
        good = forge_block(reopened, payments(reopened))
        assert reopened.add_block(good, now=good.header.timestamp).status is AddStatus.EXTENDED
    finally:
        reopened.close()
