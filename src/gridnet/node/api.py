"""The node's HTTP API (FastAPI; OpenAPI at ``/docs``): read the chain, its state, the
mempool and the market's order topics; submit transactions and orders.

``create_app(node, clock=..., broadcast=...)`` serves one :class:`~gridnet.node.node.Node`.
The node runs in the same asyncio event loop as the app, so every handler is ``async`` and
calls the node directly (never from a worker thread). Submissions go through the node like
a local user's: ``submit_tx`` / ``post_order`` at ``clock()``, and the gossip they produce is
handed to ``broadcast`` (the transport delivers it).

JSON conventions: addresses in their ``gn...`` text form, hashes, keys, signatures and
canonical bytes in lowercase hex, amounts in base units and energy in Wh as integers,
cumulative work as a decimal string. Every error is ``{"code": ..., "message": ...}``:
the rule's name (``BadSignature``, ``NonceGap``, ``InvalidAddress``, ``Malformed``, ...) or
``BadRequest`` / ``NotFound`` / ``MethodNotAllowed`` / ``InternalError``.

Transactions are found by id through an in-memory index of the main chain, built lazily
on the first lookup and brought up to date on each later one (a reorg re-indexes from the
fork point). It is not stored: a restarted node rebuilds it on its first lookup.

Pydantic lives here only (the edge); the ledger's objects stay msgspec Structs.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import msgspec
import msgspec.inspect as mi
from fastapi import FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

from gridnet import __version__
from gridnet.crypto.address import address_from_public_key, address_from_text, address_to_text
from gridnet.crypto.hashing import address_digest
from gridnet.encoding import decode, encode
from gridnet.errors import CarrierFull, DecodeError, GridnetError, InvalidAddress, UnknownNextHop
from gridnet.ledger.blocks import Block
from gridnet.ledger.chain import BlockEntry, Chain
from gridnet.ledger.mempool import EventKind, fee_rate
from gridnet.ledger.merkle import merkle_proof
from gridnet.ledger.state import IDENTITIES, table_named
from gridnet.ledger.transactions import Transaction, tx_id
from gridnet.ledger.txs.contract import CONTRACTS
from gridnet.ledger.txs.meter import METERS, READINGS, reading_key
from gridnet.ledger.txs.relay import POOLS
from gridnet.market.orders import AREA_MAX_CHARS, SignedOrder, order_id, topic
from gridnet.node.node import Node, Outgoing
from gridnet.node.relay_peer import RelayPeer
from gridnet.relay.datagram import Datagram
from gridnet.units import ADDRESS_BYTES, HASH_BYTES, PUBLIC_KEY_BYTES, Hash32

MAX_BODY_HEX = 2 * 4 * 1024 * 1024
"""Longest hex accepted in a request body (a 4 MiB object)."""
DEFAULT_READINGS = 8
MAX_READINGS = 96
READING_SCAN = 4 * 96 * 10
"""Intervals walked back from a meter's latest reading to find its recent ones (10 days)."""
MAX_STATE_KEY_BYTES = 64
"""Longer than any state table's key (the longest, a reading's, is 28 bytes)."""


# --- errors ------------------------------------------------------------------------------


class ApiError(Exception):
    """An HTTP error with the API's JSON body."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


def _not_found(message: str) -> ApiError:
    return ApiError(404, "NotFound", message)


def _bad_request(message: str) -> ApiError:
    return ApiError(400, "BadRequest", message)


def _one_line(text: str) -> str:
    return " ".join(text.split())


def _error(status: int, code: str, message: str) -> JSONResponse:
    return JSONResponse(status_code=status, content={"code": code, "message": _one_line(message)})


def _status_of(exc: GridnetError) -> int:
    """Malformed input is the client's 400; any other named rule is a 422 refusal."""
    return 400 if isinstance(exc, DecodeError | InvalidAddress) else 422


# --- parsing path and body values --------------------------------------------------------


def _hex(text: str, what: str, length: int | None = None) -> bytes:
    try:
        raw = bytes.fromhex(text)
    except ValueError:
        raise _bad_request(f"{what} is not hex") from None
    if length is not None and len(raw) != length:
        raise _bad_request(f"{what} must be {length} bytes ({2 * length} hex digits), got {len(raw)}")
    return raw


