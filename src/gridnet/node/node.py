"""The sans-IO node: ``handle(peer, message, now)`` and ``tick(now)`` return the
messages to send; the caller (in-memory network or TCP transport) delivers them.

The same node runs in the simulator (simulated clock) and as a process (wall clock).
"""

from __future__ import annotations

import dataclasses
import itertools
import logging
import random
import time
from collections import Counter, OrderedDict, deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import partial, wraps
from typing import Concatenate, ParamSpec, TypeVar

from msgspec.structs import replace

from gridnet.crypto.address import address_from_public_key
from gridnet.crypto.hashing import hash32, header_hash, txid, vote_id
from gridnet.crypto.keys import PrivateKey, SignatureCache, SignatureCheck, verify_many
from gridnet.encoding import decode_lenient, encode
from gridnet.errors import (
    AlreadyKnown,
    BadVoteSignature,
    BelowMinChainWork,
    ConflictsWithFinal,
    GridnetError,
    HeadersAhead,
    IdentityRevoked,
    InvalidBlock,
    InvalidOrder,
    InvalidTransaction,
    KnownInvalid,
    LighterBranch,
    NonceGap,
    NotAValidator,
    OrderExpired,
    OrderOwnerInvalid,
    OrderRefused,
    PeerBusy,
    PendingHeadersExpired,
    PendingHeadersFull,
    RequestExpired,
    RequestSuperseded,
    RequestUnanswered,
    RevokedMeter,
    ServeQueueFull,
    ServeRefused,
    StoreError,
    SyncDeclined,
    TimestampTooFarInFuture,
    UnknownParent,
    VoteTargetAhead,
    VoteTooLate,
)
from gridnet.grid.commands import SignedCommand
from gridnet.ledger.blocks import Block, Checkpoint, Header, SignedVote, Vote
from gridnet.ledger.chain import AddResult, AddStatus, BlockEntry, BlockTemplate, Chain
from gridnet.ledger.mempool import DEFAULT_MAX_BYTES, EventKind, LostLog, Mempool, PoolEvent, Taken
from gridnet.ledger.miner import propose_block
from gridnet.ledger.poa import (
    is_voter,
    proposer_of,
    seal_valid,
    sign_vote,
    slot_of,
    slot_start,
    validator_set,
    vote_signed,
)
from gridnet.ledger.pow import meets_target, mine
from gridnet.ledger.transactions import Transaction, min_fee, sign_transaction, tx_body, tx_id, tx_size
from gridnet.ledger.transition import (
    VerifiedTx,
    ahead_checks,
    signature_check,
    validate_header,
    validate_transaction,
)
from gridnet.ledger.trial import NO_MINER, TrialState
from gridnet.ledger.txs.transfer import Transfer
from gridnet.ledger.txs.validators import ReportValidatorFault
from gridnet.ledger.wallet import last_sealed_slot, record_sealed_slot, restore_pending
from gridnet.market.orders import SignedOrder, validate_order
from gridnet.node.commands import CommandBoard
from gridnet.node.finality import LastVote, SealLog, VotePool, lowest_counted, vote_ahead
from gridnet.node.gossip import ORDER, TX, EarlyTxs, Inventory, Kind
from gridnet.node.logs import short
from gridnet.node.messages import (
    MAX_BLOCKS,
    MAX_HEADERS,
    MAX_LOCATOR,
    BlockMsg,
    BlocksMsg,
    BusyMsg,
    GetBlocksMsg,
    GetHeadersMsg,
    GetSenderTxsMsg,
    HaveMsg,
    HeadersMsg,
    Message,
    OrderMsg,
    StatusMsg,
    TxRejectedMsg,
    TxsMsg,
    VoteMsg,
    WantMsg,
    decode_work,
    encode_work,
)
from gridnet.node.orders import HeldOrders, OrderBook, OrderLimits, check_trader, held_grace_ms
from gridnet.node.serving import ServeLimit, ServeRequest
from gridnet.node.sync import PendingHeaders, Presync, Proof
from gridnet.units import Address, Hash32, interval_of
from gridnet.work import target_from_bytes

_net = logging.getLogger("gridnet.net")
_sync = logging.getLogger("gridnet.sync")
_mine = logging.getLogger("gridnet.mine")
_mempool = logging.getLogger("gridnet.mempool")

Outgoing = tuple[str, Message]
"""(destination peer, message)."""

LAST_VOTE = "last_vote"
"""Store meta key of this node's validator's last vote (``LastVote``)."""
MAX_REPLY_BYTES = 3 * 1024 * 1024
"""Most block bytes in one BlocksMsg (a message is at most 4 MiB; a block at most 3 MiB)."""
GOSSIP_VERIFY_WINDOW = 128
"""Transactions of a gossip batch whose signatures are checked together, on all cores."""
REFUSED_KEPT = 16_384
"""Relayed transactions refused on the current head that a node remembers (the oldest are
forgotten), so that copies of them are neither checked nor answered again until the next."""


@dataclass
class NodeConfig:
    miner: Address | None = None
    """Mine to this address; None = do not mine."""
    hashes_per_tick: int = 200
    """Proof-of-work attempts per tick (the node's simulated or real hash budget)."""
    validator: PrivateKey | None = None
    """Permissioned chain: seal blocks in this key's slots and vote with it (None: neither)."""
    equivocate: bool = False
    """Fault injection (labs and tests): as a validator, seal two different blocks for each
    own slot and sign two conflicting votes for each head; the others prove it and remove it."""
    template_refresh_ms: int = 1_000
    """Rebuild the block template at least this often (to pick up new transactions)."""
    status_interval_ms: int = 2_000
    blocks_per_request: int = 64
    """Blocks asked for, and sent, per request (at most ``MAX_BLOCKS``)."""
    serve_bytes_per_s: int = 16 << 20
    """Bytes sent per second, at most, to the peers of one host (all the keys and links of one
    address) in answer to their ``GetBlocksMsg`` and ``GetHeadersMsg``; a request over it waits
    its turn and is answered once the host's budget has refilled (``node/serving.py``), so a
    peer asking for the same blocks or headers in a loop cannot take the node's time and
    upload."""
    serve_burst_bytes: int = 16 << 20
    """Bytes a host that asked for nothing for a while may be sent at once."""
    headers_per_request: int = MAX_HEADERS
    max_pending_headers: int = 50_000
    """Checked headers whose blocks are not here yet, at most (about 700 bytes each); a peer
    that needs room pushes out the branch of the peer holding the most (``node/sync.py``)."""
    max_headers_per_peer: int = 10_000
    """Pending headers one peer's branch may hold (the rest are asked for again once its
    blocks have made room)."""
    pending_expiry_timeouts: int = 12
    """A peer's pending headers (or presync) are dropped when no block of them arrived (no
    header of it was checked) for this many ``request_timeout_ms``."""
    max_presync_headers: int = 250_000
    """Headers of a branch below the chain's ``min_chain_work`` checked without being kept (4
    bytes each are recorded), at most: a branch that needs more to reach it is forgotten."""
    request_timeout_ms: int = 5_000
    """A block request unanswered for this long may be sent again."""
    max_orphans: int = 64
    max_orphans_per_peer: int = 16
    max_orphan_bytes: int = 16 << 20
    max_orphan_bytes_per_peer: int = 4 << 20
    """Blocks whose parent is unknown kept, at most this many and bytes, and this many and
    bytes from one peer (the oldest go first)."""
    keep_side_depth: int = 64
    """Side branches that leave the main chain this many blocks below the head or deeper
    are pruned from the store (checked every ``status_interval_ms``)."""
    mempool_max_txs: int = 50_000
    mempool_max_bytes: int = DEFAULT_MAX_BYTES
    """Encoded size of the pending transactions, at most [bytes] (``ledger/mempool.py``)."""
    tx_batch: int = 256
    """Relayed transactions go to each peer in batches of up to this many, at the latest on
    the next tick (a user's own transaction goes out at once)."""
    events_kept: int = 10_000
    """Recent mempool outcomes kept in ``Node.events``, and as many of the transactions it let
    go without a block in ``Node.lost`` (at most ``LOST_BYTES`` of them; all are counted in the
    stats)."""
    orders: OrderLimits = field(default_factory=OrderLimits)
    """Bounds of the order book (window of delivery intervals, per key, per topic, total)."""
    tx_batch_bytes: int = 1 << 20
    """A batch is sent before it would grow past this many bytes (a frame holds 4 MiB)."""
    max_fanout: int = 8
    """Gossiped items (transactions, orders, blocks) go to at most this many peers, picked at
    random per item among those it did not come from (``node/gossip.py``). The others are
    told the ids of transactions and orders (HaveMsg, next tick) and ask for what they lack
    (WantMsg); a block they miss reaches them from other peers or through sync after a
    status announcement. The seen-sets (mempool, order ids, block index) stop repeats."""
    max_asks_per_peer: int = 4096
    """Items asked of one peer and not received yet, at most (as many more of its
    announcements wait, asked for as these are answered; forgotten when one times out)."""
    max_told_per_peer: int = 50_000
    """Ids announced to a peer that it may still ask for (the oldest are forgotten)."""
    max_early_txs: int = 16_384
    max_early_bytes: int = 16 << 20
    max_early_per_peer: int = 4096
    """Relayed transactions refused for ``NonceGap`` but held (at most this many and bytes,
    and this many from one peer), to be admitted when their sender's earlier nonce arrives or
    is mined. Each peer sends a node an item once, so one not held is not offered again."""
    gap_fill: int = 32
    """A relayed transaction ahead of its sender's next nonce makes the node ask the peer
    that sent it for the sender's pending transactions from that nonce on (GetSenderTxsMsg,
    once per sender and nonce per ``request_timeout_ms``); a peer answers with at most this
    many (0: neither ask nor answer)."""
    gap_fills_per_tick: int = 32
    """GetSenderTxsMsg answered per peer and tick, at most (the rest are ignored); a node
    sends a peer at most half as many per tick."""
    max_early_ahead: int = 4096
    """Only a transaction at most this many nonces ahead of its sender's next one (the
    mempool's per-sender limit), from a sender that can pay its fee, is held."""


GAP_SENDERS_PER_TICK = 256
"""Senders whose gaps a tick looks at (the next ones on the following ticks)."""
GAP_TRIES = 3
"""Asks for the same gap that bring nothing before it is given up."""
BUSY_MAX_TIMEOUTS = 12
"""A peer that answered busy is asked again after at most this many ``request_timeout_ms``
(its back-off starts at a quarter of one and doubles while it stays busy)."""


@dataclass
class _LocalBatch:
    """Local users' transactions being taken (``Node._admit_local``): written to the pending
    table in one SQLite transaction, with the removal of what they replaced or evicted, before
    any is sent or reported; if that write fails, taken back with what they displaced."""

    taken: list[Taken] = field(default_factory=list)
    """The pool's record of each one accepted, in order (``Mempool.withdraw``)."""
    before: dict[Hash32, tuple[bool, tuple[bytes, int] | None]] = field(default_factory=dict)
    """The pending-table changes they overwrote (whether there was one, and it)."""


@dataclass(frozen=True)
class _Behind:
    peer: str
    """Who to ask (the peer that relayed a transaction of the sender ahead of our nonce; ""
    once it left: then another)."""
    ahead: int
    """The highest nonce seen relayed ahead: caught up past it, the entry goes."""
    nonce: int
    """Our next nonce for the sender when last asked."""
    tries: int


@dataclass(frozen=True)
class _Orphan:
    peer: str
    """The peer it came from ("" for a local one)."""
    block: Block
    size: int
    """Encoded [bytes]."""


