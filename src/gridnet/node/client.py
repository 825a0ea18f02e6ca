"""A client of a running node's HTTP API, and how to find the node of a data directory.

``gridnet tx ... --node URL`` and the other client commands, the devnet scenario driver and
the benchmarks talk to nodes through :class:`NodeClient`. ``running_node(DATA_DIR)`` finds
the node process that holds a data directory's lock through its ``node.json``;
``NodeClient.for_data_dir`` connects to it with the token it wrote (``node/auth.py``).
"""

from __future__ import annotations

import http.client
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, TypeVar
from urllib.parse import quote

import msgspec

from gridnet.errors import ConfigError, DataDirLocked, GridnetError, NodeUnavailable
from gridnet.ledger.lock import holder
from gridnet.net.http import AnswerTooLarge, BoundedConnection, read_answer, shown_size
from gridnet.node.auth import COOKIE_NAME, read_token_file, token_problem
from gridnet.node.config import base_url, format_host_port

INFO_NAME: Final = "node.json"
INDEX_BUILDING: Final = "IndexBuilding"
"""The code of GET /transactions/{txid}'s 503 while the node indexes its chain (ask again)."""
MAX_ANSWER_BYTES: Final = 32 * 1024 * 1024
"""The longest answer a client reads from a node [bytes]; a longer one is not a node's. The
longest a node gives is ``GET /blocks/{ref}?full=true`` of a block of the largest size a
genesis may set (``MAX_BLOCK_BYTES_LIMIT``, 3 MiB) made of the smallest transactions: each
one's bytes twice over in hex and about 120 bytes of JSON around them (a 128-byte transfer
takes 374), under 9 MiB. ``GET /transactions/{txid}`` of a block-sized transaction (its hex
and its payload) and a ``GET /mempool/lost`` page (under 1 MiB of transactions, but for a
first one of any size, and 10,000 entries at most) stay under that too."""


class NodeRefused(GridnetError):
    """The node answered with an error; ``rule`` is the code it gave (e.g. NonceGap)."""

    def __init__(self, code: str, message: str, status: int) -> None:
        super().__init__(message)
        self.code = code
        self.status = status

    @property
    def rule(self) -> str:
        return self.code


# --- what the node answers (the fields a client reads; checked, so a foreign or broken
# server is a one-line NodeUnavailable, not a KeyError) ------------------------------------


class SyncAnswer(msgspec.Struct):
    target_height: int
    progress: float
    syncing: bool
    headers_pending: int


class MempoolAnswer(msgspec.Struct):
    size: int
    bytes: int
    max_txs: int


class PeerCountAnswer(msgspec.Struct):
    count: int
    inbound: int
    outbound: int


class StatusAnswer(msgspec.Struct):
    """``GET /status``."""

    chain: str
    chain_id: str
    version: str
    address: str
    height: int
    head: str
    total_work: str
    head_time: int
    transactions: int
    sync: SyncAnswer
    mempool: MempoolAnswer
    peers: PeerCountAnswer
    mining: bool
    uptime_s: float
    listen: str | None


class PeerAnswer(msgspec.Struct):
    """One entry of ``GET /peers``."""

    address: str
    remote: str | None
    direction: str | None
    height: int | None
    total_work: str | None
    faults: int
    bytes_in: int | None
    bytes_out: int | None
    connected_s: float | None


class AccountAnswer(msgspec.Struct):
    """``GET /accounts/{address}``."""

    address: str
    balance: int
    nonce: int
    bonded: int
    unbonding: int
    pending: int
    next_nonce: int


class CreditsAnswer(msgspec.Struct):
    """``GET /credits/{controller}?registrant=KEY``."""

    controller: str
    minted_wh: int
    redeemed_wh: int
    supply: int
    defaults: int
    holder: str | None = None
    balance: int | None = None


class AggregatorsAnswer(msgspec.Struct):
    """``GET /aggregators/{name}?registrant=KEY``: what ``gridnet chain aggregators`` reads of it."""

    aggregators: str
    members: list[str]
    majority: int
    fee_bps: int
    records: int
    traded_wh: int
    treasury: int


class TradeRecordAnswer(msgspec.Struct):
    """``GET /trade-records/{tid}``: what ``gridnet chain aggregators --tid`` reads of it."""

    tid: str
    mid: str
    aer_wh: int
    aeg_wh: int
    et: int
    tr_ms: int
    tt_ms: int
    seller: str
    dss: str
    dsp: str


