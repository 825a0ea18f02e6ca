"""The state transition: ``apply_block`` and the rules of every transaction.

Reads top to bottom like execution-specs' ``state_transition``: validate the
header against its context, check size, validate every transaction statelessly,
recompute the transaction root, apply each transaction, pay the coinbase,
recompute the state root, and compare each root with the header.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from msgspec.structs import replace

from gridnet.crypto.address import address_to_text
from gridnet.crypto.hashing import address_digest, header_hash, txid, vote_id
from gridnet.crypto.keys import Domain, SignatureCheck, Verdicts, verify_signature, verify_stream
from gridnet.crypto.ops import OPS
from gridnet.encoding import encode
from gridnet.errors import (
    BadHeight,
    BadMerkleRoot,
    BadProofOfWork,
    BadSeal,
    BadSignature,
    BadStateRoot,
    BadVersion,
    BlockTooLarge,
    BlockTransactionInvalid,
    BlockVoteInvalid,
    DuplicateTransaction,
    FeeTooLow,
    GridnetError,
    InsufficientBalance,
    InvalidTransaction,
    InvalidVote,
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
from gridnet.ledger.blocks import BLOCK_VERSION, Block, Header
from gridnet.ledger.commitment import CommitUndo, StateCommitment
from gridnet.ledger.merkle import merkle_root
from gridnet.ledger.params import ChainParams, block_reward
from gridnet.ledger.poa import (
    MAX_VOTES_PER_BLOCK,
    apply_set_change,
    apply_vote,
    begin_sealed_block,
    check_justified,
    check_sealed_header,
    slot_lead_ms,
    slot_of,
)
from gridnet.ledger.registry import RULES
from gridnet.ledger.state import ACCOUNTS, StateView
from gridnet.ledger.transactions import Transaction, tx_size
from gridnet.ledger.txs.auction import clear_due_auctions
from gridnet.ledger.txs.base import BlockEnv
from gridnet.ledger.txs.bond import process_unbonding
from gridnet.ledger.txs.coinbase import Coinbase
from gridnet.units import PUBLIC_KEY_BYTES, SIGNATURE_BYTES, Address, Hash32
from gridnet.work import target_from_bytes


@dataclass(frozen=True, slots=True)
class HeaderContext:
    """What the chain knows about a header's place: computed from its ancestors."""

    params: ChainParams
    chain_id: Hash32
    parent_hash: Hash32
    parent_height: int
    expected_target: bytes
    median_time_past: int
    """Median timestamp of the last ``median_time_span`` ancestors [ms]."""
    now: int
    """Local clock [ms]."""
    parent_timestamp: int = 0
    """The parent's timestamp [ms] (a permissioned block's slot must be after its parent's)."""
    parent_justified: int = 0
    """The justified slot the parent's header names (permissioned chain)."""


@dataclass(frozen=True, slots=True)
class VerifiedTx:
    """A transaction that passed its stateless checks."""

    tx: Transaction
    txid: Hash32
    sender: Address
    size: int


@dataclass(slots=True)
class BlockResult:
    changes: dict[bytes, bytes | None]
    """Encoded state changes of the block (None = deleted)."""
    commit_undo: CommitUndo
    """Reverts the state commitment to before the block."""
    txids: list[Hash32]
    fees: int
    reward: int


# --- headers ----------------------------------------------------------------------------


