"""Peer-link encryption: the Noise protocol framework, ``Noise_XX_25519_ChaChaPoly_BLAKE2b``.

The ``noiseprotocol`` package runs the handshake and the transport ciphers (on
``cryptography``'s X25519 and ChaCha20-Poly1305 and hashlib's BLAKE2b); this module is the
one place that touches it. :class:`Handshake` runs the three XX messages (``-> e``,
``<- e, ee, s, es``, ``-> s, se``) with a prologue both sides must share (the link's plain
hello, which names the chain) and a fresh static key per link; a message that does not
authenticate, or a prologue that differs, fails the handshake
(:class:`~gridnet.errors.HandshakeFailed`). Who the peer is does not come from the Noise
static key but from the node key signing the handshake hash (``net/tcp.py``): the hash is
unique to this handshake, so the signature cannot be replayed on another link.

A :class:`Session` then carries frames. Noise caps a transport message at 65,535 bytes, so
a frame's plaintext, prefixed with its 4-byte big-endian length, is cut into pieces of at
most :data:`CHUNK_BYTES`, each encrypted as one transport message (16-byte tag, counter
nonces that Noise keeps per direction). A frame tampered with, replayed, reordered or cut
at a piece boundary (the length says how much must follow) fails to open:
:class:`~gridnet.errors.SealedBoxError`.
"""

from __future__ import annotations

from typing import Final

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from noise.connection import Keypair, NoiseConnection  # type: ignore[import-untyped]
from noise.exceptions import (  # type: ignore[import-untyped]
    NoiseHandshakeError,
    NoiseInvalidMessage,
    NoiseMaxNonceError,
    NoiseValueError,
)

from gridnet.errors import HandshakeFailed, SealedBoxError

PROTOCOL_NAME: Final = b"Noise_XX_25519_ChaChaPoly_BLAKE2b"
TAG_BYTES: Final = 16
"""The authenticator of each Noise transport message."""
MAX_NOISE_MESSAGE: Final = 65_535
"""The largest Noise message (the specification's limit) [bytes]."""
CHUNK_BYTES: Final = MAX_NOISE_MESSAGE - TAG_BYTES
"""Plaintext carried by one transport message [bytes]."""
LENGTH_BYTES: Final = 4

_NOISE_ERRORS: Final = (InvalidTag, NoiseValueError, NoiseInvalidMessage, NoiseHandshakeError, ValueError)


def sealed_size(plaintext_bytes: int) -> int:
    """Bytes a frame of ``plaintext_bytes`` takes once encrypted: the 4-byte length, the
    plaintext, and a 16-byte tag per piece of at most :data:`CHUNK_BYTES`."""
    body = LENGTH_BYTES + plaintext_bytes
    return body + TAG_BYTES * -(-body // CHUNK_BYTES)


class Handshake:
    """One side of a Noise XX handshake; :meth:`session` once it is finished."""

    def __init__(self, *, initiator: bool, prologue: bytes) -> None:
        self._noise = NoiseConnection.from_name(PROTOCOL_NAME)
        if initiator:
            self._noise.set_as_initiator()
        else:
            self._noise.set_as_responder()
        static = X25519PrivateKey.generate().private_bytes_raw()  # fresh per link
        self._noise.set_keypair_from_private_bytes(Keypair.STATIC, static)
        self._noise.set_prologue(prologue)
        self._noise.start_handshake()

    @property
    def finished(self) -> bool:
        return bool(self._noise.handshake_finished)

    def write(self) -> bytes:
        """The next handshake message to send (no payload). Raises :class:`HandshakeFailed`
        when the peer's key it must agree with is unusable (a low-order point)."""
        try:
            return bytes(self._noise.write_message(b""))
        except _NOISE_ERRORS:
            raise HandshakeFailed("the peer's handshake key is unusable (no shared secret with it)") from None

    def read(self, message: bytes) -> None:
        """Take the peer's next handshake message. Raises :class:`HandshakeFailed` when it
        does not authenticate (another prologue, tampered, truncated) or carries a payload."""
        try:
            payload = self._noise.read_message(message)
        except _NOISE_ERRORS:
            raise HandshakeFailed(
                f"a Noise handshake message of {len(message)} bytes does not authenticate"
            ) from None
        if payload:
            raise HandshakeFailed("a Noise handshake message carries a payload")

    def session(self) -> Session:
        assert self.finished, "the handshake is not finished"
        return Session(self._noise)


class Session:
    """The two transport ciphers of a finished handshake, and its handshake hash."""

    def __init__(self, noise: NoiseConnection) -> None:
        self._noise = noise
        self.handshake_hash: bytes = bytes(noise.get_handshake_hash())
        """BLAKE2b of the whole handshake (64 bytes): the same on both ends of this link only."""

    def encrypt(self, plaintext: bytes) -> bytes:
        """One frame's bytes (:func:`sealed_size` of the plaintext)."""
        body = len(plaintext).to_bytes(LENGTH_BYTES, "big") + plaintext
        encrypt = self._noise.encrypt
        if len(body) <= CHUNK_BYTES:
            return bytes(encrypt(body))
        return b"".join(encrypt(body[i : i + CHUNK_BYTES]) for i in range(0, len(body), CHUNK_BYTES))

    def decrypt(self, data: bytes) -> bytes:
        """The plaintext of the peer's next frame. Raises :class:`SealedBoxError` when it
        does not open: a byte changed, a frame replayed, dropped or reordered, or pieces cut
        off or added."""
        decrypt = self._noise.decrypt
        piece = CHUNK_BYTES + TAG_BYTES
        try:
            if len(data) <= piece:
                body = bytes(decrypt(data))
            else:
                body = b"".join(decrypt(data[i : i + piece]) for i in range(0, len(data), piece))
        except (*_NOISE_ERRORS, NoiseMaxNonceError):
            raise SealedBoxError(
                "a link frame failed to authenticate (tampered, replayed or reordered)"
            ) from None
        length = int.from_bytes(body[:LENGTH_BYTES], "big")
        if len(body) != LENGTH_BYTES + length:
            raise SealedBoxError(
                f"a link frame of {len(body)} bytes says it holds {length} (cut or extended)"
            )
        return body[LENGTH_BYTES:]
