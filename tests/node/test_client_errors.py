"""What the command line says when ``--node`` names something that is not a node's API."""

from __future__ import annotations

import http.server
import json
import os
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
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


def accept_until(
    server: socket.socket, done: threading.Event, serve: Callable[[socket.socket], object]
) -> None:
    """Hand each connection ``server`` takes to ``serve`` until ``done`` is set and no client
    is waiting (at most a minute): every connection a client made before ``done`` is served,
    and the thread ends once the test has its answer, not after a long accept timeout."""
    server.settimeout(0.1)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            conn = server.accept()[0]
        except TimeoutError:
            if done.is_set():
                return
            continue
        except OSError:
            return
        serve(conn)


def test_a_server_that_never_answers_is_waited_for_once() -> None:
    """A read is asked again when a kept-alive connection was closed under it, not after a
    timeout: `gridnet status` against a silent server took twice its timeout."""
    server = socket.create_server(("127.0.0.1", 0))
    port = server.getsockname()[1]
    accepted: list[socket.socket] = []
    done = threading.Event()
    thread = threading.Thread(target=accept_until, args=(server, done, accepted.append), daemon=True)
    thread.start()
    with pytest.raises(NodeUnavailable, match="timed out"):
        NodeClient(f"127.0.0.1:{port}", timeout_s=1).call("GET", "/status")
    done.set()
    thread.join(60)
    server.close()
    assert len(accepted) == 1
    for conn in accepted:
        conn.close()


def test_a_submission_whose_answer_is_lost_is_sent_once() -> None:
    """A POST the node read before the connection dropped was sent again, on the chance that
    a kept-alive connection had been closed: the transaction it had taken came back
    AlreadyKnown, an error, and a user who sent it again paid twice."""
    server = socket.create_server(("127.0.0.1", 0))
    port = server.getsockname()[1]
    requests: list[bytes] = []

    def read_and_hang_up(conn: socket.socket) -> None:
        with conn:
            conn.settimeout(30)
            requests.append(conn.recv(65536))

    done = threading.Event()
    thread = threading.Thread(target=accept_until, args=(server, done, read_and_hang_up), daemon=True)
    thread.start()
    client = NodeClient(f"127.0.0.1:{port}", timeout_s=30)
    with pytest.raises(NodeUnavailable, match="did not answer POST /transactions"):
        client.call("POST", "/transactions", {"tx": "00"})
    done.set()
    thread.join(60)
    server.close()
    assert len(requests) == 1 and requests[0].startswith(b"POST /transactions")


@dataclass
class FakeNode:
    """A server posing as a node: GET /params (``chain_id`` named beside the parameters),
    GET /accounts/..., and POST answered with ``post`` (status, JSON), each POST counted."""

    url: str = ""
    chain_id: str = ""
    post: tuple[int, dict[str, str]] = (500, {})
    posts: list[str] = field(default_factory=list)


@pytest.fixture
def fake_node() -> Iterator[FakeNode]:
    from gridnet.encoding import encode
    from gridnet.ledger.genesis import chain_id_of
    from tests.helpers import test_params

    params = test_params()
    fake = FakeNode(chain_id=chain_id_of(params).hex())

    class Handler(http.server.BaseHTTPRequestHandler):
        def answer(self, status: int, body: object) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self) -> None:
            if self.path == "/params":
                self.answer(200, {"chain_id": fake.chain_id, "hex": encode(params).hex()})
                return
            self.answer(200, {
                "address": self.path.rsplit("/", 1)[-1], "balance": 10**12, "nonce": 0, "bonded": 0,
                "unbonding": 0, "pending": 0, "next_nonce": 0,
            })  # fmt: skip

        def do_POST(self) -> None:
            self.rfile.read(int(self.headers["content-length"]))
            fake.posts.append(self.path)
            self.answer(*fake.post)

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    fake.url = f"127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield fake
    finally:
        server.shutdown()
        server.server_close()
        thread.join(30)