def validate_header(header: Header, ctx: HeaderContext) -> Hash32:
    """Context-dependent header rules; returns the header hash."""
    if header.version != BLOCK_VERSION:
        raise BadVersion(f"header version {header.version}, expected {BLOCK_VERSION}")
    if header.prev_hash != ctx.parent_hash:
        raise BadHeight(f"block {header.height} does not extend parent {ctx.parent_hash.hex()}")
    if header.height != ctx.parent_height + 1:
        raise BadHeight(f"height {header.height} after parent height {ctx.parent_height}")
    digest = header_hash(encode(header))
    if ctx.params.permissioned:
        check_sealed_header(header, ctx.params, ctx.chain_id, ctx.parent_timestamp, ctx.parent_justified)
        _check_future(header, ctx, slot_lead_ms(ctx.params))
        return digest
    if header.proposer or header.seal or header.justified:
        raise BadSeal(f"block {header.height}: a proof-of-work header carries no seal")
    # Proof-of-work first: it is the cheapest check that costs an attacker real work.
    OPS.pow_hashes += 1
    if int.from_bytes(digest, "big") >= target_from_bytes(header.target):
        raise BadProofOfWork(f"block {header.height}: hash {digest.hex()} is not below its target")
    if header.target != ctx.expected_target:
        raise WrongTarget(
            f"block {header.height}: target {header.target.hex()} differs from the retarget "
            f"rule's {ctx.expected_target.hex()}"
        )
    if header.timestamp <= ctx.median_time_past:
        raise TimestampTooOld(
            f"block {header.height}: timestamp {header.timestamp} is not after the median "
            f"of previous blocks ({ctx.median_time_past})"
        )
    _check_future(header, ctx, ctx.params.max_future_ms)
    return digest


def _check_future(header: Header, ctx: HeaderContext, limit: int) -> None:
    """At most ``limit`` ms ahead of the local clock (not invalid for good: the same block is
    taken once the clock has caught up)."""
    if header.timestamp > ctx.now + limit:
        raise TimestampTooFarInFuture(
            f"block {header.height}: timestamp {header.timestamp} is "
            f"{header.timestamp - ctx.now} ms ahead of the local clock (limit {limit} ms)"
        )


# --- transactions: stateless ------------------------------------------------------------


def validate_transaction(
    tx: Transaction,
    params: ChainParams,
    chain_id: Hash32,
    body: bytes | None = None,
    *,
    signature_ok: bool | None = None,
    tid: Hash32 | None = None,
) -> VerifiedTx:
    """Stateless rules of a signed transaction: shape, fee, type rules, signature.

    ``body`` may pass the transaction's already encoded body (see ``tx_body``), ``tid`` its
    id (``txid`` of that body and its signature) when the caller has it, and
    ``signature_ok`` the verdict on its signature (``signature_check``) when a batch of them
    was checked together (``verify_many``).
    """
    payload = tx.payload
    if type(payload) is Coinbase:
        raise MisplacedCoinbase("a coinbase may only be the first transaction of a block")
    if len(tx.sender) != PUBLIC_KEY_BYTES or len(tx.signature) != SIGNATURE_BYTES:
        raise MalformedTransaction("a signed transaction needs a 32-byte key and 64-byte signature")
    if body is None:
        body = encode((payload, tx.sender, tx.nonce, tx.fee))
    size = tx_size(body)
    if tx.fee < size * params.min_fee_per_byte:
        raise FeeTooLow(
            f"fee {tx.fee} is below the minimum {size * params.min_fee_per_byte} "
            f"({params.min_fee_per_byte} per byte x {size} bytes)"
        )
    RULES[type(payload)].validate(payload, params)
    if signature_ok is None:
        signature_ok = verify_signature(Domain.TRANSACTION, tx.sender, chain_id + body, tx.signature)
    if not signature_ok:
        raise BadSignature("signature does not verify for the sender's key on this chain")
    return VerifiedTx(tx, txid(body, tx.signature) if tid is None else tid, address_digest(tx.sender), size)


def signature_check(tx: Transaction, chain_id: Hash32, body: bytes) -> SignatureCheck:
    """What checking ``tx``'s signature is (its encoded ``body`` given): for ``verify_many``."""
    return (Domain.TRANSACTION, tx.sender, chain_id + body, tx.signature)


def ahead_checks(tx: Transaction, chain_id: Hash32, state: StateView) -> list[SignatureCheck]:
    """The signatures ``tx``'s payload carries that a node checks ahead, in the batch beside
    ``tx``'s own: those with a key the payload carries (``TxRules.carried``) and those with a
    key ``state``, the node's head, gives (``TxRules.keyed``). Their successes are then in the
    signature cache when the type's rules check them."""
    rules = RULES.get(type(tx.payload))
    if rules is None:
        return []
    return rules.carried(tx.payload, chain_id, address_digest(tx.sender)) + rules.keyed(tx.payload, state)


# --- transactions: stateful -------------------------------------------------------------


