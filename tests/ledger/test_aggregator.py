"""Aggregator-mediated trading (``ledger/txs/aggregator.py``): a consortium of aggregators,
registered by a majority, records trades a buyer requested and a seller granted from the energy
its meter's reading on chain shows exported and not yet sold; a majority rewards a period's top
sellers from the fees. Each rule broken, its rejection named."""

from __future__ import annotations

from pathlib import Path

import msgspec
import pytest

from gridnet.contracts.channel import (
    ContractState,
    ContractTerms,
    Delivery,
    SignedTerms,
    contract_id,
    sign_state,
    sign_terms,
)
from gridnet.crypto.keys import PrivateKey
from gridnet.errors import GrantExceedsRequest, GrantMismatch, MalformedTransaction, PeriodFull
from gridnet.ledger.registry import Payload
from gridnet.ledger.transition import validate_transaction
from gridnet.ledger.txs import aggregator as aggregator_txs
from gridnet.ledger.txs.aggregator import (
    AGGREGATORS,
    PERIODS,
    TRADE_RECORDS,
    Grant,
    RecordTrade,
    RegisterAggregators,
    RewardContributors,
    TradeRequest,
    aggregator_figures,
    aggregators_id,
    period_key,
    sign_grant,
    sign_processing,
    sign_request,
    top_contributors,
    trade_id,
    transfer_due,
)
from gridnet.ledger.txs.contract import OpenContract, SettleContract
from gridnet.ledger.txs.credit import history_of
from gridnet.ledger.txs.helios import sign_as_member
from gridnet.ledger.txs.meter import READINGS, SubmitReadings, reading_key
from gridnet.units import energy_cost, interval_start
from tests.helpers import ahead_checks_answered, rejection, sign
from tests.ledger.test_helios import (
    BUYER,
    BUYER_METER_KEY,
    COLLECTOR,
    MEMBERS,
    METER_KEY,
    OWNER,
    START,
    STRANGER,
    Helios,
    at,
    two_meters,
)

NAME = "Aggregators"


def consortium_named(name: str) -> bytes:
    """The id of COLLECTOR's consortium ``name`` (COLLECTOR registers the consortia)."""
    return aggregators_id(COLLECTOR.public_key, name)


CID = consortium_named(NAME)
FEE_BPS = 100  # 1 %
PERIOD = 4  # intervals: START is a period's first (START is a multiple of 4)
PRICE = 1_000_000  # base units/kWh


def consortium_act(
    h: Helios,
    name: str = NAME,
    keys: list[PrivateKey] = MEMBERS[:2],
    registrant: PrivateKey = COLLECTOR,
    **changes: object,
) -> Payload:
    """A RegisterAggregators of MEMBERS signed by ``keys`` for ``registrant`` to send."""
    members = tuple(k.public_key for k in MEMBERS)
    act = RegisterAggregators(name, members, FEE_BPS, PERIOD, 1, ())
    act = msgspec.structs.replace(act, **changes)  # type: ignore[arg-type]
    sigs = tuple(sign_as_member(k, h.chain.chain_id, act, registrant=registrant.public_key) for k in keys)
    return msgspec.structs.replace(act, signatures=sigs)


def record(
    h: Helios,
    interval: int,
    *,
    seller: PrivateKey = OWNER,
    seller_meter: PrivateKey = METER_KEY,
    buyer: PrivateKey = BUYER,
    buyer_meter: PrivateKey = BUYER_METER_KEY,
    aer: int = 100,
    aeg: int = 80,
    max_price: int = PRICE,
    price: int = PRICE,
    tr: int | None = None,
    et: int | None = None,
    cid: bytes = CID,
    processor: PrivateKey = MEMBERS[0],
    keys: list[PrivateKey] = MEMBERS[:2],
    request_key: PrivateKey | None = None,
    dss_key: PrivateKey | None = None,
) -> RecordTrade:
    """A record of ``buyer``'s request for ``interval`` granted by ``seller``, signed as told."""
    chain_id = h.chain.chain_id
    tr = interval_start(interval) - 600_000 if tr is None else tr
    request = TradeRequest(cid, buyer.public_key, buyer_meter.address, interval, aer, max_price, tr)
    grant = Grant(trade_id(request), seller.public_key, seller_meter.address, aeg, price)
    et = transfer_due(aeg, price, FEE_BPS)[0] if et is None else et
    act = RecordTrade(
        cid,
        request,
        sign_request(request_key or buyer, chain_id, request),
        grant,
        sign_grant(dss_key or seller, chain_id, grant),
        et,
        processor.public_key,
        sign_processing(processor, chain_id, grant, et),
        (),
    )
    sigs = tuple(sign_as_member(k, chain_id, act) for k in keys)
    return msgspec.structs.replace(act, signatures=sigs)


