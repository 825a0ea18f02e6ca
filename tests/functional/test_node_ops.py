"""Operating a node for real: one writer per data directory, the command line talking to a
running node, status and metrics, the API token, the config file and the log."""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import socket
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from gridnet.crypto.address import address_to_text
from gridnet.crypto.keys import PrivateKey, write_key_file
from gridnet.encoding import encode
from gridnet.ledger.chain import Chain
from gridnet.ledger.lock import LOCK_NAME
from gridnet.ledger.params import ChainParams
from gridnet.ledger.transactions import sign_transaction
from gridnet.ledger.txs.transfer import Transfer
from gridnet.node.auth import COOKIE_NAME
from gridnet.node.client import NodeClient, data_dir_token
from gridnet.node.devnet import LOCAL, DevNode, free_port
from gridnet.sim.output import MARKER, STAGING
from tests.functional.test_cli import gridnet, ok, one_line_error
from tests.helpers import test_params, wait_for

OWNER = PrivateKey.from_label("ops-owner")
"""Holds the genesis coin and runs the first node (its key file is owner.key)."""
CEILING = 90
"""Seconds any wait may take on a loaded machine."""


def fast_params(*keys: PrivateKey) -> ChainParams:
    return test_params(list(keys), block_interval_ms=500, genesis_time=int(time.time() * 1000) - 60_000)


def new_node(root: Path, name: str, params: ChainParams, key: PrivateKey | None = None) -> DevNode:
    node = DevNode(name, root / name, free_port(), free_port())
    Chain.create(node.data_dir, params).close()
    write_key_file(node.data_dir / "node.key", key or PrivateKey.from_label(f"ops-{name}-{os.getpid()}"))
    return node


def running(node: DevNode) -> bool:
    return node.head() is not None


def height(node: DevNode) -> int:
    head = node.head()
    return -1 if head is None else int(str(head["height"]))


# --- one writer per data directory -------------------------------------------------------


def test_a_data_dir_has_one_writer_and_a_killed_node_restarts(tmp_path: Path, nodes: list[DevNode]) -> None:
    a = new_node(tmp_path, "a", fast_params(OWNER))
    nodes.append(a)
    a.start("--mine", "--hashes-per-tick", "300")
    assert wait_for(lambda: height(a) >= 2, CEILING)
    assert a.process is not None
    pid = a.process.pid

    # A second node on the same directory is refused, naming the first one's PID ...
    second = gridnet(
        "node",
        "--data-dir",
        a.data_dir,
        "--listen",
        f"{LOCAL}:{free_port()}",
        "--api",
        f"{LOCAL}:0",
        cwd=tmp_path,
        timeout=CEILING,
    )
    line = one_line_error(second)
    assert f"in use by process {pid}" in line and "gridnet node" in line
    # ... and so is any other writer: mining into it by hand.
    line = one_line_error(gridnet("chain", "mine", "--data-dir", a.data_dir, "--blocks", "1", cwd=tmp_path))
    assert f"in use by process {pid}" in line
    # Readers keep working beside it.
    shown = json.loads(ok(gridnet("chain", "show", "--data-dir", a.data_dir, "--json", cwd=tmp_path)))
    assert shown["height"] >= 2
    acct = json.loads(
        ok(
            gridnet(
                "chain",
                "account",
                "--data-dir",
                a.data_dir,
                "--address",
                address_to_text(OWNER.address),
                "--json",
                cwd=tmp_path,
            )
        )
    )
    assert acct["balance"] > 0
    assert "chain valid" in ok(gridnet("chain", "verify", "--data-dir", a.data_dir, "--quiet", cwd=tmp_path))
    assert wait_for(lambda: height(a) >= shown["height"] + 1, CEILING)  # it kept mining all along

    # SIGKILL: the kernel frees the lock; the node restarts on its directory at once.
    a.process.send_signal(signal.SIGKILL)
    a.process.wait(timeout=30)
    stored = a.stored_height()
    a.start("--mine", "--hashes-per-tick", "300")
    assert wait_for(lambda: height(a) > stored, CEILING)
    assert "chain valid" in ok(gridnet("chain", "verify", "--data-dir", a.data_dir, "--quiet", cwd=tmp_path))


