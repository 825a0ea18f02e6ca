"""The figures of one run, read from the chain the run left and from what its agents know."""

from __future__ import annotations

import dataclasses
import functools
import math
from collections import Counter, defaultdict
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Final

from gridnet.agents.contracts import contracts_on_chain, deliveries
from gridnet.agents.dso import Dso
from gridnet.agents.home import Home
from gridnet.agents.line_owner import LineOwner
from gridnet.agents.security_lab import flagged_meters
from gridnet.agents.world import World
from gridnet.contracts.channel import contract_id
from gridnet.crypto.address import address_to_text
from gridnet.encoding import decode_lenient, encode
from gridnet.ledger.chain import Chain
from gridnet.ledger.transactions import Transaction
from gridnet.ledger.txs.aggregator import TRADE_RECORDS, TradeRecord
from gridnet.ledger.txs.contract import ContractRecord
from gridnet.ledger.txs.meter import METERS, READINGS, ReadingRecord, reading_key
from gridnet.ledger.txs.relay import ClaimTransit
from gridnet.meter.mqtt import MqttTelemetry
from gridnet.relay.claims import hop_payable
from gridnet.sim import series
from gridnet.sim.relaynet import CARRIER
from gridnet.sim.scenario import Scenario, gnc
from gridnet.units import INTERVAL_MS, UNITS_PER_GNC, Address, Interval, Wh, energy_cost

if TYPE_CHECKING:
    from gridnet.sim.neighbourhood import Neighbourhood

UNITS = UNITS_PER_GNC
REPORT_VERSION = 2
"""Bumped when a field of report.json changes meaning or goes away (new fields keep it)."""


def collector_report(world: World) -> dict[str, Any]:
    """How readings reached the collector, and those it dropped by reason (over MQTT: any
    client of the broker may publish; in memory nothing is dropped)."""
    dropped: Counter[str] = Counter()
    if isinstance(world.telemetry, MqttTelemetry):
        dropped.update(world.telemetry.dropped)
    if world.broker is not None:
        dropped["Oversize"] += world.broker.cut  # (the broker hung up on their senders)
    return {"telemetry": world.s.telemetry.kind, "dropped": dict(sorted((+dropped).items()))}