@dataclass
class NodeStats:
    blocks_mined: int = 0
    blocks_received: int = 0
    reorgs: int = 0
    invalid_blocks: int = 0
    txs_accepted: int = 0
    txs_rejected: int = 0
    tx_outcomes: Counter[str] = field(default_factory=Counter)
    """Mempool outcomes by kind (accepted, rejected, evicted, included, dropped)."""
    peer_faults: dict[str, int] = field(default_factory=dict)
    """Faults per linked peer (forgotten when it leaves or the transport cuts it off)."""
    fault_rules: Counter[str] = field(default_factory=Counter)
    """Peer faults by the rule broken."""
    block_rules: Counter[str] = field(default_factory=Counter)
    """Invalid blocks and headers by the rule broken."""
    declined: Counter[str] = field(default_factory=Counter)
    """What peers offered for sync that was not kept, by rule (``SyncDeclined``)."""
    votes_refused: Counter[str] = field(default_factory=Counter)
    """Votes heard that were neither kept nor relayed, by rule (``VoteRefused``, or
    ``NotAValidator`` for a key outside the set)."""
    tx_rules: Counter[str] = field(default_factory=Counter)
    """Transactions refused, evicted or dropped, by rule."""
    orders_refused: Counter[str] = field(default_factory=Counter)
    """Peers' orders whose owner or meter failed ``PlaceOrder``'s rules on our head, by rule
    (``UnknownIdentity``, ``MeterNotOwned``, ``WrongArea``, ``IdentityRevoked``,
    ``RevokedMeter``): held aside or not, never a fault (``Node._hold_order``)."""
    blocks_imported: int = 0
    """Blocks from peers that became part of the main chain."""
    block_requests_delayed: int = 0
    """Peers' ``GetBlocksMsg`` and ``GetHeadersMsg`` that waited for their host's serving
    budget."""
    block_requests_refused: Counter[str] = field(default_factory=Counter)
    """Peers' ``GetBlocksMsg`` and ``GetHeadersMsg`` not answered, by rule (``ServeRefused``)."""
    validation_seconds: float = 0.0
    """Wall time spent validating and storing blocks (a measurement, not simulated)."""


_P = ParamSpec("_P")
_R = TypeVar("_R")


def _own_signature_cache(method: Callable[Concatenate[Node, _P], _R]) -> Callable[Concatenate[Node, _P], _R]:
    """Run a node's entry point with its own signature cache current: whatever it checks
    there (transactions, blocks, orders, commands) it verifies once."""

    @wraps(method)
    def entry(self: Node, /, *args: _P.args, **kwargs: _P.kwargs) -> _R:
        with self.signatures.active():
            return method(self, *args, **kwargs)

    return entry


