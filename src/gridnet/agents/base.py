"""What every participant has (a key, its node, its nonce, an inbox) and the phases it may act in.

The scheduler advances the clock interval by interval and, in each phase, lets every agent
act in role order. An agent acts only through the world: it reads its node's state, submits
transactions, posts orders, sends datagrams and reads what reached its inbox (orders,
contract states, DSO commands). Every hook does nothing unless a role overrides it.

Phases, for the interval ``i`` that just ended and the next one to trade:

``measure(i)``     devices settle what really happened; meters sign and publish readings
(the world then runs the power flow of ``i`` on the metered energy)
``balance(i)``     the grid's operators read the readings and the power flow
``collect(i)``     the readings go on chain
``acknowledge(i)`` buyers' devices acknowledge what the sellers' meters show
``order(j)``       orders for interval ``j`` (= ``i + 2``)
``clear(j)``       ten minutes later, the auction of ``j`` clears into contracts
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

from gridnet.contracts.channel import ContractTerms, PartySignature, SignedState, sign_terms
from gridnet.crypto.keys import PrivateKey
from gridnet.ledger.params import Allocation
from gridnet.ledger.registry import Payload
from gridnet.market.orders import Order, Side, SignedOrder, sign_order
from gridnet.meter.telemetry import SimulatedMeter
from gridnet.units import Address, Interval, UnitsPerKWh, Wh

if TYPE_CHECKING:
    from gridnet.agents.world import World


class Agent:
    role: ClassVar[str] = ""

    def __init__(self, name: str, key: PrivateKey, node: str) -> None:
        self.name = name
        self.key = key
        self.node = node
        """The node it submits to and reads from."""
        self.nonce = 0
        self.inbox: list[Any] = []
        """What reached it (datagrams' notes, or notes handed over on a devnet)."""
        self.meter: SimulatedMeter | None = None
        self.feeder: int | None = None
        """The feeder (line owner index) whose cable connects it; None = not on a feeder."""
        self.on_hill = False
        """On a feeder but with no wired neighbour for data: only the carrier reaches it."""
        self.disputes: dict[bytes, Wh] = {}
        """Contracts it sold under and disputed -> the energy it delivered under each."""

    @property
    def address(self) -> Address:
        return self.key.address

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name})"

    # --- set-up --------------------------------------------------------------------------

    def allocations(self, world: World) -> list[Allocation]:
        """Coin it holds at genesis."""
        return []

    def genesis(self, world: World) -> dict[str, tuple[bytes, ...]]:
        """Addresses the genesis names it in, by ``ChainParams`` field (e.g. it is one of the
        ``advisory_authorities``); the scheduler joins every agent's."""
        return {}

    def attach(self, world: World) -> None:
        """Once the nodes run (before any transaction): join the data network."""

    def bootstrap(self, world: World) -> None:
        """Before the first interval: identities, authorities, meters, pools."""

    def final_state(self, cid: bytes) -> SignedState | None:
        """As a buyer asked in a dispute: its device's state acknowledging all the seller's
        meter shows (None = it has none)."""
        return None

    def signed_order(
        self, world: World, side: Side, interval: Interval, wh: Wh, price: UnitsPerKWh
    ) -> SignedOrder:
        """Its signed order for ``interval`` in the area's market, for its meter."""
        assert self.meter is not None
        order = Order(
            side,
            self.address,
            self.key.public_key,
            self.meter.meter_id,
            world.area,
            interval,
            wh,
            price,
            interval,
            0,
        )
        return sign_order(self.key, order, world.backend.chain_id)

    def dropped(self, world: World, payload: Payload, rule: str) -> None:
        """A transaction of its that its node took was let go without a block, for ``rule``
        (the world counts it refused). By default nothing follows; one that can wait for what
        the rule needs arms its wait again."""

    def refused(self, world: World, payload: Payload, rule: str) -> None:
        """A node refused a transaction of its for ``rule``, and the world counted it in
        ``transactions.refused``: when it was submitted (after any retries for a nonce gap), or
        when its node let it go without a block (``dropped`` follows). Every refusal the world
        counts for an agent comes here once, so an agent can keep its own count in step with the
        world's. By default nothing follows."""

    # --- signing -------------------------------------------------------------------------

    def sign_terms(self, world: World, terms: ContractTerms) -> PartySignature | None:
        """Its signature on contract terms it is a party to (None = it refuses them). By
        default it signs: buyers and sellers agreed in the auction."""
        return sign_terms(terms, self.key)

    # --- the phases ----------------------------------------------------------------------

    def tick(self, world: World) -> None:
        """Every step of the clock (once a simulated minute): read the inbox, move."""

    def measure(self, world: World, interval: Interval) -> None: ...

    def balance(self, world: World, interval: Interval) -> None: ...

    def collect(self, world: World, interval: Interval) -> None: ...

    def acknowledge(self, world: World, interval: Interval) -> None: ...

    def order(self, world: World, interval: Interval) -> None: ...

    def clear(self, world: World, interval: Interval) -> None: ...

    def day_end(self, world: World, intervals: list[Interval]) -> None:
        """After the last interval: subsidies, closing connections."""

    def wrap_up(self, world: World) -> None:
        """Once the day's transactions are on chain: what can only be claimed after them."""
