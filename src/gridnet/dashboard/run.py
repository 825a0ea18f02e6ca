"""One run's results, as the dashboard reads them: its report, its time series and its chain
(opened read-only: the explorer reads blocks, transactions and state records from it)."""

from __future__ import annotations

import json
import os
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

import pyarrow as pa
import pyarrow.parquet as pq

from gridnet.crypto.address import address_from_public_key, address_to_text
from gridnet.errors import ConfigError
from gridnet.files import open_regular_file, read_bounded
from gridnet.ledger.blocks import Block
from gridnet.ledger.chain import Chain
from gridnet.ledger.transactions import Transaction, tx_id
from gridnet.ledger.txs.contract import SettleContract
from gridnet.units import Hash32


def when(ms: int) -> str:
    """A timestamp [ms] as UTC ``YYYY-MM-DD HH:MM:SS``."""
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%d %H:%M:%S")


MAX_REPORT_BYTES: Final = 8 << 20
"""A run's report.json is read when it is at most this large (8 MiB). The largest a scenario
can make is about 1.5 MB: 1,000 homes (``MAX_HOMES``) at 0.73 kB each in ``homes`` and 2,976
intervals (``MAX_INTERVALS``, 31 days) at 0.24 kB each in ``clearing_price``, beside 17 kB
that do not grow (measured on runs of 3, 40 and 200 homes and of 4 and 40 intervals). The
rest is room for what grows with a run's troubles (``transactions.refused_by``: a count per
rule and participant) and a devnet's nodes; a larger file is no report gridnet wrote, and
parsing it would take ten times its size in memory."""


def read_report(path: Path) -> Any:
    """The JSON in a run's ``report.json`` at ``path``: a regular file of at most
    ``MAX_REPORT_BYTES`` (opened without blocking: a FIFO is refused, not waited on), else a
    ConfigError in one line naming it."""
    fd, _ = open_regular_file(path, "the run's report", MAX_REPORT_BYTES)
    try:
        data = read_bounded(fd, MAX_REPORT_BYTES)
    except OSError as exc:
        raise ConfigError(f"cannot read the run's report {path}: {exc.strerror}") from None
    finally:
        os.close(fd)
    if len(data) > MAX_REPORT_BYTES:
        raise ConfigError(
            f"the run's report {path} is larger than {MAX_REPORT_BYTES:,} bytes; run the scenario again"
        )
    try:
        return json.loads(data.decode())
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:  # (ValueError: a 5,000-digit number too)
        reason = " ".join(str(exc).split())[:200]
        raise ConfigError(
            f"{path} is not a run's report (not JSON: {reason}); run the scenario again"
        ) from None


@dataclass
class Located:
    tx: Transaction
    height: int
    position: int


@dataclass
class RunResults:
    out: Path
    report: dict[str, Any]
    series: dict[str, list[dict[str, Any]]]
    chain: Chain
    txs: dict[Hash32, Located] = field(default_factory=dict)
    by_sender: dict[bytes, list[Hash32]] = field(default_factory=lambda: defaultdict(list))
    settlements: dict[bytes, list[Hash32]] = field(default_factory=lambda: defaultdict(list))
    """Contract id -> the SettleContract transactions that name it (its states on chain)."""
    kinds: Counter[str] = field(default_factory=Counter)

    @classmethod
    def open(cls, out: Path) -> RunResults:
        """The run written to ``out`` by ``gridnet simulate`` (or ``gridnet devnet --scenario``)."""
        report_path = out / "report.json"
        if not os.path.lexists(report_path):
            raise ConfigError(
                f"{out} holds no run: {report_path} is missing (run gridnet simulate --out {out})"
            )
        report = read_report(report_path)
        if not isinstance(report, dict) or not isinstance(report.get("schema_version", 1), int):
            raise ConfigError(f"{report_path} is not a run's report; run the scenario again")
        if "scenario" not in report:
            raise ConfigError(
                f"{report_path} is not a scenario's run (a ledger demo's?): the dashboard shows what "
                f"'gridnet simulate --out {out}' writes"
            )
        if report.get("schema_version", 1) < 2:
            raise ConfigError(f"{report_path} is from an older gridnet (no series): run the scenario again")
        series = {}
        for name, entry in report.get("series", {}).get("tables", {}).items():
            try:
                series[name] = pq.read_table(out / entry["file"]).to_pylist()
            except (OSError, pa.ArrowException) as exc:
                missing = isinstance(exc, FileNotFoundError)
                reason = (
                    "it is missing" if missing else " ".join(str(exc).split())[:200] or type(exc).__name__
                )
                raise ConfigError(
                    f"cannot read the run's series {out / entry['file']}: {reason}; run the scenario again"
                ) from None
        chain_dir = out / "chain" if (out / "chain").is_dir() else out / "n0"
        if not chain_dir.is_dir():
            raise ConfigError(f"{out} holds no chain (chain/ or n0/): run the scenario again")
        results = cls(out, report, series, Chain.open(chain_dir, readonly=True))
        results._index()
        return results

    def _index(self) -> None:
        for height in range(1, self.chain.height + 1):
            block = self.chain.block_at(height)
            assert block is not None
            for position, tx in enumerate(block.txs):
                tid = tx_id(tx)
                self.txs[tid] = Located(tx, height, position)
                self.kinds[type(tx.payload).__name__] += 1
                if position:  # (the coinbase has no sender)
                    self.by_sender[address_from_public_key(tx.sender)].append(tid)
                if isinstance(tx.payload, SettleContract):
                    self.settlements[tx.payload.signed.state.contract].append(tid)

    def block(self, height: int) -> Block | None:
        return self.chain.block_at(height) if 0 <= height <= self.chain.height else None

    def sender_text(self, tx: Transaction) -> str:
        return address_to_text(address_from_public_key(tx.sender))

    def close(self) -> None:
        self.chain.close()
