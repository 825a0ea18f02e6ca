"""``gridnet node``'s messages name its real flags: a setting's flag was made from the setting's
key, naming flags that do not exist (``--mempool-max-txs`` for ``--mempool-max``, ``--peers`` for
``--peer``)."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest

from gridnet.cli.node import SETTING_FLAGS, flag_names
from gridnet.errors import ConfigError
from gridnet.node.config import NodeSettings, resolve
from gridnet.node.devnet import DevNode, stop_all
from tests.functional.test_cli import gridnet, ok, one_line_error
from tests.functional.test_node_ops import CEILING, fast_params, new_node
from tests.helpers import wait_for

BAD_VALUES = {
    "listen": "nowhere",
    "api": "nowhere",
    "peers": "nowhere",
    "hashes_per_tick": "99999999999",
    "mempool_max_txs": "99999999999",
    "mempool_max_mb": "99999999999",
    "log_level": "loud",
    "debug": "nothing",
}
"""A value each setting that can be wrong through its flag refuses (a bool or a path cannot be)."""


def test_every_settings_flag_is_one_gridnet_node_takes(tmp_path: Path) -> None:
    names = flag_names()
    assert set(names) == set(SETTING_FLAGS) and set(names) <= {f for f in NodeSettings.__dataclass_fields__}
    usage = ok(gridnet("node", "--help", cwd=tmp_path))
    for setting, flag in names.items():
        assert flag in usage, (setting, flag)
    assert names["peers"] == "--peer" and names["mempool_max_txs"] == "--mempool-max"


def test_a_bad_value_names_the_flag_it_came_from(tmp_path: Path) -> None:
    names = flag_names()
    for setting, value in BAD_VALUES.items():
        flag = names[setting]
        args = ("node", "--data-dir", tmp_path / "d", "--print-config", flag, value)
        line = one_line_error(gridnet(*args, cwd=tmp_path))
        assert f"{flag} " in line or f"{flag}:" in line, (setting, line)
        wrong = f"--{setting.replace('_', '-')}"
        assert wrong == flag or f"{wrong} " not in line, (setting, line)


def test_a_missing_key_file_given_by_flag_is_created_as_the_settings_one_is(
    tmp_path: Path, nodes: list[DevNode]
) -> None:
    """``key = "x.key"`` in gridnet.toml was created when missing, ``--key x.key`` was refused as
    not found: both are created now (with the same passphrase rules)."""
    node = new_node(tmp_path, "n", fast_params())
    (node.data_dir / "node.key").unlink()
    flagged = tmp_path / "keys" / "flagged.key"
    flagged.parent.mkdir(mode=0o700)
    nodes.append(node)
    node.start("--key", str(flagged))  # (with --unencrypted-key, as every test node)
    assert wait_for(lambda: node.head() is not None, CEILING), (node.data_dir / "console.log").read_text()
    assert flagged.exists() and stat.S_IMODE(flagged.stat().st_mode) == 0o600
    assert not (node.data_dir / "node.key").exists()
    status = json.loads((node.data_dir / "node.json").read_text())
    assert status["address"] == ok(gridnet("keys", "show", "--key", flagged, cwd=tmp_path)).strip()
    # Without a way to encrypt it (no passphrase, no terminal), one line, nothing written.
    stop_all(nodes)
    other = tmp_path / "keys" / "other.key"
    line = one_line_error(
        gridnet(
            "node",
            "--data-dir",
            node.data_dir,
            "--listen",
            "127.0.0.1:0",
            "--api",
            "off",
            "--key",
            other,
            cwd=tmp_path,
            timeout=120,
        )
    )
    assert "no passphrase" in line and str(other) in line, line
    assert not other.exists()


def test_unencrypted_key_beside_a_passphrase_file_names_the_flag_and_the_files_key(tmp_path: Path) -> None:
    """``--unencrypted-key`` with ``passphrase_file`` in gridnet.toml said ``--unencrypted and
    --passphrase-file contradict each other``: neither is what was given. The line names the
    real flag and where the passphrase file came from; no key is made."""
    data_dir = tmp_path / "d2"
    ok(gridnet("chain", "init", "--data-dir", data_dir, cwd=tmp_path))
    with (data_dir / "gridnet.toml").open("a") as f:
        f.write('passphrase_file = "nofile"\n')
    args = ("node", "--data-dir", "d2", "--unencrypted-key", "--listen", "127.0.0.1:0", "--api", "off")
    line = one_line_error(gridnet(*args, cwd=tmp_path))
    assert line == (
        "error: --unencrypted-key and passphrase_file 'nofile' in d2/gridnet.toml contradict each other (a "
        "key written in clear takes no passphrase); leave out one of them"
    )
    secret = tmp_path / "secret"
    secret.write_text("a passphrase\n")
    secret.chmod(0o600)
    line = one_line_error(gridnet(*args, "--passphrase-file", secret, cwd=tmp_path))
    assert line.startswith("error: --unencrypted-key and --passphrase-file contradict each other (")
    assert not (data_dir / "node.key").exists()


def test_an_api_on_the_peer_address_is_refused_before_the_node_starts(tmp_path: Path) -> None:
    """``api`` on the node's own ``listen`` address failed as the API bound it, "the port is in
    use (is another node using it?)", after the node key was made: refused at once, in one line
    naming both (a host that binds every address collides with any other on its port)."""
    data_dir = tmp_path / "d3"
    ok(gridnet("chain", "init", "--data-dir", data_dir, cwd=tmp_path))
    with (data_dir / "gridnet.toml").open("a") as f:
        f.write('api = "127.0.0.1:9330"\n')
    line = one_line_error(gridnet("node", "--data-dir", "d3", "--unencrypted-key", cwd=tmp_path))
    assert line == (
        "error: d3/gridnet.toml: api '127.0.0.1:9330' and listen '127.0.0.1:9330', the default, are the "
        "same address: the API and the peer links need a port each; give one of them another port (or api "
        '"off")'
    )
    assert not (data_dir / "node.key").exists()
    for listen, api, same in (
        ("0.0.0.0:9400", "127.0.0.1:9400", True),
        ("localhost:9400", "127.0.0.1:9400", True),
        ("[::]:9400", "[::1]:9400", True),
        ("127.0.0.1:9400", "127.0.0.1:9401", False),
        ("127.0.0.1:0", "127.0.0.1:0", False),  # (each any free port)
        ("127.0.0.2:9400", "127.0.0.1:9400", False),
    ):
        flags = {"listen": "--listen", "api": "--api"}
        if same:
            with pytest.raises(ConfigError, match=r"^--api .* and --listen .* are the same address: "):
                resolve(tmp_path / "x", {"listen": listen, "api": api}, flags=flags)
        else:
            resolve(tmp_path / "x", {"listen": listen, "api": api}, flags=flags)
