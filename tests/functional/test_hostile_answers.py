"""Clients of a node's and a meter's HTTP API against servers that do not stop answering: an
endless chunked answer, a Content-Length past any answer, an answer (or its headers) dripped a
byte at a time. Each is one line naming the server and the limit, within the client's timeout:
a flood grew ``gridnet status --node`` by 2 GB/s until it failed with a MemoryError traceback,
and a drip held it past its 30 s timeout (the timeout bounded each read, not the request).
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from gridnet.dashboard.live import create_live_dashboard
from gridnet.errors import NodeUnavailable
from gridnet.meter.client import MeterClient, MeterUnavailable
from gridnet.node.client import NodeClient
from tests.functional.test_cli import gridnet, one_line_error

pytestmark = pytest.mark.timeout(300)

FLOOD_BYTES = 128 * 1024 * 1024
"""What the flood sends at most (then it ends its answer): endless to a client that stops at
its limit, and bounded for one that does not (a client without a limit fails its test, it does
not take the machine's memory)."""
DRIP_S = 0.25
"""Between two bytes of a drip [s]: well within a client's per-read timeout."""
DRIP_FOR_S = 30.0
"""How long a drip goes on at most (then the server hangs up)."""
TIMED_OUT = r"\(timed out: no whole answer within 2 s\); is it running\?$"
OK_HEAD = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"


class HostileServer:
    """An HTTP server on 127.0.0.1 that answers every request the same hostile way; each
    connection in its own thread, all stopped (and joined) by ``stop``."""

    def __init__(self, answer: Callable[[socket.socket, threading.Event], None]) -> None:
        self.answer = answer
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.listener.settimeout(0.2)
        self.url = f"http://127.0.0.1:{self.listener.getsockname()[1]}"
        self.stopping = threading.Event()
        self.threads: list[threading.Thread] = []
        self.acceptor = threading.Thread(target=self.accept, daemon=True)
        self.acceptor.start()

    def accept(self) -> None:
        while not self.stopping.is_set():
            try:
                conn, _ = self.listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            thread = threading.Thread(target=self.serve, args=(conn,), daemon=True)
            self.threads.append(thread)
            thread.start()

    def serve(self, conn: socket.socket) -> None:
        with conn, contextlib.suppress(OSError):
            conn.settimeout(10)
            conn.recv(65536)  # (the request: the client's bytes are not the point)
            self.answer(conn, self.stopping)

    def stop(self) -> None:
        self.stopping.set()
        self.acceptor.join(30)
        self.listener.close()
        for thread in self.threads:
            thread.join(60)
        assert not any(t.is_alive() for t in [self.acceptor, *self.threads])


def flood(conn: socket.socket, stopping: threading.Event) -> None:
    """A chunked answer of 1 MiB chunks of spaces, up to FLOOD_BYTES."""
    conn.sendall(OK_HEAD + b"Transfer-Encoding: chunked\r\n\r\n")
    chunk = b"%x\r\n" % (1 << 20) + b" " * (1 << 20) + b"\r\n"
    for _ in range(FLOOD_BYTES >> 20):
        if stopping.is_set():
            return
        conn.sendall(chunk)
    conn.sendall(b"0\r\n\r\n")


def declared_too_long(conn: socket.socket, stopping: threading.Event) -> None:
    """Headers saying 1 GiB follows, then nothing until the client hangs up."""
    conn.sendall(OK_HEAD + b"Content-Length: 1073741824\r\n\r\n")
    conn.settimeout(0.2)
    while not stopping.is_set():
        with contextlib.suppress(TimeoutError):
            if not conn.recv(1):
                return


def drip(head: bytes) -> Callable[[socket.socket, threading.Event], None]:
    """``head``, then a space every DRIP_S for DRIP_FOR_S (or until the client hangs up)."""

    def answer(conn: socket.socket, stopping: threading.Event) -> None:
        conn.sendall(head)
        until = time.monotonic() + DRIP_FOR_S
        while time.monotonic() < until and not stopping.wait(DRIP_S):
            conn.sendall(b" ")

    return answer


DRIP_BODY = drip(OK_HEAD + b"Content-Length: 1000\r\n\r\n")
DRIP_HEADERS = drip(OK_HEAD + b"X-Slow:")


@contextlib.contextmanager
def hostile(answer: Callable[[socket.socket, threading.Event], None]) -> Iterator[str]:
    server = HostileServer(answer)
    try:
        yield server.url
    finally:
        server.stop()


def test_an_endless_answer_is_cut_at_the_clients_limit() -> None:
    with hostile(flood) as url:
        started = time.monotonic()
        with pytest.raises(NodeUnavailable) as node:
            NodeClient(url, timeout_s=60).call("GET", "/status")
        with pytest.raises(MeterUnavailable) as meter:
            MeterClient(url, timeout_s=60).identity()
        assert time.monotonic() - started < 60
    assert str(node.value) == (
        f"{url} answered GET /status with more than 32 MiB, more than a node's answer holds: is it a "
        "GRIDNET node's API?"
    )
    assert str(meter.value) == (
        f"the meter at {url} answered GET /meter with more than 2 MiB, more than a meter's answer "
        "holds: is it a GRIDNET meter?"
    )


def test_an_answer_declared_too_long_is_refused_before_it_is_read() -> None:
    with hostile(declared_too_long) as url:
        started = time.monotonic()
        with pytest.raises(NodeUnavailable, match="more than 32 MiB"):
            NodeClient(url, timeout_s=60).call("GET", "/status")
        with pytest.raises(MeterUnavailable, match="more than 2 MiB"):
            MeterClient(url, timeout_s=60).identity()
        assert time.monotonic() - started < 30  # (not waited for: its length said enough)


@pytest.mark.parametrize("answer", [DRIP_BODY, DRIP_HEADERS], ids=["body", "headers"])
def test_a_dripped_answer_ends_at_the_clients_timeout(
    answer: Callable[[socket.socket, threading.Event], None],
) -> None:
    """A byte every DRIP_S never trips a per-read timeout of 2 s; the request's deadline ends
    it, once (a read that timed out is not asked again)."""
    server = HostileServer(answer)
    try:
        asks: list[tuple[Callable[[], object], type[Exception]]] = [
            (lambda: NodeClient(server.url, timeout_s=2).call("GET", "/status"), NodeUnavailable),
            (lambda: MeterClient(server.url, timeout_s=2).identity(), MeterUnavailable),
        ]
        for ask, kind in asks:
            started = time.monotonic()
            with pytest.raises(
                kind, match=r"\(timed out: no whole answer within 2 s\); is it running\?$"
            ) as info:
                ask()
            assert time.monotonic() - started < 2 + 5  # (5 s of slack for a loaded machine)
            assert server.url in str(info.value)
    finally:
        server.stop()
    assert len(server.threads) == len(asks)


def test_the_command_line_says_so_in_one_line(tmp_path: Path) -> None:
    with hostile(flood) as url:
        for command in (("status",), ("peers",)):
            line = one_line_error(gridnet(*command, "--node", url, cwd=tmp_path))
            assert url in line and "more than 32 MiB" in line
        line = one_line_error(gridnet("meter", "read", url, "ac", "0", "voltage", cwd=tmp_path))
        assert url in line and "more than 2 MiB" in line


def test_the_live_dashboard_shows_the_error_not_a_server_error() -> None:
    with hostile(flood) as url:
        app = create_live_dashboard(url)
        with TestClient(app, raise_server_exceptions=False) as browser:
            page = browser.get("/")
            assert page.status_code == 503
            assert "more than 32 MiB" in page.text and url in page.text
            panel = browser.get("/live/status")
            assert panel.status_code == 200
            assert 'id="live-error"' in panel.text and "more than 32 MiB" in panel.text
