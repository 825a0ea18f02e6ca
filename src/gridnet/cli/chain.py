"""``gridnet chain``: create, mine, inspect and audit a chain in a data directory."""

from __future__ import annotations

import json
import os
import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import msgspec
import typer
from rich.table import Table

from gridnet.cli.common import (
    DataDir,
    JsonFlag,
    NodeUrl,
    PassphraseFile,
    Registrant,
    console,
    count,
    err_console,
    parse_gnc,
    parse_registrant,
    progress_bar,
    require_node,
    shown_name,
)
from gridnet.cli.passphrase import create_key, load_key
from gridnet.crypto.address import address_from_text, address_to_text
from gridnet.crypto.keys import PrivateKey
from gridnet.errors import ConfigError, StoreCorrupt, StoreError
from gridnet.files import make_dirs, write_text_file
from gridnet.interrupts import as_keyboard_interrupt
from gridnet.ledger.chain import Chain, now_ms
from gridnet.ledger.params import (
    GENESIS_NAME,
    default_params,
    load_genesis_file,
    params_to_toml,
    validate_params,
)
from gridnet.ledger.state import Account, StateView
from gridnet.ledger.store import DB_NAME, Store
from gridnet.ledger.txs.aggregator import aggregator_figures, record_figures
from gridnet.ledger.txs.credit import bank_figures
from gridnet.ledger.txs.helios import CONTROLLERS, controller_id, credits_of
from gridnet.ledger.txs.vehicle import deal_figures, hotspot_figures
from gridnet.ledger.verify import verify_chain
from gridnet.ledger.wallet import MinedBlock, mine_blocks
from gridnet.node.client import (
    AccountAnswer,
    AggregatorsAnswer,
    BorrowerAnswer,
    CreditBankAnswer,
    CreditsAnswer,
    EvDealAnswer,
    HotspotAnswer,
    NodeClient,
    StatusAnswer,
    TradeRecordAnswer,
    expect,
    path_segment,
)
from gridnet.node.config import CONFIG_NAME, config_template
from gridnet.units import format_gnc

OptDataDir = Annotated[Path | None, typer.Option("--data-dir", help="Data directory of the chain.")]


def _data_dir(data_dir: Path | None) -> Path:
    if data_dir is None:
        raise ConfigError("say which chain: --data-dir DIR (or --node URL for a running node)")
    return data_dir


app = typer.Typer(help="Create, mine, inspect and audit a chain in a data directory.", no_args_is_help=True)


@app.command("init")
def chain_init(
    data_dir: DataDir,
    genesis: Annotated[
        Path | None, typer.Option("--genesis", help="Genesis TOML (default: built-in devnet).")
    ] = None,
) -> None:
    """Create a chain from a genesis file in an empty data directory, with a gridnet.toml
    listing the node's settings (all commented out: the defaults)."""
    params = load_genesis_file(genesis) if genesis else default_params()
    written = data_dir / GENESIS_NAME
    given = genesis is not None and written.exists() and written.samefile(genesis)
    if written.exists() and not given and not (data_dir / DB_NAME).exists():  # (a chain there: refused below)
        raise ConfigError(
            f"{written} exists and would be overwritten: pass it with --genesis {written}, or choose an "
            "empty --data-dir"
        )
    chain = Chain.create(data_dir, params)
    try:
        if not given:  # (the file the chain was made from stays as its author wrote it)
            write_text_file(written, params_to_toml(params))
        settings = data_dir / CONFIG_NAME
        if not settings.exists():
            write_text_file(settings, config_template())
    finally:
        chain.close()
    console.print(f"initialised {params.name} in {data_dir}; genesis {chain.chain_id.hex()}")
    console.print(
        f"node settings: {data_dir / CONFIG_NAME} (run it with 'gridnet node --data-dir {data_dir}')"
    )


