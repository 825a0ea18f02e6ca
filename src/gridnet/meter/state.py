"""What a ``gridnet meter`` process keeps across a restart: the last relay-command nonce it
accepted from each issuer, so that a command copied from the public log (``GET /relays``)
cannot be played again once the meter restarts.

The state file sits next to the meter's key file (``KEY.state.json``, mode 0600): JSON
``{"relay_nonces": {ISSUER_PUBLIC_KEY_HEX: NONCE}}``. It is replaced whole (a temporary file,
synced, then renamed over it) before a command is answered, so a crash leaves the old state or
the new one, never half a file.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Final

from gridnet.errors import ConfigError
from gridnet.files import read_private, replace_file
from gridnet.meter.device import MeterDeviceError
from gridnet.units import PUBLIC_KEY_BYTES, PublicKey

MAX_STATE_BYTES: Final = 1 << 20
"""Largest state file read [bytes] (a few issuers: the owner and the DSO keys)."""
MAX_NONCE: Final = 2**63 - 1


class MeterStateUnwritable(MeterDeviceError):
    """The meter could not record an accepted nonce, so it did not apply the command."""


def state_path(key_file: Path) -> Path:
    """The state file of the meter whose key is in ``key_file``."""
    return key_file.with_name(f"{key_file.name}.state.json")


def load_relay_nonces(path: Path) -> dict[PublicKey, int]:
    """The last nonce accepted from each issuer, from ``path`` (none when it does not exist);
    a file that is not a meter's state is ``ConfigError``."""
    if not os.path.lexists(path):
        return {}
    data = read_private(path, "meter state file", MAX_STATE_BYTES)
    try:
        nonces = json.loads(data)["relay_nonces"]
        loaded = {bytes.fromhex(key): nonce for key, nonce in nonces.items()}
    except (ValueError, KeyError, TypeError, AttributeError):
        raise ConfigError(f"meter state file {path} is not a meter's state; move it away") from None
    for key, nonce in loaded.items():
        if len(key) != PUBLIC_KEY_BYTES or type(nonce) is not int or not 0 <= nonce <= MAX_NONCE:
            raise ConfigError(f"meter state file {path} holds a bad issuer key or nonce; move it away")
    return loaded


def save_relay_nonces(path: Path, nonces: Mapping[PublicKey, int]) -> None:
    """Replace ``path`` with ``nonces``, atomically and durably (mode 0600)."""
    text = json.dumps({"relay_nonces": {key.hex(): nonce for key, nonce in sorted(nonces.items())}})
    try:
        replace_file(path, f"{text}\n".encode(), 0o600, durable=True)
    except OSError as exc:
        raise MeterStateUnwritable(
            f"cannot write the meter state file {path}: {exc.strerror or exc}"
        ) from None
