"""DSO commands a node holds for the devices of its area to read (``POST /commands``,
``GET /commands/{area}``): the way a command reaches a home's device where no relays carry it.

A command is kept only when the chain vouches for it (signed by the issuer it names, a
registered DSO authority, for this chain: ``check_dso_command``); each area keeps its latest
``MAX_PER_AREA``, and the board its ``MAX_AREAS`` most recently used areas. Every command
gets a sequence number (growing from the node's start time, so that a restart never repeats
one), and a device reads only what is new since its last read.
"""

from __future__ import annotations

import time
from collections import OrderedDict, deque

from gridnet.crypto.hashing import hash32
from gridnet.encoding import encode
from gridnet.grid.commands import SignedCommand
from gridnet.ledger.state import StateView
from gridnet.ledger.txs.grid import check_dso_command
from gridnet.units import Hash32

MAX_PER_AREA = 1024
MAX_AREAS = 64
MAX_PAGE = 256
"""Commands one read returns at most."""


class CommandBoard:
    def __init__(self) -> None:
        self._areas: OrderedDict[str, deque[tuple[int, Hash32, SignedCommand]]] = OrderedDict()
        self._seq = time.time_ns() // 1_000_000
        """Starts at the boot time [ms]: after a restart, numbers stay above any a device read."""

    def post(self, signed: SignedCommand, view: StateView, chain_id: Hash32) -> tuple[int, bool]:
        """Keep ``signed`` if the chain ``chain_id`` (whose head ``view`` is) vouches for it
        (raises the rule it breaks); (its sequence number, whether it was already held)."""
        check_dso_command(view, signed, chain_id)
        area = signed.command.area
        digest = hash32(encode(signed))
        held = self._areas.get(area)
        if held is not None:
            for seq, d, _ in held:
                if d == digest:
                    return seq, True
        if held is None:
            held = self._areas[area] = deque(maxlen=MAX_PER_AREA)
            while len(self._areas) > MAX_AREAS:
                self._areas.popitem(last=False)
        self._areas.move_to_end(area)
        self._seq += 1
        held.append((self._seq, digest, signed))
        return self._seq, False

    def since(self, area: str, after: int) -> tuple[list[tuple[int, SignedCommand]], int]:
        """Commands of ``area`` with a sequence number above ``after`` (at most MAX_PAGE), and
        the number to read after next time."""
        newer: list[tuple[int, SignedCommand]] = []
        for seq, _, c in reversed(self._areas.get(area, ())):  # (numbers grow: the newest last)
            if seq <= after:
                break
            newer.append((seq, c))
        out = newer[::-1][:MAX_PAGE]
        return out, out[-1][0] if out else after