def _address(text: str) -> bytes:
    return address_from_text(text)  # raises InvalidAddress (400)


# --- rendering ledger objects as JSON ----------------------------------------------------


_TYPE_INFO: dict[type, mi.Type] = {}


def _type_info(cls: type) -> mi.Type:
    info = _TYPE_INFO.get(cls)
    if info is None:
        info = _TYPE_INFO[cls] = mi.type_info(cls)
    return info


def _render(value: Any, t: mi.Type) -> Any:
    """JSON form of a decoded Wire value: 20-byte fields as text addresses, other bytes as
    hex, enums by lowercase name, structs as objects."""
    if isinstance(t, mi.StructType):
        return {f.name: _render(getattr(value, f.name), f.type) for f in t.fields}
    if isinstance(t, mi.BytesType):
        if t.min_length == t.max_length == ADDRESS_BYTES:
            return address_to_text(value)
        return bytes(value).hex()
    if isinstance(t, mi.ListType | mi.VarTupleType | mi.SetType | mi.FrozenSetType):
        return [_render(v, t.item_type) for v in value]
    if isinstance(t, mi.TupleType):
        return [_render(v, it) for v, it in zip(value, t.item_types, strict=True)]
    if isinstance(t, mi.UnionType):
        for member in t.types:
            if isinstance(member, mi.StructType) and type(value) is member.cls:
                return _render(value, member)
        return _render_plain(value)
    if isinstance(t, mi.EnumType):
        return str(value.name).lower()
    return _render_plain(value)


def _render_plain(value: Any) -> Any:
    if isinstance(value, bytes):
        return value.hex()
    if isinstance(value, tuple | list):
        return [_render_plain(v) for v in value]
    if isinstance(value, msgspec.Struct):
        return _render(value, _type_info(type(value)))
    return value


def record(obj: Any) -> dict[str, Any]:
    """JSON object of a state record or payload (a msgspec Struct)."""
    rendered = _render(obj, _type_info(type(obj)))
    assert isinstance(rendered, dict)
    return rendered


# --- response and request models (OpenAPI) -----------------------------------------------


class ErrorOut(BaseModel):
    code: str = Field(description="The rule broken (e.g. NonceGap) or BadRequest, NotFound, ...")
    message: str


class HeadOut(BaseModel):
    height: int
    hash: str
    total_work: str = Field(description="Cumulative proof-of-work of the head's branch (decimal)")
    timestamp: int = Field(description="Head block's timestamp [ms since the Unix epoch]")
    chain_id: str
    mempool_size: int
    peers: int
    peer_names: list[str]


class TxRefOut(BaseModel):
    txid: str
    type: str
    hex: str | None = Field(default=None, description="Canonical bytes (with ?full=true)")


class BlockOut(BaseModel):
    hash: str
    height: int
    version: int
    prev_hash: str
    tx_root: str
    state_root: str
    timestamp: int
    target: str
    nonce: int
    miner: str
    total_work: str | None
    main: bool = Field(description="On the main chain (false: a side branch)")
    confirmations: int = Field(description="Main-chain blocks from it to the head (0 off the main chain)")
    size: int = Field(description="Encoded size [bytes]")
    transactions: list[TxRefOut]


class TransactionOut(BaseModel):
    txid: str
    type: str
    sender: str | None = Field(description="Text address of the sender (none for a coinbase)")
    nonce: int
    fee: int
    payload: dict[str, Any]
    hex: str = Field(description="Canonical bytes of the whole signed transaction")


class MerkleStepOut(BaseModel):
    sibling: str
    sibling_is_left: bool


class BlockRefOut(BaseModel):
    height: int
    hash: str
    tx_root: str


class TxLookupOut(BaseModel):
    status: str = Field(description="'confirmed' (in a main-chain block) or 'pending' (in the mempool)")
    transaction: TransactionOut
    block: BlockRefOut | None = None
    position: int | None = Field(default=None, description="Index in the block (the coinbase is 0)")
    confirmations: int | None = None
    proof: list[MerkleStepOut] | None = Field(
        default=None, description="Merkle steps from the txid's leaf to the block's tx_root"
    )


