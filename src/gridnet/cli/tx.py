"""``gridnet tx``: sign a transaction and submit it — to a running node (``--node URL``, or
the node running on ``--data-dir``), else into a data directory's pending pool.

Either way it is checked up front as a miner would apply it (after the sender's pending
transactions), so a transaction that cannot be mined is refused with its rule at once.
"""

from __future__ import annotations

import inspect
import itertools
import os
import stat
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Annotated, Any, Final

import msgspec
import msgspec.inspect
import typer

from gridnet.cli.common import (
    MAX_UNITS,
    KeyFile,
    NodeUrl,
    PassphraseFile,
    Registrant,
    TokenFile,
    connect,
    console,
    parse_gnc,
    parse_registrant,
    public_key_in,
)
from gridnet.cli.passphrase import load_key
from gridnet.crypto.address import address_from_text, address_to_text
from gridnet.crypto.keys import PrivateKey
from gridnet.encoding import AREA_MAX_CHARS, decode, encode
from gridnet.errors import (
    AlreadyKnown,
    ConfigError,
    DecodeError,
    GridnetError,
    NodeUnavailable,
    UnknownController,
    UnknownCreditBank,
)
from gridnet.files import read_toml
from gridnet.identity import find_identity_proof
from gridnet.ledger.blocks import Header, SignedVote
from gridnet.ledger.chain import Chain
from gridnet.ledger.genesis import chain_id_of
from gridnet.ledger.params import (
    MAX_TOTAL_VOTES,
    MAX_VALIDATORS,
    ChainParams,
    Validator,
    parse_time_ms,
    severity_code,
)
from gridnet.ledger.registry import Payload
from gridnet.ledger.transactions import min_fee, sign_transaction, tx_id
from gridnet.ledger.txs.advisory import MAX_AFFECTED_VERSIONS, PublishAdvisory
from gridnet.ledger.txs.auction import PlaceOrder
from gridnet.ledger.txs.authority import RegisterAuthority
from gridnet.ledger.txs.bond import Bond, Unbond
from gridnet.ledger.txs.credit import (
    CreditCriteria,
    RegisterCreditBank,
    RepayLoan,
    ReportMissedRepayment,
    RequestLoan,
    WithdrawCapital,
    bank_id,
    criteria_problem,
)
from gridnet.ledger.txs.firmware import PublishFirmware
from gridnet.ledger.txs.helios import (
    MAX_MEMBERS,
    MAX_SPAN_INTERVALS,
    CloseRedemption,
    EnrollProducer,
    IslandConsent,
    IslandNode,
    MemberSignature,
    MintCredits,
    RedeemCredits,
    RegisterController,
    RegisterIsland,
    TransferCredits,
    controller_id,
    island_consents,
    island_problem,
    sign_as_member,
    verify_island_consent,
)
from gridnet.ledger.txs.identity import RegisterIdentity
from gridnet.ledger.txs.transfer import Transfer
from gridnet.ledger.txs.validators import Approval, ChangeValidators, ReportValidatorFault, approve
from gridnet.ledger.wallet import submit
from gridnet.market.orders import Side
from gridnet.market.policy import parse_price
from gridnet.meter.status import firmware_image_hash_of_chunks
from gridnet.node.client import (
    INDEX_BUILDING,
    AccountAnswer,
    NodeClient,
    NodeRefused,
    ParamsAnswer,
    TxLookupAnswer,
    expect,
    why_lost,
)
from gridnet.security.roles import Role
from gridnet.units import INTERVAL_MS, interval_of, is_decimal

app = typer.Typer(
    help="Sign a transaction and submit it to a running node or a data directory's pending pool.",
    no_args_is_help=True,
)

MaybeDataDir = Annotated[
    Path | None,
    typer.Option("--data-dir", help="Data directory: its running node, else its pending pool."),
]
FeeOpt = Annotated[
    int | None, typer.Option("--fee", min=0, max=MAX_UNITS, help="Fee in base units (default: the minimum).")
]
NonceOpt = Annotated[
    int | None,
    typer.Option(
        "--nonce",
        min=0,
        max=2**63 - 1,
        help="Nonce to sign with (default: the sender's next free one). The nonce of one of its "
        "pending transactions replaces that one, given a --fee 10% higher and higher by at least "
        "its own minimum fee.",
    ),
]
WaitOpt = Annotated[
    bool, typer.Option("--wait", help="Wait until a block includes it (with a running node).")
]
U63_MAX = 2**63 - 1
"""The largest whole number a transaction field holds (larger ones are refused as options)."""
NAME_CHARS: Final = 64
"""Characters of a name or label a transaction carries, at most (a controller's, a bank's, an
authority's, a vendor, a model, a version...)."""


def _text(text: str, option: str, what: str, least: int = 1, most: int = NAME_CHARS) -> str:
    """``text``, a transaction's text field of ``least`` to ``most`` characters; one line naming
    ``option`` otherwise (the encoder's 'Expected str of length >= 1 - at $[0][1]' came after
    the key was loaded and the node asked)."""
    if not least <= len(text) <= most:
        raise ConfigError(f"{option} has {len(text)} characters: {what} has {least} to {most}")
    return text


TimeoutOpt = Annotated[float, typer.Option("--timeout", min=1, help="Seconds --wait waits at most.")]

Build = Callable[[ChainParams, PrivateKey], Payload]
"""The payload, from the chain's parameters and the signer (the identity proof-of-work needs
both)."""


