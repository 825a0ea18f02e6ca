"""The transaction registry: the Payload union and the RULES map agree."""

from __future__ import annotations

import typing

from gridnet.ledger.registry import RULES, Payload
from gridnet.ledger.txs.coinbase import Coinbase


def test_every_signed_payload_type_has_rules_and_unique_tag() -> None:
    members = typing.get_args(Payload)
    assert set(RULES) == set(members) - {Coinbase}
    tags = [m.__struct_config__.tag for m in members]
    assert len(tags) == len(set(tags))
    for payload_type, rules in RULES.items():
        assert rules.payload_type is payload_type
