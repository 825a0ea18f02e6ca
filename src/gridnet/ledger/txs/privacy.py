"""Privacy-preserving aggregation (seed 003, section 3.3): neighbourhood groups publish only
their total and average consumption per slot, under pseudonyms nobody can link to a home.

A key-management centre (KMC: an authority with the ``key_management`` role) groups homes by
consumption and issues each member several pseudonym keys (off chain, each sealed to the
member). It publishes each group (``PublishGroup``) as a **Bloom filter** of the group's
pseudonyms (``bloom_hashes`` positions per pseudonym over ``8 × len(bloom)`` bits), the number
of members and the slot length. Each slot one member, chosen by the group's rule, collects the
members' consumption, and publishes the group's aggregate (``PublishAggregate``) under one of
its pseudonyms: the total, the number of members and the average, with a **proof of knowledge**
of the pseudonym's secret key: an Ed25519 signature by it over the chain id and the aggregate (a
Schnorr proof made non-interactive; it reveals nothing of the key) — accepted only when the
pseudonym is in the group's filter. The billing centre (an authority with the ``dso`` role)
computes the members' bills off chain on the billing date and records them
(``RecordBills``): the commitment to the bills and the energy they bill, which must equal the
group's aggregates over the slots billed. Nothing on chain names a member.
"""

from __future__ import annotations

import math
from typing import Annotated

import msgspec
from msgspec.structs import replace

from gridnet.crypto.address import address_to_text
from gridnet.crypto.hashing import hash32, registered_id
from gridnet.crypto.keys import Domain, PrivateKey, SignatureCheck, verify_signature
from gridnet.encoding import U32, U63, AddressBytes, HashBytes, PublicKeyBytes, SignatureBytes, Wire, encode
from gridnet.errors import (
    AggregateIncomplete,
    BillsMismatch,
    GroupExists,
    MalformedTransaction,
    NotAuthorized,
    NotGroupMember,
    PseudonymProofInvalid,
    SlotAggregated,
    SlotNotOver,
    UnknownGroup,
)
from gridnet.ledger.params import ChainParams
from gridnet.ledger.state import StateView, register_table
from gridnet.ledger.txs.authority import AUTHORITIES
from gridnet.ledger.txs.base import BlockEnv, TxRules
from gridnet.ledger.txs.identity import refuse_revoked
from gridnet.security.roles import Role
from gridnet.units import Address, Hash32, PublicKey, interval_of

Name = Annotated[str, msgspec.Meta(min_length=1, max_length=64)]
MAX_BLOOM_BYTES = 32_768
"""A group's filter at most (with 32 hashes, room for about 2,300 pseudonyms at the bound
below) [bytes]."""
MAX_BLOOM_HASHES = 32
MAX_SLOTS_BILLED = 7 * 96
MAX_FALSE_POSITIVES = 2**64
"""A group's filter must accept a random key with probability at most 1 / this (its fill ratio
to the power of its hashes): an outsider makes keys until the filter accepts one, and then
publishes the group's aggregates in its place. At 2^20 a million keys did, 20 s of one core."""


class Group(Wire, frozen=True):
    kmc: AddressBytes
    billing_centre: AddressBytes
    name: Name
    bloom: bytes
    bloom_hashes: U32
    members: U32
    slot_intervals: U32
    first_slot: U63
    """The first slot's first interval (slots follow every ``slot_intervals``)."""
    billed_through: U63
    """The first interval of the next slot to bill."""


class Aggregate(Wire, frozen=True):
    total_wh: U63
    members: U32
    average_wh: U63
    pseudonym: PublicKeyBytes


class Bill(Wire, frozen=True):
    billing_centre: AddressBytes
    first_slot: U63
    last_slot: U63
    bills: HashBytes
    """A commitment (hash) to the bills, which stay off chain."""
    billed_wh: U63


GROUPS = register_table("privacy_groups", b"n", Group)
AGGREGATES = register_table("privacy_aggregates", b"a", Aggregate)
"""Group ‖ slot (8 bytes) -> the slot's aggregate."""
BILLS = register_table("privacy_bills", b"b", Bill)
"""Group ‖ the first slot billed (8 bytes) -> the billing record."""


def group_id(registrant: PublicKey, name: str) -> Hash32:
    """The id of the group ``name`` published by the key ``registrant`` (the key-management
    centre that sent its ``PublishGroup``): each registrant names its own, so nobody takes a
    name from another."""
    return registered_id(b"privacy-group/", registrant, name)


def slot_key(group: bytes, slot: int) -> bytes:
    return group + slot.to_bytes(8, "big")


# --- the Bloom filter -------------------------------------------------------------------------


def bloom_positions(pseudonym: bytes, hashes: int, bits: int) -> list[int]:
    return [int.from_bytes(hash32(bytes([i]) + pseudonym)[:8], "big") % bits for i in range(hashes)]