def _send(
    build: Build,
    *,
    key: Path,
    passphrase_file: Path | None,
    fee: int | None,
    nonce: int | None,
    data_dir: Path | None,
    node: str | None,
    token_file: Path | None,
    wait: bool,
    timeout: float,
) -> None:
    if data_dir is None and node is None:
        raise ConfigError("say where to send it: --node URL (a running node) or --data-dir DIR")
    signer = load_key(key, passphrase_file)
    client = connect(node, data_dir, token_file)
    if client is not None:
        try:
            _send_to_node(client, signer, build, fee, nonce, wait, timeout)
        except NodeRefused as exc:
            raise _naming_groups(exc) from None
        finally:
            client.close()
        return
    assert data_dir is not None
    if wait:
        raise ConfigError(f"--wait needs a running node; none runs on {data_dir}")
    chain = Chain.open(data_dir)
    try:
        event = submit(chain, signer, build(chain.params, signer), fee, nonce)
    except GridnetError as exc:
        raise _naming_groups(exc) from None
    finally:
        chain.close()
    console.print(f"pending {event.txid.hex()} (mine it with 'gridnet chain mine --data-dir {data_dir}')")


_ADDRESSED: dict[str, tuple[str, str, str, str]] = {}
"""The groups the command addresses by name and registrant (``_controller``, ``_bank``): the
first 16 hex digits of each id, as the chain's refusals quote it, -> what it is, its name,
the registrant's key and the option naming it."""
UNKNOWN_GROUP_RULES: Final = (UnknownController.__name__, UnknownCreditBank.__name__)


def _addressed(what: str, option: str, name: str, registrant: bytes, group_id: bytes) -> bytes:
    _ADDRESSED[group_id.hex()[:16]] = (what, name, registrant.hex(), option)
    return group_id


def _naming_groups(exc: GridnetError) -> GridnetError:
    """``exc``, a refusal that a group is unknown ('no credit bank 178f212eafb7b271'), with the
    name and the registrant the command computed that id from, and what to check."""
    if exc.rule not in UNKNOWN_GROUP_RULES:
        return exc
    for prefix, (what, name, registrant, option) in _ADDRESSED.items():
        if prefix in str(exc):
            exc.args = (
                f"no {what} named {name!r} is registered by {registrant} (id {prefix}...): check "
                f"--registrant (the public key that registered it, as 'gridnet keys show --key FILE "
                f"--public-key' prints it) and {option}",
            )
            break
    return exc


def _node_chain(client: NodeClient) -> tuple[ChainParams, bytes]:
    """The node's chain parameters and the chain id to sign for: the parameters' own, computed
    here (a node naming another chain id beside them is refused: it could get a signature valid
    on another chain)."""
    answer = expect(client.request("GET", "/params"), ParamsAnswer, "GET /params")
    try:
        params = decode(bytes.fromhex(answer.hex), ChainParams, what="chain parameters")
    except (ValueError, DecodeError) as exc:
        raise NodeUnavailable(
            f"the node at {client.url} sent chain parameters that do not decode: {exc}"
        ) from None
    chain_id = chain_id_of(params)  # (signed for: the parameters' own id, not one the node names)
    if answer.chain_id != chain_id.hex():
        shown = "".join(c if c.isprintable() else "?" for c in answer.chain_id[:16])
        raise NodeUnavailable(
            f"the node at {client.url} names chain id {shown} but its parameters are those "
            f"of chain {params.name!r} ({chain_id.hex()[:16]}): nothing was signed; is it the node you meant?"
        )
    return params, chain_id


def _send_to_node(
    client: NodeClient,
    signer: PrivateKey,
    build: Build,
    fee: int | None,
    nonce: int | None,
    wait: bool,
    timeout: float,
) -> None:
    params, chain_id = _node_chain(client)
    path = f"/accounts/{address_to_text(signer.address)}"
    if nonce is None:
        nonce = expect(client.request("GET", path), AccountAnswer, f"GET {path}").next_nonce
    payload = build(params, signer)
    fee = min_fee(params.min_fee_per_byte, payload, nonce) if fee is None else fee
    tx = sign_transaction(signer, chain_id, payload, nonce, fee)
    txid = tx_id(tx).hex()
    try:
        client.request("POST", "/transactions", {"tx": encode(tx).hex()})  # NodeRefused names the rule
    except NodeUnavailable as exc:
        raise NodeUnavailable(
            f"{exc} It may have taken {txid} all the same: look it up with GET /transactions/{txid} "
            "before sending it again"
        ) from None
    except NodeRefused as exc:
        if exc.code != AlreadyKnown.__name__:
            raise
        console.print(f"already pending at {client.url}: {txid} (nonce {nonce}, fee {fee})")
    else:
        console.print(
            f"accepted {txid} by the node at {client.url} on chain {params.name!r} (nonce {nonce}, fee {fee})"
        )
    if not wait:
        return
    deadline = time.monotonic() + timeout
    with console.status("waiting for a block to include it"):
        while time.monotonic() < deadline:
            try:
                answer = client.get(f"/transactions/{txid}")
            except NodeUnavailable as exc:
                raise NodeUnavailable(
                    f"{exc} (waiting for {txid[:16]}, which it accepted: it may still be mined; look it up "
                    f"with GET /transactions/{txid} once the node answers)"
                ) from None
            except NodeRefused as exc:
                if exc.code != INDEX_BUILDING:
                    raise
                time.sleep(0.5)  # (the node is indexing its chain: ask again)
                continue
            if answer is None:
                why = why_lost(client, txid)
                raise NodeUnavailable(
                    f"the node let {txid} go without a block: {why}"
                    if why is not None
                    else f"the node no longer holds {txid} and no block includes it: it was dropped (see the "
                    "node's log with --debug mempool)"
                )
            found = expect(answer, TxLookupAnswer, f"GET /transactions/{txid}")
            if found.status == "confirmed" and found.block is not None:
                console.print(f"mined in block {found.block.height} ({found.block.hash[:16]})")
                return
            time.sleep(0.5)
    raise NodeUnavailable(f"{txid} was not mined within {timeout:.0f} s; it is still pending at {client.url}")