# --- the command line and a running node -------------------------------------------------


def test_transactions_go_to_the_running_node_and_are_checked_up_front(
    tmp_path: Path, nodes: list[DevNode]
) -> None:
    a = new_node(tmp_path, "a", fast_params(OWNER), key=OWNER)
    nodes.append(a)
    write_key_file(tmp_path / "owner.key", OWNER)
    bob = ok(gridnet("keys", "new", "--out", "bob.key", "--unencrypted", cwd=tmp_path)).strip()
    a.start("--mine", "--hashes-per-tick", "300")
    assert wait_for(lambda: height(a) >= 1, CEILING)

    status = json.loads(ok(gridnet("status", "--data-dir", a.data_dir, "--json", cwd=tmp_path)))
    assert status["address"] == address_to_text(OWNER.address) and status["mining"] is True
    assert "mining" in ok(gridnet("status", "--data-dir", a.data_dir, cwd=tmp_path))

    # --data-dir finds the running node (node.json) and submits through its API.
    sent = gridnet(
        "tx",
        "transfer",
        "--data-dir",
        a.data_dir,
        "--key",
        "owner.key",
        "--to",
        bob,
        "--amount",
        "1.5",
        "--wait",
        cwd=tmp_path,
        timeout=CEILING,
    )
    out = ok(sent)
    assert "accepted" in out and f"http://{LOCAL}:{a.api_port}" in out and "mined in block" in out
    url = f"http://{LOCAL}:{a.api_port}"
    acct = json.loads(
        ok(gridnet("chain", "account", "--node", url, "--address", bob, "--json", cwd=tmp_path))
    )
    assert acct["balance"] == 150_000_000
    # --node with --data-dir: one node named twice is fine; two different chains are refused.
    both = ("chain", "show", "--node", url, "--json")
    assert json.loads(ok(gridnet(*both, "--data-dir", a.data_dir, cwd=tmp_path)))["height"] >= 1
    other = tmp_path / "other"
    ok(gridnet("chain", "init", "--data-dir", other, cwd=tmp_path))
    line = one_line_error(gridnet(*both, "--data-dir", other, cwd=tmp_path))
    assert f"--node {url} is not the node on --data-dir {other} (no node runs there)" in line

    # Every kind is checked as a miner would apply it: a bond without an identity is refused
    # with its rule before anything is pending — by the running node ...
    line = one_line_error(
        gridnet("tx", "bond", "--data-dir", a.data_dir, "--key", "bob.key", "--amount", "1", cwd=tmp_path)
    )
    assert line.startswith("error: UnknownIdentity: ")
    assert json.loads(ok(gridnet("status", "--node", url, "--json", cwd=tmp_path)))["mempool"]["size"] == 0
    # ... and offline, into the data directory's pending pool, once the node is stopped.
    assert a.process is not None
    a.process.send_signal(signal.SIGTERM)
    a.process.wait(timeout=30)
    line = one_line_error(
        gridnet("tx", "bond", "--data-dir", a.data_dir, "--key", "bob.key", "--amount", "1", cwd=tmp_path)
    )
    assert line.startswith("error: UnknownIdentity: ")
    assert (
        json.loads(ok(gridnet("chain", "show", "--data-dir", a.data_dir, "--json", cwd=tmp_path)))["pending"]
        == 0
    )
    # With no node running there, status says so in one line.
    line = one_line_error(gridnet("status", "--data-dir", a.data_dir, cwd=tmp_path))
    assert "no node runs on" in line


# --- status, peers, health, metrics and the log --------------------------------------------


