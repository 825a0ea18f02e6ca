"""The world the agents live in: the backend they act through, the data network between
them, the meters' public readings and the grid's physics.

Agents never touch a node: they call :meth:`World.submit`, :meth:`World.look`,
:meth:`World.post_order`, :meth:`World.market` and :meth:`World.send`, which go to the
backend (the in-memory network or a devnet's HTTP APIs) and the relay network. What the
grid does is physics, not anybody's behaviour: :meth:`World.power_flow` runs the feeders'
power flow on what the meters measured.
"""

from __future__ import annotations

import math
import random
from collections import Counter, defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, TypeVar

from gridnet.contracts.channel import ContractTerms, SignedTerms, contract_id
from gridnet.crypto.keys import PrivateKey
from gridnet.errors import GridOverloaded, InvalidTransaction, NonceGap
from gridnet.grid.commands import SignedCommand
from gridnet.identity import IdentityProof
from gridnet.ledger.mempool import DEFER_BLOCKS, EventKind, PoolEvent
from gridnet.ledger.params import MARKET_ON_CHAIN, ChainParams
from gridnet.ledger.registry import Payload
from gridnet.ledger.state import StateView
from gridnet.ledger.transactions import Transaction, min_fee, sign_transaction
from gridnet.ledger.txs.auction import PlaceOrder, require_trader
from gridnet.ledger.txs.relay import ChainRelayView
from gridnet.market.matching import Trade
from gridnet.market.orders import Side, SignedOrder
from gridnet.meter.mqtt import MqttBroker, MqttTelemetry
from gridnet.meter.reading import SignedReading
from gridnet.meter.telemetry import InMemoryTelemetry, Telemetry
from gridnet.sim.backends import Backend, MemoryBackend
from gridnet.sim.relaynet import CARRIER, CommandNote, Note, OrderNote, RelayNet
from gridnet.sim.scenario import Scenario, gnc, pool_expiry, pool_length
from gridnet.units import Address, Interval, Wh, interval_of, interval_start
from gridnet.world.grid import FlowResult, Grid

if TYPE_CHECKING:
    from gridnet.agents.base import Agent

A = TypeVar("A", bound="Agent")

GAP_RETRY_MS = 15 * 60_000
"""How long a transaction its node refuses for a nonce gap is tried again at least
(``World.submit``)."""
GAP_RETRY_BLOCKS = DEFER_BLOCKS + 2
"""How many blocks a transaction its node refuses for a nonce gap is tried again at least: a
pending transaction of its sender's that no block can include is in the way until block
building drops it, ``DEFER_BLOCKS`` blocks after it first refused it (however long those take)."""
WAITS_FOR_REGISTRATION = frozenset({"UnknownIdentity", "MeterNotOwned"})
"""Refusals of an order a node gives while its owner's registrations are not mined yet:
the agent posts it again once they are (``World.post_order``)."""


class Look:
    """One node's head as an agent sees it: its state and (read when asked) its height."""

    def __init__(self, backend: Backend, node: str) -> None:
        self.view: StateView = backend.view(node)
        self._backend = backend
        self._node = node
        self._height: int | None = None

    @property
    def height(self) -> int:
        if self._height is None:
            self._height = self._backend.height(self._node)
        return self._height


@dataclass
class Action:
    """Something an agent does once ``ready`` holds on its node's head."""

    who: Agent
    ready: Callable[[Look], bool]
    then: Callable[[Look], None]
    deadline: int | None = None
    """When it gives up waiting [ms] (None: never)."""


@dataclass
class Deal:
    """A contract the auction made: its terms and the trade behind them."""

    terms: ContractTerms
    trade: Trade
    buyer: Agent
    seller: Agent

    @property
    def cid(self) -> bytes:
        return contract_id(self.terms)


