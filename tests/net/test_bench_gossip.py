"""The gossip benchmark's measurement (``bench/network.py``) and what a node process reports of
its own cost when asked (``GRIDNET_NODE_PROFILE``, ``node/process.py``)."""

from __future__ import annotations

import json
import os
import pstats
from pathlib import Path

import pytest

from gridnet.bench import network
from gridnet.crypto.keys import Domain, PrivateKey, verify_signature
from gridnet.node import process
from gridnet.node.devnet import DevNode
from gridnet.node.process import OPS_NAME, PROFILE_ENV, PROFILE_NAME
from tests.helpers import new_chain, test_params


def test_gossip_times_the_last_admission_and_counts_each_nodes_checks(tmp_path: Path) -> None:
    figures = network.gossip(tmp_path, 400, lambda _m: None)
    assert figures["transactions"] == 400
    # Timed by the nodes' own stamps, not by when a poll happened to see the last one.
    assert 0 < figures["seconds"] <= figures["seconds_polled"] + 0.2
    # The rate is from the unrounded time; the time is given to the millisecond (a flood this
    # small can take under 0.1 s, where two decimals had been 8% off).
    seconds = figures["seconds"]
    assert 400 / (seconds + 0.0005) - 0.1 <= figures["tx_per_s"] <= 400 / (seconds - 0.0005) + 0.1
    assert len(figures["node_cpu_us_per_tx"]) == 4
    # Each node checks each signature once with libsodium (a few more: its links' handshakes)
    # and uses the gossip window's verdict as it is: no second look, even in its cache.
    for checked, cached in zip(
        figures["node_verifies_per_tx"], figures["node_cached_verifies_per_tx"], strict=True
    ):
        assert checked == pytest.approx(1.0, abs=0.02)
        assert cached == pytest.approx(0.0, abs=0.02)
    assert PROFILE_ENV not in os.environ  # (set for the nodes only)


def test_gossip_is_set_against_the_single_node_and_the_signatures_alone() -> None:
    # 4 nodes at 3,000 tx/s take in 12,000 tx/s together: 0.96 of a single node's 12,500 on
    # the same cores; checking signatures only (26,000/s on all cores) they could reach
    # 6,500 tx/s, 0.52 of the single node.
    figures = network.against_single_node(3_000.0, 4, 12_500.0, 26_000.0)
    assert figures == {
        "single_node_tx_per_s": 12_500.0,
        "ratio": 0.24,
        "node_tx_per_s": 12_000.0,
        "machine_ratio": 0.96,
        "ed25519_verify_per_s_all_cores": 26_000.0,
        "ratio_ceiling": 0.52,
    }


def test_last_admission_needs_every_transaction(tmp_path: Path) -> None:
    node = DevNode("x", tmp_path / "x", 0, 0)
    chain = new_chain(node.data_dir, test_params([]))
    chain.store.write_pending([(bytes([i]) * 32, b"tx", 1_000 + i) for i in range(3)], [])
    chain.close()
    assert network._last_admission_ms(node, 3) == 1_002
    assert network._last_admission_ms(node, 4) is None  # (then the polled time is used)
    assert network._last_admission_ms(DevNode("y", tmp_path / "y", 0, 0), 3) is None


def test_node_environment_is_restored() -> None:
    assert "GRIDNET_TEST_ONLY" not in os.environ
    with network._node_environment("GRIDNET_TEST_ONLY", "ops"):
        assert os.environ["GRIDNET_TEST_ONLY"] == "ops"
    assert "GRIDNET_TEST_ONLY" not in os.environ
    os.environ["GRIDNET_TEST_ONLY"] = "cpu"
    try:
        with network._node_environment("GRIDNET_TEST_ONLY", "ops"):
            assert os.environ["GRIDNET_TEST_ONLY"] == "cpu"  # (one set by the caller stays)
        assert os.environ["GRIDNET_TEST_ONLY"] == "cpu"
    finally:
        del os.environ["GRIDNET_TEST_ONLY"]


def test_a_measured_process_writes_its_profile_and_checks(tmp_path: Path) -> None:
    key = PrivateKey.from_label("measured")

    def body() -> None:
        signature = key.sign(Domain.TRANSACTION, b"m")
        assert verify_signature(Domain.TRANSACTION, key.public_key, b"m", signature)

    process._measured(tmp_path, "cpu", body)
    figures = json.loads((tmp_path / OPS_NAME).read_text())
    assert figures["verifies"] >= 1 and figures["signs"] >= 1
    assert len(figures["gc_passes"]) == 3 and figures["user_s"] > 0
    profiled = pstats.Stats(str(tmp_path / PROFILE_NAME)).stats  # type: ignore[attr-defined]
    assert any(name == "body" for (_file, _line, name) in profiled)