@app.command("genesis")
def chain_genesis(
    out: Annotated[Path, typer.Option("--out", help="File to write.")],
    alloc: Annotated[
        list[str] | None, typer.Option("--alloc", help="ADDRESS=GNC credited at genesis (repeatable).")
    ] = None,
) -> None:
    """Write a genesis file with the default parameters, to edit before 'chain init'."""
    from gridnet.ledger.params import Allocation

    allocations: list[Allocation] = []
    for item in alloc or []:
        address, sep, amount = item.partition("=")
        if not sep:
            raise ConfigError(f"--alloc {item!r} must look like ADDRESS=GNC")
        allocation = Allocation(address_from_text(address), parse_gnc(amount))
        if any(a.address == allocation.address for a in allocations):
            raise ConfigError(
                f"--alloc {address} is given twice; give each address once, with its whole amount"
            )
        allocations.append(allocation)
    if out.exists():
        raise ConfigError(f"{out} already exists; refusing to overwrite it")
    params = validate_params(default_params(tuple(allocations)), f"--alloc ({len(allocations)} given)")
    out.write_text(params_to_toml(params))
    console.print(f"wrote {out}")


def _miner_key(
    data_dir: Path, key: Path | None, passphrase_file: Path | None, unencrypted: bool
) -> PrivateKey:
    if key is not None:
        return load_key(key, passphrase_file)
    path = data_dir / "miner.key"
    if path.exists():
        return load_key(path, passphrase_file)
    created = create_key(
        path,
        unencrypted=unencrypted,
        passphrase_file=passphrase_file,
        given_by=("--unencrypted-key", "--passphrase-file"),
    )
    how = "unencrypted" if unencrypted else "encrypted with its passphrase"
    err_console.print(f"created the miner key {path} ({how}): address {address_to_text(created.address)}")
    return created


@app.command("mine")
def chain_mine(
    data_dir: DataDir,
    blocks: Annotated[int, typer.Option("--blocks", min=1, max=1_000_000, help="How many blocks to mine.")],
    key: Annotated[
        Path | None,
        typer.Option("--key", help="Miner key (default: DATA_DIR/miner.key, created if missing)."),
    ] = None,
    passphrase_file: PassphraseFile = None,
    unencrypted_key: Annotated[
        bool,
        typer.Option("--unencrypted-key", help="Create a missing DATA_DIR/miner.key without encryption."),
    ] = False,
) -> None:
    """Mine blocks on the head, including pending transactions (not beside a running node:
    the data directory has one writer)."""
    chain = Chain.open(data_dir)
    try:
        ahead = chain.median_time_past(chain.head) + 1 - now_ms()
        if ahead > chain.params.max_future_ms:
            raise ConfigError(
                f"the chain in {data_dir} needs its next block stamped {ahead / 1000:.0f} s ahead of this "
                f"machine's clock, more than the {chain.params.max_future_ms / 1000:.0f} s a node takes: "
                "check the clock (or mine once it has caught up)"
            )
        miner = _miner_key(data_dir, key, passphrase_file, unencrypted_key)
        with progress_bar() as progress:
            task = progress.add_task("mining", total=blocks)
            mined_txs = 0

            def on_block(m: MinedBlock) -> None:
                nonlocal mined_txs
                mined_txs += len(m.block.txs) - 1
                for e in m.events:
                    if e.rule:
                        err_console.print(f"dropped {e.txid.hex()[:16]}: {e.rule}: {e.message}")
                progress.advance(task)

            mine_blocks(chain, miner, blocks, on_block=on_block)
        balance = format_gnc(chain.account(miner.address).balance)
        console.print(
            f"mined {blocks} block(s) with {mined_txs} transaction(s); height {chain.height}, "
            f"miner {address_to_text(miner.address)} balance {balance}"
        )
    finally:
        chain.close()


def chain_summary(chain: Chain) -> dict[str, Any]:
    return {
        "name": chain.params.name,
        "height": chain.height,
        "head": chain.head.hash.hex(),
        "cumulative_work": chain.head.total_work,
        "transactions": chain.tx_count,
        "genesis": chain.chain_id.hex(),
        "pending": chain.store.pending_count(),
    }


def _summary_of_node(client: NodeClient) -> dict[str, Any]:
    status = expect(client.request("GET", "/status"), StatusAnswer, "GET /status")
    return {
        "name": status.chain,
        "height": status.height,
        "head": status.head,
        "cumulative_work": int(status.total_work),
        "transactions": status.transactions,
        "genesis": status.chain_id,
        "pending": status.mempool.size,
    }


