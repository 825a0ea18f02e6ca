"""All signing and signature checking in GRIDNET (Ed25519 via PyNaCl / libsodium).

Signatures are domain-separated: the signed bytes are ``domain tag || message``,
where every tag is distinct and ends with a NUL byte that no tag contains. A
signature made for one object type therefore never verifies as another.
"""

from __future__ import annotations

import enum
import json
import os
import stat
from pathlib import Path

import nacl.bindings
import nacl.exceptions
import nacl.signing

from gridnet.crypto.address import address_from_public_key, address_to_text
from gridnet.errors import KeyFileError
from gridnet.units import PUBLIC_KEY_BYTES, SIGNATURE_BYTES, Address, PublicKey, Signature

KEY_FILE_KIND = "gridnet-ed25519-key"


class Domain(enum.Enum):
    """What a signature is for. The value is the tag prepended before signing."""

    TRANSACTION = b"GRIDNET/transaction/v1\x00"
    BLOCK = b"GRIDNET/block/v1\x00"
    READING = b"GRIDNET/meter-reading/v1\x00"
    ORDER = b"GRIDNET/order/v1\x00"
    CONTRACT_TERMS = b"GRIDNET/contract-terms/v1\x00"
    CONTRACT_STATE = b"GRIDNET/contract-state/v1\x00"
    TOKEN = b"GRIDNET/transmission-token/v1\x00"
    HOP = b"GRIDNET/hop-entry/v1\x00"
    CLAIM = b"GRIDNET/transit-claim/v1\x00"
    CERTIFICATE = b"GRIDNET/meter-certificate/v1\x00"
    COMMAND = b"GRIDNET/dso-command/v1\x00"
    PEER = b"GRIDNET/peer-handshake/v1\x00"


_crypto_sign_open = nacl.bindings.crypto_sign_open
_BadSignatureError = nacl.exceptions.BadSignatureError


class PrivateKey:
    """An Ed25519 private key with its public key and address."""

    __slots__ = ("_signing", "address", "public_key")

    def __init__(self, seed: bytes) -> None:
        if len(seed) != 32:
            raise ValueError("an Ed25519 seed is 32 bytes")
        self._signing = nacl.signing.SigningKey(seed)
        self.public_key: PublicKey = bytes(self._signing.verify_key)
        self.address: Address = address_from_public_key(self.public_key)

    @classmethod
    def generate(cls) -> PrivateKey:
        return cls(os.urandom(32))

    @classmethod
    def from_label(cls, label: str) -> PrivateKey:
        """A deterministic key for tests and simulations (never for real funds)."""
        from gridnet.crypto.hashing import hash32

        return cls(hash32(label.encode(), person=b"gn-test-key"))

    @property
    def seed(self) -> bytes:
        return bytes(self._signing)

    def sign(self, domain: Domain, message: bytes) -> Signature:
        """Sign ``message`` for ``domain``; returns the 64-byte signature."""
        return bytes(self._signing.sign(domain.value + message).signature)

    def __repr__(self) -> str:
        return f"PrivateKey({address_to_text(self.address)})"


def verify_signature(domain: Domain, public_key: PublicKey, message: bytes, signature: Signature) -> bool:
    """True when ``signature`` is ``public_key``'s signature of ``message`` for ``domain``."""
    if len(public_key) != PUBLIC_KEY_BYTES or len(signature) != SIGNATURE_BYTES:
        return False
    try:
        _crypto_sign_open(signature + domain.value + message, public_key)
    except (_BadSignatureError, ValueError, TypeError):
        return False
    return True


def raw_verify(public_key: PublicKey, message: bytes, signature: Signature) -> bool:
    """Plain Ed25519 verification without a domain (only for benchmarks' reference rate)."""
    try:
        _crypto_sign_open(signature + message, public_key)
    except _BadSignatureError:
        return False
    return True


def write_key_file(path: Path, key: PrivateKey) -> None:
    """Write ``key`` to ``path`` with mode 0600; never overwrites an existing file."""
    record = {
        "kind": KEY_FILE_KIND,
        "seed": key.seed.hex(),
        "address": address_to_text(key.address),
    }
    if path.parent and not path.parent.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise KeyFileError(
            f"key file {path} already exists; refusing to overwrite it (choose another path)"
        ) from None
    except OSError as exc:
        raise KeyFileError(f"cannot create key file {path}: {exc.strerror}") from None
    with os.fdopen(fd, "w") as fh:
        json.dump(record, fh)
        fh.write("\n")


def read_key_file(path: Path) -> PrivateKey:
    """Read a key written by :func:`write_key_file`; refuses files others can read."""
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        raise KeyFileError(f"key file {path} not found (create one with 'gridnet keys new')") from None
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise KeyFileError(
            f"key file {path} is accessible by other users (mode {stat.S_IMODE(mode):o}); "
            f"run 'chmod 600 {path}'"
        )
    try:
        record = json.loads(path.read_text())
        if record.get("kind") != KEY_FILE_KIND:
            raise ValueError("not a GRIDNET key file")
        seed = bytes.fromhex(record["seed"])
        key = PrivateKey(seed)
    except (ValueError, KeyError, TypeError, json.JSONDecodeError) as exc:
        raise KeyFileError(f"key file {path} is not a valid GRIDNET key file: {exc}") from None
    if record.get("address") not in (None, address_to_text(key.address)):
        raise KeyFileError(f"key file {path}: the stored address does not match the key")
    return key