def build_report(
    sim: Neighbourhood, balances0: dict[Address, int], converged: bool, simulation_s: float
) -> dict[str, Any]:
    world = sim.world
    s = world.s
    chain = world.backend.chain()
    by_type: Counter[str] = Counter()
    chain_bytes = 0
    miners: dict[Address, int] = defaultdict(int)
    minted = fees_paid = 0
    claims: list[Transaction] = []
    for height in range(1, chain.height + 1):
        block = chain.block_at(height)
        assert block is not None
        chain_bytes += len(encode(block))
        by_type.update(type(t.payload).__name__ for t in block.txs)
        cb = block.txs[0].payload
        miners[block.header.miner] += cb.reward + cb.fees  # type: ignore[union-attr]
        minted += cb.reward  # type: ignore[union-attr]
        fees_paid += cb.fees  # type: ignore[union-attr]
        claims.extend(t for t in block.txs if isinstance(t.payload, ClaimTransit))
    view = chain.view()
    delta = {a: chain.account(a).balance - b for a, b in balances0.items()}
    homes = world.of(Home)
    dso = world.one(Dso)
    owners = world.of(LineOwner)
    prosumers = [h for h in homes if h.pv_kw]
    consumers = [h for h in homes if not h.pv_kw]

    def role_gnc(people: list[Any]) -> float:
        return round(sum(delta[p.address] for p in people) / UNITS, 6)

    intervals = range(world.first, world.last + 1)
    subsidised_by_home = {
        h.name: [
            r
            for i in intervals
            if (r := view.get(READINGS, reading_key(h.meter.meter_id, i))) is not None and r.subsidised
        ]
        for h in homes
        if h.meter
    }
    subsidised = [r for readings in subsidised_by_home.values() for r in readings]
    rows = series.home_rows(world)  # (once: the homes' and the economy's figures both read them)
    rate = gnc(s.government.subsidy)
    prices = [c["price"] for c in dso.clearing if c["price"] is not None]
    traded = [(p, c["traded_wh"] or 0) for c in dso.clearing if (p := c["price"]) is not None]
    traded_wh = sum(wh for _, wh in traded)
    exported = sum(world.metered(h, i)[0] for h in homes for i in intervals)
    delivered: Counter[str] = Counter()
    contracted: Counter[str] = Counter()
    records = contracts_on_chain(world)
    refused: set[bytes] = set()
    unpaid = 0
    for _, deal, wh, paid in deliveries(world, records):
        kind = "to_dso" if deal.buyer is dso else "from_dso" if deal.seller is dso else "p2p"
        delivered[kind] += paid  # (traded: what the chain paid for)
        contracted[kind] += deal.trade.wh
        unpaid += wh - paid
        if deal.cid not in records:
            refused.add(deal.cid)
    nodes = world.backend.node_figures()
    report: dict[str, Any] = {
        "schema_version": REPORT_VERSION,
        "scenario": {
            "name": s.simulation.name,
            "seed": s.simulation.seed,
            "source": s.source,
            "first_interval": world.first,
            "intervals": s.simulation.intervals,
            "start_utc": iso(world.first),
            "end_utc": iso(world.last + 1),
            "weather_filled_hours": world.weather_filled_hours,
            "resolved": resolved_scenario(s),
        },
        "energy": {
            "pv_wh": sum(sum(h.pv_wh) for h in homes),
            "load_wh": sum(sum(h.load_wh) for h in homes),
            "battery_losses_wh": sum(h.battery.lost_wh for h in homes if h.battery),
            "exported_wh": exported,
            "unsold_export_wh": exported - delivered["p2p"] - delivered["to_dso"] - granted_wh(chain),
            "p2p_wh": delivered["p2p"],
            "bought_from_dso_wh": delivered["from_dso"],
            "sold_to_dso_wh": delivered["to_dso"],
            "contracted_p2p_wh": contracted["p2p"],
            "curtailed_wh": sum(e.curtailed_wh for h in homes for e in h.real.values()),
            "contracts": sum(len(world.deals.get(i, [])) for i in intervals),
            "contracts_refused": len(refused),
            "unpaid_wh": unpaid,
            "paid_not_imported_wh": sum(
                max(
                    0,
                    r["bought_p2p_wh"]
                    + r["bought_dso_wh"]
                    + r["imbalance_wh"]
                    + r["bought_agg_wh"]
                    - r["import_wh"],
                )
                for r in rows
            ),
            "imported_unsold_wh": dso.from_area_wh,
        },
        "forecast": forecast_report(world, homes),
        "contracts": contracts_report(world, list(records.values()), homes, dso),
        "clearing_price": {
            "per_interval": [
                {
                    "interval": c["interval"],
                    "time_utc": iso(int(c["interval"] or 0)),
                    "price_gnc_per_kwh": None if c["price"] is None else c["price"] / UNITS,
                    **{k: c[k] for k in ("traded_wh", "bids", "offers", "bid_wh", "offer_wh")},
                }
                for c in dso.clearing
            ],
            "mean_gnc_per_kwh": round(sum(prices) / len(prices) / UNITS, 6) if prices else None,
            "traded_weighted_gnc_per_kwh": (
                round(sum(p * wh for p, wh in traded) / traded_wh / UNITS, 6) if traded_wh else None
            ),
            "currency": s.currency.name,
            "mean_per_mwh_in_currency": round(
                sum(prices) / len(prices) / UNITS * 1000 * s.currency.per_gnc, 4
            )
            if prices
            else None,
        },
        "currency": {"name": s.currency.name, "per_gnc": s.currency.per_gnc},
        "revenue_gnc": {
            "prosumers": role_gnc(prosumers),
            "consumers": role_gnc(consumers),
            "line_owners": role_gnc(owners),
            "dso": role_gnc([dso]),
            "government": role_gnc([world.with_role("government")]),
            "miners": round(sum(miners.values()) / UNITS, 6),
        },
        "subsidies": {
            "readings_subsidised": len(subsidised),
            "paid_gnc": round(sum(energy_cost(r.exported_wh, rate) for r in subsidised) / UNITS, 6),
        },
        "relay": relay_report(world, claims),
        "security": {
            "flagged_meters": len(flagged_meters(world)),
            "trusting_homes": sum(1 for h in homes if h.policy.trusted.get("meters")),
            "flags_on_chain": by_type.get("PublishFlag", 0),
        },
        "dso": {
            "commands": len(dso.commands),
            "commands_by_kind": dict(
                Counter(("curtail_export", "limit_import", "disconnect")[c.kind] for c in dso.commands)
            ),
            "first_command_utc": iso(dso.commands[0].first_interval) if dso.commands else None,
            "homes_commanded": len({m for c in dso.commands for m in c.meters}),
            "overrides_recorded": by_type.get("RecordOverride", 0),
            "homes_following_commands": sum(1 for h in homes if h.commands),
        },
        "chain": {
            "height": chain.height,
            "head": chain.head.hash.hex(),
            "blocks": chain.height,
            "bytes": chain_bytes,
            "transactions_by_type": dict(sorted(by_type.items())),
        },
        "converged": converged,
        "collector": collector_report(world),
        "transactions": {
            "submitted": dict(world.tally.submitted),
            "resubmitted": world.tally.resubmitted,
            "refused": dict(world.tally.refused),
            "refused_by": {
                rule: dict(who.most_common()) for rule, who in sorted(world.tally.refused_by.items())
            },
            "abandoned": world.tally.abandoned,
            "orders_refused": dict(world.tally.orders_refused),
        },
        "nodes": nodes,
        "timing": {
            "simulation_s": round(simulation_s, 2),
            "verifying_s": round(sum(n.get("validation_s", 0.0) for n in nodes.values()), 3),
            "power_flow_s": round(world.grid.seconds if world.grid else 0.0, 4),
        },
        "grid": grid_report(world, owners, delta),
        "homes": homes_report(world, homes, rows, subsidised_by_home, records),
        "economy": economy_report(rows, minted, fees_paid, chain.height),
        "participants": {
            "homes": len(homes),
            "prosumers": len(prosumers),
            "with_battery": sum(1 for h in homes if h.battery),
            "line_owners": len(owners),
            "meters_registered": sum(
                1
                for a in world.agents
                if a.meter is not None and view.get(METERS, a.meter.meter_id) is not None
            ),
            "authorities": {
                address_to_text(world.with_role(r).address): world.with_role(r).name
                for r in ("manufacturer", "dso", "government", "security")
            },
        },
    }
    extra = {r.name: r.report(world, sim.by_role[r.name]) for r in sim.roles if r.report is not None}
    if extra:
        report["roles"] = extra
    return report


