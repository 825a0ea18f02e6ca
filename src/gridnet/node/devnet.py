"""``gridnet devnet``: N node processes on 127.0.0.1, linked, mining (or, on a permissioned
chain, sealing in turn), watched, stopped.

Every node gets its own data directory (one shared genesis), a free peer port and a free API
port; node i dials every node before it. The status (height and peers of each node, read
from its HTTP API) is reported while it runs; on exit — the duration is over, Ctrl-C, or an
error — every process it started is stopped by its PID (SIGTERM, then SIGKILL).
"""

from __future__ import annotations

import fcntl
import json
import os
import random
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import msgspec

from gridnet import interrupts
from gridnet.crypto.keys import CORES_ENV, PrivateKey, write_key_file
from gridnet.errors import ConfigError, NodeFailed
from gridnet.files import make_dirs, open_file, write_text_file
from gridnet.ledger.chain import Chain
from gridnet.ledger.params import (
    CONSENSUS_KINDS,
    CONSENSUS_POA,
    Allocation,
    ChainParams,
    Validator,
    default_params,
    params_to_toml,
)
from gridnet.ledger.store import DB_NAME, readonly_uri
from gridnet.node.client import NodeClient, data_dir_token
from gridnet.node.clock import Clock
from gridnet.sim.output import prepare_out_dir
from gridnet.system import usable_cores
from gridnet.units import UNITS_PER_GNC

LOCAL = "127.0.0.1"
CONSOLE_LOG = "console.log"


RESERVED_KEPT = 64
"""How many of its last ports a process keeps reserved (a lock file each): enough for every
port of a devnet to be bound by its node before its reservation lapses."""

_handed: set[int] = set()
_reserved: deque[int] = deque()


def free_port() -> int:
    """A port free on 127.0.0.1 now, drawn below the kernel's ephemeral range when it can be:
    outgoing connections take their local ports from that range, so one of them could take
    a port handed out from it before the node binds it. A port is handed out once by a
    process, and reserved against every other process on the machine that draws its ports
    here (an exclusive lock on a file named after it, held for the process's last
    ``RESERVED_KEPT`` ports): two nodes started together, by one test or by two running side
    by side, never get the same port before either has bound it."""
    low = _ephemeral_low()
    for _ in range(200):
        port = random.randrange(10_000, low) if low > 11_000 else 0
        if port in _handed:
            continue
        with socket.socket() as s:
            try:
                s.bind((LOCAL, port))
            except OSError:
                continue
            port = int(s.getsockname()[1])
        if port in _handed or not _reserve(port):
            continue
        _handed.add(port)
        return port
    raise OSError("no free port on 127.0.0.1")


def _reserve(port: int) -> bool:
    """Lock ``port``'s file for this process (False: another process holds it). Without a
    lock directory (unwritable temporary directory) every port counts as reserved."""
    folder = Path(tempfile.gettempdir()) / f"gridnet-ports-{os.getuid()}"
    try:
        folder.mkdir(mode=0o700, exist_ok=True)
        fd = os.open(folder / str(port), os.O_CREAT | os.O_RDWR, 0o600)
    except OSError:
        return True
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(fd)
        return False
    _reserved.append(fd)
    if len(_reserved) > RESERVED_KEPT:
        os.close(_reserved.popleft())
    return True


def _ephemeral_low() -> int:
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32_768  # the usual Linux default


@dataclass(frozen=True)
class NodeStatus:
    name: str
    height: int | None
    peers: int | None


