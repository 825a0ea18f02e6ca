"""What the command line says when ``--node`` names something that is not a node's API."""

from __future__ import annotations

import contextlib
import http.server
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from gridnet.errors import NodeUnavailable
from gridnet.node.client import NodeClient
from tests.functional.test_cli import gridnet, one_line_error


def test_a_port_that_does_not_speak_http_is_named_as_such_without_its_bytes() -> None:
    """A node's peer port answers with a binary hello: the error says what it is likely to be
    and prints none of those bytes."""
    server = socket.create_server(("127.0.0.1", 0))
    port = server.getsockname()[1]

    def answer_in_binary() -> None:
        for _ in range(2):  # (a read is asked twice)
            conn, _ = server.accept()
            with conn:
                conn.recv(4096)
                conn.sendall(b"\x00\x00\x00$\x92\x02\xc4 \x07\x1b[31m\r\n\r\n")

    thread = threading.Thread(target=answer_in_binary, daemon=True)
    thread.start()
    with pytest.raises(NodeUnavailable) as info:
        NodeClient(f"127.0.0.1:{port}", timeout_s=30).call("GET", "/status")
    message = str(info.value)
    assert "peer port, not its API" in message and message.isprintable()
    thread.join(30)
    server.close()


@pytest.fixture
def web_server() -> Iterator[tuple[str, list[bytes]]]:
    """An HTTP server on 127.0.0.1 that is not a node: it answers every GET with the body
    the test puts first in its list (a web page, or JSON of another kind)."""
    bodies: list[bytes] = [b"<html>hello</html>"]

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("content-length", str(len(bodies[0])))
            self.end_headers()
            self.wfile.write(bodies[0])

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"127.0.0.1:{server.server_address[1]}", bodies
    finally:
        server.shutdown()
        server.server_close()
        thread.join(30)


def test_a_web_server_is_not_taken_for_a_node(web_server: tuple[str, list[bytes]], tmp_path: Path) -> None:
    """It answered, so it is not 'did not answer ... is it running?'; and JSON of another kind
    is refused before ``--json`` prints it as if it were the node's status."""
    url, bodies = web_server
    for command in ("status", "peers"):
        line = one_line_error(gridnet(command, "--node", url, cwd=tmp_path))
        assert "answered GET" in line and "but not in JSON: is it a GRIDNET node's API?" in line
    bodies[0] = b'{"a": 1}'
    for command in ("status", "peers"):
        result = gridnet(command, "--node", url, "--json", cwd=tmp_path)
        assert "is it a GRIDNET node?" in one_line_error(result) and result.stdout == ""


def test_a_server_that_never_answers_is_waited_for_once() -> None:
    """A read is asked again when a kept-alive connection was closed under it, not after a
    timeout: `gridnet status` against a silent server took twice its timeout."""
    server = socket.create_server(("127.0.0.1", 0))
    port = server.getsockname()[1]
    accepted: list[socket.socket] = []

    def accept_and_say_nothing() -> None:
        server.settimeout(30)
        with contextlib.suppress(OSError):
            while len(accepted) < 2:
                accepted.append(server.accept()[0])

    thread = threading.Thread(target=accept_and_say_nothing, daemon=True)
    thread.start()
    with pytest.raises(NodeUnavailable, match="timed out"):
        NodeClient(f"127.0.0.1:{port}", timeout_s=1).call("GET", "/status")
    server.close()
    thread.join(60)
    assert len(accepted) == 1
    for conn in accepted:
        conn.close()


CHAIN_READERS = [
    ("chain", "show"),
    ("chain", "account", "--address", "gns2xnk54lq6gwljdpkfgunbutpbf2nek2f5aueta"),
    ("chain", "credits", "--controller", "Helios"),
    ("chain", "aggregators", "--name", "Grid"),
    ("chain", "aggregators", "--name", "Grid", "--tid", "ab" * 32),
    ("chain", "ev", "--hotspot", "Depot"),
    ("chain", "ev", "--hotspot", "Depot", "--deal", "ab" * 32),
    ("chain", "credit-bank", "--name", "Commons"),
    ("chain", "credit-bank", "--name", "Commons", "--borrower", "gns2xnk54lq6gwljdpkfgunbutpbf2nek2f5aueta"),
]


@pytest.mark.parametrize("args", CHAIN_READERS, ids=[" ".join(a[:2]) + f" {len(a)}" for a in CHAIN_READERS])
def test_every_chain_reader_says_when_the_json_is_not_a_nodes(
    web_server: tuple[str, list[bytes]], tmp_path: Path, args: tuple[str, ...]
) -> None:
    """JSON of another kind (or of the right keys with the wrong types) is named as not a
    node's: chain aggregators, ev and credit-bank took any JSON object and failed with
    KeyError: 'aggregators' ('hotspot', 'bank') where the others said so."""
    url, bodies = web_server
    bodies[0] = b'{"a": 1, "aggregators": 1, "hotspot": 1, "bank": 1}'
    result = gridnet(*args, "--node", url, "--json", cwd=tmp_path)
    line = one_line_error(result)
    assert "unexpected answer to GET /" in line and "(is it a GRIDNET node?)" in line, line
    assert result.stdout == ""
