"""What the command line says when ``--node`` names something that is not a node's API."""

from __future__ import annotations

import socket
import threading

import pytest

from gridnet.errors import NodeUnavailable
from gridnet.node.client import NodeClient


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
