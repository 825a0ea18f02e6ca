"""The main job: one neighbourhood trading energy peer to peer on the ledger.

The participants are agents (``gridnet.agents``: homes, the DSO, line owners, the
government, the meter manufacturer and security lab, the reading collector, the carrier),
each acting only through its node and the data network. This module is the scheduler: it
builds every role's agents, starts the nodes on the genesis they fund, advances the clock
and lets every agent act, interval by interval, in the phases of ``agents.base``:

1. the interval that just ended: devices measure it and meters publish signed readings;
   the grid's power flow runs on them; the DSO and line owners read the results; the
   collector puts the readings on chain; buyers acknowledge what was delivered;
2. the interval after next: every home orders on its forecast; ten minutes later the hub
   clears the auction into signed contracts.

At the end of the day: subsidies and the data relays' claims. Everything is real —
signatures, proof-of-work, SQLite, the state transition — except the clock. The same
scenario and seed give the same chain and the same figures.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

import msgspec

from gridnet.agents.base import Agent
from gridnet.agents.roles import Role, roles
from gridnet.agents.world import World
from gridnet.crypto.keys import PrivateKey
from gridnet.ledger.chain import Chain, now_ms
from gridnet.ledger.params import (
    CONSENSUS_POA,
    MARKET_MODES,
    PRICINGS,
    ChainParams,
    Validator,
    default_params,
    validate_params,
)
from gridnet.net.memory import MemoryNetwork
from gridnet.node.clock import Clock
from gridnet.node.devnet import Devnet
from gridnet.node.node import Node, NodeConfig
from gridnet.sim import series
from gridnet.sim.backends import Backend, DevnetBackend, MemoryBackend
from gridnet.sim.output import audit, audit_beside, made_for_the_run, staged_out_dir, write_report
from gridnet.sim.report import build_report
from gridnet.sim.scenario import BOOTSTRAP_MS, Scenario, input_files
from gridnet.system import fewer_gc_passes
from gridnet.units import Address, Interval, interval_start
from gridnet.work import target_from_bits, target_to_bytes

CLEAR_AFTER_MS = 10 * 60_000
"""The hub clears an interval's auction this long after the orders are sent."""
MIN_TRAVEL_MS = 60_000
"""... and never less than this after (a devnet driver running late)."""
STEP_MS = 60_000
"""Agents act (and deferred actions are tried) once per simulated minute."""
SETTLE_MS = 2_000
"""How long ``finish`` lets a block just sealed travel before it compares heads again."""
NODE_TICK_S = 0.1
"""A node process ticks (and mines a round of hashes) this often [real s]."""
CLOSED_PHASES = ("measure", "balance", "collect", "acknowledge")
"""What happens, in order, for the interval that just ended (the power flow after ``measure``)."""

Progress = Callable[[int, int], None]