def _shared_options(
    key: KeyFile,
    fee: FeeOpt = None,
    nonce: NonceOpt = None,
    data_dir: MaybeDataDir = None,
    node: NodeUrl = None,
    api_token_file: TokenFile = None,
    passphrase_file: PassphraseFile = None,
    wait: WaitOpt = False,
    timeout: TimeoutOpt = 300.0,
) -> None:
    """The options every transaction command takes (their declaration, for ``tx_command``)."""


_SHARED = inspect.signature(_shared_options, eval_str=True).parameters


def tx_command(name: str) -> Callable[[Callable[..., Build]], Callable[..., Build]]:
    """Register a transaction command: the decorated function takes the command's own
    options and returns how to build its payload; the command also takes the shared options
    (``_shared_options``) and signs and sends what it builds (``_send``)."""

    def register(payload_of: Callable[..., Build]) -> Callable[..., Build]:
        def command(**options: Any) -> None:
            _ADDRESSED.clear()
            shared = {k: options.pop(k) for k in _SHARED}
            shared["token_file"] = shared.pop("api_token_file")
            _send(payload_of(**options), **shared)

        own = inspect.signature(payload_of, eval_str=True).parameters.values()
        parameters = [  # keyword-only: options with defaults may come before those without
            p.replace(kind=inspect.Parameter.KEYWORD_ONLY) for p in (*own, *_SHARED.values())
        ]
        command.__signature__ = inspect.Signature(parameters)  # type: ignore[attr-defined]
        command.__annotations__ = {p.name: p.annotation for p in parameters}
        command.__doc__ = payload_of.__doc__
        app.command(name)(command)
        return payload_of

    return register


def _constant(payload: Payload) -> Build:
    return lambda _params, _signer: payload


@tx_command("transfer")
def tx_transfer(
    to: Annotated[str, typer.Option("--to", help="Recipient address (gn...).")],
    amount: Annotated[str, typer.Option("--amount", help="Amount in GNC, e.g. 2.5.")],
) -> Build:
    """Send coin to an address."""
    return _constant(Transfer(address_from_text(to), parse_gnc(amount)))


@tx_command("register-identity")
def tx_register_identity() -> Build:
    """Solve the identity proof-of-work for the key's address and register it."""

    def build(params: ChainParams, signer: PrivateKey) -> Payload:
        with console.status("solving the identity proof-of-work"):
            proof = find_identity_proof(signer.address, params.identity_target_int)
        console.print(f"identity proof: rounds {proof.rounds}, nonce {proof.nonce}")
        return RegisterIdentity(proof)

    return build


@tx_command("bond")
def tx_bond(amount: Annotated[str, typer.Option("--amount", help="Amount in GNC to lock.")]) -> Build:
    """Lock coin as the identity's bond (needs a registered identity)."""
    return _constant(Bond(parse_gnc(amount)))


@tx_command("unbond")
def tx_unbond(amount: Annotated[str, typer.Option("--amount", help="Amount in GNC to release.")]) -> Build:
    """Release bonded coin (back in the balance after the unbonding delay)."""
    return _constant(Unbond(parse_gnc(amount)))


Vendor = Annotated[str, typer.Option("--vendor", help="Meter vendor, as its certificates name it.")]
Model = Annotated[str, typer.Option("--model", help="Meter model, as its certificates name it.")]
ROLES_HELP = "Comma-separated: " + ", ".join(str(r.name).lower() for r in Role) + "."


@tx_command("register-authority")
def tx_register_authority(
    roles: Annotated[str, typer.Option("--roles", help=ROLES_HELP)],
    name: Annotated[str, typer.Option("--name", help="The authority's name (1 to 64 characters).")],
) -> Build:
    """Declare the key's identity an authority with these roles (needs a registered identity)."""
    try:
        role = Role.parse(roles.split(","))
    except ValueError as exc:
        raise ConfigError(f"--roles: {exc}") from None
    return _constant(RegisterAuthority(int(role), _text(name, "--name", "an authority's name")))


@tx_command("publish-firmware")
def tx_publish_firmware(
    vendor: Vendor,
    model: Model,
    version: Annotated[str, typer.Option("--version", help="The release's firmware version.")],
    image: Annotated[Path, typer.Option("--image", help="The image file (its hash goes on chain).")],
) -> Build:
    """As a manufacturer: publish a firmware release (a meter's status may then name it)."""
    vendor, model = _text(vendor, "--vendor", "a vendor"), _text(model, "--model", "a model")
    version = _text(version, "--version", "a firmware version")
    return _constant(PublishFirmware(vendor, model, version, _image_hash(image)))


@tx_command("register-meter")
def tx_register_meter(
    registration: Annotated[
        Path,
        typer.Option(
            "--registration", help="The registration file your meter bound to you ('gridnet meter bind')."
        ),
    ],
) -> Build:
    """As a meter's owner: register it with the registration its key bound to you on this chain
    (its certificate, its signed status and its binding)."""
    from gridnet.cli.meter import read_hex_file
    from gridnet.ledger.txs.meter import RegisterMeter
    from gridnet.meter.binding import is_bound_to

    payload = read_hex_file(registration, RegisterMeter, "registration")

    def build(params: ChainParams, signer: PrivateKey) -> Payload:
        cert = payload.certificate.certificate
        if not is_bound_to(cert.meter_key, chain_id_of(params), signer.address, payload.binding):
            you = address_to_text(signer.address)
            raise ConfigError(
                f"registration {registration}: the meter did not bind it to {you} on chain "
                f"{params.name!r}; have the meter bind it with 'gridnet meter bind --owner {you}' for this "
                "chain (a registration is sent by the owner it names, on its chain only)"
            )
        return payload

    return build


