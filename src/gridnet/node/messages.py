"""Peer-to-peer messages and their canonical encoding (one tagged union)."""

from __future__ import annotations

from typing import Annotated, Final

import msgspec

from gridnet.encoding import U32, U63, HashBytes, PublicKeyBytes, Wire, decode, encode
from gridnet.ledger.blocks import Block, Header, SignedVote
from gridnet.ledger.transactions import Transaction
from gridnet.market.orders import SignedOrder
from gridnet.relay.datagram import Datagram

MAX_MESSAGE_BYTES: Final = 4 * 1024 * 1024
MAX_HEADERS: Final = 2000
"""Headers one HeadersMsg may carry."""
MAX_INVENTORY: Final = 4096
"""Ids one HaveMsg or WantMsg may carry, of each kind."""
MAX_LOCATOR: Final = 64
"""Hashes one locator may carry (ours have about 10 + log2(height))."""
MAX_TXS: Final = 4096
"""Transactions one TxsMsg may carry (a node batches ``tx_batch``, 256 by default)."""
MAX_BLOCKS: Final = 1024
"""Blocks one BlocksMsg may carry (a node answers ``blocks_per_request``, 64 by default)."""
WORK_BYTES: Final = 40
"""Length of a cumulative work in a message: a big-endian unsigned integer."""
MAX_RULE_CHARS: Final = 64
MAX_REASON_CHARS: Final = 1024
"""Longest rule name and message a TxRejectedMsg may carry."""

Inventory = Annotated[tuple[HashBytes, ...], msgspec.Meta(max_length=MAX_INVENTORY)]
Locator = Annotated[tuple[HashBytes, ...], msgspec.Meta(max_length=MAX_LOCATOR)]
Work = Annotated[bytes, msgspec.Meta(min_length=WORK_BYTES, max_length=WORK_BYTES)]
"""Cumulative proof-of-work: 40 bytes, big-endian (a peer cannot make a node hold a huge
integer)."""


def encode_work(work: int) -> bytes:
    return work.to_bytes(WORK_BYTES, "big")


def decode_work(raw: bytes) -> int:
    return int.from_bytes(raw, "big")


class TxsMsg(Wire, frozen=True, tag=1):
    """Transactions to add to the mempool and relay (a user's one, or a batch of gossip)."""

    txs: Annotated[tuple[Transaction, ...], msgspec.Meta(max_length=MAX_TXS)]


class BlockMsg(Wire, frozen=True, tag=2):
    """A block (newly mined, relayed, or sent in answer to GetBlocksMsg)."""

    block: Block


class StatusMsg(Wire, frozen=True, tag=3):
    """The sender's head, announced periodically so peers behind it ask for blocks."""

    height: U63
    head: HashBytes
    total_work: Work
    """Cumulative work of the head's branch (``encode_work``)."""


class GetBlocksMsg(Wire, frozen=True, tag=4):
    """Ask for main-chain blocks after the first locator hash the peer knows."""

    locator: Locator
    limit: U32
    """Most blocks wanted (the peer sends at most its own ``blocks_per_request``)."""


class BlocksMsg(Wire, frozen=True, tag=6):
    """The answer to GetBlocksMsg: consecutive main-chain blocks (possibly none)."""

    blocks: Annotated[tuple[Block, ...], msgspec.Meta(max_length=MAX_BLOCKS)]


class DatagramMsg(Wire, frozen=True, tag=7):
    """A datagram for the receiving participant to relay or take delivery of."""

    datagram: Datagram


class OrderMsg(Wire, frozen=True, tag=8):
    """A signed market order, gossiped on its topic (area and delivery interval)."""

    order: SignedOrder


class HaveMsg(Wire, frozen=True, tag=9):
    """Ids of transactions and orders the sender holds, told to the peers it did not send
    them to (bounded fan-out: the items go to a few peers, their ids to the rest)."""

    txids: Inventory
    orders: Inventory


class WantMsg(Wire, frozen=True, tag=10):
    """Ask a peer that announced them for the transactions and orders this node lacks."""

    txids: Inventory
    orders: Inventory


class GetHeadersMsg(Wire, frozen=True, tag=11):
    """Ask for main-chain headers after the first locator hash the peer knows (sync starts
    with headers: their proof-of-work is checked before any body is downloaded)."""

    locator: Locator
    limit: U32
    """Most headers wanted (the peer sends at most ``MAX_HEADERS``)."""


class HeadersMsg(Wire, frozen=True, tag=12):
    """The answer to GetHeadersMsg: consecutive main-chain headers (possibly none)."""

    headers: Annotated[tuple[Header, ...], msgspec.Meta(max_length=MAX_HEADERS)]


class GetSenderTxsMsg(Wire, frozen=True, tag=13):
    """Ask the peer that relayed a transaction ahead of its nonce for the sender's pending
    transactions from ``nonce`` on (the gap before it)."""

    sender: PublicKeyBytes
    nonce: U63


class VoteMsg(Wire, frozen=True, tag=14):
    """A finality vote of a permissioned chain's validator, gossiped to the proposers."""

    vote: SignedVote


class BusyMsg(Wire, frozen=True, tag=15):
    """The answer to a GetBlocksMsg or GetHeadersMsg the sender does not serve now: its
    serving budget for the asker's host is taken (``node/serving.py``). The asker asks
    another peer, or this one again later; it is no fault and no unanswered request."""

    headers: bool
    """The request was a GetHeadersMsg (False: a GetBlocksMsg)."""
    retry_after_ms: U32
    """When the sender expects it could take the request [ms from now; 0: it cannot tell]: a
    hint, which the asker bounds."""


class TxRejectedMsg(Wire, frozen=True, tag=5):
    """Tells the sender of a transaction why it was refused or evicted."""

    txid: HashBytes
    rule: Annotated[str, msgspec.Meta(max_length=MAX_RULE_CHARS)]
    message: Annotated[str, msgspec.Meta(max_length=MAX_REASON_CHARS)]


Message = (
    TxsMsg
    | BlockMsg
    | StatusMsg
    | GetBlocksMsg
    | TxRejectedMsg
    | BlocksMsg
    | DatagramMsg
    | OrderMsg
    | HaveMsg
    | WantMsg
    | GetHeadersMsg
    | HeadersMsg
    | GetSenderTxsMsg
    | VoteMsg
    | BusyMsg
)


def encode_message(msg: Message) -> bytes:
    return encode(msg)


def decode_message(data: bytes) -> Message:
    """Canonical decode; raises a named DecodeError (Oversize, Malformed, ...)."""
    return decode(data, Message, max_bytes=MAX_MESSAGE_BYTES, what="peer message")  # type: ignore[arg-type]
