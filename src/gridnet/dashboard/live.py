"""``gridnet dashboard --node URL``: a running node (or a devnet through one of its nodes),
followed live through its HTTP API.

Pages: the overview (its height, head, peers, mempool, mining; the latest blocks), the
network (its peers, the heights they announced, its mempool) and the chain explorer (a
block, a transaction, an account), all read from the node's API. The overview and the
network page refresh their panels every two seconds with htmx; nothing is cached.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Annotated, Any
from urllib.parse import quote

from fastapi import FastAPI, Request
from fastapi import Path as FastApiPath
from fastapi.responses import HTMLResponse
from starlette.exceptions import HTTPException

from gridnet.crypto.address import address_from_public_key, address_to_text
from gridnet.dashboard.pages import UNEXPECTED_DATA, described, error_pages, new_app, unexpected_data_pages
from gridnet.dashboard.run import when
from gridnet.encoding import decode
from gridnet.errors import NodeUnavailable
from gridnet.ledger.transactions import Transaction
from gridnet.node.client import NodeClient, NodeRefused
from gridnet.units import UNITS_PER_GNC

NAV = [("/", "Overview"), ("/network", "Network"), ("/chain", "Chain")]
LATEST = 12
REFRESH = "every 2s"


def create_live_dashboard(url: str) -> FastAPI:
    """The dashboard of the node whose API answers at ``url``."""
    NodeClient(url)  # checks the URL's form (one line if it is not http://HOST:PORT)
    app, templates = new_app("GRIDNET dashboard (live)")

    def get(path: str, client: NodeClient | None = None) -> Any:
        """The node's answer (None for a 404); what the node refuses is a 400 page, a node that
        does not answer a 503 page. ``client``: one kept for the page's requests."""
        own = client is None
        client = NodeClient(url, timeout_s=10) if client is None else client
        try:
            return client.get(path)
        except NodeRefused as exc:
            status = 503 if exc.status == 503 else 400  # (503: the node is busy, e.g. indexing its chain)
            raise HTTPException(status_code=status, detail=f"the node refused {path}: {exc}") from None
        except NodeUnavailable as exc:
            said = str(exc)  # (it names the node, mostly)
            detail = said if url in said else f"the node at {url} does not answer: {said}"
            raise HTTPException(status_code=503, detail=detail) from None
        finally:
            if own:
                client.close()

    def page(request: Request, name: str, here: str, title: str, **context: Any) -> HTMLResponse:
        context.update(nav=NAV, here=here, title=title, run_name=f"live · {url}", refresh=REFRESH)
        return templates.TemplateResponse(request, name, context)

    def status_context() -> dict[str, Any]:
        client = NodeClient(url, timeout_s=10)
        try:
            return _status(client)
        finally:
            client.close()

    def _status(client: NodeClient) -> dict[str, Any]:
        status = get("/status", client)
        head = get("/head", client)
        blocks = []
        for height in range(head["height"], max(-1, head["height"] - LATEST), -1):
            b = get(f"/blocks/{height}", client)
            if b is not None:
                blocks.append(
                    {
                        "height": height,
                        "hash": b["hash"],
                        "time": when(b["timestamp"]),
                        "txs": len(b["transactions"]),
                        "miner": b["miner"],
                    }
                )
        return {"status": status, "head": head, "blocks": blocks, "head_time": when(status["head_time"])}

    @app.get("/", response_class=HTMLResponse)
    def overview(request: Request) -> HTMLResponse:
        return page(request, "live_overview.html", "/", "Live node", **status_context())

    def not_a_node(what: str) -> str:
        return (
            f"the server at {url} does not answer as a GRIDNET node does ({what}); give --node a node's "
            "API URL"
        )

    def panel(request: Request, name: str, context: Callable[[], dict[str, Any]]) -> HTMLResponse:
        """A panel the page refreshes; when the node does not answer (or not as a node), what
        is wrong in its place (with the time it was asked), until it answers again."""
        try:
            return templates.TemplateResponse(request, name, context())
        except UNEXPECTED_DATA as exc:
            problem = not_a_node(described(exc))
        except HTTPException as exc:
            problem = str(exc.detail)
        at = datetime.now(UTC).strftime("%H:%M:%S")
        return templates.TemplateResponse(
            request, "live_unavailable.html", {"message": problem, "at": at, "refresh": REFRESH}
        )

    @app.get("/live/status", response_class=HTMLResponse)
    def status_panel(request: Request) -> HTMLResponse:
        return panel(request, "live_status.html", status_context)

    def network_context() -> dict[str, Any]:
        client = NodeClient(url, timeout_s=10)
        try:
            return {
                "peers": get("/peers", client),
                "mempool": get("/mempool", client),
                "head": get("/head", client),
            }
        finally:
            client.close()

    @app.get("/network", response_class=HTMLResponse)
    def network(request: Request) -> HTMLResponse:
        return page(request, "live_network.html", "/network", "Network", **network_context())

    @app.get("/live/network", response_class=HTMLResponse)
    def network_panel(request: Request) -> HTMLResponse:
        return panel(request, "live_network_panel.html", network_context)

    @app.get("/chain", response_class=HTMLResponse)
    def chain(request: Request) -> HTMLResponse:
        return page(request, "live_chain.html", "/chain", "Chain", **status_context())

    @app.get("/chain/block/{height}", response_class=HTMLResponse)
    def block(request: Request, height: Annotated[int, FastApiPath(ge=0)]) -> HTMLResponse:
        b = get(f"/blocks/{height}?full=true")  # one request: every transaction's bytes with it
        if b is None:
            raise HTTPException(status_code=404, detail=f"no block at height {height} on the node")
        txs = []
        for position, ref in enumerate(b["transactions"]):
            tx = decode(bytes.fromhex(ref["hex"]), Transaction)
            sender = address_to_text(address_from_public_key(tx.sender)) if position else None
            txs.append({"id": ref["txid"], "kind": ref["type"], "sender": sender, "fee": tx.fee})
        header = {k: v for k, v in b.items() if k != "transactions"}
        head = get("/head")
        return page(request, "block.html", "/chain", f"Block {height}", height=height, hash=b["hash"],
                    header=header, time=when(b["timestamp"]), txs=txs,
                    last=None if head is None else head["height"])  # fmt: skip

    @app.get("/chain/tx/{txid}", response_class=HTMLResponse)
    def tx(request: Request, txid: str) -> HTMLResponse:
        found = get(f"/transactions/{quote(txid, safe='')}")
        if found is None:
            raise HTTPException(status_code=404, detail=f"no transaction {txid[:16]} on the node")
        t = found["transaction"]
        where = found.get("block") or {}
        return page(
            request,
            "tx.html",
            "/chain",
            f"Transaction {txid[:16]}",
            txid=txid,
            kind=t["type"],
            height=where.get("height", "pending"),
            position=found.get("position"),
            sender=t.get("sender"),  # (a coinbase has none, nor a nonce or fee)
            nonce=t.get("nonce", 0),
            fee=t.get("fee", 0),
            payload=json.dumps(t["payload"], indent=2),
            links=[],
        )

    @app.get("/chain/account/{address}", response_class=HTMLResponse)
    def account(request: Request, address: str) -> HTMLResponse:
        a = get(f"/accounts/{quote(address, safe='')}")
        if a is None:
            raise HTTPException(status_code=404, detail=f"no account {address}")
        identity = get(f"/identities/{quote(address, safe='')}")
        return page(
            request,
            "account.html",
            "/chain",
            f"Account {address[:14]}",
            address=a["address"],
            balance=a["balance"] / UNITS_PER_GNC,
            nonce=a["nonce"],
            bonded=a["bonded"] / UNITS_PER_GNC,
            identity=identity is not None,
            live=True,  # (the node's API says no authority, nor an account's transactions or meters)
            pending=a["pending"],
            sent=None,
            meters=[],
        )

    unexpected_data_pages(app, error_pages(app, page), 502, not_a_node)

    return app
