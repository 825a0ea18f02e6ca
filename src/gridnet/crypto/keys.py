"""All signing and signature checking in GRIDNET (Ed25519 via PyNaCl / libsodium), and the
key files that keep the keys at rest, encrypted with a passphrase (argon2id + SecretBox).

Signatures are domain-separated: the signed bytes are ``domain tag || message``,
where every tag is distinct and ends with a NUL byte that no tag contains. A
signature made for one object type therefore never verifies as another.
"""

from __future__ import annotations

import contextlib
import contextvars
import enum
import json
import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, Literal

import nacl.bindings
import nacl.exceptions
import nacl.pwhash.argon2id as _argon2id
import nacl.secret
import nacl.signing
import nacl.utils

from gridnet.crypto.address import address_from_public_key, address_from_text, address_to_text
from gridnet.crypto.checkers import CHECKERS, SHARE_MIN
from gridnet.crypto.hashing import signature_check_id, signature_check_key
from gridnet.crypto.ops import OPS
from gridnet.errors import InvalidAddress, KeyFileError
from gridnet.files import make_dirs, read_private, replace_file, sync_directory
from gridnet.system import usable_cores
from gridnet.units import PUBLIC_KEY_BYTES, SIGNATURE_BYTES, Address, PublicKey, Signature, is_decimal


class Domain(enum.Enum):
    """What a signature is for. The value is the tag prepended before signing."""

    TRANSACTION = b"GRIDNET/transaction/v1\x00"
    BLOCK = b"GRIDNET/block/v1\x00"
    READING = b"GRIDNET/meter-reading/v1\x00"
    ORDER = b"GRIDNET/order/v1\x00"
    CONTRACT_TERMS = b"GRIDNET/contract-terms/v1\x00"
    CONTRACT_STATE = b"GRIDNET/contract-state/v1\x00"
    TOKEN = b"GRIDNET/transmission-token/v1\x00"
    CLAIM = b"GRIDNET/transit-claim/v1\x00"
    CERTIFICATE = b"GRIDNET/meter-certificate/v1\x00"
    METER_STATUS = b"GRIDNET/meter-status/v1\x00"
    METER_BINDING = b"GRIDNET/meter-binding/v1\x00"
    COMMAND = b"GRIDNET/dso-command/v1\x00"
    PEER = b"GRIDNET/peer-handshake/v1\x00"
    VOTE = b"GRIDNET/finality-vote/v1\x00"
    VALIDATOR_SET = b"GRIDNET/validator-set/v1\x00"
    CONSORTIUM = b"GRIDNET/consortium/v1\x00"
    REGISTRATION = b"GRIDNET/group-registration/v1\x00"
    METER_ANSWER = b"GRIDNET/meter-answer/v1\x00"
    RELAY_COMMAND = b"GRIDNET/relay-command/v1\x00"
    AGGREGATOR_REQUEST = b"GRIDNET/aggregator-request/v1\x00"
    AGGREGATOR_GRANT = b"GRIDNET/aggregator-grant/v1\x00"
    AGGREGATOR_PROCESSING = b"GRIDNET/aggregator-processing/v1\x00"
    MONITORING = b"GRIDNET/monitoring/v1\x00"
    PSEUDONYM = b"GRIDNET/pseudonym-proof/v1\x00"
    VEHICLE_CONSENT = b"GRIDNET/vehicle-consent/v1\x00"
    EV_DEAL = b"GRIDNET/ev-deal/v1\x00"
    EV_PROCESSING = b"GRIDNET/ev-processing/v1\x00"
    EV_DELIVERY = b"GRIDNET/ev-delivery/v1\x00"


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
        OPS.signs += 1
        return bytes(self._signing.sign(domain.value + message).signature)

    def __repr__(self) -> str:
        return f"PrivateKey({address_to_text(self.address)})"