class AccountOut(BaseModel):
    address: str
    balance: int
    nonce: int
    bonded: int
    unbonding: int
    pending: int = Field(description="Transactions of this sender in the mempool")
    next_nonce: int = Field(description="Nonce for this sender's next transaction (nonce + pending)")


class RecordOut(BaseModel):
    id: str
    record: dict[str, Any]


class ReadingOut(BaseModel):
    interval: int
    record: dict[str, Any]


class MeterOut(BaseModel):
    id: str
    record: dict[str, Any]
    readings: list[ReadingOut] = Field(description="Latest recorded readings, newest first")


class SenderCountOut(BaseModel):
    address: str
    count: int


class MempoolOut(BaseModel):
    size: int
    max_txs: int
    senders: int
    by_sender: list[SenderCountOut] = Field(description="Pending per sender, most first (up to ?limit)")
    lowest_fee_rate: float | None = Field(description="[base units per byte]")
    highest_fee_rate: float | None


class SubmitTxIn(BaseModel):
    tx: str = Field(max_length=MAX_BODY_HEX, description="Hex of the transaction's canonical bytes")


class PoolEventOut(BaseModel):
    kind: str
    txid: str
    rule: str
    message: str
    evicted: list[str] = Field(default_factory=list, description="Transactions it evicted")


class OrderOut(BaseModel):
    id: str
    order: dict[str, Any]
    hex: str = Field(description="Canonical bytes of the signed order")


class OrdersOut(BaseModel):
    topic: str
    orders: list[OrderOut]


class SubmitOrderIn(BaseModel):
    order: str = Field(max_length=MAX_BODY_HEX, description="Hex of the SignedOrder's canonical bytes")


class StateEntryOut(BaseModel):
    table: str
    key: str
    record: dict[str, Any] = Field(description="The entry, decoded")
    hex: str = Field(description="Canonical bytes of the entry (what the state commitment covers)")


class SendDatagramIn(BaseModel):
    first_hop: str = Field(max_length=64, description="Address (gn...) of the path's first hop")
    datagram: str = Field(max_length=MAX_BODY_HEX, description="Hex of the Datagram's canonical bytes")


class SentDatagramOut(BaseModel):
    status: str = Field(description="sent (the first hop is linked) or held (until it is)")


class ReceivedDatagramOut(BaseModel):
    pool: str
    depth: int
    originator: str
    hops: list[str] = Field(description="Relays it passed, in order (addresses)")
    body: str = Field(description="The decrypted body, hex")


class DatagramsOut(BaseModel):
    forwarded: int
    delivered: int
    held: int = Field(description="Held now for a next hop that is not linked")
    dropped: dict[str, int] = Field(description="Datagrams dropped, by the rule they broke")
    received: list[ReceivedDatagramOut] = Field(description="The latest delivered here")


class ClaimsOut(BaseModel):
    claims: list[str] = Field(
        description="Hex of each SignedClaim (one per connection); pay it with a ClaimTransit transaction"
    )


class PostOrderOut(BaseModel):
    id: str
    topic: str
    duplicate: bool = Field(description="The node already held this order (nothing gossiped)")


# --- the transaction index ---------------------------------------------------------------


class TxIndex:
    """txid -> (height, position) over the main chain, in memory.

    :meth:`sync` indexes the main-chain blocks after the last indexed height; when the
    block indexed at some height is no longer on the main chain (a reorg), it first
    forgets everything from the fork point on.
    """

    def __init__(self) -> None:
        self.hashes: list[Hash32] = []
        """Main-chain block hash per indexed height."""
        self.ids: list[list[Hash32]] = []
        """Transaction ids per indexed height, in block order."""
        self.where: dict[Hash32, tuple[int, int]] = {}

    def sync(self, chain: Chain) -> None:
        main = chain.main
        keep = min(len(self.hashes), len(main))
        while keep > 0 and main[keep - 1].hash != self.hashes[keep - 1]:
            keep -= 1
        for height in range(keep, len(self.hashes)):
            for t in self.ids[height]:
                if self.where.get(t, (-1, 0))[0] == height:
                    del self.where[t]
        del self.hashes[keep:]
        del self.ids[keep:]
        for height in range(keep, len(main)):
            block = chain.get_block(main[height].hash)
            if block is None:
                break
            ids = [tx_id(t) for t in block.txs]
            for pos, t in enumerate(ids):
                self.where[t] = (height, pos)
            self.hashes.append(main[height].hash)
            self.ids.append(ids)

    def locate(self, chain: Chain, txid: Hash32) -> tuple[int, int] | None:
        self.sync(chain)
        return self.where.get(txid)


