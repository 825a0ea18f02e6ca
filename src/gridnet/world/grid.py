"""The low-voltage grid under the market (pandapower): one feeder per line owner.

A feeder is an MV/LV transformer from the area's medium-voltage bus (the external grid, held
at 1.0 pu) to an LV busbar, and a radial cable from it through its homes in order, one bus per
home, ``spacing_m`` apart, of one standard line type. Every interval the homes' metered
injections (export − import, as mean power over the interval) go into an AC power flow; it
gives each line's loading, each bus's voltage and each feeder's losses: its cables' (which
the feeder's line owner carries) and its transformer's (mostly no-load iron losses, the DSO's).

The network is pandapower's (its standard types, its line and transformer models), built once,
each kind of element in one call, with the model of it that ``pp.runpp`` would solve (taken
without the run). An interval's power flow is then pandapower's own computation without
pandapower's per-call overhead (``PowerFlow``): its admittance model of the net, its start, its
Newton-Raphson steps and convergence test, its definitions of losses, currents and loading.
Only the injections change between intervals, so each interval gives what ``pp.runpp`` gives
for it, to the rounding of the arithmetic (not merely another solution within the tolerance:
that could differ from pandapower's by a few parts per million).
"""

from __future__ import annotations

import copy
import difflib
import functools
import itertools
import time
import warnings
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from gridnet.errors import ConfigError, shown
from gridnet.mpl import prepare_matplotlib
from gridnet.units import INTERVAL_MS, Wh

if TYPE_CHECKING:
    import numpy as np
    from numpy.typing import NDArray

HOURS = INTERVAL_MS / 3_600_000
TOLERANCE_MVA = 1e-8
"""Largest power mismatch of a solved bus [MVA] (pandapower's default ``tolerance_mva``)."""
MAX_ITERATIONS = 10
"""Newton-Raphson iterations before a power flow is abandoned (pandapower's default)."""


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
    transformer_wh: tuple[float, ...]
    """Per feeder: the energy its transformer took from the grid over the interval, negative
    when the feeder fed the grid [Wh]: its homes' import less their export, plus its cables'
    and its transformer's losses (what the substation's meter measures)."""
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


