"""Matplotlib's configuration directory, set before matplotlib loads (the plots draw with it,
and pandapower imports it on its own import).

Matplotlib keeps a font cache in its configuration directory. Where the default one cannot be
written (a home directory without write permission, a service user's) it makes a temporary one
itself, but says so on stderr, twice, on every run: around a command's one-line error too.
Here that temporary directory is made quietly instead, and removed when the process exits.
"""

from __future__ import annotations

import atexit
import functools
import os
import shutil
import tempfile
from pathlib import Path


@functools.cache
def prepare_matplotlib() -> None:
    """Give matplotlib a writable configuration directory if its default one is not (once per
    process; nothing with ``MPLCONFIGDIR`` set)."""
    if "MPLCONFIGDIR" in os.environ:
        return
    default = Path(os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config") / "matplotlib"
    try:
        default.mkdir(parents=True, exist_ok=True)
        writable = os.access(default, os.W_OK | os.X_OK)
    except (OSError, RuntimeError):  # RuntimeError: no home directory to be found
        writable = False
    if not writable:
        private = tempfile.mkdtemp(prefix="gridnet-matplotlib-")
        atexit.register(shutil.rmtree, private, ignore_errors=True)
        os.environ["MPLCONFIGDIR"] = private
