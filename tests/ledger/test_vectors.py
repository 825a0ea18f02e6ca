"""Replay every committed consensus vector (tests/vectors/*.json) with ``apply_block``
alone: no Chain, no store; only what the file holds. A replay that disagrees with
the recorded outcome is a consensus change."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from gridnet.ledger.chain import Chain
from tests.helpers import next_block, test_keys, test_params
from tests.ledger.vectors import FORMAT, VECTOR_DIR, load_vectors, replay_vector, snapshot, write_vector

VECTORS = load_vectors()


def test_vectors_exist() -> None:
    assert len(VECTORS) >= 30, "the transition tests write one vector per rule"
    assert {v["expect"]["valid"] for v in VECTORS} == {True, False}


@pytest.mark.parametrize("doc", VECTORS, ids=[v["name"] for v in VECTORS])
def test_vector_replays_to_its_recorded_outcome(doc: dict[str, Any]) -> None:
    assert doc["format"] == FORMAT
    outcome = replay_vector(doc)
    expect = doc["expect"]
    if expect["valid"]:
        assert outcome.error is None, f"valid block rejected: {outcome.error}"
        assert outcome.state_root is not None and outcome.state_root.hex() == expect["state_root"]
        assert outcome.changes is not None
        got = {k.hex(): (None if v is None else v.hex()) for k, v in outcome.changes.items()}
        assert got == expect["changes"]
    else:
        assert outcome.error == expect["error"]
        assert outcome.tx_index == expect.get("tx_index")


def test_writer_is_deterministic_and_idempotent(tmp_path: Path) -> None:
    keys = test_keys(2)
    chain = Chain.create(tmp_path / "c", test_params(keys))
    pre = snapshot(chain)
    block = next_block(chain)
    kwargs: dict[str, Any] = {
        "description": "x",
        "params": pre.params,
        "ancestors": pre.ancestors,
        "pre_state": pre.state,
        "block": block,
        "now": block.header.timestamp,
        "error": "BadStateRoot",
        "directory": tmp_path / "v",
    }
    path = write_vector("case", **kwargs)
    first = path.read_text()
    mtime = path.stat().st_mtime_ns
    assert write_vector("case", **kwargs) == path
    assert path.read_text() == first and path.stat().st_mtime_ns == mtime
    doc = json.loads(first)
    # The recorded error is what the file says, not what the block does: replay disagrees.
    assert replay_vector(doc).error is None
    with pytest.raises(ValueError):
        write_vector("both", **{**kwargs, "post_state": pre.state})
    chain.close()
    assert (VECTOR_DIR / "README.md").exists()
