"""Chain parameters and the genesis file (TOML).

The parameters are committed to by the genesis block (its ``prev_hash`` is the
digest of the encoded parameters), so two chains with different rules have
different genesis hashes and never accept each other's blocks.
"""

from __future__ import annotations

import datetime as dt
import functools
import math
import re
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any, Final

import msgspec

from gridnet.crypto.address import address_from_text, address_to_text
from gridnet.crypto.hashing import params_hash
from gridnet.encoding import U32, U63, AddressBytes, HashBytes, PublicKeyBytes, Wire, decode, encode
from gridnet.errors import ConfigError, DecodeError, GridnetError, UnbondingTooShort, shown
from gridnet.files import read_toml
from gridnet.units import UNITS_PER_GNC, Hash32, Height, Units
from gridnet.work import target_from_bits, target_from_bytes, target_to_bytes

DEFAULT_GENESIS_TIME = "2026-01-01T00:00:00Z"

RULES_VERSION: Final = 6
"""The consensus rules this gridnet implements: everything a block is checked against (the
state transition and its tables, finality, the genesis state). Every chain it creates records
the version (its store's meta row ``rules``), and a chain made under other rules is refused
when opened (``RulesChanged``): its blocks were checked, and its state computed, by rules this
gridnet no longer applies, so replaying them would fail somewhere in their history (or at the
genesis) and look like damage. The rules carry no activation heights: new rules, new chain.

1: every chain made before the version was recorded (no ``rules`` row).
2 (2026-12-07): finality in slots (checkpoints ``[height, slot, hash]``), the coin destroyed
counted in the state (``destroyed``), tenders' reserve and dispute window, credit history by
principal, vehicle deals at most a week ahead (``DealTooFarAhead``), revoked key-management and
billing centres refused, no aggregators' fee without a reward to pay it out, one open Helios
redemption per meter, a Helios mint passing over a reading that can never come.
3 (2026-12-07, later): a Helios redemption lapses when a reading of its window can never come;
an order for a cleared auction is late whatever the block's timestamp; a reading already
recorded is passed over in a batch, and one across a gap waits ``GAP_GRACE_INTERVALS``
(``ReadingGapEarly``); a Helios island carries its meters' owners' consents
(``IslandConsentMissing``) and no node cap that allows 0 Wh an interval, and an island meter's
auction order is held to its cap (``IslandCapExceeded``); a ChangeValidators
waits until its block is final under the set in force, then hands over (more than two thirds
of both sets justify) until the next final block (``ValidatorChangePending`` meanwhile).
4 (2026-12-07, latest): the on-chain auctions' open index holds an entry per delivery interval
(``open_intervals``) and each interval's areas on pages (``open_auctions``), so an auction's
first order costs the same however many areas trade; a ``ReportHopOvercredit`` also proves
hop entries of more relays than a pool pays (``MAX_CONNECTION_HOPS``), whatever their
credits: a sender that fills its pool's places with puppets, leaving the honest relays
``PoolHopsFull``, loses its stake; a ``RegisterMeter`` carries the meter's binding of its
registration to the sender on this chain (``MeterBindingInvalid``: a registration copied out
of a mempool by another identity, or from another chain, is refused); a meter's status number
is the device's own over its life and a ``RegisterMeter`` records the number of the status it
carries (not always 0: an updated meter's older statuses, signed for any chain, are
``StaleMeterStatus``); a DSO command's signature covers the chain id (one signed for another
chain is ``CommandSignatureInvalid``, checked with the command's override, ``RecordOverride``);
transmission tokens and receivers' transit claims are signed over the chain id (a token or
claim of another chain, for a pool of the same id there, pays, advances and proves nothing:
``TokenSignatureInvalid``, ``ClaimSignatureInvalid``), so every relay-layer signature is checked
in the stateful rules; a hop-fraud report names its beneficiary, a relay its proof credits,
paid whoever sends it (``HopBeneficiaryNotCredited``; none named: the whole stake is
destroyed); a finality vote for a target before its key's membership does not count
(``VoteBeforeMembership``: its fault could not be proven).
5 (2026-12-08): a ``ReportMissedRepayment`` counts every installment it judges that what is
repaid does not cover (one report after two ended unpaid counted one); the votes counted towards
the next justified checkpoint are an entry per target slot (``finality_tallies``; the finality
record lists their slots, ``tallied``), not one record, which a long stall of many validators
grew past what a state entry holds, after which no vote counted again; a ``ReclaimPool`` leaves
the pool's id used (``pools_reclaimed``, the height that reclaimed it): a ``CreateTokenPool`` of
that owner and final hash is refused for good (``PoolIdUsed``), where a pool created again
started with nothing redeemed and the old pool's tokens and claims advanced and paid it again;
the id of a registered group is namespaced by its registrant, the public key that sent its
registration: BLAKE2b-256 of its domain tag, that key and its name (a station's the first 20
bytes), for Helios controllers (``helios-controller/``, a tag they had none of), credit banks,
consortia of aggregators, charging hotspots, stations and privacy groups. The id was the hash of
the name alone, so anyone who saw a registration pending could send a copy (the consortium's
signatures hold for any sender) or its own under the same name first, and the registrant's was
refused (``ControllerExists``, ``CreditBankExists``, ``AggregatorsExist``, ``HotspotExists``,
``StationExists``, ``GroupExists``) and the name blocked for good; those errors now mean the
sender has registered that name already; a privacy group's Bloom filter admits a random key with
probability at most 2^-64 (it was 2^-20: an outsider made keys until one passed, in 20 s, and
published the group's aggregates in its place), and may take 32,768 bytes.
6 (2026-12-08, later): the members of a Helios controller, a credit bank or a consortium of
aggregators sign its registration for its registrant (the ``REGISTRATION`` domain over chain id
|| the sending key || the act): a copy of a pending registration sent by another key is
``InsufficientConsortium`` (``NoConsortiumMajority``), where it made a look-alike group, the
same name and members, under the copier's key; a meter its manufacturer revoked places no
order and opens no contract (``RevokedMeter``: it records no reading, so neither could be
settled)."""


