"""The meter's state file: the relay nonces it accepted, kept across a restart."""

from __future__ import annotations

from pathlib import Path

import pytest

from gridnet.errors import ConfigError
from gridnet.meter.state import load_relay_nonces, save_relay_nonces, state_path

ISSUER = bytes(range(32))


def test_nonces_round_trip_in_a_0600_file_next_to_the_key(tmp_path: Path) -> None:
    path = state_path(tmp_path / "meter.key")
    assert path == tmp_path / "meter.key.state.json"
    assert load_relay_nonces(path) == {}
    save_relay_nonces(path, {ISSUER: 2**63 - 1})
    assert load_relay_nonces(path) == {ISSUER: 2**63 - 1}
    assert path.stat().st_mode & 0o777 == 0o600
    assert [p.name for p in tmp_path.iterdir()] == [path.name]  # (no temporary file left)


@pytest.mark.parametrize(
    "text",
    [
        "",
        "[]",
        '{"relay_nonces": []}',
        '{"relay_nonces": {"zz": 1}}',
        '{"relay_nonces": {"00": 1}}',
        '{"relay_nonces": {"' + ISSUER.hex() + '": -1}}',
        '{"relay_nonces": {"' + ISSUER.hex() + '": true}}',
    ],
)
def test_a_file_that_is_not_a_meters_state_is_refused(tmp_path: Path, text: str) -> None:
    path = tmp_path / "meter.key.state.json"
    path.write_text(text)
    path.chmod(0o600)
    with pytest.raises(ConfigError):
        load_relay_nonces(path)