MAX_IMAGE_BYTES: Final = 256 * 1024 * 1024
"""The largest firmware image ``publish-firmware`` hashes (256 MiB; a meter's is a few MiB)."""
IMAGE_CHUNK_BYTES: Final = 1024 * 1024


def _image_hash(image: Path) -> bytes:
    """The release hash of the image file, hashed as it is read: a regular file of at most
    ``MAX_IMAGE_BYTES`` (a device such as /dev/zero, or a FIFO, would never end: it was read
    whole into memory)."""
    try:
        # O_NONBLOCK: opening a FIFO waits for a writer without it (a regular file ignores it).
        fd = os.open(image, os.O_RDONLY | os.O_NONBLOCK)
        with os.fdopen(fd, "rb") as file:
            found = os.fstat(file.fileno())
            if not stat.S_ISREG(found.st_mode):
                raise ConfigError(f"--image {image} is not a regular file; give the firmware image's file")
            if found.st_size > MAX_IMAGE_BYTES:
                raise ConfigError(
                    f"--image {image} has {found.st_size:,} bytes: a firmware image has at most "
                    f"{MAX_IMAGE_BYTES:,} (256 MiB)"
                )

            def chunks() -> Iterator[bytes]:
                read = 0
                while chunk := file.read(IMAGE_CHUNK_BYTES):
                    read += len(chunk)
                    if read > MAX_IMAGE_BYTES:  # (it grew while being read)
                        raise ConfigError(
                            f"--image {image} grew beyond {MAX_IMAGE_BYTES:,} bytes as it was read"
                        )
                    yield chunk

            return firmware_image_hash_of_chunks(chunks())
    except OSError as exc:
        raise ConfigError(f"--image {image}: cannot read it ({exc.strerror or exc})") from None


Affected = Annotated[str, typer.Option("--affected", help="Comma-separated firmware versions it covers.")]
Severity = Annotated[str, typer.Option("--severity", help="low, medium, high or critical.")]
FixedIn = Annotated[str, typer.Option("--fixed-in", help="The version that fixes it (none yet: omit).")]
Withdraw = Annotated[bool, typer.Option("--withdraw", help="Withdraw your advisory with this id.")]


@tx_command("publish-advisory")
def tx_publish_advisory(
    advisory_id: Annotated[str, typer.Option("--id", help="Your name for it, e.g. GN-2026-0042.")],
    vendor: Vendor,
    model: Model,
    affected: Affected = "",
    severity: Severity = "high",
    fixed_in: FixedIn = "",
    withdraw: Withdraw = False,
) -> Build:
    """As an advisory authority the genesis names: publish, replace or withdraw an advisory
    (meters running an affected version are then refused by consensus until updated)."""
    versions = tuple(v.strip() for v in affected.split(",") if v.strip())
    if not withdraw and not versions:
        raise ConfigError("--affected: name the versions the advisory covers, e.g. --affected 1.0.0,1.0.1")
    _text(advisory_id, "--id", "an advisory's id")
    vendor, model = _text(vendor, "--vendor", "a vendor"), _text(model, "--model", "a model")
    for v in versions:
        _text(v, "--affected", "each version")
    if len(versions) > MAX_AFFECTED_VERSIONS or len(set(versions)) != len(versions):
        raise ConfigError(
            f"--affected lists {len(versions)} versions: an advisory lists 1 to "
            f"{MAX_AFFECTED_VERSIONS}, each once"
        )
    if fixed_in and fixed_in in versions:
        raise ConfigError(f"--fixed-in {fixed_in!r} is one of the --affected versions")
    code = severity_code(severity, "--severity")
    fixed_in = _text(fixed_in, "--fixed-in", "the fixing version", least=0)
    return _constant(PublishAdvisory(advisory_id, vendor, model, versions, code, fixed_in, not withdraw))


At = Annotated[
    str, typer.Option("--at", help="Delivery interval's start, ISO 8601 UTC (2026-06-21T12:00:00Z).")
]
Price = Annotated[
    str, typer.Option("--price", help="A bid's cap or an offer's floor, e.g. \"0.12 GNC/kWh\".")
]


@tx_command("place-order")
def tx_place_order(
    side: Annotated[str, typer.Option("--side", help="bid (buy) or offer (sell).")],
    meter: Annotated[str, typer.Option("--meter", help="Your meter (gn...) in the order's area.")],
    area: Annotated[str, typer.Option("--area", help="The market area.")],
    at: At,
    wh: Annotated[int, typer.Option("--wh", min=1, max=U63_MAX, help="Energy, in Wh.")],
    price: Price,
) -> Build:
    """On a chain with on-chain auctions: place a bid or an offer (a bid locks its cost)."""
    sides = {"bid": Side.BID, "offer": Side.OFFER}
    if side.lower() not in sides:
        raise ConfigError(f"--side {side!r}: use bid or offer")
    start = parse_time_ms(at, "--at")
    if start % INTERVAL_MS:
        raise ConfigError(f"--at {at}: a delivery interval starts on a quarter hour (e.g. 12:00, 12:15)")
    area = _text(area, "--area", "an area", most=AREA_MAX_CHARS)
    order = PlaceOrder(sides[side.lower()], address_from_text(meter), area, interval_of(start), wh, 0)
    return _constant(msgspec.structs.replace(order, price=parse_price(price, "--price")))


