"""Stake that can be lost: a proven fraud forfeits the offender's bonded *and* unbonding coin
(``bond.forfeit_stake``) and revokes its identity, so taking part again costs a new address
and a new identity proof-of-work. Rejections are asserted by name and dumped as consensus
vectors (tests/vectors/<name>.json)."""

from __future__ import annotations

from pathlib import Path

import msgspec
import pytest

from gridnet.contracts.channel import contract_id
from gridnet.crypto.hashing import pool_id
from gridnet.crypto.keys import PrivateKey
from gridnet.errors import (
    BlockTransactionInvalid,
    IdentityRevoked,
    InvalidTransaction,
    UnbondingTooShort,
    UnknownIdentity,
    UnregisteredOriginator,
)
from gridnet.identity import IdentityProof, find_identity_proof
from gridnet.ledger.chain import AddStatus, Chain
from gridnet.ledger.params import params_from_dict
from gridnet.ledger.state import (
    DESTROYED,
    DESTROYED_KEY,
    IDENTITIES,
    UNBONDING,
    Destroyed,
    StateView,
    UnbondEntry,
    UnbondQueue,
    height_key,
)
from gridnet.ledger.transactions import Transaction
from gridnet.ledger.txs.authority import FlagTarget, PublishFlag, RegisterAuthority
from gridnet.ledger.txs.base import BlockEnv
from gridnet.ledger.txs.bond import Bond, Unbond, forfeit_stake, process_unbonding
from gridnet.ledger.txs.contract import CONTRACTS, OpenContract, ReportEquivocation
from gridnet.ledger.txs.identity import REVOKED, RegisterIdentity, Revocation
from gridnet.ledger.txs.meter import registration
from gridnet.ledger.txs.relay import ChainRelayView, CreateTokenPool
from gridnet.ledger.txs.transfer import Transfer
from gridnet.meter.certificate import issue_certificate
from gridnet.relay.datagram import POOL_EXPIRY_MARGIN, Forwarded, Relay, originate
from gridnet.relay.tokens import HashChain
from gridnet.security.roles import Role
from gridnet.units import UNITS_PER_GNC
from tests.helpers import next_block, supply
from tests.ledger.forge import forge_block
from tests.ledger.test_contracts import (
    BUYER,
    BUYER_METER,
    MAKER,
    OTHER,
    SELLER,
    SELLER_METER,
    Market,
    open_market,
    signed,
    state,
    terms,
)
from tests.ledger.vectors import record_rejection, record_valid, snapshot

GNC = UNITS_PER_GNC
EQUIVOCATION = ReportEquivocation(state(terms(), 4, 500), state(terms(), 4, 600))
"""The buyer signed two states of the contract ``terms()`` with the same sequence number."""


@pytest.fixture
def market(tmp_path: Path) -> Market:
    return open_market(tmp_path / "c")


def reject_tx(
    market: Market, tx: Transaction, error: type[InvalidTransaction], name: str, description: str
) -> None:
    """A block holding ``tx`` is refused with ``error``; the case is dumped as a vector."""
    chain = market.chain
    pre = snapshot(chain)
    block = forge_block(chain, [tx])
    head = chain.head.hash
    with pytest.raises(BlockTransactionInvalid) as info:
        chain.add_block(block, now=block.header.timestamp)
    assert type(info.value.error) is error and info.value.index == 1
    assert chain.head.hash == head
    record_rejection(name, description, pre, block, block.header.timestamp, info.value)


def bond_then_unbond_twice(market: Market) -> int:
    """The buyer opens the contract, bonds 50 GNC, unbonds 20 then 10 GNC in the next two
    blocks (the seller unbonds 5 of its own 8 in the first); returns the first release height."""
    market.mine(
        market.tx(BUYER, OpenContract(signed(terms()))),
        market.tx(BUYER, Bond(50 * GNC)),
        market.tx(SELLER, Bond(8 * GNC)),
    )
    market.mine(market.tx(BUYER, Unbond(20 * GNC)), market.tx(SELLER, Unbond(5 * GNC)))
    first_release = market.chain.height + market.chain.params.unbonding_delay
    market.mine(market.tx(BUYER, Unbond(10 * GNC)))
    return first_release


def report_equivocation(market: Market) -> None:
    """Anyone (OTHER) proves the buyer signed two states with the same sequence number."""
    market.mine(market.tx(OTHER, EQUIVOCATION))


