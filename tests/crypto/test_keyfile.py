"""Key files at rest: sealed with a passphrase (argon2id + SecretBox), plain on purpose, or in the
first (legacy) format; every refusal is one line that never shows the seed or the ciphertext."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from gridnet.crypto.address import address_to_text
from gridnet.crypto.keys import (
    KDF_COST,
    KDF_COST_MAX,
    KDF_COST_MIN,
    KeyFileInfo,
    PrivateKey,
    encrypt_key_file,
    key_file_info,
    read_key_file,
    write_key_file,
)
from gridnet.errors import KeyFileError

KEY = PrivateKey.from_label("keyfile-test")
OTHER = PrivateKey.from_label("keyfile-test-other")
PASSPHRASE = b"correct horse battery staple"
ADDRESS = address_to_text(KEY.address)


class Passphrase:
    """A passphrase source that counts how often it is asked."""

    def __init__(self, value: bytes) -> None:
        self.value = value
        self.calls = 0

    def __call__(self) -> bytes:
        self.calls += 1
        return self.value


def never() -> bytes:
    raise AssertionError("the passphrase was asked for a file that is not encrypted")


def write_json(path: Path, record: dict[str, Any]) -> None:
    """Write ``record`` as a key file would be (mode 0600), replacing any file there."""
    path.unlink(missing_ok=True)
    path.write_text(json.dumps(record))
    path.chmod(0o600)


def encrypted(tmp_path: Path, name: str = "node.key") -> tuple[Path, dict[str, Any]]:
    """A cheap encrypted key file of KEY and its JSON."""
    path = tmp_path / name
    write_key_file(path, KEY, PASSPHRASE, cost=KDF_COST_MIN)
    return path, json.loads(path.read_text())


def refusal(call: Callable[[], object], *secrets: str) -> str:
    """The message of the KeyFileError ``call`` raises, checked to be one line without the seed
    or any of ``secrets``."""
    with pytest.raises(KeyFileError) as caught:
        call()
    message = str(caught.value)
    assert "\n" not in message
    for secret in (KEY.seed.hex(), OTHER.seed.hex(), *secrets):
        assert secret.lower() not in message.lower(), f"a secret leaked into: {message}"
    return message


# --- round trips --------------------------------------------------------------------------------


def test_encrypted_key_file_round_trips_at_the_default_cost(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "node.key"
    old = os.umask(0)  # even a permissive umask must not widen the mode
    try:
        write_key_file(path, KEY, PASSPHRASE)
    finally:
        os.umask(old)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    text = path.read_text()
    assert KEY.seed.hex() not in text
    record = json.loads(text)
    assert set(record) == {"kind", "version", "address", "encryption", "kdf", "ciphertext"}
    assert (record["kind"], record["version"]) == ("gridnet-ed25519-key", 2)
    assert (record["address"], record["encryption"]) == (ADDRESS, "argon2id-secretbox")
    assert record["kdf"]["opslimit"] == KDF_COST.opslimit == 3  # libsodium MODERATE
    assert record["kdf"]["memlimit"] == KDF_COST.memlimit == 256 * 2**20
    assert len(bytes.fromhex(record["kdf"]["salt"])) == 16
    assert len(bytes.fromhex(record["ciphertext"])) == 24 + 16 + 32  # nonce, tag, seed
    assert key_file_info(path) == KeyFileInfo(ADDRESS, "argon2id-secretbox")
    source = Passphrase(PASSPHRASE)
    assert read_key_file(path, source).seed == KEY.seed
    assert source.calls == 1


def test_the_same_key_encrypts_differently_each_time(tmp_path: Path) -> None:
    _, first = encrypted(tmp_path, "a.key")
    _, second = encrypted(tmp_path, "b.key")
    assert first["kdf"]["salt"] != second["kdf"]["salt"]
    assert first["ciphertext"] != second["ciphertext"]


def test_plain_key_file_is_marked_and_never_asks_for_a_passphrase(tmp_path: Path) -> None:
    path = tmp_path / "node.key"
    write_key_file(path, KEY)
    record = json.loads(path.read_text())
    assert record == {
        "kind": "gridnet-ed25519-key",
        "version": 2,
        "address": ADDRESS,
        "encryption": "none",
        "seed": KEY.seed.hex(),
    }
    assert key_file_info(path) == KeyFileInfo(ADDRESS, "none")
    assert read_key_file(path, never).seed == KEY.seed


@pytest.mark.parametrize("with_address", [True, False], ids=["with-address", "seed-only"])
def test_legacy_key_file_still_loads(tmp_path: Path, with_address: bool) -> None:
    path = tmp_path / "old.key"
    record = {"kind": "gridnet-ed25519-key", "seed": KEY.seed.hex()}
    if with_address:
        record["address"] = ADDRESS
    write_json(path, record)
    assert key_file_info(path) == KeyFileInfo(ADDRESS, "legacy")
    assert read_key_file(path, never).seed == KEY.seed
    assert read_key_file(path).seed == KEY.seed


# --- refusals -----------------------------------------------------------------------------------


def test_encrypted_file_without_a_passphrase_says_how_to_give_one(tmp_path: Path) -> None:
    path, record = encrypted(tmp_path)
    message = refusal(lambda: read_key_file(path), record["ciphertext"])
    assert str(path) in message and "encrypted" in message
    assert "--passphrase-file" in message and "GRIDNET_PASSPHRASE" in message and "prompt" in message


def test_wrong_passphrase_is_named(tmp_path: Path) -> None:
    path, record = encrypted(tmp_path)
    message = refusal(
        lambda: read_key_file(path, Passphrase(b"Correct horse battery staple")), record["ciphertext"]
    )
    assert str(path) in message and "wrong passphrase" in message
    assert read_key_file(path, Passphrase(PASSPHRASE)).seed == KEY.seed


def _flip(hex_text: str, index: int) -> str:
    raw = bytearray(bytes.fromhex(hex_text))
    raw[index] ^= 0x01
    return raw.hex()


TAMPERED: dict[str, tuple[Callable[[dict[str, Any]], None], str]] = {
    # An altered byte anywhere the key derivation or the box covers: it does not decrypt.
    "nonce": (lambda r: r.update(ciphertext=_flip(r["ciphertext"], 0)), "does not decrypt"),
    "tag": (lambda r: r.update(ciphertext=_flip(r["ciphertext"], 24)), "does not decrypt"),
    "box": (lambda r: r.update(ciphertext=_flip(r["ciphertext"], 71)), "does not decrypt"),
    "salt": (lambda r: r["kdf"].update(salt=_flip(r["kdf"]["salt"], 3)), "does not decrypt"),
    "opslimit": (lambda r: r["kdf"].update(opslimit=2), "does not decrypt"),
    "memlimit": (lambda r: r["kdf"].update(memlimit=2 * 8192), "does not decrypt"),
    # The address is not encrypted; decrypting shows that it is not the key's.
    "address": (lambda r: r.update(address=address_to_text(OTHER.address)), "does not match"),
    # Out of shape: refused before any key derivation.
    "cut-ciphertext": (lambda r: r.update(ciphertext=r["ciphertext"][:-2]), "not a valid"),
    "odd-hex": (lambda r: r.update(ciphertext=r["ciphertext"][:-1]), "not a valid"),
    "no-kdf": (lambda r: r.pop("kdf"), "not a valid"),
    "short-salt": (lambda r: r["kdf"].update(salt="00"), "not a valid"),
    "costly-ops": (lambda r: r["kdf"].update(opslimit=KDF_COST_MAX.opslimit + 1), "not a valid"),
    "costly-memory": (lambda r: r["kdf"].update(memlimit=KDF_COST_MAX.memlimit * 2), "not a valid"),
    "text-cost": (lambda r: r["kdf"].update(opslimit="3"), "not a valid"),
    "bad-address": (lambda r: r.update(address="gn" + "a" * 39), "not a valid"),
    "encryption": (lambda r: r.update(encryption="rot13"), "not a valid"),
    "version": (lambda r: r.update(version=3), "format version 3"),
}


@pytest.mark.parametrize("change", list(TAMPERED))
def test_tampered_encrypted_file_is_refused_in_one_line(tmp_path: Path, change: str) -> None:
    path, record = encrypted(tmp_path)
    ciphertext = record["ciphertext"]
    alter, expected = TAMPERED[change]
    alter(record)
    write_json(path, record)
    message = refusal(
        lambda: read_key_file(path, Passphrase(PASSPHRASE)), ciphertext, record.get("ciphertext", "")
    )
    assert expected in message and str(path) in message


@pytest.mark.parametrize(
    "content",
    [
        "not json",
        "[]",
        json.dumps({"kind": "other", "seed": KEY.seed.hex()}),
        json.dumps({"kind": "gridnet-ed25519-key", "version": 2, "encryption": "none"}),
        json.dumps({"kind": "gridnet-ed25519-key", "seed": KEY.seed.hex()[:-2]}),
        json.dumps(
            {"kind": "gridnet-ed25519-key", "seed": KEY.seed.hex(), "address": address_to_text(OTHER.address)}
        ),
    ],
    ids=["not-json", "not-an-object", "other-kind", "no-seed", "short-seed", "other-address"],
)
def test_corrupt_plain_file_is_refused_without_showing_the_seed(tmp_path: Path, content: str) -> None:
    path = tmp_path / "node.key"
    path.write_text(content)
    path.chmod(0o600)
    assert str(path) in refusal(lambda: read_key_file(path))
    assert str(path) in refusal(lambda: key_file_info(path))


@pytest.mark.parametrize("kind", ["encrypted", "plain"])
@pytest.mark.parametrize("mode", [0o640, 0o604, 0o620, 0o602, 0o644, 0o700 | 0o010])
def test_key_file_others_can_access_is_refused_by_every_reader(tmp_path: Path, kind: str, mode: int) -> None:
    path = tmp_path / "node.key"
    if kind == "encrypted":
        write_key_file(path, KEY, PASSPHRASE, cost=KDF_COST_MIN)
    else:
        write_key_file(path, KEY)
    before = path.read_bytes()
    path.chmod(mode)
    for call in (
        lambda: read_key_file(path, Passphrase(PASSPHRASE)),
        lambda: key_file_info(path),
        lambda: encrypt_key_file(path, Passphrase(PASSPHRASE), cost=KDF_COST_MIN),
    ):
        assert f"chmod 600 {path}" in refusal(call)
    assert path.read_bytes() == before


def test_encrypted_key_file_is_never_overwritten_and_needs_a_passphrase(tmp_path: Path) -> None:
    path, _ = encrypted(tmp_path)
    before = path.read_bytes()
    assert "already exists" in refusal(lambda: write_key_file(path, OTHER, PASSPHRASE))
    assert "already exists" in refusal(lambda: write_key_file(path, OTHER))
    assert path.read_bytes() == before
    assert "empty passphrase" in refusal(lambda: write_key_file(tmp_path / "new.key", KEY, b""))
    assert not (tmp_path / "new.key").exists()


# --- encrypting a plain file in place ------------------------------------------------------------


@pytest.mark.parametrize("kind", ["none", "legacy"])
def test_encrypt_key_file_rewrites_a_plain_file_in_place(tmp_path: Path, kind: str) -> None:
    path = tmp_path / "node.key"
    if kind == "none":
        write_key_file(path, KEY)
    else:
        write_json(path, {"kind": "gridnet-ed25519-key", "seed": KEY.seed.hex(), "address": ADDRESS})
    old = os.umask(0)
    try:
        encrypt_key_file(path, Passphrase(PASSPHRASE), cost=KDF_COST_MIN)
    finally:
        os.umask(old)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["node.key"], "a temporary file was left"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert KEY.seed.hex() not in path.read_text()
    assert key_file_info(path) == KeyFileInfo(ADDRESS, "argon2id-secretbox")
    assert read_key_file(path, Passphrase(PASSPHRASE)).seed == KEY.seed


def test_encrypt_key_file_refuses_an_encrypted_file_without_asking(tmp_path: Path) -> None:
    path, record = encrypted(tmp_path)
    before = path.read_bytes()
    source = Passphrase(b"another passphrase")
    message = refusal(lambda: encrypt_key_file(path, source, cost=KDF_COST_MIN), record["ciphertext"])
    assert "already encrypted" in message and str(path) in message
    assert source.calls == 0
    assert path.read_bytes() == before


def test_failed_encryption_leaves_the_plain_file_as_it_was(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "node.key"
    write_key_file(path, KEY)
    before = path.read_bytes()

    def disk_full(*args: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", disk_full)
    message = refusal(lambda: encrypt_key_file(path, Passphrase(PASSPHRASE), cost=KDF_COST_MIN))
    assert "No space left on device" in message and "unchanged" in message
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["node.key"], "a temporary file was left"


@pytest.mark.parametrize("link", ["symbolic", "hard"])
def test_encrypting_through_a_link_is_refused_and_leaves_the_plain_file(tmp_path: Path, link: str) -> None:
    """The rename replaced the link, not the file: the plain key stayed in clear under its own
    name (or its other hard link) while this said it was encrypted."""
    vault = tmp_path / "vault"
    vault.mkdir()
    plain = vault / "plain.key"
    write_key_file(plain, KEY)
    before = plain.read_bytes()
    path = tmp_path / "node.key"
    if link == "symbolic":
        path.symlink_to(plain)
    else:
        os.link(plain, path)
    source = Passphrase(PASSPHRASE)
    message = refusal(lambda: encrypt_key_file(path, source, cost=KDF_COST_MIN))
    expected = f"a symbolic link to {plain}" if link == "symbolic" else "has 2 names (hard links)"
    assert expected in message and "left unchanged" in message
    assert plain.read_bytes() == before and source.calls == 0
    assert key_file_info(path) == KeyFileInfo(ADDRESS, "none")


KDF_OUT_OF_MEMORY = """
import resource, sys
from pathlib import Path
from gridnet.crypto.keys import KDF_COST, PrivateKey, read_key_file, write_key_file
from gridnet.errors import KeyFileError

