"""The homes' energy mix: each interval's load split by where it came from, drawn alike in the
run's plot (``sim/plots.py``) and the dashboard (``dashboard/app.py``)."""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime
from typing import Any, Final

MIX_PARTS: Final = (
    ("own", "own PV and battery", "#fdae6b"),
    ("p2p", "bought peer to peer", "#3182bd"),
    ("dso", "bought from the DSO", "#969696"),
    ("imbalance", "shortfall (imbalance price)", "#de2d26"),
    ("unbought", "imported beyond what was bought", "#fee08b"),
)
"""The parts of the energy mix (key, label, colour), which add up to the homes' load."""

MIX: Final = tuple(key for key, _, _ in MIX_PARTS)


def energy_mix(homes: list[dict[str, Any]]) -> dict[datetime, dict[str, float]]:
    """Per interval, the homes' load [kWh] split into ``MIX`` (and their ``load`` and
    ``export``)."""
    by_time: dict[datetime, dict[str, float]] = defaultdict(lambda: defaultdict(float))
    for r in homes:
        row = by_time[r["time"]]
        # A home's load is met on site (its PV and battery) and from the grid, at most what it
        # imported (the rest of an import charged its battery). What came from the grid is split
        # in proportion to what it bought (more may have been bought than imported, or less),
        # so that the stack is the load.
        grid = min(r["load_wh"], r["import_wh"])
        bought = {k: r[f] for k, f in (("p2p", "bought_p2p_wh"), ("dso", "bought_dso_wh"))}
        bought["imbalance"] = r["imbalance_wh"]
        total = sum(bought.values())
        scale = min(1.0, grid / total) if total else 0.0
        for k, wh in bought.items():
            row[k] += wh * scale / 1000
        row["unbought"] += (grid - total * scale) / 1000
        row["own"] += (r["load_wh"] - grid) / 1000
        row["export"] += r["export_wh"] / 1000
        row["load"] += r["load_wh"] / 1000
    return by_time