class Allocation(Wire, frozen=True):
    address: AddressBytes
    amount: U63
    """Coin credited at genesis [base units]."""


class Validator(Wire, frozen=True):
    """A member of a permissioned chain's validator set."""

    key: PublicKeyBytes
    """Its Ed25519 public key: it signs blocks (seals) and finality votes."""
    votes: U32
    """Its voting weight: finality needs more than two thirds of all votes."""


MAX_COIN = 2**63 - 1
"""No balance may exceed this: it is the largest integer the encoding carries."""
MAX_GNC: Final = Decimal(MAX_COIN).scaleb(-8)
"""``MAX_COIN`` in GNC (92233720368.54775807): the largest amount a genesis may name."""
BASE_UNIT: Final = Decimal("0.00000001")
"""A base unit in GNC."""

CONSENSUS_POW, CONSENSUS_POA = 0, 1
CONSENSUS_KINDS = ("pow", "poa")
"""Consensus kinds by name; the code of each is its position."""
MAX_VALIDATORS = 256
MAX_NAME_CHARS = 80
"""A chain's name (in messages and the genesis) is 1 to this many printable characters."""
MAX_TOTAL_VOTES = 2**31


class ChainParams(Wire, frozen=True):
    """Every consensus parameter of a chain (all integers: ms, bytes, base units)."""

    name: str
    genesis_time: U63
    """Genesis timestamp [ms since the Unix epoch]."""
    block_interval_ms: U63
    """Block interval the retarget aims for [ms]."""
    initial_target: HashBytes
    """Proof-of-work target of the first blocks (32-byte big-endian integer)."""
    pow_limit: HashBytes
    """Easiest target ever allowed (32-byte big-endian integer)."""
    retarget_window: U32
    """Blocks between retargets; the target changes only at multiples of it."""
    max_retarget_factor: U32
    """A retarget changes the target by at most this factor either way."""
    median_time_span: U32
    """A timestamp must exceed the median of this many previous timestamps."""
    max_future_ms: U63
    """How far a block's timestamp may be ahead of the local clock [ms]."""
    max_block_bytes: U32
    """Largest encoded block [bytes]."""
    identity_target: HashBytes
    """Identity proof-of-work target (32-byte big-endian integer)."""
    unbonding_delay: U32
    """Blocks between an unbond and the coin's return to the balance; longer than
    ``max_dispute_window``, so a stake cannot leave before fraud it backs can be proven."""
    max_dispute_window: U32
    """Longest dispute window an energy contract may set [blocks]."""
    min_chain_work: HashBytes
    """Cumulative proof-of-work a chain must reach before a node spends effort on its
    blocks (32-byte big-endian integer; 0: none). A checkpoint against cheap branches from
    genesis."""
    min_fee_per_byte: U63
    """Minimum fee per byte of transaction [base units / byte]."""
    initial_reward: U63
    """Block reward before the first halving [base units]."""
    halving_interval: U32
    """Blocks between reward halvings (the reward is capped: it halves to zero)."""
    allocations: tuple[Allocation, ...]
    """Coin credited at genesis."""
    advisory_authorities: tuple[AddressBytes, ...] = ()
    """Addresses that may publish vulnerability advisories (once registered as authorities
    with the advisory role): an advisory bans meters, so the genesis names who may issue one."""
    advisory_min_severity: U32 = 1
    """Lowest advisory severity that makes a meter vulnerable (1 low .. 4 critical)."""
    market_mode: U32 = 0
    """0 (``MARKET_OFF_CHAIN``): orders are gossiped and cleared off chain (paper 001); 1
    (``MARKET_ON_CHAIN``): orders are transactions and the state transition clears them."""
    auction_close_ms: U63 = 300_000
    """On chain: the auction of a delivery interval closes this long before the interval
    starts [ms]; the first block at or after that time clears it."""
    auction_pricing: U32 = 0
    """On chain: 0 every trade at the uniform clearing price, 1 each at its offer's price."""
    consensus: U32 = CONSENSUS_POW
    """0 (``CONSENSUS_POW``): blocks are mined, the branch with the most work wins; 1
    (``CONSENSUS_POA``): a permissioned chain, blocks signed by validators in turn by slot,
    with finality votes (``ledger/poa.py``)."""
    validators: tuple[Validator, ...] = ()
    """Permissioned chain: the validator set at genesis (changed later by ChangeValidators and
    ReportValidatorFault transactions)."""

    @property
    def permissioned(self) -> bool:
        return self.consensus == CONSENSUS_POA

    @property
    def initial_target_int(self) -> int:
        return target_from_bytes(self.initial_target)

    @property
    def pow_limit_int(self) -> int:
        return target_from_bytes(self.pow_limit)

    @property
    def identity_target_int(self) -> int:
        return target_from_bytes(self.identity_target)

    @property
    def min_chain_work_int(self) -> int:
        return int.from_bytes(self.min_chain_work, "big")