class Neighbourhood:
    def __init__(self, scenario: Scenario, connect: Callable[[ChainParams], Backend]) -> None:
        """``connect(params)`` starts the nodes on the scenario's genesis: the backend the
        agents act through (``memory_network`` or a devnet)."""
        self.s = scenario
        self.world = World(scenario)
        self.roles: list[Role] = roles()
        self.by_role: dict[str, list[Agent]] = {}
        try:
            for role in self.roles:
                agents = list(role.build(self.world))
                self.by_role[role.name] = agents
                self.world.add(agents)
            for role in self.roles:  # (before the nodes start: --out is still untouched)
                if role.check is not None:
                    role.check(self.world)
            params = self._params()  # (a genesis it refuses is refused before the grid is built)
            self.world.build_grid()
            self.world.connect(params, connect(params))
        except BaseException:
            self.world.close()
            raise
        for agent in self.world.agents:
            agent.attach(self.world)

    @property
    def first(self) -> Interval:
        return self.world.first

    def _params(self) -> ChainParams:
        s, world = self.s, self.world
        allocations = tuple(a for agent in world.agents for a in agent.allocations(world))
        named: dict[str, tuple[bytes, ...]] = {}
        for agent in world.agents:
            for name, addresses in agent.genesis(world).items():
                named[name] = named.get(name, ()) + addresses
        base = msgspec.structs.replace(default_params(allocations), **named)
        bits = s.chain.difficulty_bits
        # Contracts use the scenario's dispute window: the chain allows it, and unbonding outlasts it.
        disputes = max(base.max_dispute_window, s.chain.dispute_window_blocks)
        params = msgspec.structs.replace(
            base,
            name=f"gridnet-{s.simulation.name}",
            genesis_time=interval_start(world.first) - BOOTSTRAP_MS,
            block_interval_ms=round(s.chain.block_interval_s * 1000),
            initial_target=target_to_bytes(target_from_bits(bits)),
            pow_limit=target_to_bytes(target_from_bits(max(1, bits - 4))),
            identity_target=target_to_bytes(target_from_bits(s.chain.identity_difficulty_bits)),
            max_dispute_window=disputes,
            unbonding_delay=max(base.unbonding_delay, disputes + 1),
            market_mode=MARKET_MODES.index(s.chain.market),
            auction_close_ms=round(s.chain.auction_close_s * 1000),
            auction_pricing=PRICINGS.index(s.chain.pricing),
        )
        if s.chain.consensus == "poa":
            members = (Validator(node_key(s, i).public_key, 1) for i in range(s.network.nodes))
            params = msgspec.structs.replace(
                params,
                consensus=CONSENSUS_POA,
                validators=tuple(sorted(members, key=lambda v: v.key)),
            )
        return validate_params(params, f"scenario {s.simulation.name}")

    def phase(self, name: str, interval: Interval) -> None:
        for agent in self.world.agents:
            getattr(agent, name)(self.world, interval)

    def run(self, progress: Progress | None = None) -> dict[str, Any]:
        started = time.perf_counter()
        world = self.world
        assert world.params is not None
        balances0: dict[Address, int] = {}
        for a in world.params.allocations:
            balances0[a.address] = balances0.get(a.address, 0) + a.amount
        for agent in world.agents:
            agent.bootstrap(world)
            balances0.setdefault(agent.address, 0)
        world.run_until(interval_start(world.first - 1))
        n = self.s.simulation.intervals
        intervals = [world.first + k for k in range(n)]
        # The interval before the first is spent ordering for the first.
        for k, interval in enumerate([world.first - 1, *intervals]):
            if k > 1:
                self.close_interval(interval - 1)
            nxt = interval + 1
            if nxt <= world.last:
                self.phase("order", nxt)
                # Orders travel to the hub (for at least MIN_TRAVEL_MS when the driver is late).
                world.run_until(max(interval_start(interval) + CLEAR_AFTER_MS, world.now() + MIN_TRAVEL_MS))
                self.phase("clear", nxt)
            world.run_until(interval_start(nxt))
            if progress is not None and k:
                progress(k, n)
        self.close_interval(intervals[-1])
        self.last_datagrams()
        for agent in world.agents:
            agent.day_end(world, intervals)  # (the receivers end their connections: claims)
        converged = self.finish()  # the receivers' claims are on chain
        for agent in world.agents:
            agent.wrap_up(world)
        converged = self.finish() and converged
        simulation_s = time.perf_counter() - started
        world.backend.stop()
        return build_report(self, balances0, converged, simulation_s)

    def last_datagrams(self) -> None:
        """Let the last datagrams arrive before the receivers claim their connections at the
        day's end: the last interval's contract and balancing states, the DSO's last commands
        (a datagram delivered after its receiver's claim is in none, and its relays are not
        paid for it). With relays, until none is on its way (or held for the carrier), within
        two of the carrier's rounds past the usual wait."""
        world = self.world
        world.run_for(CLEAR_AFTER_MS)
        rn = world.relaynet
        if rn is None:
            return
        deadline = world.now() + 2 * rn.carrier_round_ms(STEP_MS)
        while rn.in_flight() > 0 and world.now() < deadline:
            world.run_for(STEP_MS)

    def close_interval(self, interval: Interval) -> None:
        self.phase("measure", interval)
        self.world.power_flow(interval)
        for name in CLOSED_PHASES[1:]:
            self.phase(name, interval)

    def write_results(self, out: Path, report: dict[str, Any], csv: bool) -> None:
        """The run's time series in ``out/series/`` (``sim.series``) and its plots in
        ``out/plots/`` (``sim.plots``); the report says where."""
        pay = report["relay"].get("reward_per_relay_gnc", {})
        tables = series.tables(self.world, pay)
        report["series"] = series.write_series(out, tables, csv)
        from gridnet.sim import plots  # (matplotlib loads only when a run draws)

        g = self.s.grid
        limits = {
            "max_loading_percent": g.max_loading_percent,
            "v_min_pu": g.v_min_pu,
            "v_max_pu": g.v_max_pu,
        }
        report["plots"] = plots.write_plots(out, tables, report, limits)

    def finish(self, max_ms: int = 6 * 3600 * 1000) -> bool:
        """Let the nodes mine until every deferred action is done, mempools are empty and
        all nodes agree (bounded)."""
        world = self.world
        deadline = world.now() + max_ms
        while world.now() < deadline:
            world.run_for(STEP_MS)
            if world.actions:
                continue
            if world.backend.settled():
                return True
            assert world.params is not None
            if not world.params.permissioned:
                continue
            # A permissioned chain seals on the slot's start, which a step may end on: the
            # block is then on its way to the others. Look again once it has arrived.
            world.run_for(SETTLE_MS)
            if world.backend.settled():
                return True
        return False

    def close(self) -> None:
        """Stop what the simulation started (nodes and chains, MQTT clients and broker)."""
        self.world.close()


def node_key(s: Scenario, i: int) -> PrivateKey:
    """Node ``i``'s key: it mines to its address, or on a permissioned chain validates."""
    return PrivateKey.from_label(f"{s.simulation.name}/miner-{i}")


