"""Energy contracts on chain: every rule broken asserts its named rejection; payouts,
refunds and the no-double-selling invariant hold exactly."""

from __future__ import annotations

from pathlib import Path

import msgspec
import pytest

from gridnet.contracts.channel import (
    MAX_SPAN,
    ContractState,
    ContractTerms,
    Delivery,
    LineFee,
    SignedState,
    SignedTerms,
    contract_id,
    deposit,
    sign_state,
    sign_terms,
)
from gridnet.crypto.keys import PrivateKey
from gridnet.errors import (
    BlockTransactionInvalid,
    ContractClosed,
    ContractExists,
    ContractForAnotherChain,
    ContractLimitExceeded,
    DeliveryOutsideContract,
    DisputeWindowOpen,
    DisputeWindowTooLong,
    DoubleSelling,
    FraudAlreadyReported,
    InsufficientBalance,
    MalformedContract,
    MeterBindingInvalid,
    MeterNotOwned,
    MissingPartySignature,
    MissingReading,
    NotAuthorized,
    NotEquivocation,
    StaleState,
    StateRegression,
    StateSignatureInvalid,
    UnknownContract,
)
from gridnet.ledger.chain import AddStatus
from gridnet.ledger.genesis import chain_id_of
from gridnet.ledger.params import ChainParams
from gridnet.ledger.state import IDENTITIES
from gridnet.ledger.transition import validate_transaction
from gridnet.ledger.txs.authority import RegisterAuthority
from gridnet.ledger.txs.bond import Bond
from gridnet.ledger.txs.contract import (
    CONTRACTS,
    CloseContract,
    OpenContract,
    ReportEquivocation,
    SettleContract,
)
from gridnet.ledger.txs.meter import METERS, READINGS, SubmitReadings, reading_key, registration
from gridnet.meter.certificate import issue_certificate
from gridnet.meter.telemetry import SimulatedMeter
from gridnet.security.roles import Role
from gridnet.units import UNITS_PER_GNC, energy_cost, interval_of
from tests.helpers import (
    GENESIS_TIME,
    Actors,
    ahead_checks_answered,
    new_chain,
    next_block,
    register_identity,
    test_params,
)
from tests.ledger.forge import forge_block
from tests.ledger.vectors import record_rejection, record_valid, snapshot

MAKER, BUYER, SELLER, LINE_A, LINE_B, OTHER = (PrivateKey.from_label(f"contract-{n}") for n in range(6))
PEOPLE = (MAKER, BUYER, SELLER, LINE_A, LINE_B, OTHER)
SELLER_METER = SimulatedMeter(PrivateKey.from_label("seller-meter"))
BUYER_METER = SimulatedMeter(PrivateKey.from_label("buyer-meter"))
PAST = interval_of(GENESIS_TIME) - 10  # an interval that has ended when the chain starts
PRICE, FEE_A, FEE_B = 20 * UNITS_PER_GNC // 100, 3_000_000, 1_500_000  # per kWh


class Market(Actors):
    """The contract parties on one chain."""


def market_params(**params: object) -> ChainParams:
    return test_params(PEOPLE, gnc=1_000, **params)


CHAIN = chain_id_of(market_params())


def terms(**changes: object) -> ContractTerms:
    """The terms the tests' parties sign, for the chain ``open_market`` makes with its default
    parameters (a market with others passes ``chain``)."""
    base = ContractTerms(
        chain=CHAIN,
        buyer=BUYER.address,
        seller=SELLER.address,
        buyer_meter=BUYER_METER.meter_id,
        seller_meter=SELLER_METER.meter_id,
        line_fees=(LineFee(LINE_A.address, FEE_A), LineFee(LINE_B.address, FEE_B)),
        price=PRICE,
        first_interval=PAST,
        last_interval=PAST + 1,
        max_wh=2_000,
        dispute_window=2,
        nonce=0,
    )
    return msgspec.structs.replace(base, **changes)


def signed(
    t: ContractTerms, signers: tuple[PrivateKey, ...] = (BUYER, SELLER, LINE_A, LINE_B)
) -> SignedTerms:
    return SignedTerms(t, tuple(sign_terms(t, k) for k in signers))