def params_digest(params: ChainParams) -> Hash32:
    return params_hash(encode(params))


def block_reward(params: ChainParams, height: Height) -> Units:
    """New coin the block at ``height`` may create: halving every ``halving_interval``."""
    if height == 0:
        return 0
    halvings = (height - 1) // params.halving_interval
    return params.initial_reward >> halvings if halvings < 64 else 0


def max_supply(params: ChainParams) -> Units:
    """All coin that can ever exist: allocations plus every block reward."""
    total = sum(a.amount for a in params.allocations)
    reward = params.initial_reward
    while reward:
        total += reward * params.halving_interval
        reward >>= 1
    return total


# --- genesis TOML -----------------------------------------------------------------------

_SCHEMA: dict[str, dict[str, type]] = {
    "chain": {
        "name": str,
        "genesis_time": str,
        "block_interval_s": float,
        "max_block_bytes": int,
        "max_future_s": float,
    },
    "pow": {
        "initial_difficulty_bits": int,
        "min_difficulty_bits": int,
        "retarget_window": int,
        "max_retarget_factor": int,
        "median_time_span": int,
        "min_chain_work": str,
    },
    "identity": {"difficulty_bits": int},
    "staking": {"unbonding_delay_blocks": int, "max_dispute_window_blocks": int},
    "fees": {"min_fee_per_byte": int},
    "reward": {"initial_gnc": str, "halving_interval": int},
    "security": {"advisory_authorities": list, "min_severity": str},
    "market": {"mode": str, "auction_close_s": float, "pricing": str},
    "consensus": {"kind": str},
}

