"""A client of a running node's HTTP API, and how to find the node of a data directory.

``gridnet tx ... --node URL`` and the other client commands, the devnet scenario driver and
the benchmarks talk to nodes through :class:`NodeClient`. ``running_node(DATA_DIR)`` finds
the node process that holds a data directory's lock through its ``node.json``;
``NodeClient.for_data_dir`` connects to it with the token it wrote (``node/auth.py``).
"""

from __future__ import annotations

import http.client
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final
from urllib.parse import urlsplit

from gridnet.errors import DataDirLocked, GridnetError, NodeUnavailable
from gridnet.ledger.lock import holder
from gridnet.node.auth import COOKIE_NAME, read_token_file
from gridnet.node.config import resolve

INFO_NAME: Final = "node.json"


class NodeRefused(GridnetError):
    """The node answered with an error; ``rule`` is the code it gave (e.g. NonceGap)."""

    def __init__(self, code: str, message: str, status: int) -> None:
        super().__init__(message)
        self.code = code
        self.status = status

    @property
    def rule(self) -> str:
        return self.code


@dataclass(frozen=True)
class RunningNode:
    """A node process running on a data directory (from its ``node.json``)."""

    data_dir: Path
    pid: int
    address: str
    listen: str
    api: str | None
    """HOST:PORT of its HTTP API (None: it runs without one)."""


def running_node(data_dir: Path) -> RunningNode | None:
    """The node process that runs on ``data_dir`` now, if any. Raises DataDirLocked when
    another kind of process (``gridnet chain mine``, ...) writes the data directory."""
    lock = holder(data_dir)
    if lock is None:
        return None
    try:
        info = json.loads((data_dir / INFO_NAME).read_text())
        node = RunningNode(data_dir, int(info["pid"]), str(info["address"]), str(info["listen"]), info["api"])
    except (OSError, ValueError, KeyError, TypeError):
        node = None
    if node is None or node.pid != lock.pid:
        who = "another process" if lock.pid is None else f"process {lock.pid}"
        raise DataDirLocked(
            f"data directory {data_dir} is in use by {who} ({lock.command or 'not a node'}); wait for it "
            "to finish",
            lock.pid,
        )
    return node


def data_dir_token(data_dir: Path) -> str | None:
    """The API token of the node on ``data_dir``: its configured token file, else the
    cookie it wrote at start (None when neither can be read)."""
    try:
        settings = resolve(data_dir, {})
        path = settings.path(data_dir, settings.api_token_file) if settings.api_token_file else None
        return read_token_file(path if path is not None else data_dir / COOKIE_NAME)
    except GridnetError:
        return None


class NodeClient:
    """JSON over one kept-alive HTTP connection to a node's API (reconnects once)."""

    def __init__(self, url: str, token: str | None = None, *, timeout_s: float = 30.0) -> None:
        """``url``: ``http://HOST:PORT`` or ``HOST:PORT``; ``token``: sent as a bearer token
        (needed by the endpoints that change the node's state)."""
        parts = urlsplit(url if "://" in url else f"http://{url}")
        if parts.scheme != "http" or not parts.hostname or parts.port is None:
            raise NodeUnavailable(f"node URL {url!r} must look like http://127.0.0.1:8330")
        self.url = f"http://{parts.hostname}:{parts.port}"
        self.host, self.port = parts.hostname, parts.port
        self.token = token
        self.timeout_s = timeout_s
        self._conn: http.client.HTTPConnection | None = None

    @classmethod
    def for_data_dir(cls, data_dir: Path, *, timeout_s: float = 30.0) -> NodeClient | None:
        """A client of the node running on ``data_dir`` (None if none runs there)."""
        node = running_node(data_dir)
        if node is None:
            return None
        if node.api is None:
            raise NodeUnavailable(
                f"the node on {data_dir} (process {node.pid}) runs without its HTTP API; restart it "
                "with an api address to reach it"
            )
        return cls(node.api, data_dir_token(data_dir), timeout_s=timeout_s)

    def call(self, method: str, path: str, body: dict[str, Any] | None = None) -> tuple[int, Any]:
        """Send one request; (HTTP status, decoded JSON body)."""
        data = None if body is None else json.dumps(body).encode()
        headers = {} if body is None else {"content-type": "application/json"}
        if self.token is not None:
            headers["authorization"] = f"Bearer {self.token}"
        for attempt in range(2):
            if self._conn is None:
                self._conn = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout_s)
            try:
                self._conn.request(method, path, body=data, headers=headers)
                response = self._conn.getresponse()
                raw = response.read()
                return response.status, json.loads(raw) if raw else None
            except (OSError, http.client.HTTPException, ValueError) as exc:
                self._conn.close()
                self._conn = None
                if attempt:
                    reason = getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
                    raise NodeUnavailable(
                        f"the node at {self.url} did not answer {method} {path} ({reason}); is it running?"
                    ) from None
        raise AssertionError("unreachable")

    def request(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        """The JSON answer of a successful request; NodeRefused with the node's code otherwise."""
        status, answer = self.call(method, path, body)
        if 200 <= status < 300:
            return answer
        if isinstance(answer, dict) and "code" in answer:
            raise NodeRefused(str(answer["code"]), str(answer.get("message", "")), status)
        raise NodeRefused("HTTPError", f"{method} {path} answered {status}", status)

    def get(self, path: str) -> Any:
        """GET ``path``; None when the node answers 404."""
        status, answer = self.call("GET", path)
        if status == 404:
            return None
        if status != 200:
            code = answer.get("code", "HTTPError") if isinstance(answer, dict) else "HTTPError"
            message = answer.get("message", "") if isinstance(answer, dict) else ""
            raise NodeRefused(str(code), str(message) or f"GET {path} answered {status}", status)
        return answer

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None
