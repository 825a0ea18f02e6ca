"""HTTP requests with one deadline and answers read up to a size: what the node's and the
meter's clients (``node/client.py``, ``meter/client.py``) send their requests through.

``http.client`` alone bounds each socket operation, not a request: a server that sent one
byte every few seconds held ``gridnet status --node`` past its timeout for ever, and one that
sent an endless chunked answer made the client grow until it ran out of memory.
:class:`BoundedConnection` gives each request one deadline (connecting, sending, the status
line, the headers and the body together); :func:`read_answer` reads the body in chunks and
stops past a size.
"""

from __future__ import annotations

import http.client
import math
import socket
import time
from typing import Final

from gridnet.errors import GridnetError

CHUNK_BYTES: Final = 64 * 1024
"""How much of an answer's body is read at a time [bytes]."""


class AnswerTooLarge(GridnetError):
    """An answer's body is longer than the reader takes (``limit``, in bytes)."""

    def __init__(self, limit: int) -> None:
        super().__init__(f"an answer of more than {limit:,} bytes")
        self.limit = limit


class _DeadlineSocket(socket.socket):
    """A socket each of whose reads and writes ends by ``deadline`` (``time.monotonic()``):
    its timeout is set to what is left before each one, and nothing starts once it passed."""

    __slots__ = ("deadline",)
    deadline: float

    def _arm(self) -> None:
        left = self.deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError("timed out")
        self.settimeout(left)

    def recv_into(self, buffer: bytearray | memoryview, nbytes: int = 0, flags: int = 0) -> int:  # type: ignore[override]
        self._arm()
        return super().recv_into(buffer, nbytes, flags)

    def recv(self, bufsize: int, flags: int = 0) -> bytes:
        self._arm()
        return super().recv(bufsize, flags)

    def sendall(self, data: bytes | bytearray | memoryview, flags: int = 0) -> None:  # type: ignore[override]
        self._arm()  # (a timeout bounds all of one sendall, since Python 3.5)
        super().sendall(data, flags)


class BoundedConnection(http.client.HTTPConnection):
    """An ``HTTPConnection`` (kept alive between requests) whose requests each end by the
    deadline :meth:`start` sets: past it a read or write raises ``TimeoutError``."""

    def __init__(self, host: str, port: int) -> None:
        super().__init__(host, port)
        self.deadline = math.inf

    def start(self, seconds: float) -> None:
        """The next request (and the reading of its answer) must end within ``seconds``."""
        self.deadline = time.monotonic() + seconds
        if isinstance(self.sock, _DeadlineSocket):
            self.sock.deadline = self.deadline

    def connect(self) -> None:
        self.timeout = self.deadline - time.monotonic()
        if self.timeout <= 0:
            raise TimeoutError("timed out")
        super().connect()
        plain = self.sock
        assert isinstance(plain, socket.socket)
        bounded = _DeadlineSocket(fileno=plain.detach())
        bounded.deadline = self.deadline
        self.sock = bounded


def read_answer(response: http.client.HTTPResponse, max_bytes: int) -> bytes:
    """The body of ``response``, read ``CHUNK_BYTES`` at a time; ``AnswerTooLarge`` as soon
    as it is known to hold more than ``max_bytes`` (from its Content-Length, or once read)."""
    if response.length is not None and response.length > max_bytes:
        raise AnswerTooLarge(max_bytes)
    body = bytearray()
    while chunk := response.read(min(CHUNK_BYTES, max_bytes + 1 - len(body))):
        body += chunk
        if len(body) > max_bytes:
            raise AnswerTooLarge(max_bytes)
    return bytes(body)


def shown_size(size: int) -> str:
    """``size`` [bytes] as a person reads it ("32 MiB", "4 KiB", "100 bytes")."""
    for unit, shift in (("MiB", 20), ("KiB", 10)):
        if size >= 1 << shift and size % (1 << shift) == 0:
            return f"{size >> shift} {unit}"
    return f"{size:,} bytes"
