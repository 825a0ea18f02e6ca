"""Privacy-preserving aggregation in the simulator (``[privacy]``): the groups' aggregates match
their members' meters and bills, and an observer holding the whole chain links no pseudonym to a
home: it learns only the group, from the Bloom filter."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from gridnet.crypto.address import address_from_public_key
from gridnet.crypto.keys import PrivateKey
from gridnet.encoding import encode
from gridnet.errors import ConfigError
from gridnet.ledger.chain import Chain
from gridnet.ledger.txs.meter import READINGS, reading_key
from gridnet.ledger.txs.privacy import AGGREGATES, BILLS, GROUPS, PublishAggregate, in_bloom
from gridnet.sim.neighbourhood import simulate
from gridnet.sim.scenario import scenario_from_dict
from gridnet.units import interval_of

DAY: dict[str, Any] = {
    "simulation": {"name": "privacy", "seed": 8, "intervals": 8, "start": "2026-06-21T16:00:00Z"},
    "homes": {"count": 6, "businesses": 0},
    "relay": {"hill_homes": 0},
    "chain": {"block_interval_s": 60},
    "privacy": {"enabled": True, "groups": 2, "pseudonyms": 2, "slot_intervals": 4},
}


def key(label: str) -> PrivateKey:
    return PrivateKey.from_label(f"privacy/8/{label}")  # (the world's keys: scenario name/seed/label)


def test_aggregates_match_the_meters_and_an_observer_links_no_pseudonym_to_a_home(tmp_path: Path) -> None:
    sc = scenario_from_dict(DAY, "privacy.toml")
    report = simulate(sc, tmp_path / "out")
    p = report["roles"]["privacy"]
    assert report["verify"]["ok"] and report["transactions"]["refused"] == {}
    assert p["aggregates_published"] == 4 and p["totals_match_meters"]
    homes = [f"home-{i}" for i in range(6)]
    home_keys = {key(h).public_key for h in homes} | {key(f"{h}/meter").public_key for h in homes}
    home_addresses = {key(h).address for h in homes}
    collector = key("collector").address
    chain = Chain.open(tmp_path / "out" / "chain", readonly=True)
    try:
        view = chain.view()

        def entries(table: Any) -> list[Any]:
            return [
                view.get(table, k[len(table.prefix) :]) for k in chain.values if k.startswith(table.prefix)
            ]

        groups = entries(GROUPS)
        aggregates, others = [], []
        for height in range(1, chain.height + 1):
            block = chain.block_at(height)
            assert block is not None
            for tx in block.txs:
                (aggregates if isinstance(tx.payload, PublishAggregate) else others).append(tx)
        assert len(aggregates) == 4
        for tx in aggregates:
            a = tx.payload
            assert isinstance(a, PublishAggregate)
            sender = address_from_public_key(tx.sender)
            # The observer's view: the collector carried it, the pseudonym is no home's key ...
            assert sender == collector and sender not in home_addresses and a.pseudonym not in home_keys
            # ... appears in no other transaction (no home ever used or funded it) ...
            assert not any(a.pseudonym in encode(o) for o in others)
            # ... and the Bloom filter names one group, not a member.
            matching = [g for g in groups if in_bloom(g.bloom, g.bloom_hashes, a.pseudonym)]
            assert len(matching) == 1 and matching[0].members == 3
        # The group totals still match the meters: two groups of three, two slots.
        first = interval_of(sc.start_ms)
        imported = 0
        for h in homes:
            for i in range(first, first + 8):
                reading = view.get(READINGS, reading_key(key(f"{h}/meter").address, i))
                assert reading is not None
                imported += reading.imported_wh
        per_group = [g["metered_wh"] for g in p["groups"]]
        assert sum(per_group) == imported == sum(a.total_wh for a in entries(AGGREGATES))
        billed = sorted(b.billed_wh for b in entries(BILLS))
        assert billed == sorted(g["billed_wh"] for g in p["groups"]) and len(billed) == 2
    finally:
        chain.close()


def test_a_bad_privacy_table_is_one_clear_line(tmp_path: Path) -> None:
    doc = {**DAY, "privacy": {**DAY["privacy"], "groups": 4}}
    with pytest.raises(ConfigError, match=r"\[privacy\] groups must be 1 to half the homes"):
        simulate(scenario_from_dict(doc, "privacy.toml"), tmp_path / "bad")


def test_a_filter_the_chain_would_refuse_is_refused_before_the_run_naming_the_size_it_needs(
    tmp_path: Path,
) -> None:
    """A group's filter a random key passes more often than 2^-64 is refused by the chain
    (``PublishGroup``: too full); the scenario says so before the run and what size would do,
    rather than a run whose groups never publish. By default each filter is sized as needed."""
    for privacy, said in (
        (
            {"bloom_bytes": 64},
            r"group-0's filter of its 6 pseudonyms .* set bloom_bytes to \d+ or more \(or 0\)",
        ),
        ({"bloom_hashes": 4}, r"use more hashes \(at most 32\), fewer pseudonyms or more groups"),
    ):
        doc = {**DAY, "privacy": {**DAY["privacy"], **privacy}}
        with pytest.raises(ConfigError, match=said):
            simulate(scenario_from_dict(doc, "privacy.toml"), tmp_path / "bad")