Member = Annotated[
    list[str],
    typer.Option(
        "--member", help="A validator of the new set: its public key in hex, optionally :VOTES (repeat)."
    ),
]
SetSeq = Annotated[
    int, typer.Option("--seq", min=1, max=U63_MAX, help="The set's next sequence number (its current + 1).")
]


def _members(texts: list[str]) -> tuple[Validator, ...]:
    """The ``--member KEY[:VOTES]`` options as a validator set, refused as the ledger would
    refuse it (``validate_change_validators``) but by the option: each key once, at most
    ``MAX_VALIDATORS`` members, each with at least 1 vote and all together fewer than
    ``MAX_TOTAL_VOTES`` (a vote weight past 2^64 was an OverflowError, a key given twice was
    signed)."""
    members: dict[bytes, Validator] = {}
    for text in texts:
        key_hex, _, votes = text.partition(":")
        try:
            key = bytes.fromhex(key_hex)
        except ValueError:
            key = b""
        if not votes:
            weight = 1
        elif is_decimal(votes) and len(votes) <= 20:
            weight = int(votes)
        else:
            weight = 0
        if len(key) != 32 or not 1 <= weight < MAX_TOTAL_VOTES:
            raise ConfigError(
                f"--member {text!r}: give a 32-byte public key in hex, optionally :VOTES "
                f"(1 to {MAX_TOTAL_VOTES - 1:,})"
            )
        if key in members:
            raise ConfigError(
                f"--member {key.hex()} is given twice; give each member once, with its whole vote weight"
            )
        members[key] = Validator(key, weight)
    if len(members) > MAX_VALIDATORS:
        raise ConfigError(
            f"--member is given {len(members)} times: a validator set has at most {MAX_VALIDATORS}"
        )
    total = sum(m.votes for m in members.values())
    if total >= MAX_TOTAL_VOTES:
        raise ConfigError(
            f"--member: the members' votes come to {total:,}; a validator set's are fewer than "
            f"{MAX_TOTAL_VOTES:,} together"
        )
    return tuple(sorted(members.values(), key=lambda m: m.key))


@tx_command("change-validators")
def tx_change_validators(
    seq: SetSeq,
    member: Member,
    approval: Annotated[
        list[str],
        typer.Option("--approval", help="KEY:SIGNATURE (hex) from 'gridnet tx approve-validators' (repeat)."),
    ],
) -> Build:
    """On a permissioned chain: replace the validator set (approved by members holding more
    than two thirds of the current votes), once the block that includes it is final under the
    current set, after a hand-over (docs/protocol.md 22)."""
    approvals = tuple(Approval(key, sig) for key, sig in _key_signatures("--approval", approval))
    return _constant(ChangeValidators(seq, _members(member), approvals))


def _key_signatures(option: str, given: list[str]) -> list[tuple[bytes, bytes]]:
    """(key, signature) of each ``option`` value, KEY:SIGNATURE in hex (one line naming a
    value that is not)."""
    pairs = []
    for text in given:
        key_hex, _, sig_hex = text.partition(":")
        try:
            pairs.append((bytes.fromhex(key_hex), bytes.fromhex(sig_hex)))
        except ValueError:
            raise ConfigError(f"{option} {text[:24]}...: give KEY:SIGNATURE in hex") from None
    return pairs


def _chain_id(data_dir: Path | None, node: str | None) -> bytes:
    """The id of the chain to sign for: its running node's (``node``, or the one on
    ``data_dir``), else that data directory's."""
    client = connect(node, data_dir)
    if client is not None:
        try:
            _, chain_id = _node_chain(client)
        finally:
            client.close()
        return chain_id
    if data_dir is None:
        raise ConfigError("say which chain: --node URL or --data-dir DIR")
    chain = Chain.open(data_dir, readonly=True)
    try:
        return chain.chain_id
    finally:
        chain.close()


@app.command("approve-validators")
def approve_validators(
    key: KeyFile,
    seq: SetSeq,
    member: Member,
    data_dir: MaybeDataDir = None,
    node: NodeUrl = None,
    passphrase_file: PassphraseFile = None,
) -> None:
    """As a validator: sign your approval of a new validator set and print it (KEY:SIGNATURE,
    for 'gridnet tx change-validators --approval'); nothing is sent."""
    members = _members(member)
    chain_id = _chain_id(data_dir, node)
    signer = load_key(key, passphrase_file)
    signed = approve(signer, chain_id, seq, members)
    console.print(f"{signed.key.hex()}:{signed.signature.hex()}")


@tx_command("report-validator-fault")
def tx_report_validator_fault(
    header: Annotated[
        list[str] | None, typer.Option("--header", help="A sealed header, canonical bytes in hex (give two).")
    ] = None,
    vote: Annotated[
        list[str] | None, typer.Option("--vote", help="A signed vote, canonical bytes in hex (give two).")
    ] = None,
) -> Build:
    """On a permissioned chain: prove that a validator sealed two blocks for one slot or
    signed two conflicting votes (it leaves the set)."""
    try:
        headers = tuple(decode(bytes.fromhex(h), Header, what="header") for h in header or ())
        votes = tuple(decode(bytes.fromhex(v), SignedVote, what="vote") for v in vote or ())
    except ValueError as exc:
        raise ConfigError(f"--header/--vote: not hex ({exc})") from None
    if sorted((len(headers), len(votes))) != [0, 2]:
        raise ConfigError("give two --header or two --vote")
    return _constant(ReportValidatorFault(headers=headers, votes=votes))


Controller = Annotated[str, typer.Option("--controller", help="The Helios controller's name.")]


