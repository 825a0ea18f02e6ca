"""``/docs`` in a real browser, with no internet: a real ``gridnet node`` process serves
Swagger UI from its own assets, and headless Debian chromium (driven by playwright) renders
it and calls ``/head`` through it, while every request that leaves the node is refused and
recorded. ``make test`` installs chromium (``make chromium``); playwright never downloads a
browser of its own. The node and the browser are stopped by the test, whatever happens."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from playwright.sync_api import Browser, ConsoleMessage, Page, Route, expect, sync_playwright

from gridnet.ledger.chain import Chain
from gridnet.node.devnet import LOCAL, DevNode, devnet_params, free_port, stop_all
from tests.helpers import wait_for

CHROMIUM = Path("/usr/bin/chromium")
PAGE_NAME = "gridnet-node.localhost"
"""A host name the browser resolves to 127.0.0.1, to open /docs as a node served beyond
loopback is (Swagger UI skips its online validator on pages at 127.0.0.1 or localhost). A name
under .localhost: a node on loopback answers only requests addressed to a loopback name (a
page reading it through a foreign name resolved to 127.0.0.1 is DNS rebinding)."""
BROWSER_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--no-proxy-server",
    f"--host-resolver-rules=MAP {PAGE_NAME} {LOCAL}",
]
WAIT_MS = 60_000
"""Ceiling on every browser wait [ms]: generous, for a busy machine or a single core."""
TITLE = "GRIDNET node API - Swagger UI"


@dataclass
class Visit:
    """What one page load of /docs did."""

    origin: str
    """The only origin the page may reach, e.g. ``http://127.0.0.1:8000``."""
    refused: list[str] = field(default_factory=list)
    """Requests to any other origin (each aborted)."""
    loaded: dict[str, int] = field(default_factory=dict)
    """Path -> HTTP status of each response from the node."""
    console_errors: list[str] = field(default_factory=list)
    """Console errors and uncaught exceptions."""


@pytest.fixture
def node(tmp_path: Path) -> Iterator[DevNode]:
    """A real node process with its HTTP API on 127.0.0.1, answering; stopped by its PID."""
    api = DevNode("docs", tmp_path / "docs", free_port(), free_port())
    Chain.create(api.data_dir, devnet_params()).close()
    try:
        api.start()
        assert api.process is not None
        process = api.process
        assert wait_for(lambda: api.head() is not None or process.poll() is not None, 90)
        assert api.head() is not None, f"the node's API does not answer\n{log_tails(api.data_dir)}"
        yield api
    finally:
        stop_all([api])


def log_tails(data_dir: Path) -> str:
    """The end of each log file the node wrote into its data directory."""
    logs = sorted(data_dir.glob("*.log"))
    return "\n".join(f"--- {p.name}\n{p.read_text(errors='replace')[-3000:]}" for p in logs) or "(no log)"


@pytest.fixture
def browser() -> Iterator[Browser]:
    """Headless Debian chromium (a fresh profile that playwright removes on close)."""
    assert CHROMIUM.exists(), f"{CHROMIUM} is missing: run 'make chromium' (as root) to install it"
    with sync_playwright() as p:
        b = p.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, args=BROWSER_ARGS, timeout=WAIT_MS
        )
        try:
            yield b
        finally:
            b.close()


def open_docs(browser: Browser, origin: str) -> tuple[Page, Visit, str]:
    """Open ``origin``/docs with every request to another origin aborted; the page, what it
    did, and the HTML the node served."""
    visit = Visit(origin)
    page = browser.new_page()
    page.set_default_timeout(WAIT_MS)

    def gate(route: Route) -> None:
        url = route.request.url
        parts = urlsplit(url)
        if f"{parts.scheme}://{parts.netloc}" == origin:
            route.continue_()
        else:
            visit.refused.append(url)
            route.abort("blockedbyclient")

    page.route("**/*", gate)
    page.on(
        "response",
        lambda r: (
            visit.loaded.__setitem__(urlsplit(r.url).path, r.status) if r.url.startswith(origin) else None
        ),
    )
    page.on("console", lambda m: _record_console(visit, m))
    page.on("pageerror", lambda e: visit.console_errors.append(f"uncaught: {e}"))
    response = page.goto(f"{origin}/docs", wait_until="load", timeout=WAIT_MS)
    assert response is not None and response.status == 200
    return page, visit, response.text()


def _record_console(visit: Visit, message: ConsoleMessage) -> None:
    if message.type == "error":
        visit.console_errors.append(f"console: {message.text} ({message.location})")


def assert_rendered(page: Page) -> None:
    """Swagger UI drew the API: its title, the spec's title and the /head operation, and no
    'Unable to render this definition'."""
    expect(page).to_have_title(TITLE, timeout=WAIT_MS)
    expect(page.locator(".info .title")).to_contain_text("GRIDNET node API", timeout=WAIT_MS)
    head = page.locator('.opblock-summary-path[data-path="/head"]')
    expect(head).to_be_visible(timeout=WAIT_MS)
    expect(head).to_have_text("/head")
    assert page.locator(".version-pragma").count() == 0  # what Swagger UI shows for a spec it can't read
    # Every request the page starts has ended (none pending that could still leave the node).
    page.wait_for_load_state("networkidle", timeout=WAIT_MS)


def test_docs_render_offline_in_chromium(node: DevNode, browser: Browser) -> None:
    t0 = time.monotonic()
    origin = f"http://{LOCAL}:{node.api_port}"
    page, visit, html = open_docs(browser, origin)
    assert "://" not in html, "the /docs page names an address of its own"
    assert_rendered(page)
    assert visit.refused == []

    # The page works: "Try it out" on /head asks the node and shows its answer.
    head = page.locator(".opblock-get").filter(has=page.locator('[data-path="/head"]'))
    head.locator(".opblock-summary").click()
    head.locator(".try-out__btn").click()
    head.locator(".execute").click()
    expect(head.locator(".live-responses-table td.response-col_status:not(.col_header)")).to_have_text(
        "200", timeout=WAIT_MS
    )
    expect(head.locator(".live-responses-table .microlight").first).to_contain_text(
        '"chain_id"', timeout=WAIT_MS
    )

    # What was loaded came from the node, and the stylesheet names nothing outside it.
    for path in (
        "/docs",
        "/docs/assets/swagger-ui-bundle.js",
        "/docs/assets/swagger-ui.css",
        "/openapi.json",
    ):
        assert visit.loaded.get(path) == 200, (path, visit.loaded)
    css = page.request.get(f"{origin}/docs/assets/swagger-ui.css", timeout=WAIT_MS).text()
    outside = [u for u in re.findall(r"url\(\s*['\"]?([^'\")]+)", css) if not u.startswith("data:")]
    assert outside == []
    assert visit.refused == []
    assert visit.console_errors == []
    page.close()

    # Opened under a host name, as from another machine (Swagger UI treats pages on
    # localhost and 127.0.0.1 apart): still no request leaves the node.
    page, visit, _ = open_docs(browser, f"http://{PAGE_NAME}:{node.api_port}")
    assert_rendered(page)
    assert visit.refused == []
    assert visit.console_errors == []
    page.close()
    print(f"/docs rendered twice, offline, in {time.monotonic() - t0:.1f} s")