DEFAULTS: dict[str, dict[str, Any]] = {
    "chain": {
        "name": "gridnet-devnet",
        "genesis_time": DEFAULT_GENESIS_TIME,
        "block_interval_s": 1.0,
        "max_block_bytes": 1_000_000,
        "max_future_s": 120.0,
    },
    "pow": {
        "initial_difficulty_bits": 10,
        "min_difficulty_bits": 4,
        "retarget_window": 20,
        "max_retarget_factor": 4,
        "median_time_span": 11,
        "min_chain_work": "0",
    },
    "identity": {"difficulty_bits": 12},
    "staking": {"unbonding_delay_blocks": 10, "max_dispute_window_blocks": 8},
    "fees": {"min_fee_per_byte": 1},
    "reward": {"initial_gnc": "50", "halving_interval": 100_000},
    "security": {"advisory_authorities": [], "min_severity": "low"},
    "market": {"mode": "offchain", "auction_close_s": 300.0, "pricing": "uniform"},
    "consensus": {"kind": "pow"},
}

MARKET_MODES = ("offchain", "onchain")
"""Market modes by name; the code of each is its position."""
MARKET_OFF_CHAIN, MARKET_ON_CHAIN = 0, 1
PRICINGS = ("uniform", "pay_as_offered")
"""On-chain auction pricing rules by name; the code of each is its position."""

SEVERITIES = ("low", "medium", "high", "critical")
"""Advisory severities by name; the code of each is its position plus one."""


def severity_code(name: str, where: str) -> int:
    try:
        return SEVERITIES.index(name.strip().lower()) + 1
    except ValueError:
        raise ConfigError(f"{where}: severity {shown(name)} is not one of {', '.join(SEVERITIES)}") from None


def _work_bytes(text: str, where: str) -> bytes:
    """A decimal amount of cumulative work as 32 big-endian bytes."""
    if not text.strip().isascii() or not text.strip().isdigit():
        raise ConfigError(f'{where}: {text!r} must be a whole number written as a string, e.g. "0"')
    work = int(text.strip())
    if work >= 2**256:
        raise ConfigError(f"{where}: {text!r} is above 2^256")
    return work.to_bytes(32, "big")


def parse_time_ms(text: str, where: str = "genesis_time") -> int:
    try:
        when = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise ConfigError(
            f"{where}: {shown(text)} is not an ISO 8601 time (e.g. 2026-01-01T00:00:00Z)"
        ) from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.UTC)
    ms = int(when.timestamp() * 1000)
    if ms < 0:
        raise ConfigError(
            f"{where}: {shown(text)} is before 1970; times are counted from 1970-01-01T00:00:00Z"
        )
    return ms


def _validator(entry: object, where: str) -> Validator:
    """A ``[[validator]]`` entry: ``key`` (hex Ed25519 public key) and ``votes`` (default 1)."""
    if not isinstance(entry, dict) or "key" not in entry:
        raise ConfigError(f"{where}: needs 'key' (the validator's public key in hex) and may set 'votes'")
    unknown = set(entry) - {"key", "votes"}
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {sorted(unknown)}; known keys: ['key', 'votes']")
    text, votes = entry["key"], entry.get("votes", 1)
    try:
        key = bytes.fromhex(text) if isinstance(text, str) else b""
    except ValueError:
        key = b""
    if len(key) != 32:
        raise ConfigError(
            f"{where}: key must be a 32-byte public key in hex (64 characters; 'gridnet key show')"
        )
    if isinstance(votes, bool) or not isinstance(votes, int) or not 1 <= votes < MAX_TOTAL_VOTES:
        raise ConfigError(f"{where}: votes must be a whole number of at least 1")
    return Validator(key=key, votes=votes)


