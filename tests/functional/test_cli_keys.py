"""``gridnet keys`` end to end: key files encrypted with a passphrase from --passphrase-file,
GRIDNET_PASSPHRASE or a terminal prompt; plain keys only with --unencrypted; no seed ever shown."""

from __future__ import annotations

import json
import os
import pty
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from gridnet.cli import passphrase as cli_passphrase
from gridnet.cli.passphrase import PASSPHRASE_ENV, load_key
from gridnet.crypto.address import address_from_public_key, address_to_text
from gridnet.crypto.keys import (
    KDF_COST,
    KDF_COST_MIN,
    PrivateKey,
    key_file_info,
    read_key_file,
    write_key_file,
)
from gridnet.errors import KeyFileError
from tests.functional.test_cli import ADDRESS, ok, one_line_error

PASSPHRASE = "correct horse battery staple"
LEGACY = PrivateKey.from_label("cli-keys-legacy")


def environment(passphrase: str | None) -> dict[str, str]:
    env = {name: value for name, value in os.environ.items() if name != PASSPHRASE_ENV}
    env.update(COLUMNS="200", NO_COLOR="1", PYTHONUNBUFFERED="1")
    if passphrase is not None:
        env[PASSPHRASE_ENV] = passphrase
    return env


def gridnet(*args: str, cwd: Path, passphrase: str | None = None) -> subprocess.CompletedProcess[str]:
    """Run ``python -m gridnet ARGS`` in ``cwd`` with stdin not a terminal, GRIDNET_PASSPHRASE set
    to ``passphrase`` or unset."""
    return subprocess.run(
        [sys.executable, "-m", "gridnet", *args],
        cwd=cwd,
        env=environment(passphrase),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=60,
    )


def seed_of(path: Path, passphrase: str = PASSPHRASE) -> str:
    return read_key_file(path, lambda: passphrase.encode()).seed.hex()


def assert_secret_not_shown(secret: str, *results: subprocess.CompletedProcess[str]) -> None:
    for result in results:
        assert secret not in result.stdout and secret not in result.stderr, "a secret was printed"


def private_file(path: Path, content: str) -> Path:
    path.write_text(content)
    path.chmod(0o600)
    return path


def write_legacy(path: Path) -> None:
    """A key file of the first format: plain seed, no version, no encryption field."""
    record = {
        "kind": "gridnet-ed25519-key",
        "seed": LEGACY.seed.hex(),
        "address": address_to_text(LEGACY.address),
    }
    private_file(path, json.dumps(record))


# --- keys new and keys show ------------------------------------------------------------------


def test_keys_new_encrypts_by_default_and_keys_show_needs_no_passphrase(tmp_path: Path) -> None:
    new = gridnet("keys", "new", "--out", "k.key", cwd=tmp_path, passphrase=PASSPHRASE)
    address = ok(new).strip()
    assert ADDRESS.match(address), address
    record = json.loads((tmp_path / "k.key").read_text())
    assert record["encryption"] == "argon2id-secretbox" and record["address"] == address
    assert (record["kdf"]["opslimit"], record["kdf"]["memlimit"]) == (KDF_COST.opslimit, KDF_COST.memlimit)

    show = gridnet("keys", "show", "--key", "k.key", cwd=tmp_path)
    assert ok(show).strip() == address
    assert show.stderr.strip() == "key file k.key: encrypted (argon2id + SecretBox)"

    private_file(tmp_path / "pass", PASSPHRASE + "\n")
    checked = gridnet("keys", "show", "--key", "k.key", "--passphrase-file", "pass", cwd=tmp_path)
    assert ok(checked).strip() == address
    assert "the passphrase decrypts it" in checked.stderr

    public = gridnet(
        "keys", "show", "--key", "k.key", "--passphrase-file", "pass", "--public-key", cwd=tmp_path
    )
    key = bytes.fromhex(ok(public).strip())
    assert address_to_text(address_from_public_key(key)) == address

    private_file(tmp_path / "wrong", "Correct horse battery staple\n")
    wrong = gridnet("keys", "show", "--key", "k.key", "--passphrase-file", "wrong", cwd=tmp_path)
    line = one_line_error(wrong)
    assert "k.key" in line and "wrong passphrase" in line
    assert_secret_not_shown(seed_of(tmp_path / "k.key"), new, show, checked, wrong)
    assert_secret_not_shown(record["ciphertext"], new, show, checked, wrong)


