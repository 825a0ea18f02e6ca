"""``gridnet dashboard OUT`` in a real browser: a real dashboard process on 127.0.0.1 serves a
run that the test simulates, and headless Debian chromium (driven by playwright) opens every
page with every request to another origin refused (the assets ship in the package), checks
that the charts hold the run's figures and walks from a block to a transaction to its sender.
The process and the browser are stopped by the test, whatever happens."""

from __future__ import annotations

import http.server
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import threading
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from playwright.sync_api import Browser, Page, Route, expect, sync_playwright

from gridnet.ledger.chain import Chain
from gridnet.node.api.server import MAX_CONNECTIONS_PER_HOST
from gridnet.node.devnet import LOCAL, DevNode, devnet_params, free_port, stop_all
from gridnet.sim.neighbourhood import simulate
from gridnet.sim.scenario import scenario_from_dict
from tests.helpers import wait_for

CHROMIUM = Path("/usr/bin/chromium")
BROWSER_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--no-proxy-server"]
WAIT_MS = 60_000
"""Ceiling on every browser wait [ms]: generous, for a busy machine or a single core."""
expect.set_options(timeout=WAIT_MS)
RUN: dict[str, Any] = {
    "simulation": {"intervals": 6, "start": "2026-06-21T10:30:00Z"},
    "homes": {"count": 6, "ack_own_meter_share": 0.5},
    "security": {"flagged_meters": 1},
}


@dataclass
class Served:
    origin: str
    out: Path
    report: dict[str, Any]


@dataclass
class Visit:
    refused: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    statuses: dict[str, int] = field(default_factory=dict)


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    """A simulated run, and a dashboard process serving it on 127.0.0.1 (stopped by its PID)."""
    out = tmp_path_factory.mktemp("run") / "out"
    report = simulate(scenario_from_dict(RUN, "dashboard run"), out)
    with dashboard([str(out)], out.parent / "dashboard.log") as origin:
        yield Served(origin, out, report)


@contextmanager
def dashboard(args: list[str], log_path: Path) -> Iterator[str]:
    """A ``gridnet dashboard ARGS`` process on a free port of 127.0.0.1, once it answers: its
    origin. Stopped by its PID, whatever happens."""
    port = free_port()
    origin = f"http://{LOCAL}:{port}"
    with log_path.open("w") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "gridnet", "dashboard", *args, "--port", str(port)],
            stdout=log,
            stderr=subprocess.STDOUT,
            env={**os.environ, "COLUMNS": "200"},
        )
        try:

            def answers() -> bool:
                try:
                    with urllib.request.urlopen(f"{origin}/", timeout=5) as r:
                        return bool(r.status == 200)
                except OSError:
                    return process.poll() is not None

            assert wait_for(answers, 90) and process.poll() is None, log_path.read_text()
            yield origin
        finally:
            process.terminate()
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    assert CHROMIUM.exists(), f"{CHROMIUM} is missing: run 'make chromium' (as root) to install it"
    with sync_playwright() as p:
        b = p.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, args=BROWSER_ARGS, timeout=WAIT_MS
        )
        try:
            yield b
        finally:
            b.close()


def open_page(browser: Browser, origin: str) -> tuple[Page, Visit]:
    """A page that refuses (and records) every request to another origin and records console
    errors and every response's status."""
    visit = Visit()
    page = browser.new_page(viewport={"width": 1280, "height": 1000})
    page.set_default_timeout(WAIT_MS)

    def gate(route: Route) -> None:
        parts = urlsplit(route.request.url)
        if f"{parts.scheme}://{parts.netloc}" == origin:
            route.continue_()
        else:
            visit.refused.append(route.request.url)
            route.abort("blockedbyclient")

    page.route("**/*", gate)
    page.on("console", lambda m: visit.errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: visit.errors.append(f"uncaught: {e}"))
    page.on("response", lambda r: visit.statuses.__setitem__(urlsplit(r.url).path, r.status))
    return page, visit


def fetch(url: str) -> str:
    with urllib.request.urlopen(url, timeout=30) as r:
        return str(r.read().decode())