def test_fraud_forfeits_bonded_and_unbonding_coin_a_tenth_to_the_seller(market: Market) -> None:
    chain = market.chain
    first_release = bond_then_unbond_twice(market)
    buyer = chain.account(BUYER.address)
    assert (buyer.bonded, buyer.unbonding) == (20 * GNC, 30 * GNC)
    assert chain.height < first_release, "the unbonding coin must still be waiting"
    seller_before = chain.account(SELLER.address).balance
    supply_before = supply(chain)
    pre = snapshot(chain)
    # The buyer unbonds 5 GNC more in the proof's own block: the latest queue it can be in.
    last_release = chain.height + 1 + chain.params.unbonding_delay
    unbond = market.tx(BUYER, Unbond(5 * GNC))
    block = next_block(chain, [unbond, market.tx(OTHER, EQUIVOCATION)])
    assert chain.add_block(block, now=block.header.timestamp).status is AddStatus.EXTENDED
    record_valid(
        "equivocation_forfeits_bond_and_unbonding",
        "a proven equivocation takes the buyer's bond and the coin it unbonded in two earlier blocks "
        "and in the proof's own block, revokes its identity, pays the seller a tenth and destroys the rest",
        pre,
        block,
        block.header.timestamp,
        chain,
    )
    buyer_after = chain.account(BUYER.address)
    assert (buyer_after.bonded, buyer_after.unbonding) == (0, 0)
    assert buyer_after.balance == buyer.balance - unbond.fee
    # 50 GNC forfeited (15 bonded, 35 unbonding): a tenth to the seller, the rest destroyed.
    assert chain.account(SELLER.address).balance == seller_before + 5 * GNC
    minted = block.txs[0].payload.reward  # type: ignore[union-attr]  # (the coinbase)
    assert supply(chain) == supply_before + minted - 45 * GNC
    assert chain.view().get(DESTROYED, DESTROYED_KEY) == Destroyed(45 * GNC)  # (counted as destroyed)
    # The buyer's entries left the unbonding queues; the seller's own entry stays.
    view = chain.view()
    assert view.get(UNBONDING, height_key(first_release)) == UnbondQueue(
        (UnbondEntry(SELLER.address, 5 * GNC),)
    )
    assert view.get(UNBONDING, height_key(first_release + 1)) is None
    assert view.get(UNBONDING, height_key(last_release)) is None
    seller_balance = chain.account(SELLER.address).balance
    while chain.height <= last_release:
        market.mine()
    assert chain.account(BUYER.address) == buyer_after, "forfeited unbonding coin came back"
    assert chain.account(SELLER.address).balance == seller_balance + 5 * GNC


def test_forfeit_stake_returns_the_coin_it_took(market: Market) -> None:
    chain = market.chain
    bond_then_unbond_twice(market)
    view = StateView(chain.values)
    env = BlockEnv(chain.params, chain.chain_id, chain.height + 1, OTHER.address, 0)
    process_unbonding(view, env)
    seller = view.account(SELLER.address).balance
    assert forfeit_stake(view, env, BUYER.address, SELLER.address) == 50 * GNC
    assert view.account(SELLER.address).balance == seller + 5 * GNC
    # Nothing left at stake: nothing taken, the revocation keeps its first height.
    assert forfeit_stake(view, env, BUYER.address, SELLER.address) == 0
    assert view.get(REVOKED, BUYER.address) == Revocation(revoked_at=chain.height + 1)


def test_a_revoked_identity_is_refused_wherever_an_identity_is_needed(market: Market) -> None:
    chain = market.chain
    bond_then_unbond_twice(market)
    market.mine(market.tx(BUYER, RegisterAuthority(int(Role.DSO), "Buyer's lab")))
    registered = chain.view().get(IDENTITIES, BUYER.address)
    assert registered is not None
    assert ChainRelayView.of(chain).identity_proof(BUYER.address) == registered.proof
    report_equivocation(market)
    view = chain.view()
    assert view.get(IDENTITIES, BUYER.address) is None
    assert view.get(REVOKED, BUYER.address) == Revocation(revoked_at=chain.height)
    assert ChainRelayView(view, chain.height, chain.chain_id).identity_proof(BUYER.address) is None
    reject_tx(
        market,
        market.pending(BUYER, Bond(GNC)),
        IdentityRevoked,
        "bond_by_revoked_identity",
        "a buyer whose equivocation was proven bonds coin again",
    )
    assert isinstance(market.refused(BUYER, RegisterAuthority(int(Role.DSO), "Revoked")), IdentityRevoked)
    flag = PublishFlag(int(FlagTarget.IDENTITY), SELLER.address, "revenge", True)
    assert isinstance(market.refused(BUYER, flag), IdentityRevoked)  # an authority no more
    revoked_meter = PrivateKey.from_label("revoked-meter")
    cert = issue_certificate(
        MAKER,
        revoked_meter.public_key,
        vendor="Acme",
        model="M",
        firmware="1",
        serial="r",
    )
    assert isinstance(
        market.refused(
            BUYER, registration(revoked_meter, cert, "north", BUYER.address, market.chain.chain_id)
        ),
        IdentityRevoked,
    )
    assert isinstance(market.refused(BUYER, OpenContract(signed(terms(nonce=1)))), IdentityRevoked)
    as_seller = terms(
        buyer=SELLER.address,
        seller=BUYER.address,
        buyer_meter=SELLER_METER.meter_id,
        seller_meter=BUYER_METER.meter_id,
        nonce=2,
    )
    assert isinstance(market.refused(SELLER, OpenContract(signed(as_seller))), IdentityRevoked)
    # Its balance is not stake: it may still pay.
    market.mine(market.tx(BUYER, Transfer(OTHER.address, GNC)))


