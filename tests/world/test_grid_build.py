"""The feeders' net, created table by table, against the same net created one element at a time,
feeder by feeder and home by home: the same element tables, cell for cell, the same elements
for each home and feeder, and the same power flow as on pandapower's model after ``pp.runpp``."""

from __future__ import annotations

import functools
import random
import warnings
from typing import Any

import numpy as np
import pandapower as pp
import pandas as pd
import pytest
from scipy import sparse  # type: ignore[import-untyped]

from gridnet.world.grid import Grid, GridSpec, PowerFlow

SPEC = GridSpec()
TABLES = ("bus", "line", "trafo", "load", "sgen", "ext_grid")
SHAPES = {
    "1-home": [["home"]],
    "2x10": [[f"home-{f}-{i}" for i in range(10)] for f in range(2)],
    "3x100": [[f"home-{f}-{i}" for i in range(100)] for f in range(3)],
    "empty-feeder": [["a", "b"], [], ["c"]],
    "no-feeders": [],
}


@functools.cache
def one_at_a_time(shape: str) -> Any:
    """The net of ``SHAPES[shape]`` created element by element: the MV bus and its external grid,
    then per feeder its busbar and its transformer, and per home its bus, the cable to it, its
    load and its static generator; solved by ``pp.runpp``."""
    spec, feeders = SPEC, SHAPES[shape]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        net = pp.create_empty_network()
        mv = pp.create_bus(net, vn_kv=spec.mv_kv, name="MV")
        pp.create_ext_grid(net, mv, vm_pu=1.0)
        for f, homes in enumerate(feeders):
            previous = pp.create_bus(net, vn_kv=0.4, name=f"feeder-{f}")
            pp.create_transformer(net, mv, previous, std_type=spec.transformer_type)
            for name in homes:
                bus = pp.create_bus(net, vn_kv=0.4, name=name)
                pp.create_line(net, previous, bus, spec.spacing_m / 1000, std_type=spec.line_type)
                pp.create_load(net, bus, p_mw=0.0)
                pp.create_sgen(net, bus, p_mw=0.0)
                previous = bus
        pp.runpp(net, numba=False)
    return net


def cells(frame: pd.DataFrame) -> dict[str, list[str]]:
    """Every cell of a table as its repr: floats to the last digit, None, NaN and <NA> apart."""
    return {column: [repr(value) for value in frame[column].tolist()] for column in frame.columns}


def identical(ours: object, theirs: object) -> bool:
    """The same value to the bit: arrays (sparse ones by their storage), tuples of them, numbers."""
    if sparse.issparse(ours):
        return sparse.issparse(theirs) and all(
            identical(getattr(ours, part), getattr(theirs, part))
            for part in ("shape", "indptr", "indices", "data")
        )
    if isinstance(ours, np.ndarray):
        return (
            isinstance(theirs, np.ndarray)
            and (ours.dtype, ours.shape) == (theirs.dtype, theirs.shape)
            and ours.tobytes() == theirs.tobytes()
        )
    if isinstance(ours, tuple):
        return isinstance(theirs, tuple) and len(ours) == len(theirs) and all(map(identical, ours, theirs))
    return type(ours) is type(theirs) and ours == theirs


@pytest.mark.parametrize("shape", SHAPES)
def test_the_tables_are_those_of_creating_one_element_at_a_time(shape: str) -> None:
    grid, theirs = Grid.build(SPEC, SHAPES[shape]), one_at_a_time(shape)
    for table in TABLES:
        pd.testing.assert_frame_equal(grid.net[table], theirs[table], check_exact=True, obj=table)
        assert cells(grid.net[table]) == cells(theirs[table]), table
    # Each home's bus is the one of its name; its cable, load and static generator are those at it.
    bus = {name: index for index, name in theirs.bus["name"].items()}
    homes = [home for feeder in grid.feeders for home in feeder]
    assert list(grid.bus_of.items()) == [(home, bus[home]) for home in homes]
    for elements, table, column in ((grid.line_of, "line", "to_bus"), (grid.load_of, "load", "bus")):
        at = {b: index for index, b in theirs[table][column].items()}
        assert list(elements.items()) == [(home, at[bus[home]]) for home in homes], table
    assert grid.sgen_of == grid.load_of and theirs.sgen["bus"].tolist() == theirs.load["bus"].tolist()
    assert grid.feeder_lines == [[grid.line_of[home] for home in feeder] for feeder in grid.feeders]
    trafo_at = {b: index for index, b in theirs.trafo["lv_bus"].items()}
    assert grid.feeder_trafo == [trafo_at[bus[f"feeder-{f}"]] for f in range(len(grid.feeders))]


@pytest.mark.parametrize("shape", SHAPES)
def test_the_model_and_the_flows_are_those_after_runpp(shape: str) -> None:
    grid, net = Grid.build(SPEC, SHAPES[shape]), one_at_a_time(shape)
    assert identical(grid.net._pd2ppc_lookups["bus"], net._pd2ppc_lookups["bus"])
    assert grid.net._pd2ppc_lookups["branch"] == net._pd2ppc_lookups["branch"]
    if not grid.feeders:
        assert grid.power_flow is None
        return
    ours = grid.power_flow
    assert ours is not None
    theirs = PowerFlow(net._ppc["internal"], net._pd2ppc_lookups["bus"], net.bus.index[1:].tolist())
    assert vars(ours).keys() == vars(theirs).keys()
    for name, value in vars(ours).items():
        assert identical(value, getattr(theirs, name)), name
    rng = random.Random(len(grid.bus_of))
    for _ in range(5):
        s_mva = np.zeros(ours.buses, dtype=np.complex128)
        s_mva[grid.home_buses] = [rng.uniform(-0.002, 0.002) for _ in grid.home_buses]
        v = ours.solve(s_mva)
        assert identical(v, theirs.solve(s_mva))
        assert all(map(identical, ours.branches(v), theirs.branches(v)))
