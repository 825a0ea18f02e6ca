"""Power flow of the area's feeders (pandapower): our wrapper against pandapower called
directly, and the physics a reader can check: exports raise the voltage along a feeder,
imports lower it, losses grow with the square of the current, a long sunny feeder leaves the
±10 % band."""

from __future__ import annotations

import warnings

import pandapower as pp
import pytest

from gridnet.errors import ConfigError
from gridnet.world.grid import HOURS, Grid, GridSpec

HOMES = [f"home-{i}" for i in range(8)]


def direct(spec: GridSpec, homes: list[str], export_w: dict[str, float]) -> tuple[float, float, float]:
    """(cable losses, transformer losses [W], voltage at the feeder's end [pu]) from
    pandapower, no wrapper."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        net = pp.create_empty_network()
        mv = pp.create_bus(net, vn_kv=spec.mv_kv)
        pp.create_ext_grid(net, mv, vm_pu=1.0)
        previous = pp.create_bus(net, vn_kv=0.4)
        pp.create_transformer(net, mv, previous, std_type=spec.transformer_type)
        for name in homes:
            bus = pp.create_bus(net, vn_kv=0.4)
            pp.create_line(net, previous, bus, spec.spacing_m / 1000, std_type=spec.line_type)
            pp.create_sgen(net, bus, p_mw=export_w.get(name, 0.0) / 1e6)
            previous = bus
        pp.runpp(net)
    lines, trafo = float(net.res_line.pl_mw.sum()) * 1e6, float(net.res_trafo.pl_mw.sum()) * 1e6
    return lines, trafo, float(net.res_bus.vm_pu.iloc[-1])


def test_the_power_flow_matches_pandapower_called_directly_within_one_percent() -> None:
    spec = GridSpec(spacing_m=40.0)
    grid = Grid.build(spec, [HOMES])
    export_wh = {h: 1_000 + 100 * i for i, h in enumerate(HOMES)}  # 4 to 6.8 kW
    result = grid.flow(export_wh, {})
    lines_w, trafo_w, end_v = direct(spec, HOMES, {h: wh / HOURS for h, wh in export_wh.items()})
    assert result.losses_wh[0] == pytest.approx(lines_w * HOURS, rel=0.01)
    assert result.transformer_losses_wh[0] == pytest.approx(trafo_w * HOURS, rel=0.01)
    assert result.home_v_pu[HOMES[-1]] == pytest.approx(end_v, rel=0.001)


def test_exports_raise_and_imports_lower_the_voltage_along_a_feeder() -> None:
    grid = Grid.build(GridSpec(), [HOMES[:4], HOMES[4:]])
    result = grid.flow({h: 1_250 for h in HOMES[:4]}, {h: 1_250 for h in HOMES[4:]})  # 5 kW each
    up = [result.home_v_pu[h] for h in HOMES[:4]]
    down = [result.home_v_pu[h] for h in HOMES[4:]]
    assert up == sorted(up) and up[0] > 1.0
    assert down == sorted(down, reverse=True) and down[0] < 1.0
    assert result.v_max_pu[0] == up[-1] and result.v_min_pu[1] == down[-1]
    assert grid.seconds > 0


def test_losses_grow_with_the_square_of_the_current() -> None:
    grid = Grid.build(GridSpec(), [HOMES])
    idle = grid.flow({}, {})
    assert idle.losses_wh[0] == pytest.approx(0, abs=1e-6) and idle.transformer_losses_wh[0] > 0  # iron
    once = grid.flow({h: 500 for h in HOMES}, {}).losses_wh[0]
    twice = grid.flow({h: 1_000 for h in HOMES}, {}).losses_wh[0]
    assert once > 0 and twice == pytest.approx(4 * once, rel=0.1)


def test_a_long_sunny_feeder_leaves_the_voltage_band_and_overloads() -> None:
    homes = [f"home-{i}" for i in range(20)]
    grid = Grid.build(GridSpec(line_type="NAYY 4x50 SE", spacing_m=60.0), [homes])
    result = grid.flow({h: 2_000 for h in homes}, {})  # 8 kW each at noon
    assert result.v_max_pu[0] > 1.10 and result.max_loading_percent[0] > 100.0
    assert result.congested and not grid.flow({h: 100 for h in homes}, {}).congested


def test_unknown_equipment_is_one_clear_error() -> None:
    with pytest.raises(ConfigError) as info:
        Grid.build(GridSpec(line_type="copper wire"), [HOMES])
    assert str(info.value) == (
        "line_type 'copper wire' is not a pandapower standard line type; name one, e.g. 'NAYY 4x150 SE'"
    )
    with pytest.raises(ConfigError) as info:
        Grid.build(GridSpec(transformer_type="0.25 MVA 20/0.4kV"), [])  # (no feeder: checked too)
    assert str(info.value) == (
        "transformer_type '0.25 MVA 20/0.4kV' is not a pandapower standard transformer type; name one, "
        "e.g. '0.25 MVA 20/0.4 kV', '0.25 MVA 10/0.4 kV', '0.4 MVA 20/0.4 kV'"
    )
