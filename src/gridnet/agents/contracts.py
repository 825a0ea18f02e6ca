"""What every party to an energy contract computes the same way from public data.

The auction's result is public (anyone holding the orders recomputes it) and so are the
meters' signed readings: from them, each contract's *due* energy follows. A contract delivers
no more than its seller's meter exported, the DSO's substation meter as any other, and no more
than its buyer's meter imported: a seller whose meter exported less than it sold in an
interval delivered to each of its contracts a share in proportion (rounded down), and a buyer
whose meter imported less than those shares (less what it took under something else than a
contract, ``World.received_otherwise``) received of each a share in proportion again. The DSO
as a buyer takes all a home exported to it: its substation meter reads the area's net flow
through the transformers (losses included), not what it received. The buyer's device
acknowledges what is due, the seller is paid for it, and the rest of the deposit goes back to
the buyer when the contract closes.
"""

from __future__ import annotations

from collections import defaultdict
from typing import TYPE_CHECKING

from gridnet.contracts.channel import ContractTerms, SignedState, contract_id
from gridnet.encoding import decode_lenient
from gridnet.ledger.txs.contract import CONTRACTS, CloseContract, ContractRecord, SettleContract
from gridnet.ledger.txs.meter import READINGS, reading_key
from gridnet.units import Address, Interval, Wh, interval_of, interval_start

if TYPE_CHECKING:
    from gridnet.agents.base import Agent
    from gridnet.agents.world import Deal, Look, World


def dues(world: World, interval: Interval) -> dict[bytes, Wh]:
    """Contract id -> the energy its seller delivered under it in ``interval`` [Wh]: within
    what the seller's meter exported and what the buyer's meter imported (the DSO's excepted),
    in proportion to each party's contracts, rounded down."""
    cache = world.dues_cache
    if interval in cache:
        return cache[interval]
    deals = world.deals.get(interval, [])
    sold: dict[Address, Wh] = defaultdict(int)
    for deal in deals:
        sold[deal.seller.address] += deal.trade.wh
    published = world.readings.get(interval, {})
    complete = True
    sent: dict[bytes, Wh] = {}
    for deal in deals:
        for party in (deal.seller, deal.buyer):
            complete = complete and party.meter is not None and party.meter.meter_id in published
        exported, _ = world.metered(deal.seller, interval)
        total = sold[deal.seller.address]
        sent[deal.cid] = deal.trade.wh if exported >= total else deal.trade.wh * exported // total
    taken: dict[Address, Wh] = defaultdict(int)
    for deal in deals:
        taken[deal.buyer.address] += sent[deal.cid]
    out: dict[bytes, Wh] = {}
    for deal in deals:
        if deal.buyer.role == "dso":  # (the grid: it takes all that is exported to it)
            out[deal.cid] = sent[deal.cid]
            continue
        room = import_room(world, deal.buyer, interval)
        total = taken[deal.buyer.address]
        out[deal.cid] = sent[deal.cid] if room >= total else sent[deal.cid] * room // total
    if complete:  # (a party whose reading is still to come has delivered or taken nothing yet)
        cache[interval] = out
    return out


def import_room(world: World, buyer: Agent, interval: Interval) -> Wh:
    """What ``buyer``'s meter imported in ``interval`` that its contracts may deliver: less
    what it took under something else (an aggregators' record, redeemed energy) [Wh]."""
    _, imported = world.metered(buyer, interval)
    otherwise = world.received_otherwise.get(interval, {}).get(buyer.address, 0)
    otherwise -= world.from_area.get(interval, {}).get(buyer.address, 0)  # (no contract's: see there)
    return max(0, imported - otherwise)


def contracts_on_chain(world: World) -> dict[bytes, ContractRecord]:
    """Contract id -> its record, for every contract the chain opened."""
    prefix = CONTRACTS.prefix
    return {
        k[len(prefix) :]: decode_lenient(v, ContractRecord)
        for k, v in world.backend.chain().values.items()
        if k[: len(prefix)] == prefix
    }