@dataclass
class DevNode:
    name: str
    data_dir: Path
    port: int
    api_port: int
    process: subprocess.Popen[bytes] | None = None
    check_cores: int | None = None
    """The cores it checks signatures on (``CORES_ENV``; None: every usable one): nodes that
    share a machine take a share each, unless the environment already says."""

    def start(self, *extra: str) -> None:
        """Start ``gridnet node`` on this data directory with its ports (and ``extra`` args),
        with an unencrypted node key (created if missing). It logs into ``DATA_DIR/node.log``;
        what it prints (a start-up error, a crash) goes to ``DATA_DIR/console.log``."""
        env = dict(os.environ)
        if self.check_cores is not None:
            env.setdefault(CORES_ENV, str(self.check_cores))
        cmd = [
            sys.executable,
            "-m",
            "gridnet",
            "node",
            "--data-dir",
            str(self.data_dir),
            "--listen",
            f"{LOCAL}:{self.port}",
            "--api",
            f"{LOCAL}:{self.api_port}",
            "--unencrypted-key",
            "--quiet",
            *extra,
        ]
        make_dirs(self.data_dir)
        console = open_file(self.data_dir / CONSOLE_LOG, os.O_WRONLY | os.O_APPEND)
        with open(console, "ab") as out, interrupts.held():  # (see gridnet.interrupts)
            self.process = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env)

    def client(self) -> NodeClient:
        """A client of this node's API with the token it wrote (once it runs)."""
        return NodeClient(f"{LOCAL}:{self.api_port}", data_dir_token(self.data_dir))

    def stored_height(self) -> int:
        """The node's stored height, read from its SQLite file (also while it runs)."""
        db = sqlite3.connect(readonly_uri(self.data_dir / DB_NAME), uri=True)
        try:
            return int(db.execute("SELECT MAX(height) FROM main").fetchone()[0])
        finally:
            db.close()

    def head(self) -> dict[str, object] | None:
        try:
            with urllib.request.urlopen(f"http://{LOCAL}:{self.api_port}/head", timeout=1) as r:
                return json.loads(r.read())  # type: ignore[no-any-return]
        except (urllib.error.URLError, OSError, ValueError):
            return None