class PowerFlow:
    """Pandapower's Newton-Raphson AC power flow (``pp.runpp`` with its defaults), on the model
    pandapower builds of a net whose only generator is its external grid (the slack bus) and
    whose other buses are loads (PQ buses), for one set of injections after another.

    The model is pandapower's, as ``pp.runpp`` makes it of the net: the bus admittance matrix
    Y, the branch admittances Yf and Yt (lines first, then transformers, in the net's order),
    the buses' base voltages, and the DC model (susceptance matrix and phase-shift injections)
    of its start. ``solve`` takes pandapower's steps: the start (1.0 pu magnitudes, the angles
    of a DC power flow), then Newton's method on the polar form (the angle and magnitude of
    each PQ bus, dS/dVa and dS/dVm as pandapower's ``dSbus_dV``) until the largest power
    mismatch of V·conj(Y·V) against the injections is below ``TOLERANCE_MVA``, or failing
    that after ``MAX_ITERATIONS``, as pandapower's ``newtonpf``. The unknowns are numbered
    along the feeders (each bus's angle, then its magnitude), so that on radial feeders the
    Jacobian is a band matrix, solved as one. ``branches`` gives each branch's losses and
    current as pandapower's results define them.
    """

    def __init__(self, ppc: dict[str, Any], lookup: NDArray[np.int64], chain: list[int]) -> None:
        """``ppc``, pandapower's model of a net (``_model``, or ``net._ppc["internal"]`` after a
        ``pp.runpp``); ``lookup``, its buses' places in the model (``net._pd2ppc_lookups["bus"]``);
        ``chain``, its PQ buses (pandapower indices) in the order to number the unknowns: along
        each feeder from its busbar outwards."""
        import numpy as np
        from pandapower.pypower.idx_brch import F_BUS, T_BUS
        from pandapower.pypower.idx_bus import BASE_KV, GS

        order = lookup[np.asarray(chain, dtype=np.int64)]
        ref = ppc["ref"]
        if ppc["pv"].size or ref.size != 1 or sorted(order.tolist()) != sorted(ppc["pq"].tolist()):
            raise ValueError("the net's PQ buses are not the feeders' buses behind one slack bus")
        self.order = order
        self.buses = len(ppc["bus"])
        self.base_mva = float(ppc["baseMVA"])
        self.ybus: Any = ppc["Ybus"].tocsr()
        self.yf: Any = ppc["Yf"].tocsr()
        self.yt: Any = ppc["Yt"].tocsr()
        branch = ppc["branch"]
        self.f_bus: NDArray[np.int64] = branch[:, F_BUS].real.astype(np.int64)
        self.t_bus: NDArray[np.int64] = branch[:, T_BUS].real.astype(np.int64)
        base_kv = ppc["bus"][:, BASE_KV].real
        self.f_kv: NDArray[np.float64] = base_kv[self.f_bus]
        self.t_kv: NDArray[np.float64] = base_kv[self.t_bus]
        # The start: the slack bus at its set-point, the others at 1.0 pu and the angles of
        # B·Va = P - Pshift (P net of shunt losses, Pshift the transformers' phase shifts).
        slack = ppc["V"][ref]
        self.start_vm: NDArray[np.float64] = np.ones(self.buses)
        self.start_vm[ref] = np.abs(slack)
        self.start_va: NDArray[np.float64] = np.zeros(self.buses)
        self.start_va[ref] = np.angle(slack)
        self.shunt_pu: NDArray[np.float64] = ppc["bus"][:, GS].real / self.base_mva
        self.shift_pu: NDArray[np.float64] = np.asarray(ppc["Pbusinj"][: self.buses], dtype=np.float64)
        bbus = ppc["Bbus"].tocsr()[order]
        self.slack_pu: NDArray[np.float64] = bbus[:, ref] @ self.start_va[ref]
        b = bbus[:, order].tocoo()
        self.dc_band = _band(b.row, b.col, len(order))
        self.dc: NDArray[np.float64] = np.zeros((sum(self.dc_band[:2]) + 1, len(order)))
        self.dc.flat[self.dc_band[2]] = b.data
        # Y's entries between PQ buses, by their places in ``order``.
        place = np.full(self.buses, -1, dtype=np.int64)
        place[order] = np.arange(len(order))
        y = self.ybus.tocoo()
        among = (place[y.row] >= 0) & (place[y.col] >= 0)
        self.row: NDArray[np.int64] = place[y.row[among]]
        self.col: NDArray[np.int64] = place[y.col[among]]
        self.y: NDArray[np.complex128] = y.data[among]
        self.diagonal: NDArray[np.int64] = np.flatnonzero(self.row == self.col)
        if not np.array_equal(self.row[self.diagonal], np.arange(len(order))):
            raise ValueError("a PQ bus of the net has no admittance to ground or to another bus")
        # The Jacobian's entries: unknown 2k is bus k's angle, 2k+1 its magnitude; equation 2k
        # its active power mismatch, 2k+1 its reactive one.
        self.unknowns = 2 * len(order)
        self.band = _band(
            np.concatenate([2 * self.row, 2 * self.row, 2 * self.row + 1, 2 * self.row + 1]),
            np.concatenate([2 * self.col, 2 * self.col + 1, 2 * self.col, 2 * self.col + 1]),
            self.unknowns,
        )

    def solve(self, s_mva: NDArray[np.complex128]) -> NDArray[np.complex128]:
        """The bus voltages [pu] with these injections per bus [MVA] (generation positive);
        pandapower's ``LoadflowNotConverged`` if Newton's method does not converge."""
        import numpy as np
        from pandapower.auxiliary import LoadflowNotConverged
        from scipy.linalg import solve_banded  # type: ignore[import-untyped]

        s = s_mva / self.base_mva
        va = self.start_va.copy()
        if self.unknowns:
            p = s.real - self.shunt_pu - self.shift_pu
            va[self.order] = solve_banded(self.dc_band[:2], self.dc, p[self.order] - self.slack_pu)
        v = self.newton(s, self.start_vm * np.exp(1j * va))
        if v is None:
            raise LoadflowNotConverged(f"Power Flow nr did not converge after {MAX_ITERATIONS} iterations!")
        return v

    def newton(self, s: NDArray[np.complex128], v: NDArray[np.complex128]) -> NDArray[np.complex128] | None:
        """Newton-Raphson from ``v`` for injections ``s`` [pu]; None if it does not converge."""
        import numpy as np

        tolerance = TOLERANCE_MVA / self.base_mva
        with np.errstate(all="ignore"):
            for iteration in range(MAX_ITERATIONS + 1):
                calculated = v * np.conj(self.ybus @ v)
                mismatch = (calculated - s)[self.order]
                f = np.empty(self.unknowns)
                f[0::2], f[1::2] = mismatch.real, mismatch.imag
                worst = np.abs(f).max(initial=0.0)
                if worst < tolerance:
                    return v
                if iteration == MAX_ITERATIONS or not np.isfinite(worst):
                    return None
                stepped = self.step(v, calculated, f)
                if stepped is None:
                    return None
                v = stepped
        return None

    def step(
        self, v: NDArray[np.complex128], calculated: NDArray[np.complex128], f: NDArray[np.float64]
    ) -> NDArray[np.complex128] | None:
        """One Newton step from ``v`` (with its injections ``calculated`` and mismatches ``f``);
        None if the Jacobian is singular."""
        import numpy as np
        from scipy.linalg import LinAlgError, solve_banded

        order, row, col, diagonal = self.order, self.row, self.col, self.diagonal
        # dS/dVa and dS/dVm at Y's entries: -j·Vi·conj(Yik·Vk) and Vi·conj(Yik·Vk)/|Vk|, plus
        # j·Si and Si/|Vi| on the diagonal.
        vo, so = v[order], calculated[order]
        mo = np.abs(vo)
        term = vo[row] * np.conj(self.y * vo[col])
        d_angle = -1j * term
        d_angle[diagonal] += 1j * so
        d_magnitude = term / mo[col]
        d_magnitude[diagonal] += so / mo
        lower, upper, entries = self.band
        ab = np.zeros((lower + upper + 1, self.unknowns))
        ab.flat[entries] = np.concatenate([d_angle.real, d_magnitude.real, d_angle.imag, d_magnitude.imag])
        try:
            dx = solve_banded((lower, upper), ab, f, overwrite_ab=True, check_finite=False)
        except LinAlgError:
            return None
        va, vm = np.angle(v), np.abs(v)
        va[order] -= dx[0::2]
        vm[order] -= dx[1::2]
        result: NDArray[np.complex128] = vm * np.exp(1j * va)
        return result

    def branches(self, v: NDArray[np.complex128]) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
        """Per branch: its losses [MW] (power in at one end plus at the other) and its current
        [kA] (the larger of its two ends'), as pandapower's results give them."""
        import numpy as np

        sf = v[self.f_bus] * np.conj(self.yf @ v) * self.base_mva
        st = v[self.t_bus] * np.conj(self.yt @ v) * self.base_mva
        vm = np.abs(v)
        i_from = np.abs(sf) / (vm[self.f_bus] * self.f_kv) / np.sqrt(3)
        i_to = np.abs(st) / (vm[self.t_bus] * self.t_kv) / np.sqrt(3)
        return sf.real + st.real, np.maximum(i_from, i_to)