def paid_wh(records: dict[bytes, ContractRecord]) -> dict[tuple[bytes, Interval], Wh]:
    """(contract id, interval) -> the energy the chain paid for under the contract in that
    interval (its record's ``paid``). A contract the chain never opened, or whose settlements
    it refused (the seller's meter became vulnerable), paid less than its seller delivered, or
    nothing: reports count as traded and paid only this."""
    return {(cid, d.interval): d.wh for cid, r in records.items() for d in r.paid}


def deliveries(world: World, records: dict[bytes, ContractRecord]) -> list[tuple[Interval, Deal, Wh, Wh]]:
    """Every deal of the run, in delivery order: (interval, deal, Wh its seller delivered under
    it, Wh of those the chain paid for)."""
    paid = paid_wh(records)
    out: list[tuple[Interval, Deal, Wh, Wh]] = []
    for i in range(world.first, world.last + 1):
        due = dues(world, i)  # (once per interval: an interval still missing readings is not cached)
        out.extend((i, deal, due[deal.cid], paid.get((deal.cid, i), 0)) for deal in world.deals.get(i, []))
    return out


PATIENCE_MS = 2 * 3600 * 1000
"""How long after a contract's last interval a device waits for something on chain (the
contract opened, a state settled) before it gives up [ms]: an open or a settlement the chain
refused (a meter became vulnerable) never comes."""


def settle_when_ready(world: World, settler: Agent, state: SignedState) -> None:
    """``settler`` submits ``state`` once its contract and the seller meter's readings of
    every interval it acknowledges are on chain (or gives up, ``PATIENCE_MS`` after them)."""

    def ready(look: Look) -> bool:
        record = look.view.get(CONTRACTS, state.state.contract)
        if record is None:
            return False
        meter = record.terms.seller_meter
        return all(
            look.view.get(READINGS, reading_key(meter, d.interval)) is not None
            for d in state.state.deliveries
        )

    def settle(_look: Look) -> None:
        world.submit_soon(settler, SettleContract(state))

    last = max((d.interval for d in state.state.deliveries), default=interval_of(world.now()))
    world.when(settler, ready, settle, interval_start(last + 1) + PATIENCE_MS)


def close_when_done(world: World, buyer: Agent, terms: ContractTerms, settled_seq: int) -> None:
    """``buyer`` closes the contract (its remainder comes back) once the state it last sent
    (``settled_seq``; 0 = none) is settled, or ``PATIENCE_MS`` after the contract's end if it
    never is, and the dispute window has passed since (the closing block is one past it: a
    dispute submitted in the window's last block stands)."""
    cid = contract_id(terms)
    give_up = interval_start(terms.last_interval + 1) + PATIENCE_MS

    def ready(look: Look) -> bool:
        record: ContractRecord | None = look.view.get(CONTRACTS, cid)
        if record is None or record.closed:
            return False
        if settled_seq and record.settled_seq < settled_seq and world.now() < give_up:
            return False
        t = record.terms
        return (
            world.now() >= interval_start(t.last_interval + 1)
            and look.height >= record.last_change_height + t.dispute_window
        )

    def close(look: Look) -> None:
        record = look.view.get(CONTRACTS, cid)
        if record is not None and record.remaining:
            world.submit_soon(buyer, CloseContract(cid))

    world.when(buyer, ready, close, give_up + PATIENCE_MS)  # (for a contract that never opened)


def dispute_if_short(world: World, seller: Agent, deal: Deal, delivered: Wh) -> None:
    """``seller`` watches the contract: once settled, a state paying less than ``delivered``
    (its meter's signed reading shows it) is disputed, within the window, with the buyer's
    later state acknowledging it all."""
    cid = deal.cid

    def settled(look: Look) -> bool:
        record = look.view.get(CONTRACTS, cid)
        return record is not None and record.settled

    def check(look: Look) -> None:
        record = look.view.get(CONTRACTS, cid)
        if record is None or record.closed or record.paid_wh >= delivered:
            return
        if look.height + 1 >= record.last_change_height + record.terms.dispute_window:
            return  # too late: the buyer may close it in the next block
        state = deal.buyer.final_state(cid)
        if state is not None:
            seller.disputes[cid] = delivered
            world.submit_soon(seller, SettleContract(state))

    world.when(seller, settled, check, interval_start(deal.terms.last_interval + 1) + PATIENCE_MS)