def charts(page: Page, expected: int) -> dict[str, Any]:
    """The page's charts, once drawn: canvas id -> its datasets' labels and data."""
    page.wait_for_function(f"Object.keys(window.gridnetCharts || {{}}).length >= {expected}", timeout=WAIT_MS)
    result: dict[str, Any] = page.evaluate(
        "Object.fromEntries(Object.entries(window.gridnetCharts).map(([k, c]) => "
        "[k, {labels: c.data.labels, datasets: c.data.datasets.map(d => ({label: d.label, data: d.data}))}]))"
    )
    return result


def test_every_page_loads_offline_with_no_console_error(served: Served, browser: Browser) -> None:
    first = served.report["scenario"]["first_interval"]
    pages = {
        "/": 2,
        "/market": 1,
        f"/market?interval={first}": 1,
        "/homes": 1,
        "/homes?home=home-1": 1,
        "/grid": 2,
        "/chain": 0,
        "/chain/block/1": 0,
        "/chain/records/pools": 0,
        "/chain/records/flags": 0,
        "/chain/records/authorities": 0,
    }
    # The explorer's other pages, by the links the pages themselves hold.
    market = fetch(f"{served.origin}/market?interval={first + 2}")
    contract = re.search(r'href="(/chain/contract/[0-9a-f]{64})"', market)
    account = re.search(r'href="(/chain/account/gn[a-z0-9]+)"', market)
    assert contract is not None and account is not None
    meter = re.search(r'href="(/chain/meter/gn[a-z0-9]+)"', fetch(served.origin + account.group(1)))
    blocks = (fetch(f"{served.origin}/chain/block/{h}") for h in range(1, 21))
    carrying = (found for b in blocks if len(found := re.findall(r'href="(/chain/tx/[0-9a-f]{64})"', b)) >= 2)
    tx = next(carrying, [])  # (the coinbase and one more: a block that carries a transaction)
    assert meter is not None and len(tx) >= 2
    pages.update({contract.group(1): 0, account.group(1): 0, meter.group(1): 0, tx[1]: 0})
    page, visit = open_page(browser, served.origin)
    try:
        for path, n_charts in pages.items():
            response = page.goto(served.origin + path, wait_until="load")
            assert response is not None and response.status == 200, path
            if n_charts:
                charts(page, n_charts)
            expect(page.locator("header")).to_contain_text("Overview")
            page.wait_for_load_state("networkidle")
        assert visit.refused == [] and visit.errors == []
        assert {p: s for p, s in visit.statuses.items() if s != 200} == {}
        assert {"/static/htmx.min.js", "/static/chart.umd.min.js", "/static/dashboard.js"} <= set(
            visit.statuses
        )
        missing = page.goto(served.origin + "/chain/block/999999")
        assert missing is not None and missing.status == 404
        expect(page.locator("#error")).to_contain_text("no block at height 999999")
        bad = page.goto(served.origin + "/market?interval=soon")
        assert bad is not None and bad.status == 400
        expect(page.locator("#error")).to_contain_text("query.interval")
        # A malformed id is a bad request; a well-formed one the chain does not hold, not found.
        for path, status in (
            ("/chain/tx/zz", 400),
            ("/chain/account/xyz", 400),
            ("/chain/tx/" + "00" * 32, 404),
        ):
            answer = page.goto(served.origin + path)
            assert answer is not None and answer.status == status, path
    finally:
        page.close()