def apply_transaction(state: StateView, env: BlockEnv, vtx: VerifiedTx) -> None:
    """Common rules (nonce, fee) then the type's own rules, applied to ``state``."""
    tx = vtx.tx
    sender = vtx.sender
    acct = state.account(sender)
    if tx.nonce < acct.nonce:
        raise NonceTooLow(
            f"nonce {tx.nonce} of {address_to_text(sender)} was already used "
            f"(next is {acct.nonce}): replayed transaction"
        )
    if tx.nonce > acct.nonce:
        raise NonceGap(f"nonce {tx.nonce} of {address_to_text(sender)} skips ahead of {acct.nonce}")
    if acct.balance < tx.fee:
        raise InsufficientBalance(f"balance {acct.balance} cannot pay the fee {tx.fee}")
    state.put(
        ACCOUNTS,
        sender,
        replace(acct, balance=acct.balance - tx.fee, nonce=acct.nonce + 1),
    )
    env.sender_key = tx.sender
    env.txid = vtx.txid
    RULES[type(tx.payload)].apply(state, env, sender, tx.payload)
    state.check_written()
    env.fees += tx.fee  # only once the type's rules passed: a builder may roll the tx back


def start_block(state: StateView, env: BlockEnv) -> None:
    """What every block does before its transactions: release the unbonding coin due at its
    height, and (on-chain market) clear the auctions whose closing time it reached."""
    process_unbonding(state, env)
    clear_due_auctions(state, env)


def apply_coinbase(state: StateView, env: BlockEnv, tx: Transaction) -> int:
    """Pay reward plus fees to the miner; returns the reward."""
    cb = tx.payload
    assert isinstance(cb, Coinbase)
    reward = block_reward(env.params, env.height)
    if cb.height != env.height:
        raise WrongReward(f"coinbase names height {cb.height} in block {env.height}")
    if cb.reward != reward:
        raise WrongReward(f"coinbase claims reward {cb.reward}; the schedule gives {reward}")
    if cb.fees != env.fees:
        raise WrongReward(f"coinbase claims fees {cb.fees}; the block's fees are {env.fees}")
    state.credit(env.miner, reward + env.fees)
    return reward


def split_coinbase(block: Block) -> tuple[Transaction, tuple[Transaction, ...]]:
    txs = block.txs
    if not txs or type(txs[0].payload) is not Coinbase:
        raise MissingCoinbase(f"block {block.header.height} does not start with a coinbase")
    cb = txs[0]
    if cb.sender or cb.signature or cb.nonce or cb.fee:
        raise MissingCoinbase("a coinbase carries no sender, signature, nonce or fee")
    return cb, txs[1:]


# --- blocks -----------------------------------------------------------------------------


def tx_bodies(block: Block) -> list[bytes]:
    """The transactions' encoded bodies (what each signature and id covers)."""
    return [encode((t.payload, t.sender, t.nonce, t.fee)) for t in block.txs]


def check_tx_root(block: Block, bodies: list[bytes] | None = None) -> list[Hash32]:
    """The transactions' ids, once they are shown (with the block's votes, which follow them
    in the root) to be those the header commits to (``bodies``: ``tx_bodies``, when the
    caller has them). A mismatch (``BadMerkleRoot``) says the *body* is not the header's: the
    header itself is not at fault and may still arrive with its real transactions."""
    if bodies is None:
        bodies = tx_bodies(block)
    ids = [txid(b, t.signature) for b, t in zip(bodies, block.txs, strict=True)]
    if merkle_root(ids + [vote_id(encode(v)) for v in block.votes]) != block.header.tx_root:
        raise BadMerkleRoot(f"block {block.header.height}: transaction root does not match its transactions")
    return ids


