"""The sans-IO node: ``handle(peer, message, now)`` and ``tick(now)`` return the
messages to send; the caller (in-memory network or TCP transport) delivers them.

The same node runs in the simulator (simulated clock) and as a process (wall clock).
"""

from __future__ import annotations

import itertools
import logging
import random
import time
from collections import Counter, OrderedDict, deque
from dataclasses import dataclass, field
from functools import partial

from msgspec.structs import replace

from gridnet.crypto.address import address_from_public_key
from gridnet.crypto.hashing import header_hash, txid
from gridnet.encoding import encode
from gridnet.errors import (
    GridnetError,
    InvalidBlock,
    InvalidOrder,
    KnownInvalid,
    NonceGap,
    OrderExpired,
    UnknownParent,
)
from gridnet.ledger.blocks import Block
from gridnet.ledger.chain import AddResult, AddStatus, BlockEntry, BlockTemplate, Chain
from gridnet.ledger.mempool import EventKind, Mempool, PoolEvent
from gridnet.ledger.pow import meets_target, mine
from gridnet.ledger.transactions import Transaction, tx_body, tx_id, tx_size
from gridnet.ledger.transition import validate_header
from gridnet.ledger.trial import TrialState
from gridnet.ledger.wallet import restore_pending
from gridnet.market.orders import SignedOrder, topic, validate_order
from gridnet.node.gossip import ORDER, TX, EarlyTxs, Inventory, Kind
from gridnet.node.logs import short
from gridnet.node.messages import (
    MAX_HEADERS,
    BlockMsg,
    BlocksMsg,
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
    WantMsg,
)
from gridnet.units import Address, Hash32, interval_of
from gridnet.work import target_from_bytes, work_of_target

_net = logging.getLogger("gridnet.net")
_sync = logging.getLogger("gridnet.sync")
_mine = logging.getLogger("gridnet.mine")
_mempool = logging.getLogger("gridnet.mempool")

Outgoing = tuple[str, Message]
"""(destination peer, message)."""

MAX_LOCATOR = 64
"""Locator hashes read from a peer's request (ours have about 10 + log2(height))."""
MAX_REPLY_BYTES = 3 * 1024 * 1024
"""Most block bytes in one BlocksMsg (a message is at most 4 MiB; a block at most 3 MiB)."""


@dataclass
class NodeConfig:
    miner: Address | None = None
    """Mine to this address; None = do not mine."""
    hashes_per_tick: int = 200
    """Proof-of-work attempts per tick (the node's simulated or real hash budget)."""
    template_refresh_ms: int = 1_000
    """Rebuild the block template at least this often (to pick up new transactions)."""
    status_interval_ms: int = 2_000
    blocks_per_request: int = 64
    headers_per_request: int = MAX_HEADERS
    max_pending_headers: int = 100_000
    """Validated headers whose blocks are not here yet, at most (the oldest are forgotten)."""
    request_timeout_ms: int = 5_000
    """A block request unanswered for this long may be sent again."""
    max_orphans: int = 64
    max_orphans_per_peer: int = 16
    mempool_max_txs: int = 50_000
    tx_batch: int = 256
    """Relayed transactions go to each peer in batches of up to this many, at the latest on
    the next tick (a user's own transaction goes out at once)."""
    events_kept: int = 10_000
    """Recent mempool outcomes kept in ``Node.events`` (all are counted in the stats)."""
    max_order_topics: int = 1024
    """Order topics (area, interval) kept before the oldest half is forgotten."""
    tx_batch_bytes: int = 1 << 20
    """A batch is sent before it would grow past this many bytes (a frame holds 4 MiB)."""
    max_fanout: int = 8
    """Gossiped items (transactions, orders, blocks) go to at most this many peers, picked at
    random per item among those it did not come from (``node/gossip.py``). The others are
    told the ids of transactions and orders (HaveMsg, next tick) and ask for what they lack
    (WantMsg); a block they miss reaches them from other peers or through sync after a
    status announcement. The seen-sets (mempool, order ids, block index) stop repeats."""
    max_asks_per_peer: int = 4096
    """Items asked of one peer and not received yet, at most (more of its announcements are
    asked for once these are answered or time out)."""
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


