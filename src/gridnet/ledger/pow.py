"""Block proof-of-work: retargeting, median time, and the mining loop."""

from __future__ import annotations

from collections.abc import Callable

import msgspec

from gridnet.crypto.hashing import digest_int, header_hash
from gridnet.crypto.ops import OPS
from gridnet.encoding import encode
from gridnet.ledger.blocks import Header
from gridnet.ledger.params import ChainParams
from gridnet.work import target_from_bytes, target_to_bytes


def is_retarget_height(params: ChainParams, height: int) -> bool:
    return height > 0 and height % params.retarget_window == 0


def retarget(params: ChainParams, parent_target: int, window_start_ms: int, parent_ms: int) -> int:
    """Target for a retarget height: scale the parent's target by how long the last
    window took against how long it should have taken, clamped to the maximum factor
    and never easier than the proof-of-work limit."""
    expected = params.retarget_window * params.block_interval_ms
    actual = parent_ms - window_start_ms
    factor = params.max_retarget_factor
    actual = max(expected // factor, min(actual, expected * factor))
    actual = max(actual, 1)
    return min(parent_target * actual // expected, params.pow_limit_int)


def next_target(params: ChainParams, parent: Header, timestamp_at: Callable[[int], int]) -> bytes:
    """Target the block after ``parent`` must carry; ``timestamp_at(height)`` gives the
    timestamp of the ancestor at ``height`` on the same branch. A permissioned chain keeps the
    genesis target (its blocks are sealed, not mined)."""
    height = parent.height + 1
    if params.permissioned:
        return params.initial_target  # (sealed, not mined: a fixed value)
    if not is_retarget_height(params, height):
        return parent.target
    start = timestamp_at(max(0, height - params.retarget_window - 1))
    return target_to_bytes(retarget(params, target_from_bytes(parent.target), start, parent.timestamp))


def median_time(timestamps: list[int]) -> int:
    ordered = sorted(timestamps)
    return ordered[len(ordered) // 2]


def meets_target(header: Header) -> bool:
    OPS.pow_hashes += 1
    return digest_int(header_hash(encode(header))) < target_from_bytes(header.target)


def mine(header: Header, max_attempts: int, start_nonce: int = 0) -> Header | None:
    """Try nonces from ``start_nonce``; the solved header, or None after ``max_attempts``."""
    target = target_from_bytes(header.target)
    nonce = start_nonce
    for attempt in range(1, max_attempts + 1):
        candidate = msgspec.structs.replace(header, nonce=nonce)
        if digest_int(header_hash(encode(candidate))) < target:
            OPS.pow_hashes += attempt
            return candidate
        nonce = (nonce + 1) % 2**63
    OPS.pow_hashes += max_attempts
    return None