def test_keys_new_takes_the_first_line_of_the_passphrase_file(tmp_path: Path) -> None:
    private_file(tmp_path / "pass", "two words\r\nthe second line is not part of it\n")
    address = ok(gridnet("keys", "new", "--out", "k.key", "--passphrase-file", "pass", cwd=tmp_path)).strip()
    key = read_key_file(tmp_path / "k.key", lambda: b"two words")
    assert address_to_text(key.address) == address


def test_unencrypted_key_only_with_the_flag(tmp_path: Path) -> None:
    result = gridnet("keys", "new", "--out", "k.key", "--unencrypted", cwd=tmp_path)
    address = ok(result).strip()
    assert json.loads((tmp_path / "k.key").read_text())["encryption"] == "none"
    private_file(tmp_path / "pass", PASSPHRASE)
    show = gridnet("keys", "show", "--key", "k.key", "--passphrase-file", "pass", cwd=tmp_path)
    assert ok(show).strip() == address
    assert show.stderr.strip() == "key file k.key: not encrypted (made with --unencrypted)"
    assert_secret_not_shown(seed_of(tmp_path / "k.key"), result, show)

    line = one_line_error(
        gridnet("keys", "new", "--out", "j.key", "--unencrypted", "--passphrase-file", "pass", cwd=tmp_path)
    )
    assert "--unencrypted" in line and "--passphrase-file" in line
    assert not (tmp_path / "j.key").exists()


def test_without_a_passphrase_and_without_a_terminal_commands_fail_in_one_line(tmp_path: Path) -> None:
    line = one_line_error(gridnet("keys", "new", "--out", "k.key", cwd=tmp_path))
    assert "k.key" in line and "--passphrase-file" in line and PASSPHRASE_ENV in line and "terminal" in line
    assert not (tmp_path / "k.key").exists()

    ok(gridnet("keys", "new", "--out", "plain.key", "--unencrypted", cwd=tmp_path))
    before = (tmp_path / "plain.key").read_bytes()
    line = one_line_error(gridnet("keys", "encrypt", "--key", "plain.key", cwd=tmp_path))
    assert "plain.key" in line and "--passphrase-file" in line and PASSPHRASE_ENV in line
    assert (tmp_path / "plain.key").read_bytes() == before


def test_keys_new_refuses_an_existing_file_before_asking_for_a_passphrase(tmp_path: Path) -> None:
    ok(gridnet("keys", "new", "--out", "k.key", cwd=tmp_path, passphrase=PASSPHRASE))
    before = (tmp_path / "k.key").read_bytes()
    line = one_line_error(gridnet("keys", "new", "--out", "k.key", cwd=tmp_path))
    assert "already exists" in line and "overwrite" in line
    assert (tmp_path / "k.key").read_bytes() == before


def test_keys_new_says_what_is_wrong_with_the_directory_it_is_given(tmp_path: Path) -> None:
    (tmp_path / "a-file").write_text("kept\n")
    line = one_line_error(gridnet("keys", "new", "--out", "a-file/k.key", "--unencrypted", cwd=tmp_path))
    assert line == "error: --out a-file/k.key: a-file is not a directory"
    line = one_line_error(gridnet("keys", "new", "--out", "none/k.key", "--unencrypted", cwd=tmp_path))
    assert line == "error: --out none/k.key: none does not exist; create it first"
    assert (tmp_path / "a-file").read_text() == "kept\n"


