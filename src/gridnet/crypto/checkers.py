"""Signature checks spread over the machine's cores: helper processes beside the caller.

libsodium releases Python's lock while it checks a signature, but a thread must take the lock
back after every check, and it waits for it as long as the caller is running Python (applying
a block, encoding, hashing): threads checking a block's signatures stall for as long as the
block is applied. Helper processes do not share the lock. A batch of checks is written once
into memory shared with them (a ``memfd``), cut into chunks; every helper takes chunks from its
own starting point onwards, the caller takes the chunk whose verdicts it needs next (or, while
it waits, chunks from the back), each marking a chunk taken in the shared memory before it
checks it. Two may take the same chunk in a race: both find the same verdicts, so that costs
time, never a wrong answer. A helper reports each chunk it finished, and that it is done with a
batch, over its socket; the caller reads a helper's verdicts only after that report.

A batch stays in the shared memory until the next one: ``Checkers.submit`` first settles the
previous batch (what is left of it is checked, its verdicts kept in the caller's memory, and the
helpers are done with it). Only closing cancels a batch (every chunk marked taken).

Helpers start on the first batch big enough to share and are given batches once they said
they are up (until then the caller checks alone: it never waits for a helper to start). They
read their work from a socket and stop when it closes: when this process exits or dies, or
forks (a child starts its own). A helper that dies is replaced on the next batch, and
its unfinished chunks are checked by the caller.
"""

from __future__ import annotations

import atexit
import mmap
import os
import select
import socket
import struct
import subprocess
import sys
import threading
from collections.abc import Callable, Sequence
from typing import Final

CheckOne = Callable[[bytes, bytes], bool]
"""``check(signed_message, public_key)``: does the signature at the front of the signed
message verify for the key?"""

CHUNK_MIN: Final = 8
CHUNK_MAX: Final = 32
"""Checks per chunk: enough that a chunk's report costs little beside it (a check is about
70 us), few enough that a block of a few dozen transactions still has a chunk per core."""

SHARE_MIN: Final = 32
"""Fewest checks shared with the helpers: a batch's fixed costs (writing it, waking a helper,
its reports: about 0.4 ms here) are worth it only against several chunks of work. Measured on
2 cores (``verify_many`` alone and on both, the median of 15 runs): 16 checks 1.13 times as
fast on both, 32 checks 1.48, 64 checks 1.56, 128 checks 1.72. A batch of readings from one
feeder's meters (a few dozen) is worth sharing."""

STALL_S: Final = 30.0
"""A helper that reports nothing for this long while the caller waits is stopped and replaced."""

_JOB = struct.Struct("<IIIIQQQ")
"""Caller -> helper: batch id, checks, chunk size, helper's first chunk, then the positions in
the shared memory of the chunk flags, the verdicts and the offsets table."""
_DONE = struct.Struct("<II")
"""Helper -> caller: batch id, chunk finished (``_IDLE``: done with the batch)."""
_IDLE: Final = 0xFFFFFFFF
_KEY = 32


