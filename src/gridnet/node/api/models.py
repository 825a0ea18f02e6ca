"""Request and response models of the HTTP API (OpenAPI); pydantic stays at this edge."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field

from gridnet.node.api.common import MAX_BODY_HEX

# --- response and request models (OpenAPI) -----------------------------------------------


class ErrorOut(BaseModel):
    code: str = Field(description="The rule broken (e.g. NonceGap) or BadRequest, NotFound, ...")
    message: str


class HeadOut(BaseModel):
    height: int
    hash: str
    total_work: str = Field(
        description="What fork choice compares (decimal): the head branch's cumulative proof-of-work; "
        "on a permissioned chain justified slot * 2^64 + height"
    )
    timestamp: int = Field(description="Head block's timestamp [ms since the Unix epoch]")
    chain_id: str
    mempool_size: int
    peers: int
    peer_names: list[str]
    consensus: str = Field(description='"pow" or "poa" (a permissioned chain)')
    justified_height: int | None = Field(
        default=None, description="Permissioned chain: the head state's justified checkpoint (else null)"
    )
    finalized_height: int | None = Field(
        default=None, description="Permissioned chain: the last final block's height (else null)"
    )
    finalized_hash: str | None = Field(default=None, description="Permissioned chain: the last final block")
    justified_slot: int | None = Field(
        default=None,
        description="Permissioned chain: the justified checkpoint's slot, finality's epoch (else null)",
    )
    finalized_slot: int | None = Field(
        default=None, description="Permissioned chain: the last final block's slot (else null)"
    )


class ParamsOut(BaseModel):
    chain_id: str = Field(description="Hash of the genesis header: the chain's identity")
    record: dict[str, Any] = Field(description="Every consensus parameter")
    hex: str = Field(description="Canonical bytes of the parameters (what the genesis commits to)")


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


class CreditsOut(BaseModel):
    controller: str = Field(description="The Helios controller's name")
    id: str = Field(
        description="Its id: BLAKE2b-256 of 'helios-controller/', the registrant's key and the name (hex)"
    )
    members: list[str] = Field(description="The consortium's member keys (hex)")
    threshold: int = Field(description="Member signatures a mint needs")
    minted_wh: int = Field(description="Credits ever minted (1 credit = 1 Wh)")
    redeemed_wh: int = Field(description="Credits handed back by redemptions")
    supply: int = Field(description="Credits in circulation: minted less redeemed")
    defaults: int = Field(description="Redemptions it was proven not to release in time")
    holder: str | None = Field(default=None, description="With ?holder=ADDRESS: that address")
    balance: int | None = Field(default=None, description="With ?holder=ADDRESS: the credits it holds")


class CreditBankOut(BaseModel):
    bank: str = Field(description="The credit bank's name")
    id: str = Field(
        description="Its id: BLAKE2b-256 of 'credit-bank/', the registrant's key and the name (hex)"
    )
    members: list[str] = Field(description="The consortium's member keys (hex)")
    threshold: int = Field(description="Member signatures its registration needed")
    criteria: dict[str, int] = Field(description="Its published criteria (docs/protocol.md section 24)")
    capital: int = Field(description="Coin it holds to lend [base units]")
    lent: int = Field(description="Principal ever lent [base units]")
    repaid: int = Field(description="Principal and interest ever repaid to it [base units]")
    principal_repaid: int = Field(description="Of what was repaid, principal [base units]")
    interest_repaid: int = Field(description="Of what was repaid, interest [base units]")
    on_loan: int = Field(description="Principal lent and not repaid, defaults included [base units]")
    loans: int = Field(description="Loans it made")
    defaults: int = Field(description="Loans proven defaulted")
    withdrawn: int = Field(description="Capital its consortium took out [base units]")
    withdrawals: int = Field(description="Its withdrawals (the next WithdrawCapital's seq is this + 1)")
    borrower: str | None = Field(default=None, description="With ?borrower=ADDRESS: that address")
    history: dict[str, int] | None = Field(default=None, description="With ?borrower: its credit history")
    credit_value: int | None = Field(default=None, description="With ?borrower: its value under the criteria")
    loan_limit: int | None = Field(default=None, description="With ?borrower: the most it may borrow now")
    loan: dict[str, int | str] | None = Field(default=None, description="With ?borrower: its latest loan")


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


class LostTxOut(BaseModel):
    seq: int = Field(description="Its number in the node's log of lost transactions (from 1)")
    kind: str = Field(description="evicted or dropped")
    txid: str
    sender: str
    rule: str = Field(description="Why it left: the rule block building refused it for, MempoolFull, ...")
    message: str
    hex: str = Field(description="The transaction's canonical bytes (its sender may sign its payload again)")


class LostOut(BaseModel):
    lost: list[LostTxOut] = Field(description="Oldest first")
    next_after: int = Field(description="Pass as ?after= to read what follows")
    more: bool = Field(
        description="More are held after this page (it stopped at limit, or at 1 MiB of transactions): "
        "ask again with next_after"
    )
    first_kept: int = Field(description="The oldest number still held (older ones are forgotten)")


class OrderOut(BaseModel):
    id: str
    order: dict[str, Any]
    hex: str = Field(description="Canonical bytes of the signed order")


class OrdersOut(BaseModel):
    topic: str
    total: int = Field(description="Orders the node holds on the topic")
    offset: int = Field(description="Orders skipped before this page")
    next_offset: int | None = Field(description="Offset of the next page (null: this is the last)")
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
    body: str = Field(description="The decrypted body, hex")


class DatagramsOut(BaseModel):
    forwarded: int
    delivered: int
    held: int = Field(description="Held now for a next hop that is not linked")
    dropped: dict[str, int] = Field(description="Datagrams dropped, by the rule they broke")
    received: list[ReceivedDatagramOut] = Field(description="The latest delivered here")


class ClaimsOut(BaseModel):
    claims: list[str] = Field(
        description="Hex of each SignedClaim (one per connection); submit it in a ClaimTransit transaction"
    )


class HopClaimsOut(BaseModel):
    hop_claims: list[str] = Field(
        description="Hex of each HopClaim the chain pays this relay now (one per pool); "
        "submit them in a ClaimTransit transaction's hops"
    )


class SubmitCommandIn(BaseModel):
    command: str = Field(max_length=2 * 64 * 1024, description="Hex of the SignedCommand's canonical bytes")


class PostCommandOut(BaseModel):
    seq: int = Field(description="Its sequence number at this node")
    duplicate: bool = Field(description="The node already held this command")


class CommandOut(BaseModel):
    seq: int
    command: dict[str, Any]
    hex: str = Field(description="Canonical bytes of the signed command")


class CommandsOut(BaseModel):
    area: str
    commands: list[CommandOut] = Field(description="Commands posted after ``after``, oldest first")
    next_after: int = Field(description="Pass as ``after`` to read only newer ones")


class PostOrderOut(BaseModel):
    id: str
    topic: str
    duplicate: bool = Field(description="The node already held this order (nothing gossiped)")
