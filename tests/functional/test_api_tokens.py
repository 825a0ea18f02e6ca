"""The API token a person gives (``--api-token-file``, ``api_token_file``, ``GRIDNET_API_TOKEN``)
against real processes: a file that is not a regular file is refused at once (a FIFO hung the
node and every client, /dev/zero filled the memory), and a token an HTTP header cannot carry is
refused where it is given, in one line, never a traceback."""

from __future__ import annotations

import os
import re
import time
from pathlib import Path

import pytest

from gridnet.crypto.keys import write_key_file
from gridnet.errors import ConfigError
from gridnet.ledger.chain import Chain
from gridnet.node.auth import read_token_file
from gridnet.node.client import NodeClient, RunningNode
from tests.functional.test_cli import gridnet, one_line_error
from tests.functional.test_node_ops import fast_params, new_node
from tests.helpers import test_keys

(OWNER,) = test_keys(1)
TRANSFER = ("--to", "gns2xnk54lq6gwljdpkfgunbutpbf2nek2f5aueta", "--amount", "1")
QUICK_S = 30
"""A refusal takes well under this [s] (a hung read would take for ever: the run's timeout)."""


def _private(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    path.chmod(0o600)
    return path


def test_a_token_file_that_is_no_regular_file_is_refused_at_once(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "pipe", 0o600)
    (tmp_path / "dir").mkdir(mode=0o700)
    write_key_file(tmp_path / "k.key", OWNER)
    cases = [
        ("pipe", "is not a regular file (a pipe or a device?)"),
        ("/dev/zero", "is not a regular file (a pipe or a device?)"),
        ("dir", "is a directory"),
    ]
    for path, expected in cases:
        began = time.monotonic()
        result = gridnet(
            "tx", "transfer", "--node", "127.0.0.1:9", "--api-token-file", path, "--key", "k.key", *TRANSFER,
            cwd=tmp_path, timeout=QUICK_S,
        )  # fmt: skip
        line = one_line_error(result)
        assert f"API token file {path} {expected}" in line, line
        assert time.monotonic() - began < QUICK_S
        with pytest.raises(ConfigError, match=re.escape(expected)):
            read_token_file(Path(path) if path.startswith("/") else tmp_path / path)
    big = _private(tmp_path / "big", b"x" * 5000)
    with pytest.raises(ConfigError, match="5,000 bytes: at most 4,096"):
        read_token_file(big)
    # A client on the node's machine follows node.json's token_file: a FIFO there is no token.
    node = RunningNode(tmp_path, os.getpid(), "gn", "127.0.0.1:1", "127.0.0.1:2", str(tmp_path / "pipe"))
    assert node.token() is None


def test_a_node_whose_token_file_is_missing_refuses_before_creating_anything(tmp_path: Path) -> None:
    """The node key (and the data directory's log) were created before the token file was read."""
    data = tmp_path / "d"
    Chain.create(data, fast_params()).close()
    before = sorted(p.name for p in data.iterdir())
    for how in (("--api-token-file", "missing"), ("--config", "node.toml")):
        (tmp_path / "node.toml").write_text('api_token_file = "missing"\n')
        result = gridnet(
            "node", "--data-dir", data, "--listen", "127.0.0.1:0", "--api", "127.0.0.1:0", *how,
            "--unencrypted-key", "--quiet", cwd=tmp_path, timeout=QUICK_S + 30,
        )  # fmt: skip
        line = one_line_error(result)
        assert "API token file" in line and "missing" in line, line
        assert sorted(p.name for p in data.iterdir()) == before, how  # (no node.key, node.log...)


def test_a_node_refuses_a_fifo_or_a_token_a_header_cannot_carry_at_start(tmp_path: Path) -> None:
    node = new_node(tmp_path, "a", fast_params())
    os.mkfifo(tmp_path / "pipe", 0o600)
    tokens = {
        "pipe": "API token file",
        _private(tmp_path / "accents", ("é" * 20 + "\n").encode()): "printable ASCII",
        _private(tmp_path / "spaced", b"token with spaces inside\n"): "printable ASCII",
        _private(tmp_path / "short", b"abc\n"): "at least 16 characters",
    }
    for path, expected in tokens.items():
        result = gridnet(
            "node", "--data-dir", node.data_dir, "--listen", "127.0.0.1:0", "--api", "127.0.0.1:0",
            "--api-token-file", path, "--unencrypted-key", "--quiet", cwd=tmp_path, timeout=QUICK_S + 30,
        )  # fmt: skip
        line = one_line_error(result)
        assert expected in line and str(path) in line, line


def test_a_token_in_the_environment_an_http_header_cannot_carry_is_one_line(tmp_path: Path) -> None:
    for token in ("abcdefgh\nijklmnopq", "ééééééééééééééééé", "short"):
        os.environ["GRIDNET_API_TOKEN"] = token
        try:
            line = one_line_error(gridnet("status", "--node", "127.0.0.1:9", cwd=tmp_path))
        finally:
            del os.environ["GRIDNET_API_TOKEN"]
        assert "$GRIDNET_API_TOKEN is not an API token" in line, line
    # What the library is given directly: the same one line, no request made.
    for token, path in (("a\nbcdefghijklmnopq", "/status"), ("€" * 16, "/status"), (None, "/credits/é")):
        client = NodeClient("127.0.0.1:9", token)
        with pytest.raises(ConfigError, match="holds characters an HTTP request cannot carry") as caught:
            client.call("GET", path)
        assert "\n" not in str(caught.value)
        assert ("the API token" in str(caught.value)) == (token is not None)