def state(t: ContractTerms, seq: int, *wh: int, key: PrivateKey = BUYER) -> SignedState:
    deliveries = tuple(Delivery(PAST + i, w) for i, w in enumerate(wh))
    return sign_state(ContractState(contract_id(t), seq, deliveries), key)


def open_market(path: Path, **params: object) -> Market:
    """A chain (``test_params`` with ``params``) where the buyer and seller have identities
    and meters, a manufacturer certified the meters, and the seller's meter exported
    1,000 Wh in PAST and 600 Wh in PAST + 1."""
    m = Market(new_chain(path, market_params(**params)), PEOPLE)
    m.mine(*(m.tx(k, register_identity(m.chain, k).payload) for k in (MAKER, BUYER, SELLER)))
    m.mine(m.tx(MAKER, RegisterAuthority(int(Role.MANUFACTURER), "Acme")))
    certs = [
        issue_certificate(MAKER, meter.key.public_key, vendor="Acme", model="M", firmware="1", serial=name)
        for meter, name in ((SELLER_METER, "s"), (BUYER_METER, "b"))
    ]
    m.mine(
        m.tx(SELLER, registration(SELLER_METER.key, certs[0], "north", SELLER.address, m.chain.chain_id)),
        m.tx(BUYER, registration(BUYER_METER.key, certs[1], "north", BUYER.address, m.chain.chain_id)),
    )
    # The seller's meter signed 1,000 Wh exported in PAST and 600 Wh in PAST + 1 (a fresh
    # meter object: its counters start at zero whatever ran before, so vectors are stable).
    meter = SimulatedMeter(SELLER_METER.key)
    readings = (meter.read(PAST, 1_000, 0), meter.read(PAST + 1, 600, 0))
    m.mine(m.tx(OTHER, SubmitReadings(readings)))
    return m


@pytest.fixture
def market(tmp_path: Path) -> Market:
    return open_market(tmp_path / "c")


def test_opening_locks_the_deposit(market: Market) -> None:
    t = terms()
    before = market.chain.account(BUYER.address).balance
    open_tx = market.tx(BUYER, OpenContract(signed(t)))
    with ahead_checks_answered(open_tx, market.chain):  # the parties' signatures
        market.mine(open_tx)
    record = market.chain.view().get(CONTRACTS, contract_id(t))
    assert record is not None and record.remaining == deposit(t)
    assert deposit(t) == energy_cost(2_000, PRICE) + energy_cost(2_000, FEE_A) + energy_cost(2_000, FEE_B)
    assert market.chain.account(BUYER.address).balance == before - deposit(t) - open_tx.fee


def test_contract_missing_a_line_owners_signature(market: Market) -> None:
    bad = market.pending(BUYER, OpenContract(signed(terms(), (BUYER, SELLER, LINE_A))))
    with pytest.raises(MissingPartySignature):
        validate_transaction(bad, market.chain.params, market.chain.chain_id)


def test_contract_terms_out_of_shape(market: Market) -> None:
    """A contract covers 1 to MAX_SPAN intervals, first to last, for some energy, between two
    parties: terms outside that are refused by name before any state is read."""
    chain = market.chain

    def check(t: ContractTerms) -> None:
        validate_transaction(market.pending(BUYER, OpenContract(signed(t))), chain.params, chain.chain_id)

    check(terms(first_interval=PAST, last_interval=PAST))  # one interval
    check(terms(first_interval=PAST, last_interval=PAST + MAX_SPAN - 1))  # the longest
    cases = (
        (terms(first_interval=PAST + 1, last_interval=PAST), f"1 to {MAX_SPAN} intervals"),  # reversed
        (terms(first_interval=PAST, last_interval=PAST + MAX_SPAN), f"1 to {MAX_SPAN} intervals"),
        (terms(max_wh=0), "zero energy"),
        (terms(seller=BUYER.address), "must differ"),
    )
    for bad, fragment in cases:
        with pytest.raises(MalformedContract, match=fragment):
            check(bad)