class HotspotAnswer(msgspec.Struct):
    """``GET /ev-hotspots/{name}?registrant=KEY``: what ``gridnet chain ev`` reads of it."""

    hotspot: str
    fee: int
    charging_discount: int
    parking_discount: int
    penalty_pct: int
    deals: int
    traded_wh: int
    fees: int
    penalties: int


class EvDealAnswer(msgspec.Struct):
    """``GET /ev-deals/{id}``: what ``gridnet chain ev --deal`` reads of it."""

    deal: str
    status: str
    vehicle_meter: str
    energy_charged_wh: int
    energy_wh: int
    price: int
    broken_by: str
    station_signature: str
    processing_signature: str


class LoanAnswer(msgspec.Struct):
    status: str
    outstanding: int


class CreditBankAnswer(msgspec.Struct):
    """``GET /credit-banks/{name}?registrant=KEY``: what ``gridnet chain credit-bank`` reads of it."""

    bank: str
    capital: int
    loans: int
    lent: int
    repaid: int
    on_loan: int
    defaults: int
    withdrawn: int
    withdrawals: int


class BorrowerAnswer(CreditBankAnswer):
    """``GET /credit-banks/{name}?registrant=KEY&borrower=ADDRESS``: with the borrower's figures."""

    borrower: str
    credit_value: int
    loan_limit: int
    loan: LoanAnswer | None


class ParamsAnswer(msgspec.Struct):
    """``GET /params``."""

    chain_id: str
    hex: str


class BlockRefAnswer(msgspec.Struct):
    height: int
    hash: str


class TxLookupAnswer(msgspec.Struct):
    """``GET /transactions/{txid}``."""

    status: str
    block: BlockRefAnswer | None = None


class LostTxAnswer(msgspec.Struct):
    """An entry of ``GET /mempool/lost``."""

    seq: int
    kind: str
    txid: str
    sender: str
    rule: str
    message: str
    hex: str


class LostAnswer(msgspec.Struct):
    """``GET /mempool/lost``."""

    lost: list[LostTxAnswer]
    next_after: int
    more: bool = True
    """More are held after this page (a node older than this field: read until an empty page)."""


T = TypeVar("T")


def expect(answer: Any, kind: type[T], what: str) -> T:
    """``answer`` (decoded JSON) as ``kind``, or NodeUnavailable saying what was wrong."""
    try:
        return msgspec.convert(answer, kind)
    except msgspec.ValidationError as exc:
        raise NodeUnavailable(f"unexpected answer to {what} (is it a GRIDNET node?): {exc}") from None


@dataclass(frozen=True)
class RunningNode:
    """A node process running on a data directory (from its ``node.json``)."""

    data_dir: Path
    pid: int
    address: str
    listen: str
    api: str | None
    """HOST:PORT of its HTTP API (None: it runs without one)."""
    token_file: str | None
    """The API token file it was configured with (None: its cookie, DATA_DIR/.cookie)."""

    def token(self) -> str | None:
        """Its API token, as a client on this machine reads it (None when it cannot)."""
        path = Path(self.token_file) if self.token_file else self.data_dir / COOKIE_NAME
        try:
            return read_token_file(path)
        except GridnetError:
            return None


def running_node(data_dir: Path) -> RunningNode | None:
    """The node process that runs on ``data_dir`` now, if any. Raises DataDirLocked when
    another kind of process (``gridnet chain mine``, ...) writes the data directory, or a
    node is still starting there."""
    lock = holder(data_dir)
    if lock is None:
        return None
    node = _read_info(data_dir)
    if isinstance(node, RunningNode) and node.pid == lock.pid:
        return node
    who = "another process" if lock.pid is None else f"process {lock.pid}"
    if " node" not in f" {lock.command}":
        message = f"data directory {data_dir} is in use by {who} ({lock.command}); wait for it to finish"
    elif isinstance(node, str):  # (the node writes it whole, by a rename: damaged after, or by hand)
        message = (
            f"the node on {data_dir} ({who}) runs, but {data_dir / INFO_NAME}, where commands find its API, "
            f"is damaged ({node}); restart the node (it writes the file anew), or reach it with --node URL"
        )
    else:
        message = f"the node on {data_dir} ({who}) is still starting; try again in a moment"
    raise DataDirLocked(message, lock.pid)


