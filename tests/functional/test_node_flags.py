"""``gridnet node``'s messages name its real flags: a setting's flag was made from the setting's
key, naming flags that do not exist (``--mempool-max-txs`` for ``--mempool-max``, ``--peers`` for
``--peer``)."""

from __future__ import annotations

from pathlib import Path

from gridnet.cli.node import SETTING_FLAGS, flag_names
from gridnet.node.config import NodeSettings
from tests.functional.test_cli import gridnet, ok, one_line_error

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
