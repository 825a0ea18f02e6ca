"""Reading the files a person writes (scenarios, genesis, settings, sweeps): one-line errors
that name the file and what is wrong with it, whatever is wrong with it; and writing the files
gridnet keeps (a file replaced whole or not at all)."""

from __future__ import annotations

import contextlib
import os
import secrets
import stat
import tomllib
from pathlib import Path
from typing import Any, Final

from gridnet.errors import ConfigError, GridnetError

MAX_TOML_BYTES: Final = 16 << 20
"""A TOML file a person writes is at most this large (a scenario, a genesis: a few kB)."""
MAX_TOML_DEPTH: Final = 32
"""Tables and arrays nest at most this deep in a TOML file a person writes, the document
itself the first (gridnet's own files nest 3 deep: ``[[line_owner]]`` in a scenario, a sweep's
lists of ranges, a policy's ``[[buy]]``)."""


MAX_PATH_BYTES: Final = 4095
"""The longest path a file function takes (PATH_MAX, less its NUL)."""
MAX_NAME_BYTES: Final = 255
"""The longest name of a file or directory in a path (NAME_MAX)."""


def path_problem(path: Path) -> str | None:
    """Why no file can have ``path`` (None: one may): a NUL character (Python's file functions
    raise ValueError on it, a traceback), or longer than a file system takes (each use failed
    late, "File name too long")."""
    if "\0" in str(path):
        return "it holds a NUL character"
    size = len(os.fsencode(path))
    longest = max((len(os.fsencode(part)) for part in path.parts), default=0)
    if size > MAX_PATH_BYTES:
        return f"it is {size:,} bytes long (at most {MAX_PATH_BYTES:,})"
    if longest > MAX_NAME_BYTES:
        return f"a name in it is {longest:,} bytes long (at most {MAX_NAME_BYTES})"
    return None


def check_regular_file(
    path: Path, what: str, most_bytes: int, error: type[GridnetError] = ConfigError
) -> None:
    """``error`` naming ``path`` unless it is a regular file of at most ``most_bytes`` (a FIFO
    or a device, /dev/zero say, would be read for ever; a directory is no file)."""
    try:
        info = os.stat(path)
    except FileNotFoundError:
        raise error(f"{what} {path} not found") from None
    except OSError as exc:
        raise error(f"cannot read {what} {path}: {exc.strerror}") from None
    check_regular_info(info, path, what, most_bytes, error)


def check_regular_info(
    info: os.stat_result, path: Path, what: str, most_bytes: int, error: type[GridnetError] = ConfigError
) -> None:
    """:func:`check_regular_file` on what ``stat`` (or ``fstat``) said of ``path``."""
    if stat.S_ISDIR(info.st_mode):
        raise error(f"{what} {path} is a directory; give a file")
    if not stat.S_ISREG(info.st_mode):
        raise error(f"{what} {path} is not a regular file (a pipe or a device?); give a file")
    if info.st_size > most_bytes:
        raise error(
            f"{what} {path} is {info.st_size:,} bytes: at most {most_bytes:,} are read; give another file"
        )