def _controller(name: str, registrant: str) -> bytes:
    """The id of the controller ``name`` that the key ``registrant`` (--registrant) registered."""
    key = parse_registrant(registrant)
    _text(name, "--controller", "a controller's name")  # (no other name was ever registered)
    return _addressed("Helios controller", "--controller", name, key, controller_id(key, name))


MemberKeys = Annotated[
    list[Path],
    typer.Option(
        "--member-key", help="Key file of a consortium member who signs this (repeat up to the threshold)."
    ),
]


MemberPassphraseFiles = Annotated[
    list[Path] | None,
    typer.Option(
        "--member-passphrase-file",
        help="File with the passphrase of the --member-key in the same place (repeat for each, or "
        "give none: GRIDNET_PASSPHRASE, else a prompt).",
    ),
]


def _member_signed(
    act: Any, member_keys: list[Path], passphrase_files: list[Path] | None, *, registration: bool = False
) -> Build:
    """Build ``act`` signed by each member whose key file is given (with the id of the chain
    it is sent to; a ``registration`` also for the key that sends it, its registrant);
    ``passphrase_files``: none, or one per key file, in the same order."""
    files: list[Path | None] = [*passphrase_files] if passphrase_files else [None] * len(member_keys)
    if len(files) != len(member_keys):
        raise ConfigError(
            f"{len(files)} --member-passphrase-file for {len(member_keys)} --member-key: give one for each "
            "member key, in the same order, or none"
        )
    keys = [load_key(path, file) for path, file in zip(member_keys, files, strict=True)]

    def build(params: ChainParams, signer: PrivateKey) -> Payload:
        registrant = signer.public_key if registration else None
        signatures = tuple(sign_as_member(k, chain_id_of(params), act, registrant=registrant) for k in keys)
        payload: Payload = msgspec.structs.replace(act, signatures=signatures)
        return payload

    return build


ConsortiumMembers = Annotated[
    list[str], typer.Option("--member", help="A consortium member's public key in hex (repeat).")
]


def _consortium(member: list[str], threshold: int) -> tuple[bytes, ...]:
    """The ``--member`` keys, ordered, checked with ``--threshold`` as the chain checks a
    consortium (``check_consortium_shape``): 1 to ``MAX_MEMBERS`` 32-byte keys, each once, and
    a threshold of 1 to their number."""
    keys: list[bytes] = []
    for text in member:
        key = public_key_in(text)
        if key is None:
            raise ConfigError(f"--member {text[:70]!r}: give a consortium member's 32-byte public key in hex")
        if key in keys:
            raise ConfigError(f"--member {key.hex()} is given twice; give each member once")
        keys.append(key)
    if not 1 <= len(keys) <= MAX_MEMBERS:
        raise ConfigError(f"--member is given {len(keys)} times: a consortium has 1 to {MAX_MEMBERS} members")
    if threshold > len(keys):
        raise ConfigError(
            f"--threshold {threshold} is more than the {len(keys)} --member: a threshold is 1 to the "
            "consortium's members"
        )
    return tuple(sorted(keys))


Threshold = Annotated[
    int,
    typer.Option(
        "--threshold", min=1, max=MAX_MEMBERS, help="Member signatures it needs (at most its members)."
    ),
]


@tx_command("register-controller")
def tx_register_controller(
    name: Annotated[
        str,
        typer.Option("--name", help="The controller's name (its id is the hash of your key and the name)."),
    ],
    member: ConsortiumMembers,
    threshold: Threshold,
    member_key: MemberKeys,
    member_passphrase_file: MemberPassphraseFiles = None,
) -> Build:
    """Register a Helios controller run by a consortium (signed by --threshold of its members)."""
    name, keys = _text(name, "--name", "a controller's name"), _consortium(member, threshold)
    act = RegisterController(name, keys, threshold, ())
    return _member_signed(act, member_key, member_passphrase_file, registration=True)


@tx_command("mint-credits")
def tx_mint_credits(
    controller: Controller,
    registrant: Registrant,
    meter: Annotated[str, typer.Option("--meter", help="The enrolled meter (gn...).")],
    through: Annotated[
        str, typer.Option("--through", help="Mint up to the interval starting then (ISO 8601 UTC).")
    ],
    member_key: MemberKeys,
    member_passphrase_file: MemberPassphraseFiles = None,
) -> Build:
    """As the controller's consortium: mint credits for what the meter injected since its last mint."""
    start = parse_time_ms(through, "--through")
    act = MintCredits(_controller(controller, registrant), address_from_text(meter), interval_of(start), ())
    return _member_signed(act, member_key, member_passphrase_file)


@tx_command("enroll-producer")
def tx_enroll_producer(
    controller: Controller,
    registrant: Registrant,
    meter: Annotated[str, typer.Option("--meter", help="Your meter (gn...).")],
    every: Annotated[
        int,
        typer.Option(
            "--every",
            min=1,
            max=MAX_SPAN_INTERVALS,
            help="Intervals (15 min) between mints (at most a week).",
        ),
    ] = 4,
    min_wh: Annotated[int, typer.Option("--min-wh", min=1, max=U63_MAX, help="Smallest mint, in Wh.")] = 1,
) -> Build:
    """Enroll your meter with a Helios controller (credits for what it injects from now on)."""
    return _constant(
        EnrollProducer(_controller(controller, registrant), address_from_text(meter), every, min_wh)
    )


@tx_command("transfer-credits")
def tx_transfer_credits(
    controller: Controller,
    registrant: Registrant,
    to: Annotated[str, typer.Option("--to", help="Recipient address (gn...).")],
    credits: Annotated[int, typer.Option("--credits", min=1, max=U63_MAX, help="Credits (1 credit = 1 Wh).")],
) -> Build:
    """Send Helios credits to an address."""
    return _constant(TransferCredits(_controller(controller, registrant), address_from_text(to), credits))