# --- the app -----------------------------------------------------------------------------


def _tx_out(tx: Transaction, txid: Hash32 | None = None) -> TransactionOut:
    return TransactionOut(
        txid=(txid or tx_id(tx)).hex(),
        type=type(tx.payload).__name__,
        sender=address_to_text(address_digest(tx.sender)) if len(tx.sender) == PUBLIC_KEY_BYTES else None,
        nonce=tx.nonce,
        fee=tx.fee,
        payload=record(tx.payload),
        hex=encode(tx).hex(),
    )


def _block_out(
    chain: Chain, entry: BlockEntry | None, block: Block, block_hash: Hash32, full: bool
) -> BlockOut:
    h = block.header
    main = entry is not None and chain.is_main(entry)
    return BlockOut(
        hash=block_hash.hex(),
        height=h.height,
        version=h.version,
        prev_hash=h.prev_hash.hex(),
        tx_root=h.tx_root.hex(),
        state_root=h.state_root.hex(),
        timestamp=h.timestamp,
        target=h.target.hex(),
        nonce=h.nonce,
        miner=address_to_text(h.miner),
        total_work=str(entry.total_work) if entry is not None else None,
        main=main,
        confirmations=chain.height - h.height + 1 if main else 0,
        size=len(encode(block)),
        transactions=[
            TxRefOut(
                txid=tx_id(t).hex(), type=type(t.payload).__name__, hex=encode(t).hex() if full else None
            )
            for t in block.txs
        ],
    )


