"""Counts of the cryptographic work this process did: signatures made and checked (and
checks a signature cache answered), sealed boxes made and opened, proof-of-work hashes.

``gridnet bench sim`` reads them around a run and prices each kind at its unit cost measured
in the same process: the run's cryptographic floor (``bench/sim.py``). Counting is one
integer increment per operation; nothing else reads them.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields


@dataclass(slots=True)
class CryptoOps:
    signs: int = 0
    """Ed25519 signatures made."""
    verifies: int = 0
    """Ed25519 signatures checked by libsodium."""
    verifies_cached: int = 0
    """Checks a holder's signature cache answered (the same signature it verified before)."""
    seals: int = 0
    """Sealed boxes made."""
    opens: int = 0
    """Sealed boxes opened (or tried)."""
    pow_hashes: int = 0
    """Block-header hashes tried against a proof-of-work target (mining and checking)."""

    def since(self, before: CryptoOps) -> CryptoOps:
        """The operations counted after ``before`` (a ``snapshot``) was taken."""
        return CryptoOps(*(getattr(self, f.name) - getattr(before, f.name) for f in fields(self)))

    def add(self, other: CryptoOps) -> None:
        """Add ``other``'s counts (work another process did for this run)."""
        for f in fields(self):
            setattr(self, f.name, getattr(self, f.name) + getattr(other, f.name))

    def as_dict(self) -> dict[str, int]:
        return asdict(self)


OPS = CryptoOps()
"""This process's counts (never reset: take a ``snapshot`` before and subtract)."""


def snapshot() -> CryptoOps:
    return CryptoOps(*(getattr(OPS, f.name) for f in fields(OPS)))
