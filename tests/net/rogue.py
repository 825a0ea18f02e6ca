"""Peers that break the link handshake on purpose, step by step (for tests against real
transports and node processes on 127.0.0.1)."""

from __future__ import annotations

import asyncio

from gridnet.crypto.keys import Domain, PrivateKey
from gridnet.crypto.noise import Handshake, Session
from gridnet.encoding import encode
from gridnet.net.tcp import PROTOCOL_VERSION, Hello, Identity, frame, read_frame


async def noise_link(
    host: str, port: int, chain_id: bytes
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter, Session]:
    """Dial, exchange hellos and complete the Noise handshake, but send no identity yet."""
    reader, writer = await asyncio.open_connection(host, port)
    hello = encode(Hello(PROTOCOL_VERSION, chain_id))
    noise = Handshake(initiator=True, prologue=hello)
    writer.write(frame(hello) + frame(noise.write()))
    await read_frame(reader)  # its hello
    noise.read(await read_frame(reader))
    writer.write(frame(noise.write()))
    return reader, writer, noise.session()


async def forged_identity(
    host: str, port: int, chain_id: bytes, named: PrivateKey, signer: PrivateKey, signed: bytes | None = None
) -> asyncio.StreamReader:
    """A handshake whose identity names ``named``'s key but is signed by ``signer``, over
    ``signed`` (default: what an honest peer signs, chain_id || the handshake hash)."""
    reader, writer, session = await noise_link(host, port, chain_id)
    message = chain_id + session.handshake_hash if signed is None else signed
    writer.write(
        frame(session.encrypt(encode(Identity(named.public_key, signer.sign(Domain.PEER, message)))))
    )
    return reader


async def tampered_handshake(host: str, port: int, chain_id: bytes) -> asyncio.StreamReader:
    """A handshake whose last Noise message has one bit flipped."""
    reader, writer = await asyncio.open_connection(host, port)
    hello = encode(Hello(PROTOCOL_VERSION, chain_id))
    noise = Handshake(initiator=True, prologue=hello)
    writer.write(frame(hello) + frame(noise.write()))
    await read_frame(reader)
    noise.read(await read_frame(reader))
    last = bytearray(noise.write())
    last[-1] ^= 0x01
    writer.write(frame(bytes(last)))
    return reader


async def low_order_key(host: str, port: int, chain_id: bytes) -> asyncio.StreamReader:
    """A handshake whose ephemeral key is the all-zero point (no shared secret with it)."""
    reader, writer = await asyncio.open_connection(host, port)
    writer.write(frame(encode(Hello(PROTOCOL_VERSION, chain_id))) + frame(bytes(32)))
    return reader


async def older_version(host: str, port: int, chain_id: bytes) -> asyncio.StreamReader:
    """A hello of the link protocol before this one (then a proper first Noise message)."""
    reader, writer = await asyncio.open_connection(host, port)
    hello = encode(Hello(PROTOCOL_VERSION - 1, chain_id))
    noise = Handshake(initiator=True, prologue=hello)
    writer.write(frame(hello) + frame(noise.write()))
    return reader


async def closes(reader: asyncio.StreamReader, seconds: float) -> bool:
    """True when the other end closes the connection (reading what it sends until then);
    False if it keeps it open for ``seconds``."""
    try:
        while await asyncio.wait_for(reader.read(1 << 16), seconds):
            pass
        return True
    except ConnectionError:
        return True
    except TimeoutError:
        return False
