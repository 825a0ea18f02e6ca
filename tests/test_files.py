"""``files.read_toml``: every TOML file a person writes is read in one place, and refused in
one line whatever is wrong with it; ``files.replace_file``: what gridnet keeps on disk (a key,
a meter's nonces, an info file, a sweep's records) is replaced whole or not at all."""

from __future__ import annotations

import os
import stat
import threading
from pathlib import Path

import pytest

from gridnet.errors import ConfigError
from gridnet.files import MAX_TOML_DEPTH, read_toml, replace_file


@pytest.mark.parametrize(
    "text",
    [
        "a = " + "[" * 600 + "]" * 600,
        "a = " + "{ b = " * 600 + "1" + " }" * 600,
        ".".join(["a"] * 5_000) + " = 1",
        "a = " + "[" * MAX_TOML_DEPTH + "]" * MAX_TOML_DEPTH,
    ],
    ids=["arrays", "inline-tables", "dotted-keys", "one-too-deep"],
)
def test_a_toml_file_nested_too_deep_is_one_line(tmp_path: Path, text: str) -> None:
    """tomllib recurses into nested arrays and inline tables: 600 brackets were a RecursionError
    traceback. 5,000 dotted keys parse without recursion into tables 5,000 deep, which a sweep
    recursed into (a RecursionError after the file was read)."""
    path = tmp_path / "deep.toml"
    path.write_text(text)
    with pytest.raises(ConfigError) as info:
        read_toml(path, "scenario file")
    assert str(info.value) == (
        f"scenario file {path} nests tables and arrays more than {MAX_TOML_DEPTH} deep; "
        "check its brackets and dotted keys"
    )


def test_a_toml_file_nested_as_deep_as_allowed_is_read(tmp_path: Path) -> None:
    path = tmp_path / "deep.toml"
    depth = MAX_TOML_DEPTH - 1  # (the document is the first level)
    path.write_text("a = " + "[" * depth + "]" * depth)
    value = read_toml(path, "scenario file")["a"]
    for _ in range(depth - 1):
        (value,) = value
    assert value == []


def test_a_file_is_replaced_with_its_mode_less_the_umask(tmp_path: Path) -> None:
    path = tmp_path / "info.json"
    path.write_text("old")
    previous = os.umask(0o077)
    try:
        replace_file(path, b"new\n", 0o644, durable=True)
    finally:
        os.umask(previous)
    assert path.read_bytes() == b"new\n"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    replace_file(path, b"newer\n", 0o600)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600 and path.read_bytes() == b"newer\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["info.json"]


def test_a_failed_replacement_leaves_the_old_file_and_no_temporary(tmp_path: Path) -> None:
    target = tmp_path / "records"
    target.mkdir()
    (target / "kept").write_text("x")
    with pytest.raises(IsADirectoryError):
        replace_file(target, b"data")  # (a rename cannot put a file over a directory)
    assert (target / "kept").read_text() == "x"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["records"]
    with pytest.raises(FileNotFoundError):
        replace_file(tmp_path / "missing" / "file", b"data")


def test_concurrent_writers_never_share_a_temporary(tmp_path: Path) -> None:
    path = tmp_path / "state.json"
    payloads = [bytes([65 + i]) * 65_536 for i in range(4)]
    errors: list[BaseException] = []

    def write(data: bytes) -> None:
        try:
            for _ in range(50):
                replace_file(path, data, 0o600)
        except BaseException as exc:  # (reported below)
            errors.append(exc)

    threads = [threading.Thread(target=write, args=(p,)) for p in payloads]
    for thread in threads:
        thread.start()
    for _ in range(200):
        if path.exists():  # (from the first rename on, always a whole file, never a mixed one)
            assert path.read_bytes() in payloads
    for thread in threads:
        thread.join()
    assert errors == []
    assert path.read_bytes() in payloads
    assert sorted(p.name for p in tmp_path.iterdir()) == ["state.json"]
