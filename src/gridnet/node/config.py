"""A node's settings: ``DATA_DIR/gridnet.toml``, overridden by command-line flags.

Every key is optional; what neither the file nor a flag gives takes its default. ``gridnet
node --print-config`` prints the settings a node would run with. Paths in the file (key,
passphrase and token files) are relative to the data directory.
"""

from __future__ import annotations

import dataclasses
import errno
import ipaddress
import itertools
import json
import socket
from collections.abc import Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, Final
from urllib.parse import urlsplit

from gridnet.errors import ConfigError
from gridnet.files import read_toml
from gridnet.units import is_decimal

CONFIG_NAME: Final = "gridnet.toml"
LOG_LEVELS: Final = ("debug", "info", "warning", "error")
LOG_CATEGORIES: Final = ("net", "sync", "mempool", "mine", "api", "relay")
"""Debug categories (``--debug net``), in the manner of bitcoind's ``-debug=net``."""
DEFAULT_LISTEN: Final = "127.0.0.1:9330"
DEFAULT_API: Final = "127.0.0.1:8330"
API_OFF: Final = "off"


@dataclass(frozen=True)
class NodeSettings:
    """What a node runs with. The comments are what ``gridnet chain init`` writes into the
    data directory's ``gridnet.toml`` for each key."""

    listen: str = DEFAULT_LISTEN
    """Peer-to-peer address HOST:PORT (port 0: any free port, written to node.json)."""
    api: str = DEFAULT_API
    """HTTP API address HOST:PORT, or "off"; a non-loopback address needs api_token_file."""
    peers: tuple[str, ...] = ()
    """Peers to dial, HOST:PORT each."""
    mine: bool = False
    """Produce blocks: mine, or on a permissioned chain seal and vote (rewards to the node key)."""
    equivocate: bool = False
    """Fault injection (labs, tests): seal and vote twice as a validator, to be proven and removed."""
    key: str = "node.key"
    """The node key file (authenticates its links, receives mining rewards)."""
    passphrase_file: str = ""
    """File with the node key's passphrase (else GRIDNET_PASSPHRASE, else a prompt)."""
    hashes_per_tick: int = 2_000
    """Proof-of-work attempts every 100 ms when mining."""
    mempool_max_txs: int = 50_000
    """Pending transactions held, at most."""
    mempool_max_mb: int = 64
    """Encoded size of the pending transactions held, at most [MiB] (in memory about 4 to 8 times that)."""
    request_timeout_ms: int = 5_000
    """A request unanswered this long is asked again [ms]; stalled pending headers go after 12 times it."""
    serve_mb_per_s: int = 16
    """Blocks and headers sent to the peers of one host (IPv4 address, IPv6 /64), at most [MiB/s]."""
    peer_idle_timeout_ms: int = 30_000
    """A linked peer that sends nothing this long is disconnected [ms] (nodes send their status every 2 s)."""
    log_level: str = "info"
    """debug, info, warning or error."""
    debug: tuple[str, ...] = ()
    """Categories logged at debug level: net, sync, mempool, mine, api, relay (or all)."""
    log_max_mb: int = 10
    """node.log is rotated when it reaches this size [MB]."""
    log_files: int = 5
    """Rotated logs kept (node.log.1 ... node.log.N)."""
    api_token_file: str = ""
    """File holding the API token (mode 0600); empty: a new cookie file .cookie at each start."""

    def path(self, data_dir: Path, value: str) -> Path:
        """A path setting, relative to the data directory."""
        p = Path(value).expanduser()
        return p if p.is_absolute() else data_dir / p


_TYPES: Final = {f.name: f.type for f in fields(NodeSettings)}
_INT_LIMITS: Final = {
    "hashes_per_tick": 10_000_000,
    "mempool_max_txs": 10_000_000,
    "mempool_max_mb": 1_000_000,
    "request_timeout_ms": 600_000,
    "serve_mb_per_s": 100_000,
    "peer_idle_timeout_ms": 600_000,
    "log_max_mb": 100_000,
    "log_files": 1_000,
}
"""The largest value of each whole-number setting (beyond it a setting only does harm)."""
_INT_LEAST: Final = {"request_timeout_ms": 100, "peer_idle_timeout_ms": 6_000}
"""The least, where it is not 1 (below it a setting only does harm)."""


