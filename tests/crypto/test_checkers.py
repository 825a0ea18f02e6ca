"""Signature checks shared with helper processes (``crypto/checkers.py``): the verdicts are the
one-by-one verdicts whatever happens to the helpers, and the helpers stop with their caller."""

from __future__ import annotations

import os
import resource
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from gridnet.crypto import checkers
from gridnet.crypto.checkers import CHECKERS, CHUNK_MAX, CHUNK_MIN, SHARE_MIN, chunk_size
from gridnet.crypto.keys import (
    CORES_ENV,
    Domain,
    PrivateKey,
    SignatureCheck,
    verification_cores,
    verification_limit,
    verify_many,
    verify_signature,
    verify_stream,
)

KEY = PrivateKey.from_label("checkers")
CEILING_S = 120.0


def checks(n: int, salt: str = "") -> list[SignatureCheck]:
    """``n`` checks; every third signature forged."""
    out: list[SignatureCheck] = []
    for i in range(n):
        msg = f"{salt}reading {i}".encode()
        sig = KEY.sign(Domain.READING, msg)
        if i % 3 == 0:
            sig = bytes([sig[0] ^ 1]) + sig[1:]
        out.append((Domain.READING, KEY.public_key, msg, sig))
    return out


def expected(batch: list[SignatureCheck]) -> list[bool]:
    return [verify_signature(*c) for c in batch]


@pytest.fixture
def two_cores() -> Iterator[None]:
    """Two cores, with the helper up (a batch started it)."""
    with verification_limit(2):
        verify_many(checks(200, "start"))
        wait_until(lambda: CHECKERS.helpers and all(h.came_up() for h in CHECKERS.helpers), "a helper")
        yield


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # (a zombie is gone for our purposes)
    try:
        return Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0] != "Z"
    except OSError:
        return False


def wait_until(condition: object, what: str) -> None:
    deadline = time.monotonic() + CEILING_S
    while not condition():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def test_chunks_are_small_enough_for_every_core_and_big_enough_to_be_worth_a_report() -> None:
    assert chunk_size(40, 2) == 10
    assert chunk_size(10, 2) == CHUNK_MIN
    assert chunk_size(100_000, 2) == CHUNK_MAX
    assert CHECKERS.submit([(b"x", b"k")] * (SHARE_MIN - 1), 2, lambda m, k: True) is None  # too few
    assert CHECKERS.submit([(b"x", b"k")] * 100, 1, lambda m, k: True) is None  # one core: caller


def test_a_shared_batch_has_the_one_by_one_verdicts_in_any_reading_order(two_cores: None) -> None:
    batch = checks(300)
    want = expected(batch)
    assert verify_many(batch) == want
    verdicts = verify_stream(batch)
    order = list(range(300))[::-7] + list(range(300))
    assert [verdicts[i] for i in order] == [want[i] for i in order]


def test_the_helper_checks_chunks_while_the_caller_does_something_else(two_cores: None) -> None:
    batch = checks(400, "helped")
    helped = CHECKERS.helped
    verdicts = verify_stream(batch)
    shared = CHECKERS._batch
    assert shared is not None
    wait_until(lambda: shared.taken() == shared.chunks, "the helper to take every chunk")
    assert verdicts.all() == expected(batch)
    assert CHECKERS.helped - helped == shared.chunks


def test_a_batch_left_unread_is_settled_before_the_next_one_takes_its_memory(two_cores: None) -> None:
    first, second = checks(200, "a"), checks(500, "b")
    early = verify_stream(first)
    assert early[1] is True  # one chunk read, the rest left to the helpers
    assert verify_many(second) == expected(second)
    assert early.all() == expected(first)


def test_verdicts_hold_when_a_helper_is_killed_in_the_middle_of_a_batch(two_cores: None) -> None:
    verify_many(checks(200, "warm"))
    (pid,) = CHECKERS.pids()
    batch = checks(600, "kill")
    verdicts = verify_stream(batch)
    os.kill(pid, signal.SIGKILL)
    assert verdicts.all() == expected(batch)
    again = checks(300, "after")
    assert verify_many(again) == expected(again)
    assert CHECKERS.pids() and CHECKERS.pids() != [pid], "the dead helper was replaced"