def make_bloom(pseudonyms: list[bytes], size_bytes: int, hashes: int) -> bytes:
    bits = bytearray(size_bytes)
    for p in pseudonyms:
        for pos in bloom_positions(p, hashes, size_bytes * 8):
            bits[pos // 8] |= 1 << (pos % 8)
    return bytes(bits)


def is_bloom_tight(bloom: bytes, hashes: int) -> bool:
    """Whether a random key passes ``bloom`` with probability at most 1 / ``MAX_FALSE_POSITIVES``:
    (bits set / bits) ^ hashes, in integers."""
    ones = sum(bin(b).count("1") for b in bloom)
    return bool(ones**hashes * MAX_FALSE_POSITIVES <= (len(bloom) * 8) ** hashes)  # (int ** int is Any)


def compute_bloom_bytes(pseudonyms: list[bytes], hashes: int) -> int | None:
    """A size of a filter of ``pseudonyms`` with ``hashes`` hashes that ``is_bloom_tight``, within
    a thirty-second of the smallest (None: none of at most ``MAX_BLOOM_BYTES``) [bytes]: from
    the size whose expected fill meets the bound, ``hashes × n / −ln(1 − 2^(−64 / hashes))``
    bits, a thirty-second larger at a time until the filter's own fill does."""
    fill = -math.log1p(-(2.0 ** (-math.log2(MAX_FALSE_POSITIVES) / hashes)))
    size = max(1, math.ceil(hashes * len(pseudonyms) / fill / 8))
    while size <= MAX_BLOOM_BYTES:
        if is_bloom_tight(make_bloom(pseudonyms, size, hashes), hashes):
            return size
        size += max(1, size // 32)
    return None


def in_bloom(bloom: bytes, hashes: int, pseudonym: bytes) -> bool:
    return all(bloom[pos // 8] >> (pos % 8) & 1 for pos in bloom_positions(pseudonym, hashes, len(bloom) * 8))


# --- transactions -----------------------------------------------------------------------------


class PublishGroup(Wire, frozen=True, tag=49):
    name: Name
    billing_centre: AddressBytes
    """The DSO authority that bills the group (and only it)."""
    bloom: bytes
    bloom_hashes: U32
    members: U32
    slot_intervals: U32
    first_slot: U63


class PublishAggregate(Wire, frozen=True, tag=50):
    group: HashBytes
    slot: U63
    total_wh: U63
    members: U32
    average_wh: U63
    pseudonym: PublicKeyBytes
    proof: SignatureBytes
    """The pseudonym's signature over chain id ‖ this aggregate with an empty proof."""


class RecordBills(Wire, frozen=True, tag=51):
    group: HashBytes
    last_slot: U63
    """Bill the slots from the group's ``billed_through`` to this one."""
    bills: HashBytes
    billed_wh: U63


def proof_message(chain_id: bytes, payload: PublishAggregate) -> bytes:
    return chain_id + encode(replace(payload, proof=b"\x00" * 64))


def prove(pseudonym: PrivateKey, chain_id: bytes, payload: PublishAggregate) -> PublishAggregate:
    """``payload`` with the proof that its maker knows ``pseudonym``'s secret key."""
    payload = replace(payload, pseudonym=pseudonym.public_key)
    return replace(payload, proof=pseudonym.sign(Domain.PSEUDONYM, proof_message(chain_id, payload)))


def _authority(state: StateView, who: Address, role: Role, what: str) -> None:
    found = state.get(AUTHORITIES, who)
    kind = (role.name or "").lower().replace("_", "-")
    if found is None or not Role(found.roles) & role:
        raise NotAuthorized(f"{address_to_text(who)} is no {kind} authority: it cannot {what}")
    refuse_revoked(state, who, f"acting as a {kind} authority")  # (a proven fraud lost its standing)


def _group(state: StateView, gid: bytes) -> Group:
    found = state.get(GROUPS, gid)
    if found is None:
        raise UnknownGroup(f"no privacy group {gid.hex()[:16]}")
    return found


# --- rules ------------------------------------------------------------------------------------


def validate_group(payload: PublishGroup, params: ChainParams) -> None:
    if not 1 <= len(payload.bloom) <= MAX_BLOOM_BYTES or not 1 <= payload.bloom_hashes <= MAX_BLOOM_HASHES:
        raise MalformedTransaction(
            f"a Bloom filter of 1 to {MAX_BLOOM_BYTES:,} bytes and 1 to {MAX_BLOOM_HASHES} hashes"
        )
    if payload.members < 2 or not 1 <= payload.slot_intervals <= 96:
        raise MalformedTransaction("a group has 2 members or more and slots of 1 to 96 intervals")
    if not is_bloom_tight(payload.bloom, payload.bloom_hashes):
        ones = sum(bin(b).count("1") for b in payload.bloom)
        raise MalformedTransaction(
            f"the Bloom filter is too full ({ones} of {len(payload.bloom) * 8} bits set, "
            f"{payload.bloom_hashes} hashes): an outsider would find a key it accepts in fewer than "
            f"2^{MAX_FALSE_POSITIVES.bit_length() - 1} tries"
        )


def apply_group(state: StateView, env: BlockEnv, sender: Address, payload: PublishGroup) -> None:
    _authority(state, sender, Role.KEY_MANAGEMENT, "publish a group")
    gid = group_id(env.sender_key, payload.name)
    if state.get(GROUPS, gid) is not None:
        raise GroupExists(
            f"{address_to_text(sender)} has published a privacy group named {payload.name!r} already"
        )
    group = Group(
        sender, payload.billing_centre, payload.name, payload.bloom, payload.bloom_hashes, payload.members,
        payload.slot_intervals, payload.first_slot, payload.first_slot,
    )  # fmt: skip
    state.put(GROUPS, gid, group)


def validate_aggregate(payload: PublishAggregate, params: ChainParams) -> None:
    if payload.members < 1 or payload.average_wh != payload.total_wh // payload.members:
        raise MalformedTransaction("the average is the total over the members (rounded down)")


def apply_aggregate(state: StateView, env: BlockEnv, sender: Address, payload: PublishAggregate) -> None:
    group = _group(state, payload.group)
    slot = payload.slot
    if slot < group.first_slot or (slot - group.first_slot) % group.slot_intervals:
        raise MalformedTransaction(f"{slot} is not the first interval of one of the group's slots")
    if slot + group.slot_intervals > interval_of(env.timestamp):
        raise SlotNotOver(f"the slot from interval {slot} has not ended")
    if state.get(AGGREGATES, slot_key(payload.group, slot)) is not None:
        raise SlotAggregated(f"the slot from interval {slot} is aggregated already")
    if not in_bloom(group.bloom, group.bloom_hashes, payload.pseudonym):
        raise NotGroupMember("the pseudonym is not in the group's Bloom filter")
    if not verify_signature(*aggregate_checks(payload, env.chain_id)[0]):
        raise PseudonymProofInvalid("no proof of knowledge of the pseudonym's key")
    if payload.members != group.members:
        raise AggregateIncomplete(f"{payload.members} members' data; the group has {group.members}")
    aggregate = Aggregate(payload.total_wh, payload.members, payload.average_wh, payload.pseudonym)
    state.put(AGGREGATES, slot_key(payload.group, slot), aggregate)


def apply_bills(state: StateView, env: BlockEnv, sender: Address, payload: RecordBills) -> None:
    _authority(state, sender, Role.DSO, "bill")
    group = _group(state, payload.group)
    if sender != group.billing_centre:
        raise NotAuthorized(f"{address_to_text(sender)} is not the group's billing centre")
    first = group.billed_through
    slots = range(first, payload.last_slot + 1, group.slot_intervals)
    if (
        payload.last_slot < first
        or (payload.last_slot - first) % group.slot_intervals
        or len(slots) > MAX_SLOTS_BILLED
    ):
        raise MalformedTransaction(f"bill whole slots from interval {first}, at most {MAX_SLOTS_BILLED}")
    total = 0
    for slot in slots:
        aggregate = state.get(AGGREGATES, slot_key(payload.group, slot))
        if aggregate is None:
            raise BillsMismatch(f"the slot from interval {slot} has no aggregate to bill against")
        total += aggregate.total_wh
    if payload.billed_wh != total:
        raise BillsMismatch(
            f"{payload.billed_wh} Wh billed; the group's aggregates over the slots are {total} Wh"
        )
    state.put(
        BILLS, slot_key(payload.group, first), Bill(sender, first, payload.last_slot, payload.bills, total)
    )
    state.put(GROUPS, payload.group, replace(group, billed_through=payload.last_slot + group.slot_intervals))


def _no_check(payload: object, params: ChainParams) -> None:
    """Nothing to check without the state."""


PUBLISH_GROUP_RULES = TxRules(PublishGroup, validate_group, apply_group)


def aggregate_checks(payload: PublishAggregate, chain_id: bytes) -> list[SignatureCheck]:
    """The proof of knowledge of the pseudonym's key (``TxRules.carried``)."""
    return [(Domain.PSEUDONYM, payload.pseudonym, proof_message(chain_id, payload), payload.proof)]


PUBLISH_AGGREGATE_RULES = TxRules(
    PublishAggregate,
    validate_aggregate,
    apply_aggregate,
    carried=lambda p, chain_id, _sender: aggregate_checks(p, chain_id),
)
RECORD_BILLS_RULES = TxRules(RecordBills, _no_check, apply_bills)
