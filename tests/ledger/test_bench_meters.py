"""The meters benchmark at a small size: every signed reading reaches the chain, and its
figures agree with each other and with the encoding's bounds (no time limits: rates are only
positive)."""

from __future__ import annotations

import json
import math
from typing import Any

import pytest
from typer.testing import CliRunner

from gridnet.bench import meters
from gridnet.cli.bench import app as bench_app
from gridnet.encoding import encode
from gridnet.ledger.transactions import Transaction
from gridnet.ledger.trial import BLOCK_OVERHEAD
from gridnet.ledger.txs.meter import MAX_READINGS_PER_TX, READINGS, ReadingRecord, SubmitReadings, reading_key
from gridnet.meter.reading import Reading, SignedReading

METERS = MAX_READINGS_PER_TX + 6  # two areas: two collectors, a full batch and a small one
INTERVALS = 3
BIG = 2**63 - 1
"""The largest integer a wire field holds (its longest encoding)."""


@pytest.fixture(scope="module")
def figures() -> dict[str, Any]:
    return meters.run(meters=METERS, intervals=INTERVALS, verify_seconds=0.05)


def signed_reading_bytes(n: int) -> int:
    """Encoded size of a signed reading whose integers are all ``n``."""
    return len(encode(SignedReading(Reading(bytes(20), n, n, n, n, n, meters.FIRMWARE), bytes(64))))


def test_every_reading_is_on_chain_in_collector_batches(figures: dict[str, Any]) -> None:
    f = figures
    assert f["meters"] == METERS and f["intervals"] == INTERVALS
    assert f["readings"] == METERS * INTERVALS
    assert f["collectors"] == math.ceil(METERS / MAX_READINGS_PER_TX) == 2
    assert f["submit_readings_txs"] == f["collectors"] * INTERVALS
    assert f["readings_per_tx"] == pytest.approx(METERS / 2, abs=0.1)
    assert f["readings_per_block"] * f["blocks"] == pytest.approx(f["readings"], abs=1)
    assert 0 < f["max_readings_per_block"] <= f["readings"]
    # Each reading adds one record to the state; the meter's own record is updated in place.
    assert f["state_entries_per_reading"] == 1.0


def test_the_rates_agree(figures: dict[str, Any]) -> None:
    f = figures
    for run in (f, f["relaying_node"]):
        assert run["readings_per_s"] > 0 and run["ed25519_verify_per_s"] > 0
        assert run["check_s"] > 0 and run["import_s"] > 0
        assert run["readings_per_s"] == pytest.approx(
            f["readings"] / (run["check_s"] + run["import_s"]), rel=0.02
        )
        assert run["ratio"] == pytest.approx(run["readings_per_s"] / run["ed25519_verify_per_s"], rel=0.01)
    assert f["meters_per_node_at_15min"] == pytest.approx(f["readings_per_s"] * 900, rel=1e-3)
    relay = f["relaying_node"]
    assert relay["meters_at_15min"] == pytest.approx(relay["readings_per_s"] * 900, rel=1e-3)
    assert f["national"]["readings_per_s"] == pytest.approx(10_000_000 / 900, abs=0.1)


def test_bytes_per_reading_within_the_encodings_bounds(figures: dict[str, Any]) -> None:
    f = figures
    smallest, largest = signed_reading_bytes(0), signed_reading_bytes(BIG)
    assert smallest <= f["signed_reading_bytes"] <= largest
    # On chain: the readings, plus each batch's framing, sender, nonce, fee and signature,
    # plus each block's header and coinbase (what block building keeps free for them).
    framing = len(encode(Transaction(SubmitReadings(()), bytes(32), BIG, BIG, bytes(64)))) + 4 + 3
    overhead = (f["submit_readings_txs"] * framing + f["blocks"] * BLOCK_OVERHEAD) / f["readings"]
    assert f["signed_reading_bytes"] < f["tx_bytes_per_reading"] < f["bytes_per_reading"]
    assert f["bytes_per_reading"] <= f["signed_reading_bytes"] + overhead
    year = meters.READINGS_PER_YEAR * f["bytes_per_reading"] + f["registration_chain_bytes_per_meter"]
    assert meters.READINGS_PER_YEAR == 35_040
    assert f["chain_bytes_per_meter_per_year"] == pytest.approx(year, rel=1e-3)
    assert f["national"]["chain_bytes_per_year"] == pytest.approx(
        10_000_000 * f["chain_bytes_per_meter_per_year"], rel=1e-3
    )
    # Its state record: the table's key (meter and interval) and the encoded ReadingRecord.
    key = len(READINGS.key(reading_key(bytes(20), 0)))
    record = (len(encode(ReadingRecord(n, n, bytes(32)))) for n in (0, BIG))
    low, high = (key + r for r in record)
    assert low <= f["state_bytes_per_reading"] <= high
    assert f["state_memory_bytes_per_reading"] > f["state_bytes_per_reading"]
    # On disk the store keeps the block, the state record and the undo record.
    assert f["sqlite_bytes_per_reading"] > f["bytes_per_reading"]
    assert f["undo_bytes_per_reading"] > 0 and f["sqlite_registration_bytes_per_meter"] > 0
    assert f["sqlite_bytes_per_meter_per_year"] > f["chain_bytes_per_meter_per_year"]
    # The block size and interval allow this many readings a second (batches as measured).
    per_s = f["max_block_bytes"] / f["tx_bytes_per_reading"] / f["block_interval_s"]
    assert f["chain_capacity_readings_per_s"] == pytest.approx(per_s, rel=1e-3)
    json.dumps(f, allow_nan=False)  # a JSON object as it is printed


def test_the_command_prints_one_json_object() -> None:
    result = CliRunner().invoke(bench_app, ["meters", "--json", "--meters", "3", "--intervals", "2"])
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    assert out["meters"] == 3 and out["readings"] == 6 and out["submit_readings_txs"] == 2


def test_sizes_it_cannot_run_with() -> None:
    with pytest.raises(ValueError, match="meters"):
        meters.check_sizes(meters=0, intervals=1)
    with pytest.raises(ValueError, match="intervals"):
        meters.check_sizes(meters=1, intervals=0)
