"""Token pools and transit claims on chain: a receiver's claim proves a connection's
delivery, each relay's hop claim pays it what the sender credits it, once per depth, only
after delivery and only to registered identities; every rule broken asserts its named
rejection."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import msgspec
import pytest

from gridnet.crypto.hashing import datagram_digest, hash32, pool_id
from gridnet.crypto.keys import Domain, PrivateKey
from gridnet.encoding import encode
from gridnet.errors import (
    BlockTransactionInvalid,
    ClaimSignatureInvalid,
    HopAlreadyPaid,
    HopBeneficiaryNotCredited,
    HopEntryInvalid,
    HopFraudAlreadyReported,
    HopNotDelivered,
    IdentityRevoked,
    MalformedTransaction,
    NotHopEquivocation,
    NotOvercredit,
    PoolAlreadyRedeemed,
    PoolExists,
    PoolExpired,
    PoolHopsFull,
    PoolIdUsed,
    PoolNotExpired,
    PoolOverdrawn,
    ReceiptInvalid,
    TokenPreimageInvalid,
    TokenSignatureInvalid,
    TokenSignersDiffer,
    UnknownPool,
    UnregisteredHop,
)
from gridnet.ledger.chain import AddStatus
from gridnet.ledger.merkle import merkle_proof, merkle_root
from gridnet.ledger.registry import Payload
from gridnet.ledger.state import IDENTITIES
from gridnet.ledger.transition import validate_transaction
from gridnet.ledger.txs import relay as relay_txs
from gridnet.ledger.txs.bond import Bond, Unbond
from gridnet.ledger.txs.hop_fraud import (
    HOP_FRAUDS,
    HopFraud,
    ReportHopEquivocation,
    ReportHopOvercredit,
    hop_fraud_key,
)
from gridnet.ledger.txs.identity import REVOKED, Revocation
from gridnet.ledger.txs.relay import (
    POOLS,
    RECLAIMED_POOLS,
    ClaimTransit,
    CreateTokenPool,
    ReclaimedPool,
    ReclaimPool,
)
from gridnet.relay.claims import HopClaim, SignedClaim, TransitClaim, sign_claim
from gridnet.relay.fraud import overcredit
from gridnet.relay.hops import (
    MAX_CONNECTION_HOPS,
    HopBook,
    HopEntry,
    HopTicket,
    hop_id,
    hop_shares,
    hops_root,
)
from gridnet.relay.tokens import PPM, HashChain, SignedToken, issue_token
from gridnet.units import UNITS_PER_GNC
from tests.helpers import Actors, new_chain, next_block, register_identity, rejection, supply, test_params
from tests.ledger.forge import forge_block
from tests.ledger.vectors import record_rejection, record_valid, snapshot

OWNER, RECEIVER, STRANGER = (PrivateKey.from_label(f"relay-test-{n}") for n in ("owner", "receiver", "x"))
RELAYS = [PrivateKey.from_label(f"relay-test-hop-{i}") for i in range(3)]
PUPPET = PrivateKey.from_label("relay-test-puppet")
"""A registered identity the pool owner controls (its puppet relay)."""
CHAIN = HashChain(b"seed" * 8, 1_000)
POOL = pool_id(OWNER.address, CHAIN.final)
AMOUNT = 1_000 * 1_000  # 1,000 base units per hash
PAYRATE = 750_000  # p = 0.75


def receipt(depth: int) -> bytes:
    """Stands for the digest of the envelope the token at ``depth`` paid for."""
    return hash32(f"envelope {depth}".encode())


class Sender:
    """The pool owner's side: its hop book, and the tokens and tickets it handed out."""

    def __init__(self, net: Actors) -> None:
        self.chain_id = net.chain.chain_id
        self.book = HopBook(b"book" * 8)
        self.tokens: dict[int, SignedToken] = {}
        self.tickets: dict[int, dict[bytes, HopTicket]] = {}

    def send(self, depth: int, relays: list[PrivateKey] = RELAYS) -> SignedToken:
        credit = self.book.plan(depth, [r.address for r in relays], PAYRATE)
        self.book.commit(credit)
        token = issue_token(
            OWNER, self.chain_id, CHAIN, POOL, depth, datagram_digest(receipt(depth)), credit.root
        )
        self.tokens[depth] = token
        self.tickets[depth] = {t.entry.relay: t for t in credit.tickets}
        return token

    def hop_claim(self, depth: int, relay: PrivateKey) -> HopClaim:
        return HopClaim(self.tokens[depth], self.tickets[depth][relay.address])


def claim(
    net: Actors, token: SignedToken, signer: PrivateKey = RECEIVER, proof: bytes | None = None
) -> SignedClaim:
    depth = token.token.depth
    body = TransitClaim(token, receipt(depth) if proof is None else proof, signer.public_key, datagrams=10)
    return sign_claim(signer, net.chain.chain_id, body)


def network(path: Path, puppets: Sequence[PrivateKey] = (), gnc: int = 1_000) -> Actors:
    """The relays (and ``puppets``, the owner's) register identities, 16 a block, and the
    owner creates the pool, expiring at height 20 (another ``gnc`` each at genesis: another
    chain, whose pool has the same id)."""
    people = [OWNER, RECEIVER, STRANGER, PUPPET, *RELAYS, *puppets]
    actors = Actors(new_chain(path, test_params(people, gnc=gnc)), people)
    registering = [*RELAYS, PUPPET, *puppets]
    for i in range(0, len(registering), 16):
        batch = registering[i : i + 16]
        actors.mine(*(actors.tx(k, register_identity(actors.chain, k).payload) for k in batch))
    actors.mine(actors.tx(OWNER, CreateTokenPool(CHAIN.final, CHAIN.length, AMOUNT, expiry_height=20)))
    return actors


@pytest.fixture
def net(tmp_path: Path) -> Actors:
    return network(tmp_path / "c")


def balances(net: Actors) -> list[int]:
    return [net.chain.account(r.address).balance for r in RELAYS]


def pay(net: Actors, *hop_claims: HopClaim, by: PrivateKey = STRANGER) -> None:
    """Anyone may submit hop claims: the pay goes to the relays they name."""
    net.mine(net.tx(by, ClaimTransit(None, hop_claims)))