@app.command("show")
def chain_show(data_dir: OptDataDir = None, node: NodeUrl = None, as_json: JsonFlag = False) -> None:
    """Height, head hash, cumulative work and transaction count (of a data directory, also
    beside its running node, or of the node at --node)."""
    if node is not None:
        summary = _summary_of_node(require_node(node, data_dir))
    else:
        chain = Chain.open(_data_dir(data_dir), readonly=True)
        try:
            summary = chain_summary(chain)
        finally:
            chain.close()
    if as_json:
        print(json.dumps(summary))
        return
    table = Table(title=f"chain {summary['name']}", show_header=False)
    table.add_column()
    table.add_column(overflow="fold")  # (a hash is printed whole, folded, never cut to '…')
    for k, v in summary.items():
        table.add_row(k.replace("_", " "), str(v))
    console.print(table)


@app.command("account")
def chain_account(
    address: Annotated[str, typer.Option("--address", help="Address (gn...).")],
    data_dir: OptDataDir = None,
    node: NodeUrl = None,
    as_json: JsonFlag = False,
) -> None:
    """Balance, nonce and bond of an address (in a data directory, also beside its running
    node, or at the node at --node)."""
    addr = address_from_text(address)
    if node is not None:
        path = f"/accounts/{address_to_text(addr)}"
        answer = expect(require_node(node, data_dir).request("GET", path), AccountAnswer, f"GET {path}")
        acct = Account(answer.balance, answer.nonce, answer.bonded, answer.unbonding)
    else:
        chain = Chain.open(_data_dir(data_dir), readonly=True)
        try:
            acct = chain.account(addr)
        finally:
            chain.close()
    if as_json:
        print(
            json.dumps(
                {"address": address_to_text(addr), **{f: getattr(acct, f) for f in acct.__struct_fields__}}
            )
        )
        return
    console.print(
        f"{address_to_text(addr)}: balance {format_gnc(acct.balance)}, nonce {acct.nonce}, "
        f"bonded {format_gnc(acct.bonded)}, unbonding {format_gnc(acct.unbonding)}"
    )


@app.command("credits")
def chain_credits(
    controller: Annotated[str, typer.Option("--controller", help="The Helios controller's name.")],
    registrant: Registrant,
    holder: Annotated[str | None, typer.Option("--holder", help="An address whose credits to show.")] = None,
    data_dir: OptDataDir = None,
    node: NodeUrl = None,
    as_json: JsonFlag = False,
) -> None:
    """A Helios controller's credits: minted, redeemed, in circulation, defaults; and with
    --holder an address's balance (in a data directory, or at the node at --node)."""
    key = parse_registrant(registrant)
    addr = None if holder is None else address_from_text(holder)
    if node is not None:
        path = f"/credits/{path_segment(controller)}?registrant={key.hex()}"
        if addr is not None:
            path += f"&holder={address_to_text(addr)}"
        found = expect(require_node(node, data_dir).request("GET", path), CreditsAnswer, f"GET {path}")
        figures = {f: getattr(found, f) for f in found.__struct_fields__}
    else:
        chain = Chain.open(_data_dir(data_dir), readonly=True)
        try:
            view = chain.view()
            cid = controller_id(key, controller)
            record = view.get(CONTROLLERS, cid)
            if record is None:
                raise ConfigError(
                    f"no Helios controller named {controller!r} registered by {key.hex()} on the chain "
                    f"in {chain.store.data_dir}"
                )
            figures = {
                "controller": record.name,
                "minted_wh": record.minted_wh,
                "redeemed_wh": record.redeemed_wh,
                "supply": record.supply,
                "defaults": record.defaults,
                "holder": None if addr is None else address_to_text(addr),
                "balance": None if addr is None else credits_of(view, cid, addr),
            }
        finally:
            chain.close()
    if as_json:
        print(json.dumps(figures))
        return
    line = (
        f"{shown_name(figures['controller'])}: {figures['supply']} credits in circulation "
        f"({figures['minted_wh']} minted, {figures['redeemed_wh']} redeemed, 1 credit = 1 Wh), "
        f"{figures['defaults']} default(s)"
    )
    if addr is not None:
        line += f"; {figures['holder']} holds {figures['balance']}"
    console.print(line)


