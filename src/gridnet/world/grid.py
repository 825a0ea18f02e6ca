"""The low-voltage grid under the market (pandapower): one feeder per line owner.

A feeder is an MV/LV transformer from the area's medium-voltage bus (the external grid, held
at 1.0 pu) to an LV busbar, and a radial cable from it through its homes in order, one bus per
home, ``spacing_m`` apart, of one standard line type. Every interval the homes' metered
injections (export − import, as mean power over the interval) go into an AC power flow; it
gives each line's loading, each bus's voltage and each feeder's losses: its cables' (which
the feeder's line owner carries) and its transformer's (mostly no-load iron losses, the DSO's).
"""

from __future__ import annotations

import time
import warnings
from dataclasses import dataclass, field
from typing import Any

from gridnet.errors import ConfigError
from gridnet.units import INTERVAL_MS, Wh

HOURS = INTERVAL_MS / 3_600_000


@dataclass(frozen=True)
class GridSpec:
    """The feeders' equipment (pandapower standard types) and limits (a scenario's ``[grid]``)."""

    mv_kv: float = 20.0
    transformer_type: str = "0.25 MVA 20/0.4 kV"
    line_type: str = "NAYY 4x150 SE"
    spacing_m: float = 30.0
    """Cable between the busbar and the first home, and between consecutive homes [m]."""
    max_loading_percent: float = 100.0
    v_min_pu: float = 0.9
    v_max_pu: float = 1.1


@dataclass(frozen=True)
class FlowResult:
    """One interval's power flow."""

    losses_wh: tuple[float, ...]
    """Per feeder: its cables' losses over the interval [Wh] (a figure for reports: nothing
    signed or settled, so not rounded to whole Wh)."""
    transformer_losses_wh: tuple[float, ...]
    """Per feeder: its transformer's losses over the interval [Wh]."""
    max_loading_percent: tuple[float, ...]
    """Per feeder: its most loaded cable's loading [% of its rated current]."""
    v_min_pu: tuple[float, ...]
    v_max_pu: tuple[float, ...]
    """Per feeder: the lowest and highest home bus voltage [pu]."""
    home_v_pu: dict[str, float]
    """Home name -> its bus voltage [pu]."""
    line_loading_percent: dict[str, float]
    """Home name -> loading of the cable that feeds its bus [%]."""
    congested: bool
    """A cable above ``max_loading_percent`` or a home's voltage outside the band."""


@dataclass
class Grid:
    """The area's feeders, built once; ``flow`` runs one interval."""

    spec: GridSpec
    feeders: list[list[str]]
    """Per feeder, its homes' names from the busbar outwards."""
    net: Any = field(repr=False)
    bus_of: dict[str, int] = field(repr=False)
    line_of: dict[str, int] = field(repr=False)
    load_of: dict[str, int] = field(repr=False)
    sgen_of: dict[str, int] = field(repr=False)
    feeder_lines: list[list[int]] = field(repr=False)
    feeder_trafo: list[int] = field(repr=False)
    seconds: float = 0.0
    """Time spent in power flows [s]."""

    @classmethod
    def build(cls, spec: GridSpec, feeders: list[list[str]]) -> Grid:
        import pandapower as pp

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            net = pp.create_empty_network()
            mv = pp.create_bus(net, vn_kv=spec.mv_kv, name="MV")
            pp.create_ext_grid(net, mv, vm_pu=1.0)
            bus_of: dict[str, int] = {}
            line_of: dict[str, int] = {}
            load_of: dict[str, int] = {}
            sgen_of: dict[str, int] = {}
            feeder_lines: list[list[int]] = []
            feeder_trafo: list[int] = []
            for f, homes in enumerate(feeders):
                busbar = pp.create_bus(net, vn_kv=0.4, name=f"feeder-{f}")
                try:
                    feeder_trafo.append(
                        pp.create_transformer(net, mv, busbar, std_type=spec.transformer_type)
                    )
                except (KeyError, UserWarning) as exc:
                    raise ConfigError(
                        f"transformer type {spec.transformer_type!r} is unknown: {exc}"
                    ) from None
                previous, lines = busbar, []
                for name in homes:
                    bus = pp.create_bus(net, vn_kv=0.4, name=name)
                    try:
                        line = pp.create_line(
                            net, previous, bus, spec.spacing_m / 1000, std_type=spec.line_type
                        )
                    except (KeyError, UserWarning) as exc:
                        raise ConfigError(f"line type {spec.line_type!r} is unknown: {exc}") from None
                    bus_of[name], line_of[name] = bus, line
                    load_of[name] = pp.create_load(net, bus, p_mw=0.0)
                    sgen_of[name] = pp.create_sgen(net, bus, p_mw=0.0)
                    lines.append(line)
                    previous = bus
                feeder_lines.append(lines)
        return cls(spec, feeders, net, bus_of, line_of, load_of, sgen_of, feeder_lines, feeder_trafo)

    def downstream(self, result: FlowResult, feeder: int) -> list[str]:
        """The homes of ``feeder`` at and beyond its first point outside the limits (a cable
        over its loading limit feeding a home's bus, or a home's voltage outside the band),
        along the cable from the transformer; [] when the feeder is within them."""
        spec = self.spec
        homes = self.feeders[feeder]
        for k, home in enumerate(homes):
            v = result.home_v_pu[home]
            if (
                result.line_loading_percent[home] > spec.max_loading_percent
                or not spec.v_min_pu <= v <= spec.v_max_pu
            ):
                return homes[k:]
        return []

    def flow(self, export_wh: dict[str, Wh], import_wh: dict[str, Wh]) -> FlowResult:
        """The power flow of one interval with these metered energies per home."""
        import pandapower as pp

        started = time.perf_counter()
        net = self.net
        for name, load in self.load_of.items():
            net.load.at[load, "p_mw"] = import_wh.get(name, 0) / HOURS / 1e6
            net.sgen.at[self.sgen_of[name], "p_mw"] = export_wh.get(name, 0) / HOURS / 1e6
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            pp.runpp(net, numba=False)
        line_pl = net.res_line["pl_mw"]
        trafo_pl = net.res_trafo["pl_mw"]
        loading = net.res_line["loading_percent"]
        vm = net.res_bus["vm_pu"]
        losses: list[float] = []
        trafo_losses: list[float] = []
        max_loading: list[float] = []
        v_min: list[float] = []
        v_max: list[float] = []
        for f, homes in enumerate(self.feeders):
            lines = self.feeder_lines[f]
            losses.append(float(line_pl.loc[lines].sum()) * 1e6 * HOURS)
            trafo_losses.append(float(trafo_pl.at[self.feeder_trafo[f]]) * 1e6 * HOURS)
            max_loading.append(float(loading.loc[lines].max()) if lines else 0.0)
            volts = [float(vm.at[self.bus_of[h]]) for h in homes]
            v_min.append(min(volts, default=1.0))
            v_max.append(max(volts, default=1.0))
        result = FlowResult(
            tuple(losses),
            tuple(trafo_losses),
            tuple(max_loading),
            tuple(v_min),
            tuple(v_max),
            {h: float(vm.at[b]) for h, b in self.bus_of.items()},
            {h: float(loading.at[line]) for h, line in self.line_of.items()},
            max(max_loading, default=0.0) > self.spec.max_loading_percent
            or min(v_min, default=1.0) < self.spec.v_min_pu
            or max(v_max, default=1.0) > self.spec.v_max_pu,
        )
        self.seconds += time.perf_counter() - started
        return result