def chunk_size(checks: int, cores: int) -> int:
    """Checks per chunk for a batch of ``checks`` on ``cores`` cores (at least two chunks per
    core where the batch allows, within ``CHUNK_MIN`` .. ``CHUNK_MAX``)."""
    return max(CHUNK_MIN, min(CHUNK_MAX, -(-checks // (2 * cores))))


class _Region:
    """Memory shared with the helpers (a ``memfd``), grown when a batch needs more."""

    def __init__(self) -> None:
        self.fd = -1
        self.size = 0
        self.map: mmap.mmap | None = None
        self.version = 0

    def ensure(self, size: int) -> None:
        if size <= self.size:
            return
        size = max(size, 2 * self.size, 1 << 20)
        self.close()
        self.fd = os.memfd_create("gridnet-checks", os.MFD_CLOEXEC)
        os.ftruncate(self.fd, size)
        self.map = mmap.mmap(self.fd, size)
        self.size = size
        self.version += 1

    def close(self) -> None:
        if self.map is not None:
            self.map.close()
            self.map = None
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1
        self.size = 0


class _Helper:
    __slots__ = ("pid", "proc", "ready", "region_version", "sock")

    def __init__(self, proc: subprocess.Popen[bytes], sock: socket.socket) -> None:
        self.proc = proc
        self.pid = proc.pid
        self.sock = sock
        self.region_version = 0
        self.ready = False
        """It said it is up: only then is it given batches (the caller does not wait for a
        helper that is still starting)."""

    def came_up(self) -> bool | None:
        """Whether it is up, without waiting (None: it died starting)."""
        if not self.ready:
            poll = select.poll()
            poll.register(self.sock.fileno(), select.POLLIN)
            if poll.poll(0):
                try:
                    report = self.sock.recv(_DONE.size)
                except OSError:
                    report = b""
                if report != _DONE.pack(0, _IDLE):
                    return None
                self.ready = True
        return self.ready


class Batch:
    """One batch of checks in the shared memory: ``chunk(k)`` gives chunk ``k``'s verdicts,
    checking chunks in the caller while a helper's are not ready."""

    def __init__(
        self, owner: Checkers, signed: Sequence[tuple[bytes, bytes]], size: int, ident: int, check: CheckOne
    ) -> None:
        self._owner = owner
        self.ident = ident
        self.signed = signed
        self.size = size
        self.chunks = -(-len(signed) // size)
        self.verdicts: list[list[bool] | None] = [None] * self.chunks
        self._check = check
        self._busy: set[_Helper] = set()
        """Helpers that have not yet said they are done with this batch."""
        self._next_back = self.chunks - 1
        self.cancelled = False
        self.flags = 0
        self.results = 0

    def _region(self) -> mmap.mmap:
        m = self._owner.region.map
        assert m is not None
        return m

    def taken(self) -> int:
        """Chunks someone has taken so far."""
        m = self._region()
        return sum(m[self.flags : self.flags + self.chunks])

    def _take(self, k: int) -> bool:
        """Mark chunk ``k`` taken; False when someone already had."""
        m = self._region()
        if m[self.flags + k]:
            return False
        m[self.flags + k] = 1
        return True

    def _check_chunk(self, k: int) -> None:
        check = self._check
        lo = k * self.size
        self.verdicts[k] = [check(msg, key) for msg, key in self.signed[lo : lo + self.size]]

    def chunk(self, k: int) -> list[bool]:
        got = self.verdicts[k]
        if got is not None:
            return got
        with self._owner.lock:  # (another thread may be settling this batch)
            return self._chunk(k)

    def _chunk(self, k: int) -> list[bool]:
        while True:
            got = self.verdicts[k]
            if got is not None:
                return got
            if not self._busy:
                self._check_chunk(k)  # no helper left on it (it died): the caller does it
            elif self._take(k):
                self._check_chunk(k)
            elif not self._take_from_back():
                self._read()

    def _take_from_back(self) -> bool:
        while self._next_back >= 0:
            k = self._next_back
            self._next_back -= 1
            if self.verdicts[k] is None and self._take(k):
                self._check_chunk(k)
                return True
        return False

    def settle(self) -> None:
        """Every verdict into the caller's memory; the helpers done with the batch."""
        if not self.cancelled:
            for k in range(self.chunks):
                self._chunk(k)
        while self._busy:
            self._read()

    def cancel(self) -> None:
        """Stop the helpers on this batch: its verdicts are no longer wanted (one still read
        is checked by the caller)."""
        with self._owner.lock:
            self.cancelled = True
            if self._busy:
                m = self._region()
                m[self.flags : self.flags + self.chunks] = b"\x01" * self.chunks
            while self._busy:
                self._read()

    def _read(self) -> None:
        """Wait for a report from a helper still on this batch."""
        by_fd = {h.sock.fileno(): h for h in self._busy}
        poll = select.poll()  # (not select(): a node may hold more than 1,024 descriptors)
        for fd in by_fd:
            poll.register(fd, select.POLLIN)
        ready = poll.poll(STALL_S * 1000)
        if not ready:  # stuck (stopped, or starved for a long time): its chunks are the caller's
            for helper in list(self._busy):
                self._owner.lost(helper)
            self._busy.clear()
            return
        for fd, _event in ready:
            helper = by_fd[fd]
            try:
                report = helper.sock.recv(_DONE.size)
            except OSError:
                report = b""
            if len(report) != _DONE.size:
                self._owner.lost(helper)
                self._busy.discard(helper)
                continue
            ident, k = _DONE.unpack(report)
            if ident != self.ident:
                continue
            if k == _IDLE:
                self._busy.discard(helper)
            elif self.verdicts[k] is None:
                self._owner.helped += 1
                lo = k * self.size
                n = min(self.size, len(self.signed) - lo)
                raw = self._region()[self.results + lo : self.results + lo + n]
                self.verdicts[k] = [b == 1 for b in raw]


class Checkers:
    """The helper processes of this process, and the batch they are on."""

    def __init__(self) -> None:
        self.lock = threading.RLock()
        self.region = _Region()
        self.helpers: list[_Helper] = []
        self._batch: Batch | None = None
        """The batch in the shared memory (settled before the next is written)."""
        self._ident = 0
        self.helped = 0
        """Chunks whose verdicts came from a helper (since this process started)."""

    def submit(self, signed: Sequence[tuple[bytes, bytes]], cores: int, check: CheckOne) -> Batch | None:
        """Share ``signed`` (signed message, public key) with ``cores - 1`` helpers; None when
        the batch is too small to share (the caller checks it alone)."""
        size = chunk_size(len(signed), cores)
        if cores < 2 or len(signed) < max(SHARE_MIN, 2 * size):
            return None
        with self.lock:
            if self._batch is not None:
                self._batch.settle()
                self._batch = None
            self._start(cores - 1)
            self._ident = self._ident % 0x7FFFFFFF + 1  # (0 is a helper's word that it is up)
            batch = Batch(self, signed, size, self._ident, check)
            self._write(batch)
            self._batch = batch
            return batch

    def _write(self, batch: Batch) -> None:
        n = len(batch.signed)
        flags = 0
        results = flags + batch.chunks
        table = results + n
        data = table + 8 * (n + 1)
        need = data + sum(_KEY + len(msg) for msg, _key in batch.signed)
        self.region.ensure(need)
        m = self.region.map
        assert m is not None
        m[flags:results] = bytes(batch.chunks)
        offsets = [data]
        parts = []
        for msg, key in batch.signed:
            offsets.append(offsets[-1] + _KEY + len(msg))
            parts.append(key)
            parts.append(msg)
        m[data:need] = b"".join(parts)
        m[table:data] = struct.pack(f"<{n + 1}Q", *offsets)
        batch.flags, batch.results = flags, results
        up = []
        for helper in list(self.helpers):
            state = helper.came_up()
            if state is None:
                self.lost(helper)
            elif state:
                up.append(helper)
        for i, helper in enumerate(up):
            first = i * batch.chunks // len(up)
            job = _JOB.pack(batch.ident, n, batch.size, first, flags, results, table)
            try:
                if helper.region_version != self.region.version:
                    socket.send_fds(helper.sock, [job], [self.region.fd])
                    helper.region_version = self.region.version
                else:
                    helper.sock.send(job)
            except OSError:
                self.lost(helper)
                continue
            batch._busy.add(helper)

    def _start(self, count: int) -> None:
        for helper in list(self.helpers):
            if helper.proc.poll() is not None:
                self.lost(helper)  # (died between batches: its socket closed, it is replaced)
        while len(self.helpers) < count:
            ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
            try:
                proc = subprocess.Popen(
                    [sys.executable, "-m", "gridnet.crypto.checkers", str(theirs.fileno())],
                    pass_fds=(theirs.fileno(),),
                    stdin=subprocess.DEVNULL,
                    start_new_session=True,  # a terminal's Ctrl-C is for the caller
                )
            except OSError:
                ours.close()
                return  # (no helpers: the caller checks alone)
            finally:
                theirs.close()
            self.helpers.append(_Helper(proc, ours))

    def lost(self, helper: _Helper) -> None:
        """A helper stopped answering: forget it (it is replaced on the next batch)."""
        if helper in self.helpers:
            self.helpers.remove(helper)
        helper.sock.close()
        if helper.proc.poll() is None:
            helper.proc.kill()
        helper.proc.wait()

    def pids(self) -> list[int]:
        """The helper processes' ids (for CPU accounting)."""
        return [h.pid for h in self.helpers if h.proc.poll() is None]

    def close(self) -> None:
        """Stop the helpers and free the memory."""
        with self.lock:
            if self._batch is not None:
                self._batch.cancel()
                self._batch = None
            for helper in self.helpers:  # (none is on a batch now: each may just go)
                helper.sock.close()
                helper.proc.kill()
                helper.proc.wait()
            self.helpers = []
            self.region.close()

    def forget(self) -> None:
        """In a forked child: the parent's helpers are not ours (do not touch them)."""
        for helper in self.helpers:
            helper.sock.close()
        self.helpers = []
        self._batch = None
        self.region.close()
        self.lock = threading.RLock()


CHECKERS = Checkers()
atexit.register(CHECKERS.close)
os.register_at_fork(after_in_child=CHECKERS.forget)


# --- the helper process -------------------------------------------------------------------


def serve(sock: socket.socket, check: CheckOne) -> None:
    """A helper's loop: check the chunks of each batch it is given until its socket closes."""
    region: mmap.mmap | None = None
    try:
        sock.send(_DONE.pack(0, _IDLE))  # up (batch ids start at 1)
    except OSError:
        return  # (the caller is gone)
    while True:
        try:
            job, fds, _flags, _addr = socket.recv_fds(sock, _JOB.size, 1)
        except OSError:
            return
        if not job:
            return
        if fds:
            if region is not None:
                region.close()
            region = mmap.mmap(fds[0], os.fstat(fds[0]).st_size)
            os.close(fds[0])
        assert region is not None and len(job) == _JOB.size
        ident, n, size, first, flags, results, table = _JOB.unpack(job)
        chunks = -(-n // size)
        for step in range(chunks):
            k = (first + step) % chunks
            if region[flags + k]:
                continue
            region[flags + k] = 1
            lo, hi = k * size, min(n, (k + 1) * size)
            offsets = struct.unpack_from(f"<{hi - lo + 1}Q", region, table + 8 * lo)
            verdicts = bytearray(hi - lo)
            for j in range(hi - lo):
                start, end = offsets[j], offsets[j + 1]
                if check(region[start + _KEY : end], region[start : start + _KEY]):
                    verdicts[j] = 1
            region[results + lo : results + hi] = bytes(verdicts)
            try:
                sock.send(_DONE.pack(ident, k))
            except OSError:
                return
        try:
            sock.send(_DONE.pack(ident, _IDLE))
        except OSError:
            return


if __name__ == "__main__":
    from gridnet.crypto.keys import check_signed

    serve(socket.socket(fileno=int(sys.argv[1])), check_signed)