Query = tuple[str, type[msgspec.Struct], Callable[[StateView], dict[str, Any] | None], str]
"""An API path, the answer it must be (what the command reads of it, ``node.client``), what reads
the same figures from a chain's state (None: not there), and what to say when it is not there."""


def _queries(node: str | None, data_dir: Path | None, queries: list[Query]) -> list[dict[str, Any]]:
    """Each query's figures: from the node at ``node`` (its API; an answer that is not its kind
    is refused as every ``--node`` reader refuses one, by ``expect``: "is it a GRIDNET node?"),
    else from the chain in ``data_dir`` (read only); one clear line when one is not there."""
    if node is not None:
        client = require_node(node, data_dir)
        out = []
        for path, kind, _, _ in queries:
            answer = client.request("GET", path)
            expect(answer, kind, f"GET {path}")  # (what is printed is the whole answer, a dict)
            out.append(answer)
        return out
    chain = Chain.open(_data_dir(data_dir), readonly=True)
    try:
        view = chain.view()
        out = []
        for _, _, read, missing in queries:
            figures = read(view)
            if figures is None:
                raise ConfigError(f"{missing} on the chain in {chain.store.data_dir}")
            out.append(figures)
        return out
    finally:
        chain.close()


@app.command("credit-bank")
def chain_credit_bank(
    name: Annotated[str, typer.Option("--name", help="The credit bank's name.")],
    registrant: Registrant,
    borrower: Annotated[
        str | None, typer.Option("--borrower", help="An address whose credit value and loan to show.")
    ] = None,
    data_dir: OptDataDir = None,
    node: NodeUrl = None,
    as_json: JsonFlag = False,
) -> None:
    """A credit bank's criteria and books; with --borrower an address's history, credit value,
    loan limit and latest loan (in a data directory, or at the node at --node)."""
    key = parse_registrant(registrant)
    addr = None if borrower is None else address_from_text(borrower)
    path = f"/credit-banks/{path_segment(name)}?registrant={key.hex()}"
    if addr is not None:
        path += f"&borrower={address_to_text(addr)}"
    (figures,) = _queries(
        node,
        data_dir,
        [
            (
                path,
                CreditBankAnswer if addr is None else BorrowerAnswer,
                lambda view: bank_figures(view, key, name, addr),
                f"no credit bank named {name!r} registered by {key.hex()}",
            )
        ],
    )
    if as_json:
        print(json.dumps(figures))
        return
    line = (
        f"{shown_name(figures['bank'])}: {format_gnc(figures['capital'])} to lend, "
        f"{figures['loans']} loan(s) "
        f"({format_gnc(figures['lent'])} lent, {format_gnc(figures['repaid'])} repaid, "
        f"{format_gnc(figures['on_loan'])} of it still on loan), "
        f"{figures['defaults']} default(s); {format_gnc(figures['withdrawn'])} withdrawn in "
        f"{figures['withdrawals']} withdrawal(s)"
    )
    console.print(line)
    if addr is not None:
        loan = figures["loan"]
        owes = (
            "no loan"
            if loan is None
            else f"its loan is {loan['status']}, {format_gnc(loan['outstanding'])} outstanding"
        )
        console.print(
            f"{figures['borrower']}: credit value {figures['credit_value']}, may borrow "
            f"{format_gnc(figures['loan_limit'])}; {owes}"
        )