def _gnc_to_units(value: float | int | str, where: str) -> int:
    """Exact conversion: '12.34567891' (a string keeps every digit) or a TOML number; an amount
    is finite, 0 to ``MAX_COIN`` base units (what the ledger's integers hold), with at most 8
    decimals."""
    try:
        amount = Decimal(str(value))
    except InvalidOperation:
        raise ConfigError(f"{where}: {value!r} is not an amount of GNC") from None
    if not amount.is_finite():
        raise ConfigError(f"{where}: {value!r} is not an amount of GNC (a finite number is)")
    if amount < 0:
        raise ConfigError(f"{where}: amounts cannot be negative")
    if amount > MAX_GNC:
        raise ConfigError(
            f"{where}: {value!r} is more than the ledger holds: at most {MAX_GNC} GNC (2^63 - 1 base units)"
        )
    if amount != amount.quantize(BASE_UNIT):  # (exact: the amount has at most 19 digits here)
        raise ConfigError(f"{where}: {value!r} has more than 8 decimals")
    return int(amount.scaleb(8))


def _ms(seconds: float, where: str) -> int:
    """A duration of the file in seconds -> whole ms, as the ledger holds it (0 to 2^63 - 1)."""
    if seconds < 0:
        raise ConfigError(f"{where} cannot be negative")
    if seconds > MAX_COIN // 1000:
        raise ConfigError(
            f"{where} must be at most {MAX_COIN // 1000:,} s (the ledger holds it in ms, below 2^63)"
        )
    return round(seconds * 1000)


def _units_to_gnc(units: int) -> str:
    """Exact GNC text for a genesis file (a string, so no digit is lost to floats)."""
    whole, frac = divmod(units, UNITS_PER_GNC)
    return f'"{whole}.{frac:08d}"'


