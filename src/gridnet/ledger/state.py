"""Ledger state: typed tables over one key-value map, and a per-block view with undo.

The state is a map from keys (table prefix || table key) to canonical value bytes.
:class:`StateView` is what the state transition reads and writes: it decodes on
first read, keeps decoded objects, records what it changed, and can roll back to
a checkpoint (so a failing transaction leaves no trace while a block is built).
"""

from __future__ import annotations

import re
from typing import Any, Final, Generic, Protocol, TypeVar

from msgspec.structs import replace

from gridnet.encoding import U63, AddressBytes, Wire, decode_lenient, encode
from gridnet.errors import DecodeError, StateOutOfRange
from gridnet.identity import IdentityProof
from gridnet.units import Address, Height, Units

V = TypeVar("V", bound=Wire)


DECODED_MAX: Final = 1 << 14
"""Decoded values a table keeps for the views that read them, at most (then it starts over)."""
DECODED_MAX_BYTES: Final = 4 << 20
"""... and their encoded bytes, at most (a table of large values starts over sooner)."""


class Table(Generic[V]):
    """One kind of state entry: a key prefix and the value's type.

    A table keeps the objects it decoded, by their encoded bytes, for every view in the
    process: the same account is read by the mempool's trial, the block template and the
    block, on every chain in the process, and decoding was a view's largest cost. Sharing
    them is safe because state values are deeply immutable (frozen structs of tuples,
    bytes and numbers; a test checks every table)."""

    __slots__ = ("decoded", "decoded_bytes", "name", "prefix", "value_type")

    def __init__(self, name: str, prefix: bytes, value_type: type[V]) -> None:
        self.name = name
        self.prefix = prefix
        self.value_type = value_type
        self.decoded: dict[bytes, V] = {}
        self.decoded_bytes = 0

    def decode(self, raw: bytes) -> V:
        """``raw`` decoded as this table's value (one decode per distinct bytes, until
        ``DECODED_MAX`` values or ``DECODED_MAX_BYTES`` of them are held)."""
        obj = self.decoded.get(raw)
        if obj is None:
            obj = decode_lenient(raw, self.value_type)
            if len(self.decoded) >= DECODED_MAX or self.decoded_bytes + len(raw) > DECODED_MAX_BYTES:
                self.decoded.clear()
                self.decoded_bytes = 0
            self.decoded[raw] = obj
            self.decoded_bytes += len(raw)
        return obj

    def key(self, k: bytes) -> bytes:
        return self.prefix + k


_TABLES: dict[bytes, Table[Any]] = {}


def register_table(name: str, prefix: bytes, value_type: type[V]) -> Table[V]:
    """Declare a state table; prefixes are unique across the whole ledger."""
    if prefix in _TABLES:
        raise ValueError(f"state table prefix {prefix!r} already used by {_TABLES[prefix].name}")
    table = Table(name, prefix, value_type)
    _TABLES[prefix] = table
    return table


def table_named(name: str) -> Table[Any] | None:
    """The state table called ``name`` (as registered), if there is one."""
    return next((t for t in _TABLES.values() if t.name == name), None)


def table_of(full_key: bytes) -> Table[Any] | None:
    """The table a full state key (prefix + key) belongs to."""
    return _TABLES.get(full_key[:1])


# --- core tables ------------------------------------------------------------------------


class Account(Wire, frozen=True):
    """An account: spendable coin, replay-protection nonce, coin locked as a bond."""

    balance: U63
    """Spendable coin [base units]."""
    nonce: U63 = 0
    """Number of transactions this account has sent (the next one must carry it)."""
    bonded: U63 = 0
    """Coin locked as a bond [base units]; forfeitable by fraud proofs."""
    unbonding: U63 = 0
    """Coin released from the bond, waiting out the unbonding delay [base units]."""


class Identity(Wire, frozen=True):
    """A registered identity: its proof-of-work stake."""

    proof: IdentityProof
    registered_at: U63
    """Height of the block that registered it."""


class Destroyed(Wire, frozen=True):
    """Coin the rules destroyed [base units]: the part of a forfeited stake not paid to the
    party the fraud wronged, and a disputed tender's price. With what accounts and escrows
    hold, it makes up every coin the chain created (``ledger/supply.py``)."""

    total: U63


class UnbondEntry(Wire, frozen=True):
    address: AddressBytes
    amount: U63
    """Coin returning to the account's balance [base units]."""


class UnbondQueue(Wire, frozen=True):
    """Bonds that return to their accounts' balances at one height."""

    entries: tuple[UnbondEntry, ...]


ACCOUNTS = register_table("accounts", b"A", Account)
IDENTITIES = register_table("identities", b"I", Identity)
UNBONDING = register_table("unbonding", b"U", UnbondQueue)
DESTROYED = register_table("destroyed", b"x", Destroyed)
DESTROYED_KEY: Final = b"total"
"""The one entry of ``DESTROYED`` (written when coin is first destroyed)."""


def height_key(height: Height) -> bytes:
    return height.to_bytes(8, "big")