def open_regular_file(
    path: Path, what: str, most_bytes: int, error: type[GridnetError] = ConfigError
) -> tuple[int, os.stat_result]:
    """A read-only descriptor of ``path`` and what ``fstat`` says of it, when it is a regular file
    of at most ``most_bytes`` (else ``error`` naming it, the descriptor closed). It is opened
    without blocking (a FIFO with no writer would hang ``open`` for ever) and checked on that
    descriptor, so the file checked is the file read; the descriptor blocks again for reading."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC)
    except FileNotFoundError:
        raise error(f"{what} {path} not found") from None
    except OSError as exc:
        raise error(f"cannot read {what} {path}: {exc.strerror}") from None
    try:
        info = os.fstat(fd)
        check_regular_info(info, path, what, most_bytes, error)
        os.set_blocking(fd, True)
    except OSError as exc:
        os.close(fd)
        raise error(f"cannot read {what} {path}: {exc.strerror}") from None
    except BaseException:
        os.close(fd)
        raise
    return fd, info


def read_private(path: Path, what: str, most_bytes: int, error: type[GridnetError] = ConfigError) -> bytes:
    """The bytes of a secret file (a key, a passphrase, an API token): a regular file of at most
    ``most_bytes`` on which users other than its owner have no permission, checked on the
    descriptor read (``open_regular_file``); else ``error`` in one line naming ``what``."""
    return read_capped(path, what, most_bytes, error, private=True)


def read_capped(
    path: Path,
    what: str,
    most_bytes: int,
    error: type[GridnetError] = ConfigError,
    *,
    private: bool = False,
    hint: str = "",
) -> bytes:
    """The bytes of a regular file of at most ``most_bytes`` (opened without blocking: a FIFO
    is refused, not waited on; with ``private``, one no other user has permission on, checked
    on the descriptor read); else ``error`` in one line naming ``what`` (``hint``, e.g. "; run
    the scenario again", ends the line of a file too large)."""
    fd, info = open_regular_file(path, what, most_bytes, error)
    try:
        mode = info.st_mode
        if private and mode & (stat.S_IRWXG | stat.S_IRWXO):
            raise error(
                f"{what} {path} is accessible by other users (mode {stat.S_IMODE(mode):o}); "
                f"run 'chmod 600 {path}'"
            )
        data = read_bounded(fd, most_bytes)
    except OSError as exc:
        raise error(f"cannot read {what} {path}: {exc.strerror}") from None
    finally:
        os.close(fd)
    if len(data) > most_bytes:
        raise error(f"{what} {path} is larger than {most_bytes:,} bytes{hint}")
    return data


def read_bounded(fd: int, most_bytes: int) -> bytes:
    """At most ``most_bytes`` + 1 bytes from ``fd`` (one more than allowed: the caller can tell a
    file that grew past its bound)."""
    chunks: list[bytes] = []
    left = most_bytes + 1
    while left > 0:
        chunk = os.read(fd, min(left, 1 << 16))
        if not chunk:
            break
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)


def read_toml(path: Path, what: str, error: type[GridnetError] = ConfigError) -> dict[str, Any]:
    """The TOML document in ``path`` (``what``: "scenario file", ...). A missing or unreadable
    file, one that is not a regular file of at most ``MAX_TOML_BYTES``, not UTF-8 text or not
    valid TOML is ``error`` naming it. A byte-order mark (as some editors write) is not taken
    for a statement."""
    check_regular_file(path, what, MAX_TOML_BYTES, error)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise error(f"{what} {path} not found") from None
    except UnicodeDecodeError:
        raise error(f"{what} {path} is not UTF-8 text; save it as UTF-8") from None
    except OSError as exc:
        raise error(f"cannot read {what} {path}: {exc.strerror}") from None
    return parse_toml(text, f"{what} {path}", error)


def parse_toml(text: str, where: str, error: type[GridnetError] = ConfigError) -> dict[str, Any]:
    """The TOML document ``text`` (every TOML gridnet reads is parsed here); ``error`` naming
    ``where`` when it is not valid TOML or nests deeper than ``MAX_TOML_DEPTH``. ``tomllib``
    recurses once or more per nested array or inline table: 600 brackets (1.2 kB) were a
    RecursionError traceback; 5,000 dotted keys parse (without recursion) into tables that deep,
    which what reads the document next would recurse into."""
    try:
        document = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise error(f"{where} is not valid TOML: {exc}") from None
    except RecursionError:
        document = None
    if document is None or _too_deep(document):
        raise error(
            f"{where} nests tables and arrays more than {MAX_TOML_DEPTH} deep; "
            "check its brackets and dotted keys"
        )
    return document


def _too_deep(document: dict[str, Any]) -> bool:
    """Whether ``document``'s tables and arrays nest deeper than ``MAX_TOML_DEPTH`` (walked
    without recursion)."""
    stack: list[tuple[Any, int]] = [(document, 1)]
    while stack:
        value, depth = stack.pop()
        if depth > MAX_TOML_DEPTH:
            return True
        inner = value.values() if isinstance(value, dict) else value
        stack.extend((v, depth + 1) for v in inner if isinstance(v, dict | list))
    return False


