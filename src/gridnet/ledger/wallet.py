"""Local operations on a data directory: submit to its pending pool, mine its blocks.

What ``gridnet tx ...`` and ``gridnet chain mine`` do: pending transactions are
kept in the store's ``pending`` table (the mempool's durable copy) until a block
includes them.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

from gridnet.crypto.address import address_to_text
from gridnet.crypto.keys import PrivateKey
from gridnet.encoding import decode, encode
from gridnet.errors import ConfigError, DecodeError
from gridnet.ledger.blocks import Block
from gridnet.ledger.chain import Chain, now_ms
from gridnet.ledger.mempool import EventKind, Mempool, PoolEvent
from gridnet.ledger.miner import produce_block, propose_block
from gridnet.ledger.poa import proposer_of, slot_of, slot_start, validator_set
from gridnet.ledger.registry import Payload
from gridnet.ledger.transactions import Transaction, min_fee, sign_transaction, tx_id
from gridnet.ledger.trial import TrialState
from gridnet.units import Hash32


@dataclass(slots=True)
class MinedBlock:
    block: Block
    events: list[PoolEvent]


def load_mempool(chain: Chain) -> tuple[Mempool, list[PoolEvent]]:
    """The data directory's pending transactions, re-validated against the head."""
    # The local head is all there is: a transaction the head refuses is dropped at once.
    pool = Mempool(chain.params, chain.chain_id, defer_blocks=0)
    return pool, restore_pending(chain, pool)


def restore_pending(
    chain: Chain, pool: Mempool, on_damaged: Callable[[str], None] | None = None
) -> list[PoolEvent]:
    """Fill ``pool`` from the store's pending table; drop (and report) what no longer
    applies to the head. With ``on_damaged`` (a node starting), a damaged row — a value of
    another storage class, bytes that are no transaction, a transaction stored under another
    id — is dropped too, and told to ``on_damaged`` in one line naming it: pending
    transactions are not consensus data (without it, a value of another storage class is
    StoreCorrupt, as in any table)."""
    events: list[PoolEvent] = []
    dropped = []
    damaged: list[int] = []

    def drop_damaged(row: int, what: str) -> None:
        damaged.append(row)
        assert on_damaged is not None
        on_damaged(
            f"dropped the damaged pending row {row} ({what}): pending transactions are not "
            "consensus data, the node starts without it"
        )

    if on_damaged is None:
        rows = [(0, tid, raw) for tid, raw in chain.store.pending()]
    else:
        rows, unreadable = chain.store.pending_rows()
        for row, what in unreadable:
            drop_damaged(row, what)
    txs: list[tuple[Hash32, Transaction]] = []
    for row, tid, raw in rows:
        try:
            tx = decode(raw, Transaction)
        except DecodeError as exc:
            events.append(PoolEvent(EventKind.DROPPED, tid, None, exc.rule, str(exc)))
            if on_damaged is None:
                dropped.append(tid)
            else:
                drop_damaged(row, f"txid {tid.hex()[:16]}: {exc.rule}: {exc}")
            continue
        if on_damaged is not None and tx_id(tx) != tid:
            drop_damaged(
                row, f"txid {tid.hex()[:16]}: not the id of the transaction it holds, {tx_id(tx).hex()[:16]}"
            )
            continue
        txs.append((tid, tx))
    if damaged:
        chain.store.drop_pending_rows(damaged)
    txs.sort(key=lambda item: (item[1].sender, item[1].nonce))  # each sender's in nonce order
    for tid, tx in txs:
        outcome = pool.add(tx, chain.account)[0]
        if outcome.kind is not EventKind.ACCEPTED:
            events.append(PoolEvent(EventKind.DROPPED, tid, outcome.sender, outcome.rule, outcome.message))
            dropped.append(tid)
    if dropped:
        chain.store.remove_pending(dropped)
    return events