def _field_docs() -> dict[str, str]:
    """Each field's docstring, read from the source (they document the file's keys)."""
    import ast
    import inspect

    tree = ast.parse(inspect.getsource(NodeSettings))
    body = tree.body[0].body  # type: ignore[attr-defined]
    docs: dict[str, str] = {}
    for node, nxt in itertools.pairwise(body):
        if (
            isinstance(node, ast.AnnAssign)
            and isinstance(node.target, ast.Name)
            and isinstance(nxt, ast.Expr)
            and isinstance(nxt.value, ast.Constant)
        ):
            docs[node.target.id] = str(nxt.value.value)
    return docs


def parse_host_port(text: str, what: str) -> tuple[str, int]:
    """'127.0.0.1:9330' -> ('127.0.0.1', 9330); a port alone means 127.0.0.1."""
    host, sep, port = text.rpartition(":")
    if not sep:
        host, port = "127.0.0.1", text
    if not host or not is_decimal(port):
        raise ConfigError(f"{what} {text!r} must look like 127.0.0.1:9330")
    number = int(port)
    if number > 65_535:
        raise ConfigError(f"{what} {text!r}: port {number} is out of range (0 to 65535)")
    return host.strip("[]"), number


def bind_problem(exc: OSError) -> str:
    """Why an address could not be bound, for a one-line error (a name that does not resolve
    was 'Unknown error -2 (is another node using it?)')."""
    if isinstance(exc, socket.gaierror):
        return f"no such host ({exc.strerror}); give an IP address of this machine, e.g. 127.0.0.1"
    if exc.errno == errno.EADDRINUSE:
        return "the port is in use (is another node using it?)"
    if exc.errno == errno.EADDRNOTAVAIL:
        return "that is not an address of this machine"
    return exc.strerror or str(exc) or type(exc).__name__


