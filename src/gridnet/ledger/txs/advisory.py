"""Vulnerability advisories on chain (seed 004's SEL knowledge base, the vulnerabilities half).

PublishAdvisory: an advisory authority (registered with the advisory role *and* named in the
genesis, ``ChainParams.advisory_authorities``: an advisory bans meters, so who may issue one
is a rule of the chain) publishes, replaces or withdraws an advisory on one vendor and model:
the firmware versions it affects, its severity and the version that fixes it.

A meter is *vulnerable* while an active advisory at or above the chain's minimum severity
lists the firmware its latest status reports (``vulnerability``). That is an objective rule of
the state transition: no contract is opened or settled, no subsidy paid and no auction order
admitted for a vulnerable meter (``refuse_vulnerable``, rejection ``VulnerableMeter``). The
meter is re-admitted by a status naming a release no advisory lists; one that cannot be
updated stays out until it is.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Annotated

import msgspec

from gridnet.crypto.address import address_to_text
from gridnet.crypto.hashing import hash32
from gridnet.encoding import U32, U63, AddressBytes, Wire, encode
from gridnet.errors import AdvisoryNotAuthorized, MalformedTransaction, UnknownAdvisory, VulnerableMeter
from gridnet.ledger.params import SEVERITIES, ChainParams
from gridnet.ledger.state import StateView, register_table
from gridnet.ledger.txs.authority import AUTHORITIES
from gridnet.ledger.txs.base import BlockEnv, TxRules
from gridnet.ledger.txs.identity import refuse_revoked
from gridnet.ledger.txs.meter import METERS, MeterRecord
from gridnet.meter.certificate import Label
from gridnet.security.roles import Role
from gridnet.units import Address

MAX_AFFECTED_VERSIONS = 64
MAX_ADVISORIES_PER_PRODUCT = 256
Version = Annotated[str, msgspec.Meta(max_length=64)]
"""A firmware version, or empty (an advisory with no fix yet)."""


class Advisory(Wire, frozen=True):
    id: Label
    """The authority's name for it (e.g. ``GN-2026-0042``); unique per authority and product."""
    authority: AddressBytes
    affected: tuple[Label, ...]
    """Firmware versions it covers (exact version strings)."""
    severity: U32
    """1 low, 2 medium, 3 high, 4 critical."""
    fixed_in: Version
    """Version that fixes it ('' while no fix is published)."""
    published_at: U63
    """Block that published (or last replaced) it."""


class Advisories(Wire, frozen=True):
    """Every active advisory on one vendor and model."""

    entries: tuple[Advisory, ...]


ADVISORIES = register_table("advisories", b"V", Advisories)


@lru_cache(maxsize=1024)
def product_key(vendor: str, model: str) -> bytes:
    """The advisories table's key of one vendor and model (remembered: every contract's
    meters ask for theirs)."""
    return hash32(encode((vendor, model)))


class PublishAdvisory(Wire, frozen=True, tag=22):
    id: Label
    vendor: Label
    model: Label
    affected: tuple[Label, ...]
    severity: U32
    fixed_in: Version
    active: bool
    """True to publish (or replace the authority's advisory with this id); False to withdraw it."""


def validate_publish_advisory(payload: PublishAdvisory, params: ChainParams) -> None:
    if not payload.active:
        return  # a withdrawal names the advisory by its id, vendor and model only
    if not 1 <= len(payload.affected) <= MAX_AFFECTED_VERSIONS:
        raise MalformedTransaction(f"an advisory lists 1 to {MAX_AFFECTED_VERSIONS} affected versions")
    if len(set(payload.affected)) != len(payload.affected):
        raise MalformedTransaction("an advisory lists each affected version once")
    if not 1 <= payload.severity <= len(SEVERITIES):
        raise MalformedTransaction(
            f"severity {payload.severity} is not 1 (low) to {len(SEVERITIES)} (critical)"
        )
    if payload.fixed_in in payload.affected:
        raise MalformedTransaction(f"the fixing version {payload.fixed_in} is listed as affected")


def apply_publish_advisory(
    state: StateView, env: BlockEnv, sender: Address, payload: PublishAdvisory
) -> None:
    authority = state.get(AUTHORITIES, sender)
    if (
        sender not in env.params.advisory_authorities
        or authority is None
        or not authority.roles & Role.ADVISORY
    ):
        raise AdvisoryNotAuthorized(
            f"{address_to_text(sender)} is not an advisory authority (registered with the advisory "
            "role and named in the genesis)"
        )
    refuse_revoked(state, sender, "publishing an advisory")  # (a proven fraud lost its standing)
    key = product_key(payload.vendor, payload.model)
    current = state.get(ADVISORIES, key)
    entries = current.entries if current else ()
    others = tuple(a for a in entries if not (a.authority == sender and a.id == payload.id))
    if not payload.active:
        if len(others) == len(entries):
            raise UnknownAdvisory(
                f"no advisory {payload.id} of {address_to_text(sender)} on {payload.vendor} {payload.model}"
            )
        state.put(ADVISORIES, key, Advisories(others) if others else None)
        return
    if len(others) >= MAX_ADVISORIES_PER_PRODUCT:
        raise MalformedTransaction(
            f"{payload.vendor} {payload.model} already has {len(others)} advisories (limit)"
        )
    advisory = Advisory(
        payload.id, sender, payload.affected, payload.severity, payload.fixed_in, published_at=env.height
    )
    state.put(ADVISORIES, key, Advisories((*others, advisory)))


def vulnerability(state: StateView, params: ChainParams, meter: MeterRecord) -> Advisory | None:
    """The first active advisory at or above the chain's minimum severity that lists the
    firmware ``meter`` reports, or None."""
    found = state.get(ADVISORIES, product_key(meter.vendor, meter.model))
    if found is None:
        return None
    for advisory in found.entries:
        if advisory.severity >= params.advisory_min_severity and meter.firmware in advisory.affected:
            return advisory
    return None


def vulnerable_meter(state: StateView, params: ChainParams, meter: Address) -> str | None:
    """Why ``meter`` is vulnerable (one line naming its firmware and the advisory), or None
    when it is not (or not registered)."""
    record = state.get(METERS, meter)
    if record is None:
        return None
    advisory = vulnerability(state, params, record)
    if advisory is None:
        return None
    fix = f"; {advisory.fixed_in} fixes it" if advisory.fixed_in else "; no fix is published yet"
    return (
        f"meter {address_to_text(meter)} runs {record.vendor} {record.model} firmware {record.firmware}, "
        f"covered by advisory {advisory.id} ({SEVERITIES[advisory.severity - 1]}){fix}"
    )


def refuse_vulnerable(state: StateView, params: ChainParams, meter: Address, purpose: str) -> None:
    """Raise ``VulnerableMeter`` if ``meter`` is registered and vulnerable; ``purpose`` names
    what was refused."""
    why = vulnerable_meter(state, params, meter)
    if why is not None:
        raise VulnerableMeter(f"{why}: {purpose} is refused")


PUBLISH_ADVISORY_RULES = TxRules(PublishAdvisory, validate_publish_advisory, apply_publish_advisory)