@pytest.mark.parametrize(
    ("content", "mode", "expected"),
    [
        (PASSPHRASE, 0o640, "chmod 600"),
        (PASSPHRASE, 0o604, "chmod 600"),
        ("", 0o600, "empty"),
        ("\nthe passphrase must be on the first line\n", 0o600, "empty"),
    ],
    ids=["group-readable", "world-readable", "empty", "empty-first-line"],
)
def test_a_passphrase_file_others_can_read_or_an_empty_one_is_refused(
    tmp_path: Path, content: str, mode: int, expected: str
) -> None:
    passphrase_file = tmp_path / "pass"
    passphrase_file.write_text(content)
    passphrase_file.chmod(mode)
    line = one_line_error(gridnet("keys", "new", "--out", "k.key", "--passphrase-file", "pass", cwd=tmp_path))
    assert expected in line and "pass" in line
    assert not (tmp_path / "k.key").exists()


def test_an_empty_environment_passphrase_is_refused(tmp_path: Path) -> None:
    line = one_line_error(gridnet("keys", "new", "--out", "k.key", cwd=tmp_path, passphrase=""))
    assert PASSPHRASE_ENV in line and "empty" in line
    assert not (tmp_path / "k.key").exists()


# --- keys encrypt ------------------------------------------------------------------------------


def test_keys_encrypt_rewrites_a_plain_key_in_place(tmp_path: Path) -> None:
    address = ok(gridnet("keys", "new", "--out", "k.key", "--unencrypted", cwd=tmp_path)).strip()
    seed = json.loads((tmp_path / "k.key").read_text())["seed"]
    encrypt = gridnet("keys", "encrypt", "--key", "k.key", cwd=tmp_path, passphrase=PASSPHRASE)
    assert ok(encrypt).strip() == "key file k.key is now encrypted"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["k.key"]
    assert (tmp_path / "k.key").stat().st_mode & 0o777 == 0o600
    assert seed not in (tmp_path / "k.key").read_text()
    assert seed_of(tmp_path / "k.key") == seed

    show = gridnet("keys", "show", "--key", "k.key", cwd=tmp_path)
    assert ok(show).strip() == address and "encrypted (argon2id" in show.stderr
    again = gridnet("keys", "encrypt", "--key", "k.key", cwd=tmp_path, passphrase="another passphrase")
    assert "already encrypted" in one_line_error(again)
    assert seed_of(tmp_path / "k.key") == seed
    assert_secret_not_shown(seed, encrypt, show, again)


def test_a_legacy_key_file_is_shown_as_plain_and_can_be_encrypted(tmp_path: Path) -> None:
    write_legacy(tmp_path / "old.key")
    show = gridnet("keys", "show", "--key", "old.key", cwd=tmp_path)
    assert ok(show).strip() == address_to_text(LEGACY.address)
    assert show.stderr.strip() == (
        "key file old.key: not encrypted (first key file format); "
        "encrypt it with 'gridnet keys encrypt --key old.key'"
    )
    private_file(tmp_path / "pass", PASSPHRASE + "\n")
    encrypt = gridnet("keys", "encrypt", "--key", "old.key", "--passphrase-file", "pass", cwd=tmp_path)
    ok(encrypt)
    assert key_file_info(tmp_path / "old.key").encryption == "argon2id-secretbox"
    assert seed_of(tmp_path / "old.key") == LEGACY.seed.hex()
    assert_secret_not_shown(LEGACY.seed.hex(), show, encrypt)


# --- load_key, what the other commands call ------------------------------------------------------