def format_host_port(host: str, port: int) -> str:
    """HOST:PORT, with an IPv6 host in brackets ([::1]:8330)."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def base_url(url: str) -> tuple[str, int] | None:
    """(HOST, PORT) of ``http://HOST:PORT`` (or ``HOST:PORT``, a trailing '/' allowed); None
    for anything else: another scheme, no port, and a path, a query, a fragment or a
    user:password@, which a client would otherwise drop without a word."""
    try:
        parts = urlsplit(url if "://" in url else f"http://{url}")
        host, port = parts.hostname, parts.port
        extra = parts.username is not None or parts.path not in ("", "/")
    except ValueError:  # (a port that is not a number, an unclosed bracket)
        return None
    if parts.scheme != "http" or not host or port is None or extra or "?" in url or "#" in url:
        return None
    return host, port


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def read_config_file(path: Path) -> dict[str, Any]:
    """The keys of a ``gridnet.toml``, checked against the known keys and their types."""
    raw = read_toml(path, "config file")
    values: dict[str, Any] = {}
    for key, value in raw.items():
        if key not in _TYPES:
            known = ", ".join(_TYPES)
            raise ConfigError(f"{path}: unknown key {key!r} (known keys: {known})")
        values[key] = _checked(key, value, f"{path}: {key}")
    return values


def _checked(key: str, value: Any, where: str) -> Any:
    kind = _TYPES[key]
    if kind == "bool":
        if not isinstance(value, bool):
            raise ConfigError(f"{where} must be true or false, not {value!r}")
        return value
    if kind == "int":
        least, most = _INT_LEAST.get(key, 1), _INT_LIMITS[key]
        if isinstance(value, bool) or not isinstance(value, int) or not least <= value <= most:
            raise ConfigError(f"{where} must be a whole number from {least:,} to {most:,}, not {value!r}")
        return value
    if kind == "str":
        if not isinstance(value, str):
            raise ConfigError(f"{where} must be a string, not {value!r}")
        return value
    if not isinstance(value, list | tuple) or not all(isinstance(v, str) for v in value):
        raise ConfigError(f"{where} must be a list of strings, not {value!r}")
    return tuple(value)


def resolve(
    data_dir: Path,
    overrides: dict[str, Any],
    config: Path | None = None,
    flags: Mapping[str, str] | None = None,
) -> NodeSettings:
    """The settings of a node on ``data_dir``: defaults, then the config file (``config``,
    else ``DATA_DIR/gridnet.toml`` when there is one), then ``overrides`` (the flags given;
    a None value is a flag not given). Every value is checked; ``flags`` names the flag of
    each setting in messages (a setting not in it: ``--`` and its key)."""
    path = config if config is not None else data_dir / CONFIG_NAME
    values = read_config_file(path) if config is not None or path.exists() else {}
    origin = {key: f"{path}: {key}" for key in values}
    for key, value in overrides.items():
        if value is not None:
            origin[key] = (flags or {}).get(key) or f"--{key.replace('_', '-')}"
            values[key] = _checked(key, value, origin[key])
    settings = dataclasses.replace(NodeSettings(), **values)
    _validate(settings, origin)
    return settings


_ANY_HOST: Final = ("0.0.0.0", "::", "")
"""Hosts a socket binds to on every address of the machine."""


def _same_address(a: tuple[str, int], b: tuple[str, int]) -> bool:
    """Whether two HOST:PORT a node binds collide: one port (0 is any free one: never the
    same), on one host or on every host for either ("localhost" is 127.0.0.1)."""
    (host_a, port_a), (host_b, port_b) = a, b
    if port_a != port_b or port_a == 0:
        return False
    same = {h.lower().replace("localhost", "127.0.0.1") for h in (host_a, host_b)}
    return len(same) == 1 or bool(same & set(_ANY_HOST))


def _validate(s: NodeSettings, origin: dict[str, str]) -> None:
    """Check what the types do not; ``origin`` names where each key was given (the file and
    key, or the flag), for the message."""

    def where(key: str) -> str:
        return origin.get(key, key)

    listen = parse_host_port(s.listen, where("listen"))
    if s.api != API_OFF:
        host, port = parse_host_port(s.api, where("api"))
        if not is_loopback(host) and not s.api_token_file:
            raise ConfigError(
                f"{where('api')} {s.api!r} is not a loopback address: set api_token_file (a file with "
                "the token remote clients must send) or bind the API to 127.0.0.1"
            )
        if _same_address((host, port), listen):
            default = "" if "listen" in origin else ", the default,"
            raise ConfigError(
                f"{where('api')} {s.api!r} and {where('listen')} {s.listen!r}{default} are the same address: "
                'the API and the peer links need a port each; give one of them another port (or api "off")'
            )
    for peer in s.peers:
        if parse_host_port(peer, where("peers"))[1] == 0:
            raise ConfigError(f"{where('peers')} {peer!r} needs a port (1 to 65535)")
    if s.log_level not in LOG_LEVELS:
        raise ConfigError(f"{where('log_level')} {s.log_level!r} must be one of {', '.join(LOG_LEVELS)}")
    for category in s.debug:
        if category not in (*LOG_CATEGORIES, "all"):
            known = ", ".join(LOG_CATEGORIES)
            raise ConfigError(f"{where('debug')}: category {category!r} is unknown (known: {known}, all)")


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return f"{value:_}" if value >= 10_000 else str(value)
    if isinstance(value, tuple):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    return json.dumps(str(value))  # (a JSON string is a TOML basic string)


def settings_to_toml(settings: NodeSettings, header: str = "") -> str:
    """The settings as a ``gridnet.toml`` (what ``--print-config`` prints)."""
    lines = [f"# {line}" for line in header.splitlines()]
    lines += [f"{f.name} = {_toml_value(getattr(settings, f.name))}" for f in fields(settings)]
    return "\n".join(lines) + "\n"


def config_template() -> str:
    """A ``gridnet.toml`` listing every key with its default, commented out."""
    docs = _field_docs()
    defaults = NodeSettings()
    lines = [
        "# Settings of the node on this data directory ('gridnet node --data-dir DIR').",
        "# Uncomment a key to change it; a command-line flag overrides the file",
        "# ('gridnet node --print-config' shows what a node would run with).",
        "",
    ]
    for f in fields(defaults):
        lines.append(f"# {docs.get(f.name, '')}")
        lines.append(f"# {f.name} = {_toml_value(getattr(defaults, f.name))}")
        lines.append("")
    return "\n".join(lines)