def _band(rows: NDArray[np.int64], cols: NDArray[np.int64], n: int) -> tuple[int, int, NDArray[np.int64]]:
    """The lower and upper bandwidths of an n×n matrix with entries at (rows, cols), and their
    places in LAPACK's band storage of it (flattened, as ``solve_banded`` takes it)."""
    lower = int(max((rows - cols).max(initial=0), 0))
    upper = int(max((cols - rows).max(initial=0), 0))
    return lower, upper, (upper + rows - cols) * n + cols


def _pandapower() -> Any:
    """pandapower, imported once matplotlib (which it imports) has a configuration directory."""
    prepare_matplotlib()
    import pandapower

    return pandapower


@functools.cache
def _empty_network() -> Any:
    """Pandapower's empty net with its standard types (``pp.create_empty_network``, which takes
    longer than creating a thousand homes' elements), made once: each net starts as a copy."""
    pp = _pandapower()

    return pp.create_empty_network()


@functools.cache
def standard_types(kind: str) -> tuple[str, ...]:
    """The names of pandapower's standard types of ``kind`` ("line" or "trafo")."""
    pp = _pandapower()

    return tuple(sorted(pp.available_std_types(_empty_network(), kind).index))


def equipment_problem(spec: GridSpec) -> str | None:
    """What ``spec`` names that pandapower has no standard type of, and what to name instead
    (None: it has each)."""
    for key, kind, noun in (("transformer_type", "trafo", "transformer"), ("line_type", "line", "line")):
        name, known = getattr(spec, key), standard_types(kind)
        if name not in known:
            like = ", ".join(
                map(repr, difflib.get_close_matches(name, known, n=3) or [getattr(GridSpec(), key)])
            )
            return f"{key} {shown(name)} is not a pandapower standard {noun} type; name one, e.g. {like}"
    return None


