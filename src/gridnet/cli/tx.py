"""``gridnet tx``: sign transactions and submit them."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from gridnet.cli.common import DataDir, KeyFile, console, parse_gnc
from gridnet.crypto.address import address_from_text
from gridnet.crypto.keys import read_key_file
from gridnet.identity import find_identity_proof
from gridnet.ledger.chain import Chain
from gridnet.ledger.registry import Payload
from gridnet.ledger.txs.bond import Bond, Unbond
from gridnet.ledger.txs.identity import RegisterIdentity
from gridnet.ledger.txs.transfer import Transfer
from gridnet.ledger.wallet import submit

app = typer.Typer(help="Sign transactions into a data directory's pending pool.", no_args_is_help=True)


def _submit(data_dir: Path, key: Path, payload: Payload, fee: int | None) -> None:
    signer = read_key_file(key)
    chain = Chain.open(data_dir)
    try:
        event = submit(chain, signer, payload, fee)
    finally:
        chain.close()
    console.print(f"pending {event.txid.hex()} (mine it with 'gridnet chain mine --data-dir {data_dir}')")


FeeOpt = Annotated[int | None, typer.Option("--fee", help="Fee in base units (default: the minimum).")]


@app.command("transfer")
def tx_transfer(
    data_dir: DataDir,
    key: KeyFile,
    to: Annotated[str, typer.Option("--to", help="Recipient address (gn...).")],
    amount: Annotated[str, typer.Option("--amount", help="Amount in GNC, e.g. 2.5.")],
    fee: FeeOpt = None,
) -> None:
    """Send coin to an address."""
    _submit(data_dir, key, Transfer(address_from_text(to), parse_gnc(amount)), fee)


@app.command("register-identity")
def tx_register_identity(data_dir: DataDir, key: KeyFile, fee: FeeOpt = None) -> None:
    """Solve the identity proof-of-work for the key's address and register it."""
    signer = read_key_file(key)
    chain = Chain.open(data_dir)
    target = chain.params.identity_target_int
    chain.close()
    with console.status("solving the identity proof-of-work"):
        proof = find_identity_proof(signer.address, target)
    console.print(f"identity proof: rounds {proof.rounds}, nonce {proof.nonce}")
    _submit(data_dir, key, RegisterIdentity(proof), fee)


@app.command("bond")
def tx_bond(
    data_dir: DataDir, key: KeyFile, amount: Annotated[str, typer.Option("--amount")], fee: FeeOpt = None
) -> None:
    """Lock coin as the identity's bond."""
    _submit(data_dir, key, Bond(parse_gnc(amount)), fee)


@app.command("unbond")
def tx_unbond(
    data_dir: DataDir, key: KeyFile, amount: Annotated[str, typer.Option("--amount")], fee: FeeOpt = None
) -> None:
    """Release bonded coin (back in the balance after the unbonding delay)."""
    _submit(data_dir, key, Unbond(parse_gnc(amount)), fee)