def create_app(
    node: Node,
    *,
    clock: Callable[[], int],
    broadcast: Callable[[list[Outgoing]], None],
    relay: RelayPeer | None = None,
) -> FastAPI:
    """The HTTP API of ``node``; ``clock()`` is now [ms], ``broadcast`` sends gossip;
    ``relay``: the participant of the node's key (with it, the datagram routes)."""
    app = FastAPI(
        title="GRIDNET node API",
        version=__version__,
        description=(
            "Read the chain, its state, the mempool and market orders; submit transactions "
            "and orders. Addresses in gn... text form, hashes and bytes in hex, amounts in "
            "base units. Errors: {code, message}."
        ),
        responses={
            400: {"model": ErrorOut, "description": "Malformed input"},
            404: {"model": ErrorOut, "description": "Unknown object"},
            422: {"model": ErrorOut, "description": "Refused by a rule (code names it)"},
            500: {"model": ErrorOut, "description": "Unexpected failure (code InternalError)"},
        },
    )
    index = TxIndex()
    app.state.node = node
    app.state.tx_index = index

    # --- error handlers: always {"code", "message"}, never a page or a traceback ---------

    @app.exception_handler(ApiError)
    async def _api_error(request: Request, exc: ApiError) -> JSONResponse:
        return _error(exc.status, exc.code, exc.message)

    @app.exception_handler(GridnetError)
    async def _gridnet_error(request: Request, exc: GridnetError) -> JSONResponse:
        return _error(_status_of(exc), exc.rule, str(exc))

    @app.exception_handler(RequestValidationError)
    async def _validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = exc.errors()
        if not errors:
            return _error(400, "BadRequest", "invalid request")
        first = errors[0]
        where = ".".join(str(p) for p in first.get("loc", ()))
        return _error(400, "BadRequest", f"{where}: {first.get('msg', 'invalid')}")

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = {404: "NotFound", 405: "MethodNotAllowed"}.get(exc.status_code, "HTTPError")
        message = str(exc.detail) if exc.status_code != 404 else f"no such endpoint: {request.url.path}"
        return _error(exc.status_code, code, message)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        # The server logs the traceback (Starlette re-raises after this response).
        return _error(500, "InternalError", f"internal error ({type(exc).__name__}); see the node's log")

    # --- chain ---------------------------------------------------------------------------

    @app.get("/head", response_model=HeadOut, summary="The main chain's head")
    async def head() -> HeadOut:
        chain = node.chain
        entry = chain.head
        return HeadOut(
            height=entry.height,
            hash=entry.hash.hex(),
            total_work=str(entry.total_work),
            timestamp=entry.header.timestamp,
            chain_id=chain.chain_id.hex(),
            mempool_size=len(node.mempool),
            peers=len(node.peers),
            peer_names=list(node.peers),
        )

    @app.get(
        "/blocks/{ref}",
        response_model=BlockOut,
        response_model_exclude_none=True,
        summary="A block by main-chain height or by hash",
    )
    async def get_block(
        ref: str,
        full: bool = Query(False, description="Include each transaction's canonical bytes (hex)"),
    ) -> BlockOut:
        chain = node.chain
        if ref.isdigit() and len(ref) < 2 * HASH_BYTES:
            height = int(ref)
            if height > chain.height:
                raise _not_found(f"no block at height {height} (the head is at {chain.height})")
            entry: BlockEntry | None = chain.main[height]
            assert entry is not None
            block_hash = entry.hash
        elif len(ref) == 2 * HASH_BYTES:
            block_hash = _hex(ref, "block hash", HASH_BYTES)
            entry = chain.entries.get(block_hash)
        else:
            raise _bad_request(f"block reference {ref[:80]!r} is neither a height nor a 64-hex-digit hash")
        block = chain.get_block(block_hash)
        if block is None:
            raise _not_found(f"no block {block_hash.hex()}")
        return _block_out(chain, entry, block, block_hash, full)

    @app.get(
        "/transactions/{txid}",
        response_model=TxLookupOut,
        response_model_exclude_none=True,
        summary="A transaction by id, with its Merkle inclusion proof",
    )
    async def get_transaction(txid: str) -> TxLookupOut:
        tid = _hex(txid, "transaction id", HASH_BYTES)
        pending = node.mempool.by_id.get(tid)
        if pending is not None:
            return TxLookupOut(status="pending", transaction=_tx_out(pending.tx, tid))
        chain = node.chain
        found = index.locate(chain, tid)
        block = chain.block_at(found[0]) if found is not None else None
        if found is None or block is None:
            raise _not_found(f"transaction {txid} is neither in the main chain nor pending")
        height, pos = found
        ids = index.ids[height]
        return TxLookupOut(
            status="confirmed",
            transaction=_tx_out(block.txs[pos], tid),
            block=BlockRefOut(
                height=height, hash=index.hashes[height].hex(), tx_root=block.header.tx_root.hex()
            ),
            position=pos,
            confirmations=chain.height - height + 1,
            proof=[
                MerkleStepOut(sibling=s.sibling.hex(), sibling_is_left=s.sibling_is_left)
                for s in merkle_proof(ids, pos)
            ],
        )

    # --- state ---------------------------------------------------------------------------

    @app.get(
        "/accounts/{address}", response_model=AccountOut, summary="An account (zero if it never held coin)"
    )
    async def get_account(address: str) -> AccountOut:
        addr = _address(address)
        acct = node.chain.account(addr)
        pending = len(node.mempool.by_sender.get(addr, {}))
        return AccountOut(
            address=address_to_text(addr),
            balance=acct.balance,
            nonce=acct.nonce,
            bonded=acct.bonded,
            unbonding=acct.unbonding,
            pending=pending,
            next_nonce=acct.nonce + pending,
        )

    @app.get("/identities/{address}", response_model=RecordOut, summary="A registered identity")
    async def get_identity(address: str) -> RecordOut:
        addr = _address(address)
        identity = node.chain.view().get(IDENTITIES, addr)
        if identity is None:
            raise _not_found(f"no identity registered for {address_to_text(addr)}")
        return RecordOut(id=address_to_text(addr), record=record(identity))

    @app.get("/meters/{meter}", response_model=MeterOut, summary="A meter and its latest readings")
    async def get_meter(
        meter: str,
        readings: int = Query(DEFAULT_READINGS, ge=0, le=MAX_READINGS, description="Readings to return"),
    ) -> MeterOut:
        mid = _address(meter)
        view = node.chain.view()
        rec = view.get(METERS, mid)
        if rec is None:
            raise _not_found(f"no meter {address_to_text(mid)} is registered")
        latest: list[ReadingOut] = []
        if rec.has_reading:
            interval = rec.last_interval
            stop = max(-1, rec.last_interval - READING_SCAN)
            while interval > stop and len(latest) < readings:
                r = view.get(READINGS, reading_key(mid, interval))
                if r is not None:
                    latest.append(ReadingOut(interval=interval, record=record(r)))
                interval -= 1
        return MeterOut(id=address_to_text(mid), record=record(rec), readings=latest)

    @app.get("/contracts/{contract_id}", response_model=RecordOut, summary="An energy contract and its state")
    async def get_contract(contract_id: str) -> RecordOut:
        cid = _hex(contract_id, "contract id", HASH_BYTES)
        rec = node.chain.view().get(CONTRACTS, cid)
        if rec is None:
            raise _not_found(f"no contract {contract_id}")
        return RecordOut(id=cid.hex(), record=record(rec))

    @app.get("/pools/{pool_id}", response_model=RecordOut, summary="A relay token pool")
    async def get_pool(pool_id: str) -> RecordOut:
        pid = _hex(pool_id, "pool id", HASH_BYTES)
        rec = node.chain.view().get(POOLS, pid)
        if rec is None:
            raise _not_found(f"no token pool {pool_id} (never created, or reclaimed)")
        return RecordOut(id=pid.hex(), record=record(rec))

    @app.get(
        "/state/{table}/{key}",
        response_model=StateEntryOut,
        summary="Any state entry by table name and key (for clients that read the state directly)",
    )
    async def get_state(table: str, key: str) -> StateEntryOut:
        t = table_named(table)
        if t is None:
            raise _not_found(f"no state table named {table!r}")
        k = _hex(key, "key")
        if len(k) > MAX_STATE_KEY_BYTES:
            raise _bad_request(f"a state key has at most {MAX_STATE_KEY_BYTES} bytes")
        raw = node.chain.values.get(t.key(k))
        if raw is None:
            raise _not_found(f"no {table} entry {key}")
        return StateEntryOut(
            table=t.name, key=k.hex(), record=record(decode(raw, t.value_type)), hex=raw.hex()
        )

    # --- mempool and submission ----------------------------------------------------------

    @app.get("/mempool", response_model=MempoolOut, summary="Pending transactions in summary")
    async def get_mempool(
        limit: int = Query(100, ge=0, le=10_000, description="Senders listed in by_sender"),
    ) -> MempoolOut:
        pool = node.mempool
        counts = sorted(((len(q), s) for s, q in pool.by_sender.items()), key=lambda c: (-c[0], c[1]))
        rates = [fee_rate(v) for v in pool.by_id.values()]
        return MempoolOut(
            size=len(pool),
            max_txs=pool.max_txs,
            senders=len(counts),
            by_sender=[SenderCountOut(address=address_to_text(s), count=n) for n, s in counts[:limit]],
            lowest_fee_rate=min(rates) if rates else None,
            highest_fee_rate=max(rates) if rates else None,
        )

    @app.post(
        "/transactions",
        response_model=PoolEventOut,
        status_code=202,
        summary="Submit a signed transaction (admitted to the mempool and gossiped)",
    )
    async def submit_transaction(body: SubmitTxIn) -> PoolEventOut:
        tx = decode(_hex(body.tx.strip(), "tx"), Transaction, what="transaction")  # DecodeError: 400
        events, outgoing = node.submit_tx(tx, clock())
        if outgoing:
            broadcast(outgoing)
        outcome = events[0]
        if outcome.kind is not EventKind.ACCEPTED:
            raise ApiError(422, outcome.rule or "Rejected", outcome.message or "transaction refused")
        return PoolEventOut(
            kind=outcome.kind.value,
            txid=outcome.txid.hex(),
            rule=outcome.rule,
            message=outcome.message,
            evicted=[e.txid.hex() for e in events[1:] if e.kind is EventKind.EVICTED],
        )

    # --- market orders -------------------------------------------------------------------

    @app.get("/orders/{area}/{interval}", response_model=OrdersOut, summary="Orders on a market topic")
    async def get_orders(area: str, interval: int) -> OrdersOut:
        if not 1 <= len(area) <= AREA_MAX_CHARS:
            raise _bad_request(f"an area has 1 to {AREA_MAX_CHARS} characters")
        if interval < 0:
            raise _bad_request("an interval is a non-negative integer")
        name = topic(area, interval)
        book = node.orders.get(name, {})
        return OrdersOut(
            topic=name,
            orders=[
                OrderOut(id=oid.hex(), order=record(s.order), hex=encode(s).hex()) for oid, s in book.items()
            ],
        )

    @app.post(
        "/orders",
        response_model=PostOrderOut,
        status_code=202,
        summary="Post a signed bid or offer on its topic (checked and gossiped)",
    )
    async def post_order(body: SubmitOrderIn) -> PostOrderOut:
        signed = decode(_hex(body.order.strip(), "order"), SignedOrder, what="order")
        name = topic(signed.order.area, signed.order.interval)
        oid = order_id(signed)
        known = oid in node.orders.get(name, {})
        outgoing = node.post_order(signed, clock())  # raises the InvalidOrder rule: 422
        if outgoing:
            broadcast(outgoing)
        return PostOrderOut(id=oid.hex(), topic=name, duplicate=known)

    if relay is not None:
        _datagram_routes(app, relay, broadcast)
    return app