def test_a_registration_copied_from_the_mempool_sells_nothing(tmp_path: Path) -> None:
    """The red team's front-running: the seller's registration is pending; another identity
    copies its payload and has it offered first. The copy is refused (the meter bound its
    registration to the seller on this chain), the seller's own registration is then mined,
    and the copier can neither own the meter nor sell its export under a contract."""
    m = Market(new_chain(tmp_path / "c", market_params()), PEOPLE)
    m.mine(*(m.tx(k, register_identity(m.chain, k).payload) for k in (MAKER, BUYER, SELLER, OTHER)))
    m.mine(m.tx(MAKER, RegisterAuthority(int(Role.MANUFACTURER), "Acme")))
    cert, buyers = (
        issue_certificate(MAKER, meter.key.public_key, vendor="Acme", model="M", firmware="1", serial=name)
        for meter, name in ((SELLER_METER, "s"), (BUYER_METER, "b"))
    )
    m.mine(m.tx(BUYER, registration(BUYER_METER.key, buyers, "north", BUYER.address, m.chain.chain_id)))
    victim = m.pending(
        SELLER, registration(SELLER_METER.key, cert, "north", SELLER.address, m.chain.chain_id)
    )
    assert isinstance(m.refused(OTHER, victim.payload), MeterBindingInvalid)
    pre = snapshot(m.chain)
    block = forge_block(m.chain, [m.pending(OTHER, victim.payload)])
    with pytest.raises(BlockTransactionInvalid) as info:
        m.chain.add_block(block, now=block.header.timestamp)
    assert type(info.value.error) is MeterBindingInvalid and info.value.index == 1
    record_rejection(
        "meter_registration_copied_by_another_sender",
        "an identity sends a copy of the seller's pending RegisterMeter: the meter bound it to the seller",
        pre,
        block,
        block.header.timestamp,
        info.value,
    )
    pre = snapshot(m.chain)
    block = next_block(m.chain, [victim])
    assert m.chain.add_block(block, now=block.header.timestamp).status is AddStatus.EXTENDED
    record_valid(
        "meter_registration_bound_to_its_owner",
        "the seller registers its meter, which bound the registration to the seller on this chain",
        pre,
        block,
        block.header.timestamp,
        m.chain,
    )
    m.nonce[SELLER.address] += 1
    record = m.chain.view().get(METERS, SELLER_METER.meter_id)
    assert record is not None and record.owner == SELLER.address
    assert isinstance(m.refused(OTHER, victim.payload), MeterBindingInvalid)
    meter = SimulatedMeter(SELLER_METER.key)
    m.mine(m.tx(BUYER, SubmitReadings((meter.read(PAST, 1_000, 0), meter.read(PAST + 1, 600, 0)))))
    t = terms(seller=OTHER.address, line_fees=(), max_wh=1_600)  # (the seller's meter)
    assert isinstance(m.refused(BUYER, OpenContract(signed(t, (BUYER, OTHER)))), MeterNotOwned)


def test_open_rules(market: Market) -> None:
    assert isinstance(market.refused(SELLER, OpenContract(signed(terms()))), NotAuthorized)
    foreign_meter = terms(seller_meter=BUYER_METER.meter_id)
    assert isinstance(market.refused(BUYER, OpenContract(signed(foreign_meter))), MeterNotOwned)
    huge = terms(max_wh=10**12)
    assert isinstance(market.refused(BUYER, OpenContract(signed(huge))), InsufficientBalance)
    market.mine(market.tx(BUYER, OpenContract(signed(terms()))))
    assert isinstance(market.refused(BUYER, OpenContract(signed(terms()))), ContractExists)