class SignatureCache:
    """The signatures one holder (a node) has verified, so that it checks each only once:
    a transaction is checked when it arrives, again in every block template its miner
    builds and again in the block that carries it, and a reading or a contract state inside
    it with it. Only successful checks are remembered, by a digest keyed with a secret salt
    of this cache (``hashing.signature_check_id``): a check is answered from the cache only
    for the very same domain, key, signature and message. Bounded: the oldest entries go
    first once ``capacity`` is reached.

    ``verify_signature`` consults the cache made current by ``with cache.active():`` in this
    thread (or context): a node enters its own around everything it does, so in a simulation of
    several nodes in one process each still checks every signature itself."""

    __slots__ = ("_keyed", "_seen", "capacity")

    def __init__(self, capacity: int = 1 << 18) -> None:
        if capacity < 1:
            raise ValueError("a signature cache holds at least one entry")
        self.capacity = capacity
        self._keyed = signature_check_key(os.urandom(32))
        self._seen: dict[bytes, None] = {}

    def __len__(self) -> int:
        return len(self._seen)

    def key(self, domain: Domain, public_key: PublicKey, message: bytes, signature: Signature) -> bytes:
        return signature_check_id(self._keyed, domain.value, public_key, signature, message)

    def __contains__(self, key: bytes) -> bool:
        return key in self._seen

    def add(self, key: bytes) -> None:
        seen = self._seen
        if key in seen:
            return
        if len(seen) >= self.capacity:
            del seen[next(iter(seen))]
        seen[key] = None

    def active(self) -> _Current:
        """``with cache.active():`` makes this the cache ``verify_signature`` uses here."""
        return _Current(self)


class _Current:
    __slots__ = ("_cache", "_token")

    def __init__(self, cache: SignatureCache) -> None:
        self._cache = cache

    def __enter__(self) -> SignatureCache:
        self._token = _CURRENT_CACHE.set(self._cache)
        return self._cache

    def __exit__(self, *exc: object) -> None:
        _CURRENT_CACHE.reset(self._token)


_CURRENT_CACHE: contextvars.ContextVar[SignatureCache | None] = contextvars.ContextVar(
    "gridnet_signature_cache", default=None
)


def verify_signature(domain: Domain, public_key: PublicKey, message: bytes, signature: Signature) -> bool:
    """True when ``signature`` is ``public_key``'s signature of ``message`` for ``domain``
    (answered by the current ``SignatureCache`` when it verified exactly this before)."""
    if len(public_key) != PUBLIC_KEY_BYTES or len(signature) != SIGNATURE_BYTES:
        return False
    cache = _CURRENT_CACHE.get()
    if cache is not None:
        key = cache.key(domain, public_key, message, signature)
        if key in cache:
            OPS.verifies_cached += 1
            return True
    OPS.verifies += 1
    if not check_signed(signature + domain.value + message, public_key):
        return False
    if cache is not None:
        cache.add(key)
    return True


SignatureCheck = tuple[Domain, PublicKey, bytes, Signature]
"""One check for ``verify_many``: (domain, public key, message, signature)."""


def check_signed(signed_message: bytes, public_key: bytes) -> bool:
    """Does the signature at the front of ``signed_message`` verify for ``public_key``?"""
    try:
        _crypto_sign_open(signed_message, public_key)
    except (_BadSignatureError, ValueError, TypeError):
        return False
    return True


CORES_ENV: Final = "GRIDNET_CHECK_CORES"
"""The cores a process spreads its signature checks over when set (default: every usable
one): a sweep's workers each take one core, so each checks on its own."""


class _Cores:
    """How many cores ``verify_stream`` spreads a batch over (None: ``CORES_ENV`` or every
    usable one)."""

    limit: int | None = None

    @classmethod
    def count(cls) -> int:
        if cls.limit is not None:
            return cls.limit
        wanted = os.environ.get(CORES_ENV)
        if wanted is None:
            return usable_cores()
        if not is_decimal(wanted) or int(wanted) < 1:
            raise ValueError(f"{CORES_ENV}={wanted!r}: expected a whole number of cores, at least 1")
        return int(wanted)


@contextlib.contextmanager
def verification_limit(cores: int | None) -> Iterator[None]:
    """Within the block, ``verify_stream`` uses at most ``cores`` cores (1: only the caller;
    None: every usable one, the default). For benchmarks that compare one core with all of
    them in the same process."""
    if cores is not None and cores < 1:
        raise ValueError("verification needs at least one core")
    before = _Cores.limit
    _Cores.limit = cores
    try:
        yield
    finally:
        _Cores.limit = before


def verification_cores() -> int:
    """Cores ``verify_stream`` uses here (every usable one unless ``verification_limit``
    says otherwise)."""
    return _Cores.count()


