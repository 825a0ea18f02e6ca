"""``files.replace_file``: what gridnet keeps on disk (a key, a meter's nonces, an info file, a
sweep's records) is replaced whole or not at all."""

from __future__ import annotations

import os
import stat
import threading
from pathlib import Path

import pytest

from gridnet.files import replace_file


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
