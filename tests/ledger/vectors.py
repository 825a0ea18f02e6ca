"""Consensus vectors: one block applied to one pre-state, with the post-state or the rule.

``write_vector`` dumps a case as ``tests/vectors/<name>.json`` (format in
``tests/vectors/README.md``) so that another implementation can replay it;
``replay_vector`` is this implementation's replayer, used by ``test_vectors.py``.
The transition tests call ``record_valid`` / ``record_rejection`` for every rule
they check. Writing is deterministic (fixed keys, timestamps and nonces) and
idempotent: a file is rewritten only when its content changes.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gridnet.crypto.hashing import header_hash
from gridnet.encoding import decode, encode
from gridnet.errors import BlockTransactionInvalid, InvalidBlock
from gridnet.files import replace_file
from gridnet.ledger.blocks import Block, Header
from gridnet.ledger.chain import Chain
from gridnet.ledger.commitment import StateCommitment
from gridnet.ledger.genesis import genesis_block
from gridnet.ledger.params import ChainParams
from gridnet.ledger.pow import median_time, next_target
from gridnet.ledger.state import StateView
from gridnet.ledger.transition import HeaderContext, apply_block

FORMAT = "gridnet-block-vector/1"
VECTOR_DIR = Path(__file__).resolve().parents[1] / "vectors"


@dataclass(frozen=True)
class PreState:
    """What a replayer needs before the block: parameters, ancestors, state."""

    params: ChainParams
    ancestors: tuple[Header, ...]
    """Main-chain headers from genesis (index = height) to the block's parent."""
    state: dict[bytes, bytes]
    """Encoded state map after the parent."""


def snapshot(chain: Chain) -> PreState:
    """The pre-state of the next block on ``chain``'s head."""
    headers = []
    for height in range(chain.height + 1):
        block = chain.block_at(height)
        assert block is not None
        headers.append(block.header)
    return PreState(chain.params, tuple(headers), dict(chain.values))


def _hexmap(m: Mapping[bytes, bytes | None]) -> dict[str, str | None]:
    return {k.hex(): (None if v is None else v.hex()) for k, v in sorted(m.items())}


def write_vector(
    name: str,
    *,
    description: str,
    params: ChainParams,
    ancestors: Sequence[Header],
    pre_state: Mapping[bytes, bytes],
    block: Block,
    now: int,
    post_state: Mapping[bytes, bytes] | None = None,
    error: str | None = None,
    tx_index: int | None = None,
    directory: Path = VECTOR_DIR,
) -> Path:
    """Write ``<directory>/<name>.json``: the block is valid and gives ``post_state``
    (the whole encoded state after it; the file keeps only the changed keys), or it is
    rejected with the rule ``error`` (in transaction ``tx_index`` if a transaction's)."""
    if (post_state is None) == (error is None):
        raise ValueError("a vector has either a post-state or an error")
    genesis = genesis_block(params)
    if ancestors[0] != genesis.header:
        raise ValueError("ancestors must start with the genesis header of params")
    pre_root = StateCommitment.from_items(pre_state.items()).root
    expect: dict[str, Any]
    if post_state is not None:
        changes: dict[bytes, bytes | None] = {k: v for k, v in post_state.items() if pre_state.get(k) != v}
        changes.update({k: None for k in pre_state if k not in post_state})
        expect = {
            "valid": True,
            "state_root": StateCommitment.from_items(post_state.items()).root.hex(),
            "changes": _hexmap(changes),
        }
    else:
        expect = {"valid": False, "error": error}
        if tx_index is not None:
            expect["tx_index"] = tx_index
    doc = {
        "format": FORMAT,
        "name": name,
        "description": description,
        "params": encode(params).hex(),
        "chain_id": header_hash(encode(genesis.header)).hex(),
        "ancestors": [encode(h).hex() for h in ancestors],
        "pre_state": _hexmap(pre_state),
        "pre_state_root": pre_root.hex(),
        "block": encode(block).hex(),
        "block_hash": header_hash(encode(block.header)).hex(),
        "now": now,
        "expect": expect,
    }
    text = json.dumps(doc, indent=1, sort_keys=True) + "\n"
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{name}.json"
    if path.exists() and path.read_text() == text:
        return path
    replace_file(path, text.encode())
    return path


def record_valid(name: str, description: str, pre: PreState, block: Block, now: int, chain: Chain) -> Path:
    """Vector for a block ``chain`` has just connected on top of ``pre``."""
    assert chain.head.hash == header_hash(encode(block.header)), "the block is not the head"
    return write_vector(
        name,
        description=description,
        params=pre.params,
        ancestors=pre.ancestors,
        pre_state=pre.state,
        block=block,
        now=now,
        post_state=chain.values,
    )


def record_rejection(
    name: str, description: str, pre: PreState, block: Block, now: int, exc: InvalidBlock
) -> Path:
    """Vector for a block rejected with ``exc`` on top of ``pre``."""
    return write_vector(
        name,
        description=description,
        params=pre.params,
        ancestors=pre.ancestors,
        pre_state=pre.state,
        block=block,
        now=now,
        error=exc.rule,
        tx_index=exc.index if isinstance(exc, BlockTransactionInvalid) else None,
    )


# --- replay --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Outcome:
    error: str | None
    tx_index: int | None = None
    state_root: bytes | None = None
    changes: dict[bytes, bytes | None] | None = None


def replay_vector(doc: Mapping[str, Any]) -> Outcome:
    """Apply the vector's block to its pre-state with this implementation's rules."""
    if doc["format"] != FORMAT:
        raise ValueError(f"unknown vector format {doc['format']!r}")
    params = decode(bytes.fromhex(doc["params"]), ChainParams)
    headers = [decode(bytes.fromhex(h), Header) for h in doc["ancestors"]]
    pre = {bytes.fromhex(k): bytes.fromhex(v) for k, v in doc["pre_state"].items()}
    raw = bytes.fromhex(doc["block"])
    block = decode(raw, Block)
    genesis = genesis_block(params)
    assert headers[0] == genesis.header, "ancestors do not start at this chain's genesis"
    commitment = StateCommitment.from_items(pre.items())
    parent = headers[-1]
    assert commitment.root == parent.state_root, "pre-state does not match the parent's state root"
    ctx = HeaderContext(
        params=params,
        chain_id=header_hash(encode(genesis.header)),
        parent_hash=header_hash(encode(parent)),
        parent_height=parent.height,
        expected_target=next_target(params, parent, lambda i: headers[i].timestamp),
        median_time_past=median_time([h.timestamp for h in headers[-params.median_time_span :]]),
        now=doc["now"],
        parent_timestamp=parent.timestamp,
        parent_justified=parent.justified,
    )
    try:
        result = apply_block(StateView(pre), commitment, block, ctx, encoded_size=len(raw))
    except BlockTransactionInvalid as exc:
        return Outcome(exc.rule, exc.index)
    except InvalidBlock as exc:
        return Outcome(exc.rule)
    return Outcome(None, state_root=commitment.root, changes=result.changes)


def load_vectors(directory: Path = VECTOR_DIR) -> list[dict[str, Any]]:
    return [json.loads(p.read_text()) for p in sorted(directory.glob("*.json"))]
