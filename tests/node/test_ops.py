"""Operating a node, in process: the log's categories and rotation, /health when the node
stalls, the sync progress /status reports, the settings file's rules."""

from __future__ import annotations

import errno
import logging
import re
import socket
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TypeVar

import msgspec
import pytest
from fastapi.testclient import TestClient

from gridnet.crypto.keys import PrivateKey
from gridnet.errors import ConfigError, StoreCorrupt
from gridnet.ledger.blocks import encode_body
from gridnet.ledger.store import DB_NAME
from gridnet.net.tcp import TcpTransport
from gridnet.node.api import create_app
from gridnet.node.config import (
    NodeSettings,
    bind_problem,
    config_template,
    parse_host_port,
    resolve,
    settings_to_toml,
)
from gridnet.node.logs import LOG_NAME, configure, logger, reset
from gridnet.node.messages import GetBlocksMsg, GetHeadersMsg, HeadersMsg, StatusMsg, encode_work
from gridnet.node.node import Node, Outgoing
from gridnet.node.process import _bind_api
from tests.helpers import add_blocks, extend, new_chain, test_keys, test_params

_M = TypeVar("_M")


@pytest.fixture
def restore_logging() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    reset()  # drop what the test configured
    assert root.handlers == handlers
    root.setLevel(level)


def test_the_log_rotates_and_debug_is_per_category(tmp_path: Path, restore_logging: None) -> None:
    configure(tmp_path, level="info", debug=["net"], console=False, max_bytes=2_000, backups=2)
    logger("net").debug("a net detail")
    logger("sync").debug("a sync detail")
    logger("sync").info("new head 1")
    text = (tmp_path / LOG_NAME).read_text()
    assert "DEBUG   net     a net detail" in text and "INFO    sync    new head 1" in text
    assert "a sync detail" not in text  # sync stays at info
    assert text[:4].isdigit() and "Z INFO" in text  # UTC ISO timestamps
    for i in range(200):
        logger("mine").info("mined block %d with a line long enough to fill the file", i)
    assert (tmp_path / f"{LOG_NAME}.1").exists() and (tmp_path / f"{LOG_NAME}.2").exists()
    assert not (tmp_path / f"{LOG_NAME}.3").exists()  # only 2 kept
    assert (tmp_path / LOG_NAME).stat().st_size <= 2_000


def test_health_is_503_when_the_event_loop_stalls(tmp_path: Path) -> None:
    chain = new_chain(tmp_path / "n", test_params(test_keys()))
    node = Node("n", chain)
    transport = TcpTransport(node, PrivateKey.from_label("ops"), ("127.0.0.1", 0), [])
    app = create_app(node, clock=lambda: 0, broadcast=lambda out: None, transport=transport)
    with TestClient(app) as client:
        assert client.get("/health").json()["status"] == "ok"
        transport.last_tick = time.monotonic() - 30
        answer = client.get("/health")
        assert answer.status_code == 503 and answer.json()["code"] == "Unhealthy"
    node.close()


@pytest.mark.parametrize("kind", ["another block's transactions", "TEXT"])
def test_health_is_503_once_the_store_is_found_damaged_and_the_bad_block_is_not_served(
    tmp_path: Path, kind: str
) -> None:
    chain = new_chain(tmp_path / "n", test_params(test_keys()))
    for _ in range(3):
        extend(chain)
    node = Node("n", chain)
    transport = TcpTransport(node, PrivateKey.from_label("ops"), ("127.0.0.1", 0), [])
    app = create_app(node, clock=lambda: 0, broadcast=lambda out: None, transport=transport)
    with TestClient(app) as client:
        assert client.get("/health").json()["status"] == "ok"
        later = chain.block_at(3)
        assert later is not None
        damage = sqlite3.connect(tmp_path / "n" / DB_NAME)  # (a bad disk, behind the node's back)
        txs = "x" if kind == "TEXT" else encode_body(later)
        damage.execute("UPDATE blocks SET txs=? WHERE hash=?", (txs, chain.main[2].hash))
        damage.commit()
        damage.close()
        found = (
            rf"the blocks row {chain.main[2].hash.hex()[:16]} holds TEXT, not a BLOB, in its txs column"
            if kind == "TEXT"
            else r"block 2 .*: its transactions are not its header's"
        )
        with pytest.raises(StoreCorrupt, match=found):
            node.handle("peer", GetBlocksMsg((chain.main[1].hash,), 10), 0)  # nothing served
        answer = client.get("/health")
        assert answer.status_code == 503 and answer.json()["code"] == "Unhealthy"
        message = answer.json()["message"]
        assert message.startswith("the node's store is damaged: ") and "gridnet chain verify" in message
        assert re.search(found, message), message
        assert client.get("/health").status_code == 503  # (it stays: damage does not heal by itself)
    node.close()


