"""The ledger benchmark's figures, on a tiny chain (the real run is ``make bench``)."""

from __future__ import annotations

import pytest

from gridnet.bench import ledger


def test_raw_verify_on_several_threads_counts_every_thread() -> None:
    one = ledger.measure_raw_verify_threads(1, seconds=0.2)
    two = ledger.measure_raw_verify_threads(2, seconds=0.2)
    assert one > 0
    # Two threads at once verify more than one alone would in the same time, on any machine
    # where the second gets any CPU at all (the counts of both threads are summed).
    assert two > 0.5 * one


def test_run_reports_ratios_to_one_core_and_to_all_cores() -> None:
    figures = ledger.run(blocks=2, per_block=50, n_keys=60)
    assert figures["transactions"] == 100
    assert figures["ratio"] == pytest.approx(figures["tx_per_s"] / figures["ed25519_verify_per_s"], rel=0.01)
    assert figures["ratio_to_all_cores"] == pytest.approx(
        figures["tx_per_s"] / figures["ed25519_verify_per_s_all_cores"], rel=0.01
    )
    assert figures["cores_speedup"] == pytest.approx(
        figures["ed25519_verify_per_s_all_cores"] / figures["ed25519_verify_per_s"], rel=0.01
    )
    assert figures["verify_transactions"] == 100