def _datagram_routes(app: FastAPI, relay: RelayPeer, broadcast: Callable[[list[Outgoing]], None]) -> None:
    """Datagrams as the participant of the node's key: originate, read deliveries, claim."""

    @app.post(
        "/datagrams",
        response_model=SentDatagramOut,
        status_code=202,
        summary="Send a datagram (built and signed by its originator) to its first hop",
    )
    async def send_datagram(body: SendDatagramIn) -> SentDatagramOut:
        hop = _address(body.first_hop)
        datagram = decode(_hex(body.datagram.strip(), "datagram"), Datagram, what="datagram")
        dropped = dict(relay.stats.dropped)
        outgoing = relay.send(hop, datagram)
        if outgoing:
            broadcast(outgoing)
            return SentDatagramOut(status="sent")
        if relay.stats.dropped[CarrierFull.__name__] > dropped.get(CarrierFull.__name__, 0):
            raise ApiError(422, CarrierFull.__name__, "too many datagrams held for absent hops")
        if relay.stats.dropped[UnknownNextHop.__name__] > dropped.get(UnknownNextHop.__name__, 0):
            raise ApiError(422, UnknownNextHop.__name__, "the first hop is this node itself")
        return SentDatagramOut(status="held")

    @app.get("/datagrams", response_model=DatagramsOut, summary="Datagrams relayed and delivered here")
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
                    hops=[address_to_text(address_from_public_key(h.body.hop_key)) for h in d.datagram.hops],
                    body=d.envelope.body.hex(),
                )
                for d in latest
            ],
        )

    @app.post(
        "/datagrams/claims",
        response_model=ClaimsOut,
        summary="End the connections delivered here: a signed transit claim for each",
    )
    async def close_connections() -> ClaimsOut:
        return ClaimsOut(claims=[encode(c).hex() for c in relay.close_connections()])

    @app.get(
        "/datagrams/claims",
        response_model=ClaimsOut,
        summary="The latest transit claims signed here (the last 1,000), oldest first",
    )
    async def get_claims() -> ClaimsOut:
        return ClaimsOut(claims=[encode(c).hex() for c in relay.claims])
