"""Our power flow (pandapower's model and Newton-Raphson, solved without pandapower's per-call
overhead) against ``pp.runpp`` on the same net: every field of an interval's result, for
random injections on small and large feeders, within the voltage band and outside it, below
and above the cables' ratings, and the same failure where pandapower finds no solution."""

from __future__ import annotations

import random
import warnings

import pandapower as pp
import pytest

from gridnet.world.grid import HOURS, FlowResult, Grid, GridSpec

THIN = GridSpec(line_type="NAYY 4x50 SE", spacing_m=60.0)


def feeders(count: int, homes: int) -> list[list[str]]:
    return [[f"home-{f}-{i}" for i in range(homes)] for f in range(count)]


def pandapower_result(grid: Grid) -> FlowResult:
    """The interval whose injections ``grid.flow`` left in its net, solved by ``pp.runpp``
    and read from pandapower's result tables."""
    net = grid.net
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        pp.runpp(net, numba=False)
    line_pl, trafo_pl = net.res_line["pl_mw"], net.res_trafo["pl_mw"]
    loading, vm = net.res_line["loading_percent"], net.res_bus["vm_pu"]
    losses, trafo, through, max_loading, v_min, v_max = [], [], [], [], [], []
    for f, homes in enumerate(grid.feeders):
        lines = grid.feeder_lines[f]
        losses.append(float(line_pl.loc[lines].sum()) * 1e6 * HOURS)
        trafo.append(float(trafo_pl.at[grid.feeder_trafo[f]]) * 1e6 * HOURS)
        through.append(float(net.res_trafo.at[grid.feeder_trafo[f], "p_hv_mw"]) * 1e6 * HOURS)
        max_loading.append(float(loading.loc[lines].max()) if lines else 0.0)
        volts = [float(vm.at[grid.bus_of[h]]) for h in homes]
        v_min.append(min(volts, default=1.0))
        v_max.append(max(volts, default=1.0))
    spec = grid.spec
    return FlowResult(
        tuple(losses),
        tuple(trafo),
        tuple(through),
        tuple(max_loading),
        tuple(v_min),
        tuple(v_max),
        {h: float(vm.at[b]) for h, b in grid.bus_of.items()},
        {h: float(loading.at[line]) for h, line in grid.line_of.items()},
        max(max_loading, default=0.0) > spec.max_loading_percent
        or min(v_min, default=1.0) < spec.v_min_pu
        or max(v_max, default=1.0) > spec.v_max_pu,
    )


def assert_matches(ours: FlowResult, theirs: FlowResult) -> None:
    """Every field within 1e-6 relative, or 1e-9 absolute near zero."""

    def close(expected: object) -> object:
        return pytest.approx(expected, rel=1e-6, abs=1e-9)

    for name in (
        "losses_wh",
        "transformer_losses_wh",
        "max_loading_percent",
        "v_min_pu",
        "v_max_pu",
    ):
        assert getattr(ours, name) == close(getattr(theirs, name)), name
    # The flow through each transformer is the balance of the metered energy and the losses:
    # within the power flows' tolerance of pandapower's (a few hundredths of a Wh), well below
    # the whole Wh the substation's meter reads.
    assert ours.transformer_wh == pytest.approx(theirs.transformer_wh, abs=0.1), "transformer_wh"
    for name in ("home_v_pu", "line_loading_percent"):
        mine, pandapower = getattr(ours, name), getattr(theirs, name)
        assert list(mine) == list(pandapower)
        assert mine == close(pandapower), name
    assert ours.congested == theirs.congested


def draw(rng: random.Random, homes: list[str], most_wh: int) -> tuple[dict[str, int], dict[str, int]]:
    """Metered energies of one interval: a sunny export, an evening import or a mix, some
    homes unmetered."""
    mood = rng.choice(("export", "import", "mixed"))
    export_wh = {h: rng.randint(0, most_wh) for h in homes if mood != "import" and rng.random() < 0.9}
    import_wh = {h: rng.randint(0, most_wh) for h in homes if mood != "export" and rng.random() < 0.9}
    return export_wh, import_wh


@pytest.mark.parametrize(
    ("spec", "count", "homes", "most_wh", "draws"),
    [
        (GridSpec(), 2, 10, 1_500, 12),  # 20 homes on 2 feeders
        (THIN, 1, 20, 2_500, 12),  # a long thin feeder: out of the band and overloaded
        (GridSpec(), 3, 100, 600, 8),  # 300 homes on 3 feeders of 100
    ],
    ids=["20-homes", "thin-feeder", "100-home-feeders"],
)
def test_every_field_matches_pandapower_for_random_injections(
    spec: GridSpec, count: int, homes: int, most_wh: int, draws: int
) -> None:
    grid = Grid.build(spec, feeders(count, homes))
    names = [h for feeder in grid.feeders for h in feeder]
    rng = random.Random(f"{count}x{homes}")
    compared = 0
    for _ in range(draws):
        export_wh, import_wh = draw(rng, names, most_wh)
        try:
            ours: FlowResult | None = grid.flow(export_wh, import_wh)
        except pp.LoadflowNotConverged:
            ours = None
        try:
            theirs = pandapower_result(grid)
        except pp.LoadflowNotConverged:
            assert ours is None, "pandapower finds no solution, ours does"
            continue
        assert ours is not None, "pandapower finds a solution, ours does not"
        assert_matches(ours, theirs)
        compared += 1
    assert compared >= draws * 2 // 3


def test_congested_intervals_match_pandapower() -> None:
    homes = feeders(1, 20)[0]
    grid = Grid.build(THIN, [homes])
    for export_wh, import_wh in (
        ({h: 2_000 for h in homes}, {}),  # 8 kW each at noon: above the band and the rating
        ({}, {h: 900 for h in homes}),  # 3.6 kW each in the evening: below the band
    ):
        ours = grid.flow(export_wh, import_wh)
        assert ours.congested and grid.downstream(ours, 0)
        assert_matches(ours, pandapower_result(grid))
    assert ours.v_min_pu[0] < THIN.v_min_pu


def test_no_solution_is_pandapowers_error() -> None:
    homes = feeders(1, 100)[0]
    grid = Grid.build(GridSpec(), [homes])
    with pytest.raises(pp.LoadflowNotConverged, match="did not converge"):
        grid.flow({}, {h: 2_000 for h in homes})  # 800 kW through a 250 kVA transformer
    with pytest.raises(pp.LoadflowNotConverged):
        pandapower_result(grid)
    assert grid.flow({h: 100 for h in homes}, {}).v_max_pu[0] > 1.0  # and the grid still works


def test_an_interval_does_not_depend_on_the_ones_before() -> None:
    grid = Grid.build(GridSpec(), feeders(2, 10))
    names = [h for feeder in grid.feeders for h in feeder]
    rng = random.Random(7)
    first = draw(rng, names, 1_500)
    before = grid.flow(*first)
    for _ in range(3):
        grid.flow(*draw(rng, names, 1_500))
    assert grid.flow(*first) == before


def test_areas_without_feeders_or_homes() -> None:
    assert Grid.build(GridSpec(), []).flow({}, {}) == FlowResult((), (), (), (), (), (), {}, {}, False)
    grid = Grid.build(GridSpec(), [[], ["home"]])
    result = grid.flow({"home": 100, "elsewhere": 5}, {})
    assert result.max_loading_percent[0] == 0.0 and result.v_min_pu[0] == 1.0
    assert_matches(result, pandapower_result(grid))