def ahead_of(node: Node, path: Path, blocks: int) -> Node:
    """A peer holding ``node``'s main chain and ``blocks`` more blocks."""
    chain = new_chain(path, node.chain.params)
    add_blocks(chain, [b for h in range(1, node.chain.height + 1) if (b := node.chain.block_at(h))])
    for _ in range(blocks):
        extend(chain, miner=PrivateKey.from_label("ops-peer-miner"))
    return Node("peer", chain)


def only(out: list[Outgoing], kind: type[_M]) -> _M:
    (msg,) = [m for _, m in out if isinstance(m, kind)]
    return msg


def test_status_reports_sync_progress_toward_the_best_known_height(tmp_path: Path) -> None:
    params = test_params(test_keys())
    chain = new_chain(tmp_path / "n", params)
    extend(chain)
    node = Node("n", chain)
    peer = ahead_of(node, tmp_path / "p", 3)
    node.add_peer("p")
    now = peer.chain.head.header.timestamp + 1_000
    asked = only(node.handle("p", peer.status(), now), GetHeadersMsg)
    assert node.sync_target() == 1  # its word alone: not yet
    node.handle("p", only(peer.handle("n", asked, now), HeadersMsg), now)
    with TestClient(create_app(node, clock=lambda: 0, broadcast=lambda out: None)) as client:
        status = client.get("/status").json()
    assert status["height"] == 1 and status["sync"] == {
        "target_height": 4,
        "progress": 0.25,
        "syncing": True,
        "headers_pending": 3,
    }
    assert status["peers"]["count"] == 1 and status["listen"] is None
    node.close()
    peer.close()


def test_an_announced_height_counts_only_as_far_as_the_peers_checked_headers_back_it(tmp_path: Path) -> None:
    """The red team's liar announced height 10**15 every 2 s with work 0: never asked for
    headers (its work is not above ours), its word held /status at syncing, progress 0.0, for
    as long as it stayed linked. A peer's height now counts only while it announces more work
    than ours, and only up to its checked headers that lead past our best tip."""
    params = test_params(test_keys())
    chain = new_chain(tmp_path / "n", params)
    extend(chain)
    node = Node("n", chain)
    peer = ahead_of(node, tmp_path / "p", 5)
    now = peer.chain.head.header.timestamp + 1_000
    for name in ("low", "liar", "stale", "honest"):
        node.add_peer(name)
    assert node.handle("low", StatusMsg(10**15, b"\x01" * 32, encode_work(0)), now) == []
    assert node.sync_target() == 1
    # More work than ours, but nothing served: its word does not count, asked or not.
    claim = StatusMsg(2**63 - 1, b"\x02" * 32, b"\xff" * 40)
    only(node.handle("liar", claim, now), GetHeadersMsg)
    assert node.sync_target() == 1
    node.handle("liar", HeadersMsg(()), now)
    assert node.sync_target() == 1
    # More work than ours, answered with headers of the blocks we hold.
    only(node.handle("stale", claim, now), GetHeadersMsg)
    node.handle("stale", HeadersMsg((chain.main[1].header,)), now)
    assert node.sync_target() == 1 and node.headers_pending() == 0
    # An honest peer: its height counts as far as the headers it served.
    asked = only(node.handle("honest", peer.status(), now), GetHeadersMsg)
    three = msgspec.structs.replace(asked, limit=3)  # (it serves 3 of its 5 new headers at first)
    node.handle("honest", only(peer.handle("n", three, now), HeadersMsg), now)
    assert node.sync_target() == 4 and node.headers_pending() == 3
    node.handle("low", StatusMsg(10**15, b"\x01" * 32, encode_work(0)), now)
    node.handle("liar", claim, now)
    assert node.sync_target() == 4
    node.close()
    peer.close()