def test_terms_signed_for_one_chain_open_no_contract_on_another(market: Market, tmp_path: Path) -> None:
    """The same parties, meters and readings on a second chain: the terms the seller and the
    line owners signed for the first are refused there, by name, even sent by the buyer; the
    same terms made for the second chain lack their signatures; and a state the buyer signed
    names a contract that does not exist there."""
    t = terms()
    market.mine(market.tx(BUYER, OpenContract(signed(t))))
    other = open_market(tmp_path / "other", unbonding_delay=4)
    assert other.chain.chain_id != market.chain.chain_id
    replayed = OpenContract(signed(t))
    assert isinstance(other.refused(BUYER, replayed), ContractForAnotherChain)
    pre = snapshot(other.chain)
    block = forge_block(other.chain, [other.pending(BUYER, replayed)])
    with pytest.raises(BlockTransactionInvalid) as info:
        other.chain.add_block(block, now=block.header.timestamp)
    assert type(info.value.error) is ContractForAnotherChain and info.value.index == 1
    record_rejection(
        "contract_for_another_chain",
        "the buyer opens, on a second chain, a contract whose terms every party signed for the first",
        pre,
        block,
        block.header.timestamp,
        info.value,
    )
    moved = SignedTerms(terms(chain=other.chain.chain_id), replayed.signed.signatures)
    with pytest.raises(MissingPartySignature):
        validate_transaction(
            other.pending(BUYER, OpenContract(moved)), other.chain.params, other.chain.chain_id
        )
    assert isinstance(other.refused(SELLER, SettleContract(state(t, 1, 500))), UnknownContract)
    other.mine(other.tx(BUYER, OpenContract(signed(terms(chain=other.chain.chain_id)))))  # agreed there too
    assert isinstance(other.refused(SELLER, SettleContract(state(t, 1, 500))), UnknownContract)  # another id


def test_dispute_window_longer_than_the_chain_allows(market: Market) -> None:
    chain = market.chain
    longest = terms(dispute_window=chain.params.max_dispute_window)
    too_long = terms(dispute_window=chain.params.max_dispute_window + 1)
    with pytest.raises(DisputeWindowTooLong):
        validate_transaction(
            market.pending(BUYER, OpenContract(signed(too_long))), chain.params, chain.chain_id
        )
    pre = snapshot(chain)
    block = forge_block(chain, [market.pending(BUYER, OpenContract(signed(too_long)))])
    with pytest.raises(BlockTransactionInvalid) as info:
        chain.add_block(block, now=block.header.timestamp)
    assert type(info.value.error) is DisputeWindowTooLong and info.value.index == 1
    record_rejection(
        "contract_dispute_window_too_long",
        "the buyer opens a contract whose dispute window is one block above max_dispute_window",
        pre,
        block,
        block.header.timestamp,
        info.value,
    )
    market.mine(market.tx(BUYER, OpenContract(signed(longest))))
    assert chain.view().get(CONTRACTS, contract_id(longest)) is not None


def test_settlement_pays_seller_and_each_line_owner_exactly(market: Market) -> None:
    t = terms()
    market.mine(market.tx(BUYER, OpenContract(signed(t))))
    balances = {k.address: market.chain.account(k.address).balance for k in (SELLER, LINE_A, LINE_B)}
    market.mine(market.tx(OTHER, SettleContract(state(t, 1, 500))))
    second = SettleContract(state(t, 2, 900, 300))
    settle = market.tx(OTHER, second)
    with ahead_checks_answered(settle, market.chain):  # the buyer's, keyed
        market.mine(settle)
    got = {a: market.chain.account(a).balance - b for a, b in balances.items()}
    assert got == {
        SELLER.address: energy_cost(1_200, PRICE),
        LINE_A.address: energy_cost(1_200, FEE_A),
        LINE_B.address: energy_cost(1_200, FEE_B),
    }
    record = market.chain.view().get(CONTRACTS, contract_id(t))
    assert record is not None and record.remaining == deposit(t) - sum(got.values())
    sold = market.chain.view().get(READINGS, reading_key(SELLER_METER.meter_id, PAST))
    assert sold is not None and sold.sold_wh == 900


def test_settlement_with_a_stale_state_after_a_newer_one(market: Market) -> None:
    t = terms()
    market.mine(market.tx(BUYER, OpenContract(signed(t))))
    market.mine(market.tx(SELLER, SettleContract(state(t, 5, 800))))
    assert isinstance(market.refused(BUYER, SettleContract(state(t, 3, 400))), StaleState)


def test_state_rules(market: Market) -> None:
    t = terms()
    market.mine(market.tx(BUYER, OpenContract(signed(t))))
    assert isinstance(
        market.refused(SELLER, SettleContract(state(t, 1, 500, key=SELLER))), StateSignatureInvalid
    )
    market.mine(market.tx(SELLER, SettleContract(state(t, 1, 500))))
    assert isinstance(market.refused(SELLER, SettleContract(state(t, 2, 400))), StateRegression)
    outside = sign_state(ContractState(contract_id(t), 2, (Delivery(PAST + 5, 10),)), BUYER)
    assert isinstance(market.refused(SELLER, SettleContract(outside)), DeliveryOutsideContract)
    assert isinstance(
        market.refused(SELLER, SettleContract(state(t, 2, 1_000, 1_001))), ContractLimitExceeded
    )


