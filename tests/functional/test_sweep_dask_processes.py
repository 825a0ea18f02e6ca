"""``gridnet sweep --scheduler``: the runs go to a Dask cluster of its own processes, started
with dask's own commands as README says (``dask scheduler``, ``dask worker``), on 127.0.0.1,
and the sweep writes its table and its runs' directories as on a LocalCluster."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pyarrow.parquet as pq

from gridnet.node.devnet import free_port
from tests.helpers import wait_for

CEILING = 180
DASK = Path(sys.executable).parent / "dask"
SWEEP = """scenario = "{base}"
seeds = [1]
figures = ["energy.p2p_wh", "chain.height", "verify.transactions"]
plot = ["energy.p2p_wh"]

[set]
"simulation.intervals" = 4
"simulation.start" = "2026-06-21T10:00:00Z"

[vary]
"homes.count" = [8, 10]
"""


@contextmanager
def started(args: list[str], log: Path) -> Iterator[subprocess.Popen[bytes]]:
    """A process of its own (its group), stopped by its PID at the end."""
    with log.open("wb") as out:
        process = subprocess.Popen(
            args, stdout=out, stderr=subprocess.STDOUT, env=dict(os.environ, GRIDNET_CHECK_CORES="1"),
            start_new_session=True,
        )  # fmt: skip
        try:
            yield process
        finally:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
                try:
                    process.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    os.killpg(process.pid, signal.SIGKILL)
                    process.wait()


def test_a_sweep_runs_on_a_scheduler_and_worker_started_with_dasks_commands(tmp_path: Path) -> None:
    port = free_port()
    address = f"tcp://127.0.0.1:{port}"
    base = Path(__file__).resolve().parents[2] / "scenarios" / "neighbourhood.toml"
    (tmp_path / "study.toml").write_text(SWEEP.format(base=base))
    scheduler_log, worker_log = tmp_path / "scheduler.log", tmp_path / "worker.log"
    scheduler = [str(DASK), "scheduler", "--host", "127.0.0.1", "--port", str(port), "--no-dashboard"]
    worker = [str(DASK), "worker", address, "--nthreads", "1", "--no-dashboard"]
    worker += ["--local-directory", str(tmp_path / "dask")]
    with started(scheduler, scheduler_log), started(worker, worker_log):
        assert wait_for(lambda: "Registered to:" in worker_log.read_text(), CEILING), worker_log.read_text()
        done = subprocess.run(
            [sys.executable, "-m", "gridnet", "sweep", "study.toml", "--out", "out", "--scheduler", address],
            cwd=tmp_path,
            env=dict(os.environ, COLUMNS="300", NO_COLOR="1"),
            capture_output=True,
            text=True,
            timeout=CEILING,
        )
    assert done.returncode == 0, done.stderr
    assert "2: 2 ok, 0 unverified, 0 failed" in done.stdout
    table = pq.read_table(tmp_path / "out" / "sweep.parquet").to_pylist()
    assert sorted(row["homes.count"] for row in table) == [8, 10]
    assert all(row["status"] == "ok" and row["energy.p2p_wh"] > 0 for row in table)
    assert {row["verify.transactions"] > 0 for row in table} == {True}
    assert len(list((tmp_path / "out" / "runs").iterdir())) == 2
    assert (tmp_path / "out" / "plots" / "energy.p2p_wh--by--homes.count.png").stat().st_size > 0