def params_from_dict(doc: dict[str, Any], source: str = "genesis") -> ChainParams:
    """Build parameters from a parsed genesis document (sections as in DEFAULTS)."""
    merged: dict[str, dict[str, Any]] = {}
    for section, fields in _SCHEMA.items():
        given = doc.get(section, {})
        if not isinstance(given, dict):
            raise ConfigError(f"{source}: [{section}] must be a table")
        unknown = set(given) - set(fields)
        if unknown:
            raise ConfigError(
                f"{source}: unknown key(s) {sorted(unknown)} in [{section}]; known keys: {sorted(fields)}"
            )
        merged[section] = dict(DEFAULTS[section])
        for key, value in given.items():
            want = fields[key]
            ok = isinstance(value, want) or (want is float and isinstance(value, int))
            if key.endswith("_gnc"):  # an amount: a number or an exact decimal string
                ok = isinstance(value, int | float | str)
            if isinstance(value, int | float) and not isinstance(value, bool):
                # (inf, nan, 1e300; an int checked as one: a 400-digit one converts to no float)
                ok = ok and (isinstance(value, int) or math.isfinite(value)) and abs(value) < 2**63
            if isinstance(value, bool) or not ok:
                kind = {int: "an integer", float: "a number", str: "a string", list: "a list"}[want]
                if key.endswith("_gnc"):
                    kind = "an amount of GNC (a number or a decimal string)"
                if isinstance(value, int | float) and not isinstance(value, bool):
                    kind += " (finite, and below 2**63 in size)"
                raise ConfigError(f"{source}: [{section}] {key} must be {kind}")
            merged[section][key] = value
    extra = set(doc) - set(_SCHEMA) - {"allocation", "validator"}
    if extra:
        raise ConfigError(f"{source}: unknown section(s) {sorted(extra)}")

    allocations = []
    for i, entry in enumerate(doc.get("allocation", [])):
        where = f"{source}: allocation {i + 1}"
        if not isinstance(entry, dict) or "address" not in entry or "gnc" not in entry:
            raise ConfigError(f"{where}: needs 'address' and 'gnc'")
        try:
            address = address_from_text(str(entry["address"]))
        except GridnetError as exc:
            raise ConfigError(f"{where}: {exc}") from None
        allocations.append(Allocation(address=address, amount=_gnc_to_units(entry["gnc"], f"{where} gnc")))

    validators = []
    for i, entry in enumerate(doc.get("validator", [])):
        validators.append(_validator(entry, f"{source}: validator {i + 1}"))
    kind = merged["consensus"]["kind"].strip().lower()
    if kind not in CONSENSUS_KINDS:
        raise ConfigError(f"{source}: [consensus] kind {kind!r} is not one of {', '.join(CONSENSUS_KINDS)}")

    advisors = []
    for n, text in enumerate(merged["security"]["advisory_authorities"]):
        try:
            advisors.append(address_from_text(str(text)))
        except GridnetError as exc:
            raise ConfigError(f"{source}: [security] advisory_authorities[{n}]: {exc}") from None
    min_severity = severity_code(merged["security"]["min_severity"], f"{source}: [security] min_severity")
    mode = merged["market"]["mode"].strip().lower()
    if mode not in MARKET_MODES:
        raise ConfigError(f"{source}: [market] mode {mode!r} is not one of {', '.join(MARKET_MODES)}")
    pricing = merged["market"]["pricing"].strip().lower()
    if pricing not in PRICINGS:
        raise ConfigError(f"{source}: [market] pricing {pricing!r} is not one of {', '.join(PRICINGS)}")
    c, p = merged["chain"], merged["pow"]
    try:
        params = ChainParams(
            name=c["name"],
            genesis_time=parse_time_ms(c["genesis_time"], f"{source}: [chain] genesis_time"),
            block_interval_ms=_ms(c["block_interval_s"], f"{source}: [chain] block_interval_s"),
            initial_target=target_to_bytes(target_from_bits(p["initial_difficulty_bits"])),
            pow_limit=target_to_bytes(target_from_bits(p["min_difficulty_bits"])),
            retarget_window=p["retarget_window"],
            max_retarget_factor=p["max_retarget_factor"],
            median_time_span=p["median_time_span"],
            max_future_ms=_ms(c["max_future_s"], f"{source}: [chain] max_future_s"),
            max_block_bytes=c["max_block_bytes"],
            identity_target=target_to_bytes(target_from_bits(merged["identity"]["difficulty_bits"])),
            unbonding_delay=merged["staking"]["unbonding_delay_blocks"],
            max_dispute_window=merged["staking"]["max_dispute_window_blocks"],
            min_chain_work=_work_bytes(p["min_chain_work"], f"{source}: [pow] min_chain_work"),
            min_fee_per_byte=merged["fees"]["min_fee_per_byte"],
            initial_reward=_gnc_to_units(merged["reward"]["initial_gnc"], f"{source}: [reward] initial_gnc"),
            halving_interval=merged["reward"]["halving_interval"],
            allocations=tuple(allocations),
            advisory_authorities=tuple(advisors),
            advisory_min_severity=min_severity,
            market_mode=MARKET_MODES.index(mode),
            auction_close_ms=_ms(merged["market"]["auction_close_s"], f"{source}: [market] auction_close_s"),
            auction_pricing=PRICINGS.index(pricing),
            consensus=CONSENSUS_KINDS.index(kind),
            validators=tuple(sorted(validators, key=lambda v: v.key)),
        )
    except ValueError as exc:
        raise ConfigError(f"{source}: {exc}") from None
    return validate_params(params, source)


MAX_BLOCK_BYTES_LIMIT = 3 * 1024 * 1024
"""Largest max_block_bytes a genesis may set: a block must fit one peer message (4 MiB)."""


FILE_KEYS: Final = {
    "name": "[chain] name",
    "genesis_time": "[chain] genesis_time",
    "block_interval_ms": "[chain] block_interval_s",
    "initial_target": "[pow] initial_difficulty_bits",
    "pow_limit": "[pow] min_difficulty_bits",
    "retarget_window": "[pow] retarget_window",
    "max_retarget_factor": "[pow] max_retarget_factor",
    "median_time_span": "[pow] median_time_span",
    "max_future_ms": "[chain] max_future_s",
    "max_block_bytes": "[chain] max_block_bytes",
    "identity_target": "[identity] difficulty_bits",
    "unbonding_delay": "[staking] unbonding_delay_blocks",
    "max_dispute_window": "[staking] max_dispute_window_blocks",
    "min_chain_work": "[pow] min_chain_work",
    "min_fee_per_byte": "[fees] min_fee_per_byte",
    "initial_reward": "[reward] initial_gnc",
    "halving_interval": "[reward] halving_interval",
    "allocations": "[[allocation]]",
    "advisory_authorities": "[security] advisory_authorities",
    "advisory_min_severity": "[security] min_severity",
    "market_mode": "[market] mode",
    "auction_close_ms": "[market] auction_close_s",
    "auction_pricing": "[market] pricing",
    "consensus": "[consensus] kind",
    "validators": "[[validator]]",
}
"""Each parameter's key in a genesis file (what an error names)."""