def apply_block(
    state: StateView,
    commitment: StateCommitment,
    block: Block,
    ctx: HeaderContext,
    *,
    encoded_size: int,
    meanwhile: Callable[[BlockResult], None] | None = None,
) -> BlockResult:
    """Validate ``block`` on top of ``state`` and apply it.

    On success ``state`` holds the block's changes and ``commitment`` its new
    root; on failure an :class:`InvalidBlock` names the rule and ``commitment``
    is unchanged.

    ``meanwhile`` is given the result once everything but the last signatures is checked,
    and runs while they are being checked (a chain writes the block to its store then, in a
    transaction it rolls back if this raises): the signatures are checked on the other cores
    while this one goes on.
    """
    header = block.header
    params = ctx.params
    validate_header(header, ctx)
    if encoded_size > params.max_block_bytes:
        raise BlockTooLarge(f"block {header.height} is {encoded_size} bytes; limit {params.max_block_bytes}")

    bodies = tx_bodies(block)
    # The signatures are checked on all cores while the rest goes on, as if each held: the
    # block is taken only once they all do, and a bad one is what the block is refused for
    # whenever it would have been found first (stateless checks in order, then the rest).
    signatures = verify_stream(
        [signature_check(tx, ctx.chain_id, bodies[i]) for i, tx in enumerate(block.txs[1:], 1)]
    )
    try:
        return _apply_body(state, commitment, block, ctx, bodies, signatures, meanwhile)
    except BaseException:
        signatures.cancel()  # (those not read yet are not wanted any more)
        raise


def _apply_body(
    state: StateView,
    commitment: StateCommitment,
    block: Block,
    ctx: HeaderContext,
    bodies: list[bytes],
    signatures: Verdicts,
    meanwhile: Callable[[BlockResult], None] | None,
) -> BlockResult:
    header = block.header
    params = ctx.params
    txids = check_tx_root(block, bodies)
    # From here on the transactions are the header's own: any failure condemns the header.
    coinbase, body = split_coinbase(block)

    def signatures_hold(upto: int) -> None:
        for i in range(1, upto + 1):
            if not signatures[i - 1]:
                try:
                    validate_transaction(body[i - 1], params, ctx.chain_id, bodies[i], signature_ok=False)
                except InvalidTransaction as exc:
                    raise BlockTransactionInvalid(i, exc) from None

    vtxs = []
    for i, tx in enumerate(body, start=1):
        try:
            vtxs.append(
                validate_transaction(tx, params, ctx.chain_id, bodies[i], signature_ok=True, tid=txids[i])
            )
        except InvalidTransaction as exc:
            signatures_hold(i - 1)
            raise BlockTransactionInvalid(i, exc) from None
    try:
        if len(set(txids)) != len(txids):
            raise DuplicateTransaction(f"block {header.height} contains a transaction twice")

        if block.votes and not params.permissioned:
            raise BadSeal(f"block {header.height}: a proof-of-work block carries no votes")
        if len(block.votes) > MAX_VOTES_PER_BLOCK:
            raise BlockTooLarge(
                f"block {header.height} carries {len(block.votes)} votes; limit {MAX_VOTES_PER_BLOCK}"
            )

        env = BlockEnv(params, ctx.chain_id, header.height, header.miner, header.timestamp)
        if params.permissioned:
            begin_sealed_block(
                state,
                params,
                header.height,
                header.prev_hash,
                ctx.parent_timestamp,
                header.timestamp,
                header.proposer,
            )
            slot = slot_of(params, header.timestamp)
            for i, vote in enumerate(block.votes, start=1):
                try:
                    apply_vote(state, ctx.chain_id, header.height, slot, vote)
                except InvalidVote as exc:
                    raise BlockVoteInvalid(i, exc) from None
            apply_set_change(state, slot)
        start_block(state, env)
        for i, vtx in enumerate(vtxs, start=1):
            try:
                apply_transaction(state, env, vtx)
            except InvalidTransaction as exc:
                raise BlockTransactionInvalid(i, exc) from None
        reward = apply_coinbase(state, env, coinbase)
        if params.permissioned:
            check_justified(state, header)
        changes = state.changes()
        undo = commitment.update(changes)
        if commitment.root != header.state_root:
            commitment.revert(undo)
            raise BadStateRoot(f"block {header.height}: state root does not match the state after it")
    except GridnetError:
        signatures_hold(len(body))
        raise
    result = BlockResult(changes=changes, commit_undo=undo, txids=txids, fees=env.fees, reward=reward)
    try:
        if meanwhile is not None:
            meanwhile(result)
        signatures_hold(len(body))
    except BaseException:
        commitment.revert(undo)
        raise
    return result
