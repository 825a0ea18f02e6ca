"""The kinds of participant a scenario can hold.

Every module of ``gridnet.agents`` that defines ``ROLE`` (a :class:`Role`) is one kind: it
builds that kind's agents from the scenario (and, if it has one, its own scenario table) and
may add a section to the report. The scheduler (``gridnet.sim.neighbourhood``) knows no
role by name: it builds whatever roles exist, in ``order``, and lets every agent act in
every phase. Adding a kind of participant is a new module here (or a :func:`register` call)
plus its scenario table.
"""

from __future__ import annotations

import functools
import importlib
import pkgutil
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from gridnet.agents.base import Agent
    from gridnet.agents.world import World


@dataclass(frozen=True)
class Role:
    name: str
    """The role's name (and its scenario table's, when it has one)."""
    order: int
    """Roles are built, and act within each phase, in increasing order."""
    build: Callable[[World], Sequence[Agent]]
    table: type | None = None
    """A dataclass for the role's own scenario table ``[name]`` (every field with a default);
    None when the role has none or its table is one of the scenario's core sections."""
    report: Callable[[World, Sequence[Agent]], dict[str, Any]] | None = None
    """The role's section of the report (``report["roles"][name]``), if any."""
    check: Callable[[World], None] | None = None
    """Checks what the role's table says of other roles' agents (a ConfigError), once every
    role is built and before the nodes start: a scenario it refuses leaves ``--out`` as it was."""


_EXTRA: dict[str, Role] = {}


def register(role: Role) -> None:
    """Add a role defined outside this package (a plug-in, a test)."""
    _EXTRA[role.name] = role


def unregister(name: str) -> None:
    _EXTRA.pop(name, None)


@functools.cache
def _package_roles() -> tuple[Role, ...]:
    """The roles this package's modules define, found once (each scenario a sweep loads asks:
    listing the package's files every time took a tenth of a 10,000-run sweep's loading)."""
    import gridnet.agents as package

    found = []
    for info in pkgutil.iter_modules(package.__path__):
        module = importlib.import_module(f"{package.__name__}.{info.name}")
        role = getattr(module, "ROLE", None)
        if isinstance(role, Role):
            found.append(role)
    return tuple(found)


def roles() -> list[Role]:
    """Every role: this package's modules that define ``ROLE``, and the registered ones."""
    found = {role.name: role for role in _package_roles()}
    found.update(_EXTRA)
    return sorted(found.values(), key=lambda r: (r.order, r.name))