def _overflows(value: object) -> bool:
    """Whether ``value`` (a parameter) holds an integer the encoding cannot carry (beyond 64 bits)."""
    try:
        encode(value)
    except OverflowError:
        return True
    return False


def validate_params(params: ChainParams, source: str = "genesis") -> ChainParams:
    """Range checks a person would want named before a chain starts."""
    fields = ChainParams.__struct_fields__
    try:
        decode(encode(params), ChainParams)
    except OverflowError:  # (an integer beyond 64 bits does not even encode: no DecodeError)
        wide = next(f for f in fields if _overflows(getattr(params, f)))
        raise ConfigError(
            f"{source}: a value is out of range ({FILE_KEYS.get(wide, wide)}: an integer beyond 64 bits)"
        ) from None
    except DecodeError as exc:
        # Name the genesis file's key, not the field's position: "$[13]" -> "[reward] initial_gnc".
        detail = re.sub(
            r"\$\[(\d+)\]",
            lambda m: FILE_KEYS.get(fields[int(m.group(1))], fields[int(m.group(1))]),
            str(exc),
        )
        raise ConfigError(f"{source}: a value is out of range ({detail})") from None
    checks = [
        (
            1 <= len(params.name) <= MAX_NAME_CHARS and params.name.isprintable(),
            f"[chain] name must be 1 to {MAX_NAME_CHARS} printable characters",
        ),
        (params.block_interval_ms > 0, "block_interval_s must be positive"),
        (params.retarget_window >= 1, "retarget_window must be at least 1"),
        (params.max_retarget_factor >= 1, "max_retarget_factor must be at least 1"),
        (params.median_time_span >= 1, "median_time_span must be at least 1"),
        (
            1024 <= params.max_block_bytes <= MAX_BLOCK_BYTES_LIMIT,
            f"max_block_bytes must be between 1024 and {MAX_BLOCK_BYTES_LIMIT}",
        ),
        (params.unbonding_delay >= 1, "unbonding_delay_blocks must be at least 1"),
        (
            max_supply(params) <= MAX_COIN,
            f"allocations plus all block rewards exceed {MAX_COIN} base units",
        ),
        (params.halving_interval >= 1, "halving_interval must be at least 1"),
        (
            1 <= params.advisory_min_severity <= len(SEVERITIES),
            f"min_severity must be one of {', '.join(SEVERITIES)}",
        ),
        (params.market_mode < len(MARKET_MODES), f"market mode must be one of {', '.join(MARKET_MODES)}"),
        (params.auction_pricing < len(PRICINGS), f"market pricing must be one of {', '.join(PRICINGS)}"),
        (
            0 < params.auction_close_ms < 24 * 3600 * 1000,
            "auction_close_s must be more than 0 and less than a day",
        ),
        (
            len(set(params.advisory_authorities)) == len(params.advisory_authorities),
            "advisory_authorities lists an address twice",
        ),
        (params.consensus < len(CONSENSUS_KINDS), f"consensus must be one of {', '.join(CONSENSUS_KINDS)}"),
        (
            not params.permissioned or 1 <= len(params.validators) <= MAX_VALIDATORS,
            f"a permissioned chain (consensus poa) names 1 to {MAX_VALIDATORS} validators ([[validator]])",
        ),
        (
            params.permissioned or not params.validators,
            'validators ([[validator]]) are only for a permissioned chain ([consensus] kind = "poa")',
        ),
        (
            len({v.key for v in params.validators}) == len(params.validators),
            "a validator key is listed twice",
        ),
        (
            all(v.votes >= 1 for v in params.validators)
            and sum(v.votes for v in params.validators) < MAX_TOTAL_VOTES,
            f"each validator has at least 1 vote and all together fewer than {MAX_TOTAL_VOTES}",
        ),
        (
            params.initial_target_int <= params.pow_limit_int,
            "initial_difficulty_bits must be at least min_difficulty_bits",
        ),
    ]
    for ok, message in checks:
        if not ok:
            raise ConfigError(f"{source}: {message}")
    if params.unbonding_delay <= params.max_dispute_window:
        raise UnbondingTooShort(
            f"{source}: unbonding_delay_blocks ({params.unbonding_delay}) must exceed "
            f"max_dispute_window_blocks ({params.max_dispute_window}): a stake must not leave "
            "before the fraud it backs can be proven"
        )
    return params


