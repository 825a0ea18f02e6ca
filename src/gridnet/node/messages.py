"""Peer-to-peer messages and their canonical encoding (one tagged union)."""

from __future__ import annotations

from typing import Annotated, Final

import msgspec

from gridnet.encoding import U32, U63, HashBytes, PublicKeyBytes, Wire, decode, encode
from gridnet.ledger.blocks import Block, Header
from gridnet.ledger.transactions import Transaction
from gridnet.market.orders import SignedOrder
from gridnet.relay.datagram import Datagram

MAX_MESSAGE_BYTES: Final = 4 * 1024 * 1024
MAX_HEADERS: Final = 2000
"""Headers one HeadersMsg may carry."""
MAX_INVENTORY: Final = 4096
"""Ids one HaveMsg or WantMsg may carry, of each kind."""

Inventory = Annotated[tuple[HashBytes, ...], msgspec.Meta(max_length=MAX_INVENTORY)]


class TxsMsg(Wire, frozen=True, tag=1):
    """Transactions to add to the mempool and relay (a user's one, or a batch of gossip)."""

    txs: tuple[Transaction, ...]


class BlockMsg(Wire, frozen=True, tag=2):
    """A block (newly mined, relayed, or sent in answer to GetBlocksMsg)."""

    block: Block


class StatusMsg(Wire, frozen=True, tag=3):
    """The sender's head, announced periodically so peers behind it ask for blocks."""

    height: U63
    head: HashBytes
    total_work: bytes
    """Cumulative work of the head's branch (big-endian unsigned integer)."""


class GetBlocksMsg(Wire, frozen=True, tag=4):
    """Ask for main-chain blocks after the first locator hash the peer knows."""

    locator: tuple[HashBytes, ...]
    limit: U32


class BlocksMsg(Wire, frozen=True, tag=6):
    """The answer to GetBlocksMsg: consecutive main-chain blocks (possibly none)."""

    blocks: tuple[Block, ...]


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

    locator: tuple[HashBytes, ...]
    limit: U32


class HeadersMsg(Wire, frozen=True, tag=12):
    """The answer to GetHeadersMsg: consecutive main-chain headers (possibly none)."""

    headers: Annotated[tuple[Header, ...], msgspec.Meta(max_length=MAX_HEADERS)]


class GetSenderTxsMsg(Wire, frozen=True, tag=13):
    """Ask the peer that relayed a transaction ahead of its nonce for the sender's pending
    transactions from ``nonce`` on (the gap before it)."""

    sender: PublicKeyBytes
    nonce: U63


class TxRejectedMsg(Wire, frozen=True, tag=5):
    """Tells the sender of a transaction why it was refused or evicted."""

    txid: HashBytes
    rule: str
    message: str


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
)


def encode_message(msg: Message) -> bytes:
    return encode(msg)


def decode_message(data: bytes) -> Message:
    """Canonical decode; raises a named DecodeError (Oversize, Malformed, ...)."""
    return decode(data, Message, max_bytes=MAX_MESSAGE_BYTES, what="peer message")  # type: ignore[arg-type]