def submit(
    chain: Chain, key: PrivateKey, payload: Payload, fee: int | None = None, nonce: int | None = None
) -> PoolEvent:
    """Sign ``payload`` with ``nonce`` (default: the next free one; a pending transaction's
    replaces it if ``fee`` is higher) and add it to the pending pool.

    Raises the named :class:`InvalidTransaction` / mempool error if it is refused: the
    pool's checks, and the transaction tried on the head after the pending ones.
    """
    pool, _ = load_mempool(chain)
    if nonce is None:
        nonce = chain.account(key.address).nonce + len(pool.by_sender.get(key.address, {}))
    fee = min_fee(chain.params.min_fee_per_byte, payload, nonce) if fee is None else fee
    tx = sign_transaction(key, chain.chain_id, payload, nonce, fee)
    outcome, *evicted = pool.admit(tx, chain.account, check=partial(TrialState(chain).check, pool))
    gone = [e.txid for e in evicted]  # (the transaction it replaced, or ones a full pool let go)
    chain.store.write_pending([(outcome.txid, encode(tx), now_ms())], gone)
    return outcome


LAST_SEALED_SLOT = "last_sealed_slot"
"""Store meta key of the last slot this data directory's validator sealed (8 bytes, big-endian):
a node and ``gridnet chain mine`` both keep it, so neither seals a second block for a slot (a
double seal is a fault that removes the validator), across restarts and reorgs."""


def last_sealed_slot(chain: Chain) -> int:
    """The last slot sealed from this data directory (-1: none)."""
    sealed = chain.store.get_meta(LAST_SEALED_SLOT)
    return -1 if sealed is None else int.from_bytes(sealed, "big")


def record_sealed_slot(chain: Chain, slot: int) -> None:
    """Record ``slot`` as sealed, in the store, before its block is sealed (one SQLite
    transaction)."""
    store = chain.store
    store.begin()
    try:
        store.set_meta(LAST_SEALED_SLOT, slot.to_bytes(8, "big"))
        store.commit()
    except BaseException:
        store.rollback()
        raise


def next_own_slot(chain: Chain, key: PrivateKey) -> int:
    """The first slot after the head's and the last sealed here (and not before now's) that is
    ``key``'s."""
    members = validator_set(chain.view()).members
    if not any(m.key == key.public_key for m in members):
        raise ConfigError(
            f"{address_to_text(key.address)} is not a validator of this permissioned chain: only its "
            "validators seal blocks"
        )
    slot = max(
        slot_of(chain.params, now_ms()),
        slot_of(chain.params, chain.head.header.timestamp) + 1,
        last_sealed_slot(chain) + 1,
    )
    while proposer_of(members, slot).key != key.public_key:
        slot += 1
    return slot


def mine_blocks(
    chain: Chain,
    miner: PrivateKey,
    count: int,
    *,
    on_block: Callable[[MinedBlock], None] | None = None,
) -> list[MinedBlock]:
    """Mine ``count`` blocks on the head with the pending transactions, by wall clock; on a
    permissioned chain, seal them in ``miner``'s next slots, waiting for each to start (it must
    be a validator)."""
    pool, _ = load_mempool(chain)
    mined = []
    for _ in range(count):
        if chain.params.permissioned:
            slot = next_own_slot(chain, miner)
            time.sleep(max(0, slot_start(chain.params, slot) - now_ms()) / 1000)  # (its slot, by wall clock)
            record_sealed_slot(chain, slot)
            block, template = propose_block(chain, miner, slot, pool.candidates())
        else:
            block, template = produce_block(chain, miner.address, pool.candidates())
        events: list[PoolEvent] = []
        for vtx, error in template.rejected:
            events.extend(pool.remove_rejected(vtx, error, block.header.height))
        chain.add_block(block)
        events.extend(pool.update_after_block([v.txid for v in template.included], chain.account))
        gone = [e.txid for e in events]
        if gone:
            chain.store.remove_pending(gone)
        result = MinedBlock(block, events)
        mined.append(result)
        if on_block is not None:
            on_block(result)
    return mined