def vm_bytes() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmSize:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmSize")

path = Path(sys.argv[1])
limit = vm_bytes() + KDF_COST.memlimit // 4  # a quarter of what argon2id asks for
resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
for call in (
    lambda: read_key_file(path, lambda: b"correct horse battery staple"),
    lambda: write_key_file(path.with_name("new.key"), PrivateKey.from_label("x"), b"pass", cost=KDF_COST),
):
    try:
        call()
    except KeyFileError as exc:
        print(exc)
"""


def test_a_key_derivation_without_its_memory_is_not_a_wrong_passphrase(tmp_path: Path) -> None:
    """argon2id needs 256 MiB; a process that cannot have them (a small device, ulimit -v) was
    told its right passphrase was wrong and to restore the file from a backup, and `keys new`
    ended in a traceback."""
    path = tmp_path / "node.key"
    write_key_file(path, KEY, PASSPHRASE, cost=KDF_COST)
    done = subprocess.run(
        [sys.executable, "-c", KDF_OUT_OF_MEMORY, str(path)], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert len(lines) == 2, done.stdout
    for line, name in zip(lines, ("node.key", "new.key"), strict=True):
        assert line.startswith(f"cannot derive the key of key file {tmp_path / name}: argon2id needs 256 MiB")
        assert "wrong passphrase" not in line
    assert not (tmp_path / "new.key").exists()