def refused(net: Actors, payload: ClaimTransit) -> Exception:
    return net.refused(STRANGER, payload)


def test_a_receivers_claim_then_the_relays_hop_claims_pay_each_its_share(net: Actors) -> None:
    sender = Sender(net)
    token = sender.send(40)
    before = balances(net)
    net.mine(net.tx(RECEIVER, ClaimTransit(claim(net, token))))
    assert balances(net) == before  # the receiver's claim proves delivery; it pays nobody
    pay(net, *(sender.hop_claim(40, r) for r in RELAYS))
    paid = [b - a for a, b in zip(before, balances(net), strict=True)]
    expected = [s for _, s in hop_shares(40 * 1_000, [r.address for r in RELAYS], PAYRATE)]
    assert paid == expected == [10_000, 7_500, 22_500]  # (1-p), p(1-p), p^2 of 40,000
    pool = net.chain.view().get(POOLS, POOL)
    assert pool is not None and pool.redeemed_depth == 40 and pool.paid == 40_000 and pool.claims == 1
    assert [(h.relay, h.paid) for h in pool.hops] == sorted(
        (r.address, p) for r, p in zip(RELAYS, paid, strict=True)
    )


def test_the_receivers_claim_and_hop_claims_in_one_transaction(net: Actors) -> None:
    sender = Sender(net)
    token = sender.send(8)
    before = balances(net)
    net.mine(net.tx(RECEIVER, ClaimTransit(claim(net, token), (sender.hop_claim(8, RELAYS[0]),))))
    assert balances(net)[0] - before[0] == 2_000


def test_each_depth_is_claimed_once_and_each_credit_paid_once(net: Actors) -> None:
    sender = Sender(net)
    first = sender.send(40)
    net.mine(net.tx(RECEIVER, ClaimTransit(claim(net, first))))
    assert isinstance(refused(net, ClaimTransit(claim(net, first))), PoolAlreadyRedeemed)
    pay(net, sender.hop_claim(40, RELAYS[0]))
    assert isinstance(refused(net, ClaimTransit(None, (sender.hop_claim(40, RELAYS[0]),))), HopAlreadyPaid)
    # Ten more units: the relay's next claim pays only what its credit grew by.
    later = sender.send(50)
    net.mine(net.tx(RECEIVER, ClaimTransit(claim(net, later))))
    before = balances(net)[0]
    pay(net, sender.hop_claim(50, RELAYS[0]))
    assert balances(net)[0] - before == 10 * 1_000 * (PPM - PAYRATE) // PPM


def test_a_hop_claim_beyond_the_delivered_depth(net: Actors) -> None:
    """Datagram 50 may never have arrived: its relays wait for a claim that proves it."""
    sender = Sender(net)
    delivered, _ = sender.send(40), sender.send(50)
    assert isinstance(refused(net, ClaimTransit(None, (sender.hop_claim(40, RELAYS[0]),))), HopNotDelivered)
    net.mine(net.tx(RECEIVER, ClaimTransit(claim(net, delivered))))
    assert isinstance(refused(net, ClaimTransit(None, (sender.hop_claim(50, RELAYS[0]),))), HopNotDelivered)
    pay(net, sender.hop_claim(40, RELAYS[0]))


def test_a_hop_claim_that_pays_an_unregistered_relay(net: Actors) -> None:
    """The sender routed through (and credited) a key that never registered an identity:
    the chain pays it nothing; the registered hops are paid as the sender credited them."""
    sender = Sender(net)
    token = sender.send(40, [RELAYS[0], STRANGER, RELAYS[1]])
    net.mine(net.tx(RECEIVER, ClaimTransit(claim(net, token))))
    assert isinstance(refused(net, ClaimTransit(None, (sender.hop_claim(40, STRANGER),))), UnregisteredHop)
    pay(net, sender.hop_claim(40, RELAYS[1]))


def test_a_hop_entry_changed_added_or_moved(net: Actors) -> None:
    """A relay raises its own credit, makes an entry for a puppet, or claims with a ticket
    of another datagram's token: the entry is not under the root the sender signed."""
    sender = Sender(net)
    sender.send(40)
    token = sender.send(41)
    net.mine(net.tx(RECEIVER, ClaimTransit(claim(net, token))))
    own = sender.hop_claim(41, RELAYS[0])
    raised = HopTicket(msgspec.structs.replace(own.ticket.entry, credit=41 * PPM), own.ticket.proof)
    puppet = HopTicket(HopEntry(STRANGER.address, PPM, bytes(16)), own.ticket.proof)
    for forged in (
        HopClaim(own.token, raised),
        HopClaim(own.token, puppet),
        HopClaim(sender.tokens[40], own.ticket),
    ):
        with pytest.raises(HopEntryInvalid):
            refused(net, ClaimTransit(None, (forged,)))


def test_a_sender_that_credits_more_than_it_revealed(net: Actors) -> None:
    """The owner signs a hop root that credits its own puppet the whole delivered depth
    before the real relays: the chain never pays out more than the delivered units."""
    honest = Sender(net)
    token = honest.send(40)
    net.mine(net.tx(RECEIVER, ClaimTransit(claim(net, token))))
    greedy = HopEntry(RELAYS[2].address, 40 * PPM, bytes(16))
    root = hops_root([greedy])
    inflated = issue_token(OWNER, net.chain.chain_id, CHAIN, POOL, 40, datagram_digest(receipt(40)), root)
    pay(net, HopClaim(inflated, HopTicket(greedy, ())))
    assert isinstance(refused(net, ClaimTransit(None, (honest.hop_claim(40, RELAYS[0]),))), PoolOverdrawn)


