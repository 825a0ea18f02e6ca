"""The ledger benchmark's figures, on a tiny chain (the real run is ``make bench``)."""

from __future__ import annotations

import pytest

from gridnet.bench import ledger


def test_raw_verify_on_several_threads_counts_every_thread() -> None:
    counts, elapsed = ledger.raw_verify_counts(2, seconds=0.2)
    # Each thread's verifications are counted (at least its first round of 64, however late a
    # busy machine ran it), and the rate is their sum over the time until the last stopped.
    assert len(counts) == 2 and min(counts) >= 64 and elapsed >= 0.2
    assert ledger.measure_raw_verify_threads(1, seconds=0.05) > 0


def test_run_reports_ratios_to_one_core_and_to_all_cores() -> None:
    figures = ledger.run(blocks=2, per_block=50, n_keys=60)
    assert figures["transactions"] == 100
    # The ratios are given to 3 decimals: up to 0.0005 off, more than 1% of a ratio under 0.05
    # (100 transactions on a busy machine can go at a twentieth of the signatures' rate).
    assert figures["ratio"] == pytest.approx(
        figures["tx_per_s"] / figures["ed25519_verify_per_s"], rel=0.01, abs=0.0005
    )
    assert figures["ratio_to_all_cores"] == pytest.approx(
        figures["tx_per_s"] / figures["ed25519_verify_per_s_all_cores"], rel=0.01, abs=0.0005
    )
    assert figures["cores_speedup"] == pytest.approx(
        figures["ed25519_verify_per_s_all_cores"] / figures["ed25519_verify_per_s"], rel=0.01
    )
    assert figures["verify_transactions"] == 100