def _network(spec: GridSpec, feeders: list[list[str]]) -> Any:
    """The net of these feeders: the MV bus and its external grid; per feeder, its busbar and its
    transformer; per home, its bus, the cable to it from the one before, its load and its static
    generator (no power yet). Each kind of element is created in one call (one per feeder for
    the transformers), giving the tables, row for row, of creating the elements one at a time
    in that order (the MV bus first, then each feeder's busbar followed by its homes' buses)."""
    import numpy as np
    import pandas as pd

    pp = _pandapower()

    names = ["MV"]
    busbars: list[int] = []
    upstream: list[int] = []  # per home, the bus its cable comes from: its busbar or the home before
    for f, homes in enumerate(feeders):
        busbars.append(len(names))
        upstream += range(len(names), len(names) + len(homes))
        names += [f"feeder-{f}", *homes]
    buses = [bus + 1 for bus in upstream]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        net = copy.deepcopy(_empty_network())
        pp.create_buses(net, len(names), vn_kv=[spec.mv_kv] + [0.4] * (len(names) - 1), name=names)
        pp.create_ext_grid(net, 0, vm_pu=1.0)
        for busbar in busbars:  # one at a time: create_transformers adds a column, and in another order
            pp.create_transformer(net, 0, busbar, std_type=spec.transformer_type)
        if buses:
            pp.create_lines(net, upstream, buses, spec.spacing_m / 1000, std_type=spec.line_type)
            pp.create_loads(net, buses, p_mw=0.0)
            pp.create_sgens(net, buses, p_mw=0.0, type=None)
            # create_sgens adds a column that create_sgen does not (the generator type of
            # short-circuit studies) and leaves the curve style None where create_sgen leaves NaN.
            net.sgen = net.sgen.drop(columns="generator_type")
            net.sgen["curve_style"] = pd.Series(np.nan, index=net.sgen.index, dtype=object)
    return net