def cores_each(nodes: int) -> int:
    """Cores each of ``nodes`` node processes on this machine checks signatures on."""
    return max(1, usable_cores() // max(1, nodes))


def devnet_params(
    validators: tuple[PrivateKey, ...] = (), allocations: tuple[Allocation, ...] = ()
) -> ChainParams:
    """The default devnet rules, with a genesis an hour old (so the first blocks are valid)
    and ``allocations``; with ``validators``, a permissioned chain they run (one vote and
    1,000 GNC each)."""
    params = msgspec.structs.replace(
        default_params(allocations), genesis_time=int(time.time() * 1000) - 3_600_000
    )
    if validators:
        members = tuple(sorted((Validator(k.public_key, 1) for k in validators), key=lambda v: v.key))
        params = msgspec.structs.replace(
            params,
            consensus=CONSENSUS_POA,
            validators=members,
            allocations=(*allocations, *(Allocation(k.address, 1_000 * UNITS_PER_GNC) for k in validators)),
        )
    return params


class Devnet:
    def __init__(
        self,
        root: Path,
        count: int,
        *,
        hashes_per_tick: int = 200,
        params: ChainParams | None = None,
        clock: Clock | None = None,
        consensus: str = "pow",
        validators: int | None = None,
        equivocating: frozenset[int] = frozenset(),
        allocations: tuple[Allocation, ...] = (),
    ) -> None:
        """``params``: the genesis (default: ``devnet_params()``); ``clock``: a scenario clock
        every node runs on (default: the wall clock). ``consensus`` "poa": a permissioned chain
        whose validators are the first ``validators`` nodes (default all; each gets its node
        key before the genesis names it); those in ``equivocating`` seal and vote twice (fault
        injection). ``allocations``: coin in the default genesis (ignored with ``params``).
        A ``root`` holding a run's report is refused, not replaced (a scenario's run on a devnet
        writes its own, ``simulate_on_devnet``)."""
        if consensus not in CONSENSUS_KINDS:
            raise ConfigError(f"consensus {consensus!r} is not one of {', '.join(CONSENSUS_KINDS)}")
        self.out_lock = prepare_out_dir(root, "devnet", results=False)
        """Held while the devnet lives (to its process's exit, or ``out_lock.release()``)."""
        self.root = root
        share = cores_each(count)
        self.nodes = [
            DevNode(f"n{i}", root / f"n{i}", free_port(), free_port(), check_cores=share)
            for i in range(count)
        ]
        if consensus == "poa" and params is None:
            keys = tuple(PrivateKey.generate() for _ in self.nodes[: validators or count])
            for node, key in zip(self.nodes, keys, strict=False):
                write_key_file(node.data_dir / "node.key", key)
            params = devnet_params(keys, allocations)
        params = params or devnet_params(allocations=allocations)
        self.params = params
        self.clock = clock or Clock()
        write_text_file(root / "genesis.toml", params_to_toml(params))
        for node in self.nodes:
            chain = Chain.create(node.data_dir, params)
            self.chain_id = chain.chain_id
            chain.close()
        self.hashes_per_tick = hashes_per_tick
        self.equivocating = equivocating

    def start(self) -> None:
        for i in range(len(self.nodes)):
            self.start_node(i)

    def start_node(self, i: int) -> None:
        """Start node ``i`` (again, after ``stop_node``), dialling every node before it."""
        node = self.nodes[i]
        peers = [a for earlier in self.nodes[:i] for a in ("--peer", f"{LOCAL}:{earlier.port}")]
        clock = self.clock
        clock_args = (
            []
            if clock.origin_ms is None
            else [
                *("--clock-origin", str(clock.origin_ms)),
                *("--clock-anchor", str(clock.anchor_ms)),
                *("--clock-speed", str(clock.speed)),
            ]
        )
        node.start(
            "--mine",
            "--hashes-per-tick",
            str(self.hashes_per_tick),
            *peers,
            *clock_args,
            *(["--equivocate"] if i in self.equivocating else []),
        )

    def stop_node(self, i: int) -> None:
        """Stop node ``i`` by its PID (SIGTERM, then SIGKILL)."""
        stop_all([self.nodes[i]])

    def status(self) -> list[NodeStatus]:
        """Height and peers per node (None while its API does not answer)."""
        out = []
        for node in self.nodes:
            head = node.head()
            if head is None:
                out.append(NodeStatus(node.name, None, None))
            else:
                out.append(NodeStatus(node.name, int(str(head["height"])), int(str(head["peers"]))))
        return out

    def stop(self) -> None:
        stop_all(self.nodes)

    def stored_heights(self) -> list[tuple[str, int]]:
        """Each node's height as its data directory holds it (once stopped: where its chain
        ended, which the last status polled may have been a block short of)."""
        heights = []
        for node in self.nodes:
            chain = Chain.open(node.data_dir, readonly=True)
            try:
                heights.append((node.name, chain.height))
            finally:
                chain.close()
        return heights

    def run(self, duration_s: float | None, report: Callable[[list[NodeStatus]], None]) -> None:
        """Start, report the status twice a second until ``duration_s`` passes (or forever),
        and stop every process, whatever happens."""
        deadline = None if duration_s is None else time.monotonic() + duration_s
        try:
            self.start()
            while deadline is None or time.monotonic() < deadline:
                for node in self.nodes:
                    assert node.process is not None
                    if node.process.poll() is not None:
                        raise NodeFailed(
                            f"{node.name} exited (see {node.data_dir / 'node.log'} and {CONSOLE_LOG})"
                        )
                report(self.status())
                time.sleep(0.5)
        finally:
            self.stop()


def stop_all(nodes: list[DevNode]) -> None:
    """SIGTERM every process still running, wait, and SIGKILL what does not stop."""
    for node in nodes:
        if node.process is not None and node.process.poll() is None:
            node.process.send_signal(signal.SIGTERM)
    for node in nodes:
        if node.process is None:
            continue
        try:
            node.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            node.process.kill()
            node.process.wait(timeout=5)