@app.command("aggregators")
def chain_aggregators(
    name: Annotated[str, typer.Option("--name", help="The consortium's name.")],
    registrant: Registrant,
    tid: Annotated[str | None, typer.Option("--tid", help="A trade record's TID (hex) to show.")] = None,
    data_dir: OptDataDir = None,
    node: NodeUrl = None,
    as_json: JsonFlag = False,
) -> None:
    """A consortium of energy aggregators: members, fee, reward rule, records, treasury; with
    --tid one trade record with the seed's fields (in a data directory, or at the node at --node)."""
    by = parse_registrant(registrant)
    key = None if tid is None else _hex32(tid, "--tid", "TID")
    queries: list[Query] = [
        (
            f"/aggregators/{path_segment(name)}?registrant={by.hex()}",
            AggregatorsAnswer,
            lambda view: aggregator_figures(view, by, name),
            f"no consortium of aggregators named {name!r} registered by {by.hex()}",
        )
    ]
    if key is not None:
        record = key
        queries.append(
            (
                f"/trade-records/{record.hex()}",
                TradeRecordAnswer,
                lambda view: record_figures(view, record),
                f"no trade record {record.hex()[:16]}",
            )
        )
    figures, *found = _queries(node, data_dir, queries)
    trade = found[0] if found else None
    if as_json:
        print(json.dumps(figures if trade is None else {**figures, "record": trade}))
        return
    console.print(
        f"{shown_name(figures['aggregators'])}: {len(figures['members'])} members "
        f"(a majority: {figures['majority']}), "
        f"fee {figures['fee_bps']} bps, {figures['records']} record(s), {figures['traded_wh']} Wh, "
        f"treasury {format_gnc(figures['treasury'])}"
    )
    if trade is not None:
        console.print(
            f"TID {trade['tid'][:16]}: MID {trade['mid']}, AER {trade['aer_wh']} Wh, "
            f"AEG {trade['aeg_wh']} Wh, "
            f"ET {format_gnc(trade['et'])}, TR {trade['tr_ms']} ms, TT {trade['tt_ms']} ms, "
            f"seller {trade['seller']} (DSS {trade['dss'][:16]}...), DSP {trade['dsp'][:16]}..."
        )


def _hex32(value: str, flag: str, what: str) -> bytes:
    """A 32-byte id given in hex on the command line (one clear line if it is not)."""
    try:
        key = bytes.fromhex(value)
    except ValueError:
        key = b""
    if len(key) != 32:
        raise ConfigError(f"{flag} {value[:70]!r}: give the 32-byte {what} in hex")
    return key


@app.command("ev")
def chain_ev(
    hotspot: Annotated[str, typer.Option("--hotspot", help="The charging hotspot's name.")],
    registrant: Registrant,
    deal: Annotated[str | None, typer.Option("--deal", help="A deal's id (hex) to show.")] = None,
    data_dir: OptDataDir = None,
    node: NodeUrl = None,
    as_json: JsonFlag = False,
) -> None:
    """A vehicle-to-vehicle charging hotspot: its terms, deals, energy, fees and penalties; with
    --deal one deal with the seed's record fields (in a data directory, or at the node at --node)."""
    by = parse_registrant(registrant)
    key = None if deal is None else _hex32(deal, "--deal", "deal id")
    queries: list[Query] = [
        (
            f"/ev-hotspots/{path_segment(hotspot)}?registrant={by.hex()}",
            HotspotAnswer,
            lambda view: hotspot_figures(view, by, hotspot),
            f"no charging hotspot named {hotspot!r} registered by {by.hex()}",
        )
    ]
    if key is not None:
        did = key
        queries.append(
            (
                f"/ev-deals/{did.hex()}",
                EvDealAnswer,
                lambda view: deal_figures(view, did),
                f"no deal {did.hex()[:16]}",
            )
        )
    figures, *found = _queries(node, data_dir, queries)
    record = found[0] if found else None
    if as_json:
        print(json.dumps(figures if record is None else {**figures, "record": record}))
        return
    console.print(
        f"{shown_name(figures['hotspot'])}: fee {format_gnc(figures['fee'])}/kWh (charging discount "
        f"{format_gnc(figures['charging_discount'])}/kWh, "
        f"parking discount {format_gnc(figures['parking_discount'])}/kWh), "
        f"penalty {figures['penalty_pct']} %; {figures['deals']} deal(s) settled, {figures['traded_wh']} Wh, "
        f"fees {format_gnc(figures['fees'])}, penalties {format_gnc(figures['penalties'])}"
    )
    if record is not None:
        console.print(
            f"deal {record['deal'][:16]} ({record['status']}): vehicle meter {record['vehicle_meter']}, "
            f"{record['energy_charged_wh']} of {record['energy_wh']} Wh charged "
            f"at {format_gnc(record['price'])}/kWh, "
            f"broken by {record['broken_by']}; station {record['station_signature'][:16]}..., "
            f"aggregator {record['processing_signature'][:16]}..."
        )


