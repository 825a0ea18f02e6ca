"""Where the chain's coin is: every base unit it created, held somewhere or destroyed.

The chain creates coin in two ways only: the genesis allocations and each block's reward
(``params.block_reward``; a coinbase claiming anything else is invalid). Every rule after that
moves coin (from an account into an escrow, from an escrow to an account) or destroys it
(``StateView.destroy``: the part of a forfeited stake not paid to the wronged party, a
disputed tender's price). So at every height

    allocations + rewards = what the state holds + destroyed

where what the state holds is read from the records themselves, apart from the rules that
moved it: accounts (spendable, bonded, unbonding), and each escrow (a contract's deposit left,
a bid's lock until its auction clears, a tender's deposit and its bidders' penalty deposits,
an EV deal's deposits, a relay pool's coin not paid out, a credit bank's capital, an
aggregator consortium's treasury). ``account`` sums them; the audit (``ledger/verify.py``)
checks the identity at the head of every chain it replays (``SupplyMismatch``), so a rule
that made or lost coin by mistake cannot go unseen. Every state table is named here, as
holding coin or not: a new table must say which (a test checks).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Final

from gridnet.errors import SupplyMismatch
from gridnet.ledger.params import ChainParams, block_reward
from gridnet.ledger.state import ACCOUNTS, DESTROYED, DESTROYED_KEY, Account, Table, table_of
from gridnet.ledger.txs.aggregator import AGGREGATORS, Aggregators
from gridnet.ledger.txs.auction import AUCTION_PAGES, AUCTIONS, AuctionPage
from gridnet.ledger.txs.contract import CONTRACTS, ContractRecord
from gridnet.ledger.txs.credit import BANKS, CreditBank
from gridnet.ledger.txs.maintenance import TENDERS, Status, Tender
from gridnet.ledger.txs.relay import POOLS, TokenPool
from gridnet.ledger.txs.vehicle import EV_DEALS, DealRecord, DealStatus
from gridnet.units import Height, Units

Lookup = Callable[[Table[Any], bytes], Any]
"""A table's entry at a key, decoded (None when absent)."""


def _account(key: bytes, a: Account, get: Lookup) -> int:
    return a.balance + a.bonded + a.unbonding  # (the unbonding queues list the same coin)


def _contract(key: bytes, c: ContractRecord, get: Lookup) -> int:
    return c.remaining


def _auction_page(key: bytes, page: AuctionPage, get: Lookup) -> int:
    """A bid's lock is held until its auction clears (then it is a contract's deposit, or
    returned); the pages stay with the cleared auction's record."""
    auction = get(AUCTIONS, key[:-4])
    return 0 if auction is not None and auction.cleared else sum(o.locked for o in page.orders)


def _tender(key: bytes, t: Tender, get: Lookup) -> int:
    """An open tender holds its deposit and every bid's penalty deposit; an agreed or claimed
    one its deposit and the diagnosis node's (the others went back at the award); a closed
    one nothing."""
    if t.status == Status.OPEN:
        return t.deposit + sum(b.penalty for b in t.bids)
    if t.status in (Status.AGREED, Status.CLAIMED):
        return t.deposit + next((b.penalty for b in t.bids if b.bidder == t.diagnosis_node), 0)
    return 0


def _ev_deal(key: bytes, d: DealRecord, get: Lookup) -> int:
    return d.buyer_deposit + d.seller_deposit if d.status == DealStatus.OPEN else 0


def _pool(key: bytes, p: TokenPool, get: Lookup) -> int:
    return p.amount - p.paid


def _bank(key: bytes, b: CreditBank, get: Lookup) -> int:
    return b.capital


def _consortium(key: bytes, a: Aggregators, get: Lookup) -> int:
    return a.treasury


HOLDINGS: Final[dict[str, Callable[[bytes, Any, Lookup], int]]] = {
    ACCOUNTS.name: _account,
    CONTRACTS.name: _contract,
    AUCTION_PAGES.name: _auction_page,
    TENDERS.name: _tender,
    EV_DEALS.name: _ev_deal,
    POOLS.name: _pool,
    BANKS.name: _bank,
    AGGREGATORS.name: _consortium,
}
"""Tables whose entries hold coin, by table name: the coin one entry holds [base units]."""