def stateless(h: Helios, payload: Payload) -> None:
    validate_transaction(sign(h.chain, COLLECTOR, payload, 0), h.chain.params, h.chain.chain_id)


@pytest.fixture
def h(tmp_path: Path) -> Helios:
    w = two_meters(tmp_path, "area")
    w.mine(w.tx(COLLECTOR, consortium_act(w)), interval=START)
    return w


def balance(h: Helios, who: bytes) -> int:
    return h.chain.view().account(who).balance


def exported(h: Helios, interval: int, owner_wh: int, buyer_wh: int = 0) -> None:
    """Both meters read ``interval`` (the owner's exports ``owner_wh``, the buyer's ``buyer_wh``)."""
    batch = (h.meter.read(interval, owner_wh, 0), h.buyer_meter.read(interval, buyer_wh, 50))
    h.mine(h.tx(COLLECTOR, SubmitReadings(batch)), interval=interval + 1)


# --- the consortium --------------------------------------------------------------------------


def test_a_consortium_is_registered_by_a_majority(h: Helios) -> None:
    found = h.chain.view().get(AGGREGATORS, CID)
    assert found is not None and found.majority == 2 and (found.fee_bps, found.treasury) == (FEE_BPS, 0)
    assert h.refused(COLLECTOR, consortium_act(h, "Other", MEMBERS[:1])) == "NoConsortiumMajority"
    assert h.refused(COLLECTOR, consortium_act(h, "Other", [STRANGER, MEMBERS[0]])) == "NoConsortiumMajority"
    assert h.refused(COLLECTOR, consortium_act(h)) == "AggregatorsExist"
    reversed_members = tuple(reversed(sorted(k.public_key for k in MEMBERS)))
    for bad in (
        {"members": reversed_members},
        {"members": ()},
        {"fee_bps": 5_001},
        {"period_intervals": 0},
        {"reward_top": 33},
    ):
        with pytest.raises(MalformedTransaction):
            stateless(h, consortium_act(h, "X", **bad))
    # A consortium rewarding nobody takes no fee: its treasury pays out only as rewards, so the
    # buyers' fees would be locked for good (RewardContributors had no seller it could name).
    with pytest.raises(MalformedTransaction, match="fee_bps 1 with reward_top 0"):
        stateless(h, consortium_act(h, "X", fee_bps=1, reward_top=0))
    stateless(h, consortium_act(h, "X", fee_bps=0, reward_top=0))
    view, by = h.chain.view(), COLLECTOR.public_key
    figures = aggregator_figures(view, by, NAME)
    assert figures is not None and figures["majority"] == 2 and aggregator_figures(view, by, "No") is None
    assert aggregator_figures(view, OWNER.public_key, NAME) is None  # (COLLECTOR's name, not OWNER's)


def test_a_registration_copied_by_another_key_is_refused_and_takes_nothing(tmp_path: Path) -> None:
    """A consortium's id was the hash of its name alone: a stranger who saw a
    RegisterAggregators pending sent a copy first, and the registrant's was refused as
    AggregatorsExist. Each registrant's names are its own, and the members sign a
    registration for the key that sends it: a copy carries no valid signature (it made a
    look-alike consortium, the same name and members, under the copier's key). One the
    members form for another registrant is its own: a trade recorded for the first
    consortium is in its books alone."""
    w = two_meters(tmp_path, "area")
    act = consortium_act(w)
    assert w.refused(STRANGER, act) == "NoConsortiumMajority"
    w.mine(w.tx(STRANGER, consortium_act(w, registrant=STRANGER)), w.tx(COLLECTOR, act), interval=START)
    theirs = aggregators_id(STRANGER.public_key, NAME)
    assert theirs != CID and w.chain.view().get(AGGREGATORS, theirs) is not None
    exported(w, START + 1, 120)
    w.mine(w.tx(COLLECTOR, record(w, START + 1)))
    view = w.chain.view()
    ours, other = view.get(AGGREGATORS, CID), view.get(AGGREGATORS, theirs)
    assert ours is not None and other is not None and (ours.records, other.records) == (1, 0)
    assert w.refused(STRANGER, consortium_act(w, registrant=STRANGER)) == "AggregatorsExist"


