"""The simulator against its cryptographic floor (issue 16).

A day of ``homes`` homes (every one with load, PV and a battery; relays off; a feeder per 50
homes) runs in a fresh child process pinned to ``cores`` CPUs. The child counts every
signature made and checked, every sealed box made and opened and every proof-of-work hash
(``crypto/ops.py``), measures each operation's unit cost itself, and prices the counts: the
run's cryptographic floor, what the run costs at the least with its protocol's cryptography.
``floor_ratio = floor_s / wall_s``: 1 would be a simulator doing nothing but that. A
signature the same node checks again (its cache answers it) is not in the floor: the
protocol asks each node to check each signature once.

Each run is in its own process so that its peak resident memory is its own, and so that
pinning it to one core leaves the parent alone. Before the clock starts, the child runs a
two-home, two-interval warm-up: what a process pays once whatever it simulates (importing
pandapower, pvlib, matplotlib, pyarrow: about 4 s here) is reported apart, as ``startup_s``.
"""

from __future__ import annotations

import math
import multiprocessing
import os
import queue
import resource
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from gridnet.crypto import ops
from gridnet.crypto.ops import CryptoOps
from gridnet.errors import ConfigError
from gridnet.files import read_toml
from gridnet.system import usable_cores

DAY_INTERVALS = 96
HOMES_PER_FEEDER = 50
UNIT_SAMPLES = 400
WARM_UP_HOMES = 2
WARM_UP_INTERVALS = 2


def scenario_doc(homes: int, intervals: int = DAY_INTERVALS) -> dict[str, Any]:
    """The benchmark's area: the default day's scenario with ``homes`` homes that all have
    PV and a battery, relays off, one feeder (and line owner) per 50 homes."""
    from gridnet.sim.scenario import DEFAULT_LINE_OWNERS

    base = Path(__file__).resolve().parents[3] / "scenarios" / "neighbourhood.toml"
    doc: dict[str, Any] = read_toml(base, "scenario file") if base.exists() else {}
    doc.setdefault("simulation", {}).update(name=f"bench-{homes}", intervals=intervals)
    doc.setdefault("homes", {}).update(count=homes, pv_share=1.0, battery_share=1.0, businesses=0)
    doc.setdefault("relay", {}).update(enabled=False, hill_homes=0)
    feeders = max(1, math.ceil(homes / HOMES_PER_FEEDER))
    owners = doc.get("line_owner") or DEFAULT_LINE_OWNERS
    doc["line_owner"] = [
        owners[i] if i < len(owners) else {"name": f"Feeder {i + 1} Lines", "fee": 0.01}
        for i in range(feeders)
    ]
    return doc


def unit_costs(samples: int = UNIT_SAMPLES) -> dict[str, float]:
    """Seconds per operation of each kind counted, measured here and now (a 200-byte
    message signed and verified, a 300-byte box sealed and opened, a header's PoW hash)."""
    from gridnet.crypto.boxes import open_sealed, seal
    from gridnet.crypto.keys import Domain, PrivateKey, verify_signature
    from gridnet.ledger.blocks import BLOCK_VERSION, Header
    from gridnet.ledger.pow import mine

    key = PrivateKey.from_label("bench/sim/unit")
    message = bytes(200)
    signature = key.sign(Domain.TRANSACTION, message)
    box = seal(key.public_key, bytes(300))
    header = Header(
        version=BLOCK_VERSION,
        height=1,
        prev_hash=bytes(32),
        tx_root=bytes(32),
        state_root=bytes(32),
        timestamp=0,
        target=bytes(32),  # no hash is below 0: every attempt fails
        nonce=0,
        miner=bytes(20),
    )

    def timed(fn: Callable[[], object], n: int) -> float:
        best = math.inf
        for _ in range(3):  # the least of three: a busy machine only ever adds time
            started = time.perf_counter()
            for _ in range(n):
                fn()
            best = min(best, (time.perf_counter() - started) / n)
        return best

    costs = {
        "signs": timed(lambda: key.sign(Domain.TRANSACTION, message), samples),
        "verifies": timed(
            lambda: verify_signature(Domain.TRANSACTION, key.public_key, message, signature), samples
        ),
        "seals": timed(lambda: seal(key.public_key, bytes(300)), samples),
        "opens": timed(lambda: open_sealed(key, box), samples),
        "pow_hashes": timed(lambda: mine(header, samples * 10), 1) / (samples * 10),
    }
    return costs


def floor_seconds(counts: CryptoOps, costs: dict[str, float]) -> dict[str, float]:
    """Each kind's share of the floor [s] (cached checks cost nothing here)."""
    c = counts.as_dict()
    return {kind: c[kind] * cost for kind, cost in costs.items()}


def _child(homes: int, intervals: int, cores: int, results: Any) -> None:
    try:
        if cores and hasattr(os, "sched_setaffinity"):
            available = sorted(os.sched_getaffinity(0))
            os.sched_setaffinity(0, available[:cores])
        results.put(("ok", measure(homes, intervals)))
    except BaseException as exc:  # reported by the parent as one line
        results.put(("error", f"{type(exc).__name__}: {exc}"))