NO_COIN: Final = frozenset(
    {
        # core, consensus and identity
        "identities",
        "unbonding",  # (the accounts' ``unbonding`` counts this coin)
        "destroyed",
        "validator_set",
        "finality",
        "finality_tallies",
        "recent_blocks",
        "validator_since",
        "validator_change",
        "validator_hand_over",
        "authorities",
        "flags",
        "revoked",
        "hop_frauds",
        "pools_reclaimed",  # (a reclaimed pool's id: its coin went back to its owner)
        # meters, grid, market records
        "meters",
        "readings",
        "overrides",
        "auctions",  # (the bids' locks are counted on its pages)
        "auction_owner_orders",
        "open_intervals",
        "open_auctions",
        "aggregator_records",
        "aggregator_periods",
        # maintenance, credit (a loan is a claim on its borrower, not coin)
        "equipment",
        "maintenance_credits",
        "equipment_tender",
        "credit_histories",
        "credit_loans",
        "credit_repaid",
        # vehicles, privacy, monitoring, firmware, advisories
        "vehicles",
        "ev_hotspots",
        "privacy_groups",
        "privacy_aggregates",
        "privacy_bills",
        "stations",
        "fdi_flags",
        "releases",
        "advisories",
        # Helios credits are the controller's own units, not coin
        "helios_controllers",
        "helios_islands",
        "helios_island_members",
        "helios_credits",
        "helios_enrollments",
        "helios_redemptions",
        "helios_open_redemptions",
    }
)
"""Tables whose entries hold no coin."""


@dataclass(frozen=True, slots=True)
class SupplyAccount:
    """The chain's coin at one height [base units]."""

    height: int
    allocated: int
    """The genesis allocations."""
    rewarded: int
    """Every block reward to ``height``."""
    held: dict[str, int]
    """What the state holds, per table holding coin (accounts, each kind of escrow)."""
    destroyed: int

    @property
    def created(self) -> int:
        return self.allocated + self.rewarded

    @property
    def unaccounted(self) -> int:
        """Created less held less destroyed: 0 on every valid chain."""
        return self.created - sum(self.held.values()) - self.destroyed

    def as_dict(self) -> dict[str, Any]:
        return {
            "height": self.height,
            "created": self.created,
            "allocated": self.allocated,
            "rewarded": self.rewarded,
            "held": dict(self.held),
            "held_total": sum(self.held.values()),
            "destroyed": self.destroyed,
            "unaccounted": self.unaccounted,
        }


def rewards_to(params: ChainParams, height: Height) -> Units:
    """Every block reward from height 1 to ``height`` (a reward is constant between halvings)."""
    total, h = 0, 1
    while h <= height:
        end = min(height, ((h - 1) // params.halving_interval + 1) * params.halving_interval)
        reward = block_reward(params, h)
        if reward == 0:
            break
        total += reward * (end - h + 1)
        h = end + 1
    return total


def account(params: ChainParams, height: Height, values: Mapping[bytes, bytes]) -> SupplyAccount:
    """Where the coin of the state ``values`` (the state after the block at ``height``) is."""
    decoded: dict[bytes, Any] = {}

    def get(table: Table[Any], key: bytes) -> Any:
        full = table.prefix + key
        if full not in decoded:
            raw = values.get(full)
            decoded[full] = None if raw is None else table.decode(raw)
        return decoded[full]

    held = dict.fromkeys(HOLDINGS, 0)
    destroyed = 0
    for full, raw in values.items():
        table = table_of(full)
        if table is None:
            continue
        if table is DESTROYED:
            if full[1:] == DESTROYED_KEY:
                destroyed = DESTROYED.decode(raw).total
            continue
        holding = HOLDINGS.get(table.name)
        if holding is not None:
            held[table.name] += holding(full[1:], table.decode(raw), get)
    allocated = sum(a.amount for a in params.allocations)
    return SupplyAccount(height, allocated, rewards_to(params, height), held, destroyed)


def check(params: ChainParams, height: Height, values: Mapping[bytes, bytes]) -> SupplyAccount:
    """``account``, or ``SupplyMismatch`` when the state holds more or less than the chain
    created less what it destroyed."""
    supply = account(params, height, values)
    if supply.unaccounted:
        held = ", ".join(f"{name} {units}" for name, units in supply.held.items() if units)
        off = supply.unaccounted
        raise SupplyMismatch(
            f"at height {height} the chain created {supply.created} base units and its rules destroyed "
            f"{supply.destroyed}; the state holds {sum(supply.held.values())} ({held}), "
            f"{abs(off)} {'fewer' if off > 0 else 'more'}: a rule {'lost' if off > 0 else 'made'} coin"
        )
    return supply