def test_the_pages_hold_the_runs_figures(served: Served, browser: Browser) -> None:
    report = served.report
    page, visit = open_page(browser, served.origin)
    try:
        page.goto(served.origin + "/")
        drawn = charts(page, 2)
        expect(page.locator("#fig-contracts")).to_have_text(f"{report['energy']['contracts']:,}")
        expect(page.locator("#fig-disputes")).to_have_text(str(report["contracts"]["disputes_resolved"]))
        expect(page.locator("#economy-note")).to_contain_text("block subsidy")
        prices = next(d for d in drawn["chart-prices"]["datasets"] if d["label"].startswith("clearing price"))
        assert prices["data"] == [c["price_gnc_per_kwh"] for c in report["clearing_price"]["per_interval"]]
        traded = next(d for d in drawn["chart-prices"]["datasets"] if d["label"].startswith("traded"))
        assert traded["data"] == [c["traded_wh"] / 1000 for c in report["clearing_price"]["per_interval"]]
        assert page.evaluate("window.gridnetCharts['chart-mix'].scales.y.min") == 0  # (the stack's base)
        # An interval's order book: every order the hub cleared (its panel swaps in, htmx).
        page.goto(served.origin + "/market")
        charts(page, 1)
        picked = report["clearing_price"]["per_interval"][2]
        page.locator(f'a[href="/market?interval={picked["interval"]}"]').click()
        expect(page.locator("#picked-interval")).to_contain_text(str(picked["interval"]))
        expect(page.locator("#order-book tr")).to_have_count(1 + picked["bids"] + picked["offers"])
        # A home's day: its panel swaps in (htmx) with its own chart and its bill from the report.
        page.goto(served.origin + "/homes")
        charts(page, 1)
        home = report["homes"][3]
        page.locator(f'.picker a[href="/homes?home={home["name"]}"]').click()
        expect(page.locator("#home-name")).to_contain_text(home["name"])
        expect(page.locator("#home-bill")).to_have_text(f"{home['bill_gnc']:.4f}")
        assert page.url.endswith(f"/homes?home={home['name']}")
        loads = page.evaluate("window.gridnetCharts['chart-home'].data.datasets[0].data")
        series = json.loads((served.out / "report.json").read_text())["homes"][3]
        assert round(sum(loads) * 1000) == series["load_wh"]
        assert visit.errors == [] and visit.refused == []
    finally:
        page.close()


def test_a_block_leads_to_its_transactions_and_their_senders(served: Served, browser: Browser) -> None:
    page, visit = open_page(browser, served.origin)
    try:
        page.goto(served.origin + "/chain?before=12")  # the page of blocks 11 down to 0
        page.locator('#blocks a[href="/chain/block/2"]').click()
        expect(page.locator("h1")).to_have_text("Block 2")
        rows = page.locator("#txs tr")
        expect(rows.nth(2)).to_be_visible()  # a coinbase and at least one transaction
        kind = rows.nth(2).locator("td").nth(2).inner_text()
        rows.nth(2).locator("td").nth(1).locator("a").click()
        expect(page.locator("#tx-kind")).to_have_text(kind)
        sender = page.locator("#tx-sender").inner_text()
        page.locator("#tx-sender").click()
        expect(page.locator("#account-address")).to_have_text(sender)
        expect(page.locator("#account-balance")).not_to_be_empty()
        assert visit.errors == [] and visit.refused == []
    finally:
        page.close()
    head = served.report["chain"]["height"]
    assert ">next<" not in fetch(f"{served.origin}/chain/block/{head}")  # (there is none yet)
    assert ">next<" in fetch(f"{served.origin}/chain/block/{head - 1}")


