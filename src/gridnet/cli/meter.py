"""``gridnet meter``: run a simulated smart meter as its own process, and talk to one
(read a meter, open or close a relay, show the relay log); certify a meter at its factory and
have its key bind its registration to its owner on a chain. See docs/meter.md."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, TypeVar

import typer

from gridnet.cli.common import KeyFile, NodeUrl, PassphraseFile, console, public_key_in
from gridnet.crypto.address import address_from_public_key, address_from_text, address_to_text
from gridnet.errors import ConfigError, DecodeError
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


# --- registration: the factory's certificate, the meter's binding -------------------------

MAX_LABEL_CHARS = 64
"""Longest vendor, model, firmware or serial a certificate holds (``certificate.Label``)."""
MAX_REGISTRATION_FILE_BYTES = 64 * 1024
"""Largest certificate or registration file read (one is under 1 KiB of hex)."""
OutFile = Annotated[Path, typer.Option("--out", help="The file to write (one line of hex; not overwritten).")]


@app.command("certify")
def meter_certify(
    key: KeyFile,
    meter_key: Annotated[str, typer.Option("--meter-key", help="The meter's public key (hex).")],
    vendor: Annotated[str, typer.Option("--vendor", help="Vendor (1 to 64 characters).")],
    model: Annotated[str, typer.Option("--model", help="Model (1 to 64 characters).")],
    firmware: Annotated[str, typer.Option("--firmware", help="Firmware version it ships with.")],
    serial: Annotated[str, typer.Option("--serial", help="Serial number (1 to 64 characters).")],
    out: OutFile,
    passphrase_file: PassphraseFile = None,
) -> None:
    """As a manufacturer, at the factory: sign a meter's certificate (valid on any chain; the
    manufacturer is a registered authority with the manufacturer role where it registers)."""
    from gridnet.cli.passphrase import load_key
    from gridnet.meter.certificate import SignedCertificate, issue_certificate

    public_key = _public_key(meter_key)
    for option, label in (
        ("--vendor", vendor),
        ("--model", model),
        ("--firmware", firmware),
        ("--serial", serial),
    ):
        if not 1 <= len(label) <= MAX_LABEL_CHARS:
            raise ConfigError(
                f"{option} has {len(label)} characters: a certificate's labels have 1 to {MAX_LABEL_CHARS}"
            )
    _check_free(out)
    signer = load_key(key, passphrase_file)
    cert = issue_certificate(signer, public_key, vendor=vendor, model=model, firmware=firmware, serial=serial)
    _write_hex(out, cert, SignedCertificate, "certificate")
    console.print(
        f"certified meter {address_to_text(address_from_public_key(public_key))} "
        f"({vendor} {model}, firmware {firmware}, serial {serial}) in {out}"
    )


@app.command("bind")
def meter_bind(
    key: Annotated[Path, typer.Option("--key", help="The meter's key file (the meter signs).")],
    certificate: Annotated[
        Path, typer.Option("--certificate", help="Its certificate file (from 'gridnet meter certify').")
    ],
    owner: Annotated[str, typer.Option("--owner", help="The owner's address (gn...): who registers it.")],
    area: Annotated[str, typer.Option("--area", help="The grid area it is connected in.")],
    out: OutFile,
    data_dir: Annotated[
        Path | None, typer.Option("--data-dir", help="Data directory of the chain (or its running node).")
    ] = None,
    node: NodeUrl = None,
    firmware: Annotated[
        str | None,
        typer.Option("--firmware", help="A release it installed already (default: the certificate's)."),
    ] = None,
    image: Annotated[
        Path | None, typer.Option("--image", help="With --firmware: that release's image file.")
    ] = None,
    status_seq: Annotated[
        int | None,
        typer.Option(
            "--status-seq",
            min=0,
            help="With --firmware: the meter's status number now (one per release it installed, "
            "on any chain).",
        ),
    ] = None,
    passphrase_file: PassphraseFile = None,
) -> None:
    """As the meter (its key): sign its current status and bind its registration to OWNER on
    the chain the node or data directory holds; write the RegisterMeter for 'gridnet tx
    register-meter' (only OWNER can send it, on that chain only); nothing is sent."""
    from gridnet.cli.passphrase import load_key
    from gridnet.cli.tx import _chain_id, _image_hash
    from gridnet.encoding import area_problem
    from gridnet.ledger.txs.meter import RegisterMeter, registration
    from gridnet.meter.certificate import SignedCertificate, is_valid_certificate
    from gridnet.meter.status import MeterStatus, sign_status

    owner_address = address_from_text(owner)
    if (problem := area_problem(area)) is not None:
        raise ConfigError(f"--area {area!r}: {problem}")
    if (firmware is None) != (image is None):
        raise ConfigError("--firmware and --image go together: an installed release and its image file")
    if firmware is None and status_seq is not None:
        raise ConfigError("--status-seq goes with --firmware: a meter running its factory firmware is at 0")
    if firmware is not None and not status_seq:
        # A status number below the meter's would let its older statuses (signed before its
        # updates, for any chain) roll the chain's view of it back (StaleMeterStatus otherwise).
        raise ConfigError(
            "--firmware needs --status-seq N (1 or more): the meter's status number now, one more "
            "for every release it installed"
        )
    signed_cert = read_hex_file(certificate, SignedCertificate, "certificate")
    if not is_valid_certificate(signed_cert):
        raise ConfigError(f"certificate {certificate} is not signed by the manufacturer it names")
    _check_free(out)
    chain_id = _chain_id(data_dir, node)
    meter_key = load_key(key, passphrase_file)
    if meter_key.public_key != signed_cert.certificate.meter_key:
        certified = address_to_text(address_from_public_key(signed_cert.certificate.meter_key))
        raise ConfigError(
            f"key file {key} is meter {address_to_text(meter_key.address)}'s; certificate {certificate} "
            f"certifies meter {certified}"
        )
    status = None
    if firmware is not None and image is not None and status_seq is not None:
        cert = signed_cert.certificate
        now = MeterStatus(
            meter_key.address, status_seq, cert.vendor, cert.model, firmware, _image_hash(image)
        )
        status = sign_status(meter_key, now)
    payload = registration(meter_key, signed_cert, area, owner_address, chain_id, status)
    _write_hex(out, payload, RegisterMeter, "registration")
    console.print(
        f"meter {address_to_text(meter_key.address)} bound its registration in {area} to "
        f"{address_to_text(owner_address)} on chain {chain_id.hex()[:16]} in {out}: send it with "
        f"'gridnet tx register-meter --key OWNER_KEY --registration {out}'"
    )


