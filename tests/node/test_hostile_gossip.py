"""Transactions a peer relays (the sans-IO node). One that fails a check any relaying peer makes
before it relays (signature, encoding, fee, ranges) is that peer's fault: it is not answered and
the rest of the message is not read (the transport cuts the peer off after a few faults). A
stateful refusal of honest gossip is answered with its rule and is no fault. A relayed
transaction is tried on the head like a user's: one no block could include (readings of an
unregistered meter, a bond without an identity) is refused at admission, one that needs another
sender's pending transaction is taken; a flood of them costs an application each."""

from __future__ import annotations

from pathlib import Path

import msgspec
import pytest

import gridnet.ledger.trial as trial_module
from gridnet.contracts.channel import ContractTerms, SignedTerms, sign_terms
from gridnet.crypto.keys import PrivateKey
from gridnet.crypto.ops import snapshot
from gridnet.ledger.chain import Chain
from gridnet.ledger.registry import Payload
from gridnet.ledger.transactions import Transaction, sign_transaction, tx_id
from gridnet.ledger.transition import apply_transaction
from gridnet.ledger.txs.authority import RegisterAuthority
from gridnet.ledger.txs.bond import Bond
from gridnet.ledger.txs.coinbase import Coinbase
from gridnet.ledger.txs.contract import OpenContract
from gridnet.ledger.txs.meter import SubmitReadings, registration
from gridnet.ledger.txs.transfer import Transfer
from gridnet.meter.certificate import issue_certificate
from gridnet.meter.reading import Reading, sign_reading
from gridnet.node.messages import BlockMsg, TxRejectedMsg, TxsMsg
from gridnet.node.node import GOSSIP_VERIFY_WINDOW, Node, Outgoing
from gridnet.security.roles import Role
from tests.helpers import GENESIS_TIME, extend, new_chain, register_identity, sign, test_keys, test_params

ALICE, BOB, MAKER, SINK = test_keys(4)
NOW = GENESIS_TIME + 60_000
METER = PrivateKey.from_label("hostile-meter")


def node_on(tmp_path: Path, name: str = "n") -> Node:
    node = Node(name, new_chain(tmp_path / name, test_params([ALICE, BOB, MAKER])))
    node.add_peer("peer")
    return node


def answers(out: list[Outgoing]) -> list[str]:
    """The rules of the TxRejectedMsg answers in ``out``."""
    return [msg.rule for _, msg in out if isinstance(msg, TxRejectedMsg)]


def readings_of(meter: PrivateKey, count: int = 4) -> SubmitReadings:
    return SubmitReadings(
        tuple(
            sign_reading(meter, Reading(meter.address, 1_960_000 + i, 10, 0, 10 * (i + 1), 0, "1.0.0"))
            for i in range(count)
        )
    )


def forged(chain: Chain, rule: str) -> Transaction:
    """A transaction breaking ``rule``, a check a relaying peer makes before it relays."""
    good = sign(chain, ALICE, Transfer(SINK.address, 1_000), 0)
    if rule == "BadSignature":
        return msgspec.structs.replace(good, signature=bytes(64))
    if rule == "FeeTooLow":
        return sign(chain, ALICE, Transfer(SINK.address, 1_000), 0, fee=1)
    if rule == "MalformedTransaction":
        return sign(chain, ALICE, Transfer(SINK.address, 0), 0)  # moves no coin
    assert rule == "MisplacedCoinbase"
    return sign_transaction(ALICE, chain.chain_id, Coinbase(1, 50, 0), 0, 10_000)


@pytest.mark.parametrize("rule", ["BadSignature", "FeeTooLow", "MalformedTransaction", "MisplacedCoinbase"])
def test_a_transaction_failing_a_stateless_check_is_the_relaying_peers_fault(
    tmp_path: Path, rule: str
) -> None:
    node = node_on(tmp_path)
    good = sign(node.chain, BOB, Transfer(SINK.address, 1_000), 0)
    out = node.handle("peer", TxsMsg((forged(node.chain, rule), good)), NOW)
    assert answers(out) == []  # not answered: a flood of forgeries gets no flood of answers
    assert node.stats.peer_faults == {"peer": 1} and node.stats.fault_rules == {rule: 1}
    assert tx_id(good) not in node.mempool  # the rest of a faulty peer's message is not read
    assert node.stats.tx_rules[rule] == 1  # (the node's own count of outcomes has it)
    node.handle("peer", TxsMsg((good,)), NOW)
    assert tx_id(good) in node.mempool