def test_settlement_needs_the_sellers_reading(market: Market) -> None:
    t = terms(first_interval=PAST + 2, last_interval=PAST + 2)
    market.mine(market.tx(BUYER, OpenContract(signed(t))))
    no_reading = sign_state(ContractState(contract_id(t), 1, (Delivery(PAST + 2, 10),)), BUYER)
    assert isinstance(market.refused(SELLER, SettleContract(no_reading)), MissingReading)


def test_a_seller_is_never_paid_twice_for_the_same_wh(market: Market) -> None:
    first, second = terms(nonce=1), terms(nonce=2)
    market.mine(market.tx(BUYER, OpenContract(signed(first))), market.tx(BUYER, OpenContract(signed(second))))
    market.mine(market.tx(SELLER, SettleContract(state(first, 1, 700))))
    # The meter exported 1,000 Wh in PAST: 700 are paid, 400 more would be double selling.
    assert isinstance(market.refused(SELLER, SettleContract(state(second, 1, 400))), DoubleSelling)
    market.mine(market.tx(SELLER, SettleContract(state(second, 1, 300))))
    sold = market.chain.view().get(READINGS, reading_key(SELLER_METER.meter_id, PAST))
    assert sold is not None and sold.sold_wh == sold.exported_wh == 1_000


def test_equivocating_states_forfeit_the_buyers_bond_a_tenth_to_the_seller(market: Market) -> None:
    t = terms()
    market.mine(market.tx(BUYER, OpenContract(signed(t))), market.tx(BUYER, Bond(50 * UNITS_PER_GNC)))
    a, b = state(t, 4, 500), state(t, 4, 600)
    same = ReportEquivocation(a, a)
    with pytest.raises(NotEquivocation):
        validate_transaction(market.pending(OTHER, same), market.chain.params, market.chain.chain_id)
    seller_before = market.chain.account(SELLER.address).balance
    report = ReportEquivocation(a, b)
    reported = market.tx(OTHER, report)
    with ahead_checks_answered(reported, market.chain):  # both states, keyed
        market.mine(reported)
    assert market.chain.account(BUYER.address).bonded == 0
    assert market.chain.account(SELLER.address).balance == seller_before + 5 * UNITS_PER_GNC
    assert isinstance(market.refused(OTHER, ReportEquivocation(b, a)), FraudAlreadyReported)


def test_a_buyer_cannot_take_back_an_acknowledgement_it_signed(market: Market) -> None:
    """The buyer hands the seller state 1 acknowledging 1,600 Wh, then settles its own
    state 2 acknowledging 10 Wh: the seller still settles state 1 (it raises what was paid)
    and is paid for the 1,600 Wh, and the pair proves the buyer equivocated (its bond is
    lost, a tenth to the seller, its identity revoked)."""
    t = terms(line_fees=())
    market.mine(
        market.tx(BUYER, OpenContract(signed(t, (BUYER, SELLER)))), market.tx(BUYER, Bond(50 * UNITS_PER_GNC))
    )
    handed, retracted = state(t, 1, 1_000, 600), state(t, 2, 10, 0)
    market.mine(market.tx(BUYER, SettleContract(retracted)))
    seller_before = market.chain.account(SELLER.address).balance
    settle = market.tx(SELLER, SettleContract(handed))
    market.mine(settle)
    record = market.chain.view().get(CONTRACTS, contract_id(t))
    assert record is not None and record.paid_wh == 1_600 and record.settled_seq == 2
    paid = market.chain.account(SELLER.address).balance - seller_before + settle.fee
    assert paid == energy_cost(1_600, PRICE) - energy_cost(10, PRICE)  # (10 Wh were paid already)
    assert isinstance(market.refused(SELLER, SettleContract(handed)), StaleState)  # nothing more to pay
    assert isinstance(market.refused(BUYER, SettleContract(retracted)), StaleState)
    seller_before = market.chain.account(SELLER.address).balance
    pre = snapshot(market.chain)
    report = ReportEquivocation(handed, retracted)
    block = next_block(market.chain, [market.tx(SELLER, report)])
    assert market.chain.add_block(block, now=block.header.timestamp).status is AddStatus.EXTENDED
    record_valid(
        "equivocation_by_taking_back_an_acknowledgement",
        "the seller proves the buyer signed state 1 acknowledging 1,000 Wh and 600 Wh, then state 2 "
        "acknowledging 10 Wh and 0 Wh: the buyer's bond is lost, a tenth to the seller, its identity revoked",
        pre,
        block,
        block.header.timestamp,
        market.chain,
    )
    assert market.chain.account(BUYER.address).bonded == 0
    fee = block.txs[1].fee
    assert market.chain.account(SELLER.address).balance == seller_before - fee + 5 * UNITS_PER_GNC
    assert market.chain.view().get(IDENTITIES, BUYER.address) is None


