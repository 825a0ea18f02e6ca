"""A hostile user or peer against a real node process: bodies it must not read, path numbers
that are not ASCII digits, orders that would flood or evict the market's book."""

from __future__ import annotations

import asyncio
import os
import socket
import threading
import time
from pathlib import Path
from urllib.parse import quote

from gridnet.crypto.keys import PrivateKey, write_key_file
from gridnet.encoding import encode
from gridnet.ledger.chain import Chain
from gridnet.market.orders import Order, Side, SignedOrder, sign_order, topic
from gridnet.net.tcp import dial, frame
from gridnet.node.client import NodeClient
from gridnet.node.devnet import LOCAL, DevNode, free_port
from gridnet.node.messages import OrderMsg, encode_message
from gridnet.node.orders import OrderLimits
from gridnet.units import interval_of
from tests.functional.test_cli import gridnet, ok
from tests.functional.test_dashboard_browser import dashboard
from tests.functional.test_node_ops import _metrics, fast_params, new_node
from tests.helpers import METER_MAKER, meter_of, register_traders, wait_for

CEILING = 120


def vm_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


def started(tmp_path: Path, nodes: list[DevNode]) -> tuple[DevNode, NodeClient]:
    node = new_node(tmp_path, "n", fast_params())
    nodes.append(node)
    node.start()
    assert wait_for(lambda: node.head() is not None, CEILING)
    return node, node.client()


def order(key: PrivateKey, interval: int, nonce: int, chain_id: bytes, area: str = "north") -> SignedOrder:
    o = Order(Side.OFFER, key.address, key.public_key, meter_of(key), area, interval, 100, 7, interval, nonce)
    return sign_order(key, o, chain_id)


HONEST = PrivateKey.from_label("honest-trader")
FAR_OFF = PrivateKey.from_label("far-off-trader")
TRADERS = [PrivateKey.from_label(f"trader-{k}") for k in range(40)]


def trading_node(tmp_path: Path, nodes: list[DevNode]) -> tuple[DevNode, NodeClient]:
    """A node whose chain registered the traders' identities and meters (a node takes orders
    from those only)."""
    traders = [HONEST, FAR_OFF, *TRADERS]
    node = DevNode("n", tmp_path / "n", free_port(), free_port())
    chain = Chain.create(node.data_dir, fast_params(*traders, METER_MAKER))
    register_traders(chain, traders)
    chain.close()
    write_key_file(node.data_dir / "node.key", PrivateKey.from_label(f"hostile-{os.getpid()}"))
    nodes.append(node)
    node.start()
    assert wait_for(lambda: node.head() is not None, CEILING)
    return node, node.client()


