"""The node's HTTP API: the app, its error handlers, and the chain, state, mempool and
order routes."""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, ClassVar

from fastapi import Depends, FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute
from starlette.exceptions import HTTPException as StarletteHTTPException

from gridnet import __version__
from gridnet.crypto.address import address_to_text
from gridnet.crypto.hashing import address_digest
from gridnet.encoding import area_problem, decode, encode
from gridnet.errors import GridnetError
from gridnet.grid.commands import SignedCommand
from gridnet.ledger.blocks import Block
from gridnet.ledger.chain import BlockEntry, Chain
from gridnet.ledger.mempool import EventKind, fee_rate
from gridnet.ledger.merkle import merkle_proof
from gridnet.ledger.params import CONSENSUS_KINDS
from gridnet.ledger.state import IDENTITIES, table_named
from gridnet.ledger.store import STORE_ERRORS
from gridnet.ledger.transactions import Transaction, tx_id
from gridnet.ledger.txs.aggregator import aggregator_figures, record_figures
from gridnet.ledger.txs.contract import CONTRACTS
from gridnet.ledger.txs.credit import bank_figures
from gridnet.ledger.txs.helios import CONTROLLERS, controller_id, credits_of
from gridnet.ledger.txs.identity import REVOKED
from gridnet.ledger.txs.meter import METERS, READINGS, reading_key
from gridnet.ledger.txs.relay import POOLS
from gridnet.ledger.txs.vehicle import deal_figures, hotspot_figures
from gridnet.market.orders import SignedOrder, order_id, topic
from gridnet.node.api.common import (
    BODY_LIMITS,
    DEFAULT_LOST_PAGE,
    DEFAULT_ORDERS_PAGE,
    DEFAULT_READINGS,
    HTTP_CODES,
    LOST_PAGE_BYTES,
    MAX_BODY_BYTES,
    MAX_LOST_PAGE,
    MAX_ORDERS_PAGE,
    MAX_QUERY_INT,
    MAX_READINGS,
    MAX_STATE_KEY_BYTES,
    READING_SCAN,
    REGISTRANT_HELP,
    ApiError,
    bad_request,
    bearer_auth,
    error_response,
    exact_routes,
    not_found,
    parse_address,
    parse_hex,
    parse_number,
    parse_registrant,
    record,
    shown,
    status_of,
    store_unavailable,
)
from gridnet.node.api.datagrams import datagram_routes
from gridnet.node.api.docs import docs_routes
from gridnet.node.api.guard import HeadAsGet, RequestGuard
from gridnet.node.api.models import (
    AccountOut,
    BlockOut,
    BlockRefOut,
    CommandOut,
    CommandsOut,
    CreditBankOut,
    CreditsOut,
    ErrorOut,
    HeadOut,
    LostOut,
    LostTxOut,
    MempoolOut,
    MerkleStepOut,
    MeterOut,
    OrderOut,
    OrdersOut,
    ParamsOut,
    PoolEventOut,
    PostCommandOut,
    PostOrderOut,
    ReadingOut,
    RecordOut,
    SenderCountOut,
    StateEntryOut,
    SubmitCommandIn,
    SubmitOrderIn,
    SubmitTxIn,
    TransactionOut,
    TxLookupOut,
    TxRefOut,
)
from gridnet.node.api.ops import ops_routes
from gridnet.node.client import INDEX_BUILDING
from gridnet.node.node import Node, Outgoing
from gridnet.node.relay_peer import RelayPeer
from gridnet.units import HASH_BYTES, PUBLIC_KEY_BYTES, Hash32, is_decimal

# --- the transaction index ---------------------------------------------------------------

if TYPE_CHECKING:
    from gridnet.net.tcp import TcpTransport


