"""``gridnet dashboard OUT``: one run's results in a browser.

Server-rendered pages (FastAPI and Jinja2), htmx for the pickers that swap a panel in, and
Chart.js for the charts; every script and style is served from this package (no CDN), so
the dashboard works offline. Pages: overview, market, homes, grid, and a chain explorer
(blocks, transactions, accounts, meters and their readings, contracts and their states,
flags, token pools and claims) over the run's chain, opened read-only.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse
from starlette.exceptions import HTTPException

from gridnet.contracts.channel import contract_id
from gridnet.crypto.address import address_from_text, address_to_text
from gridnet.dashboard.pages import error_pages, new_app, unexpected_data_pages
from gridnet.dashboard.run import RunResults, when
from gridnet.encoding import decode_lenient
from gridnet.errors import InvalidAddress, RunDamaged
from gridnet.ledger.blocks import block_hash
from gridnet.ledger.state import IDENTITIES, Table
from gridnet.ledger.transactions import tx_id
from gridnet.ledger.txs.authority import AUTHORITIES, FLAGS
from gridnet.ledger.txs.contract import CONTRACTS, SettleContract
from gridnet.ledger.txs.grid import OVERRIDES
from gridnet.ledger.txs.meter import METERS, READINGS, reading_key
from gridnet.ledger.txs.relay import POOLS, ClaimTransit
from gridnet.node.api.common import record
from gridnet.sim.mix import MIX_PARTS, energy_mix
from gridnet.units import UNITS_PER_GNC

NAV = [("/", "Overview"), ("/market", "Market"), ("/homes", "Homes"), ("/grid", "Grid"), ("/chain", "Chain")]
BLOCKS_PAGE = 50
COLOURS = ["#3182bd", "#e6550d", "#31a354", "#756bb1", "#636363", "#de2d26", "#9ecae1", "#fdae6b"]


def hhmm(time: Any) -> str:
    return str(time.strftime("%H:%M")) if time is not None else ""


def chart(kind: str, labels: list[str], datasets: list[dict[str, Any]], **options: Any) -> str:
    """A Chart.js configuration (for a canvas's ``data-chart``) over the run's intervals, labelled
    by their start in UTC (``hhmm``; a run's local time may be hours off)."""
    scales = options.setdefault("scales", {})
    scales.setdefault("x", {}).setdefault("title", {"display": True, "text": "interval start (UTC)"})
    return json.dumps({"type": kind, "data": {"labels": labels, "datasets": datasets}, "options": options})


def line(label: str, values: list[Any], colour: str, **extra: Any) -> dict[str, Any]:
    return {
        "label": label,
        "data": values,
        "borderColor": colour,
        "backgroundColor": colour,
        "pointRadius": 0,
        "borderWidth": 1.5,
        **extra,
    }


def create_dashboard(out: Path) -> FastAPI:
    """The dashboard of the run in ``out`` (its chain is opened when the app starts). A run
    whose report or series are refused then (``RunDamaged``: ``gridnet dashboard`` says so
    before it serves, but they may change before the app starts) has every page say so."""
    holder: dict[str, RunResults] = {}
    refused: list[RunDamaged] = []

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> Any:
        try:
            holder["run"] = RunResults.open(out)
        except RunDamaged as exc:
            refused.append(exc)
        try:
            yield
        finally:
            if "run" in holder:
                holder.pop("run").close()

    app, templates = new_app("GRIDNET dashboard", lifespan=lifespan)

    def run() -> RunResults:
        if refused:
            raise refused[0]
        return holder["run"]

    def page(request: Request, name: str, here: str, title: str, **context: Any) -> HTMLResponse:
        r = holder.get("run")
        label = r.report["scenario"]["name"] if r is not None else "run"
        context.update(nav=NAV, here=here, title=title, run_name=f"{label} · {out}")
        return templates.TemplateResponse(request, name, context)

    def missing(what: str) -> HTTPException:
        return HTTPException(status_code=404, detail=what)

    # --- overview ------------------------------------------------------------------------

    @app.get("/", response_class=HTMLResponse)
    def overview(request: Request) -> HTMLResponse:
        report = run().report
        e, c, economy = report["energy"], report["contracts"], report["economy"]
        mean = report["clearing_price"]["mean_gnc_per_kwh"]
        figures = [
            ("pv-kwh", "PV produced [kWh]", f"{e['pv_wh'] / 1000:,.1f}"),
            ("load-kwh", "load [kWh]", f"{e['load_wh'] / 1000:,.1f}"),
            ("p2p-kwh", "delivered peer to peer [kWh]", f"{e['p2p_wh'] / 1000:,.1f}"),
            ("dso-kwh", "bought from the DSO [kWh]", f"{e['bought_from_dso_wh'] / 1000:,.1f}"),
            ("contracts", "energy contracts", f"{e['contracts']:,}"),
            ("short", "delivered short (closed)", f"{c['delivered_short']:,}"),
            ("disputes", "disputes resolved on chain", f"{c['disputes_resolved']:,}"),
            ("mean-price", "mean clearing price [GNC/kWh]", "none" if mean is None else f"{mean:.4f}"),
            ("commands", "DSO commands", f"{report['dso']['commands']:,}"),
            ("blocks", "blocks", f"{report['chain']['height']:,}"),
            ("block-subsidy", "block subsidy minted [GNC]", f"{economy['block_subsidy_gnc']:,.0f}"),
            (
                "converged",
                "converged and audited",
                "yes" if report["converged"] and report["verify"]["ok"] else "NO",
            ),
        ]
        market = run().series.get("market", [])
        revenue = [(k, v) for k, v in report["revenue_gnc"].items() if k != "miners"]
        return page(
            request,
            "overview.html",
            "/",
            "Overview",
            scenario=report["scenario"],
            participants=report["participants"],
            figures=figures,
            prices_chart=_prices_chart(market),
            mix_chart=_mix_chart(run().series.get("homes", [])),
            revenue=revenue,
            economy=economy,
        )

    # --- market --------------------------------------------------------------------------

    def market_rows() -> list[dict[str, Any]]:
        rows = []
        for r in run().series.get("market", []):
            price = r["price_gnc_per_kwh"]
            rows.append(
                {
                    "interval": r["interval"],
                    "time": hhmm(r["time"]),
                    "price": "none" if price is None else f"{price:.4f}",
                    "traded": f"{r['traded_wh'] / 1000:.3f}",
                    "bids": r["bids"],
                    "offers": r["offers"],
                    "bid": f"{r['bid_wh'] / 1000:.3f}",
                    "offered": f"{r['offer_wh'] / 1000:.3f}",
                }
            )
        return rows

    def interval_context(interval: int | None) -> dict[str, Any]:
        rows = market_rows()
        picked = next((r for r in rows if r["interval"] == interval), None)
        if interval is not None and picked is None:
            raise missing(f"no auction of interval {interval} in this run")
        contracts = []
        if picked is not None:
            names = _names(run())
            for cid, rec in _records(run(), CONTRACTS):
                t = rec.terms
                if t.first_interval == t.last_interval == interval:
                    contracts.append(
                        {
                            "id": cid.hex(),
                            "buyer": address_to_text(t.buyer),
                            "seller": address_to_text(t.seller),
                            "buyer_name": names.get(t.buyer, address_to_text(t.buyer)[:12]),
                            "seller_name": names.get(t.seller, address_to_text(t.seller)[:12]),
                            "price": f"{t.price / UNITS_PER_GNC:.4f}",
                            "max_wh": t.max_wh,
                            "paid_wh": rec.paid_wh,
                            "state": _contract_state(rec),
                        }
                    )
        book = [
            {**o, "price": f"{o['price_gnc_per_kwh']:.4f}"}
            for o in run().series.get("orders", [])
            if picked is not None and o["interval"] == interval
        ]
        return {"picked": picked, "contracts": contracts, "book": book}

    @app.get("/market", response_class=HTMLResponse)
    def market(request: Request, interval: int | None = None) -> HTMLResponse:
        return page(
            request,
            "market.html",
            "/market",
            "Market",
            chart=_prices_chart(run().series.get("market", [])),
            rows=market_rows(),
            **interval_context(interval),
        )

    @app.get("/market/interval/{interval}", response_class=HTMLResponse)
    def market_interval(request: Request, interval: int) -> HTMLResponse:
        return templates.TemplateResponse(request, "market_interval.html", interval_context(interval))

    # --- homes ---------------------------------------------------------------------------

    def home_context(name: str | None) -> dict[str, Any]:
        homes = run().report["homes"]
        if not homes:
            raise missing("this run has no homes")
        home = next((h for h in homes if h["name"] == name), None) if name else homes[0]
        if home is None:
            raise missing(f"no home named {name!r} in this run")
        rows = [r for r in run().series.get("homes", []) if r["home"] == home["name"]]
        labels = [hhmm(r["time"]) for r in rows]
        kwh = [
            ("load", "load_wh", 0),
            ("PV", "pv_wh", 1),
            ("import", "import_wh", 4),
            ("export", "export_wh", 2),
        ]
        datasets = [line(label, [r[key] / 1000 for r in rows], COLOURS[c]) for label, key, c in kwh]
        datasets.append(
            line("forecast load", [r["forecast_load_wh"] / 1000 for r in rows], COLOURS[6], borderDash=[4, 3])
        )
        energy_chart = chart(
            "line", labels, datasets, scales={"y": {"title": {"display": True, "text": "kWh"}}}
        )
        soc_chart = None
        if any(r["battery_soc_percent"] is not None for r in rows):
            soc = [line("battery state of charge [%]", [r["battery_soc_percent"] for r in rows], COLOURS[3])]
            soc_chart = chart("line", labels, soc, scales={"y": {"min": 0, "max": 100}})
        return {"home": home, "chart": energy_chart, "soc_chart": soc_chart}

    @app.get("/homes", response_class=HTMLResponse)
    def homes(request: Request, home: str | None = None) -> HTMLResponse:
        return page(
            request, "homes.html", "/homes", "Homes", homes=run().report["homes"], **home_context(home)
        )

    @app.get("/homes/panel/{name}", response_class=HTMLResponse)
    def home_panel(request: Request, name: str) -> HTMLResponse:
        return templates.TemplateResponse(request, "home_panel.html", home_context(name))

    # --- grid ----------------------------------------------------------------------------

    @app.get("/grid", response_class=HTMLResponse)
    def grid(request: Request) -> HTMLResponse:
        report = run().report
        lines = run().series.get("lines", [])
        owners = [o["name"] for o in report["grid"]["line_owners"]]
        labels = [hhmm(r["time"]) for r in lines if r["line_owner"] == owners[0]] if owners else []
        loading, voltage = [], []
        for k, owner in enumerate(owners):
            mine = [r for r in lines if r["line_owner"] == owner]
            loading.append(line(owner, [r["max_loading_percent"] for r in mine], COLOURS[k % len(COLOURS)]))
            voltage.append(
                line(f"{owner}: highest", [r["v_max_pu"] for r in mine], COLOURS[k % len(COLOURS)])
            )
            voltage.append(
                line(
                    f"{owner}: lowest",
                    [r["v_min_pu"] for r in mine],
                    COLOURS[k % len(COLOURS)],
                    borderDash=[4, 3],
                )
            )
        limits = report["scenario"]["resolved"]["grid"]
        overrides = [
            {
                "meter": address_to_text(o.meter),
                "command": o.command.hex(),
                "reason": o.reason,
                "height": o.height,
            }
            for _key, o in _records(run(), OVERRIDES)
        ]
        return page(
            request,
            "grid.html",
            "/grid",
            "Grid",
            owners=report["grid"]["line_owners"],
            congested=report["grid"]["congested_intervals"],
            loading_chart=chart(
                "line",
                labels,
                loading,
                scales={
                    "y": {"title": {"display": True, "text": f"% (limit {limits['max_loading_percent']})"}}
                },
            ),
            voltage_chart=chart(
                "line",
                labels,
                voltage,
                scales={
                    "y": {
                        "title": {
                            "display": True,
                            "text": f"pu (band {limits['v_min_pu']} to {limits['v_max_pu']})",
                        }
                    }
                },
            ),
            dso=report["dso"],
            overrides=overrides,
        )

    # --- the chain explorer --------------------------------------------------------------

    @app.get("/chain", response_class=HTMLResponse)
    def chain_page(request: Request, before: int | None = None) -> HTMLResponse:
        r = run()
        top = r.chain.height if before is None else min(before - 1, r.chain.height)
        blocks = []
        for height in range(top, max(-1, top - BLOCKS_PAGE), -1):
            block = r.block(height)
            assert block is not None
            h = block.header
            blocks.append(
                {
                    "height": height,
                    "hash": block_hash(h).hex(),
                    "time": when(h.timestamp),
                    "txs": len(block.txs),
                    "miner": address_to_text(h.miner),
                }
            )
        older = top - BLOCKS_PAGE + 1 if top - BLOCKS_PAGE >= 0 else None
        counts = {
            "flags": sum(1 for _ in _records(r, FLAGS)),
            "pools": sum(1 for _ in _records(r, POOLS)),
            "claims": r.kinds.get("ClaimTransit", 0),
            "authorities": sum(1 for _ in _records(r, AUTHORITIES)),
        }
        return page(
            request,
            "chain.html",
            "/chain",
            "Chain",
            blocks=blocks,
            older=older,
            kinds=sorted(r.kinds.items()),
            counts=counts,
        )

    @app.get("/chain/block/{height}", response_class=HTMLResponse)
    def block_page(request: Request, height: int) -> HTMLResponse:
        r = run()
        block = r.block(height)
        if block is None:
            raise missing(f"no block at height {height} (the chain's height is {r.chain.height})")
        h = block.header
        txs = []
        for position, tx in enumerate(block.txs):
            txs.append(
                {
                    "id": tx_id(tx).hex(),
                    "kind": type(tx.payload).__name__,
                    "sender": r.sender_text(tx) if position else None,
                    "fee": tx.fee,
                }
            )
        return page(
            request,
            "block.html",
            "/chain",
            f"Block {height}",
            height=height,
            hash=block_hash(h).hex(),
            header=record(h),
            time=when(h.timestamp),
            txs=txs,
            last=r.chain.height,
        )

    @app.get("/chain/tx/{txid}", response_class=HTMLResponse)
    def tx_page(request: Request, txid: str) -> HTMLResponse:
        r = run()
        located = r.txs.get(_hex(txid, 32))
        if located is None:
            raise missing(f"no transaction {txid[:16]} on the main chain")
        tx = located.tx
        sender = r.sender_text(tx) if located.position else None
        payload = record(tx.payload)
        links = _links(tx)
        return page(
            request,
            "tx.html",
            "/chain",
            f"Transaction {txid[:16]}",
            txid=txid,
            kind=type(tx.payload).__name__,
            height=located.height,
            position=located.position,
            sender=sender,
            nonce=tx.nonce,
            fee=tx.fee,
            payload=json.dumps(payload, indent=2),
            links=links,
        )

    @app.get("/chain/account/{address}", response_class=HTMLResponse)
    def account_page(request: Request, address: str) -> HTMLResponse:
        r = run()
        addr = _address(address)
        view = r.chain.view()
        account = r.chain.account(addr)
        identity = view.get(IDENTITIES, addr)
        authority = view.get(AUTHORITIES, addr)
        sent = [
            {"id": t.hex(), "kind": type(r.txs[t].tx.payload).__name__, "height": r.txs[t].height}
            for t in r.by_sender.get(addr, [])
        ]
        meters = [address_to_text(m) for m, rec in _records(r, METERS) if rec.owner == addr]
        return page(
            request,
            "account.html",
            "/chain",
            f"Account {_names(r).get(addr, address[:14])}",
            address=address,
            balance=account.balance / UNITS_PER_GNC,
            nonce=account.nonce,
            bonded=account.bonded / UNITS_PER_GNC,
            identity=identity is not None,
            authority=None if authority is None else authority.name,
            sent=sent,
            meters=meters,
        )

    @app.get("/chain/meter/{meter}", response_class=HTMLResponse)
    def meter_page(request: Request, meter: str) -> HTMLResponse:
        r = run()
        mid = _address(meter)
        view = r.chain.view()
        rec = view.get(METERS, mid)
        if rec is None:
            raise missing(f"no meter {meter} is registered")
        first = r.report["scenario"]["first_interval"]
        readings = []
        for i in range(first, first + r.report["scenario"]["intervals"]):
            reading = view.get(READINGS, reading_key(mid, i))
            if reading is not None:
                readings.append({"interval": i, **record(reading)})
        return page(
            request,
            "meter.html",
            "/chain",
            f"Meter {meter[:14]}",
            meter=meter,
            owner=address_to_text(rec.owner),
            record=json.dumps(record(rec), indent=2),
            readings=readings,
        )

    @app.get("/chain/contract/{cid}", response_class=HTMLResponse)
    def contract_page(request: Request, cid: str) -> HTMLResponse:
        r = run()
        key = _hex(cid, 32)
        rec = r.chain.view().get(CONTRACTS, key)
        if rec is None:
            raise missing(f"no contract {cid[:16]}")
        states = []
        for t in r.settlements.get(key, []):
            loc = r.txs[t]
            payload = loc.tx.payload
            assert isinstance(payload, SettleContract)
            signed = payload.signed
            states.append(
                {
                    "tx": t.hex(),
                    "height": loc.height,
                    "seq": signed.state.seq,
                    "deliveries": [(d.interval, d.wh) for d in signed.state.deliveries],
                    "by": r.sender_text(loc.tx),
                }
            )
        return page(
            request,
            "contract.html",
            "/chain",
            f"Contract {cid[:16]}",
            cid=cid,
            state=_contract_state(rec),
            buyer=address_to_text(rec.terms.buyer),
            seller=address_to_text(rec.terms.seller),
            record=json.dumps(record(rec), indent=2),
            states=states,
        )

    @app.get("/chain/records/{table}", response_class=HTMLResponse)
    def records_page(request: Request, table: str) -> HTMLResponse:
        tables: dict[str, Table[Any]] = {"flags": FLAGS, "pools": POOLS, "authorities": AUTHORITIES}
        if table not in tables:
            raise missing(f"no list of {table}; there are {', '.join(tables)}")
        rows = [{"key": k.hex(), "record": json.dumps(record(v))} for k, v in _records(run(), tables[table])]
        if table == "pools":
            claims = [t.hex() for t, loc in run().txs.items() if isinstance(loc.tx.payload, ClaimTransit)]
        else:
            claims = []
        return page(request, "records.html", "/chain", table.capitalize(), rows=rows, claims=claims)

    error = error_pages(app, page)
    unexpected_data_pages(
        app,
        error,
        500,
        lambda what: (
            f"this page cannot be drawn from the run in {out} ({what}); its report.json is not as "
            "gridnet simulate wrote it: run the scenario again"
        ),
    )

    @app.exception_handler(RunDamaged)
    async def damaged(request: Request, exc: RunDamaged) -> HTMLResponse:
        what = f"this page cannot be drawn from the run in {out} ({exc.what}); run the scenario again"
        return error(request, 500, what)

    return app


def _address(text: str) -> bytes:
    try:
        return address_from_text(text)
    except InvalidAddress as exc:  # (malformed: a bad request; a well-formed one not found is a 404)
        raise HTTPException(status_code=400, detail=str(exc)) from None


def _hex(text: str, length: int) -> bytes:
    try:
        value = bytes.fromhex(text)
    except ValueError:
        raise HTTPException(status_code=400, detail=f"{text[:20]} is not hex") from None
    if len(value) != length:
        raise HTTPException(status_code=400, detail=f"{text[:20]} is not {length} bytes of hex")
    return value


def _records(r: RunResults, table: Table[Any]) -> Iterator[tuple[bytes, Any]]:
    """Every entry of a state table at the head: (key without the prefix, record)."""
    prefix = table.prefix
    for key, value in r.chain.values.items():
        if key[: len(prefix)] == prefix:
            yield key[len(prefix) :], decode_lenient(value, table.value_type)


def _names(r: RunResults) -> dict[bytes, str]:
    """Addresses of the run's authorities by name (the report lists them)."""
    return {address_from_text(a): n for a, n in r.report["participants"]["authorities"].items()}


def _contract_state(rec: Any) -> str:
    if rec.closed:
        return "closed (remainder refunded)"
    if rec.paid_wh == rec.terms.max_wh:
        return "settled in full"
    return "settled in part" if rec.settled else "open"


def _links(tx: Any) -> list[tuple[str, str]]:
    """Pages the transaction's payload points to."""
    p = tx.payload
    name = type(p).__name__
    if name == "OpenContract":
        return [("contract", f"/chain/contract/{contract_id(p.signed.terms).hex()}")]
    if name == "SettleContract":
        return [("contract", f"/chain/contract/{p.signed.state.contract.hex()}")]
    if name == "CloseContract":
        return [("contract", f"/chain/contract/{p.contract.hex()}")]
    if name == "SubmitReadings":
        return [("meter", f"/chain/meter/{address_to_text(s.reading.meter)}") for s in p.readings[:50]]
    if name == "Transfer":
        return [("recipient", f"/chain/account/{address_to_text(p.to)}")]
    return []


def _prices_chart(market: list[dict[str, Any]]) -> str:
    labels = [hhmm(r["time"]) for r in market]
    return chart(
        "bar",
        labels,
        [
            {
                "type": "line",
                "label": "clearing price [GNC/kWh]",
                "data": [r["price_gnc_per_kwh"] for r in market],
                "borderColor": COLOURS[1],
                "backgroundColor": COLOURS[1],
                "yAxisID": "price",
                "stepped": True,
                "pointRadius": 0,
            },
            {
                "label": "traded in the auction [kWh]",
                "data": [r["traded_wh"] / 1000 for r in market],
                "backgroundColor": COLOURS[6],
                "yAxisID": "energy",
            },
            {
                "label": "of it between homes [kWh]",
                "data": [r["p2p_wh"] / 1000 for r in market],
                "backgroundColor": COLOURS[0],
                "yAxisID": "energy",
            },
        ],
        scales={
            "energy": {"position": "left", "title": {"display": True, "text": "kWh"}},
            "price": {
                "position": "right",
                "title": {"display": True, "text": "GNC/kWh"},
                "grid": {"drawOnChartArea": False},
            },
        },
    )


def _mix_chart(homes: list[dict[str, Any]]) -> str:
    """The homes' energy mix, as the run's energy plot draws it (``sim/mix.py``): a stack that
    adds up to the load, what came from the grid split in proportion to what was bought."""
    by_time = energy_mix(homes)
    times = sorted(by_time)
    datasets = [
        {
            "label": label,
            "data": [round(by_time[t][k], 3) for t in times],
            "backgroundColor": colour,
            "fill": True,
            "borderColor": colour,
            "pointRadius": 0,
            "stack": "mix",
        }
        for k, label, colour in MIX_PARTS
    ]
    return chart(
        "line",
        [hhmm(t) for t in times],
        datasets,
        scales={"y": {"stacked": True, "beginAtZero": True, "title": {"display": True, "text": "kWh"}}},
    )
