"""``gridnet meter``: run a simulated smart meter as its own process, and talk to one
(read a meter, open or close a relay, show the relay log). See docs/meter.md."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, TypeVar

import typer

from gridnet.cli.common import KeyFile, PassphraseFile, console
from gridnet.crypto.address import address_from_public_key, address_from_text, address_to_text
from gridnet.errors import ConfigError
from gridnet.meter.client import MeterClient
from gridnet.meter.device import ACTIONS, KINDS, MAX_CHANNELS, QUANTITIES, UNITS, sign_relay_command
from gridnet.units import PUBLIC_KEY_BYTES

app = typer.Typer(help="A simulated smart meter as a process (Helios's HTTP commands).", no_args_is_help=True)

S = TypeVar("S", bound=str)
MeterUrl = Annotated[str, typer.Argument(help="The meter's URL, e.g. http://127.0.0.1:9440.")]


def wall_ms() -> int:
    return time.time_ns() // 1_000_000


@app.command("run")
def meter_run(
    owner: Annotated[
        str, typer.Option("--owner", help="The owner's address (gn...): it may command the relays.")
    ],
    key: Annotated[Path | None, typer.Option("--key", help="The meter's key file.")] = None,
    generate: Annotated[
        bool, typer.Option("--generate", help="Run with a new random key (not kept).")
    ] = False,
    passphrase_file: PassphraseFile = None,
    dso: Annotated[
        list[str] | None,
        typer.Option(
            "--dso", help="A DSO authority's public key (hex) that may command the relays (repeatable)."
        ),
    ] = None,
    ac: Annotated[int, typer.Option("--ac", min=0, help="AC meters (and relays).")] = 1,
    dc: Annotated[int, typer.Option("--dc", min=0, help="DC meters (and relays).")] = 1,
    listen: Annotated[
        str, typer.Option("--listen", help="127.0.0.1:PORT (port 0: any free one).")
    ] = "127.0.0.1:0",
    clock: Annotated[
        str,
        typer.Option("--clock", help="wall, or sim: a clock only POST /clock moves (from --clock-origin)."),
    ] = "wall",
    clock_origin: Annotated[
        int | None,
        typer.Option(
            "--clock-origin",
            min=0,
            max=2**63 - 1,
            help="The sim clock's start, in ms since 1970 (default: now).",
        ),
    ] = None,
    info_file: Annotated[
        Path | None,
        typer.Option("--info-file", help="Write JSON {pid, url, meter, public_key} here once listening."),
    ] = None,
) -> None:
    """Run a meter: serve its HTTP commands on 127.0.0.1 until SIGTERM/Ctrl-C."""
    from gridnet.cli.passphrase import load_key
    from gridnet.crypto.keys import PrivateKey
    from gridnet.meter.device import Meter, SimClock
    from gridnet.meter.server import serve
    from gridnet.meter.state import MeterStateUnwritable, load_relay_nonces, save_relay_nonces, state_path
    from gridnet.node.config import parse_host_port

    # Every flag is checked before a passphrase is asked for.
    if key is not None and generate:
        raise ConfigError("--key and --generate exclude each other: give the meter's key, or make a new one")
    if key is None and not generate:
        raise ConfigError("give the meter's key: --key FILE, or --generate for a new one")
    if not 1 <= ac + dc <= MAX_CHANNELS:
        raise ConfigError(f"a meter has 1 to {MAX_CHANNELS} AC plus DC meters, not {ac + dc}")
    mode = _choice(clock, ("wall", "sim"), "clock")
    if mode == "wall" and clock_origin is not None:
        raise ConfigError("--clock-origin sets the sim clock's start: give it with --clock sim")
    host, port = parse_host_port(listen, "listen")
    owner_address = address_from_text(owner)
    authorities = frozenset(_public_key(k) for k in dso or ())
    if mode == "sim":
        the_clock: Callable[[], int] = SimClock(wall_ms() if clock_origin is None else clock_origin)
    else:
        the_clock = wall_ms
    if key is None:
        meter = Meter(PrivateKey.generate(), owner_address, authorities, ac=ac, dc=dc, clock=the_clock)
    else:
        # The nonces accepted survive a restart (KEY.state.json), so no command copied from the
        # public log acts again; a new key (--generate) is a new meter, which no old command names.
        state = state_path(key)
        nonces = load_relay_nonces(state)
        meter_key = load_key(key, passphrase_file)
        try:
            save_relay_nonces(state, nonces)  # (writable, before the meter takes a command)
        except MeterStateUnwritable as exc:
            raise ConfigError(str(exc)) from None
        meter = Meter(
            meter_key,
            owner_address,
            authorities,
            ac=ac,
            dc=dc,
            clock=the_clock,
            nonces=nonces,
            record_nonces=lambda n: save_relay_nonces(state, n),
        )
    serve(meter, host, port, info_file)


@app.command("read")
def meter_read(
    url: MeterUrl,
    kind: Annotated[str, typer.Argument(help="ac or dc.")],
    index: Annotated[
        int, typer.Argument(min=0, max=MAX_CHANNELS - 1, help="The AC or DC meter's number (from 0).")
    ],
    quantity: Annotated[str, typer.Argument(help=f"One of: {', '.join(QUANTITIES)}.")],
    meter_key: Annotated[
        str | None,
        typer.Option("--meter-key", help="The meter's public key (hex); default: the one it announces."),
    ] = None,
) -> None:
    """Read a meter; print its value and the signature check."""
    client = MeterClient(url, None if meter_key is None else _public_key(meter_key))
    signed = client.read(_choice(kind, KINDS, "kind"), index, _choice(quantity, QUANTITIES, "quantity"))
    a = signed.answer
    console.print(
        f"{a.kind} meter {a.index} {a.quantity}: {a.value} {UNITS[a.quantity]} at {a.timestamp_ms} ms "
        f"(answer {a.sequence}), signed by meter {address_to_text(a.meter)}: verified"
    )


@app.command("relay")
def meter_relay(
    url: MeterUrl,
    relay: Annotated[
        int, typer.Argument(min=0, max=255, help="The relay's number (AC meters first, then DC).")
    ],
    action: Annotated[str, typer.Argument(help="open or close.")],
    key: KeyFile,
    passphrase_file: PassphraseFile = None,
    reason: Annotated[
        str, typer.Option("--reason", help="Why (kept in the meter's log; at most 120 characters).")
    ] = "",
    nonce: Annotated[
        int | None,
        typer.Option("--nonce", min=0, max=2**63 - 1, help="Above your last one (default: the time in ms)."),
    ] = None,
) -> None:
    """Open or close a relay, with a command signed by the owner's or a DSO authority's key."""
    from gridnet.cli.passphrase import load_key

    if len(reason) > 120:
        raise ConfigError(f"--reason has {len(reason)} characters: at most 120 are kept")
    signer = load_key(key, passphrase_file)
    client = MeterClient(url)
    signed = sign_relay_command(
        signer,
        client.address,
        relay,
        _choice(action, ACTIONS, "action"),
        wall_ms() if nonce is None else nonce,
        reason,
    )
    state = client.command(signed)
    console.print(
        f"relay {state.relay} ({state.kind} meter {state.index}) is {'closed' if state.closed else 'open'}: "
        f"command from {address_to_text(signer.address)} accepted"
    )


@app.command("log")
def meter_log(url: MeterUrl) -> None:
    """Show the relays and the log of accepted relay commands."""
    client = MeterClient(url)
    for s in client.relays():
        console.print(f"relay {s.relay} ({s.kind} meter {s.index}): {'closed' if s.closed else 'open'}")
    for entry in client.log():
        c = entry.signed.command
        issuer = address_to_text(address_from_public_key(c.issuer))
        console.print(
            f"{entry.at_ms} ms: {c.action} relay {c.relay} by {issuer} ({entry.role}), nonce {c.nonce}"
            + (f": {c.reason}" if c.reason else "")
        )


def _choice(text: str, choices: tuple[S, ...], what: str) -> S:
    for choice in choices:
        if text == choice:
            return choice
    raise ConfigError(f"{what} {text!r} is not one of {', '.join(choices)}")


def _public_key(text: str) -> bytes:
    try:
        key = bytes.fromhex(text)
    except ValueError:
        key = b""
    if len(key) != PUBLIC_KEY_BYTES:
        raise ConfigError(f"{text!r} is not a public key ({PUBLIC_KEY_BYTES} bytes in hex)")
    return key