@app.command("backup")
def chain_backup(
    data_dir: DataDir,
    out: Annotated[
        Path, typer.Option("--out", help="New data directory to write the copy into (absent or empty).")
    ],
) -> None:
    """Copy a data directory's chain, also while its node runs, into a new data directory:
    one committed state, checked by opening the copy. The node key is not copied."""
    if os.path.lexists(out) and (not out.is_dir() or any(out.iterdir())):
        raise ConfigError(f"{out} exists and is not an empty directory; choose a new --out")
    source = Store(data_dir, readonly=True)
    made: list[Path] = []
    try:
        with as_keyboard_interrupt():  # (SIGTERM too: what was copied is removed)
            made = make_dirs(out)
            with console.status("copying the chain"):
                try:
                    source.backup(out / DB_NAME)
                except sqlite3.Error as exc:  # (the copy's side: the source's damage is StoreCorrupt)
                    raise StoreError(
                        f"cannot write the copy {out / DB_NAME}: {exc}; free some space, or choose "
                        "another --out"
                    ) from None
            for name in (GENESIS_NAME, CONFIG_NAME):
                if (data_dir / name).is_file():
                    write_text_file(out / name, (data_dir / name).read_text(encoding="utf-8"))
            try:
                copy = Chain.open(out, readonly=True)
            except StoreError as exc:
                found = exc.finding if isinstance(exc, StoreCorrupt) else str(exc)
                raise StoreCorrupt(
                    f"the copy of {data_dir} does not open ({type(exc).__name__}: {found}): {data_dir} "
                    f"itself is damaged; 'gridnet chain verify --data-dir {data_dir}' finds where"
                ) from None
    except BaseException:
        for written in out.iterdir() if out.is_dir() else ():  # (it was empty: all of it is ours)
            written.unlink()
        for folder in reversed(made):  # (the directories made for it, the deepest first)
            folder.rmdir()
        raise
    finally:
        source.close()
    try:
        head = copy.head
        console.print(
            f"backed up {copy.params.name} at height {head.height} ({head.hash.hex()[:16]}) to {out}; "
            f"run a node on it with --data-dir {out} and its node key (not copied)"
        )
    finally:
        copy.close()


@app.command("verify")
def chain_verify(
    data_dir: DataDir,
    as_json: JsonFlag = False,
    quiet: Annotated[bool, typer.Option("--quiet", help="No progress bar.")] = False,
) -> None:
    """Re-validate everything from genesis. Exit 0 when valid; otherwise exit 1 and
    name the first bad height and the rule."""
    if quiet:
        report = verify_chain(data_dir)
    else:
        with progress_bar() as progress:
            task = progress.add_task("verifying", total=None)

            def on_progress(done: int, total: int) -> None:
                progress.update(task, completed=done, total=total)

            report = verify_chain(data_dir, progress=on_progress)
    if as_json:
        print(
            json.dumps(
                {
                    "ok": report.ok,
                    "height": report.height,
                    "blocks": report.blocks,
                    "transactions": report.transactions,
                    "seconds": round(report.seconds, 3),
                    "tx_per_s": round(report.tx_per_s, 1),
                    "bad_height": report.bad_height,
                    "rule": report.rule,
                    "message": report.message,
                    "supply": None if report.supply is None else report.supply.as_dict(),
                }
            )
        )
    elif report.ok:
        console.print(
            f"chain valid: {count(report.blocks, 'block')}, {count(report.transactions, 'transaction')} "
            f"verified in {report.seconds:.2f} s ({report.tx_per_s:.0f} tx/s)"
        )
        if report.supply is not None:
            coin = report.supply
            console.print(
                f"coin: {format_gnc(coin.created)} created, "
                f"{format_gnc(sum(coin.held.values()))} held, {format_gnc(coin.destroyed)} destroyed"
            )
    else:
        print(f"chain invalid at height {report.bad_height}: {report.rule}: {report.message}")
    if not report.ok:
        raise typer.Exit(1)