GENESIS_NAME: Final = "genesis.toml"
"""The genesis a data directory's chain was created from, as ``chain init`` writes it there."""


def load_genesis_file(path: Path) -> ChainParams:
    return params_from_dict(read_toml(path, "genesis file"), str(path))


def default_params(allocations: tuple[Allocation, ...] = ()) -> ChainParams:
    return msgspec.structs.replace(_defaults(), allocations=allocations)


@functools.cache
def _defaults() -> ChainParams:
    """The built-in parameters, built once (every scenario a sweep loads asks for them)."""
    return params_from_dict({}, "defaults")


def params_to_toml(params: ChainParams) -> str:
    """A genesis file that reproduces ``params`` (targets rounded to whole bits)."""

    def bits(raw: bytes) -> int:
        return 256 - (target_from_bytes(raw).bit_length() - 1)

    when = dt.datetime.fromtimestamp(params.genesis_time / 1000, tz=dt.UTC)
    lines = [
        "[chain]",
        f'name = "{params.name}"',
        f'genesis_time = "{when.isoformat().replace("+00:00", "Z")}"',
        f"block_interval_s = {params.block_interval_ms / 1000}",
        f"max_block_bytes = {params.max_block_bytes}",
        f"max_future_s = {params.max_future_ms / 1000}",
        "",
        "[pow]",
        f"initial_difficulty_bits = {bits(params.initial_target)}",
        f"min_difficulty_bits = {bits(params.pow_limit)}",
        f"retarget_window = {params.retarget_window}",
        f"max_retarget_factor = {params.max_retarget_factor}",
        f"median_time_span = {params.median_time_span}",
        f'min_chain_work = "{params.min_chain_work_int}"',
        "",
        "[identity]",
        f"difficulty_bits = {bits(params.identity_target)}",
        "",
        "[staking]",
        f"unbonding_delay_blocks = {params.unbonding_delay}",
        f"max_dispute_window_blocks = {params.max_dispute_window}",
        "",
        "[fees]",
        f"min_fee_per_byte = {params.min_fee_per_byte}",
        "",
        "[reward]",
        f"initial_gnc = {_units_to_gnc(params.initial_reward)}",
        f"halving_interval = {params.halving_interval}",
        "",
        "[security]",
        "advisory_authorities = [{}]".format(
            ", ".join(f'"{address_to_text(a)}"' for a in params.advisory_authorities)
        ),
        f'min_severity = "{SEVERITIES[params.advisory_min_severity - 1]}"',
        "",
        "[market]",
        f'mode = "{MARKET_MODES[params.market_mode]}"',
        f"auction_close_s = {params.auction_close_ms / 1000}",
        f'pricing = "{PRICINGS[params.auction_pricing]}"',
        "",
        "[consensus]",
        f'kind = "{CONSENSUS_KINDS[params.consensus]}"',
    ]
    for v in params.validators:
        lines += ["", "[[validator]]", f'key = "{v.key.hex()}"', f"votes = {v.votes}"]
    for a in params.allocations:
        lines += [
            "",
            "[[allocation]]",
            f'address = "{address_to_text(a.address)}"',
            f"gnc = {_units_to_gnc(a.amount)}",
        ]
    return "\n".join(lines) + "\n"