def test_threads_checking_at_once_each_get_their_own_verdicts(two_cores: None) -> None:
    batches = [checks(150 + 40 * i, f"t{i}") for i in range(4)]
    results: dict[int, list[bool]] = {}

    def run(i: int) -> None:
        with verification_limit(2):
            results[i] = verify_many(batches[i])

    threads = [threading.Thread(target=run, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(CEILING_S)
    assert results == {i: expected(b) for i, b in enumerate(batches)}


def test_closing_stops_the_helpers_and_the_next_batch_starts_new_ones(two_cores: None) -> None:
    verify_many(checks(200))
    pids = CHECKERS.pids()
    assert pids
    CHECKERS.close()
    assert not any(alive(p) for p in pids)
    batch = checks(200, "again")
    assert verify_many(batch) == expected(batch)


def test_a_forked_child_checks_with_its_own_helpers_and_leaves_the_parents_alone(two_cores: None) -> None:
    verify_many(checks(200))
    parent_helpers = CHECKERS.pids()
    batch = checks(200, "fork")
    want = expected(batch)
    pid = os.fork()
    if pid == 0:  # the child: exit code 0 only if its verdicts are right and it had a helper
        code = 1
        try:
            code = 0 if verify_many(batch) == want and CHECKERS.pids() != parent_helpers else 2
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert all(alive(p) for p in parent_helpers)
    assert verify_many(batch) == want


def test_helpers_stop_when_their_caller_is_killed(tmp_path: Path) -> None:
    script = (
        "import sys, time\n"
        "from gridnet.crypto.checkers import CHECKERS\n"
        "from gridnet.crypto.keys import verification_limit, verify_many\n"
        "from tests.crypto.test_checkers import checks\n"
        "with verification_limit(2):\n"
        "    verify_many(checks(200))\n"
        "print(*CHECKERS.pids(), flush=True)\n"
        "time.sleep(600)\n"
    )
    root = Path(__file__).resolve().parents[2]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(root / "src"), str(root)])}
    caller = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True, env=env)
    try:
        assert caller.stdout is not None
        helpers = [int(p) for p in caller.stdout.readline().split()]
        assert helpers and all(alive(p) for p in helpers)
    finally:
        caller.kill()
        caller.wait()
    wait_until(lambda: not any(alive(p) for p in helpers), "the helpers to stop")


def test_the_environment_can_give_a_process_fewer_cores_for_its_checks(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv(CORES_ENV, "1")
    assert verification_cores() == 1
    with verification_limit(2):
        assert verification_cores() == 2  # (an explicit limit wins)
    for wanted in ("none", "²"):  # ("²" passed str.isdigit, and int() refused it in its own words)
        monkeypatch.setenv(CORES_ENV, wanted)
        with pytest.raises(ValueError, match=CORES_ENV):
            verification_cores()


def test_a_stuck_helper_is_replaced_and_its_chunks_checked_by_the_caller(
    two_cores: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(checkers, "STALL_S", 1.0)
    verify_many(checks(200, "warm"))
    (pid,) = CHECKERS.pids()
    batch = checks(400, "stuck")
    os.kill(pid, signal.SIGSTOP)
    try:
        assert verify_many(batch) == expected(batch)
    finally:
        if alive(pid):
            os.kill(pid, signal.SIGKILL)
    wait_until(lambda: not alive(pid), "the stuck helper to be gone")
    again = checks(300, "after stuck")
    assert verify_many(again) == expected(again)
    assert CHECKERS.pids() and CHECKERS.pids() != [pid]


def test_helpers_serve_a_process_holding_more_than_1024_descriptors(two_cores: None) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < 1400:
        pytest.skip(f"this machine allows {hard} open files")
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, 1400), hard))
    held = [os.open(os.devnull, os.O_RDONLY) for _ in range(1100)]
    try:
        CHECKERS.close()  # the next helpers' sockets get descriptors above 1024
        batch = checks(300, "fds")
        assert verify_many(batch) == expected(batch)
    finally:
        for fd in held:
            os.close(fd)
        CHECKERS.close()
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