@tx_command("redeem-credits")
def tx_redeem_credits(
    controller: Controller,
    registrant: Registrant,
    credits: Annotated[
        int, typer.Option("--credits", min=1, max=U63_MAX, help="Credits to hand back (Wh to receive).")
    ],
    meter: Annotated[str, typer.Option("--meter", help="Your meter the energy goes to (gn...).")],
    within: Annotated[
        int,
        typer.Option(
            "--within",
            min=1,
            max=MAX_SPAN_INTERVALS,
            help="Intervals (15 min) the controller has (at most a week).",
        ),
    ] = 4,
) -> Build:
    """Hand credits back to the controller, which must then release that energy to your meter."""
    return _constant(
        RedeemCredits(_controller(controller, registrant), credits, address_from_text(meter), within)
    )


@tx_command("close-redemption")
def tx_close_redemption(
    controller: Controller,
    registrant: Registrant,
    redemption: Annotated[
        str, typer.Option("--redemption", help="The RedeemCredits transaction's id (hex).")
    ],
) -> Build:
    """Close a redemption: discharged (the meter's readings show the energy), or once its window is over the
    controller's default, or lapsed (a reading of the window can never come)."""
    try:
        rid = bytes.fromhex(redemption)
    except ValueError:
        rid = b""
    if len(rid) != 32:
        raise ConfigError("--redemption: give the 32-byte transaction id in hex")
    return _constant(CloseRedemption(_controller(controller, registrant), rid))


IslandNodes = Annotated[
    list[str],
    typer.Option("--island-node", help="A node: METER:INJECT_W:WITHDRAW_W, its caps in watts (repeat)."),
]
Gateway = Annotated[str, typer.Option("--gateway", help="The gateway's meter (gn...).")]


def _island(controller: str, registrant: str, gateway: str, island_node: list[str]) -> RegisterIsland:
    """The island act (no signatures, no consents) the options describe."""
    nodes = []
    for text in island_node:
        meter, _, caps = text.partition(":")
        inject, _, withdraw = caps.partition(":")
        try:
            node = IslandNode(address_from_text(meter), int(inject), int(withdraw))
            if not (0 <= node.inject_w <= U63_MAX and 0 <= node.withdraw_w <= U63_MAX):
                raise ValueError("caps are whole watts, 0 or more")
            nodes.append(node)
        except (ValueError, GridnetError):
            raise ConfigError(
                f"--island-node {text!r}: give METER:INJECT_W:WITHDRAW_W, e.g. gn...:130:500"
            ) from None
    ordered = tuple(sorted(nodes, key=lambda n: n.meter))
    twice = next((a.meter for a, b in itertools.pairwise(ordered) if a.meter == b.meter), None)
    if twice is not None:
        raise ConfigError(f"--island-node: meter {address_to_text(twice)} is given twice; give each once")
    gateway_meter = address_from_text(gateway)
    if (problem := island_problem(gateway_meter, ordered)) is not None:  # (the chain's rules: refused)
        raise ConfigError(f"--island-node: {problem}")
    return RegisterIsland(_controller(controller, registrant), gateway_meter, ordered, (), ())


def _consents(act: RegisterIsland, chain_id: bytes, given: list[str]) -> tuple[MemberSignature, ...]:
    """The owners' consents ``act`` needs (the gateway's, then each node's), each found among
    ``given`` (KEY:SIGNATURE, any order) as one that signs it on this chain."""
    signed = [MemberSignature(key, sig) for key, sig in _key_signatures("--consent", given)]
    found: list[MemberSignature] = []
    missing: list[IslandConsent] = []
    for consent in island_consents(act.controller, act.gateway, act.nodes):
        match = next((c for c in signed if verify_island_consent(chain_id, consent, c)), None)
        if match is None:
            missing.append(consent)
        else:
            found.append(match)
    if missing:
        meters = ", ".join(address_to_text(c.meter) for c in missing)
        raise ConfigError(
            f"no --consent signs this island for meter(s) {meters}: each meter's owner signs its consent "
            "with 'gridnet tx consent-island' (the same --controller, --gateway and --island-node)"
        )
    unused = [c for c in signed if c not in found]
    if unused:
        raise ConfigError(
            f"--consent {unused[0].key.hex()[:16]}...: it signs no meter of this island on this chain "
            "(another island, meter or caps?)"
        )
    return tuple(found)


@tx_command("register-island")
def tx_register_island(
    controller: Controller,
    registrant: Registrant,
    gateway: Gateway,
    island_node: IslandNodes,
    member_key: MemberKeys,
    consent: Annotated[
        list[str] | None,
        typer.Option(
            "--consent",
            help="An owner's consent, KEY:SIGNATURE (hex) from 'gridnet tx consent-island': one for the "
            "gateway and one for each node, any order (repeat).",
        ),
    ] = None,
    member_passphrase_file: MemberPassphraseFiles = None,
) -> Build:
    """As the controller's consortium: register its island (nodes on one line with their caps,
    and the gateway to the grid), with each meter's owner's consent."""
    act = _island(controller, registrant, gateway, island_node)
    members_signed = _member_signed(act, member_key, member_passphrase_file)

    def build(params: ChainParams, signer: PrivateKey) -> Payload:
        consents = _consents(act, chain_id_of(params), consent or [])
        payload: Payload = msgspec.structs.replace(members_signed(params, signer), consents=consents)
        return payload

    return build