def memory_network(s: Scenario, out: Path) -> Callable[[ChainParams], Backend]:
    """Mining (or, on a permissioned chain, validating) full nodes on the in-memory network:
    ``out/chain`` (n0) and ``out/nodes/n1..``."""

    def connect(params: ChainParams) -> Backend:
        net = MemoryNetwork(
            start_ms=params.genesis_time,
            latency_ms=s.network.latency_ms,
            jitter_ms=s.network.jitter_ms,
            seed=s.simulation.seed,
        )
        for i in range(s.network.nodes):
            data_dir = out / "chain" if i == 0 else out / "nodes" / f"n{i}"
            key = node_key(s, i)
            config = NodeConfig(
                miner=key.address,
                validator=key if params.permissioned else None,
                hashes_per_tick=s.network.hashes_per_tick,
                template_refresh_ms=30_000,
                status_interval_ms=30_000,
            )
            net.add(Node(f"n{i}", Chain.create(data_dir, params), config))
        net.link_all()
        return MemoryBackend(net, round(s.network.tick_s * 1000))

    return connect


def simulate(
    scenario: Scenario,
    out: Path,
    progress: Progress | None = None,
    *,
    csv: bool = False,
    reads: Mapping[str, Path] | None = None,
) -> dict[str, Any]:
    """Run ``scenario``, write ``out/report.json``, ``out/series/`` (Parquet; CSV too with
    ``csv``), ``out/plots/`` and ``out/chain/``; returns the report. ``reads``: the files the
    run reads, which ``out`` may not hold (default: the scenario file and those it names).
    What ``out`` held is replaced only once all of it is written (``staged_out_dir``)."""
    inputs = input_files(scenario) if reads is None else reads
    # (refused before any work; written once the scenario builds, replaced once complete)
    with made_for_the_run(out), staged_out_dir(out, "simulate", inputs=inputs) as staged:

        def connect(params: ChainParams) -> Backend:
            return memory_network(scenario, staged.begin())(params)

        with fewer_gc_passes():
            sim = Neighbourhood(scenario, connect)
            try:
                with audit_beside(staged.path / "chain") as audited:  # (on another core, when there is one)
                    report = sim.run(progress)
                    sim.write_results(staged.path, report, csv)
                    report["verify"] = audited()
            finally:
                sim.close()  # chains, MQTT clients and the broker, whatever happened
        report["timing"]["audit_s"] = report["verify"]["seconds"]
        write_report(staged.path, report)
    return report


def devnet_network(
    s: Scenario,
    out: Callable[[], Path],
    nodes: int,
    speed: float,
    on_start: Callable[[Devnet], None] | None = None,
) -> Callable[[ChainParams], Backend]:
    """``nodes`` node processes on 127.0.0.1 (in ``out()``: ``n0..``) on one scenario clock
    running ``speed`` times faster than real time, at the scenario's simulated hash rate."""

    def connect(params: ChainParams) -> Backend:
        sim_hash_rate = s.network.nodes * s.network.hashes_per_tick / s.network.tick_s  # per clock second
        per_tick = sim_hash_rate * speed * NODE_TICK_S / nodes
        clock = Clock(params.genesis_time + 1_000, now_ms(), speed)
        devnet = Devnet(out(), nodes, hashes_per_tick=max(1, round(per_tick)), params=params, clock=clock)
        backend = DevnetBackend(devnet, act_every_ms=max(STEP_MS, clock.span(500)))
        try:
            devnet.start()
            if on_start is not None:
                on_start(devnet)
            backend.wait_linked(timeout_s=180)
        except BaseException:
            backend.close()
            raise
        return backend

    return connect


def simulate_on_devnet(
    scenario: Scenario,
    out: Path,
    nodes: int,
    speed: float,
    progress: Progress | None = None,
    on_start: Callable[[Devnet], None] | None = None,
    *,
    csv: bool = False,
) -> dict[str, Any]:
    """Run ``scenario`` on a devnet of node processes driven through their HTTP APIs; write
    ``out/report.json``, ``out/series/`` and ``out/plots/``; every process is stopped at the
    end, whatever happens. The same agents act as on the in-memory network; relays are not
    simulated here (orders travel as the nodes' order gossip, DSO commands are read from the
    DSO's node, contract states are handed to their sellers). What ``out`` held is replaced
    only once all of it is written (``staged_out_dir``)."""
    # (refused before the scenario builds; written once the devnet starts, replaced once complete)
    with made_for_the_run(out), staged_out_dir(out, "devnet", inputs=input_files(scenario)) as staged:
        connect = devnet_network(scenario, staged.begin, nodes, speed, on_start)
        scenario = replace(
            scenario,
            network=replace(scenario.network, nodes=nodes),
            relay=replace(scenario.relay, enabled=False),
        )
        sim = Neighbourhood(scenario, connect)
        try:
            report = sim.run(progress)
            sim.write_results(staged.path, report, csv)
        finally:
            sim.close()
        report["verify"] = audit(staged.path / "n0")
        report["timing"]["audit_s"] = report["verify"]["seconds"]
        report["devnet"] = {"nodes": nodes, "speed": speed, "relays": "not simulated on a devnet"}
        write_report(staged.path, report)
    return report