class Verdicts:
    """The verdicts of a batch of checks, as they come (``verify_stream``): ``verdicts[i]``
    waits for check ``i``'s chunk only, so the caller goes on with what it does with each
    verdict (decoding, applying) while helper processes check the rest. A success is learnt
    by the caller's ``SignatureCache`` when its verdict is read."""

    __slots__ = ("_batch", "_cache", "_keys", "_results", "_signed", "_slot")

    def __init__(
        self,
        results: list[bool],
        slot: dict[int, int],
        signed: list[tuple[bytes, PublicKey]],
        keys: list[bytes] | None,
        cache: SignatureCache | None,
    ) -> None:
        self._results = results
        """Verdict per check; those still in ``slot`` are not read yet."""
        self._slot = slot
        """Check index -> its position among the checks made (``signed``)."""
        self._signed = signed
        self._keys = keys
        self._cache = cache
        # (a batch too small to share is checked here, without asking how many cores there are)
        small = len(signed) < SHARE_MIN
        self._batch = None if small else CHECKERS.submit(signed, _Cores.count(), check_signed)

    def __len__(self) -> int:
        return len(self._results)

    def __getitem__(self, i: int) -> bool:
        position = self._slot.pop(i, None)
        if position is not None:
            batch = self._batch
            if batch is None:
                message, public_key = self._signed[position]
                ok = check_signed(message, public_key)
            else:
                n, offset = divmod(position, batch.size)
                ok = batch.chunk(n)[offset]
            self._results[i] = ok
            if ok and self._cache is not None and self._keys is not None:
                self._cache.add(self._keys[position])
        return self._results[i]

    def all(self) -> list[bool]:
        return [self[i] for i in range(len(self._results))]

    def cancel(self) -> None:
        """The verdicts not read yet are no longer wanted: the helpers stop checking them."""
        if self._batch is not None and self._slot:
            self._batch.cancel()


def verify_stream(checks: Sequence[SignatureCheck]) -> Verdicts:
    """``verify_signature`` of each check, the checks spread over the cores (``checkers``):
    what a block's, a gossip batch's or a batch of readings' signatures cost in wall time is
    their share of the cores. The current ``SignatureCache`` answers what it holds (at once)
    and learns the new successes, as with ``verify_signature``."""
    results = [False] * len(checks)
    cache = _CURRENT_CACHE.get()
    slot: dict[int, int] = {}
    keys: list[bytes] | None = [] if cache is not None else None
    signed: list[tuple[bytes, PublicKey]] = []
    for i, (domain, public_key, message, signature) in enumerate(checks):
        if len(public_key) != PUBLIC_KEY_BYTES or len(signature) != SIGNATURE_BYTES:
            continue
        if cache is not None and keys is not None:
            key = cache.key(domain, public_key, message, signature)
            if key in cache:
                OPS.verifies_cached += 1
                results[i] = True
                continue
            keys.append(key)
        slot[i] = len(signed)
        signed.append((signature + domain.value + message, public_key))
    OPS.verifies += len(signed)
    return Verdicts(results, slot, signed, keys, cache)


def verify_many(checks: Sequence[SignatureCheck]) -> list[bool]:
    """``verify_stream``'s verdicts, all of them."""
    return verify_stream(checks).all()


def raw_verify(public_key: PublicKey, message: bytes, signature: Signature) -> bool:
    """Plain Ed25519 verification without a domain (only for benchmarks' reference rate)."""
    return check_signed(signature + message, public_key)


# --- key files ---------------------------------------------------------------------------------
#
# A key file is one JSON object on one line, mode 0600, never overwritten. Format version 2:
#
#   {"kind": "gridnet-ed25519-key", "version": 2, "address": "gn...",
#    "encryption": "argon2id-secretbox",
#    "kdf": {"opslimit": 3, "memlimit": 268435456, "salt": hex of 16 bytes},
#    "ciphertext": hex of nonce (24) || XSalsa20-Poly1305 box of the 32-byte seed (48)}
#
# or, written plain on purpose (devnets, tests): {..., "encryption": "none", "seed": hex}.
# The box key is argon2id(passphrase, salt, opslimit, memlimit) (PyNaCl's pwhash and SecretBox);
# the costs and the salt are stored so that the default costs can rise without breaking old
# files. The address is stored in clear so that it can be shown without the passphrase;
# decrypting checks it. A file without "encryption" is the first format, {"kind", "seed",
# "address"} ("legacy"): it still loads.

MAX_SECRET_FILE_BYTES = 64 * 1024
"""Largest key or passphrase file read (a key file is a few hundred bytes)."""
KEY_FILE_KIND = "gridnet-ed25519-key"
KEY_FILE_VERSION = 2