def test_a_forgery_deep_in_a_large_batch_stops_it_and_little_beyond_it_is_verified(tmp_path: Path) -> None:
    """The batch's signatures are checked a window at a time on all cores: what comes before
    the forgery is taken, the forgery is the peer's fault, and the rest of the batch is
    neither read nor verified beyond the forgery's window."""
    node = node_on(tmp_path)
    chain = node.chain
    txs = [sign(chain, [ALICE, BOB][i % 2], Transfer(SINK.address, 1_000), i // 2) for i in range(600)]
    at = GOSSIP_VERIFY_WINDOW + 10
    bad = txs[at]
    txs[at] = msgspec.structs.replace(bad, signature=bytes(64))
    before = snapshot()
    node.handle("peer", TxsMsg(tuple(txs)), NOW)
    spent = snapshot().since(before)
    assert node.stats.fault_rules == {"BadSignature": 1}
    assert [tx_id(t) in node.mempool for t in txs] == [True] * at + [False] * (600 - at)
    assert spent.verifies <= 2 * GOSSIP_VERIFY_WINDOW  # two windows, not the 600
    assert spent.verifies_cached == 0  # each verdict used as it came, none checked again


def test_stateful_refusals_of_honest_gossip_are_answered_and_no_fault(tmp_path: Path) -> None:
    node = node_on(tmp_path)
    chain = node.chain
    mined = sign(chain, ALICE, Transfer(SINK.address, 1_000), 0)
    extend(chain, [mined])
    refused = {
        "NonceTooLow": mined,  # a peer that has not seen the block yet relays it again
        "NonceGap": sign(chain, BOB, Transfer(SINK.address, 1_000), 10_000),
        "InsufficientBalance": sign(chain, SINK, Transfer(ALICE.address, 1_000), 0),
        "UnknownIdentity": sign(chain, BOB, Bond(1_000), 0),
        "UnknownMeter": sign(chain, MAKER, readings_of(METER), 0),
    }
    for rule, tx in refused.items():
        assert answers(node.handle("peer", TxsMsg((tx,)), NOW)) == [rule]
    assert node.stats.peer_faults.get("peer", 0) == 0
    assert len(node.mempool) == 0


def test_a_refused_transaction_sent_again_is_neither_checked_nor_answered_until_the_next_head(
    tmp_path: Path,
) -> None:
    """A peer that resends one refused transaction (a signature made once) costs a check and
    an answer for the first copy only, from whichever peer; a new head may make it valid."""
    node = node_on(tmp_path)
    node.add_peer("other")
    spend = sign(node.chain, SINK, Transfer(ALICE.address, 1_000), 0)  # SINK holds nothing yet
    assert answers(node.handle("peer", TxsMsg((spend,) * 300), NOW)) == ["InsufficientBalance"]
    assert answers(node.handle("other", TxsMsg((spend,)), NOW)) == []
    assert node.stats.txs_rejected == 1 and node.stats.peer_faults == {}
    other = new_chain(tmp_path / "other", node.chain.params)
    block = extend(other, [sign(other, ALICE, Transfer(SINK.address, 1_000_000), 0)])
    node.handle("peer", BlockMsg(block), now=block.header.timestamp)
    assert node.chain.head.hash == other.head.hash
    assert answers(node.handle("other", TxsMsg((spend,)), max(NOW, block.header.timestamp))) == []
    assert tx_id(spend) in node.mempool


def test_a_registrations_meter_binding_is_checked_with_the_batch_once(tmp_path: Path) -> None:
    """A gossiped RegisterMeter's binding (the meter's signature naming its owner and chain) is
    checked in the gossip batch beside the transaction's own, and the meter's rules find it in
    the node's signature cache: it is verified once. A copy sent by another identity binds
    nothing to it: refused at admission by its rule, by name, and no fault of the peer's (the
    rule needs the sender's state: whether it has an identity, the certificate's issuer)."""
    cert = issue_certificate(MAKER, METER.public_key, vendor="Acme", model="M1", firmware="1.0.0", serial="1")
    node = node_on(tmp_path)
    chain = node.chain
    extend(chain, [register_identity(chain, k) for k in (ALICE, BOB, MAKER)])
    extend(chain, [sign(chain, MAKER, RegisterAuthority(int(Role.MANUFACTURER), "Acme"), 1)])
    payload = registration(METER, cert, "north", ALICE.address, chain.chain_id)
    before = snapshot()
    assert answers(node.handle("peer", TxsMsg((sign(chain, ALICE, payload, 1),)), NOW)) == []
    spent = snapshot().since(before)
    # its own and the binding in the batch, the certificate's and the status's by the
    # stateless rules; the binding answered from the cache
    assert (spent.verifies, spent.verifies_cached) == (4, 1)
    assert len(node.mempool) == 1
    copy = sign(chain, BOB, payload, 1)
    assert answers(node.handle("peer", TxsMsg((copy,)), NOW)) == ["MeterBindingInvalid"]
    assert node.stats.peer_faults == {} and len(node.mempool) == 1


def test_readings_of_an_unregistered_meter_are_refused_at_admission(tmp_path: Path) -> None:
    node = node_on(tmp_path)
    batch = sign(node.chain, ALICE, readings_of(METER, 256), 0)
    out = node.handle("peer", TxsMsg((batch,)), NOW)
    assert answers(out) == ["UnknownMeter"]
    assert len(node.mempool) == 0 and node.mempool.bytes == 0
    assert not [m for _, m in out if isinstance(m, TxsMsg)]  # nor relayed further


def test_a_relayed_transaction_that_needs_another_senders_pending_one_is_taken(tmp_path: Path) -> None:
    cert = issue_certificate(MAKER, METER.public_key, vendor="Acme", model="M1", firmware="1.0.0", serial="1")
    for order in ("authority first", "meter first"):
        node = node_on(tmp_path, order.replace(" ", "-"))
        chain = node.chain
        extend(chain, [register_identity(chain, k) for k in (ALICE, MAKER)])
        authority = sign(chain, MAKER, RegisterAuthority(int(Role.MANUFACTURER), "Acme"), 1)
        meter = sign(chain, ALICE, registration(METER, cert, "north", ALICE.address, chain.chain_id), 1)
        txs = (authority, meter) if order == "authority first" else (meter, authority)
        out = node.handle("peer", TxsMsg(txs), NOW)
        if order == "authority first":  # the meter's maker is a manufacturer once the first is mined
            assert answers(out) == [] and len(node.mempool) == 2
        else:  # nothing pending makes it one yet
            assert answers(out) == ["InvalidCertificate"] and len(node.mempool) == 1


def test_relayed_gossip_and_a_flood_of_refusals_cost_an_application_each(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Blocks of about eight transfers, so the pool holds several blocks' worth.
    senders = test_keys(24)
    node = Node("n", new_chain(tmp_path / "n", test_params(senders, max_block_bytes=1_200)))
    node.add_peer("peer")
    applied = 0
    original = apply_transaction

    def counting(*args: object) -> None:
        nonlocal applied
        applied += 1
        original(*args)  # type: ignore[arg-type]

    monkeypatch.setattr(trial_module, "apply_transaction", counting)
    # Gossip interleaves senders: 20 of them, 10 transactions each.
    gossip = [sign(node.chain, k, Transfer(SINK.address, 1_000), n) for n in range(10) for k in senders[:20]]
    for i in range(0, len(gossip), 16):
        node.handle("peer", TxsMsg(tuple(gossip[i : i + 16])), NOW)
    assert len(node.mempool) == len(gossip)
    assert applied == len(gossip)
    # A flood of bonds without an identity from one funded sender, each tried after its
    # sender's (none) and then after a block's worth of the others' — kept, not rebuilt.
    applied = 0
    flood: list[Payload] = [Bond(1_000 + i) for i in range(200)]
    out = node.handle("peer", TxsMsg(tuple(sign(node.chain, senders[20], p, 0) for p in flood)), NOW)
    assert answers(out) == ["UnknownIdentity"] * len(flood)
    block_worth = 1_200 // 129 + 1
    assert applied <= 2 * len(flood) + block_worth


def contract_between(
    chain: bytes, buyer: PrivateKey, seller: PrivateKey, *signers: PrivateKey
) -> OpenContract:
    t = ContractTerms(
        chain, buyer.address, seller.address, METER.address, METER.address, (), 100, 1, 2, 1_000, 1, 0
    )
    return OpenContract(SignedTerms(t, tuple(sign_terms(t, k) for k in signers)))


def test_the_signatures_a_payload_carries_are_checked_with_the_batch_once(tmp_path: Path) -> None:
    """A gossiped contract's party signatures are checked in the gossip batch beside the
    transaction's own (on all cores), and the contract's rules find them in the node's
    signature cache: each is verified once. One that does not verify is still refused by
    its rule, by name, and is the relaying peer's fault."""
    node = node_on(tmp_path)
    tx = sign(node.chain, ALICE, contract_between(node.chain.chain_id, ALICE, BOB, ALICE, BOB), 0)
    before = snapshot()
    assert answers(node.handle("peer", TxsMsg((tx,)), NOW)) == ["UnknownIdentity"]  # (its stateful rule)
    spent = snapshot().since(before)
    assert (spent.verifies, spent.verifies_cached) == (3, 2)  # its own and two parties', each once
    forged = sign(
        node.chain, BOB, contract_between(node.chain.chain_id, BOB, ALICE, BOB, MAKER), 0
    )  # MAKER is no party
    assert answers(node.handle("peer", TxsMsg((forged,)), NOW)) == []
    assert node.stats.fault_rules == {"MissingPartySignature": 1}