def measure(homes: int, intervals: int = DAY_INTERVALS) -> dict[str, Any]:
    """Run the benchmark's area in this process; its figures."""
    from gridnet.sim.neighbourhood import simulate
    from gridnet.sim.scenario import scenario_from_dict

    costs = unit_costs()
    scenario = scenario_from_dict(scenario_doc(homes, intervals), f"bench sim ({homes} homes)")
    warm_up = scenario_from_dict(scenario_doc(WARM_UP_HOMES, WARM_UP_INTERVALS), "bench sim (warm-up)")
    with tempfile.TemporaryDirectory(prefix="gridnet-bench-sim-") as tmp:
        started = time.perf_counter()
        simulate(warm_up, Path(tmp) / "warm-up")
        startup = time.perf_counter() - started
        before = ops.snapshot()
        cpu_before = _cpu_seconds()
        started = time.perf_counter()
        report = simulate(scenario, Path(tmp) / "run")
        wall = time.perf_counter() - started
        cpu = _cpu_seconds() - cpu_before
        counts = ops.OPS.since(before)
    after = unit_costs()  # measured again: the least of the two (a busy machine only adds)
    costs = {kind: min(cost, after[kind]) for kind, cost in costs.items()}
    floor = floor_seconds(counts, costs)
    floor_s = sum(floor.values())
    peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    home_days = homes * intervals / DAY_INTERVALS
    return {
        "homes": homes,
        "intervals": intervals,
        "cores": usable_cores(),
        "wall_s": round(wall, 2),
        "startup_s": round(startup, 2),
        "cpu_s": round(cpu, 2),
        "s_per_home_day": round(wall / home_days, 3),
        "floor_s": round(floor_s, 2),
        "floor_ratio": round(floor_s / wall, 3),
        "floor_ratio_cpu": round(floor_s / cpu, 3),
        "floor_by_kind_s": {k: round(v, 3) for k, v in floor.items()},
        "ops": counts.as_dict(),
        "unit_cost_us": {k: round(v * 1e6, 2) for k, v in costs.items()},
        "chain_txs": sum(v for k, v in report["chain"]["transactions_by_type"].items() if k != "Coinbase"),
        "converged": bool(report["converged"] and report["verify"]["ok"]),
        "peak_rss_mb": round(peak_kb / 1024, 1),
        "peak_rss_mb_per_home": round(peak_kb / 1024 / homes, 2),
    }


def _cpu_seconds() -> float:
    """CPU time of this process, all its threads [s]."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _wait(child: Any, results: Any, homes: int) -> dict[str, Any]:
    """The child's figures; a child that dies without sending them is reported, not awaited."""
    while True:
        try:
            status, figures = results.get(timeout=5)
        except queue.Empty:
            if not child.is_alive():
                raise RuntimeError(
                    f"bench sim: the {homes}-home run died (exit code {child.exitcode})"
                ) from None
            continue
        child.join()
        if status != "ok":
            raise RuntimeError(f"bench sim: the {homes}-home run failed: {figures}")
        result: dict[str, Any] = figures
        return result


def check_runs(homes: Sequence[int], cores: Sequence[int], intervals: int = DAY_INTERVALS) -> None:
    """``ValueError`` for runs the benchmark cannot make: an area the simulator refuses (its
    scenario's own checks) or more cores than this process may use. Every size's range is
    checked first, cheaply: ``scenario_doc`` builds a table per 50 homes, so a size far out
    of range would take the memory of its tables before the scenario's checks refused it."""
    from gridnet.sim.scenario import (
        HOMES_RANGE,
        INTERVALS_RANGE,
        MAX_HOMES,
        MAX_INTERVALS,
        MIN_HOMES,
        scenario_from_dict,
    )

    for n in dict.fromkeys(homes):
        where = f"bench sim ({n} homes, {intervals} intervals)"
        if not 1 <= intervals <= MAX_INTERVALS:
            raise ValueError(f"{where}: {INTERVALS_RANGE}")
        if not MIN_HOMES <= n <= MAX_HOMES:
            raise ValueError(f"{where}: {HOMES_RANGE}")
    for n in dict.fromkeys(homes):
        try:
            scenario_from_dict(scenario_doc(n, intervals), f"bench sim ({n} homes, {intervals} intervals)")
        except ConfigError as exc:
            raise ValueError(str(exc)) from None
    most = usable_cores()
    if any(c > most for c in cores):
        raise ValueError(f"--cores {max(cores)}: this process may use {most} core(s) (0 = all of them)")


def run(
    homes: Sequence[int] = (20, 100, 500),
    *,
    cores: Sequence[int] = (1,),
    intervals: int = DAY_INTERVALS,
    progress: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Each size on each number of cores (0 = all), each in a fresh process."""
    check_runs(homes, cores, intervals)
    context = multiprocessing.get_context("spawn")
    runs: list[dict[str, Any]] = []
    for n in homes:
        for c in cores:
            if progress is not None:
                progress(f"simulating {n} homes for {intervals} intervals on {c or 'all'} core(s)")
            results = context.Queue()
            child = context.Process(target=_child, args=(n, intervals, c, results), daemon=True)
            child.start()
            figures = _wait(child, results, n)
            if progress is not None:
                progress(
                    f"{n} homes on {figures['cores']} core(s): {figures['wall_s']} s, "
                    f"floor {figures['floor_s']} s (ratio {figures['floor_ratio']})"
                )
            runs.append(figures)
    return {"runs": runs, "speedup": speedups(runs)}


def speedups(runs: list[dict[str, Any]]) -> dict[str, float]:
    """Per area size run on one core and on more: one core's wall time over the most
    cores' (what the further cores bring)."""
    out: dict[str, float] = {}
    for n in dict.fromkeys(r["homes"] for r in runs):
        one = [r["wall_s"] for r in runs if r["homes"] == n and r["cores"] == 1]
        more = [r for r in runs if r["homes"] == n and r["cores"] > 1]
        if one and more:
            best = max(more, key=lambda r: r["cores"])
            out[f"{n}_homes_{best['cores']}_cores"] = round(one[0] / best["wall_s"], 3)
    return out