def test_load_key_warns_once_about_a_legacy_file_only(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write_legacy(tmp_path / "old.key")
    assert load_key(tmp_path / "old.key").seed == LEGACY.seed
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.splitlines() == [
        f"warning: key file {tmp_path / 'old.key'} is not encrypted; "
        f"encrypt it with 'gridnet keys encrypt --key {tmp_path / 'old.key'}'"
    ]

    write_key_file(tmp_path / "plain.key", LEGACY)
    write_key_file(tmp_path / "sealed.key", LEGACY, PASSPHRASE.encode(), cost=KDF_COST_MIN)
    passphrase_file = private_file(tmp_path / "pass", PASSPHRASE + "\n")
    assert load_key(tmp_path / "plain.key").seed == LEGACY.seed
    assert load_key(tmp_path / "sealed.key", passphrase_file).seed == LEGACY.seed
    assert capsys.readouterr() == ("", "")


class Terminal:
    """Stands in for standard input being a terminal."""

    def isatty(self) -> bool:
        return True


def test_load_key_asks_at_the_terminal_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write_key_file(tmp_path / "sealed.key", LEGACY, PASSPHRASE.encode(), cost=KDF_COST_MIN)
    prompts: list[str] = []

    def typed(prompt: str) -> str:
        prompts.append(prompt)
        return PASSPHRASE

    monkeypatch.delenv(PASSPHRASE_ENV, raising=False)
    monkeypatch.setattr(sys, "stdin", Terminal())
    monkeypatch.setattr(cli_passphrase.getpass, "getpass", typed)
    assert load_key(tmp_path / "sealed.key").seed == LEGACY.seed
    assert prompts == [f"passphrase for {tmp_path / 'sealed.key'}: "]

    monkeypatch.setenv(PASSPHRASE_ENV, "wrong")  # the environment comes before the prompt
    with pytest.raises(KeyFileError, match="wrong passphrase"):
        load_key(tmp_path / "sealed.key")
    assert len(prompts) == 1


# --- a real terminal -------------------------------------------------------------------------


def _read(fd: int, deadline: float) -> bytes:
    """What the terminal shows next; b"" once the program has exited."""
    ready, _, _ = select.select([fd], [], [], max(0.0, deadline - time.monotonic()))
    if not ready:
        raise AssertionError("gridnet did not answer within 60 s")
    try:
        return os.read(fd, 4096)
    except OSError:  # EIO: the other side of the terminal closed
        return b""


def in_terminal(*args: str, cwd: Path, typed: list[str | bytes]) -> tuple[int, str]:
    """Run ``python -m gridnet ARGS`` on a new pseudo-terminal (its controlling terminal), typing
    each of ``typed`` after the next prompt; (exit code, everything the terminal showed)."""
    env = environment(None)
    pid, fd = pty.fork()
    if pid == 0:  # the child becomes gridnet
        os.chdir(cwd)
        os.execve(sys.executable, [sys.executable, "-m", "gridnet", *args], env)
    shown = b""
    deadline = time.monotonic() + 60
    try:
        for text in typed:
            start = len(shown)
            while not (len(shown) > start and shown.endswith(b": ")):  # every prompt ends in ": "
                chunk = _read(fd, deadline)
                assert chunk, f"gridnet exited before its prompt: {shown!r}"
                shown += chunk
            os.write(fd, (text if isinstance(text, bytes) else text.encode()) + b"\n")
        while chunk := _read(fd, deadline):
            shown += chunk
    except BaseException:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        raise
    finally:
        os.close(fd)
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status), shown.decode(errors="replace")


def test_keys_new_at_a_terminal_asks_twice_without_echo(tmp_path: Path) -> None:
    code, shown = in_terminal("keys", "new", "--out", "k.key", cwd=tmp_path, typed=[PASSPHRASE, PASSPHRASE])
    assert code == 0, shown
    assert "new passphrase for k.key: " in shown and "the same passphrase again: " in shown
    assert PASSPHRASE not in shown, "the passphrase was echoed"
    assert key_file_info(tmp_path / "k.key").address in shown
    assert seed_of(tmp_path / "k.key") not in shown

    code, shown = in_terminal("keys", "new", "--out", "j.key", cwd=tmp_path, typed=[PASSPHRASE, "a typo"])
    assert code == 1
    assert "error: the two passphrases for key file j.key differ" in shown
    assert not (tmp_path / "j.key").exists()


def test_a_passphrase_typed_in_another_encoding_is_one_line(tmp_path: Path) -> None:
    """\xe9t\xe9 ("été" on a Latin-1 terminal) ended in a UnicodeDecodeError traceback."""
    code, shown = in_terminal("keys", "new", "--out", "k.key", cwd=tmp_path, typed=[b"\xe9t\xe9"])
    assert code == 1 and "Traceback" not in shown, shown
    assert "error: the passphrase typed for key file k.key is not text in the terminal's encoding" in shown
    assert not (tmp_path / "k.key").exists()
