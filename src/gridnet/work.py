"""Proof-of-work arithmetic shared by block mining and identity proofs (pure)."""

from __future__ import annotations

from typing import Final

MAX_TARGET: Final = 1 << 256


def target_from_bits(bits: int) -> int:
    """Target with ``bits`` leading zero bits required (expected work 2**bits)."""
    if not 0 <= bits <= 255:
        raise ValueError("difficulty bits must be between 0 and 255")
    return 1 << (256 - bits)


def work_of_target(target: int) -> int:
    """Expected number of digests needed to find one below ``target``."""
    return MAX_TARGET // target


def target_to_bytes(target: int) -> bytes:
    return target.to_bytes(33, "big")[1:] if target < MAX_TARGET else b"\xff" * 32


def target_from_bytes(raw: bytes) -> int:
    return int.from_bytes(raw, "big")