KeyEncryption = Literal["argon2id-secretbox", "none", "legacy"]
"""How a key file keeps its seed: sealed with a passphrase, plain on purpose, or plain in the
first format."""

_SEED_BYTES: Final[int] = nacl.bindings.crypto_sign_SEEDBYTES
_SEALED_SEED_BYTES: Final[int] = (
    nacl.secret.SecretBox.NONCE_SIZE + nacl.secret.SecretBox.MACBYTES + _SEED_BYTES
)


@dataclass(frozen=True, slots=True)
class KdfCost:
    """What deriving a key file's box key from its passphrase costs (argon2id)."""

    opslimit: int
    """Passes over the memory."""
    memlimit: int
    """Memory used [bytes]."""


KDF_COST: Final = KdfCost(_argon2id.OPSLIMIT_MODERATE, _argon2id.MEMLIMIT_MODERATE)
"""Cost of new key files: libsodium's MODERATE, 3 passes over 256 MiB (0.4 s per load on 2 cores)."""
KDF_COST_MIN: Final = KdfCost(_argon2id.OPSLIMIT_MIN, _argon2id.MEMLIMIT_MIN)
"""The cheapest cost a key file may declare (libsodium's minimum: fast, for tests only)."""
KDF_COST_MAX: Final = KdfCost(_argon2id.OPSLIMIT_SENSITIVE, _argon2id.MEMLIMIT_SENSITIVE)
"""The dearest cost a key file may declare (SENSITIVE, 4 passes over 1 GiB: 4 s per load), so that
an altered file cannot make loading it allocate unbounded memory or run for hours."""


@dataclass(frozen=True, slots=True)
class KeyFileInfo:
    """What a key file says about itself, read without its passphrase."""

    address: str
    """Text address ("gn..."): derived from the seed of a plain file; of an encrypted file, the
    stored one (only decrypting the file proves it)."""
    encryption: KeyEncryption


@dataclass(frozen=True, slots=True)
class _SealedSeed:
    """The seed of an encrypted key file, as stored."""

    cost: KdfCost
    salt: bytes
    box: bytes
    """Nonce || XSalsa20-Poly1305 box of the seed."""


def write_key_file(
    path: Path, key: PrivateKey, passphrase: bytes | None = None, *, cost: KdfCost = KDF_COST
) -> None:
    """Write ``key`` to a new file at ``path`` (mode 0600, parent directories created, never
    overwriting a file): sealed with ``passphrase`` at ``cost``, or plain (``"encryption":
    "none"``) when ``passphrase`` is None."""
    check_key_path_free(path)
    record = _plain_record(key) if passphrase is None else _encrypted_record(path, key, passphrase, cost)
    try:
        make_dirs(path.parent)
    except OSError as exc:
        raise KeyFileError(f"cannot create the directory of key file {path}: {exc.strerror}") from None
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise _exists_error(path) from None
    except OSError as exc:
        raise KeyFileError(f"cannot create key file {path}: {exc.strerror}") from None
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(_record_line(record))
            fh.flush()
            os.fsync(fh.fileno())
    except OSError as exc:
        path.unlink(missing_ok=True)
        raise KeyFileError(f"cannot write key file {path}: {exc.strerror}") from None
    sync_directory(path.parent)


def read_key_file(path: Path, passphrase: Callable[[], bytes] | None = None) -> PrivateKey:
    """The key in the file at ``path``, in any format; refuses a file other users can access.

    ``passphrase`` is called, once, only for an encrypted file. Every refusal is a
    :class:`~gridnet.errors.KeyFileError` of one line that never holds the seed.
    """
    info, seed = _read_key_record(path)
    if isinstance(seed, _SealedSeed):
        if passphrase is None:
            raise KeyFileError(
                f"key file {path} is encrypted; give its passphrase with --passphrase-file FILE, "
                "the GRIDNET_PASSPHRASE environment variable, or at the terminal prompt"
            )
        seed = _open_seed(path, seed, passphrase())
    key = PrivateKey(seed)
    if address_to_text(key.address) != info.address:
        raise _address_mismatch(path)
    return key


def key_file_info(path: Path) -> KeyFileInfo:
    """The address and encryption of the key file at ``path``, without its passphrase; refuses
    the file as :func:`read_key_file` does, except for a wrong passphrase."""
    return _read_key_record(path)[0]