@app.command("consent-island")
def consent_island(
    key: KeyFile,
    controller: Controller,
    registrant: Registrant,
    gateway: Gateway,
    island_node: IslandNodes,
    meter: Annotated[
        str,
        typer.Option(
            "--meter",
            help="Your meter (gn...): the gateway, or one of the --island-node (the gateway's caps are "
            "the nodes' sums: give them all).",
        ),
    ],
    data_dir: MaybeDataDir = None,
    node: NodeUrl = None,
    passphrase_file: PassphraseFile = None,
) -> None:
    """As a meter's owner: sign your consent to its place in a Helios island and print it
    (KEY:SIGNATURE, for 'gridnet tx register-island --consent'); nothing is sent."""
    act = _island(controller, registrant, gateway, island_node)
    mine = address_from_text(meter)
    wanted = island_consents(act.controller, act.gateway, act.nodes)
    consent = next((c for c in wanted if c.meter == mine), None)
    if consent is None:
        raise ConfigError(f"--meter {meter}: it is neither the --gateway nor one of the --island-node")
    chain_id = _chain_id(data_dir, node)
    signer = load_key(key, passphrase_file)
    signed = sign_as_member(signer, chain_id, consent)
    console.print(f"{signed.key.hex()}:{signed.signature.hex()}")


def load_criteria(path: Path) -> CreditCriteria:
    """A credit bank's criteria from a TOML file (every field of docs/protocol.md section 24)."""
    doc = read_toml(path, "criteria file")
    info = msgspec.inspect.type_info(CreditCriteria)
    assert isinstance(info, msgspec.inspect.StructType)
    most: dict[str, int] = {f.name: getattr(f.type, "le", None) or 2**63 - 1 for f in info.fields}
    wrong = sorted(set(doc) ^ set(most))  # (each field's bound is its type's: U32 or U63)
    bad = [k for k in most if k in doc and (type(doc[k]) is not int or not 0 <= doc[k] <= most[k])]
    if wrong or bad:
        problem = (
            f"keys missing or unknown: {', '.join(wrong)}"
            if wrong
            else f"{bad[0]} is not a whole number from 0 to {most[bad[0]]:,}"
        )
        raise ConfigError(f"{path}: not valid credit criteria ({problem}); docs/cli.md lists the keys")
    found = CreditCriteria(**doc)
    if (rule := criteria_problem(found)) is not None:  # (the chain's rules: refused before signing)
        raise ConfigError(f"{path}: not valid credit criteria ({rule})")
    return found


@tx_command("register-credit-bank")
def tx_register_credit_bank(
    name: Annotated[
        str, typer.Option("--name", help="The bank's name (its id is the hash of your key and the name).")
    ],
    member: ConsortiumMembers,
    threshold: Threshold,
    criteria: Annotated[
        Path, typer.Option("--criteria", help="TOML file of the criteria it publishes (docs/cli.md).")
    ],
    capital: Annotated[str, typer.Option("--capital", help="GNC it lends, moved from your account.")],
    member_key: MemberKeys,
    member_passphrase_file: MemberPassphraseFiles = None,
) -> Build:
    """Register a credit bank run by a consortium, with its published criteria and its capital."""
    name, keys = _text(name, "--name", "a bank's name"), _consortium(member, threshold)
    act = RegisterCreditBank(name, keys, threshold, load_criteria(criteria), parse_gnc(capital), ())
    return _member_signed(act, member_key, member_passphrase_file, registration=True)


def _bank(name: str, registrant: str) -> bytes:
    """The id of the bank ``name`` that the key ``registrant`` (--registrant) registered."""
    key = parse_registrant(registrant)
    _text(name, "--bank", "a bank's name")  # (no other name was ever registered)
    return _addressed("credit bank", "--bank", name, key, bank_id(key, name))


@tx_command("request-loan")
def tx_request_loan(
    bank: Annotated[str, typer.Option("--bank", help="The credit bank's name.")],
    registrant: Registrant,
    amount: Annotated[str, typer.Option("--amount", help="GNC to borrow.")],
) -> Build:
    """Borrow from a credit bank (judged on its criteria and your credit value on chain)."""
    return _constant(RequestLoan(_bank(bank, registrant), parse_gnc(amount)))


@tx_command("repay-loan")
def tx_repay_loan(
    amount: Annotated[str, typer.Option("--amount", help="GNC to repay (at most what you owe).")],
) -> Build:
    """Repay your loan from your balance (sales you make repay it too)."""
    return _constant(RepayLoan(parse_gnc(amount)))


@tx_command("report-missed-repayment")
def tx_report_missed_repayment(
    borrower: Annotated[str, typer.Option("--borrower", help="The borrower's address (gn...).")],
) -> Build:
    """Prove that a borrower missed an installment (its credit value drops; after the last, a default)."""
    return _constant(ReportMissedRepayment(address_from_text(borrower)))


@tx_command("withdraw-capital")
def tx_withdraw_capital(
    bank: Annotated[str, typer.Option("--bank", help="The credit bank's name.")],
    registrant: Registrant,
    seq: Annotated[
        int,
        typer.Option(
            "--seq", min=1, max=2**32 - 1, help="The bank's withdrawals so far + 1 (chain credit-bank)."
        ),
    ],
    to: Annotated[str, typer.Option("--to", help="The address that receives it (gn...).")],
    amount: Annotated[str, typer.Option("--amount", help="GNC to take out (at most what is not lent out).")],
    member_key: MemberKeys,
    member_passphrase_file: MemberPassphraseFiles = None,
) -> Build:
    """As the bank's consortium: take capital that is not lent out."""
    act = WithdrawCapital(_bank(bank, registrant), seq, address_from_text(to), parse_gnc(amount), ())
    return _member_signed(act, member_key, member_passphrase_file)
