"""Datagram routes: originate, read deliveries, claim (as the participant of the node's key)."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from fastapi import FastAPI, Query, params

from gridnet.crypto.address import address_from_public_key, address_to_text
from gridnet.encoding import decode, encode
from gridnet.errors import CarrierFull, PoolExpiring, UnknownNextHop
from gridnet.node.api.common import (
    ApiError,
    parse_address,
    parse_hex,
)
from gridnet.node.api.models import (
    ClaimsOut,
    DatagramsOut,
    HopClaimsOut,
    ReceivedDatagramOut,
    SendDatagramIn,
    SentDatagramOut,
)
from gridnet.node.node import Outgoing
from gridnet.node.relay_peer import RelayPeer
from gridnet.relay.datagram import Datagram


def datagram_routes(
    app: FastAPI,
    relay: RelayPeer,
    broadcast: Callable[[list[Outgoing]], None],
    authorized: Sequence[params.Depends],
) -> None:
    """Datagrams as the participant of the node's key: originate, read deliveries, claim.
    Every route needs the token (``authorized``): they send as the node, read what was sent
    to it privately, or make it sign claims."""

    @app.post(
        "/datagrams",
        response_model=SentDatagramOut,
        status_code=202,
        dependencies=authorized,
        summary="Send a datagram (built and signed by its originator) to its first hop",
    )
    async def send_datagram(body: SendDatagramIn) -> SentDatagramOut:
        hop = parse_address(body.first_hop)
        datagram = decode(parse_hex(body.datagram.strip(), "datagram"), Datagram, what="datagram")
        dropped = dict(relay.stats.dropped)
        outgoing = relay.send(hop, datagram)
        if outgoing:
            broadcast(outgoing)
            return SentDatagramOut(status="sent")
        if relay.stats.dropped[CarrierFull.__name__] > dropped.get(CarrierFull.__name__, 0):
            raise ApiError(422, CarrierFull.__name__, "too many datagrams held for absent hops")
        if relay.stats.dropped[UnknownNextHop.__name__] > dropped.get(UnknownNextHop.__name__, 0):
            raise ApiError(422, UnknownNextHop.__name__, "the first hop is this node itself")
        if relay.stats.dropped[PoolExpiring.__name__] > dropped.get(PoolExpiring.__name__, 0):
            raise ApiError(
                422,
                PoolExpiring.__name__,
                "the datagram's pool has expired or expires too soon for relays to carry it: "
                "create a new pool and pay from it",
            )
        return SentDatagramOut(status="held")

    @app.get(
        "/datagrams",
        response_model=DatagramsOut,
        dependencies=authorized,
        summary="Datagrams relayed and delivered here",
    )
    async def get_datagrams(limit: int = Query(100, ge=1, le=1000)) -> DatagramsOut:
        stats = relay.stats
        latest = list(relay.received)[-limit:]
        return DatagramsOut(
            forwarded=stats.forwarded,
            delivered=stats.delivered,
            held=len(relay.held),
            dropped=dict(stats.dropped),
            received=[
                ReceivedDatagramOut(
                    pool=d.datagram.token.token.pool.hex(),
                    depth=d.datagram.token.token.depth,
                    originator=address_to_text(address_from_public_key(d.datagram.token.token.owner_key)),
                    body=d.envelope.body.hex(),
                )
                for d in latest
            ],
        )

    @app.post(
        "/datagrams/claims",
        response_model=ClaimsOut,
        dependencies=authorized,
        summary="End the connections delivered here: a signed transit claim for each",
    )
    async def close_connections() -> ClaimsOut:
        return ClaimsOut(claims=[encode(c).hex() for c in relay.close_connections()])

    @app.get(
        "/datagrams/claims",
        response_model=ClaimsOut,
        dependencies=authorized,
        summary="The latest transit claims signed here (the last 1,000), oldest first",
    )
    async def get_claims() -> ClaimsOut:
        return ClaimsOut(claims=[encode(c).hex() for c in relay.claims])

    @app.get(
        "/datagrams/hop-claims",
        response_model=HopClaimsOut,
        dependencies=authorized,
        summary="What the chain pays this node's participant as a relay now: a hop claim per pool",
    )
    async def get_hop_claims() -> HopClaimsOut:
        return HopClaimsOut(hop_claims=[encode(c).hex() for c in relay.hop_claims()])