def iso(interval: Interval) -> str:
    """Start of ``interval`` as an ISO 8601 UTC time."""
    return datetime.fromtimestamp(interval * INTERVAL_MS / 1000, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _plain(value: Any) -> Any:
    """``dataclasses.asdict`` of a scenario (dataclasses, lists, tuples, dicts and plain
    values) without its deep copy of every value: a sweep resolves each of its (up to
    10,000) runs' scenarios, and asdict was the most of its loading time."""
    kind: type = type(value)
    if kind in _SCALARS:
        return value
    names = _field_names(kind)
    if names is not None:
        return {name: _plain(getattr(value, name)) for name in names}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if isinstance(value, tuple):
        return tuple(_plain(v) for v in value)
    if isinstance(value, dict):
        return {_plain(k): _plain(v) for k, v in value.items()}
    return value


_SCALARS: Final = frozenset({int, float, str, bool, type(None)})


@functools.cache
def _field_names(kind: type) -> tuple[str, ...] | None:
    """A dataclass's fields' names (None: no dataclass)."""
    return tuple(f.name for f in dataclasses.fields(kind)) if dataclasses.is_dataclass(kind) else None


def resolved_scenario(s: Scenario) -> dict[str, Any]:
    """Every value the run used, defaults included (money in GNC/kWh as in the file)."""
    out: dict[str, Any] = _plain(s)
    out.pop("source")
    out["line_owner"] = out.pop("line_owners")
    out.update(out.pop("tables"))
    return out


HOME_TOTALS = (
    "load_wh",
    "pv_wh",
    "import_wh",
    "export_wh",
    "curtailed_wh",
    "bought_p2p_wh",
    "sold_p2p_wh",
    "bought_dso_wh",
    "sold_dso_wh",
    "imbalance_wh",
    "bought_agg_wh",
    "sold_agg_wh",
)


def homes_report(
    world: World,
    homes: list[Home],
    rows: list[dict[str, Any]],
    subsidised: dict[str, list[ReadingRecord]],
    records: dict[bytes, ContractRecord],
) -> list[dict[str, Any]]:
    """Each home's day: energy, bill, savings against buying all its load from the DSO at its
    retail price, self-consumption, the subsidy it received and the deposits still locked in
    its contracts that are open at the end (``rows``: the homes' time series,
    ``sim.series.home_rows``; ``subsidised``: each home's subsidised readings; ``records``:
    the contracts on chain)."""
    locked: Counter[bytes] = Counter()
    for r in records.values():
        if not r.closed:
            locked[r.terms.buyer] += r.remaining
    totals: dict[str, Counter[str]] = defaultdict(Counter)
    for row in rows:
        c = totals[row["home"]]
        for key in HOME_TOTALS:
            c[key] += row[key]
    paid, earned = _money(rows, "paid_gnc"), _money(rows, "earned_gnc")
    rate = gnc(world.s.government.subsidy)
    retail = world.s.dso.sell_price
    out = []
    for h in homes:
        c = totals[h.name]
        subsidy = sum(energy_cost(r.exported_wh, rate) for r in subsidised.get(h.name, []))
        bill = (paid[h.name] - earned[h.name]) / UNITS
        baseline = c["load_wh"] / 1000 * retail
        used_on_site = c["pv_wh"] - c["export_wh"] - c["curtailed_wh"]
        out.append(
            {
                "name": h.name,
                "business": h.business,
                "pv_kw": h.pv_kw,
                "battery_kwh": round(h.battery.capacity_wh / 1000, 2) if h.battery else 0.0,
                "annual_kwh": h.annual_kwh,
                "load_profile": h.load_profile,
                "feeder": h.feeder,
                **{k: c[k] for k in HOME_TOTALS},
                "paid_gnc": paid[h.name] / UNITS,  # (exact: base units, summed as economy's are)
                "earned_gnc": earned[h.name] / UNITS,
                "bill_gnc": bill,
                "all_from_dso_gnc": round(baseline, 6),
                "savings_gnc": round(baseline - bill, 6),
                "self_consumption_percent": round(100 * max(0, used_on_site) / c["pv_wh"], 1)
                if c["pv_wh"]
                else None,
                "subsidy_gnc": round(subsidy / UNITS, 6),
                "locked_gnc": round(locked[h.address] / UNITS, 8),
            }
        )
    return out


def _money(rows: list[dict[str, Any]], key: str) -> Counter[str]:
    """Each home's sum of ``key`` over its rows [base units]: the rows' GNC are whole base
    units (``sim.series``), summed as integers, so that the homes' figures and their total
    (``economy``) are exact and the total is the sum of the homes' (each rounded apart to 6
    decimals, the two differed in the last: 0.867983 against 0.867984)."""
    out: Counter[str] = Counter()
    for row in rows:
        out[row["home"]] += round(row[key] * UNITS)
    return out


def economy_report(rows: list[dict[str, Any]], minted: int, fees: int, blocks: int) -> dict[str, Any]:
    """The energy economy beside the coin the chain itself creates (``rows``: the homes' time
    series)."""
    earned = sum(_money(rows, "earned_gnc").values()) / UNITS  # what the homes were paid for energy
    spent = sum(_money(rows, "paid_gnc").values()) / UNITS  # what the homes paid, line fees included
    per_block = minted / blocks / UNITS if blocks else 0.0
    return {
        "homes_paid_gnc": spent,
        "homes_earned_gnc": earned,
        "block_subsidy_gnc": round(minted / UNITS, 6),
        "block_subsidy_per_block_gnc": round(per_block, 6),
        "transaction_fees_gnc": round(fees / UNITS, 6),
        "note": (
            f"The miners' coin is the block subsidy: {per_block:,.2f} GNC minted with each of the "
            f"{blocks} blocks (the chain's issuance, set by its genesis), paid for securing the ledger "
            "whatever is traded on it: new coin, taken from nobody. The energy economy is what the "
            f"participants paid each other: the homes paid {spent:,.2f} GNC for energy and line fees "
            f"and were paid {earned:,.2f} GNC for theirs; transaction fees gave the miners "
            f"{fees / UNITS:,.4f} GNC more."
        ),
    }


def forecast_report(world: World, homes: list[Home]) -> dict[str, Any]:
    """How far the devices' forecasts were from what the meters read."""
    planned = sum(abs(p.export_wh - p.import_wh) for h in homes for p in h.plans.values())
    error = sum(
        abs((p.export_wh - p.import_wh) - (h.real[i].export_wh - h.real[i].import_wh))
        for h in homes
        for i, p in h.plans.items()
        if i in h.real
    )
    return {
        "error": world.s.homes.forecast_error,
        "net_energy_abs_error_wh": error,
        "net_energy_abs_error_percent": round(100 * error / planned, 1) if planned else 0.0,
    }


def contracts_report(
    world: World, records: list[ContractRecord], homes: list[Home], dso: Dso
) -> dict[str, Any]:
    """What became of every contract on chain: settled in full, short (closed with a
    remainder), disputed, still open at the end; and the shortfall homes bought from the DSO at
    the imbalance price."""
    balancing = {contract_id(b.terms) for h in homes for b in h.balancing.values()}
    market = [r for r in records if contract_id(r.terms) not in balancing]
    balancing_records = [r for r in records if contract_id(r.terms) in balancing]
    disputes = {cid: wh for a in world.agents for cid, wh in a.disputes.items()}
    by_id = {contract_id(r.terms): r for r in records}
    resolved = sum(1 for cid, wh in disputes.items() if cid in by_id and by_id[cid].paid_wh == wh)
    imbalance_units = sum(energy_cost(r.paid_wh, r.terms.price) for r in balancing_records)
    return {
        "opened": len(market),
        "settled_in_full": sum(1 for r in market if r.paid_wh == r.terms.max_wh),
        "delivered_short": sum(1 for r in market if r.paid_wh < r.terms.max_wh),
        "closed_with_remainder": sum(1 for r in market if r.closed),
        "open_at_end": sum(1 for r in market if not r.closed and r.remaining),  # (a deposit held)
        "remainder_refunded_gnc": round(
            sum(energy_cost(r.terms.max_wh - r.paid_wh, r.terms.price) for r in market if r.closed) / UNITS, 6
        ),
        "disputes_raised": len(disputes),
        "disputes_resolved": resolved,
        "imbalance": {
            "price_gnc_per_kwh": world.s.dso.imbalance_price,
            "balancing_contracts": len(balancing_records),
            "shortfall_wh": dso.shortfall_wh,
            "bought_wh": sum(r.paid_wh for r in balancing_records),
            "paid_gnc": round(imbalance_units / UNITS, 6),
            "closed": sum(1 for r in balancing_records if r.closed),
        },
    }


def grid_report(world: World, owners: list[LineOwner], delta: dict[Address, int]) -> dict[str, Any]:
    grid, tally = world.grid, world.tally
    assert grid is not None
    out = []
    for f, owner in enumerate(owners):
        losses_cost = tally.losses_wh[f] * owner.loss_price / 1000
        out.append(
            {
                "name": owner.name,
                "homes": len(grid.feeders[f]),
                "losses_wh": round(tally.losses_wh[f], 1),
                "transformer_losses_wh": round(tally.transformer_losses_wh[f], 1),
                "max_loading_percent": round(tally.max_loading[f], 1),
                "v_min_pu": round(tally.v_min[f], 4) if math.isfinite(tally.v_min[f]) else None,
                "v_max_pu": round(tally.v_max[f], 4) if math.isfinite(tally.v_max[f]) else None,
                "fee_gnc_per_kwh": owner.quote() / UNITS,
                "cover_losses": owner.cover_losses,
                "losses_cost_gnc": round(losses_cost / UNITS, 6),
                "fees_earned_gnc": round(delta.get(owner.address, 0) / UNITS, 6),
            }
        )
    return {"line_owners": out, "congested_intervals": tally.congested_intervals}


def relay_report(world: World, claims: list[Transaction]) -> dict[str, Any]:
    """What carrying the data cost and paid: from the claims on chain."""
    rn = world.relaynet
    if rn is None:
        return {"enabled": False}
    earned: dict[str, int] = defaultdict(int)
    paid: dict[tuple[bytes, bytes], int] = defaultdict(int)
    claim_bytes = fees = covered = hop_claims = 0
    connections: set[bytes] = set()
    names = {k.address: name for name, k in rn.keys.items()}
    unit_value = gnc(world.s.relay.pool_gnc) // rn.pool_length
    for tx in claims:
        assert isinstance(tx.payload, ClaimTransit)
        if tx.payload.claim is not None:  # a receiver's: one per connection (per step of a long one)
            connections.add(tx.payload.claim.claim.token.token.pool)
            covered += tx.payload.claim.claim.datagrams
        for hop in tx.payload.hops:  # a relay's: what it was owed, less what it was paid
            relay = hop.ticket.entry.relay
            key = (hop.token.token.pool, relay)
            due = hop_payable(hop.ticket.entry.credit, unit_value)
            earned[names[relay]] += due - paid[key]
            paid[key] = due
            hop_claims += 1
        claim_bytes += len(encode(tx))
        fees += tx.fee
    hops_seen = rn.tally.hops
    dropped: Counter[str] = Counter()
    for peer in rn.peers.values():
        dropped.update(peer.stats.dropped)
    per_connection = claim_bytes / len(connections) if connections else 0.0
    per_datagram = claim_bytes / covered if covered else 0.0
    return {
        "enabled": True,
        "datagrams_sent": rn.tally.sent,
        "datagrams_delivered": len(hops_seen),
        "late_orders": world.one(Dso).late_orders,
        "dropped": dict(dropped),
        "mean_hops": round(sum(hops_seen) / len(hops_seen), 3) if hops_seen else 0.0,
        "carrier_forwarded": rn.peers[CARRIER].stats.forwarded,
        "claims_on_chain": len(claims),
        "connections_claimed": len(connections),
        "hop_claims": hop_claims,
        "datagrams_per_claim": round(covered / len(connections), 1) if connections else 0.0,
        "reward_per_relay_gnc": {k: v / UNITS for k, v in sorted(earned.items())},
        "claim_fees_gnc": fees / UNITS,
        "chain_bytes_per_datagram": round(per_datagram, 2),
        "one_claim_per_datagram_bytes": round(per_connection, 1),
        "bytes_saving_factor": round(per_connection / per_datagram, 1) if per_datagram else 0.0,
    }


def granted_wh(chain: Chain) -> Wh:
    """The export sold through the aggregators: the energy their trade records on ``chain``
    granted (AEG). Not everything a buyer received otherwise: a Helios release is energy
    imported, not exported."""
    prefix = TRADE_RECORDS.prefix
    return sum(decode_lenient(v, TradeRecord).aeg_wh for k, v in chain.values.items() if k[:1] == prefix)