@dataclass
class Tally:
    submitted: Counter[str] = field(default_factory=Counter)
    """Transactions their node took, per payload type: each once (signed again after its node
    dropped it, it counts in ``resubmitted``)."""
    resubmitted: int = 0
    """Transactions signed again, with a fresh nonce, after their node dropped them only for a
    gap (``World.take_back``) and taken again."""
    refused: Counter[str] = field(default_factory=Counter)
    refused_by: defaultdict[str, Counter[str]] = field(default_factory=lambda: defaultdict(Counter))
    """Rule -> the participants whose transactions (or commands) it refused, and how many."""
    orders_refused: Counter[str] = field(default_factory=Counter)
    orders_left_out: int = 0
    """Orders an auction left out because their meter was vulnerable when it cleared."""
    abandoned: int = 0
    """Deferred actions given up at their deadline (e.g. settling a contract that never opened)."""
    losses_wh: defaultdict[int, float] = field(default_factory=lambda: defaultdict(float))
    """Feeder (line owner index) -> its cables' losses [Wh]."""
    transformer_losses_wh: defaultdict[int, float] = field(default_factory=lambda: defaultdict(float))
    max_loading: defaultdict[int, float] = field(default_factory=lambda: defaultdict(float))
    v_min: defaultdict[int, float] = field(default_factory=lambda: defaultdict(lambda: math.inf))
    v_max: defaultdict[int, float] = field(default_factory=lambda: defaultdict(lambda: -math.inf))
    """Feeder -> the lowest and highest home bus voltage of its power flows [pu] (infinite
    until its first: not 1.0, which no bus may have reached)."""
    congested_intervals: int = 0
    """Intervals in which a line was over its limit or a voltage outside the band."""

    def refuse(self, rule: str, who: str) -> None:
        """A node refused ``who``'s transaction (or command) for ``rule``."""
        self.refused[rule] += 1
        self.refused_by[rule][who] += 1


