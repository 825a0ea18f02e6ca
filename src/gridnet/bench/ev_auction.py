"""Vehicle-to-vehicle auction benchmark: PETCON's iterative double auction against the one-shot
double auction on the same requests (``market/ev_auction.py``), over many random hotspots.

Each hotspot has 4 to ``max_vehicles`` vehicles, about half charging and half discharging, with
the curves of ``scenarios/ev.toml`` (a charging vehicle's first kWh at 0.55 GNC, its last at
0.32-0.42; a discharging one's first at 0.30, its deepest 0.02-0.10 more; the hotspot's fee
less the charging discount, 0.03, on the buyers' side and the parking discount, 0.02, on the
sellers'). Figures are ratios within the run: the iterative auction's welfare against the
one-shot's, its rounds and messages per vehicle, and its time per auction against the one-shot's.
It stops within ``tolerance_wh`` (50 Wh) of balance, and rations the longer side pro rata: in
the few auctions where the one-shot does better, that is what it loses (a fraction of a percent;
``iterative_worse_max_percent``).
"""

from __future__ import annotations

import random
import statistics
import time
from collections.abc import Callable
from typing import Any

from gridnet.market.ev_auction import Offer, Outcome, Request, iterative_auction, one_shot_auction
from gridnet.units import UNITS_PER_GNC

Progress = Callable[[str], None]


def gnc(x: float) -> int:
    return round(x * UNITS_PER_GNC)


def make_hotspots(n: int, max_vehicles: int, seed: int = 1) -> list[tuple[list[Request], list[Offer]]]:
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        vehicles = rng.randint(4, max_vehicles)
        buyers = rng.randint(1, vehicles - 1)
        requests = [
            Request(rng.randbytes(20), rng.randint(1_000, 11_000), gnc(0.55), gnc(rng.uniform(0.32, 0.42)))
            for _ in range(buyers)
        ]
        offers = [
            Offer(
                rng.randbytes(20), rng.randint(1_000, 11_000), gnc(0.30), gnc(0.30 + rng.uniform(0.02, 0.10))
            )
            for _ in range(vehicles - buyers)
        ]
        out.append((requests, offers))
    return out


def run(*, auctions: int = 2_000, max_vehicles: int = 24, progress: Progress | None = None) -> dict[str, Any]:
    say = progress or (lambda _msg: None)
    say(f"building {auctions} hotspots")
    hotspots = make_hotspots(auctions, max_vehicles)
    terms = {"buyer_wedge": gnc(0.03), "seller_gain": gnc(0.02)}
    say("iterative double auctions")
    start = time.perf_counter()
    iterative: list[Outcome] = [
        iterative_auction(r, o, tolerance_wh=50, max_rounds=40, **terms) for r, o in hotspots
    ]
    iterative_s = time.perf_counter() - start
    say("one-shot double auctions")
    start = time.perf_counter()
    one_shot: list[Outcome] = [one_shot_auction(r, o, **terms) for r, o in hotspots]
    one_shot_s = time.perf_counter() - start
    vehicles = sum(len(r) + len(o) for r, o in hotspots)
    welfare_i = sum(x.welfare for x in iterative)
    welfare_1 = sum(x.welfare for x in one_shot)
    gains = [
        (a.welfare - b.welfare) / b.welfare * 100
        for a, b in zip(iterative, one_shot, strict=True)
        if b.welfare > 0
    ]
    return {
        "auctions": auctions,
        "vehicles": vehicles,
        "welfare_iterative_gnc": round(welfare_i / UNITS_PER_GNC, 3),
        "welfare_one_shot_gnc": round(welfare_1 / UNITS_PER_GNC, 3),
        "welfare_ratio": round(welfare_i / welfare_1, 4) if welfare_1 else None,
        "welfare_gain_median_percent": round(statistics.median(gains), 2) if gains else None,
        "iterative_not_worse_share": round(
            sum(a.welfare >= b.welfare - 1 for a, b in zip(iterative, one_shot, strict=True)) / auctions, 4
        ),
        "iterative_worse_max_percent": round(max([0.0, *(-g for g in gains)]), 3),
        "traded_wh_ratio": round(
            sum(x.traded_wh for x in iterative) / max(1, sum(x.traded_wh for x in one_shot)), 4
        ),
        "rounds_mean": round(statistics.fmean(x.rounds for x in iterative), 2),
        "rounds_max": max(x.rounds for x in iterative),
        "messages_per_vehicle_iterative": round(sum(x.messages for x in iterative) / vehicles, 2),
        "messages_per_vehicle_one_shot": round(sum(x.messages for x in one_shot) / vehicles, 2),
        "time_ratio": round(iterative_s / one_shot_s, 3) if one_shot_s else None,
        "iterative_ms_per_auction": round(iterative_s / auctions * 1000, 4),
    }