def _model(net: Any) -> dict[str, Any]:
    """Pandapower's model of ``net`` as ``pp.runpp`` (with its defaults) makes it and keeps it in
    ``net._ppc["internal"]``, without solving the net (the run and its result tables take longer
    than making the model): its buses and branches, the bus types (``ref``, ``pv``, ``pq``), the
    start ``V``, the admittances (``Ybus``, ``Yf``, ``Yt``) and the DC model of the start
    (``Bbus``, ``Pbusinj``). As that run, it leaves the lookups from the net's elements to the
    model's in ``net._pd2ppc_lookups``."""
    from pandapower.auxiliary import _init_runpp_options
    from pandapower.pd2ppc import _pd2ppc
    from pandapower.pf.ppci_variables import _get_pf_variables_from_ppci
    from pandapower.pypower.makeBdc import makeBdc
    from pandapower.pypower.makeYbus import makeYbus

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        _init_runpp_options(
            net,
            algorithm="nr",
            calculate_voltage_angles=True,
            init="auto",
            max_iteration="auto",
            tolerance_mva=TOLERANCE_MVA,
            trafo_model="t",
            trafo_loading="current",
            enforce_p_lims=False,
            enforce_q_lims=False,
            check_connectivity=True,
            voltage_depend_loads=True,
            consider_line_temperature=False,
            distributed_slack=False,
            tdpf=False,
            tdpf_delay_s=None,
            numba=False,
        )
        _, ppci = _pd2ppc(net)
        variables = _get_pf_variables_from_ppci(ppci, True)
        base_mva, bus, _, branch, _, _, _, vsc, ref, pv, pq, _, _, v, _ = variables
        ybus, yf, yt = makeYbus(base_mva, bus, branch)
        bbus, _, pbusinj, _, _ = makeBdc(bus, branch, ppci["bus_dc"], ppci["branch_dc"], vsc)
    return {
        "baseMVA": base_mva,
        "bus": bus,
        "branch": branch,
        "ref": ref,
        "pv": pv,
        "pq": pq,
        "V": v,
        "Ybus": ybus,
        "Yf": yf,
        "Yt": yt,
        "Bbus": bbus,
        "Pbusinj": pbusinj,
    }