def _where(exc: Exception, value_type: type[Any]) -> str:
    """``exc``'s reason, with a top-level field named (``$[4]`` is ``minted_wh``)."""
    reason = str(exc).partition(": ")[2] or str(exc)
    fields: tuple[str, ...] = getattr(value_type, "__struct_fields__", ())
    match = re.search(r"at `\$\[(\d+)\]", reason)
    if match and int(match[1]) < len(fields):
        reason = f"{fields[int(match[1])]}: {reason[: match.start()].rstrip(' -')}"
    return reason


# --- the view the state transition works on --------------------------------------------

_MISSING = object()


class StateSource(Protocol):
    """Where a view reads encoded state from (a dict, or pending changes over one)."""

    def get(self, key: bytes, /) -> bytes | None: ...


class StateView:
    """A mutable overlay on a base map of encoded state (which it never modifies)."""

    __slots__ = ("_base", "_dirty", "_journal", "_objects", "_written")

    def __init__(self, base: StateSource) -> None:
        self._base = base
        self._objects: dict[bytes, Any] = {}
        self._dirty: dict[bytes, None] = {}  # insertion-ordered: deterministic undo bytes
        self._journal: list[tuple[bytes, Any, bool]] | None = None
        self._written: dict[bytes, Table[Any]] = {}
        """Entries put since :meth:`check_written` last ran, with their tables."""

    def get(self, table: Table[V], key: bytes) -> V | None:
        fk = table.prefix + key
        obj = self._objects.get(fk, _MISSING)
        if obj is _MISSING:
            raw = self._base.get(fk)
            obj = None if raw is None else table.decode(raw)
            self._objects[fk] = obj
        return obj  # type: ignore[no-any-return]

    def put(self, table: Table[V], key: bytes, value: V | None) -> None:
        """Set (or, with None, delete) an entry."""
        fk = table.prefix + key
        if self._journal is not None:
            self._journal.append((fk, self._objects.get(fk, _MISSING), fk in self._dirty))
        self._objects[fk] = value
        self._dirty[fk] = None
        self._written[fk] = table

    def check_written(self) -> None:
        """Every entry put since the last call must be one its table's type reads back: a
        transaction that would store a number out of range (2^64 - 2 credits summed from two
        readings of 2^63 - 1 Wh) is refused (``StateOutOfRange``), where storing it would
        have made the entry unreadable, or (past 2^64) every block that holds it unencodable."""
        written, self._written = self._written, {}
        objects = self._objects
        for fk, table in written.items():
            obj = objects.get(fk)
            if obj is None:
                continue  # deleted, or rolled back to missing
            try:
                decode_lenient(encode(obj), table.value_type)
            except (OverflowError, DecodeError) as exc:
                raise StateOutOfRange(
                    f"it would store a {table.name} entry out of range ({_where(exc, table.value_type)})"
                ) from None

    def account(self, address: Address) -> Account:
        """The account at ``address`` (an empty one if it never held coin)."""
        acct = self.get(ACCOUNTS, address)
        return acct if acct is not None else Account(balance=0)

    def credit(self, address: Address, amount: Units) -> None:
        acct = self.account(address)
        self.put(
            ACCOUNTS,
            address,
            replace(acct, balance=acct.balance + amount),
        )

    def destroy(self, amount: Units) -> None:
        """Count ``amount`` of coin, already taken from whoever held it, as destroyed."""
        if amount:
            before = self.get(DESTROYED, DESTROYED_KEY)
            self.put(DESTROYED, DESTROYED_KEY, Destroyed((before.total if before else 0) + amount))

    # --- checkpoints (used while building blocks; validation needs none) -----------------

    def checkpoint(self) -> int:
        if self._journal is None:
            self._journal = []
        return len(self._journal)

    def rollback(self, mark: int) -> None:
        journal = self._journal
        assert journal is not None, "rollback without checkpoint"
        while len(journal) > mark:
            fk, old, was_dirty = journal.pop()
            if old is _MISSING:
                self._objects.pop(fk, None)
            else:
                self._objects[fk] = old
            if not was_dirty:
                self._dirty.pop(fk, None)

    def release(self) -> None:
        """Forget checkpoints (keeps all changes)."""
        self._journal = None

    def undo_bytes(self, mark: int) -> int:
        """Encoded size of what the undo log holds from checkpoint ``mark`` on [bytes]: each
        entry's key and the value it restores (none for an entry that was missing or deleted)."""
        journal = self._journal
        assert journal is not None, "undo_bytes without checkpoint"
        size = 0
        for i in range(mark, len(journal)):
            fk, old, _ = journal[i]
            size += len(fk) if old is _MISSING or old is None else len(fk) + len(encode(old))
        return size

    # --- results ---------------------------------------------------------------------------

    def changes(self) -> dict[bytes, bytes | None]:
        """Encoded changes relative to the base: key -> new bytes (None = deleted).

        Entries written back to their base value are left out.
        """
        out: dict[bytes, bytes | None] = {}
        base = self._base
        for fk in self._dirty:
            obj = self._objects[fk]
            new = None if obj is None else encode(obj)
            if base.get(fk) != new:
                out[fk] = new
        return out