def test_bodies_are_refused_from_their_headers_without_being_read(
    tmp_path: Path, nodes: list[DevNode]
) -> None:
    node, client = started(tmp_path, nodes)
    assert node.process is not None
    before = vm_rss_mb(node.process.pid)
    answers: list[bytes] = []

    def post_50_mb() -> None:
        with socket.create_connection((LOCAL, node.api_port), timeout=CEILING) as s:
            size = 50 * 1024 * 1024
            s.sendall(
                f"POST /transactions HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {client.token}\r\n"
                f"Content-Type: application/json\r\nContent-Length: {size}\r\n\r\n".encode()
            )
            chunk = b"0" * (1 << 20)
            try:
                for _ in range(50):
                    s.sendall(chunk)
            except OSError:  # the node answered and closed: it will not read the rest
                pass
            answers.append(s.recv(100))

    threads = [threading.Thread(target=post_50_mb) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(CEILING)
    assert len(answers) == 8 and all(a.split(b" ")[1] == b"413" for a in answers), answers
    assert vm_rss_mb(node.process.pid) - before < 50  # (reading them would take 400 MB)
    # Each route has its own bound: an order's body is small, a transaction's may be large.
    status, answer = client.call("POST", "/orders", {"order": "00" * 40_000})
    assert (status, answer["code"]) == (413, "PayloadTooLarge")
    status, answer = client.call("POST", "/transactions", {"tx": "00" * 40_000})
    assert status == 400 and answer["code"] != "PayloadTooLarge"
    # A small declared length with a larger chunked body: the chunks are not followed.
    with socket.create_connection((LOCAL, node.api_port), timeout=CEILING) as s:
        chunk = b'{"claims": "' + b"0" * 4096 + b'"}'
        s.sendall(
            f"POST /datagrams/claims HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {client.token}\r\n"
            "Content-Type: application/json\r\nContent-Length: 11\r\nTransfer-Encoding: chunked\r\n\r\n"
            f"{len(chunk):x}\r\n".encode()
            + chunk
            + b"\r\n0\r\n\r\n"
        )
        reply = b""
        while b'"}' not in reply and (more := s.recv(4096)):
            reply += more
    assert reply.split(b" ")[1] == b"411" and b'"code":"LengthRequired"' in reply, reply
    assert client.get("/health")["status"] == "ok"


def test_path_numbers_are_ascii_digits_and_bad_bodies_are_bad_requests(
    tmp_path: Path, nodes: list[DevNode]
) -> None:
    _, client = started(tmp_path, nodes)
    for text in ("²", "١", "１", "+5", "1_0"):  # a superscript, Arabic-Indic and full-width digit, ...
        for route in ("/blocks/", "/orders/north/"):
            path = route + quote(text)
            status, answer = client.call("GET", path)
            assert (status, answer["code"]) == (400, "BadRequest"), (path, answer)
    assert client.call("GET", "/blocks/0")[0] == 200
    for text in ("99999999999999999999", str(2**63)):
        status, answer = client.call("GET", f"/orders/north/{text}")
        assert (status, answer["code"]) == (400, "BadRequest") and "is too large" in answer["message"]
    # Two Authorization headers: refused, whichever of them holds the token.
    with socket.create_connection((LOCAL, client.port), timeout=CEILING) as s:
        s.sendall(
            f"POST /transactions HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer wrong\r\n"
            f"Authorization: Bearer {client.token}\r\nContent-Type: application/json\r\n"
            "Content-Length: 2\r\n\r\n{}".encode()
        )
        reply = b""
        while b'"}' not in reply and (more := s.recv(4096)):
            reply += more
    assert reply.split(b" ")[1] == b"400" and b"one Authorization header" in reply, reply
    # A body that is not JSON, or JSON of the wrong shape: 400 BadRequest, as docs/api.md says.
    assert client.token is not None
    with socket.create_connection((LOCAL, client.port), timeout=CEILING) as s:
        body = b"{not json"
        s.sendall(
            f"POST /transactions HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {client.token}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n".encode()
            + body
        )
        reply = b""
        while b'"}' not in reply and (more := s.recv(4096)):
            reply += more
    assert reply.split(b" ")[1] == b"400" and b'"code":"BadRequest"' in reply, reply
    status, answer = client.call("POST", "/orders", {"wrong": 1})
    assert (status, answer["code"]) == (400, "BadRequest")


def test_orders_far_ahead_cannot_evict_the_next_auction_and_one_key_cannot_fill_a_topic(
    tmp_path: Path, nodes: list[DevNode]
) -> None:
    node, client = trading_node(tmp_path, nodes)
    chain = Chain.open(node.data_dir, readonly=True)
    chain_id = chain.chain_id
    chain.close()
    now = interval_of(int(time.time() * 1000))
    honest = order(HONEST, now + 1, 0, chain_id)
    assert client.call("POST", "/orders", {"order": encode(honest).hex()})[0] == 202
    # 1,030 orders for far-off deliveries: each refused by name, the next auction untouched.
    attacker = FAR_OFF
    window = OrderLimits().window
    codes = {
        client.call(
            "POST", "/orders", {"order": encode(order(attacker, now + window + 5 + i, i, chain_id)).hex()}
        )[1]["code"]
        for i in range(1_030)
    }
    assert codes == {"OrderTooFarAhead"}
    next_auction = client.get(f"/orders/north/{now + 1}")
    assert [o["hex"] for o in next_auction["orders"]] == [encode(honest).hex()]

    # One key sends 20,000 orders for one topic over a peer link: it keeps its share only, and
    # a valid order beyond a node's bounds is no fault of the peer that relays it.
    flood = [order(attacker, now + 2, n, chain_id) for n in range(20_000)]
    others = [order(k, now + 2, n, chain_id) for k in TRADERS for n in range(16)]
    asyncio.run(send_orders(node.port, chain_id, flood + others))
    name = f"/orders/north/{now + 2}"
    per_key = OrderLimits().per_key
    assert wait_for(lambda: client.get(name)["total"] == per_key + len(others), CEILING)
    assert not any(k.startswith("gridnet_peer_faults_total") for k in _metrics(node))
    # Read a page at a time.
    seen: list[str] = []
    offset: int | None = 0
    while offset is not None:
        page = client.get(f"{name}?offset={offset}&limit=300")
        assert len(page["orders"]) <= 300 and page["topic"] == topic("north", now + 2)
        seen += [o["id"] for o in page["orders"]]
        offset = page["next_offset"]
    assert len(seen) == len(set(seen)) == per_key + len(others)


def test_free_keys_cannot_fill_the_next_auction(tmp_path: Path, nodes: list[DevNode]) -> None:
    """The red team's attack (256 fresh keys x 16 orders for the next auction over one peer
    link filled its topic and an honest POST /orders was 422 OrderBookFull): now none is kept,
    and the honest order is taken. None is the link's fault: an honest relayer may have
    checked such an order on another branch, where the owner is registered (docs/protocol.md
    12)."""
    node, client = trading_node(tmp_path, nodes)
    now = interval_of(int(time.time() * 1000))
    free = [PrivateKey.from_label(f"free-key-{k}") for k in range(256)]
    chain = Chain.open(node.data_dir, readonly=True)
    chain_id = chain.chain_id
    chain.close()
    status, answer = client.call(
        "POST", "/orders", {"order": encode(order(free[0], now + 1, 0, chain_id)).hex()}
    )
    assert (status, answer["code"]) == (422, "UnknownIdentity"), answer
    flood = [order(k, now + 1, n, chain_id) for k in free for n in range(16)]
    asyncio.run(send_orders(node.port, chain_id, flood))
    refused = 'gridnet_orders_refused_total{rule="UnknownIdentity"}'
    assert wait_for(lambda: _metrics(node).get(refused) == len(flood), CEILING)  # (all arrived)
    assert client.get(f"/orders/north/{now + 1}")["total"] == 0
    assert not any(k.startswith("gridnet_peer_faults_total") for k in _metrics(node))
    assert (
        client.call("POST", "/orders", {"order": encode(order(HONEST, now + 1, 0, chain_id)).hex()})[0] == 202
    )
    assert client.get(f"/orders/north/{now + 1}")["total"] == 1


async def send_orders(port: int, chain_id: bytes, orders: list[SignedOrder]) -> None:
    """Send the orders over one peer link, then read until the node closes it (it has then
    handled every frame)."""
    reader, writer, session = await dial(LOCAL, port, PrivateKey.from_label("order-flooder"), chain_id)
    try:
        for i, signed in enumerate(orders):
            writer.write(frame(session.encrypt(encode_message(OrderMsg(signed)))))
            if i % 500 == 0:
                await writer.drain()
        await writer.drain()
        writer.write_eof()
        while await asyncio.wait_for(reader.read(1 << 16), timeout=CEILING):
            pass
    except ConnectionError:  # (the node closed the link first)
        pass
    writer.close()


def _get(port: int, host: str | None, path: str = "/status") -> tuple[int, bytes]:
    """GET ``path`` on 127.0.0.1:``port`` with this Host header (None: HTTP/1.0 without one)."""
    with socket.create_connection((LOCAL, port), timeout=CEILING) as s:
        if host is None:
            s.sendall(f"GET {path} HTTP/1.0\r\n\r\n".encode())
        else:
            s.sendall(f"GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode())
        reply = b""
        while more := s.recv(65536):
            reply += more
    head, _, body = reply.partition(b"\r\n\r\n")
    return int(head.split(b" ")[1]), body


def test_a_loopback_api_answers_only_requests_addressed_to_the_loopback(
    tmp_path: Path, nodes: list[DevNode]
) -> None:
    """DNS rebinding: a web page the node's user opens resolves a name of its own to 127.0.0.1
    and reads the node's API through it (the browser sends that name as the Host): /peers,
    /status, /mempool. A node on a loopback address answers such a request 421; requests
    addressed to 127.0.0.1, localhost or [::1] (the CLI's, the dashboard's, a browser's on
    the node's own address) are served as before."""
    node, client = started(tmp_path, nodes)
    port = node.api_port
    for host in (
        f"evil.example:{port}",
        "evil.example",
        f"127.0.0.1.evil.example:{port}",
        f"localhost:{port}x",
    ):
        for path in ("/status", "/peers", "/mempool", "/nope"):
            status, body = _get(port, host, path)
            assert status == 421 and b'"code":"MisdirectedRequest"' in body, (host, path, body)
    for host in (f"127.0.0.1:{port}", "127.0.0.1", f"localhost:{port}", f"[::1]:{port}", "LocalHost", None):
        assert _get(port, host)[0] == 200, host
    status = ok(gridnet("status", "--node", f"http://localhost:{port}", "--json", cwd=tmp_path))
    assert '"height"' in status
    assert client.get("/health")["status"] == "ok"
    # The live dashboard (on loopback too) reads the node, and refuses a rebound name itself.
    with dashboard(["--node", client.url], tmp_path / "dashboard.log") as origin:
        dashboard_port = int(origin.rsplit(":", 1)[1])
        assert _get(dashboard_port, f"127.0.0.1:{dashboard_port}", "/")[0] == 200
        assert _get(dashboard_port, f"evil.example:{dashboard_port}", "/")[0] == 421


def test_errors_quote_a_clients_input_shortened(tmp_path: Path, nodes: list[DevNode]) -> None:
    """A 100 kB path came back whole in its 404, a 7,000-character name in /credits' (and the
    other readers' by name): what an error quotes of a client's input is cut to 80 characters."""
    _, client = started(tmp_path, nodes)
    long_path = "/x" * 50_000
    long_name = "n" * 7_000
    cases = [
        long_path,
        *(
            f"/{route}/{long_name}?registrant={'ab' * 32}"
            for route in ("credits", "credit-banks", "aggregators", "ev-hotspots")
        ),
        f"/commands/{long_name}",
        f"/accounts/gn{long_name}",
        f"/state/{long_name}/00",
        f"/blocks/{long_name}",
    ]
    for path in cases:
        status, answer = client.call("GET", path)
        assert status in (400, 404) and isinstance(answer, dict), (path[:40], status)
        message = answer["message"]
        assert len(message) < 400 and "'..." in message, message


def test_head_is_answered_as_get_without_a_body(tmp_path: Path, nodes: list[DevNode]) -> None:
    """``curl -I /health`` was 405: HEAD is answered on every GET endpoint, headers only."""
    node, _ = started(tmp_path, nodes)
    for path in ("/health", "/status", "/head", "/blocks/0", "/mempool", "/metrics"):
        get = _request(node.api_port, "GET", path)
        head = _request(node.api_port, "HEAD", path)
        assert head[0] == get[0] == 200, (path, head[0], get[0])
        assert head[2] == b"" and int(head[1][b"content-length"]) > 0, path
        assert head[1][b"content-type"] == get[1][b"content-type"], path
    for path in ("/blocks/0", "/params"):  # (what does not change between the two: the same length)
        assert (
            _request(node.api_port, "HEAD", path)[1][b"content-length"]
            == str(len(_request(node.api_port, "GET", path)[2])).encode()
        ), path
    assert _request(node.api_port, "HEAD", "/nope")[0] == 404
    assert _request(node.api_port, "HEAD", "/transactions")[0] == 405  # (POST only)


def _request(port: int, method: str, path: str) -> tuple[int, dict[bytes, bytes], bytes]:
    """One request on its own connection: the status, the headers and the body (read until
    the server closes)."""
    with socket.create_connection((LOCAL, port), timeout=CEILING) as s:
        s.sendall(f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n".encode())
        reply = b""
        while more := s.recv(65536):
            reply += more
    head, _, body = reply.partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    headers = dict(line.lower().split(b": ", 1) for line in lines[1:])
    return int(lines[0].split(b" ")[1]), headers, body


def test_a_block_height_of_2_63_or_more_is_a_bad_request(tmp_path: Path, nodes: list[DevNode]) -> None:
    """The docs say a height is below 2^63: one above was a 404 "no block at height ..."."""
    _, client = started(tmp_path, nodes)
    for ref in (str(2**63), "9" * 63):
        status, answer = client.call("GET", f"/blocks/{ref}")
        assert status == 400 and answer["code"] == "BadRequest", answer
        assert "too large (at most 2^63 - 1)" in answer["message"], answer
    status, answer = client.call("GET", f"/blocks/{2**63 - 1}")
    assert status == 404 and "no block at height" in answer["message"], answer