def test_a_pool_pays_a_bounded_number_of_relays(net: Actors, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(relay_txs, "MAX_CONNECTION_HOPS", 2)
    sender = Sender(net)
    token = sender.send(40)
    net.mine(net.tx(RECEIVER, ClaimTransit(claim(net, token))))
    pay(net, sender.hop_claim(40, RELAYS[0]), sender.hop_claim(40, RELAYS[1]))
    assert isinstance(refused(net, ClaimTransit(None, (sender.hop_claim(40, RELAYS[2]),))), PoolHopsFull)


def test_a_preimage_that_does_not_hash_to_the_pool(net: Actors) -> None:
    t = Sender(net).send(40)
    # Signed by the owner, but the preimage is one step short of the depth it claims.
    forged_token = msgspec.structs.replace(t.token, preimage=CHAIN.preimage(39))
    forged = SignedToken(forged_token, OWNER.sign(Domain.TOKEN, net.chain.chain_id + encode(forged_token)))
    assert isinstance(refused(net, ClaimTransit(claim(net, forged))), TokenPreimageInvalid)


def test_a_token_not_signed_by_the_pool_owner(net: Actors) -> None:
    stolen = issue_token(
        STRANGER, net.chain.chain_id, CHAIN, POOL, 40, datagram_digest(receipt(40)), bytes(32)
    )
    assert isinstance(refused(net, ClaimTransit(claim(net, stolen))), TokenSignatureInvalid)
    sender = Sender(net)
    token = sender.send(40)
    net.mine(net.tx(RECEIVER, ClaimTransit(claim(net, token))))
    hop = sender.hop_claim(40, RELAYS[0])
    unsigned = msgspec.structs.replace(hop, token=msgspec.structs.replace(hop.token, signature=bytes(64)))
    assert isinstance(refused(net, ClaimTransit(None, (unsigned,))), TokenSignatureInvalid)


def test_a_claim_without_the_receivers_signature(net: Actors) -> None:
    token = Sender(net).send(40)
    forged = msgspec.structs.replace(claim(net, token), signature=bytes(64))
    assert isinstance(refused(net, ClaimTransit(forged)), ClaimSignatureInvalid)


def test_a_claim_without_delivery(net: Actors) -> None:
    """A relay saw the token on its way and signs a claim of its own: it cannot compute the
    receipt (the digest of an envelope only the receiver opened), so it proves nothing."""
    token = Sender(net).send(40)
    guessed = claim(net, token, signer=RELAYS[0], proof=hash32(b"a guess"))
    with pytest.raises(ReceiptInvalid):
        validate_transaction(
            net.pending(RELAYS[0], ClaimTransit(guessed)), net.chain.params, net.chain.chain_id
        )


def test_a_transit_claim_with_nothing_or_the_same_relay_twice_is_malformed(net: Actors) -> None:
    sender = Sender(net)
    sender.send(40)
    twice = (sender.hop_claim(40, RELAYS[0]),) * 2
    for payload in (ClaimTransit(None), ClaimTransit(None, twice)):
        with pytest.raises(MalformedTransaction):
            validate_transaction(net.pending(STRANGER, payload), net.chain.params, net.chain.chain_id)


def test_claims_on_a_pool_that_does_not_exist(net: Actors) -> None:
    other = HashChain(b"other" * 7 + b"x", 10)
    token = issue_token(
        OWNER,
        net.chain.chain_id,
        other,
        pool_id(OWNER.address, other.final),
        5,
        datagram_digest(receipt(5)),
        bytes(32),
    )
    assert isinstance(refused(net, ClaimTransit(claim(net, token))), UnknownPool)


def test_a_pool_with_the_same_owner_and_final_hash_is_opened_once(net: Actors) -> None:
    again = CreateTokenPool(CHAIN.final, 10, 10 * AMOUNT, expiry_height=30)  # other terms, same pool id
    error = net.refused(OWNER, again)
    assert isinstance(error, PoolExists) and POOL.hex()[:16] in str(error)
    net.mine(net.tx(STRANGER, again))  # another owner's pool of the same hash has another id
    assert net.chain.view().get(POOLS, pool_id(STRANGER.address, CHAIN.final)) is not None
    pool = net.chain.view().get(POOLS, POOL)
    assert pool is not None and pool.expiry_height == 20  # the first is unchanged


def test_reclaim_after_expiry_returns_what_was_not_paid(net: Actors) -> None:
    sender = Sender(net)
    token = sender.send(100)
    later = sender.send(200)
    net.mine(net.tx(RECEIVER, ClaimTransit(claim(net, token))))
    pay(net, *(sender.hop_claim(100, r) for r in RELAYS))
    assert isinstance(net.refused(OWNER, ReclaimPool(POOL)), PoolNotExpired)
    while net.chain.height < 20:
        net.mine()
    assert isinstance(refused(net, ClaimTransit(claim(net, later))), PoolExpired)
    assert isinstance(refused(net, ClaimTransit(None, (sender.hop_claim(100, RELAYS[0]),))), PoolExpired)
    before = net.chain.account(OWNER.address).balance
    reclaim = net.tx(OWNER, ReclaimPool(POOL))
    net.mine(reclaim)
    assert net.chain.account(OWNER.address).balance == before + AMOUNT - 100 * 1_000 - reclaim.fee
    assert net.chain.view().get(POOLS, POOL) is None


def test_a_reclaimed_pools_id_is_never_created_again(net: Actors) -> None:
    """Reclaimed, a pool leaves its id used: its owner cannot create it again (a new pool of
    the same owner and final hash would start with nothing redeemed, and the old pool's
    tokens and claims would advance and pay it again), so those tokens and claims, replayed,
    find no pool; the id's entry is no pool to anything that looks one up."""
    sender = Sender(net)
    token = sender.send(100)
    net.mine(net.tx(RECEIVER, ClaimTransit(claim(net, token))))
    pay(net, *(sender.hop_claim(100, r) for r in RELAYS))
    while net.chain.height < 20:
        net.mine()
    chain = net.chain
    pre = snapshot(chain)
    block = next_block(chain, [net.tx(OWNER, ReclaimPool(POOL))])
    assert chain.add_block(block, now=block.header.timestamp).status is AddStatus.EXTENDED
    record_valid(
        "token_pool_reclaimed_keeps_its_id",
        "the owner reclaims its expired pool: the pool is deleted and its id recorded as used",
        pre,
        block,
        block.header.timestamp,
        chain,
    )
    assert chain.view().get(POOLS, POOL) is None
    height = block.header.height
    assert chain.view().get(RECLAIMED_POOLS, POOL) == ReclaimedPool(reclaimed_at=height)
    again = CreateTokenPool(CHAIN.final, CHAIN.length, AMOUNT, expiry_height=40)
    error = net.refused(OWNER, again)
    assert isinstance(error, PoolIdUsed)
    assert POOL.hex()[:16] in str(error) and f"reclaimed at height {height}" in str(error)
    reject(
        net,
        OWNER,
        again,
        PoolIdUsed,
        "token_pool_created_again_after_reclaim",
        "the owner creates again the pool (owner and final hash) it reclaimed",
    )
    # The pool created again and the old receiver's claim with a relay's hop claim replayed
    # behind it: the creation is refused, and the claim finds no pool to advance or pay.
    replayed = ClaimTransit(claim(net, token), (sender.hop_claim(100, RELAYS[0]),))
    template = chain.build_block(
        STRANGER.address,
        [
            validate_transaction(net.pending(OWNER, again), chain.params, chain.chain_id),
            validate_transaction(net.pending(STRANGER, replayed), chain.params, chain.chain_id),
        ],
    )
    assert [type(e) for _, e in template.rejected] == [PoolIdUsed, UnknownPool]
    hop_claims = tuple(sender.hop_claim(100, r) for r in RELAYS)
    assert isinstance(refused(net, ClaimTransit(None, hop_claims)), UnknownPool)
    # Another hash chain of the owner's is another pool.
    fresh = HashChain(b"fresh" * 6 + b"ab", 10)
    net.mine(net.tx(OWNER, CreateTokenPool(fresh.final, fresh.length, 10 * AMOUNT, expiry_height=40)))
    assert chain.view().get(POOLS, pool_id(OWNER.address, fresh.final)) is not None


# --- fraud proofs: double-signed hop entries ---------------------------------------------
# A sender that signs two tokens of one depth, or entries worth more than the units it
# revealed, loses its stake to whoever proves it (``ledger/txs/hop_fraud.py``). Every case
# is dumped as a consensus vector (tests/vectors/hop_*.json).

GNC = UNITS_PER_GNC


def staked_owner(net: Actors) -> None:
    """The pool owner registers its identity and bonds 50 GNC."""
    net.mine(
        net.tx(OWNER, register_identity(net.chain, OWNER).payload),
        net.tx(OWNER, Bond(50 * GNC)),
    )


def puppet_token(net: Actors, depth: int, credit: int) -> HopClaim:
    """A token the owner signs at ``depth`` whose only entry credits its puppet ``credit``
    [millionths of a unit], with the puppet's ticket."""
    entry = HopEntry(PUPPET.address, credit, bytes(16))
    token = issue_token(
        OWNER, net.chain.chain_id, CHAIN, POOL, depth, datagram_digest(receipt(depth)), hops_root([entry])
    )
    return HopClaim(token, HopTicket(entry, ()))


PUPPETS = [PrivateKey.from_label(f"relay-test-puppet-{i}") for i in range(MAX_CONNECTION_HOPS)]
"""As many identities of the owner's as a pool pays relays."""


def crowd(net: Actors, depth: int, credit: int) -> tuple[HopClaim, ...]:
    """One token the owner signs at ``depth`` crediting each of its ``PUPPETS`` ``credit``
    [millionths of a unit], with each puppet's hop claim."""
    entries = [HopEntry(p.address, credit, bytes(16)) for p in PUPPETS]
    ids = sorted(hop_id(e) for e in entries)
    token = issue_token(
        OWNER, net.chain.chain_id, CHAIN, POOL, depth, datagram_digest(receipt(depth)), merkle_root(ids)
    )
    return tuple(HopClaim(token, HopTicket(e, merkle_proof(ids, ids.index(hop_id(e))))) for e in entries)


def reject(
    net: Actors, by: PrivateKey, payload: Payload, error: type[Exception], name: str, what: str
) -> None:
    """A block holding ``payload`` (signed by ``by``) is refused with ``error``; the case is
    dumped as a vector."""
    chain = net.chain
    pre = snapshot(chain)
    block = forge_block(chain, [net.pending(by, payload)])
    head = chain.head.hash
    with pytest.raises(BlockTransactionInvalid) as info:
        chain.add_block(block, now=block.header.timestamp)
    assert type(info.value.error) is error and info.value.index == 1
    assert chain.head.hash == head
    record_rejection(name, what, pre, block, block.header.timestamp, info.value)


def prove(
    net: Actors, by: PrivateKey, payload: Payload, name: str, what: str, beneficiary: PrivateKey | None
) -> tuple[int, int]:
    """The owner unbonds 20 of its 50 GNC; in the next block, while that coin still waits
    out its delay, ``payload`` (signed by ``by``) is mined and the block dumped as a vector:
    a tenth of the stake to ``beneficiary`` (None: all destroyed), nothing to ``by`` but its
    fee. Returns the coin the owner forfeited and the coin destroyed [base units]."""
    chain = net.chain
    net.mine(net.tx(OWNER, Unbond(20 * GNC)))
    assert (chain.account(OWNER.address).bonded, chain.account(OWNER.address).unbonding) == (
        30 * GNC,
        20 * GNC,
    )
    owner, reporter = chain.account(OWNER.address), chain.account(by.address)
    paid = None if beneficiary is None or beneficiary == by else chain.account(beneficiary.address)
    total = supply(chain)
    pre = snapshot(chain)
    tx = net.tx(by, payload)
    block = next_block(chain, [tx])
    assert chain.add_block(block, now=block.header.timestamp).status is AddStatus.EXTENDED
    record_valid(name, what, pre, block, block.header.timestamp, chain)
    forfeited = owner.bonded + owner.unbonding
    minted = block.txs[0].payload.reward  # type: ignore[union-attr]  # (the coinbase)
    after = chain.account(OWNER.address)
    assert (after.bonded, after.unbonding, after.balance) == (0, 0, owner.balance)
    reward = 0 if beneficiary is None else forfeited // 10
    assert chain.account(by.address).balance == reporter.balance - tx.fee + (
        reward if beneficiary == by else 0
    )
    if paid is not None and beneficiary is not None:
        assert chain.account(beneficiary.address).balance == paid.balance + reward
    destroyed = total + minted - supply(chain)
    assert destroyed == forfeited - reward
    return forfeited, destroyed


def test_double_signed_hop_entries_forfeit_the_senders_bond_and_unbonding(net: Actors) -> None:
    """The attack: the owner signs a second token at the delivered depth crediting its
    puppet everything, has it paid first, and the honest relays find the pool overdrawn.
    The refused relay reads the puppet's hop claim on chain and proves the equivocation
    with its own token: the owner's stake is lost, its identity revoked."""
    staked_owner(net)
    honest = Sender(net)
    token = honest.send(40)
    net.mine(net.tx(RECEIVER, ClaimTransit(claim(net, token))))
    inflated = puppet_token(net, 40, 40 * PPM)
    pay(net, inflated)
    assert isinstance(refused(net, ClaimTransit(None, (honest.hop_claim(40, RELAYS[0]),))), PoolOverdrawn)
    forfeited, destroyed = prove(
        net,
        RELAYS[0],
        ReportHopEquivocation(token, inflated.token, honest.hop_claim(40, RELAYS[0]).ticket),
        "hop_equivocation_forfeits_bond_and_unbonding",
        "a relay proves the pool owner signed two tokens of one depth with different hop roots, "
        "naming itself by its hop entry under the first token's root: the owner's bond and "
        "unbonding coin are forfeited, a tenth to the relay, the rest destroyed, and its "
        "identity is revoked",
        RELAYS[0],
    )
    assert (forfeited, destroyed) == (50 * GNC, 45 * GNC)
    view = net.chain.view()
    assert view.get(IDENTITIES, OWNER.address) is None
    assert view.get(REVOKED, OWNER.address) == Revocation(revoked_at=net.chain.height)
    assert view.get(HOP_FRAUDS, hop_fraud_key(OWNER.address, POOL)) == HopFraud(net.chain.height)
    # Nothing of the owner's unbonding comes back when its delay ends.
    for _ in range(net.chain.params.unbonding_delay + 1):
        net.mine()
    assert net.chain.account(OWNER.address).bonded + net.chain.account(OWNER.address).unbonding == 0
    # Taking part again takes a new address and a new identity proof-of-work.
    again = register_identity(net.chain, OWNER).payload
    assert isinstance(net.refused(OWNER, again), IdentityRevoked)


def test_a_hop_equivocation_proof_that_proves_nothing(net: Actors) -> None:
    """Two tokens of different depths, one token twice, tokens of two keys, a token whose
    signature fails: each refused by its named rule, nothing forfeited."""
    staked_owner(net)
    honest = Sender(net)
    first, second = honest.send(40), honest.send(41)
    reject(
        net,
        RELAYS[0],
        ReportHopEquivocation(first, second, None),
        NotHopEquivocation,
        "hop_equivocation_not_conflicting",
        "two tokens of one pool at different depths are reported as an equivocation",
    )
    assert isinstance(net.refused(RELAYS[0], ReportHopEquivocation(first, first, None)), NotHopEquivocation)
    theirs = issue_token(
        STRANGER, net.chain.chain_id, CHAIN, POOL, 40, datagram_digest(receipt(40)), bytes(32)
    )
    reject(
        net,
        RELAYS[0],
        ReportHopEquivocation(first, theirs, None),
        TokenSignersDiffer,
        "hop_equivocation_signers_differ",
        "a token of the pool owner and one of another key at the same depth are reported as an equivocation",
    )
    forged = msgspec.structs.replace(puppet_token(net, 40, PPM).token, signature=bytes(64))
    reject(
        net,
        RELAYS[0],
        ReportHopEquivocation(first, forged, None),
        TokenSignatureInvalid,
        "hop_equivocation_bad_signature",
        "the second token of a hop-equivocation proof does not carry the owner's signature",
    )
    assert net.chain.account(OWNER.address).bonded == 50 * GNC
    assert net.chain.view().get(IDENTITIES, OWNER.address) is not None


def test_a_hop_fraud_is_punished_once_per_pool(net: Actors) -> None:
    staked_owner(net)
    token = Sender(net).send(40)
    inflated = puppet_token(net, 40, 40 * PPM)
    net.mine(net.tx(RELAYS[0], ReportHopEquivocation(token, inflated.token, None)))
    reject(
        net,
        RELAYS[1],
        ReportHopEquivocation(inflated.token, token, None),
        HopFraudAlreadyReported,
        "hop_fraud_reported_twice",
        "an equivocation already proven on a pool is reported again (its tokens swapped)",
    )
    honest = Sender(net)
    honest.send(40)
    overcredit = ReportHopOvercredit((inflated, honest.hop_claim(40, RELAYS[0])), RELAYS[0].address)
    assert isinstance(net.refused(RELAYS[1], overcredit), HopFraudAlreadyReported)


def test_a_proof_against_a_revoked_owner_takes_nothing_more(net: Actors) -> None:
    """An owner already punished equivocates on another pool: the proof is accepted like any
    other (the pool is recorded), but a revoked identity can bond nothing again, so nothing
    more is taken and the first revocation height stays."""
    staked_owner(net)
    net.mine(
        net.tx(RELAYS[0], ReportHopEquivocation(Sender(net).send(40), puppet_token(net, 40, PPM).token, None))
    )
    revoked_at = net.chain.height
    other = HashChain(b"other-pool".ljust(32, b"."), 100)
    other_pool = pool_id(OWNER.address, other.final)
    net.mine(net.tx(OWNER, CreateTokenPool(other.final, other.length, 100_000, expiry_height=50)))
    owner = net.chain.account(OWNER.address)
    reporter = net.chain.account(RELAYS[1].address).balance
    a, b = (
        issue_token(OWNER, net.chain.chain_id, other, other_pool, 5, datagram_digest(receipt(5)), r)
        for r in (bytes(32), POOL)
    )
    proof = net.tx(RELAYS[1], ReportHopEquivocation(a, b, None))
    net.mine(proof)
    assert net.chain.account(OWNER.address) == owner
    assert net.chain.account(RELAYS[1].address).balance == reporter - proof.fee
    view = net.chain.view()
    assert view.get(REVOKED, OWNER.address) == Revocation(revoked_at=revoked_at)
    assert view.get(HOP_FRAUDS, hop_fraud_key(OWNER.address, other_pool)) == HopFraud(net.chain.height)


def test_entries_worth_more_than_the_units_forfeit_the_senders_stake(net: Actors) -> None:
    """The attack without an equivocation: the owner signs its puppet's token at a depth no
    honest datagram used (39, between the honest 38 and 40). No two tokens share a depth,
    but the puppet's entry and an honest relay's credit more than the 40 units delivered."""
    staked_owner(net)
    honest = Sender(net)
    honest.send(38)
    token = honest.send(40)
    net.mine(net.tx(RECEIVER, ClaimTransit(claim(net, token))))
    puppet = puppet_token(net, 39, 39 * PPM)
    pay(net, puppet)
    own = honest.hop_claim(40, RELAYS[0])
    assert isinstance(refused(net, ClaimTransit(None, (own,))), PoolOverdrawn)
    for pair in ((honest.tokens[38], puppet.token), (puppet.token, token)):
        assert isinstance(
            net.refused(RELAYS[0], ReportHopEquivocation(*pair, own.ticket)), NotHopEquivocation
        )
    forfeited, destroyed = prove(
        net,
        RELAYS[0],
        ReportHopOvercredit((puppet, own), RELAYS[0].address),
        "hop_overcredit_forfeits_bond_and_unbonding",
        "a relay proves the pool owner's entries credit its puppet 39 units and the relay 10 "
        "when the deepest of their tokens reveals 40, naming itself: the owner's stake is "
        "forfeited, a tenth to the relay, and its identity revoked",
        RELAYS[0],
    )
    assert (forfeited, destroyed) == (50 * GNC, 45 * GNC)
    assert net.chain.view().get(REVOKED, OWNER.address) == Revocation(revoked_at=net.chain.height)


def test_an_overcredit_proof_that_proves_nothing(net: Actors) -> None:
    """An honest connection's entries, a relay counted twice, entries of two pools, a
    changed entry, no entry, tokens of two keys: each refused by its named rule."""
    staked_owner(net)
    honest = Sender(net)
    honest.send(38)
    honest.send(40, [RELAYS[0], RELAYS[1]])
    every = tuple(honest.hop_claim(d, r) for d, r in ((38, RELAYS[2]), (40, RELAYS[0]), (40, RELAYS[1])))
    reject(
        net,
        RELAYS[0],
        ReportHopOvercredit(every, None),
        NotOvercredit,
        "hop_overcredit_not_exceeding",
        "an honest connection's entries, the deepest of each relay, reported as crediting more than revealed",
    )
    twice = (
        puppet_token(net, 39, 39 * PPM),
        honest.hop_claim(40, RELAYS[0]),
        honest.hop_claim(38, RELAYS[0]),
    )
    other = HashChain(b"other-pool".ljust(32, b"."), 100)
    foreign = issue_token(
        OWNER, net.chain.chain_id, other, pool_id(OWNER.address, other.final), 40, bytes(32), bytes(32)
    )
    own = honest.hop_claim(40, RELAYS[0])
    raised = HopTicket(msgspec.structs.replace(own.ticket.entry, credit=40 * PPM), own.ticket.proof)
    theirs = issue_token(
        STRANGER,
        net.chain.chain_id,
        CHAIN,
        POOL,
        39,
        bytes(32),
        hops_root([HopEntry(PUPPET.address, 39 * PPM, bytes(16))]),
    )
    for hops, error in (
        (twice, NotOvercredit),
        ((puppet_token(net, 39, 39 * PPM), HopClaim(foreign, own.ticket)), NotOvercredit),
        ((puppet_token(net, 39, 39 * PPM), HopClaim(own.token, raised)), HopEntryInvalid),
        ((), NotOvercredit),
        ((HopClaim(theirs, puppet_token(net, 39, 39 * PPM).ticket), own), TokenSignersDiffer),
    ):
        assert isinstance(net.refused(RELAYS[0], ReportHopOvercredit(hops, None)), error)


def test_entries_of_more_relays_than_a_pool_pays_forfeit_the_senders_stake(tmp_path: Path) -> None:
    """The attack without an overdraw or an equivocation: the owner signs a token at depth 1,
    which no honest datagram used, crediting each of 64 puppets of its own a thousandth of a
    unit (a base unit each, 64 in all: within the unit revealed); the honest connection runs
    from depth 1 to 40. Once the receiver's claim is mined, one transaction of the puppets'
    hop claims takes the 64 places a pool pays, and every honest relay is refused
    ``PoolHopsFull``. The refused relay's entry with the 64 puppets' (on chain) proves the
    owner credited 65 relays on one pool: its stake is forfeited, a tenth to the relay."""
    net = network(tmp_path / "c", PUPPETS)
    staked_owner(net)
    puppets = crowd(net, 1, PPM // 1_000)
    honest = Sender(net)
    honest.book.depth = 1  # its first datagram reveals units 2 to 40: the puppets have the 1st
    token = honest.send(40)
    net.mine(net.tx(RECEIVER, ClaimTransit(claim(net, token))))
    pay(net, *puppets)
    pool = net.chain.view().get(POOLS, POOL)
    assert pool is not None and pool.paid == MAX_CONNECTION_HOPS and len(pool.hops) == MAX_CONNECTION_HOPS
    for relay in RELAYS:
        assert isinstance(refused(net, ClaimTransit(None, (honest.hop_claim(40, relay),))), PoolHopsFull)
    own = honest.hop_claim(40, RELAYS[0])
    assert overcredit((own, *puppets)) < 0  # no credit beyond the units revealed
    assert isinstance(
        net.refused(RELAYS[0], ReportHopEquivocation(puppets[0].token, token, None)), NotHopEquivocation
    )  # nor two tokens of one depth
    forfeited, destroyed = prove(
        net,
        RELAYS[0],
        ReportHopOvercredit((own, *puppets), RELAYS[0].address),
        "hop_overcredit_of_more_relays_than_a_pool_pays",
        "a relay refused because the pool already pays 64 relays proves, with its own entry and "
        "the 64 entries the pool paid, that the owner credited 65 relays on one pool, every "
        "credit within the units revealed: the owner's stake is forfeited, a tenth to the relay, "
        "and its identity revoked",
        RELAYS[0],
    )
    assert (forfeited, destroyed) == (50 * GNC, 45 * GNC)
    assert net.chain.view().get(REVOKED, OWNER.address) == Revocation(revoked_at=net.chain.height)
    again = ReportHopOvercredit((honest.hop_claim(40, RELAYS[1]), *puppets), RELAYS[1].address)
    assert isinstance(net.refused(RELAYS[1], again), HopFraudAlreadyReported)


def test_entries_of_as_many_relays_as_a_pool_pays_prove_nothing(net: Actors) -> None:
    """64 relays' entries within the units revealed; 65 entries naming a relay twice, or one
    of another pool: each refused ``NotOvercredit``, nothing forfeited."""
    staked_owner(net)
    puppets = crowd(net, 1, PPM // 1_000)
    reject(
        net,
        RELAYS[0],
        ReportHopOvercredit(puppets, None),
        NotOvercredit,
        "hop_overcredit_of_as_many_relays_as_a_pool_pays",
        "the entries of 64 relays, as many as a pool pays, crediting a thousandth of a unit each "
        "under a token of depth 1, reported as crediting more than revealed",
    )
    other = HashChain(b"other-pool".ljust(32, b"."), 100)
    foreign_pool = pool_id(OWNER.address, other.final)
    entry = HopEntry(RELAYS[0].address, PPM, bytes(16))
    foreign = issue_token(
        OWNER, net.chain.chain_id, other, foreign_pool, 1, datagram_digest(receipt(1)), hops_root([entry])
    )
    for hops in ((*puppets, puppets[0]), (*puppets, HopClaim(foreign, HopTicket(entry, ())))):
        assert isinstance(net.refused(RELAYS[0], ReportHopOvercredit(hops, None)), NotOvercredit)
    assert net.chain.account(OWNER.address).bonded == 50 * GNC
    assert net.chain.view().get(IDENTITIES, OWNER.address) is not None


# --- who a hop-fraud proof rewards: the relay it shows credited, not who sends it --------


def overdrawn(net: Actors) -> tuple[Sender, SignedToken, HopClaim]:
    """The equivocation attack up to the honest relay's refusal: the honest token at 40, the
    owner's puppet paid everything under a second token at 40, ``RELAYS[0]`` refused
    ``PoolOverdrawn``. Returns the honest sender, its token and the puppet's hop claim."""
    staked_owner(net)
    honest = Sender(net)
    token = honest.send(40)
    net.mine(net.tx(RECEIVER, ClaimTransit(claim(net, token))))
    inflated = puppet_token(net, 40, 40 * PPM)
    pay(net, inflated)
    assert isinstance(refused(net, ClaimTransit(None, (honest.hop_claim(40, RELAYS[0]),))), PoolOverdrawn)
    return honest, token, inflated


def test_a_report_copied_out_of_the_mempool_pays_the_relay_not_the_copier(net: Actors) -> None:
    """The red team's front-run: the refused relay's report waits in a mempool; a stranger
    copies its payload under its own key and has it mined first. The report names the relay
    by its hop entry under the honest token's root: the tenth goes to the relay, the copier
    pays its fee for nothing, and the relay's own report is then refused as already
    reported, with the relay already paid."""
    honest, token, inflated = overdrawn(net)
    report = ReportHopEquivocation(token, inflated.token, honest.hop_claim(40, RELAYS[0]).ticket)
    relays_own = net.tx(RELAYS[0], report)  # waiting in a mempool: anyone reads its payload
    relay_before = net.chain.account(RELAYS[0].address).balance
    forfeited, destroyed = prove(
        net,
        STRANGER,
        report,
        "hop_equivocation_copied_pays_the_relay_it_names",
        "a stranger copies a relay's hop-equivocation report out of the mempool and has it mined "
        "under its own key: the reward goes to the relay whose hop entry the report names, the "
        "copier pays its fee and gains nothing",
        RELAYS[0],
    )
    assert (forfeited, destroyed) == (50 * GNC, 45 * GNC)
    assert net.chain.account(RELAYS[0].address).balance == relay_before + 5 * GNC
    assert isinstance(rejection(net.chain, relays_own), HopFraudAlreadyReported)


def test_a_copier_cannot_name_itself_the_beneficiary(net: Actors) -> None:
    """The copier rewrites the beneficiary: an entry of its own under neither token's root,
    the relay's entry moved to the copier, an entry of no credit, or (overcredit) an address
    no entry of the proof credits: each refused ``HopBeneficiaryNotCredited``, nothing
    forfeited."""
    honest, token, inflated = overdrawn(net)
    own = honest.hop_claim(40, RELAYS[0]).ticket
    made_up = HopTicket(HopEntry(STRANGER.address, 40 * PPM, bytes(16)), ())
    reject(
        net,
        STRANGER,
        ReportHopEquivocation(token, inflated.token, made_up),
        HopBeneficiaryNotCredited,
        "hop_equivocation_beneficiary_not_credited",
        "a hop-equivocation report names as beneficiary an entry under neither token's hop root "
        "(the copier's own)",
    )
    moved = HopTicket(msgspec.structs.replace(own.entry, relay=STRANGER.address), own.proof)
    nothing = HopEntry(RELAYS[1].address, 0, bytes(16))
    zero = issue_token(
        OWNER, net.chain.chain_id, CHAIN, POOL, 40, datagram_digest(b"z"), hops_root([nothing])
    )
    for proof in (
        ReportHopEquivocation(token, inflated.token, moved),
        ReportHopEquivocation(token, zero, HopTicket(nothing, ())),
    ):
        assert isinstance(net.refused(STRANGER, proof), HopBeneficiaryNotCredited)
    overcredit = ReportHopOvercredit((inflated, honest.hop_claim(40, RELAYS[0])), STRANGER.address)
    reject(
        net,
        STRANGER,
        overcredit,
        HopBeneficiaryNotCredited,
        "hop_overcredit_beneficiary_not_credited",
        "a hop-overcredit report names as beneficiary an address no entry of the proof credits",
    )
    assert net.chain.account(OWNER.address).bonded == 50 * GNC


def test_a_report_that_names_no_beneficiary_destroys_the_reward(net: Actors) -> None:
    """A copier that strips the beneficiary (or a reporter no entry credits, the receiver):
    the stake is forfeited all the same, and all of it destroyed; the sender gains nothing."""
    honest, _, inflated = overdrawn(net)
    forfeited, destroyed = prove(
        net,
        STRANGER,
        ReportHopOvercredit((inflated, honest.hop_claim(40, RELAYS[0])), None),
        "hop_overcredit_without_beneficiary_destroys_the_reward",
        "a hop-overcredit report naming no beneficiary forfeits the owner's stake and destroys "
        "all of it: its sender gains nothing",
        None,
    )
    assert (forfeited, destroyed) == (50 * GNC, 50 * GNC)


def test_the_other_token_or_another_credited_relay_may_be_named(net: Actors) -> None:
    """The beneficiary's entry may be under either token (the puppet's, too: an owner that
    reports itself first keeps a tenth, as before, never more), and an overcredit report may
    name any relay its entries credit, whoever sends it."""
    _, token, inflated = overdrawn(net)
    before = net.chain.account(PUPPET.address).balance
    net.mine(net.tx(STRANGER, ReportHopEquivocation(token, inflated.token, inflated.ticket)))
    assert net.chain.account(PUPPET.address).balance == before + 5 * GNC


# --- tokens and claims are signed for one chain --------------------------------------------


def twin(tmp_path: Path) -> Actors:
    """Another chain (another genesis) where the owner registered the same final hash: its
    pool has the same id as ``net``'s, its owner is staked."""
    other = network(tmp_path / "twin", gnc=999)
    staked_owner(other)
    return other


def test_tokens_of_another_chain_prove_no_equivocation_here(net: Actors, tmp_path: Path) -> None:
    """The red team's b1: the owner has a pool of the same id on two chains and signs one
    token a depth on each, honestly. A's depth-1 token beside B's is no equivocation on B:
    A's token is not signed for B (``TokenSignatureInvalid``), nothing is forfeited. Two
    tokens of one depth both signed for B still are."""
    other = twin(tmp_path)
    assert other.chain.chain_id != net.chain.chain_id
    on_a = Sender(net).send(1, [RELAYS[0]])
    on_b = Sender(other).send(1, [RELAYS[1]])
    assert on_a.token.pool == on_b.token.pool == POOL
    reject(
        other,
        RELAYS[0],
        ReportHopEquivocation(on_a, on_b, None),
        TokenSignatureInvalid,
        "hop_equivocation_token_of_another_chain",
        "a token the pool owner signed on another chain, for a pool of the same id there, and "
        "one it signed on this chain at the same depth are reported as an equivocation",
    )
    assert isinstance(other.refused(STRANGER, ReportHopEquivocation(on_b, on_a, None)), TokenSignatureInvalid)
    assert other.chain.account(OWNER.address).bonded == 50 * GNC
    assert other.chain.view().get(IDENTITIES, OWNER.address) is not None
    again = Sender(other).send(1, [RELAYS[2]])
    other.mine(other.tx(STRANGER, ReportHopEquivocation(on_b, again, None)))
    assert other.chain.account(OWNER.address).bonded == 0


def test_a_pool_on_another_chain_only_forfeits_nothing_here(net: Actors, tmp_path: Path) -> None:
    """The red team's b2: two tokens of a pool that exists only on a test chain (a drill)
    are an equivocation there, and prove nothing on this chain."""
    staked_owner(net)
    drill = network(tmp_path / "drill", gnc=998)
    hashes = HashChain(b"testnet!" * 4, 100)
    pool = pool_id(OWNER.address, hashes.final)
    tokens = [
        issue_token(OWNER, drill.chain.chain_id, hashes, pool, 3, datagram_digest(d), bytes(32))
        for d in (b"x", b"y")
    ]
    assert isinstance(net.refused(STRANGER, ReportHopEquivocation(*tokens, None)), TokenSignatureInvalid)
    entries = [HopEntry(r.address, 3 * PPM, bytes(16)) for r in RELAYS[:2]]
    hops = tuple(
        HopClaim(
            issue_token(OWNER, drill.chain.chain_id, hashes, pool, 3, bytes(32), hops_root([e])),
            HopTicket(e, ()),
        )
        for e in entries
    )
    assert isinstance(net.refused(STRANGER, ReportHopOvercredit(hops, None)), TokenSignatureInvalid)
    assert net.chain.account(OWNER.address).bonded == 50 * GNC


def test_tokens_signed_for_this_chain_prove_without_the_pool_on_it(net: Actors) -> None:
    """The decision: a proof needs no pool on chain (an owner may have reclaimed its pool
    before the proof is mined). Two tokens of one depth signed for this chain, of a pool
    never created here, are the owner's word on this chain: its stake is forfeited."""
    staked_owner(net)
    hashes = HashChain(b"never-created".ljust(32, b"."), 100)
    pool = pool_id(OWNER.address, hashes.final)
    assert net.chain.view().get(POOLS, pool) is None
    a, b = (
        issue_token(OWNER, net.chain.chain_id, hashes, pool, 3, datagram_digest(d), bytes(32))
        for d in (b"x", b"y")
    )
    net.mine(net.tx(STRANGER, ReportHopEquivocation(a, b, None)))
    assert net.chain.account(OWNER.address).bonded == 0


def test_claims_of_another_chain_neither_advance_nor_pay_a_pool_here(net: Actors, tmp_path: Path) -> None:
    """A receiver's claim and the relays' hop claims made on chain A are submitted on chain
    B, whose pool has the same id: the receiver's signature is for A
    (``ClaimSignatureInvalid``), and re-signed for B the token still is A's
    (``TokenSignatureInvalid``); a hop claim of A's token pays nothing on B."""
    other = twin(tmp_path)
    on_a = Sender(net)
    token = on_a.send(40)
    net.mine(net.tx(RECEIVER, ClaimTransit(claim(net, token))))
    reject(
        other,
        STRANGER,
        ClaimTransit(claim(net, token)),
        ClaimSignatureInvalid,
        "transit_claim_of_another_chain",
        "a receiver's claim signed on another chain, whose pool has the same id, is submitted here",
    )
    assert isinstance(other.refused(STRANGER, ClaimTransit(claim(other, token))), TokenSignatureInvalid)
    on_b = Sender(other)
    delivered = on_b.send(40)
    other.mine(other.tx(RECEIVER, ClaimTransit(claim(other, delivered))))
    reject(
        other,
        STRANGER,
        ClaimTransit(None, (on_a.hop_claim(40, RELAYS[0]),)),
        TokenSignatureInvalid,
        "hop_claim_of_another_chain",
        "a relay's hop claim under a token signed on another chain, for a pool of the same id "
        "there, is submitted here after this chain's pool was delivered to that depth",
    )
    pool = other.chain.view().get(POOLS, POOL)
    assert pool is not None and pool.paid == 0 and pool.redeemed_depth == 40
    pay(other, on_b.hop_claim(40, RELAYS[0]))