class World:
    def __init__(self, scenario: Scenario) -> None:
        self.s = scenario
        self.datagrams: Counter[tuple[str, str]] = Counter()
        """Datagrams sent over the relays, by (sender, target)."""
        self.area = scenario.simulation.area
        self.first = interval_of(scenario.start_ms)
        self.last = self.first + scenario.simulation.intervals - 1
        self.tally = Tally()
        self.agents: list[Agent] = []
        self.by_address: dict[Address, Agent] = {}
        self.by_name: dict[str, Agent] = {}
        self._roles: dict[str, Agent] = {}
        self.proofs: dict[Address, IdentityProof] = {}
        self.actions: list[Action] = []
        self._soon: list[tuple[Agent, Payload]] | None = None
        """During a pass of deferred actions: what they submit at its end (``submit_soon``)."""
        self.deals: dict[Interval, list[Deal]] = defaultdict(list)
        """What each interval's auction made (public: anyone holding the orders recomputes it)."""
        self.readings: dict[Interval, dict[Address, SignedReading]] = defaultdict(dict)
        """Meter -> its signed reading of each interval (public once published)."""
        self.flows: dict[Interval, FlowResult] = {}
        self.weather_filled_hours = 0
        """Hours of the run whose weather file marked a value missing (filled: world/solar.py)."""
        self.dues_cache: dict[Interval, dict[bytes, Wh]] = {}
        """What ``agents.contracts.dues`` computed (it is read by every party to a contract)."""
        self.broker: MqttBroker | None = None
        self.received_otherwise: dict[Interval, dict[Address, Wh]] = defaultdict(dict)
        """Energy a buyer's meter took in an interval under something else than a contract
        (an aggregators' record, redeemed energy), known by the end of the interval's
        ``measure`` phase, and what the DSO's ``balance`` finds it did not supply
        (``from_area``): no shortfall the DSO supplies [Wh]."""
        self.from_area: dict[Interval, dict[Address, Wh]] = defaultdict(dict)
        """Of ``received_otherwise``: import no contract covered and the DSO did not supply
        either (its substation meter shows the area took less from the grid): neighbours'
        export that no contract sold, which nobody is paid for [Wh]."""
        self.last_txid = b""
        """The id of the last transaction a node accepted from ``submit``."""
        self.closers: list[Callable[[], None]] = []
        """What roles started and ``close`` stops (meter processes), last started first."""
        self.telemetry: Telemetry = InMemoryTelemetry()
        if scenario.telemetry.kind == "mqtt":
            self.broker = MqttBroker().start()  # in-process, 127.0.0.1, a free port
            self.telemetry = MqttTelemetry(port=self.broker.port)
        self.grid: Grid | None = None
        self.relaynet: RelayNet | None = None
        self._backend: Backend | None = None
        self.params: ChainParams | None = None
        self._lost_after: dict[str, int] = {}
        """Node -> the number of the last transaction its pool let go that ``take_back`` read."""

    # --- who is here ---------------------------------------------------------------------

    def key(self, label: str) -> PrivateKey:
        """A participant's key, fixed by the scenario's name, seed and ``label``."""
        return PrivateKey.from_label(f"{self.s.simulation.name}/{self.s.simulation.seed}/{label}")

    def add(self, agents: Sequence[Agent]) -> None:
        for agent in agents:
            if agent.name in self.by_name:
                raise ValueError(f"two participants are named {agent.name!r}")
            self.agents.append(agent)
            self._roles.pop(agent.role, None)
            self.by_name[agent.name] = agent
            self.by_address[agent.address] = agent

    def of(self, kind: type[A]) -> list[A]:
        """Every agent of class ``kind``, in the order they were added."""
        return [a for a in self.agents if isinstance(a, kind)]

    def with_role(self, role: str) -> Agent:
        """The one agent of ``role`` (an authority, the hub)."""
        agent = self._roles.get(role)
        if agent is None:
            found = [a for a in self.agents if a.role == role]
            if len(found) != 1:
                raise LookupError(f"the scenario has {len(found)} {role} participants, not one")
            agent = self._roles[role] = found[0]
        return agent

    def one(self, kind: type[A]) -> A:
        found = self.of(kind)
        if len(found) != 1:
            raise LookupError(
                f"the scenario has {len(found)} {kind.role or kind.__name__} participants, not one"
            )
        return found[0]

    def node_for(self, index: int) -> str:
        """The node the ``index``-th participant of a kind uses (spread over the nodes)."""
        return f"n{index % self.s.network.nodes}"

    # --- the backend ---------------------------------------------------------------------

    def connect(self, params: ChainParams, backend: Backend) -> None:
        self.params = params
        self._backend = backend

    @property
    def onchain(self) -> bool:
        """Orders are transactions and the chain clears the auctions (the genesis says)."""
        return self.params is not None and self.params.market_mode == MARKET_ON_CHAIN

    def place_order(self, who: Agent, side: Side, interval: Interval, wh: Wh, price: int, hub: Agent) -> None:
        """``who`` bids or offers for ``interval`` in the area's auction: a transaction on an
        on-chain market; else a signed order posted at its node (no relays) or sent to ``hub``."""
        assert who.meter is not None
        if self.onchain:
            self.submit(who, PlaceOrder(side, who.meter.meter_id, self.area, interval, wh, price))
            return
        signed = who.signed_order(self, side, interval, wh, price)
        if self.relaynet is None:
            self.post_order(who, signed)
        else:
            self.send(who, OrderNote(signed), hub)

    @property
    def backend(self) -> Backend:
        if self._backend is None:
            raise RuntimeError("the world is not connected to its nodes yet")
        return self._backend

    def now(self) -> int:
        return self.backend.now()

    def submit(
        self, who: Agent, payload: Payload, *, retry_until: tuple[int, int] | None = None, again: bool = False
    ) -> bool:
        """Sign ``payload`` with ``who``'s next nonce and hand it to ``who``'s node; whether
        the node took it now. One the node refuses for a nonce gap even with the nonce it
        gives (a pending transaction of ``who``'s that no block can include any more is in the
        way until a block builder drops it) is tried again at each step until both
        ``GAP_RETRY_MS`` and ``GAP_RETRY_BLOCKS`` blocks have passed (``retry_until``: that
        time and height), and counted refused only then. ``again``: the node took it once
        already and dropped it (counted in ``resubmitted``, not ``submitted``, when taken)."""
        assert self.params is not None
        for _ in range(2):
            fee = min_fee(self.params.min_fee_per_byte, payload, who.nonce)
            tx = sign_transaction(who.key, self.backend.chain_id, payload, who.nonce, fee)
            outcome = self.backend.submit(who.node, tx)
            if outcome.kind is EventKind.ACCEPTED:
                self._taken(who, payload, tx, outcome, again)
                return True
            if outcome.rule not in ("NonceGap", "NonceTooLow"):
                break
            who.nonce = self.backend.next_nonce(who.node, who.address)  # resynchronise with the node
        if outcome.rule == "NonceGap":
            now = self.now()
            if retry_until is None:
                retry_until = (now + GAP_RETRY_MS, self.backend.height(who.node) + GAP_RETRY_BLOCKS)
            until = retry_until
            # (the node's height is asked only once the time has passed)
            if now < until[0] or self.backend.height(who.node) < until[1]:

                def retry(_look: Look) -> None:
                    self.submit(who, payload, retry_until=until, again=again)

                self.when(who, lambda _look: self.now() > now, retry)  # (a later step, not this one)
                return False
        self.refuse(who, payload, outcome.rule)
        return False

    def submit_all(self, items: Sequence[tuple[Agent, Payload]], *, again: bool = False) -> list[bool]:
        """``submit`` of each (agent, payload), in order, the transactions handed to each node
        together (``Backend.submit_many``: a node checks their signatures as one batch, on
        all cores, and stores them in one write). An agent's items get consecutive nonces;
        one its node refuses for its nonce (after one of the agent's the node refused, or a
        nonce out of step with the node's) is submitted again on its own, as ``submit`` does
        it (the nonce resynchronised, a gap retried later); one refused for another rule is
        counted refused. Whether each was taken. ``again``: as ``submit``'s."""
        assert self.params is not None
        txs: list[Transaction] = []
        next_nonce: dict[int, int] = {}  # id(agent) -> the nonce its next item gets
        by_node: dict[str, list[int]] = defaultdict(list)
        for i, (who, payload) in enumerate(items):
            nonce = next_nonce.get(id(who), who.nonce)
            next_nonce[id(who)] = nonce + 1
            fee = min_fee(self.params.min_fee_per_byte, payload, nonce)
            txs.append(sign_transaction(who.key, self.backend.chain_id, payload, nonce, fee))
            by_node[who.node].append(i)
        outcomes: list[PoolEvent | None] = [None] * len(items)
        for node, places in by_node.items():
            taken_here = self.backend.submit_many(node, [txs[i] for i in places])
            for i, event in zip(places, taken_here, strict=True):
                outcomes[i] = event
        taken = []
        for (who, payload), tx, outcome in zip(items, txs, outcomes, strict=True):
            assert outcome is not None
            if outcome.kind is EventKind.ACCEPTED:
                self._taken(who, payload, tx, outcome, again)
                taken.append(True)
            elif outcome.rule in ("NonceGap", "NonceTooLow"):
                taken.append(self.submit(who, payload, again=again))  # (with the nonce its node gives)
            else:
                self.refuse(who, payload, outcome.rule)
                taken.append(False)
        return taken

    def refuse(self, who: Agent, payload: Payload, rule: str) -> None:
        """A node refused ``who``'s transaction for ``rule``: count it and tell ``who``."""
        self.tally.refuse(rule, who.name)
        who.refused(self, payload, rule)

    def _taken(self, who: Agent, payload: Payload, tx: Transaction, outcome: PoolEvent, again: bool) -> None:
        """``who``'s node took ``tx``: its next transaction has the nonce after."""
        self.last_txid = outcome.txid
        who.nonce = max(who.nonce, tx.nonce + 1)
        if again:
            self.tally.resubmitted += 1
        else:
            self.tally.submitted[type(payload).__name__] += 1

    def take_back(self) -> None:
        """Hear of the agents' transactions their nodes let go without a block. One dropped
        only because an earlier one of its sender's was (``NonceGap``: no block could include
        it after the gap) is submitted again, with a fresh nonce, and is refused then if it
        depended on the one dropped; any other is counted refused under the rule that dropped
        or evicted it (block building refused it for ``defer_blocks`` blocks, say a deal's
        opening mined after its first interval began; a full mempool evicted it)."""
        gapped: list[tuple[Agent, Payload]] = []
        for node in sorted({a.node for a in self.agents}):
            events, self._lost_after[node] = self.backend.lost(node, self._lost_after.get(node, 0))
            for e in events:
                who = None if e.sender is None else self.by_address.get(e.sender)
                if who is None or who.node != node or e.tx is None:
                    continue  # (not an agent's, or relayed to this node by the agent's own)
                if e.rule == NonceGap.__name__:
                    gapped.append((who, e.tx.payload))
                else:
                    self.refuse(who, e.tx.payload, e.rule)
                    who.dropped(self, e.tx.payload, e.rule)
        if gapped:
            self.submit_all(gapped, again=True)

    def submit_soon(self, who: Agent, payload: Payload) -> None:
        """``submit``, for an action that need not know at once whether the node took it: in
        a pass of deferred actions (``act``), with the others of that pass at its end
        (``submit_all``); at once outside one."""
        if self._soon is None:
            self.submit(who, payload)
        else:
            self._soon.append((who, payload))

    def when(
        self,
        who: Agent,
        ready: Callable[[Look], bool],
        then: Callable[[Look], None],
        deadline: int | None = None,
    ) -> None:
        """Let ``who`` do ``then`` once ``ready`` holds on its node's head; it gives up at
        ``deadline`` [ms] if that has not happened by then (counted as abandoned)."""
        self.actions.append(Action(who, ready, then, deadline))

    def later(
        self, who: Agent, payload: Payload, ready: Callable[[StateView], bool], deadline: int | None = None
    ) -> None:
        """Submit ``payload`` for ``who`` once ``ready`` holds on its node's state (giving up
        at ``deadline``)."""

        def submit(_look: Look) -> None:
            self.submit_soon(who, payload)

        self.when(who, lambda look: ready(look.view), submit, deadline)

    def look(self, node: str) -> Look:
        return Look(self.backend, node)

    def act(self) -> None:
        """Do every deferred action whose precondition now holds."""
        looks: dict[str, Look] = {}  # one per node and pass: each entry is read once
        waiting = []
        now = self.now()
        self._soon = []
        try:
            for action in self.actions:
                node = action.who.node
                if node not in looks:
                    looks[node] = self.look(node)
                if action.ready(looks[node]):
                    action.then(looks[node])
                elif action.deadline is not None and now >= action.deadline:
                    self.tally.abandoned += 1
                else:
                    waiting.append(action)
            soon = self._soon
        finally:
            self._soon = None
        self.actions = waiting
        if soon:
            self.submit_all(soon)

    def post_order(self, who: Agent, signed: SignedOrder, retry: bool = True) -> None:
        """Post an order at ``who``'s node, which gossips it on its market topic. One refused
        because its owner's identity or meter registration is not on the node's head yet
        (``UnknownIdentity``, ``MeterNotOwned``: a node takes orders only from traders the
        chain knows) is posted again once it is, until its delivery interval starts (then it
        is counted refused)."""
        rule = self.backend.post_order(who.node, signed)
        if rule in WAITS_FOR_REGISTRATION and retry:
            order = signed.order

            def registered(look: Look) -> bool:
                try:
                    require_trader(look.view, order.owner, order.meter, order.area)
                except InvalidTransaction:
                    return False
                return True

            def expired(look: Look) -> bool:
                return self.now() >= interval_start(order.interval)

            def post(look: Look) -> None:
                if expired(look):
                    self.tally.orders_refused[rule] += 1
                else:
                    self.post_order(who, signed, retry=False)

            self.when(who, lambda look: registered(look) or expired(look), post)
            return
        if rule:
            self.tally.orders_refused[rule] += 1

    def market(self, who: Agent, interval: Interval) -> list[SignedOrder]:
        """The orders ``who``'s node holds on the area's topic of ``interval``."""
        return self.backend.orders(who.node, self.area, interval)

    # --- the data network ----------------------------------------------------------------

    def build_relaynet(self, hub: Agent, carrier: Agent) -> None:
        """Homes on each feeder form a line to ``hub``; those on the hill (no wired
        neighbour) are reached by ``carrier`` only. Relaying lives on the in-memory network."""
        net = self.backend.net if isinstance(self.backend, MemoryBackend) else None
        if net is None or not self.s.relay.enabled:
            return
        sited = [a for a in self.agents if a.feeder is not None]
        hill = [a for a in sited if a.on_hill]
        feeders = [
            [(a.name, a.key) for a in sited if a.feeder == f and not a.on_hill]
            for f in range(len(self.s.line_owners))
        ]
        assert carrier.name == CARRIER
        self.relaynet = RelayNet(
            net,
            (hub.name, hub.key),
            feeders,
            [(a.name, a.key) for a in hill],
            carrier.key,
            lambda: ChainRelayView.of(net.nodes["n0"].chain),
            pool_length=pool_length(self.s.simulation.intervals),
            payrate_ppm=round(self.s.relay.payrate * 1_000_000),
            carrier_stop_ms=round(self.s.relay.carrier_stop_s * 1000),
        )

    def open_pool(self, sender: Agent, label: str, to: Agent) -> None:
        """When relays run: ``sender`` locks ``[relay] pool_gnc`` in a token pool (seeded by
        the scenario and ``label``) for its datagrams to ``to``."""
        if self.relaynet is None:
            return
        s = self.s
        pool = self.relaynet.open_pool(
            sender.name,
            self.proofs[sender.address],
            f"{s.simulation.name}/{s.simulation.seed}/{label}",
            gnc(s.relay.pool_gnc),
            expiry=pool_expiry(s),
            target=to.name,
        )
        self.submit(sender, pool)

    def datagram_nonce(self, sender: str, to: str) -> bytes:
        """The nonce of ``sender``'s next datagram to ``to``: seeded by the scenario and the
        pair's count alone (one generator for all had made one home's extra datagram change
        every later datagram of every other home)."""
        self.datagrams[(sender, to)] += 1
        seed = (
            f"{self.s.simulation.name}/{self.s.simulation.seed}/{sender}/{to}/{self.datagrams[(sender, to)]}"
        )
        return random.Random(seed).randbytes(16)

    def send(self, sender: Agent, note: Note, to: Agent) -> None:
        """``sender`` sends ``note`` to ``to``: a paid datagram over the relays when they run
        (``sender`` needs a pool for that connection), else handed over directly (to itself,
        or on a devnet, where relays are not simulated). A DSO command without relays is
        posted at the sender's node instead, where devices read it (:meth:`commands`)."""
        if self.relaynet is not None and (sender.name, to.name) in self.relaynet.senders:
            self.relaynet.send(sender.name, note, self.datagram_nonce(sender.name, to.name), to.name)
        elif isinstance(note, CommandNote) and to is not sender:
            rule = self.backend.post_command(sender.node, note.command)
            if rule:
                self.tally.refuse(rule, sender.name)
        else:
            to.inbox.append(note)

    def commands(self, source: Agent, after: int) -> tuple[list[SignedCommand], int]:
        """The DSO commands ``source`` posted at its node for the area since ``after`` (what a
        device fetches from that node's API: they are public, and each device checks them),
        and the number to read after next."""
        return self.backend.commands(source.node, self.area, after)

    def deliver(self) -> None:
        """What the relays delivered goes to its receivers' inboxes."""
        if self.relaynet is None:
            return
        for name, notes in self.relaynet.drain().items():
            self.by_name[name].inbox.extend(notes)

    # --- meters and the grid -------------------------------------------------------------

    def publish(self, reading: SignedReading) -> None:
        """A meter sends its signed reading to the collector (and it becomes public)."""
        self.telemetry.publish(reading)
        self.readings[reading.reading.interval][reading.reading.meter] = reading

    def metered(self, agent: Agent, interval: Interval) -> tuple[Wh, Wh]:
        """(exported, imported) [Wh] of ``agent``'s meter in ``interval`` (0, 0 unread)."""
        if agent.meter is None:
            return 0, 0
        r = self.readings.get(interval, {}).get(agent.meter.meter_id)
        return (0, 0) if r is None else (r.reading.exported_wh, r.reading.imported_wh)

    def transformer_wh(self, interval: Interval) -> Wh:
        """The energy the area took from the grid through its transformers in ``interval``,
        negative when it fed the grid [Wh, rounded]: the power flow's (the homes' metered net
        import plus the cables' and transformers' losses), or the homes' metered net import
        without a power flow."""
        flow = self.flows.get(interval)
        if flow is not None:
            return round(sum(flow.transformer_wh))
        sited = [a for a in self.agents if a.feeder is not None]
        return sum(self.metered(a, interval)[1] - self.metered(a, interval)[0] for a in sited)

    def build_grid(self) -> None:
        """One feeder per line owner, its participants along its cable in the order they
        were added."""
        feeders = [[a.name for a in self.agents if a.feeder == f] for f in range(len(self.s.line_owners))]
        self.grid = Grid.build(self.s.grid, feeders)

    def power_flow(self, interval: Interval) -> FlowResult:
        """The grid under ``interval``'s metered energy: losses per line owner, the highest
        loading and the voltage band of each feeder; an interval outside the limits is counted."""
        from pandapower.auxiliary import LoadflowNotConverged

        assert self.grid is not None
        sited = [a for a in self.agents if a.feeder is not None]
        metered = {a.name: self.metered(a, interval) for a in sited}
        try:
            result = self.grid.flow(
                {n: e for n, (e, _) in metered.items()}, {n: i for n, (_, i) in metered.items()}
            )
        except LoadflowNotConverged:
            when = datetime.fromtimestamp(interval_start(interval) / 1000, UTC).strftime("%Y-%m-%d %H:%M")
            drawn, fed = (sum(m[k] for m in metered.values()) for k in (1, 0))
            raise GridOverloaded(
                f"{self.s.source}: the grid has no power flow in the interval from {when} UTC: its "
                f"feeders cannot carry what the homes metered ({drawn:,} Wh drawn, {fed:,} Wh fed in; "
                "a voltage collapse); lower [homes] business_kwh or pv_kw, or make the feeders "
                "stronger ([grid] spacing_m, line_type, transformer_type)"
            ) from None
        tally = self.tally
        for f, losses in enumerate(result.losses_wh):
            tally.losses_wh[f] += losses
            tally.transformer_losses_wh[f] += result.transformer_losses_wh[f]
            tally.max_loading[f] = max(tally.max_loading[f], result.max_loading_percent[f])
            tally.v_min[f] = min(tally.v_min[f], result.v_min_pu[f])
            tally.v_max[f] = max(tally.v_max[f], result.v_max_pu[f])
        if result.congested:
            tally.congested_intervals += 1
        self.flows[interval] = result
        return result

    # --- contracts -----------------------------------------------------------------------

    def agree(self, terms: ContractTerms) -> SignedTerms | None:
        """Ask every party to sign ``terms`` (each agent's own rule decides); None when one refuses."""
        parties = [self.by_address[terms.buyer], self.by_address[terms.seller]]
        parties += [self.by_address[f.owner] for f in terms.line_fees]
        signatures = []
        for party in parties:
            signature = party.sign_terms(self, terms)
            if signature is None:
                return None
            signatures.append(signature)
        return SignedTerms(terms, tuple(signatures))

    # --- the clock -----------------------------------------------------------------------

    def run_until(self, end: int) -> None:
        """Let the clock reach ``end`` [ms], every agent acting as it goes. The schedule is
        absolute: on a devnet the driver's own work takes real time, and steps measured from
        "now" would let it fall further behind the nodes' clock (nothing when already late)."""
        while (now := self.backend.now()) < end:
            self.backend.advance(min(self.backend.act_every_ms, end - now))
            self.take_back()
            self.deliver()
            for agent in self.agents:
                agent.tick(self)
            self.act()

    def run_for(self, duration_ms: int) -> None:
        self.run_until(self.backend.now() + duration_ms)

    def close(self) -> None:
        """Stop what the world started: the roles' processes, MQTT clients and broker, then
        the nodes."""
        while self.closers:
            self.closers.pop()()
        if isinstance(self.telemetry, MqttTelemetry):
            self.telemetry.close()
        if self.broker is not None:
            self.broker.stop()
        if self._backend is not None:
            self._backend.close()