def test_a_directory_without_a_run_is_one_clear_line(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "gridnet", "dashboard", str(tmp_path / "nothing")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 1 and result.stdout == ""
    assert result.stderr.strip().splitlines() == [
        f"error: {tmp_path / 'nothing'} holds no run: {tmp_path / 'nothing' / 'report.json'} is missing "
        f"(run gridnet simulate --out {tmp_path / 'nothing'})"
    ]


@pytest.fixture
def mining_node(tmp_path: Path) -> Iterator[DevNode]:
    """A real node process mining on 127.0.0.1 (stopped by its PID)."""
    node = DevNode("live", tmp_path / "live", free_port(), free_port())
    Chain.create(node.data_dir, devnet_params()).close()
    try:
        node.start("--mine", "--hashes-per-tick", "50")
        assert wait_for(lambda: (node.head() or {}).get("height", 0) >= 1, 120), "the node mined no block"
        yield node
    finally:
        stop_all([node])


def test_live_mode_follows_a_running_node(mining_node: DevNode, browser: Browser, tmp_path: Path) -> None:
    """gridnet dashboard --node URL: the overview shows the node's height and, without a
    reload, a newer block; the network page and a block's page load; no console error."""
    node_url = f"http://{LOCAL}:{mining_node.api_port}"
    with dashboard(["--node", node_url], tmp_path / "dashboard.log") as origin:
        page, visit = open_page(browser, origin)
        try:
            page.goto(origin + "/")
            first = int(page.locator("#live-height").inner_text())
            assert first >= 1
            page.wait_for_function(
                f"Number(document.querySelector('#live-height').textContent) > {first}",
                timeout=WAIT_MS * 3,
            )
            newest = int(page.locator("#live-height").inner_text())
            expect(page.locator(f'#blocks a[href="/chain/block/{newest}"]')).to_be_visible()
            page.locator(f'#blocks a[href="/chain/block/{newest}"]').click()
            expect(page.locator("h1")).to_have_text(f"Block {newest}")
            page.locator("#txs tr").nth(1).locator("td").nth(1).locator("a").click()  # its coinbase
            expect(page.locator("h1")).to_contain_text("Transaction")
            expect(page.locator("#tx-kind")).to_have_text("Coinbase")
            page.goto(origin + "/network")
            expect(page.locator("#mempool-size")).to_contain_text("transaction(s)")
            for bad in ("/chain/block/-1", "/chain/tx/zz", "/chain/tx/%3Fa=1", "/chain/account/xyz"):
                answer = page.goto(origin + bad)
                assert answer is not None and 400 <= answer.status < 500, bad
                expect(page.locator("#error")).not_to_be_empty()
            assert visit.refused == []
            assert all("status of 4" in e for e in visit.errors)  # (the 4xx pages just opened)
            # An account: what it sent is its nonce (the node's API lists no account's transactions).
            address = json.loads(fetch(f"{node_url}/status"))["address"]
            page.goto(f"{origin}/chain/account/{address}")
            expect(page.locator("#account-address")).to_have_text(address)
            expect(page.locator("#account-sent")).to_contain_text("on chain (its nonce)")
            # The node stops: the panel says so in place of its last figures, without a reload.
            page.goto(origin + "/")
            expect(page.locator("#live-height")).to_be_visible()
            stop_all([mining_node])
            expect(page.locator("#live-error")).to_contain_text(f"the node at {node_url} did not answer GET ")
            expect(page.locator("#live-height")).to_have_count(0)
        finally:
            page.close()


def test_live_mode_on_a_server_that_is_no_node_says_so(tmp_path: Path) -> None:
    """A URL whose server answers JSON that is not a node's: a 502 page (and a panel) saying
    so, not a server error."""
    from fastapi.testclient import TestClient

    from gridnet.dashboard.live import create_live_dashboard

    class Other(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = b'{"service": "something else"}'
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer((LOCAL, 0), Other)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    url = f"http://{LOCAL}:{server.server_address[1]}"
    try:
        with TestClient(create_live_dashboard(url)) as client:
            for path in ("/", "/network", "/chain", "/chain/block/1", "/chain/account/x"):
                answer = client.get(path)
                assert answer.status_code == 502, (path, answer.status_code)
                assert f"the server at {url} does not answer as a GRIDNET node does (" in answer.text, path
            panel = client.get("/live/status")
            assert panel.status_code == 200 and 'id="live-error"' in panel.text
            assert "does not answer as a GRIDNET node does" in panel.text
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=30)


def test_live_mode_on_a_server_answering_numbers_too_large_says_so(tmp_path: Path) -> None:
    """A server answering an account as a node does, but with a balance of 400 digits (no
    float holds it: an OverflowError): a 502 page saying so, not "Internal Server Error"."""
    from fastapi.testclient import TestClient

    from gridnet.dashboard.live import create_live_dashboard

    address = "gn" + "a" * 39
    huge = "9" * 400

    class Swollen(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if self.path.startswith("/accounts/"):
                status = 200
                body = f'{{"address": "{address}", "balance": {huge}, "nonce": 0, "bonded": 0, "pending": 0}}'
            else:
                status, body = 404, '{"error": "NotFound", "message": "none"}'
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body.encode())

        def log_message(self, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer((LOCAL, 0), Swollen)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    url = f"http://{LOCAL}:{server.server_address[1]}"
    try:
        with TestClient(create_live_dashboard(url)) as client:
            answer = client.get(f"/chain/account/{address}")
            assert answer.status_code == 502, answer.text
            assert (
                f"the server at {url} does not answer as a GRIDNET node does (OverflowError: " in answer.text
            )
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=30)


def test_a_damaged_report_gives_pages_that_say_so(served: Served, tmp_path: Path) -> None:
    """A report.json edited after the run (every section but the scenario's and the series'
    replaced): each page says what is wrong (the first field not as the run wrote it) and what
    to do, never a bare error (tests/functional/test_dashboard_damaged_run.py damages more)."""
    from fastapi.testclient import TestClient

    from gridnet.dashboard.app import create_dashboard

    damaged = tmp_path / "damaged"
    shutil.copytree(served.out, damaged)
    report = json.loads((damaged / "report.json").read_text())
    keep = ("scenario", "series", "schema_version")
    (damaged / "report.json").write_text(
        json.dumps({k: v if k in keep else "mangled" for k, v in report.items()})
    )
    with TestClient(create_dashboard(damaged)) as client:
        for path in ("/", "/market", "/homes", "/grid", "/chain", "/chain/block/1"):
            answer = client.get(path)
            assert answer.status_code == 500, path
            assert f"this page cannot be drawn from the run in {damaged} (" in answer.text, path
            assert f"{damaged / 'report.json'}: energy is &#39;mangled&#39;, not an object" in answer.text
            assert "run the scenario again" in answer.text


def test_a_port_in_use_is_one_clear_line(served: Served) -> None:
    port = urlsplit(served.origin).port
    result = subprocess.run(
        [sys.executable, "-m", "gridnet", "dashboard", str(served.out), "--port", str(port)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 1 and result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: cannot serve the dashboard on {LOCAL}:{port}: ")
    assert lines[0].endswith("choose another --port")


def test_the_dashboard_takes_a_bounded_number_of_connections_from_one_address(served: Served) -> None:
    """The dashboard serves with the node API's guards (``node/api/server.py``): one address
    holds at most ``MAX_CONNECTIONS_PER_HOST`` connections, one more is answered 503 naming the
    bound (whatever else this address holds), and once they go the pages are served again."""
    port = urlsplit(served.origin).port
    assert port is not None
    held = [socket.create_connection((LOCAL, port), timeout=60) for _ in range(MAX_CONNECTIONS_PER_HOST)]
    try:
        with socket.create_connection((LOCAL, port), timeout=60) as extra:
            refusal = b"".join(iter(partial(extra.recv, 65536), b""))
    finally:
        for conn in held:
            conn.close()
    assert refusal.startswith(b"HTTP/1.1 503") and b"TooManyConnections" in refusal, refusal
    assert (
        f"{MAX_CONNECTIONS_PER_HOST} connections from {LOCAL} are open to this dashboard".encode() in refusal
    )

    def serves() -> bool:
        try:
            with urllib.request.urlopen(f"{served.origin}/", timeout=5) as r:
                return bool(r.status == 200)
        except OSError:
            return False

    assert wait_for(serves, 60)


def test_a_run_missing_its_parts_or_a_ledger_demo_is_one_clear_line(served: Served, tmp_path: Path) -> None:
    no_chain, no_series, demo = tmp_path / "no-chain", tmp_path / "no-series", tmp_path / "demo"
    for broken, part in ((no_chain, "chain"), (no_series, "series")):
        shutil.copytree(served.out, broken)
        shutil.rmtree(broken / part)
    demo.mkdir()
    (demo / "report.json").write_text('{"ledger": "demo"}')
    for out, expected in (
        (no_chain, "holds no chain (chain/ or n0/)"),
        (no_series, "homes.parquet: it is missing; run the scenario again"),
        (demo, "is not a scenario's run (a ledger demo's?)"),
    ):
        result = subprocess.run(
            [sys.executable, "-m", "gridnet", "dashboard", str(out)],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert result.returncode == 1 and len(result.stderr.strip().splitlines()) == 1, result.stderr
        assert expected in result.stderr, result.stderr