def _read_info(data_dir: Path) -> RunningNode | str | None:
    """The node ``data_dir``'s node.json describes (None: there is none; a string: what is
    wrong with it)."""
    path = data_dir / INFO_NAME
    try:
        info = json.loads(path.read_bytes())
    except FileNotFoundError:
        return None
    except OSError as exc:
        return f"cannot read it: {exc.strerror or exc}"
    except ValueError:
        return "not JSON"
    if not isinstance(info, dict):
        return "not a JSON object"
    try:
        pid, address, listen, api = (info[k] for k in ("pid", "address", "listen", "api"))
        token_file = info.get("token_file")
        return RunningNode(
            data_dir,
            _whole(pid),
            str(address),
            str(listen),
            None if api is None else str(api),
            None if token_file is None else str(token_file),
        )
    except KeyError as exc:
        return f"no {exc.args[0]!r} field"
    except ValueError:
        return "its 'pid' is not a process id"


def _whole(value: object) -> int:
    if type(value) is not int or value <= 0:
        raise ValueError(value)
    return value


def data_dir_token(data_dir: Path) -> str | None:
    """The API token of the node running on ``data_dir`` (None when none runs there or its
    token cannot be read)."""
    try:
        node = running_node(data_dir)
    except GridnetError:
        return None
    return None if node is None else node.token()


def _shown(text: str, most: int = 80) -> str:
    """``text`` shortened to ``most`` characters, with what cannot be printed as '?'."""
    cut = "".join(c if c.isprintable() else "?" for c in text[:most])
    return cut + "..." if len(text) > most else cut


def path_segment(name: str) -> str:
    """``name`` (a controller's, a bank's...) as one segment of an API path: every character but
    letters, digits, '-', '_' and '~' percent-encoded ('/' and '.' too, so that "a/b" stays one
    name and "." or ".." are names, not steps back)."""
    return quote(name, safe="").replace(".", "%2E")