def encrypt_key_file(path: Path, passphrase: Callable[[], bytes], *, cost: KdfCost = KDF_COST) -> None:
    """Rewrite the plain (or legacy) key file at ``path`` sealed with a passphrase, in place and
    atomically: a new file (mode 0600) beside it, flushed to disk, then renamed over it.

    ``passphrase`` is called once the file is known to be a valid plain key file. An encrypted
    file is refused. The old plain bytes may remain in free disk blocks: a key that must never
    have touched the disk in clear is best replaced by a new encrypted key.
    """
    _, seed = _read_key_record(path)
    if isinstance(seed, _SealedSeed):
        raise KeyFileError(f"key file {path} is already encrypted; it was left unchanged")
    # The rename replaces the name given: through a symbolic link (or beside another hard
    # link) the plain file would stay, its seed in clear, while this said it was encrypted.
    if path.is_symlink():
        raise KeyFileError(
            f"key file {path} is a symbolic link to {os.path.realpath(path)}: encrypt that file; "
            "it was left unchanged"
        )
    if (links := path.stat().st_nlink) > 1:
        raise KeyFileError(
            f"key file {path} has {links} names (hard links): the others would keep the seed in clear; "
            "remove them first; it was left unchanged"
        )
    record = _encrypted_record(path, PrivateKey(seed), passphrase(), cost)
    try:
        replace_file(path, _record_line(record), 0o600, durable=True)
    except OSError as exc:
        raise KeyFileError(f"cannot rewrite key file {path}: {exc.strerror}; it was left unchanged") from None


def check_key_path_free(path: Path) -> None:
    """Refuse ``path`` for a new key file when anything is there: a key file is never overwritten."""
    if path.exists() or path.is_symlink():
        raise _exists_error(path)


def read_private_file(path: Path, what: str, missing_hint: str) -> bytes:
    """The bytes of a secret file (a key file, a passphrase file); refused when users other than
    its owner have any permission on it, or it is not a regular file of at most
    ``MAX_SECRET_FILE_BYTES`` (a FIFO or a device would block or never end: checked on the
    descriptor read, opened without blocking). ``what`` names the file in messages."""
    try:
        return read_private(path, what, MAX_SECRET_FILE_BYTES, KeyFileError)
    except KeyFileError:
        if not os.path.lexists(path):
            raise KeyFileError(f"{what} {path} not found ({missing_hint})") from None
        raise


def _plain_record(key: PrivateKey) -> dict[str, object]:
    return {
        "kind": KEY_FILE_KIND,
        "version": KEY_FILE_VERSION,
        "address": address_to_text(key.address),
        "encryption": "none",
        "seed": key.seed.hex(),
    }


def _encrypted_record(path: Path, key: PrivateKey, passphrase: bytes, cost: KdfCost) -> dict[str, object]:
    if not passphrase:
        raise KeyFileError(f"an empty passphrase cannot protect key file {path}; choose a passphrase")
    salt = nacl.utils.random(_argon2id.SALTBYTES)
    box = _secret_box(path, passphrase, salt, cost).encrypt(key.seed)
    return {
        "kind": KEY_FILE_KIND,
        "version": KEY_FILE_VERSION,
        "address": address_to_text(key.address),
        "encryption": "argon2id-secretbox",
        "kdf": {"opslimit": cost.opslimit, "memlimit": cost.memlimit, "salt": salt.hex()},
        "ciphertext": bytes(box).hex(),
    }


def _secret_box(path: Path, passphrase: bytes, salt: bytes, cost: KdfCost) -> nacl.secret.SecretBox:
    try:
        key = _argon2id.kdf(
            nacl.secret.SecretBox.KEY_SIZE, passphrase, salt, opslimit=cost.opslimit, memlimit=cost.memlimit
        )
    except (nacl.exceptions.RuntimeError, MemoryError):  # (libsodium could not allocate its memory)
        raise KeyFileError(
            f"cannot derive the key of key file {path}: argon2id needs {cost.memlimit >> 20} MiB of "
            "memory, which this process could not have; free memory or raise its limit (ulimit -v)"
        ) from None
    return nacl.secret.SecretBox(key)