class TxIndex:
    """txid -> (height, position) over the main chain, in memory.

    Indexing a block reads and decodes it and hashes its transactions (~75 ms per MB), so a
    whole chain is never indexed in one go inside the node's event loop (a 1 GB chain stalled
    it for over a minute: peers timed out, /health did not answer). A lookup indexes the
    blocks it lacks for at most ``INLINE_S``; if more are left, a task indexes them in slices
    of ``SLICE_S``, yielding to the loop between slices, and the lookup is answered 503
    ``IndexBuilding`` with the progress. When the block indexed at some height is no longer on
    the main chain (a reorg), everything from the fork point on is forgotten first.
    """

    INLINE_S: ClassVar[float] = 0.02
    """Time a lookup may spend indexing new blocks itself [s]."""
    SLICE_S: ClassVar[float] = 0.005
    """Time the building task indexes before it yields to the event loop [s]."""

    def __init__(self) -> None:
        self.hashes: list[Hash32] = []
        """Main-chain block hash per indexed height."""
        self.ids: list[list[Hash32]] = []
        """Transaction ids per indexed height, in block order."""
        self.where: dict[Hash32, tuple[int, int]] = {}
        self._building: asyncio.Task[None] | None = None

    def _forget_forked(self, chain: Chain) -> None:
        """Forget the heights whose indexed block is no longer the main chain's."""
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

    def advance(self, chain: Chain, seconds: float | None = None) -> bool:
        """Index main-chain blocks after the last indexed height, for about ``seconds`` (None:
        until the head); whether the index reaches the head."""
        self._forget_forked(chain)
        main = chain.main
        deadline = None if seconds is None else time.perf_counter() + seconds
        while len(self.hashes) < len(main):
            height = len(self.hashes)
            block = chain.get_block(main[height].hash)
            if block is None:
                return True  # (a block not stored: nothing beyond it can be indexed now)
            ids = [tx_id(t) for t in block.txs]
            for pos, t in enumerate(ids):
                self.where[t] = (height, pos)
            self.hashes.append(main[height].hash)
            self.ids.append(ids)
            if deadline is not None and time.perf_counter() >= deadline:
                return len(self.hashes) >= len(main)
        return True

    def sync(self, chain: Chain) -> None:
        """Index every main-chain block not indexed yet, at once (outside a serving loop)."""
        self.advance(chain)

    async def build(self, chain: Chain) -> None:
        """Index up to the head in slices, yielding to the event loop between them."""
        while not self.advance(chain, self.SLICE_S):
            await asyncio.sleep(0)

    def locate(self, chain: Chain, txid: Hash32) -> tuple[int, int] | None:
        """Where ``txid`` is in the main chain (None: not there); ``ApiError`` 503 while the
        index is still being built (the building then goes on in the background)."""
        task = self._building
        if task is not None and task.done() and not task.cancelled():
            task.exception()  # (retrieved: a store error shows again in this lookup's own answer)
        building = task is not None and not task.done()
        if not building and self.advance(chain, self.INLINE_S):
            return self.where.get(txid)
        if not building:
            self._building = asyncio.get_running_loop().create_task(self.build(chain))
        raise ApiError(
            503,
            INDEX_BUILDING,
            f"the transaction index is being built ({len(self.hashes)} of {len(chain.main)} blocks "
            "indexed); try again in a moment",
        )


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
    token: str | None = None,
    transport: TcpTransport | None = None,
) -> FastAPI:
    """The HTTP API of ``node``; ``clock()`` is now [ms], ``broadcast`` sends gossip;
    ``relay``: the participant of the node's key (with it, the datagram routes); ``token``:
    the bearer token the endpoints that change the node's state or make it sign require
    (None: no token, for an app that only a test reaches); ``transport``: the node's links
    (for /peers, /status and /health)."""
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
        docs_url=None,  # /docs is served from the package's own assets (docs.py), never a CDN
        redoc_url=None,
    )
    docs_routes(app)
    ops_routes(app, node, transport)
    authorized = [Depends(bearer_auth(token))]
    index = TxIndex()
    app.state.node = node
    app.state.tx_index = index

    # --- error handlers: always {"code", "message"}, never a page or a traceback ---------

    @app.exception_handler(ApiError)
    async def _api_error(request: Request, exc: ApiError) -> JSONResponse:
        return error_response(exc.status, exc.code, exc.message)

    @app.exception_handler(GridnetError)
    async def _gridnet_error(request: Request, exc: GridnetError) -> JSONResponse:
        return error_response(status_of(exc), exc.rule, str(exc))

    @app.exception_handler(RequestValidationError)
    async def _validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = exc.errors()
        if not errors:
            return error_response(400, "BadRequest", "invalid request")
        first = errors[0]
        where = ".".join(str(p) for p in first.get("loc", ()))
        return error_response(400, "BadRequest", f"{where}: {first.get('msg', 'invalid')}")

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = HTTP_CODES.get(exc.status_code, "HTTPError")
        message = (
            str(exc.detail)
            if exc.status_code != 404
            else f"no such endpoint: {shown(request.scope.get('path', ''))}"  # (url.path drops newlines)
        )
        return error_response(exc.status_code, code, message)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        # The server logs the traceback (Starlette re-raises after this response).
        return error_response(
            500, "InternalError", f"internal error ({type(exc).__name__}); see the node's log"
        )

    # --- chain ---------------------------------------------------------------------------

    @app.get("/head", response_model=HeadOut, summary="The main chain's head")
    async def head() -> HeadOut:
        chain = node.chain
        entry = chain.head
        justified, final = chain.justified(), chain.finalized()
        return HeadOut(
            height=entry.height,
            hash=entry.hash.hex(),
            total_work=str(entry.total_work),
            timestamp=entry.header.timestamp,
            chain_id=chain.chain_id.hex(),
            mempool_size=len(node.mempool),
            peers=len(node.peers),
            peer_names=list(node.peers),
            consensus=CONSENSUS_KINDS[chain.params.consensus],
            justified_height=None if justified is None else justified.height,
            finalized_height=None if final is None else final.height,
            finalized_hash=None if final is None else final.hash.hex(),
            justified_slot=None if justified is None else justified.slot,
            finalized_slot=None if final is None else final.slot,
        )

    @app.get("/params", response_model=ParamsOut, summary="The chain's consensus parameters (its genesis)")
    async def get_params() -> ParamsOut:
        params = node.chain.params
        return ParamsOut(chain_id=node.chain.chain_id.hex(), record=record(params), hex=encode(params).hex())

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
        if is_decimal(ref) and len(ref) < 2 * HASH_BYTES:
            height = parse_number(ref, "block height")  # (2^63 or more: 400, as the docs say)
            if height > chain.height:
                raise not_found(f"no block at height {height} (the head is at {chain.height})")
            entry: BlockEntry | None = chain.main[height]
            assert entry is not None
            block_hash = entry.hash
        elif len(ref) == 2 * HASH_BYTES:
            block_hash = parse_hex(ref, "block hash", HASH_BYTES)
            entry = chain.entries.get(block_hash)
        else:
            raise bad_request(f"block reference {shown(ref)} is neither a height nor a 64-hex-digit hash")
        block = chain.get_block(block_hash)
        if block is None:
            raise not_found(f"no block {block_hash.hex()}")
        return _block_out(chain, entry, block, block_hash, full)

    @app.get(
        "/transactions/{txid}",
        response_model=TxLookupOut,
        response_model_exclude_none=True,
        summary="A transaction by id, with its Merkle inclusion proof",
    )
    async def get_transaction(txid: str) -> TxLookupOut:
        tid = parse_hex(txid, "transaction id", HASH_BYTES)
        pending = node.mempool.by_id.get(tid)
        if pending is not None:
            return TxLookupOut(status="pending", transaction=_tx_out(pending.tx, tid))
        chain = node.chain
        found = index.locate(chain, tid)
        block = chain.block_at(found[0]) if found is not None else None
        if found is None or block is None:
            raise not_found(f"transaction {txid} is neither in the main chain nor pending")
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
        addr = parse_address(address)
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

    @app.get(
        "/credits/{controller:name}",
        response_model=CreditsOut,
        summary="A Helios controller's credits: supply, and a holder's balance (?holder=ADDRESS)",
    )
    async def get_credits(
        controller: str,
        registrant: str = Query(description=REGISTRANT_HELP),
        holder: str | None = Query(None, description="An address whose balance to return"),
    ) -> CreditsOut:
        key = parse_registrant(registrant)  # (a bad query is 400, as for banks)
        addr = None if holder is None else parse_address(holder)
        cid = controller_id(key, controller)
        view = node.chain.view()
        found = view.get(CONTROLLERS, cid)
        if found is None:
            raise not_found(f"no Helios controller named {shown(controller)} is registered by {registrant}")
        return CreditsOut(
            controller=found.name,
            id=cid.hex(),
            members=[k.hex() for k in found.members],
            threshold=found.threshold,
            minted_wh=found.minted_wh,
            redeemed_wh=found.redeemed_wh,
            supply=found.supply,
            defaults=found.defaults,
            holder=None if addr is None else address_to_text(addr),
            balance=None if addr is None else credits_of(view, cid, addr),
        )

    @app.get(
        "/credit-banks/{name:name}",
        response_model=CreditBankOut,
        summary="A credit bank's criteria and books; with ?borrower=ADDRESS its credit value and loan",
    )
    async def get_credit_bank(
        name: str,
        registrant: str = Query(description=REGISTRANT_HELP),
        borrower: str | None = Query(None, description="An address whose credit to return"),
    ) -> CreditBankOut:
        key = parse_registrant(registrant)
        addr = None if borrower is None else parse_address(borrower)
        figures = bank_figures(node.chain.view(), key, name, addr)
        if figures is None:
            raise not_found(f"no credit bank named {shown(name)} is registered by {registrant}")
        return CreditBankOut(**figures)

    @app.get(
        "/aggregators/{name:name}", summary="A consortium of energy aggregators: its members, fee and books"
    )
    async def get_aggregators(
        name: str, registrant: str = Query(description=REGISTRANT_HELP)
    ) -> dict[str, Any]:
        figures = aggregator_figures(node.chain.view(), parse_registrant(registrant), name)
        if figures is None:
            raise not_found(f"no consortium of aggregators named {shown(name)} is registered by {registrant}")
        return figures

    @app.get("/trade-records/{tid}", summary="An aggregators' trade record by its TID (the seed's fields)")
    async def get_trade_record(tid: str) -> dict[str, Any]:
        figures = record_figures(node.chain.view(), parse_hex(tid, "a TID", 32))
        if figures is None:
            raise not_found(f"no trade record {tid[:16]} is on chain")
        return figures

    @app.get("/ev-hotspots/{name:name}", summary="A vehicle-to-vehicle charging hotspot: its terms and books")
    async def get_ev_hotspot(
        name: str, registrant: str = Query(description=REGISTRANT_HELP)
    ) -> dict[str, Any]:
        figures = hotspot_figures(node.chain.view(), parse_registrant(registrant), name)
        if figures is None:
            raise not_found(f"no charging hotspot named {shown(name)} is registered by {registrant}")
        return figures

    @app.get("/ev-deals/{deal}", summary="A vehicle-to-vehicle deal by its id (the seed's record fields)")
    async def get_ev_deal(deal: str) -> dict[str, Any]:
        figures = deal_figures(node.chain.view(), parse_hex(deal, "a deal id", 32))
        if figures is None:
            raise not_found(f"no vehicle-to-vehicle deal {deal[:16]} is on chain")
        return figures

    @app.get("/identities/{address}", response_model=RecordOut, summary="A registered identity")
    async def get_identity(address: str) -> RecordOut:
        addr = parse_address(address)
        view = node.chain.view()
        identity = view.get(IDENTITIES, addr)
        if identity is None:
            revoked = view.get(REVOKED, addr)
            if revoked is not None:
                raise not_found(
                    f"the identity of {address_to_text(addr)} was revoked at height {revoked.revoked_at} "
                    "(a proven fraud); the address can never register again"
                )
            raise not_found(f"no identity registered for {address_to_text(addr)}")
        return RecordOut(id=address_to_text(addr), record=record(identity))

    @app.get("/meters/{meter}", response_model=MeterOut, summary="A meter and its latest readings")
    async def get_meter(
        meter: str,
        readings: int = Query(DEFAULT_READINGS, ge=0, le=MAX_READINGS, description="Readings to return"),
    ) -> MeterOut:
        mid = parse_address(meter)
        view = node.chain.view()
        rec = view.get(METERS, mid)
        if rec is None:
            raise not_found(f"no meter {address_to_text(mid)} is registered")
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
        cid = parse_hex(contract_id, "contract id", HASH_BYTES)
        rec = node.chain.view().get(CONTRACTS, cid)
        if rec is None:
            raise not_found(f"no contract {contract_id}")
        return RecordOut(id=cid.hex(), record=record(rec))

    @app.get("/pools/{pool_id}", response_model=RecordOut, summary="A relay token pool")
    async def get_pool(pool_id: str) -> RecordOut:
        pid = parse_hex(pool_id, "pool id", HASH_BYTES)
        rec = node.chain.view().get(POOLS, pid)
        if rec is None:
            raise not_found(f"no token pool {pool_id} (never created, or reclaimed)")
        return RecordOut(id=pid.hex(), record=record(rec))

    @app.get(
        "/state/{table}/{key}",
        response_model=StateEntryOut,
        summary="Any state entry by table name and key (for clients that read the state directly)",
    )
    async def get_state(table: str, key: str) -> StateEntryOut:
        t = table_named(table)
        if t is None:
            raise not_found(f"no state table named {shown(table)}")
        k = parse_hex(key, "key")
        if len(k) > MAX_STATE_KEY_BYTES:
            raise bad_request(f"a state key has at most {MAX_STATE_KEY_BYTES} bytes")
        raw = node.chain.values.get(t.key(k))
        if raw is None:
            raise not_found(f"no {table} entry {shown(key)}")
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

    @app.get(
        "/mempool/lost",
        response_model=LostOut,
        summary="Transactions the mempool let go without a block (evicted, dropped), oldest first",
    )
    async def get_lost(
        after: int = Query(0, ge=0, le=MAX_QUERY_INT, description="Return only those numbered after this"),
        limit: int = Query(DEFAULT_LOST_PAGE, ge=1, le=MAX_LOST_PAGE, description="At most this many"),
    ) -> LostOut:
        log = node.lost
        page = log.since(after, limit, LOST_PAGE_BYTES)
        return LostOut(
            lost=[
                LostTxOut(
                    seq=n,
                    kind=e.kind.value,
                    txid=e.txid.hex(),
                    sender=address_to_text(e.sender) if e.sender is not None else "",
                    rule=e.rule,
                    message=e.message,
                    hex=encode(e.tx).hex() if e.tx is not None else "",
                )
                for n, e in page
            ],
            next_after=page[-1][0] if page else log.total,  # (numbers restart with the node)
            more=bool(page) and page[-1][0] < log.total,
            first_kept=log.first_kept,
        )

    @app.post(
        "/transactions",
        response_model=PoolEventOut,
        status_code=202,
        dependencies=authorized,
        summary="Submit a signed transaction (admitted to the mempool and gossiped)",
    )
    async def submit_transaction(body: SubmitTxIn) -> PoolEventOut:
        tx = decode(parse_hex(body.tx.strip(), "tx"), Transaction, what="transaction")  # DecodeError: 400
        failure = None if transport is None else transport.store_failure
        if failure is not None:
            raise store_unavailable(failure.reason)
        try:
            events, outgoing = node.submit_tx(tx, clock())
        except STORE_ERRORS as exc:  # not taken: the node writes a user's transaction first
            if transport is not None:
                transport.store_failed(exc)
            raise store_unavailable(str(exc)) from None
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

    @app.get(
        "/orders/{area}/{interval}",
        response_model=OrdersOut,
        summary="Orders on a market topic, a page at a time (in the order the node took them)",
    )
    async def get_orders(
        area: str,
        interval: str,
        offset: int = Query(0, ge=0, le=MAX_QUERY_INT, description="Orders of the topic to skip"),
        limit: int = Query(DEFAULT_ORDERS_PAGE, ge=1, le=MAX_ORDERS_PAGE, description="Orders to return"),
    ) -> OrdersOut:
        if (problem := area_problem(area)) is not None:
            raise bad_request(f"{shown(area)}: {problem}")
        name = topic(area, parse_number(interval, "interval"))
        held = node.book.topic_orders(name)
        start = min(offset, len(held))  # (an offset past the end is an empty page)
        page = list(itertools.islice(held.items(), start, start + limit))
        end = start + len(page)
        return OrdersOut(
            topic=name,
            total=len(held),
            offset=offset,
            next_offset=end if end < len(held) else None,
            orders=[OrderOut(id=oid.hex(), order=record(s.order), hex=encode(s).hex()) for oid, s in page],
        )

    @app.post(
        "/orders",
        response_model=PostOrderOut,
        status_code=202,
        dependencies=authorized,
        summary="Post a signed bid or offer on its topic (checked and gossiped)",
    )
    async def post_order(body: SubmitOrderIn) -> PostOrderOut:
        signed = decode(parse_hex(body.order.strip(), "order"), SignedOrder, what="order")
        name = topic(signed.order.area, signed.order.interval)
        oid = order_id(signed)
        known = oid in node.book
        outgoing = node.post_order(signed, clock())  # raises the InvalidOrder / OrderRefused rule: 422
        if outgoing:
            broadcast(outgoing)
        return PostOrderOut(id=oid.hex(), topic=name, duplicate=known)

    # --- DSO commands ----------------------------------------------------------------------

    @app.get(
        "/commands/{area}",
        response_model=CommandsOut,
        summary="DSO commands posted here for an area's devices, newer than a sequence number",
    )
    async def get_commands(
        area: str,
        after: int = Query(
            0, ge=0, le=MAX_QUERY_INT, description="Return only commands after this sequence number"
        ),
    ) -> CommandsOut:
        if (problem := area_problem(area)) is not None:
            raise bad_request(f"{shown(area)}: {problem}")
        held, next_after = node.commands.since(area, after)
        return CommandsOut(
            area=area,
            commands=[CommandOut(seq=seq, command=record(c.command), hex=encode(c).hex()) for seq, c in held],
            next_after=next_after,
        )

    @app.post(
        "/commands",
        response_model=PostCommandOut,
        status_code=202,
        dependencies=authorized,
        summary="Post a signed DSO command for its area's devices (kept if a DSO authority signed it)",
    )
    async def post_command(body: SubmitCommandIn) -> PostCommandOut:
        signed = decode(parse_hex(body.command.strip(), "command"), SignedCommand, what="command")
        if (problem := area_problem(signed.command.area)) is not None:  # (devices could not read it back)
            raise bad_request(f"the command's area {shown(signed.command.area)}: {problem}")
        seq, known = node.post_command(signed)  # raises CommandSignatureInvalid / NotAuthorized: 422
        return PostCommandOut(seq=seq, duplicate=known)

    if relay is not None:
        datagram_routes(app, relay, broadcast, authorized)
    routes = [r for r in app.routes if isinstance(r, APIRoute)]
    protected = [r for r in routes if authorized[0] in r.dependencies]
    body_limits = [
        (r, BODY_LIMITS[r.path]) for r in routes if r.path in BODY_LIMITS and "POST" in (r.methods or ())
    ]
    app.add_middleware(
        RequestGuard, token=token, protected=protected, max_body=MAX_BODY_BYTES, body_limits=body_limits
    )
    app.add_middleware(HeadAsGet)
    exact_routes(app)
    return app