class NodeClient:
    """JSON over one kept-alive HTTP connection to a node's API (reconnects once)."""

    def __init__(self, url: str, token: str | None = None, *, timeout_s: float = 30.0) -> None:
        """``url``: ``http://HOST:PORT`` or ``HOST:PORT``; ``token``: sent as a bearer token
        (needed by the endpoints that change the node's state); ``timeout_s``: the most one
        request may take, its whole answer read (an answer is read up to MAX_ANSWER_BYTES)."""
        where = base_url(url)
        if where is None:
            raise NodeUnavailable(
                f"node URL {_shown(url)!r} must be http://HOST:PORT and nothing more (e.g. http://127.0.0.1:8330)"
            )
        host, port = where
        self.url = f"http://{format_host_port(host, port)}"
        self.host, self.port = host, port
        self.token = token
        self.timeout_s = timeout_s
        self._conn: BoundedConnection | None = None

    @classmethod
    def for_data_dir(
        cls, data_dir: Path, *, token: str | None = None, timeout_s: float = 30.0
    ) -> NodeClient | None:
        """A client of the node running on ``data_dir`` (None if none runs there), with
        ``token``, else the token that node uses (its cookie or its token file)."""
        node = running_node(data_dir)
        if node is None:
            return None
        if node.api is None:
            raise NodeUnavailable(
                f"the node on {data_dir} (process {node.pid}) runs without its HTTP API; restart it "
                "with an api address to reach it"
            )
        return cls(node.api, token if token is not None else node.token(), timeout_s=timeout_s)

    def call(self, method: str, path: str, body: dict[str, Any] | None = None) -> tuple[int, Any]:
        """Send one request; (HTTP status, decoded JSON body)."""
        data = None if body is None else json.dumps(body).encode()
        headers = {} if body is None else {"content-type": "application/json"}
        if self.token is not None:
            headers["authorization"] = f"Bearer {self.token}"
        if method != "GET" and self._conn is not None:
            # A submission goes on a new connection and is never sent twice: on a kept-alive one
            # the node may have closed, a failure cannot tell "not received" from "received, the
            # answer lost" (sent again, an accepted transaction came back AlreadyKnown).
            self._conn.close()
            self._conn = None
        deadline = time.monotonic() + self.timeout_s  # (for all of it: a slow drip is no answer)
        for attempt in range(2):
            if self._conn is None:
                self._conn = BoundedConnection(self.host, self.port)
            self._conn.start(deadline - time.monotonic())
            try:
                self._conn.request(method, path, body=data, headers=headers)
                response = self._conn.getresponse()
                raw = read_answer(response, MAX_ANSWER_BYTES)
            except AnswerTooLarge as exc:
                self._conn.close()
                self._conn = None
                raise NodeUnavailable(
                    f"{self.url} answered {method} {path} with more than {shown_size(exc.limit)}, more than "
                    "a node's answer holds: is it a GRIDNET node's API?"
                ) from None
            except ValueError as exc:  # (UnicodeError too: a header or path HTTP cannot carry)
                self._conn.close()
                self._conn = None
                bad_token = self.token is not None and token_problem(self.token) is not None
                what = "the API token" if bad_token else "the path"
                raise ConfigError(
                    f"cannot send {method} {_shown(path)} to {self.url}: {what} holds characters an HTTP "
                    f"request cannot carry ({type(exc).__name__}); give printable ASCII"
                ) from None
            except (OSError, http.client.HTTPException) as exc:
                self._conn.close()
                self._conn = None
                # Asked again only when that cannot act twice: a read (not after a timeout: a
                # server that never answers would be waited for twice).
                again = method == "GET" and not isinstance(exc, TimeoutError)
                if attempt or not again:
                    if isinstance(
                        exc, http.client.BadStatusLine | http.client.LineTooLong
                    ) and not isinstance(exc, http.client.RemoteDisconnected):
                        reason = "it does not answer in HTTP: is that the node's peer port, not its API?"
                    elif isinstance(exc, TimeoutError):
                        reason = f"timed out: no whole answer within {self.timeout_s:g} s"
                    else:
                        reason = getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
                        reason = "".join(c if c.isprintable() else "?" for c in reason)[:200]
                    raise NodeUnavailable(
                        f"the node at {self.url} did not answer {method} {path} ({reason}); is it running?"
                    ) from None
                continue
            try:
                return response.status, json.loads(raw) if raw else None
            except ValueError:
                raise NodeUnavailable(
                    f"{self.url} answered {method} {path} with HTTP {response.status} but not in JSON: "
                    "is it a GRIDNET node's API?"
                ) from None
        raise AssertionError("unreachable")

    def request(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        """The JSON answer of a successful request; NodeRefused with the node's code otherwise."""
        status, answer = self.call(method, path, body)
        if 200 <= status < 300:
            return answer
        if isinstance(answer, dict) and "code" in answer:
            raise NodeRefused(str(answer["code"]), str(answer.get("message", "")), status)
        raise NodeRefused("HTTPError", f"{method} {path} answered {status}", status)

    def get(self, path: str) -> Any:
        """GET ``path``; None when the node answers 404."""
        status, answer = self.call("GET", path)
        if status == 404:
            return None
        if status != 200:
            code = answer.get("code", "HTTPError") if isinstance(answer, dict) else "HTTPError"
            message = answer.get("message", "") if isinstance(answer, dict) else ""
            raise NodeRefused(str(code), str(message) or f"GET {path} answered {status}", status)
        return answer

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None


MAX_LOST_PAGES = 100
"""Pages of ``GET /mempool/lost`` ``lost_since`` reads at most in one call, so that a node
losing transactions as fast as they are read does not keep it for ever (what it did not read
comes next time, after the number it returns). A full log takes at most 42: 10 of 1,000
entries, and fewer than 32 ended by the 1 MiB bound on a page's transactions (a page and the
first of the next hold more than 1 MiB; the log keeps at most 16 MiB), and the last."""


def lost_since(client: NodeClient, after: int) -> tuple[list[LostTxAnswer], int]:
    """The transactions the node let go without a block numbered after ``after``, following
    the pages (``next_after``) until the node says it holds no more, and the number to read
    after next time."""
    entries: list[LostTxAnswer] = []
    for _ in range(MAX_LOST_PAGES):
        page = expect(client.get(f"/mempool/lost?after={after}"), LostAnswer, "GET /mempool/lost")
        entries.extend(page.lost)
        after = page.next_after
        if not (page.lost and page.more):
            break
    return entries, after


def why_lost(client: NodeClient, txid: str) -> str | None:
    """Why the node let ``txid`` go without a block ("Rule: message"), while it still keeps
    it in its log of lost transactions."""
    entries, _ = lost_since(client, 0)
    return next((f"{e.rule}: {e.message}" for e in reversed(entries) if e.txid == txid), None)