# --- records ---------------------------------------------------------------------------------


def test_a_record_moves_et_sells_the_seller_energy_and_is_kept(h: Helios) -> None:
    i = START + 1
    exported(h, i, 120)
    buyer0, seller0 = balance(h, BUYER.address), balance(h, OWNER.address)
    payload = record(h, i)
    tx = h.tx(COLLECTOR, payload)
    with ahead_checks_answered(tx, h.chain):  # the request's and the grant's
        h.mine(tx)
    view = h.chain.view()
    et, fee = transfer_due(80, PRICE, FEE_BPS)
    assert (et, fee) == (80_800, 800)
    assert buyer0 - balance(h, BUYER.address) == et
    assert balance(h, OWNER.address) - seller0 == et - fee == energy_cost(80, PRICE)
    reading = view.get(READINGS, reading_key(METER_KEY.address, i))
    assert reading is not None and reading.sold_wh == 80
    stored = view.get(TRADE_RECORDS, payload.grant.tid)
    assert stored is not None
    assert (stored.mid, stored.aer_wh, stored.aeg_wh, stored.et, stored.fee) == (
        BUYER_METER_KEY.address, 100, 80, et, fee,
    )  # fmt: skip
    assert (
        stored.dss == payload.dss and stored.dsp == payload.dsp and stored.processor == MEMBERS[0].public_key
    )
    assert stored.tr_ms == interval_start(i) - 600_000 and stored.tt_ms == h.clock - stored.tr_ms > 0
    consortium = view.get(AGGREGATORS, CID)
    assert consortium is not None
    assert (consortium.treasury, consortium.records, consortium.traded_wh) == (fee, 1, 80)
    tally = view.get(PERIODS, period_key(CID, i // PERIOD))
    assert tally is not None and [(s.seller, s.wh) for s in tally.sellers] == [(OWNER.address, 80)]
    assert history_of(view, OWNER.address).sold_wh == 80  # the credit bank sees the sale


def test_the_consortium_and_its_signatures(h: Helios) -> None:
    i = START + 1
    exported(h, i, 120)
    assert h.refused(COLLECTOR, record(h, i, cid=consortium_named("Nobody"))) == "UnknownAggregators"
    assert h.refused(COLLECTOR, record(h, i, keys=MEMBERS[:1])) == "NoConsortiumMajority"
    assert h.refused(COLLECTOR, record(h, i, keys=[MEMBERS[0], STRANGER])) == "NoConsortiumMajority"
    assert h.refused(COLLECTOR, record(h, i, processor=STRANGER)) == "ProcessingSignatureInvalid"
    forged_dsp = msgspec.structs.replace(record(h, i), dsp=bytes(64))
    forged_dsp = msgspec.structs.replace(
        forged_dsp,
        signatures=tuple(
            sign_as_member(k, h.chain.chain_id, msgspec.structs.replace(forged_dsp, signatures=()))
            for k in MEMBERS[:2]
        ),
    )
    assert h.refused(COLLECTOR, forged_dsp) == "ProcessingSignatureInvalid"
    assert h.refused(COLLECTOR, record(h, i, request_key=STRANGER)) == "RequestSignatureInvalid"
    assert h.refused(COLLECTOR, record(h, i, dss_key=BUYER)) == "SellerSignatureInvalid"
    # Signed by all but changed afterwards: the members' signatures no longer hold.
    tampered = msgspec.structs.replace(record(h, i), et=1)
    assert h.refused(COLLECTOR, tampered) == "NoConsortiumMajority"


def test_stateless_rules(h: Helios) -> None:
    i = START + 1
    with pytest.raises(GrantExceedsRequest):
        stateless(h, record(h, i, aer=50, aeg=51))
    with pytest.raises(GrantExceedsRequest):
        stateless(h, record(h, i, max_price=PRICE - 1))
    with pytest.raises(GrantMismatch):
        stateless(h, record(h, i, seller=BUYER, seller_meter=BUYER_METER_KEY))
    other = record(h, i)
    with pytest.raises(GrantMismatch):
        stateless(
            h, msgspec.structs.replace(other, grant=msgspec.structs.replace(other.grant, tid=bytes(32)))
        )
    with pytest.raises(GrantMismatch):
        stateless(h, msgspec.structs.replace(other, consortium=consortium_named("Other")))
    with pytest.raises(MalformedTransaction):
        stateless(h, record(h, i, tr=interval_start(i)))  # a request made once the interval began
    with pytest.raises(MalformedTransaction):
        stateless(h, record(h, i, aeg=0))


def test_the_seller_cannot_grant_more_than_its_reading_shows_unsold(h: Helios) -> None:
    i = START + 1
    assert h.refused(COLLECTOR, record(h, i), i) == "SellerReadingMissing"
    exported(h, i, 120)
    assert h.refused(COLLECTOR, record(h, i, aer=200, aeg=121)) == "GrantExceedsAvailable"
    h.mine(h.tx(COLLECTOR, record(h, i, aeg=80)))
    # A second request (another TID) granted from the 40 Wh left: 41 would double-sell.
    later = interval_start(i) - 300_000
    assert h.refused(COLLECTOR, record(h, i, aeg=41, tr=later)) == "GrantExceedsAvailable"
    h.mine(h.tx(COLLECTOR, record(h, i, aeg=40, tr=later)))


def test_a_contract_and_a_record_never_sell_the_same_energy(h: Helios) -> None:
    i = START + 2
    t = ContractTerms(
        h.chain.chain_id, BUYER.address, OWNER.address, BUYER_METER_KEY.address, METER_KEY.address, (), PRICE,
        i, i, 100, 2, i,
    )  # fmt: skip
    h.mine(h.tx(BUYER, OpenContract(SignedTerms(t, (sign_terms(t, BUYER), sign_terms(t, OWNER))))))
    exported(h, i, 120)
    h.mine(
        h.tx(BUYER, SettleContract(sign_state(ContractState(contract_id(t), 1, (Delivery(i, 100),)), BUYER)))
    )
    assert h.refused(COLLECTOR, record(h, i, aeg=21)) == "GrantExceedsAvailable"
    h.mine(h.tx(COLLECTOR, record(h, i, aeg=20)))
    reading = h.chain.view().get(READINGS, reading_key(METER_KEY.address, i))
    assert reading is not None and reading.sold_wh == reading.exported_wh == 120


def test_a_tid_is_recorded_once_and_et_must_be_the_price_plus_the_fee(h: Helios) -> None:
    i = START + 1
    exported(h, i, 500)
    assert (
        h.refused(COLLECTOR, record(h, i, et=transfer_due(80, PRICE, FEE_BPS)[0] - 1)) == "TransferMismatch"
    )
    assert h.refused(COLLECTOR, record(h, i, et=energy_cost(80, PRICE))) == "TransferMismatch"  # no fee
    h.mine(h.tx(COLLECTOR, record(h, i)))
    assert h.refused(COLLECTOR, record(h, i)) == "TradeRecorded"
    assert h.refused(COLLECTOR, record(h, i, aeg=10)) == "TradeRecorded"  # the same request, another grant
    rich = 10**13  # 80 Wh at 10^13 per kWh: more than the buyer holds
    assert h.refused(COLLECTOR, record(h, i, max_price=rich, price=rich, tr=1)) == "InsufficientBalance"


def test_meters_must_be_the_parties_and_the_request_not_from_the_future(h: Helios) -> None:
    i = START + 1
    exported(h, i, 500)
    assert h.refused(COLLECTOR, record(h, i, buyer_meter=METER_KEY, seller_meter=BUYER_METER_KEY)) == (
        "TradeMeterNotOwned"
    )
    stranger_buys = record(h, i, buyer=STRANGER)
    assert h.refused(COLLECTOR, stranger_buys) == "UnknownIdentity"
    # A reading for an interval to come is on chain (a batch may carry it early, with those
    # before it: a reading across a gap waits for the missing one): a request timed after the
    # block is refused.
    ahead = START + 40
    early = [(m, k) for m in (h.meter, h.buyer_meter) for k in range(i + 1, ahead + 1)]
    h.mine(h.tx(COLLECTOR, SubmitReadings(tuple(m.read(k, 100 if k == ahead else 0, 0) for m, k in early))))
    assert h.clock < at(ahead)
    assert h.refused(COLLECTOR, record(h, ahead, tr=at(ahead) - 2_000)) == "RequestInFuture"


def test_a_period_holds_a_bounded_number_of_sellers(h: Helios, monkeypatch: pytest.MonkeyPatch) -> None:
    """The period's tally holds MAX_PERIOD_SELLERS distinct sellers (here one): a record of
    another seller is refused; the seller it holds sells on, and the next period starts empty."""
    monkeypatch.setattr(aggregator_txs, "MAX_PERIOD_SELLERS", 1)

    def buyer_sells(interval: int) -> RecordTrade:
        return record(
            h, interval, seller=BUYER, seller_meter=BUYER_METER_KEY, buyer=OWNER, buyer_meter=METER_KEY,
            aer=90, aeg=90,
        )  # fmt: skip

    i = START + 1
    exported(h, i, 300, 100)
    h.mine(h.tx(COLLECTOR, record(h, i, aer=100, aeg=100)))
    tx = sign(h.chain, COLLECTOR, buyer_sells(i), h.nonces[COLLECTOR.address])
    error = rejection(h.chain, tx, h.timestamp(None))
    assert isinstance(error, PeriodFull) and f"period {i // PERIOD} of {NAME} has 1 sellers" in str(error)
    again = record(h, i, aer=100, aeg=100, tr=interval_start(i) - 300_000)  # another request, same seller
    h.mine(h.tx(COLLECTOR, again))
    tally = h.chain.view().get(PERIODS, period_key(CID, i // PERIOD))
    assert tally is not None and [(s.seller, s.wh) for s in tally.sellers] == [(OWNER.address, 200)]
    j = START + PERIOD + 1
    for k in range(i + 1, j):  # (a reading across a gap would wait for the missing one)
        exported(h, k, 0, 0)
    exported(h, j, 0, 100)
    h.mine(h.tx(COLLECTOR, buyer_sells(j)))
    tally = h.chain.view().get(PERIODS, period_key(CID, j // PERIOD))
    assert tally is not None and [s.seller for s in tally.sellers] == [BUYER.address]


# --- rewards ---------------------------------------------------------------------------------


def reward(
    h: Helios, period: int, sellers: tuple[bytes, ...], amount: int, keys: list[PrivateKey] = MEMBERS[1:]
) -> Payload:
    act = RewardContributors(CID, period, sellers, amount, ())
    return msgspec.structs.replace(
        act, signatures=tuple(sign_as_member(k, h.chain.chain_id, act) for k in keys)
    )


def test_the_top_contributors_of_a_period_are_rewarded_from_the_fees(h: Helios) -> None:
    period = START // PERIOD
    exported(h, START + 1, 300, 100)
    # OWNER sells 250 Wh to BUYER, BUYER 90 Wh to OWNER: OWNER is the period's top seller.
    h.mine(
        h.tx(COLLECTOR, record(h, START + 1, aer=250, aeg=250)),
        h.tx(
            COLLECTOR,
            record(
                h, START + 1, seller=BUYER, seller_meter=BUYER_METER_KEY, buyer=OWNER, buyer_meter=METER_KEY,
                aer=90, aeg=90,
            ),
        ),
    )  # fmt: skip
    tally = h.chain.view().get(PERIODS, period_key(CID, period))
    assert tally is not None and top_contributors(tally, 2) == (OWNER.address, BUYER.address)
    treasury = h.chain.view().get(AGGREGATORS, CID).treasury  # type: ignore[union-attr]
    assert treasury == transfer_due(250, PRICE, FEE_BPS)[1] + transfer_due(90, PRICE, FEE_BPS)[1] == 3_400

    assert h.refused(COLLECTOR, reward(h, period, (OWNER.address,), 1_000), START + 3) == "PeriodNotOver"
    h.mine(interval=START + PERIOD)  # the period is over
    assert h.refused(COLLECTOR, reward(h, period, (BUYER.address,), 1_000)) == "NotTopContributors"
    assert h.refused(COLLECTOR, reward(h, period, (OWNER.address, BUYER.address), 1)) == "NotTopContributors"
    assert h.refused(COLLECTOR, reward(h, period, (OWNER.address,), 3_401)) == "TreasuryShort"
    assert (
        h.refused(COLLECTOR, reward(h, period, (OWNER.address,), 1_000, MEMBERS[:1]))
        == "NoConsortiumMajority"
    )
    with pytest.raises(MalformedTransaction):
        stateless(h, reward(h, period, (OWNER.address, OWNER.address), 1))
    with pytest.raises(MalformedTransaction):
        stateless(h, reward(h, period, (OWNER.address,), 0))

    before = balance(h, OWNER.address)
    h.mine(h.tx(COLLECTOR, reward(h, period, (OWNER.address,), 3_000)))
    assert balance(h, OWNER.address) - before == 3_000
    consortium = h.chain.view().get(AGGREGATORS, CID)
    assert consortium is not None and (consortium.treasury, consortium.rewarded) == (400, 3_000)
    assert h.refused(COLLECTOR, reward(h, period, (OWNER.address,), 100)) == "PeriodRewarded"
    # The period's records are closed: a late record of it is refused.
    late = record(h, START + 1, aer=10, aeg=10, tr=interval_start(START + 1) - 1)
    assert h.refused(COLLECTOR, late) == "PeriodRewarded"
    # A period nobody sold in has no top contributors.
    h.mine(interval=START + 3 * PERIOD)
    assert h.refused(COLLECTOR, reward(h, period + 1, (OWNER.address,), 100)) == "NotTopContributors"


# --- queries: API and CLI --------------------------------------------------------------------


def test_a_consortium_and_its_records_are_queryable(h: Helios, tmp_path: Path) -> None:
    import json
    import subprocess
    import sys

    from fastapi.testclient import TestClient

    from gridnet.node.api import create_app
    from gridnet.node.client import AggregatorsAnswer, TradeRecordAnswer, expect
    from gridnet.node.node import Node

    i = START + 1
    exported(h, i, 120)
    payload = record(h, i)
    h.mine(h.tx(COLLECTOR, payload))
    tid = payload.grant.tid.hex()
    node = Node("n", h.chain)
    with TestClient(create_app(node, clock=lambda: h.clock, broadcast=lambda _out: None)) as client:
        by = {"registrant": COLLECTOR.public_key.hex()}
        body = client.get(f"/aggregators/{NAME}", params=by).json()
        assert (body["records"], body["traded_wh"], body["majority"]) == (1, 80, 2)
        trade = client.get(f"/trade-records/{tid}").json()
        assert (trade["aer_wh"], trade["aeg_wh"], trade["et"]) == (100, 80, 80_800)
        assert trade["dss"] == payload.dss.hex() and trade["dsp"] == payload.dsp.hex()
        # What `chain aggregators --node` takes as a node's answers (else "is it a GRIDNET node?"):
        expect(body, AggregatorsAnswer, "aggregators")
        expect(trade, TradeRecordAnswer, "trade record")
        assert client.get("/aggregators/nobody", params=by).status_code == 404
        assert client.get(f"/trade-records/{'00' * 32}").json()["code"] == "NotFound"
        assert client.get("/trade-records/zz").json()["code"] == "BadRequest"
    h.chain.close()
    cmd = [
        sys.executable,
        "-m",
        "gridnet",
        "chain",
        "aggregators",
        "--data-dir",
        str(tmp_path / "c"),
        "--name",
        NAME,
        "--registrant",
        COLLECTOR.public_key.hex(),
    ]
    out = subprocess.run([*cmd, "--tid", tid, "--json"], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["record"]["tt_ms"] > 0
    text = subprocess.run([*cmd, "--tid", tid], capture_output=True, text=True, timeout=120)
    assert "AER 100 Wh, AEG 80 Wh" in text.stdout, text.stdout + text.stderr
    bad = subprocess.run([*cmd, "--tid", "abc"], capture_output=True, text=True, timeout=120)
    assert bad.returncode == 1 and "give the 32-byte TID in hex" in bad.stderr