SHARED_MODE: Final = 0o755
"""A data directory is made with at most these permissions (the umask may take more away): a
chain, its settings and its log are read by other users at most, never written by them (under
``umask 000`` a plain ``mkdir`` would let anyone on the machine change them)."""
SHARED_FILE_MODE: Final = 0o644


def make_dirs(path: Path) -> list[Path]:
    """Create directory ``path`` and its missing parents with at most ``SHARED_MODE`` (whatever
    the umask: the standard library gives the parents 0777 less the umask); the directories
    made, the deepest last."""
    missing: list[Path] = []
    here = path
    while not os.path.lexists(here) and here != here.parent:
        missing.append(here)
        here = here.parent
    for folder in reversed(missing):
        folder.mkdir(mode=SHARED_MODE, exist_ok=True)
    return missing[::-1]


def open_file(path: Path, flags: int, mode: int = SHARED_FILE_MODE) -> int:
    """A descriptor of ``path`` opened with ``flags`` and left with at most ``mode``: a new file
    is created with it (less the umask), an existing one of this user loses any permission
    beyond it (one of another user, which only its owner may change, is left as it is)."""
    fd = os.open(path, flags | os.O_CREAT | os.O_CLOEXEC, mode)
    try:
        info = os.fstat(fd)
        current = stat.S_IMODE(info.st_mode)
        if current & ~mode and info.st_uid == os.geteuid():
            os.fchmod(fd, current & mode)
    except BaseException:
        os.close(fd)
        raise
    return fd


def write_text_file(path: Path, text: str, mode: int = SHARED_FILE_MODE) -> None:
    """Write ``text`` (UTF-8) to ``path``, left with at most ``mode`` (:func:`open_file`)."""
    with open(open_file(path, os.O_WRONLY | os.O_TRUNC, mode), "w", encoding="utf-8") as fh:
        fh.write(text)


def replace_file(path: Path, data: bytes, mode: int = SHARED_FILE_MODE, *, durable: bool = False) -> None:
    """Replace ``path`` with ``data`` at once: written to a new temporary file beside it (made
    with ``mode`` less the umask, under a name no other writer uses), then renamed over it, so
    a reader finds the whole old file or the whole new one, never a part, and two writers never
    write into one temporary. ``durable``: the data and the rename are on the disk before this
    returns (for what must survive a crash: a key, a meter's nonces). ``OSError`` as it came,
    the temporary removed."""
    for _attempt in range(8):
        temporary = path.with_name(f".{path.name}.{secrets.token_hex(6)}.tmp")
        try:
            fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, mode)
            break
        except FileExistsError:
            continue
    else:
        raise FileExistsError(f"no free temporary name beside {path}")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            if durable:
                fh.flush()
                os.fsync(fh.fileno())
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    if durable:
        sync_directory(path.parent)


def sync_directory(directory: Path) -> None:
    """Flush ``directory``'s entries to the disk, so that a file created or renamed in it stays
    after a crash (best effort: some file systems cannot sync a directory)."""
    with contextlib.suppress(OSError):
        fd = os.open(directory, os.O_RDONLY | os.O_CLOEXEC)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def check_not_writable_by_others(folder: Path, what: str, error: type[GridnetError]) -> None:
    """``error`` naming ``folder`` when users other than its owner and group may write in it, or
    in a directory above it without the sticky bit (there they may rename it and put their own
    in its place): they could replace what a node trusts there (its chain, settings or key)."""
    try:
        mode = stat.S_IMODE(os.stat(folder).st_mode)
        resolved = folder.resolve()
    except OSError:
        return  # (missing or unreadable: the caller's own check names it)
    if mode & stat.S_IWOTH:
        raise error(
            f"{what} {folder} can be written by every user of this machine (mode {mode:o}), who could "
            f"change the chain, settings or key in it; run 'chmod o-w {folder}'"
        )
    for above in resolved.parents:
        try:
            above_mode = stat.S_IMODE(os.stat(above).st_mode)
        except OSError:
            return
        if above_mode & stat.S_IWOTH and not above_mode & stat.S_ISVTX:
            raise error(
                f"{what} {folder} is in {above}, which every user of this machine may write in (mode "
                f"{above_mode:o}, no sticky bit): they could put another directory in its place; run "
                f"'chmod o-w {above}', or choose a --data-dir elsewhere"
            )