class Node:
    def __init__(
        self, name: str, chain: Chain, config: NodeConfig | None = None, rng: random.Random | None = None
    ) -> None:
        """``rng`` draws the gossip fan-out: by default seeded by ``name``, so runs on the
        in-memory network repeat; a node process passes an unpredictable one."""
        self.name = name
        self.chain = chain
        self.config = config or NodeConfig()
        self.signatures = SignatureCache()
        """Signatures this node verified (each is checked once: on arrival, not again in its
        templates or in the block that carries it)."""
        self.mempool = Mempool(
            chain.params,
            chain.chain_id,
            max_txs=self.config.mempool_max_txs,
            max_bytes=self.config.mempool_max_bytes,
        )
        self.peers: list[str] = []
        self.peer_work: dict[str, int] = {}
        """Peer -> the cumulative work it last announced."""
        self.peer_height: dict[str, int] = {}
        """Peer -> the height it last announced."""
        self.orphans: OrderedDict[Hash32, _Orphan] = OrderedDict()
        """Blocks whose parent is unknown yet, oldest first."""
        self._orphan_bytes: Counter[str] = Counter()
        """Peer ("" for a local one) -> encoded bytes of its orphans."""
        self._orphans_size = 0
        """Encoded bytes of all orphans."""
        self.book = OrderBook(self.config.orders)
        self.held_orders = HeldOrders(
            dataclasses.replace(
                self.config.orders,
                grace_ms=held_grace_ms(self.config.orders, self.chain.params.block_interval_ms),
            )
        )
        """Peers' orders whose owner failed PlaceOrder's rules on our head, for a newer one."""
        self._held_head: Hash32 | None = None
        """The head the held orders were last checked on."""
        self.commands = CommandBoard()
        """DSO commands posted here for the devices of their area."""
        """The market's signed orders by topic ("market/AREA/INTERVAL"), off chain."""
        cfg = self.config
        self.inventory = Inventory(
            self.peers,
            rng or random.Random(f"fanout/{name}"),
            max_fanout=cfg.max_fanout,
            timeout_ms=cfg.request_timeout_ms,
            max_asks_per_peer=cfg.max_asks_per_peer,
            max_told_per_peer=cfg.max_told_per_peer,
        )
        self.early = EarlyTxs(cfg.max_early_txs, cfg.max_early_bytes, cfg.max_early_per_peer)
        self._refused: OrderedDict[bytes, None] = OrderedDict()
        """Signatures of relayed transactions refused on this head by a stateful rule (their
        signatures verified: a transaction with one is that one, or a forgery no check
        would pass). Gossip sends each transaction once a peer, so another copy is a
        repeat: skipped, neither checked nor answered again (a peer resending one refused
        transaction would otherwise cost a check and an answer a copy). Forgotten on a new
        head, when the same transaction may be valid."""
        self._behind: OrderedDict[bytes, _Behind] = OrderedDict()
        """Sender key -> who to ask to fill the gap before what we hold of it, until we catch
        up to the highest nonce relayed ahead (at most ``max_early_txs`` senders)."""
        self._gaps_asked: dict[tuple[bytes, int], int] = {}
        """(sender key, nonce) -> when we asked a peer to fill the gap before it."""
        # A request waits only while the rate answers it within half a request timeout (the
        # other half is for the answer to travel), and is dropped after a whole one.
        self.serving = ServeLimit(
            cfg.serve_bytes_per_s, cfg.serve_burst_bytes, cfg.request_timeout_ms // 2, cfg.request_timeout_ms
        )
        """The budget of the bytes each host's peers are sent in answer to their sync requests
        (blocks and headers), and their requests waiting."""
        self._fills_served: Counter[str] = Counter()
        self._fills_asked: Counter[str] = Counter()
        """Peer -> GetSenderTxsMsg answered (sent) this tick."""
        self._fill_bytes: Counter[str] = Counter()
        """Peer -> bytes of transactions sent it in answers this tick."""
        self._fills_seen: dict[tuple[str, bytes, int], int] = {}
        """(peer, sender, nonce) -> when we answered that question."""
        self._inflight: dict[str, tuple[int, str]] = {}
        """Peer -> (when, "headers" or "blocks"): the request it has not answered yet."""
        self._waiting_since: dict[str, int] = {}
        """Peer -> when we sent the oldest of its requests it has not answered (asking again
        does not reset it)."""
        self._unanswering: set[str] = set()
        """Peers that left a request unanswered for ``request_timeout_ms`` (declined once,
        ``RequestUnanswered``, until they answer)."""
        self._busy: dict[str, tuple[int, int]] = {}
        """Peer -> (when it may be asked again [ms], how many times in a row it answered
        busy): it answered our last request with ``BusyMsg`` (forgotten once it answers one)."""
        self._peer_tip: dict[str, BlockEntry] = {}
        """Peer -> the last block of its answers: where the next request continues."""
        self.headers = PendingHeaders(
            max_total=cfg.max_pending_headers,
            max_per_peer=cfg.max_headers_per_peer,
            expiry_ms=cfg.pending_expiry_timeouts * cfg.request_timeout_ms,
        )
        """Headers checked (proof-of-work, target, time, links) whose blocks we lack, per peer;
        and the presyncs of branches below the minimum chain work."""
        self._presync_declined: dict[str, int] = {}
        """Peer -> when its last presync was declined (the next waits the expiry time)."""
        self._declined_told: dict[str, set[str]] = {}
        """Peer -> the rules it was logged declined (or not answered) for (once each at info level)."""
        self.events: deque[PoolEvent] = deque(maxlen=self.config.events_kept)
        self.lost = LostLog(self.config.events_kept)
        """The transactions the pool let go without a block (``GET /mempool/lost``)."""
        """This node's recent mempool outcomes, in order (each one reaches the sender's
        user as a return value or a TxRejectedMsg: nothing is dropped silently)."""
        self.stats = NodeStats()
        self._tx_origin: dict[Hash32, str] = {}
        self._relay: dict[str, dict[Hash32, Transaction]] = {}
        """Peer -> transactions to send it in the next batch (dropped when it sends them first)."""
        self._relay_bytes: dict[str, int] = {}
        self._trial = TrialState(chain)
        """Tries a user's transaction on the head before it is accepted."""
        self._pending_changes: dict[Hash32, tuple[bytes, int] | None] = {}
        """Mempool changes not yet in the store's pending table: (data, added) or None for gone."""
        self._local: _LocalBatch | None = None
        """While ``_admit_local`` admits local users' transactions: those taken so far."""
        with self.signatures.active():  # the pool survives restarts (a damaged row is dropped, logged)
            self._log(restore_pending(chain, self.mempool, _mempool.warning))
        self.votes = VotePool(chain.chain_id)
        """Finality votes heard (permissioned chain): what this node puts in the blocks it seals."""
        self.seals = SealLog(chain.chain_id, chain.params)
        self._reported: set[bytes] = set()
        """Validator keys whose fault this node reported, members of the set ``_reported_seq``
        (at most its members: emptied when the set changes)."""
        self._reported_seq = 0
        self._proposed_slot = last_sealed_slot(chain)
        """The last slot this node's validator sealed a block for (kept in the store: a
        restart never seals a second block for it)."""
        raw = chain.store.get_meta(LAST_VOTE)
        self._last_vote = LastVote(0, 0) if raw is None else decode_lenient(raw, LastVote)
        self._template: BlockTemplate | None = None
        self._template_at = 0
        self._template_generation = -1
        """The mempool's generation the template was built from."""
        self._nonce = 0
        self._pool_tried: Hash32 | None = None
        """The head a node that makes no blocks last tried its pool on (``_let_go``)."""
        self._earliest: tuple[bytes, int] = (b"", 0)
        """(head hash, the earliest time a block on it may carry: its median time past + 1)."""
        self._mining_paused = False
        self._last_status = -(10**18)
        self._pruned_at = -(10**18)

    # --- peers -----------------------------------------------------------------------------

    def add_peer(self, peer: str, host: str | None = None) -> None:
        """Link ``peer``, which reaches us from ``host`` (its address, as the transport sees
        it: the peers of one host share one serving budget); None: a host of its own."""
        if peer not in self.peers:
            self.peers.append(peer)
        self.serving.add_peer(peer, host)

    def remove_peer(self, peer: str) -> None:
        """Forget everything held for ``peer``: what it announced, sent or was to be sent,
        its pending headers and presync, its orphans, its held transactions and faults."""
        if peer in self.peers:
            self.peers.remove(peer)
        self._relay.pop(peer, None)
        self._relay_bytes.pop(peer, None)
        self.serving.remove_peer(peer)
        self._inflight.pop(peer, None)
        self._waiting_since.pop(peer, None)
        self._unanswering.discard(peer)
        self._busy.pop(peer, None)
        self._peer_tip.pop(peer, None)
        self.peer_work.pop(peer, None)
        self.peer_height.pop(peer, None)
        self._declined_told.pop(peer, None)
        self._presync_declined.pop(peer, None)
        self.stats.peer_faults.pop(peer, None)
        dropped = self.headers.drop(peer)
        if dropped:
            _sync.info("dropped %d pending header(s) of %s, which left", dropped, short(peer))
        for h in [h for h, o in self.orphans.items() if o.peer == peer]:
            self._forget_orphan(h)
        self._tx_origin = {t: p for t, p in self._tx_origin.items() if p != peer}
        self._fills_seen = {k: t for k, t in self._fills_seen.items() if k[0] != peer}
        for counts in (self._fills_served, self._fills_asked, self._fill_bytes):
            counts.pop(peer, None)
        for sender, behind in list(self._behind.items()):
            if behind.peer == peer:  # (another peer is asked to fill the gap)
                self._behind[sender] = _Behind("", behind.ahead, behind.nonce, behind.tries)
        self.inventory.remove_peer(peer)
        self.early.drop_peer(peer)
        self.held_orders.drop_peer(peer)

    def _send_block(self, source: str | None, block: Block) -> list[Outgoing]:
        """A new head goes to the fan-out peers; the others get it from theirs, or sync it
        when our next status tells them of more work."""
        return [(p, BlockMsg(block)) for p in self.inventory.spread(source)[0]]

    def _fault(self, peer: str, error: GridnetError) -> None:
        """``peer`` sent something that breaks ``error``'s rule (the transport cuts a peer
        off after a few)."""
        faults = self.stats.peer_faults[peer] = self.stats.peer_faults.get(peer, 0) + 1
        self.stats.fault_rules[error.rule] += 1
        _net.warning("peer %s broke %s (fault %d): %s", short(peer), error.rule, faults, error)

    def _log_head(self, source: str) -> None:
        head = self.chain.head
        best = max(self._announced_height(), head.height)
        if head.height >= best:
            _sync.info("new head %d %s from %s", head.height, head.hash.hex()[:16], short(source))
        else:
            _sync.info("synced to %d of %d from %s", head.height, best, short(source))

    def _invalid_block(self, peer: str | None, height: int, error: InvalidBlock, what: str = "block") -> None:
        self.stats.invalid_blocks += 1
        self.stats.block_rules[error.rule] += 1
        if peer is None:
            _sync.warning("invalid %s %d: %s: %s", what, height, error.rule, error)
        else:
            self._fault(peer, error)

    def _decline(self, peer: str, declined: SyncDeclined) -> None:
        """Nothing of what ``peer`` offered is kept, by ``declined``'s rule (not a fault):
        counted, and logged once per peer and rule (then at debug level)."""
        self.stats.declined[declined.rule] += 1
        self._log_once(peer, declined, _sync, "declined from")

    def sync_target(self) -> int:
        """The highest height this node knows of: its own, a peer's announced as far as the
        peer backs it (``_backed_height``), or a checked header's whose block it lacks (sync
        progress is its height over this)."""
        return max(self.chain.height, self._announced_height(), self.headers.best_height())

    def _announced_height(self) -> int:
        """The highest height a peer announced and backs (0: none does)."""
        return max(map(self._backed_height, self.peer_height), default=0)

    def _backed_height(self, peer: str) -> int:
        """The height ``peer`` announced, as far as it backs it (0: not at all): while it
        announces more work than our best tip, up to the height of the last of its headers we
        checked (its pending branch's tip, or its presync's last header) if that one leads
        past our best tip's work. A bare claim backs nothing, nor do headers of blocks we
        hold: a peer cannot make the node look as if it were syncing by announcing a height
        it never serves."""
        best = self.chain.best_tip().total_work
        if self.peer_work.get(peer, 0) <= best:
            return 0
        tip, _ = self._checked_tip(peer)
        if tip is None or tip.total_work <= best:
            return 0
        return min(self.peer_height.get(peer, 0), tip.height)

    def headers_pending(self) -> int:
        """Checked headers whose blocks are not here yet."""
        return len(self.headers)

    def status(self) -> StatusMsg:
        head = self.chain.head
        return StatusMsg(head.height, head.hash, encode_work(head.total_work))

    def flush_pending(self) -> None:
        """Write the mempool's changes to the store's pending table. Transactions from peers
        are batched per tick (one SQLite transaction instead of one each; a crash loses at
        most one tick of them, and the peers that sent them still hold them); a local
        submission is written at once. A write that fails (a full disk) is rolled back and
        its changes kept for the next flush."""
        changes = self._pending_changes
        added = [(txid, c[0], c[1]) for txid, c in changes.items() if c is not None]
        try:
            self.chain.store.write_pending(added, [txid for txid, c in changes.items() if c is None])
        except BaseException:
            self.chain.store.rollback()
            raise
        self._pending_changes = {}

    def close(self) -> None:
        """Write what the pending table still lacks and close the chain."""
        self.flush_pending()
        self.chain.close()

    # --- inputs ----------------------------------------------------------------------------

    @_own_signature_cache
    def submit_tx(self, tx: Transaction, now: int) -> tuple[list[PoolEvent], list[Outgoing]]:
        """A transaction from a local user: admit it, write it and gossip it (its outcomes)."""
        admitted, out = self._admit_local([tx], now)
        return admitted[0], out

    @_own_signature_cache
    def submit_txs(
        self, txs: Sequence[Transaction], now: int
    ) -> tuple[list[list[PoolEvent]], list[Outgoing]]:
        """Transactions from local users, in order, each admitted as ``submit_tx`` admits one
        (its outcomes, in the same order); but their signatures, and those their payloads
        carry, are checked first as one batch (on all cores, into this node's signature
        cache), and those accepted are written together (none is taken if that write fails)."""
        chain_id, head = self.chain.chain_id, self.chain.view()
        checks: list[SignatureCheck] = []
        for tx in txs:
            checks.append(signature_check(tx, chain_id, tx_body(tx)))
            checks.extend(ahead_checks(tx, chain_id, head))
        verify_many(checks)
        return self._admit_local(txs, now)

    def _admit_local(
        self, txs: Sequence[Transaction], now: int
    ) -> tuple[list[list[PoolEvent]], list[Outgoing]]:
        """Admit local users' transactions in order (each one's outcomes); those accepted are
        written to the pending table in one SQLite transaction, with the removal of what they
        replaced or evicted, before any is sent or what they displaced is reported. If that
        write fails (or anything else does), none is taken: the pool holds what it held before
        them, what they replaced and evicted included, and the error is raised (the users hear
        it)."""
        batch = self._local = _LocalBatch()
        try:
            admitted = [self._admit(None, tx, now, None)[0] for tx in txs]
            if batch.taken:
                self.flush_pending()
        except BaseException:
            self._withdraw_local(batch)
            raise
        finally:
            self._local = None
        out: list[Outgoing] = []
        accepted = (events for events in admitted if events[0].kind is EventKind.ACCEPTED)
        for taken, events in zip(batch.taken, accepted, strict=True):
            self._log(events[:1])
            out.extend(self._publish(events[1:]))
            to, told = self.inventory.spread(None, taken.vtx.tx.sender)
            out.extend((p, TxsMsg((taken.vtx.tx,))) for p in to)
            self.inventory.tell(TX, told, taken.vtx.txid)
        for taken in batch.taken:  # only once they are durable: what their senders' held ones may follow
            out.extend(self._release_early(taken.vtx.tx.sender, taken.vtx.tx.nonce + 1, now))
        return admitted, out

    @_own_signature_cache
    def handle(self, peer: str, msg: Message, now: int) -> list[Outgoing]:
        if isinstance(msg, TxsMsg):
            out: list[Outgoing] = []
            relay = self._relay.get(peer, {})
            window: list[tuple[bytes, Hash32, bool | None]] = []
            for k, tx in enumerate(msg.txs):
                if k % GOSSIP_VERIFY_WINDOW == 0:
                    window = self._verify_ahead(msg.txs[k : k + GOSSIP_VERIFY_WINDOW])
                body, tid, signature_ok = window[k % GOSSIP_VERIFY_WINDOW]
                if tid in self.mempool or tid in self.early:
                    # Gossip brings most transactions more than once: not an outcome, but
                    # news that this peer has it (no need to send it there).
                    relay.pop(tid, None)
                    self.inventory.has(peer, TX, tid)
                    continue
                if tx.signature in self._refused:
                    continue  # refused on this head already: not checked or answered again
                if signature_ok is None:  # a copy of one held then, gone since: read it now
                    body = tx_body(tx)
                    tid = txid(body, tx.signature)
                try:  # what a peer checks before it relays a transaction: failing it is its fault
                    verified = validate_transaction(
                        tx, self.chain.params, self.chain.chain_id, body, signature_ok=signature_ok, tid=tid
                    )
                except InvalidTransaction as exc:
                    # Not answered (a flood of forgeries must not become a flood of answers),
                    # and the rest of the faulty peer's message is not read.
                    self.stats.txs_rejected += 1
                    self._log([PoolEvent(EventKind.REJECTED, tid, None, exc.rule, str(exc))])
                    self._fault(peer, exc)
                    return out
                out.extend(self._on_tx(peer, tx, now, verified)[1])
                if tid in self.mempool or tid in self.early:  # taken: any ask for it is answered
                    self.inventory.received(tid)
            return out
        if isinstance(msg, BlockMsg):
            return self._on_block(peer, msg.block, now)
        if isinstance(msg, StatusMsg):
            return self._on_status(peer, msg, now)
        if isinstance(msg, OrderMsg):
            try:
                return self._on_order(peer, msg.order, now)
            except OrderOwnerInvalid as exc:
                self._hold_order(peer, msg.order, exc, now)
                return []
            except (OrderExpired, OrderRefused):
                return []  # late, or beyond this node's bounds: not malicious
            except InvalidOrder as exc:
                self._fault(peer, exc)
                return []
        if isinstance(msg, VoteMsg):
            return self._on_vote(peer, msg.vote, now)
        if isinstance(msg, HaveMsg):
            return self._on_have(peer, msg, now)
        if isinstance(msg, WantMsg):
            return self._on_want(peer, msg)
        if isinstance(msg, BlocksMsg):
            return self._on_blocks(peer, msg, now)
        if isinstance(msg, GetBlocksMsg | GetHeadersMsg):
            return self._on_serve_request(peer, msg, now)
        if isinstance(msg, GetSenderTxsMsg):
            return self._on_get_sender_txs(peer, msg, now)
        if isinstance(msg, HeadersMsg):
            return self._on_headers(peer, msg, now)
        if isinstance(msg, BusyMsg):
            self._on_busy(peer, msg, now)
        return []  # (TxRejectedMsg: informative for the sender's user)

    def _verify_ahead(self, txs: Sequence[Transaction]) -> list[tuple[bytes, Hash32, bool | None]]:
        """Check the signatures of the transactions of a gossip batch not yet held, on all
        cores (and into this node's signature cache, for the blocks that will carry them):
        each is then admitted in order, as before, with its verdict. A window at a time: a
        batch that turns out faulty is not read past its first bad transaction, nor verified
        much beyond it. Per transaction: its body, its id and its verdict; for a copy of one
        held (found by its signature: gossip brings most transactions more than once, and a
        copy is neither encoded nor hashed again), no body, the held one's id and None."""
        window: list[tuple[bytes, Hash32, int | None]] = []  # (body, id, its check's place)
        checks: list[SignatureCheck] = []
        chain_id, head = self.chain.chain_id, self.chain.view()
        for tx in txs:
            copy_of = self.mempool.copy_of(tx) or self.early.copy_of(tx)
            if copy_of is not None:
                window.append((b"", copy_of, None))
                continue
            if tx.signature in self._refused:  # (skipped, unread)
                window.append((b"", b"", None))
                continue
            body = tx_body(tx)
            window.append((body, txid(body, tx.signature), len(checks)))
            checks.append(signature_check(tx, chain_id, body))
            # and those its payload carries (contract terms, a contract state with its buyer's
            # key from the head, ...): the type's rules then find them in this node's
            # signature cache, checked on all cores with the rest
            checks.extend(ahead_checks(tx, chain_id, head))
        verdicts = verify_many(checks)
        return [(b, t, None if at is None else verdicts[at]) for b, t, at in window]

    @_own_signature_cache
    def tick(self, now: int) -> list[Outgoing]:
        self.flush_pending()
        out: list[Outgoing] = [(p, TxsMsg(tuple(b.values()))) for p, b in self._relay.items() if b]
        self._relay, self._relay_bytes = {}, {}
        out.extend(self.inventory.announcements())
        out.extend(self.inventory.retry(now, self._lacks))
        self._fills_served.clear()
        self._fills_asked.clear()
        self._fill_bytes.clear()
        if self.serving.queued:  # (nothing to look at while no host is over its budget)
            out.extend(self._serve_waiting(now))
        timeout = self.config.request_timeout_ms
        if self._gaps_asked:
            self._gaps_asked = {k: t for k, t in self._gaps_asked.items() if now - t < timeout}
        if self._fills_seen:
            self._fills_seen = {k: t for k, t in self._fills_seen.items() if now - t < timeout}
        out.extend(self._fill_gaps(now))
        self._sync_upkeep(now)
        out.extend(self._review_held_orders(now))
        out.extend(self._announce(now))
        if self.chain.params.permissioned and self.config.validator is not None:
            out.extend(self._propose(now))
            out.extend(self._vote(now))
        elif not self.chain.params.permissioned and self.config.miner is not None:
            out.extend(self._mine(now))
        else:
            out.extend(self._let_go(now))
        return out

    def keep_links(self, now: int) -> list[Outgoing]:
        """What a node whose store cannot be written (a full disk: its transport retries
        ``tick`` with back-off, and ``/health`` says so) still sends on its ticks: its status
        when due, so that its peers keep its links (they close one that sends nothing for
        ``peer_idle_timeout_ms``), and the answers to the sync requests waiting for their
        host's budget — what it holds is still valid to serve. Nothing here writes the store."""
        out = self._serve_waiting(now) if self.serving.queued else []
        out.extend(self._announce(now))
        return out

    def _announce(self, now: int) -> list[Outgoing]:
        """The node's status to every peer, every ``status_interval_ms`` (also when the clock
        stepped back: peers close a link that sends nothing for a while)."""
        if 0 <= now - self._last_status < self.config.status_interval_ms:
            return []
        self._last_status = now
        return [(p, self.status()) for p in self.peers]

    def _let_go(self, now: int) -> list[Outgoing]:
        """A node that makes no blocks tries its pool once on each new head, as a block builder
        would, so that it too lets go what no block includes any more (``defer_blocks`` after
        it first failed): otherwise it would hold it for ever, and count it in its sender's next
        nonce, while the block builders have dropped it."""
        head = self.chain.head.hash
        if head == self._pool_tried or not len(self.mempool):
            return []
        self._pool_tried = head
        trial = self.chain.build_block(NO_MINER, self.mempool.candidates(), now=now)
        events: list[PoolEvent] = []
        for vtx, error in trial.rejected:
            events.extend(self.mempool.remove_rejected(vtx, error, trial.block.header.height))
        return self._record(events)

    # --- transactions ----------------------------------------------------------------------

    def _on_tx(
        self, peer: str, tx: Transaction, now: int, verified: VerifiedTx | None = None
    ) -> tuple[list[PoolEvent], list[Outgoing]]:
        """Admit ``tx`` from ``peer`` (``verified``: it passed its stateless checks), then any
        held transactions of its sender that it lets follow; its own outcomes and the messages
        to send."""
        events, out = self._admit(peer, tx, now, verified)
        if events[0].kind is EventKind.ACCEPTED:
            out.extend(self._release_early(tx.sender, tx.nonce + 1, now))
        return events, out

    def _release_early(self, sender: bytes, nonce: int, now: int) -> list[Outgoing]:
        """Admit ``sender``'s held transactions from ``nonce`` on, while they are accepted
        (the peer that sent one was told of its NonceGap already: not told again)."""
        out: list[Outgoing] = []
        while (held := self.early.take(sender, nonce)) is not None:
            events, more = self._admit(held[0], held[1], now, None, report=False)
            out.extend(more)
            if events[0].kind is not EventKind.ACCEPTED:
                break
            nonce += 1
        return out

    def _next_nonce(self, sender: bytes) -> tuple[int, int]:
        """(the nonce ``sender``'s next transaction needs here, its balance)."""
        address = address_from_public_key(sender)
        account = self.chain.account(address)
        return account.nonce + len(self.mempool.by_sender.get(address, {})), account.balance

    def _on_gap(self, peer: str, txid: Hash32, tx: Transaction, size: int, now: int) -> list[Outgoing]:
        """A relayed transaction ahead of its sender's next nonce (gossip on several paths
        reorders a sender's transactions): hold it if it is within reach and its sender can
        pay (else a peer could fill the hold with junk for free), and ask the peer that sent
        it for the ones before it (it held them when it accepted this one)."""
        nonce, balance = self._next_nonce(tx.sender)
        if tx.nonce - nonce > self.config.max_early_ahead or balance < tx.fee:
            return []
        self.early.hold(peer, txid, tx, size)
        behind = self._behind.pop(tx.sender, None)
        ahead = tx.nonce if behind is None else max(behind.ahead, tx.nonce)
        self._behind[tx.sender] = _Behind(peer, ahead, nonce, 0)
        while len(self._behind) > self.config.max_early_txs:  # (at most one per held tx)
            self._behind.popitem(last=False)
        return self._ask_gap(peer, tx.sender, nonce, now)

    def _ask_gap(self, peer: str, sender: bytes, nonce: int, now: int) -> list[Outgoing]:
        """Ask ``peer`` for ``sender``'s transactions from ``nonce``: once per sender and
        nonce per timeout, and at most half as many asks per peer and tick as a peer answers
        (so asks never fall over its budget, whatever the ticks' phase)."""
        key = (sender, nonce)
        cfg = self.config
        if (
            not cfg.gap_fill
            or key in self._gaps_asked
            or self._fills_asked[peer] >= cfg.gap_fills_per_tick // 2
        ):
            return []
        self._gaps_asked[key] = now
        self._fills_asked[peer] += 1
        return [(peer, GetSenderTxsMsg(sender, nonce))]

    def _fill_gaps(self, now: int) -> list[Outgoing]:
        """Senders we saw ahead of what we hold, not caught up yet: ask again (an answer was
        lost or over budget, or the gap was longer than one answer) — another peer if the
        one that relayed them left; given up after ``GAP_TRIES`` asks that brought nothing."""
        out: list[Outgoing] = []
        for sender in list(itertools.islice(self._behind, GAP_SENDERS_PER_TICK)):
            behind = self._behind[sender]
            nonce = self._next_nonce(sender)[0]
            if nonce > behind.ahead or not self.peers:
                del self._behind[sender]  # caught up (or nobody to ask)
                continue
            if (sender, nonce) in self._gaps_asked:
                self._behind.move_to_end(sender)  # waiting for an answer: the others' turn
                continue
            tries = behind.tries + 1 if nonce == behind.nonce else 1
            if tries > GAP_TRIES:
                del self._behind[sender]  # the gap does not fill (refused each time)
                continue
            peer = behind.peer if behind.peer in self.peers else self.peers[0]
            asked = self._ask_gap(peer, sender, nonce, now)
            if asked:
                self._behind[sender] = _Behind(peer, behind.ahead, nonce, tries)
                self._behind.move_to_end(sender)
            out.extend(asked)
        return out

    def _on_get_sender_txs(self, peer: str, msg: GetSenderTxsMsg, now: int) -> list[Outgoing]:
        """The sender's pending transactions from the nonce asked for, in order: at most
        ``gap_fill`` of them, ``gap_fills_per_tick`` answers and ``tx_batch_bytes`` per peer
        and tick, and the same question from the same peer answered once per timeout."""
        key = (peer, msg.sender, msg.nonce)
        if self._fills_served[peer] >= self.config.gap_fills_per_tick or key in self._fills_seen:
            return []
        self._fills_served[peer] += 1
        pending = self.mempool.by_sender.get(address_from_public_key(msg.sender), {})
        txs: list[Transaction] = []
        budget = self.config.tx_batch_bytes - self._fill_bytes[peer]
        for nonce in range(msg.nonce, msg.nonce + self.config.gap_fill):
            vtx = pending.get(nonce)
            if vtx is None or vtx.size > budget:
                break
            txs.append(vtx.tx)
            budget -= vtx.size
            self._fill_bytes[peer] += vtx.size
        if not txs:
            return []
        self._fills_seen[key] = now
        return [(peer, TxsMsg(tuple(txs)))]

    def _release_after_block(self, blocks: list[Block], now: int) -> list[Outgoing]:
        """A block may have filled a held transaction's gap (its sender's earlier ones were
        mined without passing through our mempool): admit those that are next now."""
        out: list[Outgoing] = []
        senders = dict.fromkeys(t.sender for b in blocks for t in b.txs[1:])  # block order
        for sender in senders:
            if self.early.holds_sender(sender):
                nonce = self._next_nonce(sender)[0]
                self.early.drop_below(sender, nonce)  # spent: stale
                out.extend(self._release_early(sender, nonce, now))
        return out

    def _admit(
        self,
        peer: str | None,
        tx: Transaction,
        now: int,
        verified: VerifiedTx | None,
        *,
        report: bool = True,
    ) -> tuple[list[PoolEvent], list[Outgoing]]:
        """Admit ``tx`` from ``peer``, or from a local user (None: ``_admit_local`` admits those,
        and writes, sends and logs those accepted once all are admitted)."""
        # A user's and a peer's alike: tried on the head after the pending ones (ledger/trial.py).
        check = partial(self._trial.check, self.mempool, now=now, peer=peer is not None)
        local = self._local if peer is None else None
        taken = None if local is None else local.taken
        events = self.mempool.add(
            tx, self.chain.account, verified, decoded=peer is not None, check=check, taken=taken
        )
        outcome = events[0]
        out: list[Outgoing] = []
        if outcome.kind is EventKind.ACCEPTED:
            self.stats.txs_accepted += 1
            self._change_pending(outcome.txid, (encode(tx), now))
            if peer is None:  # only this node holds it: durable before it is sent or logged
                for e in events[1:]:  # (what it replaced or evicted leaves the table in the same write)
                    self._change_pending(e.txid, None)
                return events, out
            self._tx_origin[outcome.txid] = peer
            out.extend(self._queue_relay(peer, outcome.txid, tx))
        else:
            self.stats.txs_rejected += 1
            if peer is not None and outcome.rule != NonceGap.__name__:
                self._refused[tx.signature] = None
                if len(self._refused) > REFUSED_KEPT:
                    self._refused.popitem(last=False)
            if peer is not None and report:
                if outcome.rule == NonceGap.__name__:
                    size = tx_size(tx_body(tx)) if verified is None else verified.size
                    out.extend(self._on_gap(peer, outcome.txid, tx, size, now))
                out.append((peer, TxRejectedMsg(outcome.txid, outcome.rule, outcome.message)))
        self._log([outcome])
        out.extend(self._record(events[1:]))  # evictions the new transaction caused
        return events, out

    def _withdraw_local(self, batch: _LocalBatch) -> None:
        """Take back local transactions just accepted (not kept: the users hear an error),
        last first: the pool puts back what each replaced or evicted, the trial's kept state
        of each one's sender goes back to before it, and the pending table's changes are
        those before them."""
        for taken in reversed(batch.taken):
            self.mempool.withdraw(taken)
            self._trial.take_back(taken.vtx)
            self.stats.txs_accepted -= 1
        for tid, (had, change) in batch.before.items():
            if had:
                self._pending_changes[tid] = change
            else:
                self._pending_changes.pop(tid, None)

    def _change_pending(self, tid: Hash32, change: tuple[bytes, int] | None) -> None:
        """Note a change of the pending table for the next flush (the local transactions being
        taken note what they overwrite)."""
        if self._local is not None and tid not in self._local.before:
            self._local.before[tid] = (tid in self._pending_changes, self._pending_changes.get(tid))
        self._pending_changes[tid] = change

    def _queue_relay(self, source: str | None, txid: Hash32, tx: Transaction) -> list[Outgoing]:
        """Queue ``tx`` for the peers it spreads to (its id for the others; but ``source``, the
        peer it came from); send the batches that are full."""
        out: list[Outgoing] = []
        to, told = self.inventory.spread(source, tx.sender)
        self.inventory.tell(TX, told, txid)
        size = self.mempool.by_id[txid].size
        for p in to:
            batch = self._relay.setdefault(p, {})
            if batch and self._relay_bytes.get(p, 0) + size > self.config.tx_batch_bytes:
                out.append((p, TxsMsg(tuple(batch.values()))))
                batch = self._relay[p] = {}
                self._relay_bytes[p] = 0
            batch[txid] = tx
            self._relay_bytes[p] = self._relay_bytes.get(p, 0) + size
            if len(batch) >= self.config.tx_batch:
                out.append((p, TxsMsg(tuple(batch.values()))))
                self._relay[p] = {}
                self._relay_bytes[p] = 0
        return out

    def _log(self, events: list[PoolEvent]) -> None:
        outcomes = self.stats.tx_outcomes
        debug = _mempool.isEnabledFor(logging.DEBUG)
        for e in events:
            self.events.append(e if e.tx is None else dataclasses.replace(e, tx=None))  # (Node.lost has it)
            outcomes[e.kind.value] += 1
            if e.rule:
                self.stats.tx_rules[e.rule] += 1
            if debug:
                _mempool.debug(
                    "%s %s %s%s", e.kind.value, e.txid.hex()[:16], e.rule, e.message and f": {e.message}"
                )

    def _record(self, events: list[PoolEvent]) -> list[Outgoing]:
        """Log events, keep the store's pending table in step, and tell the relaying peer
        of any transaction evicted or dropped."""
        for e in events:
            if e.kind is EventKind.INCLUDED:  # the block's commit took it out of the table
                self._pending_changes.pop(e.txid, None)
            elif e.kind in (EventKind.EVICTED, EventKind.DROPPED):
                self._pending_changes[e.txid] = None
        return self._publish(events)

    def _publish(self, events: list[PoolEvent]) -> list[Outgoing]:
        """Log events, keep those that let a transaction go in ``lost``, and tell the relaying
        peer of any transaction evicted or dropped."""
        out: list[Outgoing] = []
        for e in events:
            if e.kind in (EventKind.EVICTED, EventKind.DROPPED) and e.tx is not None:
                self.lost.add(e)
            origin = self._tx_origin.pop(e.txid, None)
            if origin is not None and e.kind in (EventKind.EVICTED, EventKind.DROPPED):
                out.append((origin, TxRejectedMsg(e.txid, e.rule, e.message)))
        self._log(events)
        return out

    # --- market orders (off chain) ------------------------------------------------------

    @_own_signature_cache
    def post_command(self, signed: SignedCommand) -> tuple[int, bool]:
        """A DSO's command for its area's devices: kept if the chain vouches for it (raises
        the rule it breaks); (its sequence number, whether it was already held)."""
        return self.commands.post(signed, self.chain.view(), self.chain.chain_id)

    @_own_signature_cache
    def post_order(self, signed: SignedOrder, now: int) -> list[Outgoing]:
        """A local user's order: check it, keep it on its topic and gossip it."""
        return self._on_order(None, signed, now)

    def _on_order(self, peer: str | None, signed: SignedOrder, now: int) -> list[Outgoing]:
        """Check an order (the market's rules: InvalidOrder), keep it within the book's bounds
        (OrderRefused) and gossip it; an order already held is neither kept nor sent again."""
        now_interval = interval_of(now)
        verified = validate_order(
            signed, now_interval=now_interval, chain_id=self.chain.chain_id
        )  # raises the named rule
        if verified.id in self.book:
            return []
        # PlaceOrder's owner rules on the head (OrderOwnerInvalid), the security layer
        # (OrderFromVulnerableMeter: left out of the auction, not the peer's fault)
        check_trader(self.chain.view(), self.chain.params, signed.order)
        if not self.book.add(verified, signed, now_interval):
            return []
        self.inventory.received(verified.id)
        to, told = self.inventory.spread(peer)
        self.inventory.tell(ORDER, told, verified.id)
        return [(p, OrderMsg(signed)) for p in to]

    def _hold_order(self, peer: str, signed: SignedOrder, error: OrderOwnerInvalid, now: int) -> None:
        """A peer's order whose owner or meter fails PlaceOrder's rules on our head: refused,
        and held aside (``HeldOrders``, within the peer's share) for a newer head where it may
        pass. Never the peer's fault: it may have checked the order on another head where it
        passed — a newer one, or one on another branch (the side of a fork that lost, or that
        we never saw: an order valid there fails here for ever). A revoked identity or meter
        is not held: no newer head of ours lets it pass. Counted by rule (``orders_refused``)."""
        self.stats.orders_refused[error.rule] += 1
        if error.rule not in (IdentityRevoked.__name__, RevokedMeter.__name__):
            self.held_orders.hold(peer, signed, now)

    def _review_held_orders(self, now: int) -> list[Outgoing]:
        """The orders held aside, checked again on a new head (taken and gossiped if they
        pass now), and those whose grace is over: still failing, dropped (no fault:
        ``_hold_order``)."""
        head = self.chain.head.hash
        fresh, self._held_head = head != self._held_head, head
        if not len(self.held_orders):
            return []
        out: list[Outgoing] = []
        view = self.chain.view()
        for item in self.held_orders.take(now, every=fresh):
            try:
                check_trader(view, self.chain.params, item.signed.order)
            except OrderOwnerInvalid:
                if item.peer in self.peers and now - item.since < self.held_orders.limits.grace_ms:
                    self.held_orders.put_back(item)  # (a peer that left takes what it sent)
                continue
            except OrderRefused:
                continue
            try:
                out.extend(self._on_order(item.peer, item.signed, now))
            except (OrderExpired, OrderRefused):
                pass
            except InvalidOrder as exc:
                if item.peer in self.peers:
                    self._fault(item.peer, exc)
        return out

    # --- announcements (the peers an item did not go to) ---------------------------------

    def _on_have(self, peer: str, msg: HaveMsg, now: int) -> list[Outgoing]:
        """Ask the announcing peer for the items we lack (unless asked of another already)."""
        relay = self._relay.get(peer, {})
        for tid in msg.txids:  # it has them: no need to send them to it
            relay.pop(tid, None)
        want = self.inventory.on_have(peer, msg, now, self._lacks)
        return [] if want is None else [(peer, want)]

    def _lacks(self, kind: Kind, item: Hash32) -> bool:
        if kind == TX:
            return item not in self.mempool and item not in self.early
        return item not in self.book

    def _on_want(self, peer: str, msg: WantMsg) -> list[Outgoing]:
        """Send a peer what it asks for of what we announced to it and still hold, in the
        order asked (transactions in batches bounded in count and bytes)."""
        out: list[Outgoing] = []
        batch: list[Transaction] = []
        size = 0
        for t in msg.txids:
            vtx = self.mempool.by_id.get(t)
            if vtx is None or not self.inventory.may_serve(peer, t):
                continue
            if batch and (len(batch) >= self.config.tx_batch or size + vtx.size > self.config.tx_batch_bytes):
                out.append((peer, TxsMsg(tuple(batch))))
                batch, size = [], 0
            batch.append(vtx.tx)
            size += vtx.size
        if batch:
            out.append((peer, TxsMsg(tuple(batch))))
        for oid in msg.orders:
            signed = self.book.get(oid)
            if signed is not None and self.inventory.may_serve(peer, oid):
                out.append((peer, OrderMsg(signed)))
        return out

    # --- blocks ----------------------------------------------------------------------------

    def _on_block(self, peer: str | None, block: Block, now: int) -> list[Outgoing]:
        """A gossiped block: stored if it extends what we hold with enough work
        (``_not_worth_storing``), kept as an orphan (and its sender asked for headers) if
        its parent is unknown."""
        self.stats.blocks_received += 1
        out: list[Outgoing] = []
        if self.chain.params.permissioned and peer is not None:
            out.extend(self._check_seal(block.header, now))
        parent = self.chain.entries.get(block.header.prev_hash)
        if peer is not None and parent is not None and not parent.invalid:
            h = header_hash(encode(block.header))
            declined = None if h in self.chain.entries else self._not_worth_storing(h, block.header, parent)
            if declined is not None:
                self._decline(peer, declined)
                return out
        try:
            result = self._add(block, now)
        except UnknownParent as exc:
            if not self._keep_orphan(peer, block):
                if peer is not None:
                    self._fault(peer, exc)
                return out
            out.extend(self._request_headers(peer, now))
            return out
        except InvalidBlock as exc:
            if peer is not None and isinstance(exc, TimestampTooFarInFuture):
                self._decline(peer, HeadersAhead(str(exc)))  # valid a little later: no fault
            else:
                self._invalid_block(peer, block.header.height, exc)
            return out
        out.extend(self._after_add(result, peer, now))
        out.extend(self._connect_orphans(result.block_hash, now))
        return out

    def _after_add(
        self, result: AddResult, source: str | None, now: int, *, relay: bool = True
    ) -> list[Outgoing]:
        if result.status not in (AddStatus.EXTENDED, AddStatus.REORG):
            return []
        out: list[Outgoing] = []
        if result.status is AddStatus.REORG:
            self.stats.reorgs += 1
            head = self.chain.head
            _sync.info(
                "reorg of depth %d (%d block(s) connected); head %d %s",
                len(result.disconnected),
                len(result.connected),
                head.height,
                head.hash.hex()[:16],
            )
        if source is not None:
            self.stats.blocks_imported += len(result.connected)
            if relay:  # (a batch of sync is logged once, by _on_blocks)
                self._log_head(source)
        included = [tx_id(t) for b in result.connected for t in b.txs[1:]]  # block order
        events = self.mempool.update_after_block(included, self.chain.account)
        included_set = set(included)
        for b in reversed(result.disconnected):  # the losing branch's transactions return, in order
            for t in b.txs[1:]:
                if tx_id(t) in included_set:
                    continue
                for e in self.mempool.add(t, self.chain.account):
                    if e.rule == AlreadyKnown.__name__:  # (pending again already: nothing was lost)
                        continue
                    if e.kind is EventKind.REJECTED:  # e.g. the winning branch spent its nonce
                        e = PoolEvent(EventKind.DROPPED, e.txid, e.sender, e.rule, e.message, t)
                    elif e.kind is EventKind.ACCEPTED:  # (the reorg wrote it to the pending table)
                        out.extend(self._queue_relay(None, e.txid, t))  # peers may have dropped it
                    events.append(e)
        if result.disconnected:  # (what followed a returned transaction that failed cannot be mined)
            senders = dict.fromkeys(t.sender for b in result.disconnected for t in b.txs[1:])
            events.extend(
                self.mempool.drop_orphans(map(address_from_public_key, senders), self.chain.account)
            )
        out.extend(self._record(events))
        self._refused.clear()  # (what this head refused, the next may take)
        if len(self.early):
            out.extend(self._release_after_block(result.connected, now))
        self._template = None
        justified = self.chain.justified()
        if justified is not None:  # (permissioned: votes for what is justified can no longer count)
            current = slot_of(self.chain.params, now)
            self.votes.prune(justified.slot, lowest_counted(justified.slot, current))
        tip = self.chain.head
        tip_block = result.connected[-1] if result.connected else None
        if relay and tip_block is not None and tip.hash == result.block_hash:
            out.extend(self._send_block(source, tip_block))
        for origin, vote in self.votes.take_held(self._on_main):  # (votes that came before their block)
            out.extend((p, VoteMsg(vote)) for p in self.inventory.spread(origin)[0])
        return out

    def _add(self, block: Block, now: int) -> AddResult:
        started = time.perf_counter()
        try:
            result = self.chain.add_block(block, now=now)
        finally:
            self.stats.validation_seconds += time.perf_counter() - started
        entry = self.chain.entries.get(result.block_hash)
        if entry is not None:
            self.headers.connected(result.block_hash, entry, now)
        return result

    def _not_worth_storing(self, h: Hash32, header: Header, parent: BlockEntry) -> SyncDeclined | None:
        """Why a peer's block whose parent we hold is not stored (None: it is stored).
        Headers first: a block of a header we checked is stored while its branch leads past
        our best tip; any other must reach the chain's minimum work and carry more work than
        our head by itself (a side block's body is never stored on its own)."""
        what = f"block {header.height} {h.hex()[:16]}"
        if h in self.headers:
            if self.headers.leads_past(h, self.chain.best_tip().total_work):
                return None
            return LighterBranch(f"{what}: its checked branch no longer leads past our best tip")
        target = target_from_bytes(header.target)
        if not 0 < target <= self.chain.params.pow_limit_int:
            return None  # (a target out of range: validation names the rule)
        work = self.chain.weight(parent.total_work, header)
        minimum = self.chain.params.min_chain_work_int
        if work < minimum:
            return BelowMinChainWork(
                f"{what}: its branch's work {work} is below the chain's minimum {minimum}"
            )
        if work <= self.chain.head.total_work:
            return LighterBranch(
                f"{what}: a side block with no more work than our head; its body is stored only "
                "once headers of its branch lead past our best"
            )
        return None

    def _keep_orphan(self, peer: str | None, block: Block) -> bool:
        """Keep a block whose parent is unknown, if it is plausible; False if it is junk.

        Plausible: within the size limit, a target no easier than the proof-of-work
        limit, and a header that meets its own target (so each costs real work). A peer
        holds at most ``max_orphans_per_peer`` of ``max_orphan_bytes_per_peer``, the pool
        ``max_orphans`` of ``max_orphan_bytes`` (the oldest go first, the newest stays).
        """
        params = self.chain.params
        header = block.header
        size = len(encode(block))
        if size > params.max_block_bytes:
            return False
        if params.permissioned:
            if not seal_valid(self.chain.chain_id, header):
                return False
        elif target_from_bytes(header.target) > params.pow_limit_int or not meets_target(header):
            return False
        h = header_hash(encode(header))
        if h in self.orphans:
            return True
        origin = peer or ""
        cfg = self.config
        self.orphans[h] = _Orphan(origin, block, size)
        self._orphan_bytes[origin] += size
        self._orphans_size += size
        mine = [k for k, o in self.orphans.items() if o.peer == origin]
        while len(mine) > 1 and (
            len(mine) > cfg.max_orphans_per_peer or self._orphan_bytes[origin] > cfg.max_orphan_bytes_per_peer
        ):
            self._forget_orphan(mine.pop(0))
        while len(self.orphans) > 1 and (
            len(self.orphans) > cfg.max_orphans or self._orphans_size > cfg.max_orphan_bytes
        ):
            self._forget_orphan(next(iter(self.orphans)))
        return True

    def _forget_orphan(self, h: Hash32) -> _Orphan:
        orphan = self.orphans.pop(h)
        self._orphans_size -= orphan.size
        self._orphan_bytes[orphan.peer] -= orphan.size
        if not self._orphan_bytes[orphan.peer]:
            del self._orphan_bytes[orphan.peer]
        return orphan

    def _asking(self, peer: str | None, what: str, now: int) -> bool:
        """Whether to send ``peer`` a ``what`` request now: one request (headers or blocks)
        is in flight per peer; one unanswered for ``request_timeout_ms`` may be sent again.
        Out-of-order arrivals and repeated announcements never multiply requests."""
        if peer is None or self._backing_off(peer, now):
            return False
        asked = self._inflight.get(peer)
        if asked is not None and now - asked[0] < self.config.request_timeout_ms:
            return False
        self._inflight[peer] = (now, what)
        self._waiting_since.setdefault(peer, now)
        return True

    def _answered(self, peer: str, what: str) -> bool:
        """The peer answers our ``what`` request (False: nobody asked it for that)."""
        asked = self._inflight.get(peer)
        if asked is None or asked[1] != what:
            return False
        del self._inflight[peer]
        self._waiting_since.pop(peer, None)
        self._unanswering.discard(peer)
        self._busy.pop(peer, None)
        return True

    def _backing_off(self, peer: str, now: int) -> bool:
        """Whether ``peer`` answered busy and its back-off has not passed."""
        busy = self._busy.get(peer)
        return busy is not None and now < busy[0]

    def _on_busy(self, peer: str, msg: BusyMsg, now: int) -> None:
        """``peer`` answers our request that it is busy (its serving budget for our host is
        taken): an answer, not a fault nor ``RequestUnanswered``. It is not asked again for a
        back-off — its hint, at least a quarter of a request timeout doubled for each busy
        answer in a row, at most ``BUSY_MAX_TIMEOUTS`` timeouts; meanwhile the next status of
        another peer announcing its head has the blocks asked of that one
        (``_held_by_busy_peers``). An answer nobody asked for is ignored."""
        in_a_row = self._busy.get(peer, (0, 0))[1] + 1
        if not self._answered(peer, "headers" if msg.headers else "blocks"):
            return
        timeout = self.config.request_timeout_ms
        longest = BUSY_MAX_TIMEOUTS * timeout
        wait = min(max(msg.retry_after_ms, (timeout // 4) << min(in_a_row - 1, 16)), longest)
        self._busy[peer] = (now + wait, in_a_row)
        self._decline(
            peer,
            PeerBusy(
                f"it is busy serving our host ({in_a_row} time(s) in a row): asked again in {wait} ms "
                "at the earliest, other peers meanwhile"
            ),
        )

    def _held_by_busy_peers(self, h: Hash32, now: int) -> bool:
        """Whether every peer whose branch holds pending header ``h`` answered busy and is
        backing off (its blocks are then asked of another peer that announces it)."""
        holders = self.headers.holders(h)
        return bool(holders) and all(self._backing_off(p, now) for p in holders)

    def _fork_point(self, peer: str) -> BlockEntry:
        """The last block we have of ``peer``'s chain as far as we know it: where its next
        headers and blocks follow (our best tip when we know nothing of its chain)."""
        tip = self._peer_tip.get(peer)
        if tip is None or tip.invalid or self.chain.entries.get(tip.hash) is not tip:
            return self.chain.best_tip()
        return tip

    def _checked_tip(self, peer: str) -> tuple[BlockEntry | None, Presync | None]:
        """The last header of ``peer``'s we checked (of its presync, else of its branch)."""
        presync = self.headers.presyncs.get(peer)
        return (presync.last, presync) if presync is not None else (self.headers.tip(peer), None)

    def _next_request(self, peer: str, now: int, *, more_headers: bool) -> list[Outgoing]:
        """What to ask ``peer`` for next: more headers (when ``more_headers``, it announced
        more work than its headers we checked show, and its branch has room), else the
        blocks of its pending headers when they lead to more work than our best tip."""
        tip, presync = self._checked_tip(peer)
        shown = tip.total_work if tip is not None else 0
        room = presync is not None or self.headers.has_room(peer)
        if more_headers and room and self.peer_work.get(peer, 0) > shown:
            return self._request_headers(peer, now)
        if tip is not None and tip.hash in self.headers and tip.total_work > self.chain.best_tip().total_work:
            return self._request_blocks(peer, now)
        return []

    def _request_headers(self, peer: str | None, now: int, start: BlockEntry | None = None) -> list[Outgoing]:
        """Ask ``peer`` for the headers after the last of its we checked (else after our fork
        point with it), or after ``start`` (to fetch a presynced branch again): the locator
        starts there and goes on from our side."""
        if not self._asking(peer, "headers", now):
            return []
        assert peer is not None
        if start is not None:
            locator = self.chain.locator(start)
        else:
            locator = self.chain.locator(self._fork_point(peer))
            tip, presync = self._checked_tip(peer)
            if tip is not None and (presync is not None or tip.hash in self.headers):
                locator.insert(0, tip.hash)
        return [(peer, GetHeadersMsg(tuple(locator), self.config.headers_per_request))]

    def _request_blocks(self, peer: str | None, now: int) -> list[Outgoing]:
        """Ask ``peer`` for the blocks after our fork point with it."""
        if not self._asking(peer, "blocks", now):
            return []
        assert peer is not None
        locator = self.chain.locator(self._fork_point(peer))
        return [(peer, GetBlocksMsg(tuple(locator), self.config.blocks_per_request))]

    def _on_blocks(self, peer: str, msg: BlocksMsg, now: int) -> list[Outgoing]:
        """A batch answering our request: import in order the blocks of headers we checked,
        relay the new head once, and ask for what comes next (``_next_request``). Blocks
        nobody asked for are not read. An invalid block ends the import and the sender's
        branch; every peer's branch through it only when its header is found invalid
        (``_condemned``), so a body that is not its header's costs the other peers nothing."""
        if not self._answered(peer, "blocks"):
            return []
        head_before = self.chain.head.hash
        out: list[Outgoing] = []
        moved = False
        for block in msg.blocks:
            self.stats.blocks_received += 1
            h = header_hash(encode(block.header))
            if h not in self.headers and h not in self.chain.entries:
                moved = True  # not of the headers it sent: its chain moved
                break
            try:
                result = self._add(block, now)
            except UnknownParent:
                moved = True
                break
            except InvalidBlock as exc:
                self._invalid_block(peer, block.header.height, exc)
                if self._condemned(h, block.header, exc):
                    self.headers.drop_through(h)
                self.headers.forget_branch(peer)
                return out
            entry = self.chain.entries.get(result.block_hash)
            if entry is not None:
                self._peer_tip[peer] = entry
            out.extend(self._after_add(result, peer, now, relay=False))
            out.extend(self._connect_orphans(result.block_hash, now))
        if self.chain.head.hash != head_before:
            self._log_head(peer)
            tip_block = self.chain.block_at(self.chain.height)
            if tip_block is not None:
                out.extend(self._send_block(peer, tip_block))
        if moved:  # start again from its headers
            self.headers.forget_branch(peer)
            return out + self._request_headers(peer, now)
        return out + self._next_request(peer, now, more_headers=bool(msg.blocks))

    def _condemned(self, h: Hash32, header: Header, error: InvalidBlock) -> bool:
        """Whether no block of header ``h`` can be valid, whoever sends it: the chain marked
        it, or its parent, invalid, or ``error`` is one its header alone earns (it leaves the
        main chain below its last final block, ``ConflictsWithFinal``; an ancestor was found
        invalid, ``KnownInvalid``). A failure the chain does not mark — a body that is not the
        header's own (``BadMerkleRoot``), or one too large (``BlockTooLarge``: the sender may
        have padded it) — condemns only the block its sender sent: the header's own may still
        come from another peer."""
        if isinstance(error, ConflictsWithFinal | KnownInvalid):
            return True
        return any(
            e is not None and e.invalid
            for e in (self.chain.entries.get(h), self.chain.entries.get(header.prev_hash))
        )

    def _on_headers(self, peer: str, msg: HeadersMsg, now: int) -> list[Outgoing]:
        """Check a batch of headers we asked for as a chain — links, proof-of-work, retarget,
        time — before any of their blocks is asked for; a bad one is the peer's fault and
        none of the batch is kept (one stamped too far ahead of our clock is not a fault: the
        headers before it are kept, ``HeadersAhead``). New headers of a branch not yet worth
        keeping — below the minimum chain work, or with no more work than our best known header
        (our best tip, another peer's pending tip) — are presynced (``_presync``), others kept
        (``_keep_headers``)."""
        if not self._answered(peer, "headers"):
            return []  # nobody asked: not kept
        chain = self.chain
        presync = self.headers.presyncs.get(peer)
        if not msg.headers:
            if presync is not None:  # its branch ends below the minimum
                return self._presync(peer, presync, [], full=False, now=now)
            return self._next_request(peer, now, more_headers=False)
        first = msg.headers[0].prev_hash
        if presync is not None and first == presync.last.hash:
            parent = presync.last
        else:
            self.headers.presyncs.pop(peer, None)  # (a presync it does not continue ends)
            presync = None
            known = chain.entries.get(first) or self.headers.get(first)
            if known is None or known.invalid:
                return []  # does not connect to what we know: its next status starts again
            parent = known
            if chain.entries.get(parent.hash) is parent:
                self._peer_tip[peer] = parent  # the fork point: its blocks follow this one
        start = parent
        checked: list[BlockEntry] = []
        new: list[BlockEntry] = []
        ahead = False
        try:
            for header in msg.headers:
                try:
                    h = validate_header(header, chain.header_context(parent, now))
                except TimestampTooFarInFuture as exc:  # valid a little later: not a fault
                    self._decline(peer, HeadersAhead(f"from header {header.height} on: {exc}"))
                    ahead = True
                    break
                known = chain.entries.get(h) or self.headers.get(h)
                if known is not None and known.invalid:
                    raise KnownInvalid(f"header {header.height} {h.hex()[:16]} is of an invalid block")
                if known is None:
                    chain.check_final(header, parent)
                    known = BlockEntry(h, header, parent, chain.weight(parent.total_work, header))
                    new.append(known)
                elif known.hash in chain.entries:
                    self._peer_tip[peer] = known
                checked.append(known)
                parent = known
        except InvalidBlock as exc:
            self._invalid_block(peer, parent.height + 1, exc, what="header")
            self.headers.presyncs.pop(peer, None)
            return []
        if ahead and not checked:
            return []
        full = not ahead and len(msg.headers) >= self.config.headers_per_request
        proof = self.headers.proofs.get(peer)
        proven = proof is not None and all(proof.proves(e) for e in new)
        if presync is not None or (new and parent.total_work < self._worth_keeping(peer) and not proven):
            if presync is None:
                last = self._presync_declined.get(peer)
                if last is not None and now - last < self.headers.expiry_ms:
                    return []  # (its last presync was declined a moment ago: not again yet)
                presync = Presync(start, start, bytearray(), now)
            return self._presync(peer, presync, checked, full=full, now=now)
        return self._keep_headers(peer, parent, new, full=full, now=now)

    def _worth_keeping(self, peer: str) -> int:
        """The work a branch of ``peer``'s must reach before its headers are kept: the chain's
        minimum, and more than our best known header's (our best tip, the pending tip of
        another peer's branch)."""
        other = self.headers.best(but=peer)
        best = max(self.chain.best_tip().total_work, other.total_work if other is not None else 0)
        return max(self.chain.params.min_chain_work_int, best + 1)

    def _presync(
        self, peer: str, presync: Presync, checked: list[BlockEntry], *, full: bool, now: int
    ) -> list[Outgoing]:
        """Headers of a branch not yet worth keeping, checked: record them without keeping
        them (``node/sync.py``). Once the branch gets past the work it must reach
        (``_worth_keeping``), ask ``peer`` for its headers again from where it leaves our chain
        (kept then if they are the same); if it ends short of it, or takes more than
        ``max_presync_headers``, forget it (and start no other presync of that peer's for
        the expiry time)."""
        params = self.chain.params
        if checked:
            presync.extend(checked, max(params.retarget_window + 1, params.median_time_span), now)
        self.headers.proofs.pop(peer, None)
        self.headers.presyncs.pop(peer, None)
        work, count, need = presync.last.total_work, presync.count(), self._worth_keeping(peer)
        if work >= need:
            self.headers.proofs[peer] = Proof(presync.fork, bytes(presync.tails))
            _sync.info(
                "%s's branch gets past our best known work at height %d after %d header(s) "
                "checked; fetching them again to keep them",
                short(peer),
                presync.last.height,
                count,
            )
            return self._request_headers(peer, now, start=presync.fork)
        if not full or count >= self.config.max_presync_headers:
            self._presync_declined[peer] = now
            reason = "it ends" if not full else f"it is still short after {count} header(s)"
            height = presync.last.height
            what = f"{count} header(s) up to height {height} checked, none kept: their branch's work {work}"
            minimum = params.min_chain_work_int
            self._decline(
                peer,
                BelowMinChainWork(f"{what} is below the chain's minimum {minimum} and {reason}")
                if work < minimum
                else LighterBranch(f"{what} is no more than our best known header's and {reason}"),
            )
            return []
        self.headers.presyncs[peer] = presync
        return self._next_request(peer, now, more_headers=True)

    def _keep_headers(
        self, peer: str, tip: BlockEntry, new: list[BlockEntry], *, full: bool, now: int
    ) -> list[Outgoing]:
        """Keep a checked batch ending at ``tip`` as ``peer``'s pending headers: none if its
        branch ended with less work than our best known header, else as many as its room
        allows. Branches of other peers that ended lighter are dropped. Then ask for more
        headers or for the blocks."""
        complete = not full or self.peer_work.get(peer, 0) <= tip.total_work
        other = self.headers.best(but=peer)
        best = max(self.chain.best_tip().total_work, other.total_work if other is not None else 0)
        if complete and tip.total_work < best:
            self.headers.forget_branch(peer)
            self._decline(
                peer,
                LighterBranch(
                    f"headers up to height {tip.height} not kept: their branch ends with less work "
                    "than our best known header"
                ),
            )
            return []
        kept = new[: self.headers.make_room(peer, len(new))]
        if len(kept) < len(new):
            self._decline(
                peer,
                PendingHeadersFull(
                    f"{len(new) - len(kept)} of {len(new)} header(s) not kept: it may hold "
                    f"{self.headers.max_per_peer} (all peers {self.headers.max_total}); asked for again "
                    "once blocks have made room"
                ),
            )
        branch_tip = kept[-1] if kept else (new[0].parent if new else tip)
        assert branch_tip is not None
        self.headers.keep(peer, branch_tip, kept, now, complete=complete and len(kept) == len(new))
        proof = self.headers.proofs.get(peer)
        if proof is not None and branch_tip.height >= proof.end():
            del self.headers.proofs[peer]  # kept past the presynced part
        for lighter, count in self.headers.drop_lighter(branch_tip.total_work):
            self._decline(
                lighter,
                LighterBranch(f"its {count} pending header(s) lead to less work than {short(peer)}'s branch"),
            )
        return self._next_request(peer, now, more_headers=full and len(kept) == len(new))

    def _connect_orphans(self, parent_hash: Hash32, now: int) -> list[Outgoing]:
        out: list[Outgoing] = []
        parents = [parent_hash]
        while parents:
            p = parents.pop()
            parent = self.chain.entries.get(p)
            children = [h for h, o in self.orphans.items() if o.block.header.prev_hash == p]
            for h in children:
                orphan = self._forget_orphan(h)
                declined = (
                    None
                    if not orphan.peer or parent is None
                    else self._not_worth_storing(h, orphan.block.header, parent)
                )
                if declined is not None:
                    self._decline(orphan.peer, declined)
                    continue
                try:
                    result = self._add(orphan.block, now)
                except InvalidBlock as exc:
                    self._invalid_block(None, orphan.block.header.height, exc)
                    continue
                out.extend(self._after_add(result, None, now))
                parents.append(h)
        return out

    def _on_status(self, peer: str, msg: StatusMsg, now: int) -> list[Outgoing]:
        work = decode_work(msg.total_work)
        self.peer_work[peer] = work
        self.peer_height[peer] = msg.height
        if work <= self.chain.best_tip().total_work or msg.head in self.chain.entries:
            return []
        minimum = self.chain.params.min_chain_work_int
        if work < minimum:
            self._decline(
                peer, BelowMinChainWork(f"it announces work {work}, below the chain's minimum {minimum}")
            )
            return []
        declined = self._presync_declined.get(peer)
        if declined is not None and now - declined < self.headers.expiry_ms:
            return []  # its last branch was checked and declined a moment ago: not again yet
        more_headers = msg.head not in self.headers or self._held_by_busy_peers(msg.head, now)
        return self._next_request(peer, now, more_headers=more_headers)

    def _sync_upkeep(self, now: int) -> None:
        """Drop the pending headers and presyncs that made no progress for too long; every
        ``status_interval_ms``, prune the side branches that leave the main chain
        ``keep_side_depth`` blocks below the head or deeper (not those being downloaded)."""
        timeout = self.config.request_timeout_ms
        for peer, since in self._waiting_since.items():
            if peer not in self._unanswering and now - since >= timeout:
                self._unanswering.add(peer)
                self._decline(
                    peer,
                    RequestUnanswered(
                        f"no answer to our request for {timeout} ms: the height it announced "
                        f"({self.peer_height.get(peer, 0)}) counts only as far as the headers it served"
                    ),
                )
        for peer, count in self.headers.expire(now):
            self._decline(
                peer,
                PendingHeadersExpired(
                    f"{count} header(s) dropped: no block of them (no further header) arrived for "
                    f"{self.headers.expiry_ms} ms"
                ),
            )
        if now - self._pruned_at < self.config.status_interval_ms:
            return
        self._pruned_at = now
        self.serving.prune(now)
        pruned = self.chain.prune_side_branches(self.config.keep_side_depth, self.headers.roots())
        if pruned:
            _sync.info(
                "pruned %d side block(s) of branches %d or more blocks below the head",
                pruned,
                self.config.keep_side_depth,
            )

    def _locate(self, locator: tuple[Hash32, ...]) -> int:
        """The height after the first of the (first 64) locator hashes on our main chain
        (0, from genesis, when none is)."""
        for h in locator[:MAX_LOCATOR]:
            entry = self.chain.entries.get(h)
            if entry is not None and self.chain.is_main(entry):
                return entry.height + 1
        return 0

    def _on_serve_request(self, peer: str, msg: ServeRequest, now: int) -> list[Outgoing]:
        """A peer's ``GetBlocksMsg`` or ``GetHeadersMsg``: answered at once while its host is
        within its serving budget; else the request waits its turn (answered by a later tick),
        or is refused (``ServeRefused``: the asker is told it is busy, ``_refuse``)."""
        try:
            if not self.serving.admit(peer, msg, now, lambda: self._answer_size(msg)):
                self.stats.block_requests_delayed += 1
                return []
        except ServeRefused as refused:
            return self._refuse(peer, msg, refused)
        return [self._answer(peer, msg, now)]

    def _serve_waiting(self, now: int) -> list[Outgoing]:
        """Answer, in order, the waiting requests whose hosts' budgets have refilled. A
        damaged store met answering one is this node's fault, not the peer's, and does not
        stop the tick: logged, and that request is not answered (the peer asks again, maybe
        of another node; what was found damaged is never served)."""
        out: list[Outgoing] = []
        for peer, msg, waited in self.serving.expire(now):
            expired = RequestExpired(f"it waited {waited} ms for its host's budget, a request timeout")
            out.extend(self._refuse(peer, msg, expired))
        while due := self.serving.take(now):
            for peer, msg in due:
                try:
                    out.append(self._answer(peer, msg, now))
                except StoreError as exc:
                    _net.error("cannot serve %s: %s", short(peer), exc)
        return out

    def _answer_size(self, msg: ServeRequest) -> int:
        """The bytes answering ``msg`` would send, reckoned without building the answer: its
        headers' count times one's encoded size, or its blocks' sizes as stored."""
        chain = self.chain
        start = self._locate(msg.locator)
        if isinstance(msg, GetHeadersMsg):
            end = min(start + min(msg.limit, MAX_HEADERS), chain.height + 1)
            return (end - start) * len(encode(chain.main[end - 1].header)) if end > start else 0
        end = min(start + min(msg.limit, self.config.blocks_per_request, MAX_BLOCKS), chain.height + 1)
        hashes = [chain.main[h].hash for h in range(start, end)]
        sizes = chain.store.block_sizes(hashes) if hashes else {}
        total = 0
        for h in hashes:  # (cut as ``_answer_blocks`` cuts a batch)
            size = sizes.get(h, 0)
            if total and total + size > MAX_REPLY_BYTES:
                break
            total += size
        return total

    def _answer(self, peer: str, msg: ServeRequest, now: int) -> Outgoing:
        if isinstance(msg, GetHeadersMsg):
            return self._answer_headers(peer, msg, now)
        return self._answer_blocks(peer, msg, now)

    def _answer_headers(self, peer: str, msg: GetHeadersMsg, now: int) -> Outgoing:
        """The main-chain headers after the located height, at most ``MAX_HEADERS``, charged
        to ``peer``'s host (their count times the last one's encoded size: the headers of a
        chain differ by a few bytes at most, and encoding each twice would double the cost
        this budget bounds)."""
        chain = self.chain
        start = self._locate(msg.locator)
        end = min(start + min(msg.limit, MAX_HEADERS), chain.height + 1)
        headers = tuple(chain.main[h].header for h in range(start, end))
        self.serving.charge(peer, len(headers) * len(encode(headers[-1])) if headers else 0, now)
        return (peer, HeadersMsg(headers))

    def _answer_blocks(self, peer: str, msg: GetBlocksMsg, now: int) -> Outgoing:
        """The consecutive main-chain blocks after the located height, at most
        ``blocks_per_request`` and ``MAX_REPLY_BYTES`` (at least one when there is one),
        charged to ``peer``'s host."""
        chain = self.chain
        start = self._locate(msg.locator)
        limit = min(msg.limit, self.config.blocks_per_request, MAX_BLOCKS)
        blocks: list[Block] = []
        size = 0
        for height in range(start, min(start + limit, chain.height + 1)):
            block = chain.block_at(height)
            if block is None:
                break
            block_bytes = len(encode(block))
            if blocks and size + block_bytes > MAX_REPLY_BYTES:
                break  # the batch must fit one message; the peer asks for the rest
            size += block_bytes
            blocks.append(block)
        self.serving.charge(peer, size, now)
        return (peer, BlocksMsg(tuple(blocks)))

    def _refuse(self, peer: str, msg: ServeRequest, refused: ServeRefused) -> list[Outgoing]:
        """A request of ``peer``'s is not answered, by ``refused``'s rule (not a fault):
        counted, and logged once per peer and rule (then at debug level). The peer is told
        it is busy (``BusyMsg``, with the time until its host's queue could take it when that
        is known), so that it asks another peer, or this node later, rather than wait out its
        request timeout; but not for a request superseded by its later one, which waits."""
        self.stats.block_requests_refused[refused.rule] += 1
        self._log_once(peer, refused, _net, "not answered")
        if isinstance(refused, RequestSuperseded):
            return []
        retry_after = refused.retry_after_ms if isinstance(refused, ServeQueueFull) else 0
        return [(peer, BusyMsg(isinstance(msg, GetHeadersMsg), min(retry_after, 2**32 - 1)))]

    def _log_once(self, peer: str, error: GridnetError, log: logging.Logger, what: str) -> None:
        """Log ``error`` of ``peer``'s at info level the first time its rule meets that peer,
        then at debug level."""
        told = self._declined_told.setdefault(peer, set())
        level = logging.DEBUG if error.rule in told else logging.INFO
        told.add(error.rule)
        log.log(level, "%s %s: %s: %s", what, short(peer), error.rule, error)

    # --- mining ----------------------------------------------------------------------------

    def _mine(self, now: int) -> list[Outgoing]:
        miner = self.config.miner
        assert miner is not None
        if self._clock_behind(now):
            return []
        tpl = self._template
        if tpl is not None and tpl.block.header.timestamp > now + self.chain.params.max_future_ms:
            tpl = self._template = None  # stamped before the clock stepped back
        out: list[Outgoing] = []
        if (
            tpl is None
            or tpl.block.header.prev_hash != self.chain.head.hash
            or now - self._template_at >= self.config.template_refresh_ms
        ):
            # On the same head, unless a rule read the block's time: the same candidates make
            # the same block but for its time (re-stamp it), and what arrived since goes after
            # what the template holds (extend it) rather than applying it all again.
            renewed = None
            if tpl is not None:
                renewed = (
                    self.chain.restamp(tpl, now)
                    if self._template_generation == self.mempool.generation
                    else self.chain.extend(tpl, self.mempool.candidates(), now)
                )
            if renewed is None:
                renewed = self.chain.build_block(miner, self.mempool.candidates(), now=now)
            tpl = renewed
            events: list[PoolEvent] = []
            for vtx, error in tpl.rejected:
                events.extend(self.mempool.remove_rejected(vtx, error, tpl.block.header.height))
            out = self._record(events)
            self._template, self._template_at, self._nonce = tpl, now, 0
            self._template_generation = self.mempool.generation
        header = mine(tpl.block.header, self.config.hashes_per_tick, self._nonce)
        self._nonce += self.config.hashes_per_tick
        if header is None:
            return out
        block = replace(tpl.block, header=header)
        result = self._add(block, now)
        self.stats.blocks_mined += 1
        _mine.info(
            "mined block %d %s with %d transaction(s)",
            header.height,
            result.block_hash.hex()[:16],
            len(block.txs) - 1,
        )
        out.extend(self._after_add(result, None, now))
        return out

    def _clock_behind(self, now: int) -> bool:
        """Whether a block on the head would be stamped further ahead of the clock than any
        node takes (its own included): the chain's median time is ahead of this node's clock
        (it mined with a clock that ran ahead, then the clock stepped back). Mining pauses,
        said once in the log, until the clock catches up; the node runs on meanwhile."""
        head = self.chain.head
        if self._earliest[0] != head.hash:
            self._earliest = (head.hash, self.chain.median_time_past(head) + 1)
        ahead = self._earliest[1] - now
        behind = ahead > self.chain.params.max_future_ms
        if behind and not self._mining_paused:
            _mine.warning(
                "mining paused: a block on the head must be stamped %.0f s ahead of this node's "
                "clock, more than the %.0f s any node takes; check the clock (mining resumes "
                "when it catches up)",
                ahead / 1000,
                self.chain.params.max_future_ms / 1000,
            )
        elif self._mining_paused and not behind:
            _mine.info("mining resumed: the clock caught up with the chain")
        self._mining_paused = behind
        return behind

    # --- permissioned chain: sealing, votes, faults ----------------------------------------

    def _propose(self, now: int) -> list[Outgoing]:
        """Seal the block of the current slot when it is this validator's (once per slot)."""
        key = self.config.validator
        assert key is not None
        chain, params = self.chain, self.chain.params
        slot = slot_of(params, now)
        if slot <= self._proposed_slot or slot_start(params, slot) <= chain.head.header.timestamp:
            return []
        if proposer_of(validator_set(chain.view()).members, slot).key != key.public_key:
            return []
        self._proposed_slot = slot
        record_sealed_slot(chain, slot)
        justified = chain.justified()
        assert justified is not None
        votes = self.votes.candidates(justified.slot)
        block, tpl = propose_block(chain, key, slot, self.mempool.candidates(), votes, now=now)
        events: list[PoolEvent] = []
        for vtx, error in tpl.rejected:
            events.extend(self.mempool.remove_rejected(vtx, error, block.header.height))
        out = self._record(events)
        twin = self._twin(block, slot, now) if self.config.equivocate else None
        self.seals.add(block.header, self._final_slot(), now)
        result = self._add(block, now)
        self.stats.blocks_mined += 1
        _mine.info(
            "sealed block %d %s for slot %d with %d transaction(s) and %d vote(s)",
            block.header.height,
            result.block_hash.hex()[:16],
            slot,
            len(block.txs) - 1,
            len(block.votes),
        )
        if twin is None:
            out.extend(self._after_add(result, None, now))
            return out
        out.extend(self._after_add(result, None, now, relay=False))
        # Equivocation (fault injection): half the peers get one block, half the other.
        for i, peer in enumerate(self.peers):
            out.append((peer, BlockMsg(twin if i % 2 else block)))
        return out

    def _twin(self, block: Block, slot: int, now: int) -> Block | None:
        """Another valid block for the same slot (fault injection): the same votes and a
        transfer of one base unit to itself; None while the validator has no coin for it."""
        key = self.config.validator
        assert key is not None
        nonce, balance = self._next_nonce(key.public_key)
        payload = Transfer(key.address, 1)
        fee = min_fee(self.chain.params.min_fee_per_byte, payload, nonce)
        if balance < fee + 1:
            return None
        tx = sign_transaction(key, self.chain.chain_id, payload, nonce, fee)
        vtx = validate_transaction(tx, self.chain.params, self.chain.chain_id)
        twin, _ = propose_block(self.chain, key, slot, [vtx], block.votes, now=now)
        return twin if twin.header != block.header else None

    def _vote(self, now: int) -> list[Outgoing]:
        """Vote for the head from its justified checkpoint, when that never conflicts with
        what this validator signed before: a target in a later slot than its last one, from a
        source no earlier than its last one (no double, no surround vote). Slots go on on every
        branch: after a partition, the new blocks of the branch followed are in later slots than
        any this validator voted for on the other, and it votes for them at once. The vote is
        recorded in the store before it is sent."""
        key = self.config.validator
        assert key is not None
        chain = self.chain
        head, justified = chain.head, chain.justified()
        assert justified is not None
        last = self._last_vote
        slot = slot_of(chain.params, head.header.timestamp)
        if slot <= max(justified.slot, last.target) or justified.slot < last.source:
            return []
        if not is_voter(chain.view(), key.public_key):  # (a pending set's key does not vote yet)
            return []
        vote = sign_vote(key, chain.chain_id, Vote(justified, Checkpoint(head.height, slot, head.hash)))
        self._last_vote = LastVote(justified.slot, slot)
        self._write_meta(LAST_VOTE, encode(self._last_vote))
        self.votes.check(vote, lowest_counted(justified.slot, slot_of(chain.params, now)))
        self.votes.add(vote_id(encode(vote)), vote)
        out: list[Outgoing] = [(p, VoteMsg(vote)) for p in self.peers]
        if self.config.equivocate:  # a second vote for the same slot: a provable fault
            other = sign_vote(
                key, chain.chain_id, Vote(justified, Checkpoint(head.height, slot, hash32(head.hash)))
            )
            out = [(p, VoteMsg(other if i % 2 else vote)) for i, p in enumerate(self.peers)]
        return out

    def _write_meta(self, key: str, value: bytes) -> None:
        """Record ``value`` in the store before what it guards is sent (one SQLite transaction)."""
        store = self.chain.store
        store.begin()
        try:
            store.set_meta(key, value)
            store.commit()
        except BaseException:
            store.rollback()
            raise

    def _on_vote(self, peer: str, vote: SignedVote, now: int) -> list[Outgoing]:
        """A gossiped vote: a member's vote is kept and relayed when its target is a block of
        the main chain after the justified one, held aside (and relayed once taken) when its
        target is not on the main chain but in a slot whose block the node would take now (at
        most the slot lead ahead of its clock), refused otherwise (``VoteRefused``: counted, not
        a fault). What is refused for its key or its target (an outsider's vote, a late one) is
        refused before its signature is checked, so that such votes cost no signature check;
        a bad signature on any other vote is the peer's fault. A vote kept or held aside is
        checked against what its key signed before, and noted (``VotePool.check``); a refused
        one is not noted, so votes for far-off targets cannot push out the one a double vote
        conflicts with."""
        chain = self.chain
        if not chain.params.permissioned:
            return []
        vid = vote_id(encode(vote))
        if self.votes.holds(vid, vote.key):
            return []
        key = vote.key.hex()[:16]
        if not is_voter(chain.view(), vote.key):
            return self._refuse_vote(NotAValidator(f"vote by {key}, which is not in the validator set"))
        justified = chain.justified()
        assert justified is not None
        target = vote.vote.target
        if target.slot <= justified.slot:
            return self._refuse_vote(
                VoteTooLate(f"vote by {key} for slot {target.slot}; slot {justified.slot} is justified")
            )
        if not vote_signed(chain.chain_id, vote):
            self._fault(peer, BadVoteSignature(f"vote by {key} does not verify on this chain"))
            return []
        on_main = self._on_main(target)
        if not on_main and vote_ahead(chain.params, target.slot, now):  # (refused: not noted)
            return self._refuse_vote(
                VoteTargetAhead(
                    f"vote by {key} for slot {target.slot}, not on the main chain; this node is at "
                    f"slot {slot_of(chain.params, now)}"
                )
            )
        out: list[Outgoing] = []
        conflict = self.votes.check(vote, lowest_counted(justified.slot, slot_of(chain.params, now)))
        if conflict is not None:
            out.extend(self._report(vote.key, ReportValidatorFault(votes=(conflict, vote)), now))
        if on_main:
            self.votes.add(vid, vote)
            out.extend((p, VoteMsg(vote)) for p in self.inventory.spread(peer)[0])
        else:
            self.votes.hold(vid, vote, peer)
        return out

    def _on_main(self, checkpoint: Checkpoint) -> bool:
        main = self.chain.main
        return (
            checkpoint.height < len(main)
            and main[checkpoint.height].hash == checkpoint.hash
            and slot_of(self.chain.params, main[checkpoint.height].header.timestamp) == checkpoint.slot
        )

    def _refuse_vote(self, refused: GridnetError) -> list[Outgoing]:
        self.stats.votes_refused[refused.rule] += 1
        _net.debug("vote refused: %s: %s", refused.rule, refused)
        return []

    def _check_seal(self, header: Header, now: int) -> list[Outgoing]:
        """Note who sealed a gossiped block, when the proposer is in the head's validator set
        (an outsider's two seals prove no fault of a member: they are not noted, so they
        cannot push a member's out of the seal log) and the node would take a block of its
        slot (from the last final block's slot to the slot lead ahead of the clock: sealed
        headers of far-off slots, declined without a fault, cannot push out the one a second
        block for its slot conflicts with); a second block of one proposer for one slot is
        reported."""
        if validator_set(self.chain.view()).member(header.proposer) is None:
            return []  # (validation names the rule, WrongProposer)
        if not seal_valid(self.chain.chain_id, header):
            return []  # (validation names the rule)
        earlier = self.seals.add(header, self._final_slot(), now)
        if earlier is None:
            return []
        return self._report(header.proposer, ReportValidatorFault(headers=(earlier, header)), now)

    def _final_slot(self) -> int:
        """The slot of the main chain's last final block (no block before it is taken)."""
        finalized = self.chain.finalized()
        assert finalized is not None
        return finalized.slot

    def _report(self, guilty: bytes, proof: ReportValidatorFault, now: int) -> list[Outgoing]:
        """Submit the proof of ``guilty``'s fault, signed with this node's validator key (once
        per key while the validator set stays as it is); a node without one only logs it."""
        seq = validator_set(self.chain.view()).seq
        if seq != self._reported_seq:  # (who is reported is a member of the set of now)
            self._reported, self._reported_seq = set(), seq
        if guilty in self._reported:
            return []
        self._reported.add(guilty)
        _mine.warning(
            "validator %s is at fault: %s",
            guilty.hex()[:16],
            "two blocks for one slot" if proof.headers else "conflicting votes",
        )
        key = self.config.validator
        if key is None or key.public_key == guilty:
            return []
        nonce, _ = self._next_nonce(key.public_key)
        fee = min_fee(self.chain.params.min_fee_per_byte, proof, nonce)
        tx = sign_transaction(key, self.chain.chain_id, proof, nonce, fee)
        events, out = self.submit_tx(tx, now)
        if events and events[0].kind is not EventKind.ACCEPTED:
            _mine.warning("the fault report of %s was refused: %s", guilty.hex()[:16], events[0].message)
        return out