@contextlib.contextmanager
def waiting_transfer(tmp_path: Path, node: DevNode, to: bytes) -> Iterator[subprocess.Popen[str]]:
    """``gridnet tx transfer ... --wait`` of 1 GNC from OWNER to ``to`` through ``node``,
    running (killed at the end if it still is)."""
    args = [
        "tx",
        "transfer",
        "--data-dir",
        str(node.data_dir),
        "--key",
        "owner.key",
        "--to",
        address_to_text(to),
    ]
    proc = subprocess.Popen(
        [sys.executable, "-m", "gridnet", *args, "--amount", "1", "--wait", "--timeout", "600"],
        cwd=tmp_path,
        env=dict(os.environ, COLUMNS="200", NO_COLOR="1", PYTHONUNBUFFERED="1"),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_a_node_lost_while_tx_waits_says_the_transaction_was_accepted(
    tmp_path: Path, nodes: list[DevNode]
) -> None:
    """``tx ... --wait`` whose node stops answering while it waits: one line saying that the
    transaction was accepted (and may still be mined), not only that the node is gone."""
    a = new_node(tmp_path, "a", fast_params(OWNER), key=OWNER)
    nodes.append(a)
    write_key_file(tmp_path / "owner.key", OWNER)
    a.start()  # (not mining: the transaction waits)
    assert wait_for(lambda: running(a), CEILING)
    url = f"http://{LOCAL}:{a.api_port}"
    with waiting_transfer(tmp_path, a, PrivateKey.from_label("ops-bob").address) as proc:
        assert proc.stdout is not None and proc.stderr is not None
        assert proc.stdout.readline().startswith("accepted "), proc.stderr.read()
        assert a.process is not None
        a.process.send_signal(signal.SIGKILL)
        a.process.wait(timeout=30)
        _, stderr = proc.communicate(timeout=CEILING)
    assert proc.returncode == 1 and "Traceback" not in stderr
    (line,) = stderr.strip().splitlines()
    assert (
        line.startswith(f"error: the node at {url} ") and "which it accepted: it may still be mined" in line
    )


def test_a_transaction_the_node_lets_go_while_tx_waits_is_named_with_the_rule(
    tmp_path: Path, nodes: list[DevNode]
) -> None:
    """``tx ... --wait`` whose transaction leaves the node's pool without a block (here another
    transaction with its nonce and a higher fee replaced it): one line with the rule the node
    logged (``GET /mempool/lost``), not a pointer to its log."""
    a = new_node(tmp_path, "a", fast_params(OWNER), key=OWNER)
    nodes.append(a)
    write_key_file(tmp_path / "owner.key", OWNER)
    a.start()  # (not mining: the transaction waits)
    assert wait_for(lambda: running(a), CEILING)
    bob = PrivateKey.from_label("ops-bob").address
    with waiting_transfer(tmp_path, a, bob) as proc:
        assert proc.stdout is not None and proc.stderr is not None
        accepted = proc.stdout.readline()
        found = re.match(r"accepted ([0-9a-f]{64}) .*\(nonce 0, fee (\d+)\)", accepted)
        assert found is not None, accepted + proc.stderr.read()
        client = NodeClient(f"{LOCAL}:{a.api_port}", token=data_dir_token(a.data_dir))
        chain_id = bytes.fromhex(client.get("/params")["chain_id"])
        dearer = sign_transaction(
            OWNER, chain_id, Transfer(bob, 2), 0, 3 * int(found[2])
        )  # (a replacement pays at least 10 % and its own minimum fee more)
        status, body = client.call("POST", "/transactions", {"tx": encode(dearer).hex()})
        assert status == 202 and body["evicted"] == [found[1]]
        _, stderr = proc.communicate(timeout=CEILING)
    assert proc.returncode == 1 and "Traceback" not in stderr
    (line,) = stderr.strip().splitlines()
    assert line == f"error: the node let {found[1]} go without a block: Replaced: replaced by a higher fee"


def test_status_peers_health_metrics_and_log_lines_of_linked_nodes(
    tmp_path: Path, nodes: list[DevNode]
) -> None:
    params = fast_params()
    miner, follower = new_node(tmp_path, "miner", params), new_node(tmp_path, "follower", params)
    nodes += [miner, follower]
    miner.start("--mine", "--hashes-per-tick", "300")
    follower.start("--peer", f"{LOCAL}:{miner.port}")
    assert wait_for(lambda: height(follower) >= 3, CEILING)

    status = json.loads(ok(gridnet("status", "--data-dir", follower.data_dir, "--json", cwd=tmp_path)))
    assert status["peers"] == {"count": 1, "inbound": 0, "outbound": 1}
    assert status["mining"] is False and status["chain"] == params.name
    assert status["sync"]["target_height"] >= status["height"] >= 3
    assert status["listen"] == f"{LOCAL}:{follower.port}" and status["uptime_s"] > 0

    client = NodeClient(f"{LOCAL}:{miner.api_port}")
    [peer] = client.request("GET", "/peers")
    follower_address = json.loads((follower.data_dir / "node.json").read_text())["address"]
    assert peer["address"] == follower_address and peer["direction"] == "inbound"
    assert peer["bytes_in"] > 0 and peer["bytes_out"] > 0 and peer["faults"] == 0
    table = ok(gridnet("peers", "--node", client.url, cwd=tmp_path))
    assert follower_address in table and "inbound" in table

    health = client.request("GET", "/health")
    assert health["status"] == "ok"
    metrics = _metrics(follower)
    assert metrics["gridnet_height"] >= 3
    assert metrics["gridnet_blocks_imported_total"] >= 3
    assert metrics['gridnet_peers{direction="outbound"}'] == 1
    assert any(name.startswith("gridnet_api_request_seconds_count") for name in metrics)
    assert _metrics(miner)["gridnet_blocks_mined_total"] >= 3

    stop = [miner, follower]
    for node in stop:
        assert node.process is not None
        node.process.send_signal(signal.SIGTERM)
        node.process.wait(timeout=30)
    miner_log = (miner.data_dir / "node.log").read_text()
    follower_log = (follower.data_dir / "node.log").read_text()
    assert "INFO    node    gridnet " in miner_log and "mining" in miner_log
    assert "mined block 1 " in miner_log and f"inbound from {LOCAL}:" in miner_log
    assert f"outbound to {LOCAL}:{miner.port}" in follower_log and "new head " in follower_log
    assert "stopped at height" in follower_log
    assert not (follower.data_dir / COOKIE_NAME).exists()  # removed when it stopped


def _metrics(node: DevNode) -> dict[str, float]:
    import urllib.request

    with urllib.request.urlopen(f"http://{LOCAL}:{node.api_port}/metrics", timeout=30) as response:
        text = response.read().decode()
    out = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            out[name] = float(value)
    return out


def test_refused_and_unreachable_peers_are_logged_with_their_rule(
    tmp_path: Path, nodes: list[DevNode]
) -> None:
    ours, theirs = new_node(tmp_path, "ours", fast_params()), new_node(tmp_path, "theirs", fast_params(OWNER))
    nodes += [ours, theirs]
    nobody = free_port()  # nothing listens there
    theirs.start()
    ours.start("--peer", f"{LOCAL}:{theirs.port}", "--peer", f"{LOCAL}:{nobody}", "--log-level", "info")

    def logged(node: DevNode, text: str) -> bool:
        path = node.data_dir / "node.log"
        return path.exists() and text in path.read_text()

    assert wait_for(lambda: logged(ours, f"cannot link with {LOCAL}:{theirs.port}: WrongChain"), CEILING)
    assert wait_for(lambda: logged(theirs, "refused link with") and logged(theirs, "WrongChain"), CEILING)
    assert wait_for(
        lambda: logged(ours, f"cannot link with {LOCAL}:{nobody}: Connection refused; retrying in"), CEILING
    )
    assert height(ours) == 0 and ours.head()["peers"] == 0  # type: ignore[index]


# --- the API token -------------------------------------------------------------------------


def test_changing_endpoints_need_the_cookie_token(tmp_path: Path, nodes: list[DevNode]) -> None:
    a = new_node(tmp_path, "a", fast_params())
    nodes.append(a)
    a.start()
    assert wait_for(lambda: running(a), CEILING)
    cookie = a.data_dir / COOKIE_NAME
    assert stat.S_IMODE(cookie.stat().st_mode) == 0o600
    token = cookie.read_text().strip()
    anonymous = NodeClient(f"{LOCAL}:{a.api_port}")
    for method, path, body in (
        ("POST", "/transactions", {"tx": "00"}),
        ("POST", "/orders", {"order": "00"}),
        ("POST", "/datagrams", {"first_hop": "x", "datagram": "00"}),
        ("POST", "/datagrams/claims", None),
        ("GET", "/datagrams", None),
    ):
        status, answer = anonymous.call(method, path, body)
        assert (status, answer["code"]) == (401, "Unauthorized"), (path, answer)
    wrong = NodeClient(anonymous.url, "x" * 64)
    assert wrong.call("POST", "/transactions", {"tx": "00"})[0] == 401
    right = NodeClient(anonymous.url, token)
    assert right.call("POST", "/transactions", {"tx": "00"})[0] == 400  # past the token: a bad body
    for path in ("/status", "/head", "/peers", "/health", "/mempool", "/params"):  # read-only: open
        assert anonymous.call("GET", path)[0] == 200, path
    # Refused from the headers alone: a body announced as 1 GB is never read (nor sent here),
    # and without the token nothing of a protected request's body is read either.
    for headers, expected in (
        (f"Content-Length: {10**9}\r\nAuthorization: Bearer {token}", b"413"),
        ("Content-Length: 100", b"401"),
        ("Transfer-Encoding: chunked", b"411"),
    ):
        with socket.create_connection((LOCAL, a.api_port), timeout=CEILING) as raw:
            raw.sendall(f"POST /transactions HTTP/1.1\r\nHost: 127.0.0.1\r\n{headers}\r\n\r\n".encode())
            assert raw.recv(200).split(b" ")[1] == expected, headers
    # A client's made-up methods do not grow the metrics: they are counted as "other".
    for i in range(5):
        anonymous.call(f"MADEUP{i}", "/nope")
    metrics = _metrics(a)
    assert not any("MADEUP" in name for name in metrics)
    assert any('method="other"' in name for name in metrics)


def test_a_configured_token_file_replaces_the_cookie_and_remote_apis_need_one(
    tmp_path: Path, nodes: list[DevNode]
) -> None:
    a = new_node(tmp_path, "a", fast_params())
    nodes.append(a)
    token_file = tmp_path / "api.token"
    token_file.write_text("s3cret-token-for-the-api\n")
    token_file.chmod(0o600)
    # A non-loopback API without a token file is refused before anything is bound.
    line = one_line_error(gridnet("node", "--data-dir", a.data_dir, "--api", "0.0.0.0:0", cwd=tmp_path))
    assert "not a loopback address" in line and "api_token_file" in line
    a.start("--api-token-file", str(token_file))
    assert wait_for(lambda: running(a), CEILING)
    assert not (a.data_dir / COOKIE_NAME).exists()
    url = f"{LOCAL}:{a.api_port}"
    assert NodeClient(url, "s3cret-token-for-the-api").call("POST", "/transactions", {"tx": "00"})[0] == 400
    assert NodeClient(url).call("POST", "/transactions", {"tx": "00"})[0] == 401
    token_file.chmod(0o644)
    write_key_file(tmp_path / "k.key", OWNER)
    line = one_line_error(
        gridnet(
            "tx",
            "transfer",
            "--node",
            f"http://{url}",
            "--api-token-file",
            token_file,
            "--key",
            "k.key",
            "--to",
            address_to_text(OWNER.address),
            "--amount",
            "1",
            cwd=tmp_path,
        )
    )
    assert "accessible by other users" in line


# --- the config file -------------------------------------------------------------------------


def test_gridnet_toml_is_read_and_flags_override_it(tmp_path: Path, nodes: list[DevNode]) -> None:
    data = tmp_path / "n"
    ok(gridnet("chain", "init", "--data-dir", data, cwd=tmp_path))
    template = (data / "gridnet.toml").read_text()
    assert "# listen = " in template and "# mempool_max_txs = " in template  # every key, commented
    listen, api = free_port(), free_port()
    (data / "gridnet.toml").write_text(
        f'listen = "{LOCAL}:{listen}"\napi = "{LOCAL}:{api}"\nmine = true\nhashes_per_tick = 300\n'
        'log_level = "debug"\ndebug = ["net"]\nmempool_max_txs = 1234\n'
    )
    printed = ok(
        gridnet(
            "node", "--data-dir", data, "--print-config", "--no-mine", "--debug", "sync,mine", cwd=tmp_path
        )
    )
    assert f'listen = "{LOCAL}:{listen}"' in printed and "mine = false" in printed
    assert 'debug = ["sync", "mine"]' in printed and "mempool_max_txs = 1234" in printed

    node = DevNode("n", data, listen, api)
    nodes.append(node)
    node.process = subprocess.Popen(
        [sys.executable, "-m", "gridnet", "node", "--data-dir", str(data), "--unencrypted-key", "--quiet"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    assert wait_for(lambda: height(node) >= 2, CEILING)  # mining, on the file's ports
    info = json.loads((data / "node.json").read_text())
    assert info["listen"] == f"{LOCAL}:{listen}" and info["api"] == f"{LOCAL}:{api}"
    assert NodeClient(f"{LOCAL}:{api}").request("GET", "/status")["mempool"]["max_txs"] == 1234
    assert "created the node key" in (data / "node.log").read_text()

    (tmp_path / "bad.toml").write_text("lissen = 1\n")
    line = one_line_error(
        gridnet("node", "--data-dir", data, "--config", tmp_path / "bad.toml", cwd=tmp_path)
    )
    assert "unknown key 'lissen'" in line and "listen" in line
    (tmp_path / "bad.toml").write_text("mine = 1\n")
    line = one_line_error(
        gridnet("node", "--data-dir", data, "--config", tmp_path / "bad.toml", cwd=tmp_path)
    )
    assert "mine must be true or false" in line


# --- errors a user makes: one line each -------------------------------------------------------


def test_a_node_refuses_an_edited_genesis_file_and_drops_a_stale_cookie(tmp_path: Path) -> None:
    """DATA_DIR/genesis.toml edited after ``chain init`` was ignored without a word (the chain
    keeps its own genesis): now the node says so and does not start. A cookie a killed run
    left is removed by a run without an API (no API answers to its token)."""
    data = tmp_path / "n"
    ok(gridnet("chain", "init", "--data-dir", data, cwd=tmp_path))
    genesis = data / "genesis.toml"
    original = genesis.read_text()
    genesis.write_text(original.replace("block_interval_s = 1.0", "block_interval_s = 5.0"))
    assert genesis.read_text() != original
    line = one_line_error(gridnet("node", "--data-dir", data, "--unencrypted-key", cwd=tmp_path))
    assert line.startswith(f"error: {genesis} is not the genesis this chain was created from; ")
    assert f"'gridnet chain init --data-dir NEW --genesis {genesis}'" in line
    genesis.write_text("[chain\n")
    line = one_line_error(gridnet("node", "--data-dir", data, "--unencrypted-key", cwd=tmp_path))
    assert line.startswith("error: genesis file ") and "a chain's genesis cannot change" in line
    genesis.write_text("# the defaults, as a comment says\n" + original)  # (the same genesis: it starts)
    (data / COOKIE_NAME).write_text("stale")
    start = ["node", "--data-dir", str(data), "--unencrypted-key", "--api", "off", "--quiet"]
    proc = subprocess.Popen(
        [sys.executable, "-m", "gridnet", *start, "--listen", f"{LOCAL}:{free_port()}"],
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert wait_for(lambda: (data / "node.json").exists() or proc.poll() is not None, CEILING)
        assert proc.poll() is None, proc.communicate()[1]
        assert not (data / COOKIE_NAME).exists()
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=CEILING)


def test_node_start_errors_are_one_line(tmp_path: Path) -> None:
    data = tmp_path / "n"
    ok(gridnet("chain", "init", "--data-dir", data, cwd=tmp_path))
    with socket.socket() as taken:
        taken.bind((LOCAL, 0))
        taken.listen()
        port = taken.getsockname()[1]
        flags = ("--unencrypted-key", "--quiet")
        line = one_line_error(
            gridnet(
                "node",
                "--data-dir",
                data,
                "--listen",
                f"{LOCAL}:{port}",
                "--api",
                "off",
                *flags,
                cwd=tmp_path,
            )
        )
        assert f"cannot listen for peers on {LOCAL}:{port}" in line and "in use" in line
        line = one_line_error(
            gridnet(
                "node",
                "--data-dir",
                data,
                "--listen",
                f"{LOCAL}:0",
                "--api",
                f"{LOCAL}:{port}",
                *flags,
                cwd=tmp_path,
            )
        )
        assert f"cannot serve the API on {LOCAL}:{port}: the port is in use" in line
    line = one_line_error(gridnet("node", "--data-dir", data, "--listen", f"{LOCAL}:99999", cwd=tmp_path))
    assert "port 99999 is out of range" in line
    line = one_line_error(gridnet("node", "--data-dir", tmp_path / "nosuch", cwd=tmp_path))
    assert "no chain in" in line and "gridnet chain init" in line
    assert not (tmp_path / "nosuch").exists()
    assert ok(gridnet("--version", cwd=tmp_path)).startswith("gridnet ")


def test_user_errors_are_one_line(tmp_path: Path) -> None:
    (tmp_path / "a-file").write_text("")
    line = one_line_error(gridnet("chain", "init", "--data-dir", tmp_path / "a-file" / "sub", cwd=tmp_path))
    assert "cannot write the data directory" in line
    line = one_line_error(gridnet("simulate", "--out", tmp_path / "a-file", cwd=tmp_path))
    assert "is a file, not a directory" in line
    line = one_line_error(gridnet("simulate", "--out", tmp_path / "a-file" / "out", cwd=tmp_path))
    assert "cannot write the output directory" in line
    write_key_file(tmp_path / "k.key", OWNER)
    line = one_line_error(
        gridnet(
            "tx",
            "transfer",
            "--data-dir",
            tmp_path,
            "--key",
            "k.key",
            "--to",
            address_to_text(OWNER.address),
            "--amount",
            "1",
            "--fee",
            "-5",
            cwd=tmp_path,
        )
    )
    assert "'--fee'" in line and "msgspec" not in line.lower() and "Expected" not in line


@pytest.mark.skipif(
    os.geteuid() != 0 or not Path("/usr/bin/setpriv").exists(), reason="needs root and setpriv"
)
def test_a_directory_without_write_permission_is_one_line() -> None:
    """As an unprivileged user (root may write anywhere): the data directory and --out in a
    directory it may not write."""
    import shutil
    import tempfile

    root = Path(tempfile.mkdtemp(prefix="gridnet-perm-"))
    try:
        root.chmod(0o755)
        locked = root / "locked"
        locked.mkdir(mode=0o555)
        as_nobody = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]
        env = dict(os.environ, COLUMNS="200", NO_COLOR="1", HOME=str(root))
        probe = subprocess.run(
            [*as_nobody, sys.executable, "-c", "import gridnet"], cwd=root, env=env, capture_output=True
        )
        if probe.returncode != 0:  # e.g. a checkout in a directory of mode 0700 (mktemp -d)
            pytest.skip("an unprivileged user cannot import gridnet from this checkout")
        for args, expected in (
            (["chain", "init", "--data-dir", str(locked / "d")], "cannot write the data directory"),
            (["simulate", "--out", str(locked / "out")], "cannot write the output directory"),
        ):
            result = subprocess.run(
                [*as_nobody, sys.executable, "-m", "gridnet", *args],
                cwd=root,
                env=env,
                capture_output=True,
                text=True,
                timeout=CEILING,
            )
            line = one_line_error(result)
            assert expected in line and "Permission denied" in line, line
    finally:
        shutil.rmtree(root, ignore_errors=True)


@pytest.mark.parametrize("stop", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
def test_ctrl_c_during_a_simulation_says_where_and_that_the_partial_chain_verifies(
    tmp_path: Path, stop: signal.Signals
) -> None:
    """Ctrl-C, or SIGTERM as a service manager stops it, alike. The earlier run's results in
    ``--out`` are kept (they were deleted as the run began): the run writes beside them, in
    ``OUT/.gridnet-new``, where its partial chain stays (the next run deletes it)."""
    out = tmp_path / "out"
    (out / "series").mkdir(parents=True)
    earlier = {
        MARKER: "written by gridnet simulate; safe to delete\n",
        "report.json": "{}",
        "series/homes.parquet": "",
    }
    for name, text in earlier.items():
        (out / name).write_text(text)
    proc = subprocess.Popen(
        [sys.executable, "-m", "gridnet", "simulate", "--out", str(out)],
        cwd=tmp_path,
        env=dict(os.environ, COLUMNS="200", NO_COLOR="1"),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),  # as a terminal would
    )
    try:
        assert wait_for(
            lambda: any(_stored(DevNode("chain", db.parent, 0, 0)) >= 40 for db in out.rglob("chain.sqlite")),
            CEILING,
        )
        proc.send_signal(stop)
        _, stderr = proc.communicate(timeout=CEILING)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 130, stderr
    assert "Traceback" not in stderr
    assert {name: (out / name).read_text() for name in earlier if (out / name).exists()} == earlier
    line = stderr.strip().splitlines()[-1]
    partial = out / STAGING / "chain"
    assert (
        line.startswith("interrupted at interval ") and f"; the partial chain in {partial} verifies (" in line
    )
    assert line.endswith(f"; {out} keeps the earlier run's results")
    assert sorted(p.name for p in out.iterdir()) == sorted(
        [MARKER, LOCK_NAME, STAGING, "report.json", "series"]
    )
    assert "chain valid" in ok(gridnet("chain", "verify", "--data-dir", partial, "--quiet", cwd=tmp_path))


def _stored(node: DevNode) -> int:
    try:
        return node.stored_height()
    except Exception:  # created but not yet written
        return -1


def test_two_nodes_dialling_each_other_keep_one_link_without_redialling(
    tmp_path: Path, nodes: list[DevNode]
) -> None:
    params = fast_params()
    a, b = new_node(tmp_path, "a", params), new_node(tmp_path, "b", params)
    nodes += [a, b]
    a.start("--mine", "--hashes-per-tick", "300", "--peer", f"{LOCAL}:{b.port}", "--debug", "net")
    b.start("--peer", f"{LOCAL}:{a.port}", "--debug", "net")
    assert wait_for(
        lambda: height(b) >= 2 and all((n.head() or {}).get("peers") == 1 for n in (a, b)), CEILING
    )
    start = height(b)
    assert wait_for(lambda: height(b) >= start + 5, CEILING)  # time passes, blocks flow over the link
    for node in (a, b):
        log = (node.data_dir / "node.log").read_text()
        # Each side dialled the other; both kept the connection the smaller address dialled,
        # and the other dialler waits while linked instead of dialling again and again.
        assert log.count("already linked") <= 2, log
        assert log.count("net     linked ") <= 2 and "disconnected" not in log, log