def _check_free(out: Path) -> None:
    if out.exists() or out.is_symlink():
        raise ConfigError(f"--out {out} already exists; refusing to overwrite it (choose another path)")


def _write_hex(out: Path, obj: object, kind: type[object], what: str) -> None:
    """Write ``obj``'s canonical encoding as one line of hex; its fields checked first (a label
    too long is refused here, not by the chain)."""
    from gridnet.encoding import decode, encode
    from gridnet.files import write_text_file

    data = encode(obj)
    try:
        decode(data, kind, what=what)
    except DecodeError as exc:
        raise ConfigError(f"not a valid {what}: {exc}") from None
    try:
        write_text_file(out, data.hex() + "\n")
    except OSError as exc:
        raise ConfigError(f"cannot write {what} file {out}: {exc.strerror}") from None


T = TypeVar("T")


def read_hex_file(path: Path, kind: type[T], what: str) -> T:
    """The object of type ``kind`` a file written by ``_write_hex`` holds."""
    from gridnet.encoding import decode
    from gridnet.files import read_capped

    raw = read_capped(path, f"{what} file", MAX_REGISTRATION_FILE_BYTES)
    try:
        return decode(bytes.fromhex(raw.decode("ascii").strip()), kind, what=what)
    except (UnicodeDecodeError, ValueError, DecodeError):
        raise ConfigError(f"{what} file {path} does not hold a {what} (one line of hex)") from None


def _choice(text: str, choices: tuple[S, ...], what: str) -> S:
    for choice in choices:
        if text == choice:
            return choice
    raise ConfigError(f"{what} {text!r} is not one of {', '.join(choices)}")


def _public_key(text: str) -> bytes:
    key = public_key_in(text)
    if key is None:
        raise ConfigError(f"{text!r} is not a public key ({PUBLIC_KEY_BYTES} bytes in hex)")
    return key
