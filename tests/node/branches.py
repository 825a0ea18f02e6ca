"""Header branches forged for sync tests: valid proof-of-work, retarget and timestamps, junk
roots (no body is ever checked against them), as cheap as the chain's rules allow."""

from __future__ import annotations

from collections.abc import Sequence

from gridnet.crypto.hashing import header_hash
from gridnet.encoding import encode
from gridnet.ledger.blocks import BLOCK_VERSION, Header
from gridnet.ledger.genesis import genesis_block
from gridnet.ledger.params import ChainParams
from gridnet.ledger.pow import mine, next_target

JUNK_MINER = bytes(20)


def forge_headers(
    params: ChainParams, base: Sequence[Header], count: int, spacing_ms: int, tag: bytes = b""
) -> list[Header]:
    """``count`` headers extending ``base`` (a branch from genesis, one header per height),
    each ``spacing_ms`` after the one before; ``tag`` makes the branch one's own."""
    headers = list(base)
    out = []
    root = header_hash(b"junk roots " + tag)
    for _ in range(count):
        parent = headers[-1]
        target = next_target(params, parent, lambda h: headers[h].timestamp)
        draft = Header(
            BLOCK_VERSION,
            parent.height + 1,
            header_hash(encode(parent)),
            root,
            root,
            parent.timestamp + spacing_ms,
            target,
            0,
            JUNK_MINER,
        )
        solved = mine(draft, 1 << 40)
        assert solved is not None
        headers.append(solved)
        out.append(solved)
    return out


def cheap_branch(
    params: ChainParams, count: int, tag: bytes = b"", base: Sequence[Header] = ()
) -> list[Header]:
    """``count`` headers from genesis (after ``base``, headers of blocks from genesis that
    are among them) that fall to the proof-of-work limit as fast as the retarget allows (each
    window as slow as the clamp lets count), then stay there: the cheapest branch of that
    length. Its timestamps span about ``count`` block intervals (times the retarget factor
    for the first windows)."""
    genesis = genesis_block(params).header
    slow = params.block_interval_ms * params.max_retarget_factor
    headers = [genesis, *base]
    while len(headers) <= count and params.pow_limit != headers[-1].target:
        step = min(params.retarget_window, count + 1 - len(headers))
        headers += forge_headers(params, headers, step, slow, tag)
    headers += forge_headers(params, headers, count + 1 - len(headers), params.block_interval_ms, tag)
    return headers[1:]