def test_a_revoked_identity_originates_no_datagram(market: Market) -> None:
    chain = market.chain
    tokens = HashChain(b"forfeit-pool-seed".ljust(32, b"."), 100)
    market.mine(
        market.tx(BUYER, OpenContract(signed(terms()))),
        market.tx(
            BUYER, CreateTokenPool(tokens.final, tokens.length, 10_000, expiry_height=50 + POOL_EXPIRY_MARGIN)
        ),
    )
    registered = chain.view().get(IDENTITIES, BUYER.address)
    assert registered is not None
    relay = PrivateKey.from_label("forfeit-relay")
    dgram = originate(
        BUYER,
        tokens,
        pool_id(BUYER.address, tokens.final),
        1,
        500_000,
        registered.proof,
        [(relay.address, relay.public_key)],
        (SELLER.address, SELLER.public_key),
        b"an order",
        bytes(16),
        chain_id=chain.chain_id,
    )
    assert isinstance(Relay(relay, ChainRelayView.of(chain)).handle(dgram), Forwarded)
    report_equivocation(market)
    with pytest.raises(UnregisteredOriginator):
        Relay(relay, ChainRelayView.of(chain)).handle(dgram)


def test_taking_part_again_needs_a_new_address_and_a_new_proof(market: Market) -> None:
    chain = market.chain
    old = chain.view().get(IDENTITIES, BUYER.address)
    assert old is not None
    market.mine(market.tx(BUYER, OpenContract(signed(terms()))))
    report_equivocation(market)
    reject_tx(
        market,
        market.pending(BUYER, RegisterIdentity(old.proof)),
        IdentityRevoked,
        "revoked_identity_registers_again",
        "a revoked identity registers its address again with its old proof",
    )
    fresh = find_identity_proof(
        BUYER.address,
        chain.params.identity_target_int,
        start=IdentityProof(old.proof.rounds, old.proof.nonce + 1),
    )
    assert fresh != old.proof
    assert isinstance(market.refused(BUYER, RegisterIdentity(fresh)), IdentityRevoked)
    # A new key: new address, new identity proof-of-work; coin may follow it.
    new = PrivateKey.from_label("contract-buyer-again")
    market.nonce[new.address] = 0
    market.mine(market.tx(BUYER, Transfer(new.address, 100 * GNC)))
    assert isinstance(market.refused(new, Bond(GNC)), UnknownIdentity)
    proof = find_identity_proof(new.address, chain.params.identity_target_int)
    market.mine(market.tx(new, RegisterIdentity(proof)), market.tx(new, Bond(10 * GNC)))
    assert chain.account(new.address).bonded == 10 * GNC


def test_a_second_proof_against_a_revoked_offender_takes_nothing_more(market: Market) -> None:
    chain = market.chain
    second = terms(nonce=7)
    market.mine(
        market.tx(BUYER, OpenContract(signed(terms()))),
        market.tx(BUYER, OpenContract(signed(second))),
        market.tx(BUYER, Bond(30 * GNC)),
    )
    report_equivocation(market)
    revoked_at = chain.height
    buyer = chain.account(BUYER.address)
    seller = chain.account(SELLER.address).balance
    market.mine()
    market.mine(market.tx(OTHER, ReportEquivocation(state(second, 1, 100), state(second, 1, 200))))
    record = chain.view().get(CONTRACTS, contract_id(second))
    assert record is not None and record.fraud_reported
    assert chain.account(BUYER.address) == buyer
    assert chain.account(SELLER.address).balance == seller
    assert chain.view().get(REVOKED, BUYER.address) == Revocation(revoked_at=revoked_at)


def test_genesis_refuses_an_unbonding_delay_not_above_the_longest_dispute_window(tmp_path: Path) -> None:
    with pytest.raises(UnbondingTooShort) as info:
        params_from_dict({"staking": {"unbonding_delay_blocks": 8, "max_dispute_window_blocks": 8}}, "g.toml")
    assert "unbonding_delay_blocks (8) must exceed max_dispute_window_blocks (8)" in str(info.value)
    params = params_from_dict({"staking": {"unbonding_delay_blocks": 9, "max_dispute_window_blocks": 8}})
    assert (params.unbonding_delay, params.max_dispute_window) == (9, 8)
    # A chain is never created with such parameters, however they were made.
    bad = msgspec.structs.replace(params, unbonding_delay=8)
    with pytest.raises(UnbondingTooShort):
        Chain.create(tmp_path, bad)
    assert not (tmp_path / "chain.sqlite").exists()