@dataclass
class Grid:
    """The area's feeders, built once; ``flow`` runs one interval."""

    spec: GridSpec
    feeders: list[list[str]]
    """Per feeder, its homes' names from the busbar outwards."""
    net: Any = field(repr=False)
    """The pandapower net, with the last interval's injections in its loads and static
    generators (``pp.runpp`` of it solves that interval with pandapower itself)."""
    bus_of: dict[str, int] = field(repr=False)
    line_of: dict[str, int] = field(repr=False)
    load_of: dict[str, int] = field(repr=False)
    sgen_of: dict[str, int] = field(repr=False)
    feeder_lines: list[list[int]] = field(repr=False)
    feeder_trafo: list[int] = field(repr=False)
    power_flow: PowerFlow | None = field(repr=False)
    """The feeders' power flow (None for an area without feeders: nothing to solve)."""
    home_buses: NDArray[np.int64] = field(repr=False)
    """Per home (in the order of ``load_of``: feeder by feeder, from the busbar outwards): its
    bus in ``power_flow``."""
    home_lines: NDArray[np.int64] = field(repr=False)
    """Per home: the branch in ``power_flow`` of the cable that feeds its bus."""
    rated_ka: NDArray[np.float64] = field(repr=False)
    """Per home: that cable's rated current (pandapower's ``max_i_ka · df · parallel``) [kA]."""
    trafo_branches: NDArray[np.int64] = field(repr=False)
    """Per feeder: its transformer's branch in ``power_flow``."""
    seconds: float = 0.0
    """Time spent in power flows [s]."""

    @classmethod
    def build(cls, spec: GridSpec, feeders: list[list[str]]) -> Grid:
        """The grid of these feeders: their net (``_network``) and the power flow on pandapower's
        model of it (``_model``); a ConfigError when ``spec`` names a type pandapower has not."""
        import numpy as np

        problem = equipment_problem(spec)
        if problem is not None:
            raise ConfigError(problem)
        net = _network(spec, feeders)
        model = _model(net)  # and in net._pd2ppc_lookups, the places of the net's elements in it
        # The net holds a transformer per feeder, and a bus, a line, a load and a static generator
        # per home, in the order of the feeders and of their homes.
        homes = [name for feeder in feeders for name in feeder]
        bus_of = dict(zip(homes, net.load["bus"].tolist(), strict=True))
        lines: list[int] = net.line.index.tolist()
        line_of = dict(zip(homes, lines, strict=True))
        load_of = dict(zip(homes, net.load.index.tolist(), strict=True))
        sgen_of = dict(zip(homes, net.sgen.index.tolist(), strict=True))
        ends = itertools.accumulate(len(feeder) for feeder in feeders)
        feeder_lines = [lines[end - len(feeder) : end] for feeder, end in zip(feeders, ends, strict=True)]
        feeder_trafo: list[int] = net.trafo.index.tolist()
        # The PQ buses along the feeders (each busbar, then its homes' buses) are all but the MV bus.
        chain: list[int] = net.bus.index[1:].tolist()
        power_flow = PowerFlow(model, net._pd2ppc_lookups["bus"], chain) if feeders else None
        branches = net._pd2ppc_lookups["branch"]
        homes_lines = [line_of[name] for name in load_of]
        line_rows = net.line.index.get_indexer(homes_lines)
        lines_df = net.line.iloc[line_rows]
        return cls(
            spec,
            feeders,
            net,
            bus_of,
            line_of,
            load_of,
            sgen_of,
            feeder_lines,
            feeder_trafo,
            power_flow,
            net._pd2ppc_lookups["bus"][np.array([bus_of[name] for name in load_of], dtype=np.int64)],
            branches["line"][0] + line_rows.astype(np.int64) if homes_lines else np.zeros(0, np.int64),
            (lines_df["max_i_ka"] * lines_df["df"] * lines_df["parallel"]).to_numpy(np.float64),
            branches["trafo"][0] + net.trafo.index.get_indexer(feeder_trafo).astype(np.int64)
            if feeder_trafo
            else np.zeros(0, np.int64),
        )

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
        """The power flow of one interval with these metered energies per home (pandapower's
        ``LoadflowNotConverged`` if it has no solution within pandapower's iterations)."""
        import numpy as np

        started = time.perf_counter()
        names = list(self.load_of)
        load_mw = np.array([import_wh.get(name, 0) for name in names], dtype=np.float64) / HOURS / 1e6
        sgen_mw = np.array([export_wh.get(name, 0) for name in names], dtype=np.float64) / HOURS / 1e6
        self.net.load["p_mw"] = load_mw  # the net's loads and static generators are the homes',
        self.net.sgen["p_mw"] = sgen_mw  # created in this order
        v = np.ones(0, dtype=np.complex128)
        branch_mw = branch_ka = np.zeros(0)
        if self.power_flow is not None:
            injections = np.zeros(self.power_flow.buses, dtype=np.complex128)
            injections[self.home_buses] = sgen_mw - load_mw
            v = self.power_flow.solve(injections)
            branch_mw, branch_ka = self.power_flow.branches(v)
        home_v = np.abs(v)[self.home_buses].tolist()
        loading = (branch_ka[self.home_lines] / self.rated_ka * 100).tolist()
        line_mw = branch_mw[self.home_lines]
        trafo_mw = branch_mw[self.trafo_branches].tolist()
        losses: list[float] = []
        max_loading: list[float] = []
        v_min: list[float] = []
        v_max: list[float] = []
        through: list[float] = []
        start = 0
        for f, homes in enumerate(self.feeders):
            end = start + len(homes)
            losses.append(float(line_mw[start:end].sum()) * 1e6 * HOURS)
            net = sum(import_wh.get(name, 0) - export_wh.get(name, 0) for name in homes)
            through.append(net + losses[-1] + (trafo_mw[f] * 1e6 * HOURS if trafo_mw else 0.0))
            max_loading.append(max(loading[start:end], default=0.0))
            v_min.append(min(home_v[start:end], default=1.0))
            v_max.append(max(home_v[start:end], default=1.0))
            start = end
        result = FlowResult(
            tuple(losses),
            tuple(mw * 1e6 * HOURS for mw in trafo_mw),
            tuple(through),
            tuple(max_loading),
            tuple(v_min),
            tuple(v_max),
            dict(zip(names, home_v, strict=True)),
            dict(zip(names, loading, strict=True)),
            max(max_loading, default=0.0) > self.spec.max_loading_percent
            or min(v_min, default=1.0) < self.spec.v_min_pu
            or max(v_max, default=1.0) > self.spec.v_max_pu,
        )
        self.seconds += time.perf_counter() - started
        return result