def _open_seed(path: Path, sealed: _SealedSeed, passphrase: bytes) -> bytes:
    box = _secret_box(path, passphrase, sealed.salt, sealed.cost)  # (a failure here is no wrong passphrase)
    try:
        return bytes(box.decrypt(sealed.box))
    except nacl.exceptions.CryptoError:
        raise KeyFileError(
            f"key file {path} does not decrypt: wrong passphrase, or the file was altered; "
            "try the passphrase again (or restore the file from a backup)"
        ) from None


def _record_line(record: dict[str, object]) -> bytes:
    """A key file's content: ``record`` as one JSON line."""
    return f"{json.dumps(record)}\n".encode()


def _address_mismatch(path: Path) -> KeyFileError:
    return KeyFileError(
        f"key file {path}: the stored address does not match the key; restore it from a backup"
    )


def _exists_error(path: Path) -> KeyFileError:
    return KeyFileError(f"key file {path} already exists; refusing to overwrite it (choose another path)")


# --- reading the JSON of a key file ---


def _read_key_record(path: Path) -> tuple[KeyFileInfo, bytes | _SealedSeed]:
    """What the key file at ``path`` says and its seed, plain or sealed; every field checked."""
    raw = read_private_file(path, "key file", "create one with 'gridnet keys new'")
    try:
        record = json.loads(raw)
    except (ValueError, RecursionError):
        raise _invalid(path, "it is not JSON") from None
    if not isinstance(record, dict) or record.get("kind") != KEY_FILE_KIND:
        raise _invalid(path, f"its kind is not {KEY_FILE_KIND!r}")
    encryption = _encryption(path, record)
    if encryption == "argon2id-secretbox":
        return KeyFileInfo(_address(path, record), encryption), _sealed_seed(path, record)
    seed = _hex(path, record, "seed", _SEED_BYTES)
    address = address_to_text(PrivateKey(seed).address)
    # The first format's address was optional; when present it must be the seed's.
    if record.get("address", address) != address:
        raise _address_mismatch(path)
    return KeyFileInfo(address, encryption), seed


def _encryption(path: Path, record: dict[str, Any]) -> KeyEncryption:
    if "version" not in record and "encryption" not in record:
        return "legacy"
    version = record.get("version")
    if version != KEY_FILE_VERSION:
        raise KeyFileError(
            f"key file {path} has format version {version!r}; this gridnet reads version "
            f"{KEY_FILE_VERSION} and the first format (upgrade gridnet if the file is newer)"
        )
    encryption = record.get("encryption")
    if encryption == "argon2id-secretbox":
        return "argon2id-secretbox"
    if encryption == "none":
        return "none"
    raise _invalid(path, f"unknown encryption {encryption!r}")


def _address(path: Path, record: dict[str, Any]) -> str:
    text = record.get("address")
    if isinstance(text, str):
        with contextlib.suppress(InvalidAddress):
            return address_to_text(address_from_text(text))
    raise _invalid(path, "its address is missing or not a GRIDNET address")


def _sealed_seed(path: Path, record: dict[str, Any]) -> _SealedSeed:
    kdf = record.get("kdf")
    if not isinstance(kdf, dict):
        raise _invalid(path, "its kdf is missing")
    cost = KdfCost(
        _int(path, kdf, "opslimit", KDF_COST_MIN.opslimit, KDF_COST_MAX.opslimit),
        _int(path, kdf, "memlimit", KDF_COST_MIN.memlimit, KDF_COST_MAX.memlimit),
    )
    salt = _hex(path, kdf, "salt", _argon2id.SALTBYTES)
    return _SealedSeed(cost, salt, _hex(path, record, "ciphertext", _SEALED_SEED_BYTES))


def _hex(path: Path, record: dict[str, Any], name: str, size: int) -> bytes:
    """Field ``name`` of ``record``: ``size`` bytes in hex. The message never quotes the value."""
    text = record.get(name)
    try:
        value = bytes.fromhex(text) if isinstance(text, str) else b""
    except ValueError:
        value = b""
    if len(value) != size:
        raise _invalid(path, f"its {name} is missing or not {size} bytes in hex")
    return value


def _int(path: Path, record: dict[str, Any], name: str, low: int, high: int) -> int:
    value = record.get(name)
    if type(value) is not int or not low <= value <= high:
        raise _invalid(path, f"its {name} is missing or not an integer from {low} to {high}")
    return value


def _invalid(path: Path, why: str) -> KeyFileError:
    return KeyFileError(f"key file {path} is not a valid GRIDNET key file ({why}); restore it from a backup")
