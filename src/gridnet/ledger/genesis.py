"""The genesis block and state of a chain, derived from its parameters alone."""

from __future__ import annotations

from gridnet.crypto.hashing import header_hash
from gridnet.encoding import encode
from gridnet.ledger.blocks import BLOCK_VERSION, Block, Header
from gridnet.ledger.commitment import StateCommitment
from gridnet.ledger.merkle import merkle_root
from gridnet.ledger.params import ChainParams, params_digest
from gridnet.ledger.poa import genesis_poa_state
from gridnet.ledger.state import ACCOUNTS, Account
from gridnet.units import Hash32


def genesis_state(params: ChainParams) -> dict[bytes, bytes]:
    """Encoded state after genesis: the allocations (and on a permissioned chain its
    validator set and finality record)."""
    balances: dict[bytes, int] = {}
    for a in params.allocations:
        balances[a.address] = balances.get(a.address, 0) + a.amount
    state = {ACCOUNTS.key(addr): encode(Account(balance=amount)) for addr, amount in balances.items()}
    if params.permissioned:
        state.update(genesis_poa_state(params))
    return state


def genesis_block(params: ChainParams) -> Block:
    """Height 0: its previous hash is the digest of the parameters, so the genesis
    hash (the chain id) commits to every rule and allocation of the chain."""
    root = StateCommitment.from_items(genesis_state(params).items()).root
    header = Header(
        version=BLOCK_VERSION,
        height=0,
        prev_hash=params_digest(params),
        tx_root=merkle_root([]),
        state_root=root,
        timestamp=params.genesis_time,
        target=params.initial_target,
        nonce=0,
        miner=bytes(20),
    )
    return Block(header=header, txs=())


def chain_id_of(params: ChainParams) -> Hash32:
    """The id of the chain ``params`` make: its genesis block's hash."""
    return header_hash(encode(genesis_block(params).header))