def _transfer(fake: FakeNode, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    key = tmp_path / "k.key"
    if not key.exists():
        assert gridnet("keys", "new", "--out", key, "--unencrypted", cwd=tmp_path).returncode == 0
    to = "gns2xnk54lq6gwljdpkfgunbutpbf2nek2f5aueta"
    args = ("--key", key, "--to", to, "--amount", "1", "--node", fake.url)
    return gridnet("tx", "transfer", *args, cwd=tmp_path)


def test_a_node_that_names_another_chain_than_its_parameters_gets_nothing_signed(
    fake_node: FakeNode, tmp_path: Path
) -> None:
    """The chain id a transaction is signed for is the parameters' own: the node's word for
    it was taken as given, so a node (or a server posing as one) got a transaction signed for
    another chain, where it was valid."""
    fake_node.chain_id = "ab" * 32
    line = one_line_error(_transfer(fake_node, tmp_path))
    assert "names chain id abababababababab" in line and "nothing was signed" in line
    assert fake_node.posts == []


@pytest.mark.parametrize("named", ["ab" * 32, "not hex at all", ""])
def test_an_approval_of_validators_is_signed_for_the_parameters_chain_not_the_one_named(
    fake_node: FakeNode, tmp_path: Path, named: str
) -> None:
    """``tx approve-validators --node`` took the chain id the node named as given: a malformed
    one was a traceback, and a hostile node got an approval signed for another chain."""
    from gridnet.crypto.keys import PrivateKey, write_key_file

    honest = fake_node.chain_id
    key = PrivateKey.from_label("approver")
    write_key_file(tmp_path / "v.key", key)
    args = ("tx", "approve-validators", "--key", "v.key", "--seq", "1", "--member", key.public_key.hex())
    fake_node.chain_id = named
    line = one_line_error(gridnet(*args, "--node", fake_node.url, cwd=tmp_path))
    assert "nothing was signed" in line and "names chain id" in line, line
    fake_node.chain_id = honest
    result = gridnet(*args, "--node", fake_node.url, cwd=tmp_path)
    assert result.returncode == 0 and result.stdout.startswith(key.public_key.hex() + ":"), result.stderr


def test_a_transaction_the_node_holds_already_is_not_an_error(fake_node: FakeNode, tmp_path: Path) -> None:
    """AlreadyKnown is the node's answer for this very transaction (its id): it is pending."""
    fake_node.post = (422, {"code": "AlreadyKnown", "message": "transaction is already pending"})
    result = _transfer(fake_node, tmp_path)
    assert result.returncode == 0 and result.stdout.startswith(f"already pending at http://{fake_node.url}: ")
    fake_node.post = (202, {})
    result = _transfer(fake_node, tmp_path)
    assert result.returncode == 0 and "on chain 'gridnet-devnet'" in result.stdout, result.stdout
    assert fake_node.posts == ["/transactions", "/transactions"]


BY = ("--registrant", "cd" * 32)
ADDRESS = "gns2xnk54lq6gwljdpkfgunbutpbf2nek2f5aueta"
CHAIN_READERS = [
    ("chain", "show"),
    ("chain", "account", "--address", ADDRESS),
    ("chain", "credits", "--controller", "Helios", *BY),
    ("chain", "aggregators", "--name", "Grid", *BY),
    ("chain", "aggregators", "--name", "Grid", *BY, "--tid", "ab" * 32),
    ("chain", "ev", "--hotspot", "Depot", *BY),
    ("chain", "ev", "--hotspot", "Depot", *BY, "--deal", "ab" * 32),
    ("chain", "credit-bank", "--name", "Commons", *BY),
    ("chain", "credit-bank", "--name", "Commons", *BY, "--borrower", ADDRESS),
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


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:18330/foo",
        "http://user:secret@127.0.0.1:18330",
        "http://127.0.0.1:18330/?x=1",
        "http://127.0.0.1:18330#top",
        "https://127.0.0.1:18330",
        "http://127.0.0.1",
    ],
)
def test_a_node_url_with_more_than_host_and_port_is_refused_in_one_line(url: str, tmp_path: Path) -> None:
    """A path, a query or user-info in --node was dropped without a word (the request went to
    http://HOST:PORT/status all the same)."""
    with pytest.raises(NodeUnavailable, match="must be http://HOST:PORT and nothing more"):
        NodeClient(url)
    line = one_line_error(gridnet("status", "--node", url, cwd=tmp_path))
    assert "must be http://HOST:PORT and nothing more" in line, line


def test_a_node_url_of_host_and_port_with_or_without_a_slash_is_taken() -> None:
    for url in ("127.0.0.1:8330", "http://127.0.0.1:8330", "http://127.0.0.1:8330/", "http://[::1]:8330"):
        assert NodeClient(url).port == 8330


@pytest.mark.parametrize(
    ("written", "why"),
    [
        ("garbage", "not JSON"),
        ("[1, 2]", "not a JSON object"),
        ('{"pid": "x", "address": "n", "listen": "l", "api": null}', "its 'pid' is not a process id"),
        ('{"pid": 7}', "no 'address' field"),
    ],
)
def test_a_damaged_node_json_beside_a_running_node_is_named_not_taken_for_a_start(
    tmp_path: Path, written: str, why: str
) -> None:
    """A node writes its node.json whole (by a rename): one that does not read is damaged, and
    was answered 'the node ... is still starting; try again in a moment' for as long as it ran."""
    from gridnet.errors import DataDirLocked
    from gridnet.ledger.lock import LOCK_NAME, acquire
    from gridnet.node.client import INFO_NAME, running_node

    lock = acquire(tmp_path)
    try:
        (tmp_path / LOCK_NAME).write_text(f"{os.getpid()}\ngridnet node --data-dir {tmp_path}\n")
        with pytest.raises(DataDirLocked, match="still starting"):  # (no node.json yet: it starts)
            running_node(tmp_path)
        (tmp_path / INFO_NAME).write_text(written)
        with pytest.raises(DataDirLocked) as info:
            running_node(tmp_path)
        message = str(info.value)
        assert f"{tmp_path / INFO_NAME}, where commands find its API, is damaged ({why})" in message
        assert "restart the node" in message and "still starting" not in message
        line = one_line_error(gridnet("status", "--data-dir", tmp_path, cwd=tmp_path))
        assert "is damaged" in line, line
    finally:
        lock.release()