def test_an_older_state_is_settled_only_when_it_raises_and_lowers_nothing(market: Market) -> None:
    t = terms()
    market.mine(market.tx(BUYER, OpenContract(signed(t))))
    market.mine(market.tx(SELLER, SettleContract(state(t, 5, 800))))
    assert isinstance(market.refused(SELLER, SettleContract(state(t, 3, 800))), StaleState)
    assert isinstance(market.refused(SELLER, SettleContract(state(t, 3, 700, 300))), StateRegression)
    market.mine(market.tx(SELLER, SettleContract(state(t, 3, 800, 300))))
    record = market.chain.view().get(CONTRACTS, contract_id(t))
    assert record is not None and record.paid_wh == 1_100 and record.settled_seq == 5


def test_what_proves_no_equivocation(market: Market) -> None:
    """A later state acknowledging as much or more in every interval (an honest device's), two
    contracts' states, or a state listing an interval twice prove nothing (NotEquivocation);
    a state signed by someone else is no proof either."""
    t = terms()
    market.mine(market.tx(BUYER, OpenContract(signed(t))), market.tx(BUYER, Bond(50 * UNITS_PER_GNC)))
    twice = sign_state(ContractState(contract_id(t), 2, (Delivery(PAST, 900), Delivery(PAST, 100))), BUYER)
    for first, second in (
        (state(t, 1, 500), state(t, 2, 500, 300)),
        (state(t, 2, 500, 300), state(t, 1, 500)),
        (state(t, 1, 500), state(terms(nonce=1), 2, 400)),
        (state(t, 1, 500), twice),
    ):
        bad = market.pending(OTHER, ReportEquivocation(first, second))
        with pytest.raises(NotEquivocation):
            validate_transaction(bad, market.chain.params, market.chain.chain_id)
    forged = ReportEquivocation(state(t, 1, 500), state(t, 2, 400, key=SELLER))
    assert isinstance(market.refused(OTHER, forged), NotEquivocation)
    assert market.chain.account(BUYER.address).bonded == 50 * UNITS_PER_GNC


def test_close_refunds_the_rest_only_after_the_end_and_the_dispute_window(market: Market) -> None:
    t = terms()
    future = terms(first_interval=PAST + 20, last_interval=PAST + 30, nonce=9)
    market.mine(market.tx(BUYER, OpenContract(signed(t))), market.tx(BUYER, OpenContract(signed(future))))
    assert isinstance(market.refused(OTHER, CloseContract(contract_id(future))), DisputeWindowOpen)
    market.mine(market.tx(SELLER, SettleContract(state(t, 1, 1_000, 200))))
    assert isinstance(market.refused(OTHER, CloseContract(contract_id(t))), DisputeWindowOpen)
    market.mine()
    before = market.chain.account(BUYER.address).balance
    record = market.chain.view().get(CONTRACTS, contract_id(t))
    assert record is not None
    market.mine(market.tx(OTHER, CloseContract(contract_id(t))))
    assert market.chain.account(BUYER.address).balance == before + record.remaining
    assert isinstance(market.refused(SELLER, SettleContract(state(t, 9, 1_000, 300))), ContractClosed)