@dataclass(frozen=True)
class _Behind:
    peer: str
    """Who to ask (the peer that relayed a transaction of the sender ahead of our nonce)."""
    ahead: int
    """The highest nonce seen relayed ahead: caught up past it, the entry goes."""
    nonce: int
    """Our next nonce for the sender when last asked."""
    tries: int


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
    """Faults per linked peer (the transport forgets a peer's when it cuts it off)."""
    fault_rules: Counter[str] = field(default_factory=Counter)
    """Peer faults by the rule broken."""
    block_rules: Counter[str] = field(default_factory=Counter)
    """Invalid blocks and headers by the rule broken."""
    tx_rules: Counter[str] = field(default_factory=Counter)
    """Transactions refused, evicted or dropped, by rule."""
    blocks_imported: int = 0
    """Blocks from peers that became part of the main chain."""
    validation_seconds: float = 0.0
    """Wall time spent validating and storing blocks (a measurement, not simulated)."""


class Node:
    def __init__(
        self, name: str, chain: Chain, config: NodeConfig | None = None, rng: random.Random | None = None
    ) -> None:
        """``rng`` draws the gossip fan-out: by default seeded by ``name``, so runs on the
        in-memory network repeat; a node process passes an unpredictable one."""
        self.name = name
        self.chain = chain
        self.config = config or NodeConfig()
        self.mempool = Mempool(chain.params, chain.chain_id, max_txs=self.config.mempool_max_txs)
        self.peers: list[str] = []
        self.peer_work: dict[str, int] = {}
        """Peer -> the cumulative work it last announced."""
        self.peer_height: dict[str, int] = {}
        """Peer -> the height it last announced."""
        self.orphans: OrderedDict[Hash32, tuple[str, Block]] = OrderedDict()
        """Blocks whose parent is unknown yet: hash -> (peer it came from, block)."""
        self.orders: dict[str, dict[Hash32, SignedOrder]] = {}
        """Market topic ("market/AREA/INTERVAL") -> order id -> signed order (off chain)."""
        self._orders_seen: dict[Hash32, str] = {}
        """Order id -> its topic, for every order kept."""
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
        self._behind: OrderedDict[bytes, _Behind] = OrderedDict()
        """Sender key -> who to ask to fill the gap before what we hold of it, until we catch
        up to the highest nonce relayed ahead (at most ``max_early_txs`` senders)."""
        self._gaps_asked: dict[tuple[bytes, int], int] = {}
        """(sender key, nonce) -> when we asked a peer to fill the gap before it."""
        self._fills_served: Counter[str] = Counter()
        self._fills_asked: Counter[str] = Counter()
        """Peer -> GetSenderTxsMsg answered (sent) this tick."""
        self._fill_bytes: Counter[str] = Counter()
        """Peer -> bytes of transactions sent it in answers this tick."""
        self._fills_seen: dict[tuple[str, bytes, int], int] = {}
        """(peer, sender, nonce) -> when we answered that question."""
        self._inflight: dict[str, tuple[int, str]] = {}
        """Peer -> (when, "headers" or "blocks"): the request it has not answered yet."""
        self._peer_tip: dict[str, BlockEntry] = {}
        """Peer -> the last block of its answers: where the next request continues."""
        self._headers: dict[Hash32, BlockEntry] = {}
        """Headers validated (proof-of-work, target, time, links) whose blocks we lack."""
        self._peer_headers: dict[str, BlockEntry] = {}
        """Peer -> the last header it sent us: the tip of its chain as far as we checked it."""
        self.events: deque[PoolEvent] = deque(maxlen=self.config.events_kept)
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
        self._log(restore_pending(chain, self.mempool))  # the pool survives restarts
        self._template: BlockTemplate | None = None
        self._template_at = 0
        self._nonce = 0
        self._last_status = -(10**18)

    # --- peers -----------------------------------------------------------------------------

    def add_peer(self, peer: str) -> None:
        if peer not in self.peers:
            self.peers.append(peer)

    def remove_peer(self, peer: str) -> None:
        if peer in self.peers:
            self.peers.remove(peer)
        self._relay.pop(peer, None)
        self._relay_bytes.pop(peer, None)
        self._peer_headers.pop(peer, None)
        self._inflight.pop(peer, None)
        self.peer_work.pop(peer, None)
        self.peer_height.pop(peer, None)
        self.inventory.remove_peer(peer)

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
        best = max(self.peer_height.values(), default=head.height)
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

    def sync_target(self) -> int:
        """The highest height this node knows of: its own, a peer's announced, or a checked
        header's whose block it lacks (sync progress is its height over this)."""
        known = max(self.peer_height.values(), default=0)
        headers = max((e.height for e in self._peer_headers.values() if e.hash in self._headers), default=0)
        return max(self.chain.height, known, headers)

    def headers_pending(self) -> int:
        """Checked headers whose blocks are not here yet."""
        return len(self._headers)

    def status(self) -> StatusMsg:
        head = self.chain.head
        return StatusMsg(head.height, head.hash, head.total_work.to_bytes(40, "big"))

    def flush_pending(self) -> None:
        """Write the mempool's changes to the store's pending table. Transactions from peers
        are batched per tick (one SQLite transaction instead of one each; a crash loses at
        most one tick of them, and the peers that sent them still hold them); a local
        submission is written at once."""
        changes, self._pending_changes = self._pending_changes, {}
        added = [(txid, c[0], c[1]) for txid, c in changes.items() if c is not None]
        self.chain.store.write_pending(added, [txid for txid, c in changes.items() if c is None])

    def close(self) -> None:
        """Write what the pending table still lacks and close the chain."""
        self.flush_pending()
        self.chain.close()

    # --- inputs ----------------------------------------------------------------------------

    def submit_tx(self, tx: Transaction, now: int) -> tuple[list[PoolEvent], list[Outgoing]]:
        """A transaction from a local user: admit it and gossip it."""
        return self._on_tx(None, tx, now)

    def handle(self, peer: str, msg: Message, now: int) -> list[Outgoing]:
        if isinstance(msg, TxsMsg):
            out: list[Outgoing] = []
            relay = self._relay.get(peer, {})
            for tx in msg.txs:
                body = tx_body(tx)
                tid = txid(body, tx.signature)
                if tid in self.mempool or tid in self.early:
                    # Gossip brings most transactions more than once: not an outcome, but
                    # news that this peer has it (no need to send it there).
                    relay.pop(tid, None)
                    self.inventory.has(peer, TX, tid)
                    continue
                out.extend(self._on_tx(peer, tx, now, body)[1])
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
            except OrderExpired:
                return []  # late, not malicious
            except InvalidOrder as exc:
                self._fault(peer, exc)
                return []
        if isinstance(msg, HaveMsg):
            return self._on_have(peer, msg, now)
        if isinstance(msg, WantMsg):
            return self._on_want(peer, msg)
        if isinstance(msg, BlocksMsg):
            return self._on_blocks(peer, msg, now)
        if isinstance(msg, GetBlocksMsg):
            return self._on_get_blocks(peer, msg)
        if isinstance(msg, GetHeadersMsg):
            return self._on_get_headers(peer, msg)
        if isinstance(msg, GetSenderTxsMsg):
            return self._on_get_sender_txs(peer, msg, now)
        if isinstance(msg, HeadersMsg):
            return self._on_headers(peer, msg, now)
        return []  # TxRejectedMsg: informative for the sender's user

    def tick(self, now: int) -> list[Outgoing]:
        self.flush_pending()
        out: list[Outgoing] = [(p, TxsMsg(tuple(b.values()))) for p, b in self._relay.items() if b]
        self._relay, self._relay_bytes = {}, {}
        out.extend(self.inventory.announcements())
        out.extend(self.inventory.retry(now, self._lacks))
        self._fills_served.clear()
        self._fills_asked.clear()
        self._fill_bytes.clear()
        timeout = self.config.request_timeout_ms
        if self._gaps_asked:
            self._gaps_asked = {k: t for k, t in self._gaps_asked.items() if now - t < timeout}
        if self._fills_seen:
            self._fills_seen = {k: t for k, t in self._fills_seen.items() if now - t < timeout}
        out.extend(self._fill_gaps(now))
        if now - self._last_status >= self.config.status_interval_ms:
            self._last_status = now
            out.extend((p, self.status()) for p in self.peers)
        if self.config.miner is not None:
            out.extend(self._mine(now))
        return out

    # --- transactions ----------------------------------------------------------------------

    def _on_tx(
        self, peer: str | None, tx: Transaction, now: int, body: bytes | None = None
    ) -> tuple[list[PoolEvent], list[Outgoing]]:
        """Admit ``tx`` (from ``peer``, or a local user if None), then any held transactions
        of its sender that it lets follow; its own outcomes and the messages to send."""
        events, out = self._admit(peer, tx, now, body)
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

    def _on_gap(
        self, peer: str, txid: Hash32, tx: Transaction, body: bytes | None, now: int
    ) -> list[Outgoing]:
        """A relayed transaction ahead of its sender's next nonce (gossip on several paths
        reorders a sender's transactions): hold it if it is within reach and its sender can
        pay (else a peer could fill the hold with junk for free), and ask the peer that sent
        it for the ones before it (it held them when it accepted this one)."""
        nonce, balance = self._next_nonce(tx.sender)
        if tx.nonce - nonce > self.config.max_early_ahead or balance < tx.fee:
            return []
        self.early.hold(peer, txid, tx, tx_size(body or tx_body(tx)))
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
        self, peer: str | None, tx: Transaction, now: int, body: bytes | None, *, report: bool = True
    ) -> tuple[list[PoolEvent], list[Outgoing]]:
        # A user's transaction is tried on the head first (a peer's is checked by the miner).
        check = None if peer is not None else partial(self._trial.check, self.mempool, now=now)
        events = self.mempool.add(tx, self.chain.account, decoded=peer is not None, body=body, check=check)
        outcome = events[0]
        out: list[Outgoing] = []
        if outcome.kind is EventKind.ACCEPTED:
            self.stats.txs_accepted += 1
            self._pending_changes[outcome.txid] = (encode(tx), now)
            if peer is None:  # only this node holds it: durable, and sent, before the user hears
                self.flush_pending()
                to, told = self.inventory.spread(None, tx.sender)
                out.extend((p, TxsMsg((tx,))) for p in to)
                self.inventory.tell(TX, told, outcome.txid)
            else:
                self._tx_origin[outcome.txid] = peer
                out.extend(self._queue_relay(peer, outcome.txid, tx))
        else:
            self.stats.txs_rejected += 1
            if peer is not None and report:
                if outcome.rule == NonceGap.__name__:
                    out.extend(self._on_gap(peer, outcome.txid, tx, body, now))
                out.append((peer, TxRejectedMsg(outcome.txid, outcome.rule, outcome.message)))
        self._log([outcome])
        out.extend(self._record(events[1:]))  # evictions the new transaction caused
        return events, out

    def _queue_relay(self, source: str, txid: Hash32, tx: Transaction) -> list[Outgoing]:
        """Queue ``tx`` for the peers it spreads to (its id for the others); send the batches
        that are full."""
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
            self.events.append(e)
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
        out: list[Outgoing] = []
        for e in events:
            if e.kind is EventKind.INCLUDED:  # the block's commit took it out of the table
                self._pending_changes.pop(e.txid, None)
            elif e.kind in (EventKind.EVICTED, EventKind.DROPPED):
                self._pending_changes[e.txid] = None
            origin = self._tx_origin.pop(e.txid, None)
            if origin is not None and e.kind in (EventKind.EVICTED, EventKind.DROPPED):
                out.append((origin, TxRejectedMsg(e.txid, e.rule, e.message)))
        self._log(events)
        return out

    # --- market orders (off chain) ------------------------------------------------------

    def post_order(self, signed: SignedOrder, now: int) -> list[Outgoing]:
        """A local user's order: check it, keep it on its topic and gossip it."""
        return self._on_order(None, signed, now)

    def _on_order(self, peer: str | None, signed: SignedOrder, now: int) -> list[Outgoing]:
        verified = validate_order(signed, now_interval=interval_of(now))  # raises the named rule
        if verified.id in self._orders_seen:
            return []
        name = topic(signed.order.area, signed.order.interval)
        self._orders_seen[verified.id] = name
        self.inventory.received(verified.id)
        self.orders.setdefault(name, {})[verified.id] = signed
        self._prune_orders(interval_of(now))
        to, told = self.inventory.spread(peer)
        self.inventory.tell(ORDER, told, verified.id)
        return [(p, OrderMsg(signed)) for p in to]

    def _prune_orders(self, current: int) -> None:
        """Forget topics whose delivery interval is over (bounded memory)."""
        if len(self.orders) <= self.config.max_order_topics:
            return
        for name in sorted(self.orders, key=lambda t: int(t.rsplit("/", 1)[1]))[: len(self.orders) // 2]:
            for oid in self.orders.pop(name):
                self._orders_seen.pop(oid, None)

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
        return item not in self._orders_seen

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
            name = self._orders_seen.get(oid)
            if name is not None and self.inventory.may_serve(peer, oid):
                out.append((peer, OrderMsg(self.orders[name][oid])))
        return out

    # --- blocks ----------------------------------------------------------------------------

    def _on_block(self, peer: str | None, block: Block, now: int) -> list[Outgoing]:
        self.stats.blocks_received += 1
        out: list[Outgoing] = []
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
                    if e.kind is EventKind.REJECTED:  # e.g. the winning branch spent its nonce
                        e = PoolEvent(EventKind.DROPPED, e.txid, e.sender, e.rule, e.message)
                    events.append(e)
        out.extend(self._record(events))
        if len(self.early):
            out.extend(self._release_after_block(result.connected, now))
        self._template = None
        tip = self.chain.head
        tip_block = result.connected[-1] if result.connected else None
        if relay and tip_block is not None and tip.hash == result.block_hash:
            out.extend(self._send_block(source, tip_block))
        return out

    def _add(self, block: Block, now: int) -> AddResult:
        started = time.perf_counter()
        try:
            result = self.chain.add_block(block, now=now)
        finally:
            self.stats.validation_seconds += time.perf_counter() - started
        self._headers.pop(result.block_hash, None)
        return result

    def _keep_orphan(self, peer: str | None, block: Block) -> bool:
        """Keep a block whose parent is unknown, if it is plausible; False if it is junk.

        Plausible: within the size limit, a target no easier than the proof-of-work
        limit, and a header that meets its own target (so each costs real work). A peer
        holds at most ``max_orphans_per_peer``; the pool at most ``max_orphans``.
        """
        params = self.chain.params
        header = block.header
        if (
            len(encode(block)) > params.max_block_bytes
            or target_from_bytes(header.target) > params.pow_limit_int
            or not meets_target(header)
        ):
            return False
        h = header_hash(encode(header))
        if h in self.orphans:
            return True
        origin = peer or ""
        mine = [k for k, (p, _) in self.orphans.items() if p == origin]
        if len(mine) >= self.config.max_orphans_per_peer:
            del self.orphans[mine[0]]
        self.orphans[h] = (origin, block)
        while len(self.orphans) > self.config.max_orphans:
            self.orphans.popitem(last=False)
        return True

    def _asking(self, peer: str | None, what: str, now: int) -> bool:
        """Whether to send ``peer`` a ``what`` request now: one request (headers or blocks)
        is in flight per peer; one unanswered for ``request_timeout_ms`` may be sent again.
        Out-of-order arrivals and repeated announcements never multiply requests."""
        if peer is None:
            return False
        asked = self._inflight.get(peer)
        if asked is not None and now - asked[0] < self.config.request_timeout_ms:
            return False
        self._inflight[peer] = (now, what)
        return True

    def _answered(self, peer: str, what: str) -> bool:
        """The peer answers our ``what`` request (False: nobody asked it for that)."""
        asked = self._inflight.get(peer)
        if asked is None or asked[1] != what:
            return False
        del self._inflight[peer]
        return True

    def _fork_point(self, peer: str) -> BlockEntry:
        """The last block we have of ``peer``'s chain as far as we know it: where its next
        headers and blocks follow (our best tip when we know nothing of its chain)."""
        tip = self._peer_tip.get(peer)
        if tip is None or tip.invalid or self.chain.entries.get(tip.hash) is not tip:
            return self.chain.best_tip()
        return tip

    def _next_request(self, peer: str, now: int, *, more_headers: bool) -> list[Outgoing]:
        """What to ask ``peer`` for next: more headers (when ``more_headers`` and it announced
        more work than its headers we checked show), else the blocks of its checked headers
        when they lead to more work than our best tip."""
        tip = self._peer_headers.get(peer)
        pending = tip is not None and tip.hash in self._headers
        shown = tip.total_work if tip is not None else 0
        if more_headers and self.peer_work.get(peer, 0) > shown:
            return self._request_headers(peer, now)
        if pending and tip is not None and tip.total_work > self.chain.best_tip().total_work:
            return self._request_blocks(peer, now)
        return []

    def _request_headers(self, peer: str | None, now: int) -> list[Outgoing]:
        """Ask ``peer`` for the headers after the last it sent us (else after our fork point
        with it): the locator starts there and goes on from our side."""
        if not self._asking(peer, "headers", now):
            return []
        assert peer is not None
        locator = self.chain.locator(self._fork_point(peer))
        tip = self._peer_headers.get(peer)
        if tip is not None and tip.hash in self._headers:
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
        relay the new head once, and ask for what comes next (``_next_request``)."""
        self._answered(peer, "blocks")
        head_before = self.chain.head.hash
        out: list[Outgoing] = []
        moved = False
        for block in msg.blocks:
            self.stats.blocks_received += 1
            h = header_hash(encode(block.header))
            if h not in self._headers and h not in self.chain.entries:
                moved = True  # not of the headers it sent: its chain moved
                break
            try:
                result = self._add(block, now)
            except UnknownParent:
                moved = True
                break
            except InvalidBlock as exc:
                self._invalid_block(peer, block.header.height, exc)
                self._headers.pop(h, None)
                self._peer_headers.pop(peer, None)
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
            self._peer_headers.pop(peer, None)
            return out + self._request_headers(peer, now)
        return out + self._next_request(peer, now, more_headers=bool(msg.blocks))

    def _on_get_headers(self, peer: str, msg: GetHeadersMsg) -> list[Outgoing]:
        chain = self.chain
        start = self._locate(msg.locator)
        end = min(start + min(msg.limit, MAX_HEADERS), chain.height + 1)
        return [(peer, HeadersMsg(tuple(chain.main[h].header for h in range(start, end))))]

    def _on_headers(self, peer: str, msg: HeadersMsg, now: int) -> list[Outgoing]:
        """Check a batch of headers we asked for as a chain — links, proof-of-work, retarget,
        time — before any of their blocks is asked for; a bad one is the peer's fault and
        none of the batch is kept. Then ask for more headers or for the blocks."""
        if not self._answered(peer, "headers"):
            return []  # nobody asked: not kept
        chain = self.chain
        if not msg.headers:
            return self._next_request(peer, now, more_headers=False)
        parent = chain.entries.get(msg.headers[0].prev_hash) or self._headers.get(msg.headers[0].prev_hash)
        if parent is None or parent.invalid:
            return []  # does not connect to what we know: its next status starts again
        if chain.entries.get(parent.hash) is parent:
            self._peer_tip[peer] = parent  # the fork point: its blocks follow this one
        new: list[BlockEntry] = []
        try:
            for header in msg.headers:
                h = validate_header(header, chain.header_context(parent, now))
                known = chain.entries.get(h) or self._headers.get(h)
                if known is not None and known.invalid:
                    raise KnownInvalid(f"header {header.height} {h.hex()[:16]} is of an invalid block")
                if known is None:
                    work = work_of_target(target_from_bytes(header.target))
                    known = BlockEntry(h, header, parent, parent.total_work + work)
                    new.append(known)
                elif known.hash in chain.entries:
                    self._peer_tip[peer] = known
                parent = known
        except InvalidBlock as exc:
            self._invalid_block(peer, parent.height + 1, exc, what="header")
            return []
        kept = new[: max(0, self.config.max_pending_headers - len(self._headers))]
        for entry in kept:  # (the rest once blocks have made room: asked for again then)
            self._headers[entry.hash] = entry
        if len(kept) == len(new):
            self._peer_headers[peer] = parent
        elif kept:
            self._peer_headers[peer] = kept[-1]
        full = len(msg.headers) >= self.config.headers_per_request and len(kept) == len(new)
        return self._next_request(peer, now, more_headers=full)

    def _connect_orphans(self, parent_hash: Hash32, now: int) -> list[Outgoing]:
        out: list[Outgoing] = []
        parents = [parent_hash]
        while parents:
            p = parents.pop()
            children = [h for h, (_, b) in self.orphans.items() if b.header.prev_hash == p]
            for h in children:
                _, block = self.orphans.pop(h)
                try:
                    result = self._add(block, now)
                except InvalidBlock as exc:
                    self._invalid_block(None, block.header.height, exc)
                    continue
                out.extend(self._after_add(result, None, now))
                parents.append(h)
        return out

    def _on_status(self, peer: str, msg: StatusMsg, now: int) -> list[Outgoing]:
        work = int.from_bytes(msg.total_work, "big")
        self.peer_work[peer] = work
        self.peer_height[peer] = msg.height
        if work > self.chain.best_tip().total_work and msg.head not in self.chain.entries:
            return self._next_request(peer, now, more_headers=msg.head not in self._headers)
        return []

    def _locate(self, locator: tuple[Hash32, ...]) -> int:
        """The height after the first of the (first 64) locator hashes on our main chain
        (0, from genesis, when none is)."""
        for h in locator[:MAX_LOCATOR]:
            entry = self.chain.entries.get(h)
            if entry is not None and self.chain.is_main(entry):
                return entry.height + 1
        return 0

    def _on_get_blocks(self, peer: str, msg: GetBlocksMsg) -> list[Outgoing]:
        chain = self.chain
        start = self._locate(msg.locator)
        limit = min(msg.limit, self.config.blocks_per_request)
        blocks: list[Block] = []
        size = 0
        for height in range(start, min(start + limit, chain.height + 1)):
            block = chain.block_at(height)
            if block is None:
                break
            size += len(encode(block))
            if blocks and size > MAX_REPLY_BYTES:
                break  # the batch must fit one message; the peer asks for the rest
            blocks.append(block)
        return [(peer, BlocksMsg(tuple(blocks)))]

    # --- mining ----------------------------------------------------------------------------

    def _mine(self, now: int) -> list[Outgoing]:
        miner = self.config.miner
        assert miner is not None
        tpl = self._template
        if (
            tpl is None
            or tpl.block.header.prev_hash != self.chain.head.hash
            or now - self._template_at >= self.config.template_refresh_ms
        ):
            tpl = self.chain.build_block(miner, self.mempool.candidates(), now=now)
            events: list[PoolEvent] = []
            for vtx, error in tpl.rejected:
                events.extend(self.mempool.remove_rejected(vtx, error, tpl.block.header.height))
            out = self._record(events)
            self._template, self._template_at, self._nonce = tpl, now, 0
        else:
            out = []
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