def test_settings_come_from_the_file_then_the_flags(tmp_path: Path) -> None:
    (tmp_path / "gridnet.toml").write_text(
        'listen = "127.0.0.1:9500"\nmine = true\npeers = ["127.0.0.1:9501"]\n'
    )
    s = resolve(tmp_path, {"mine": False, "peers": None, "api": "8400"})
    assert (s.listen, s.mine, s.peers, s.api) == ("127.0.0.1:9500", False, ("127.0.0.1:9501",), "8400")
    assert parse_host_port(s.api, "api") == ("127.0.0.1", 8400)
    assert resolve(tmp_path, {}, tmp_path / "gridnet.toml") == resolve(tmp_path, {})
    # What --print-config prints reads back as the same settings.
    (tmp_path / "printed.toml").write_text(settings_to_toml(s, "printed"))
    assert resolve(tmp_path, {}, tmp_path / "printed.toml") == s
    # The template chain init writes sets nothing: every key is commented out.
    (tmp_path / "template.toml").write_text(config_template())
    assert resolve(tmp_path, {}, tmp_path / "template.toml") == NodeSettings()


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("mine = 1", "mine must be true or false"),
        ("hashes_per_tick = 0", "whole number from 1 to"),
        ("log_files = 100000000", "whole number from 1 to 1,000"),
        ("request_timeout_ms = 50", "request_timeout_ms must be a whole number from 100 to 600,000"),
        ("peer_idle_timeout_ms = 2000", "peer_idle_timeout_ms must be a whole number from 6,000 to 600,000"),
        ('peers = ["127.0.0.1:0"]', "needs a port"),
        ('peers = "127.0.0.1:1"', "list of strings"),
        ('log_level = "loud"', "log_level 'loud' must be one of"),
        ('debug = ["nett"]', "debug: category 'nett' is unknown"),
        ('api = "10.0.0.1:8330"', "not a loopback address"),
        ('listen = "127.0.0.1:70000"', "out of range"),
        ('peers = ["nohost"]', "must look like"),
        ('listen = "127.0.0.1:²"', "must look like"),  # (a digit to str.isdigit: int() raised ValueError)
        ("listen =", "not valid TOML"),
        ("colour = 1", "unknown key 'colour'"),
    ],
)
def test_a_bad_setting_is_a_config_error_naming_it(tmp_path: Path, text: str, message: str) -> None:
    (tmp_path / "gridnet.toml").write_text(text + "\n")
    with pytest.raises(ConfigError, match=message) as err:
        resolve(tmp_path, {})
    assert str(tmp_path / "gridnet.toml") in str(err.value)  # where, for every key


def test_a_bad_flag_is_named_as_the_flag(tmp_path: Path) -> None:
    (tmp_path / "gridnet.toml").write_text('log_level = "info"\n')
    with pytest.raises(ConfigError, match=r"^--log-level 'loud' must be one of"):
        resolve(tmp_path, {"log_level": "loud"})


def test_a_restart_writes_a_new_cookie(tmp_path: Path) -> None:
    from gridnet.node.auth import COOKIE_NAME, read_token_file, remove_cookie, write_cookie

    first = write_cookie(tmp_path)
    assert read_token_file(tmp_path / COOKIE_NAME) == first
    second = write_cookie(tmp_path)
    assert second != first and read_token_file(tmp_path / COOKIE_NAME) == second
    remove_cookie(tmp_path)
    assert not (tmp_path / COOKIE_NAME).exists()


def test_the_api_answers_a_kept_alive_connection_at_once() -> None:
    """Every connection the API accepts inherits TCP_NODELAY from its listening socket:
    without it, each request on a kept-alive connection (the CLI's, a dashboard's) waited out
    the client's delayed ACK (40 ms) before the second half of its answer went out."""
    sock = _bind_api("127.0.0.1", 0)
    try:
        client = socket.create_connection(sock.getsockname())
        accepted, _ = sock.accept()
        try:
            assert accepted.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) != 0
        finally:
            accepted.close()
            client.close()
    finally:
        sock.close()


def test_an_address_that_cannot_be_bound_says_why() -> None:
    """A host name that does not resolve was 'Unknown error -2 (is another node using it?)'."""
    unresolved = socket.gaierror(socket.EAI_NONAME, "Name or service not known")
    assert bind_problem(unresolved).startswith("no such host (Name or service not known)")
    assert bind_problem(OSError(errno.EADDRINUSE, "Address in use")) == (
        "the port is in use (is another node using it?)"
    )
    assert bind_problem(OSError(errno.EADDRNOTAVAIL, "x")) == "that is not an address of this machine"
    assert bind_problem(OSError(errno.EACCES, "Permission denied")) == "Permission denied"
