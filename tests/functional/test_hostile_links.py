"""Hostile connections against a real node process on 127.0.0.1, during the handshake.

Before a link is up its frames may be at most ``HANDSHAKE_FRAME`` long: a frame announced
larger (a 4 MiB "hello") is refused by name without its bytes being read or waited for. At
most ``MAX_HANDSHAKES`` connections may be in their handshake at once, each for at most
``HANDSHAKE_TIMEOUT_S``: when one host holds every place, an honest peer still links (in the
place of that host's oldest connection, closed at once), and the others are closed when their
time is up. A Noise handshake with a forged identity, an identity
signed for another link, a tampered message or a low-order key is refused with its rule. Every process
started here is stopped (by PID)."""

from __future__ import annotations

import asyncio
import struct
import time
from pathlib import Path

from gridnet.crypto.keys import PrivateKey, write_key_file
from gridnet.ledger.chain import Chain
from gridnet.net.tcp import HANDSHAKE_FRAME, MAX_HANDSHAKES, PROTOCOL_VERSION, dial, read_frame
from gridnet.node.devnet import LOCAL, DevNode, free_port, stop_all
from tests.helpers import test_params, wait_for
from tests.net.rogue import closes, forged_identity, low_order_key, older_version, tampered_handshake

WAIT_S = 120.0
"""Ceiling for a node to start, close a connection or write its log [s]: far above what a
busy machine needs (the tests wait for conditions, never for a fixed time)."""


def start_node(root: Path, nodes: list[DevNode], *args: str) -> tuple[DevNode, bytes]:
    params = test_params([], genesis_time=int(time.time() * 1000) - 60_000)
    node = DevNode("target", root / "target", free_port(), free_port())
    chain = Chain.create(node.data_dir, params)
    chain_id = chain.chain_id
    chain.close()
    write_key_file(node.data_dir / "node.key", PrivateKey.from_label("hostile-target"))
    nodes.append(node)
    node.start(*args)
    assert wait_for(lambda: node.head() is not None, WAIT_S)
    return node, chain_id


def logged(node: DevNode, text: str) -> bool:
    path = node.data_dir / "node.log"
    return path.exists() and text in path.read_text()


async def closed(reader: asyncio.StreamReader) -> bool:
    return await closes(reader, WAIT_S)


def test_an_oversized_frame_before_the_handshake_is_refused_unread(
    tmp_path: Path, nodes: list[DevNode]
) -> None:
    node, _ = start_node(tmp_path, nodes)
    announced = 4 * 1024 * 1024

    async def hello_of_4_mib() -> bool:
        reader, writer = await asyncio.open_connection(LOCAL, node.port)
        writer.write(struct.pack(">I", announced))  # and not one byte of it
        return await closed(reader)

    assert asyncio.run(hello_of_4_mib())
    # Refused for its announced length (had it waited for the bytes, the rule would be
    # HandshakeTimeout after 5 s).
    assert wait_for(
        lambda: logged(node, f"FrameTooLarge: frame of {announced} bytes; the limit is {HANDSHAKE_FRAME}"),
        WAIT_S,
    )
    stop_all(nodes)
    assert not logged(node, "HandshakeTimeout")


def test_handshakes_are_bounded_in_number_and_in_time(tmp_path: Path, nodes: list[DevNode]) -> None:
    node, chain_id = start_node(tmp_path, nodes)

    async def scenario() -> tuple[bool, list[bool]]:
        held = []
        for _ in range(MAX_HANDSHAKES):
            reader, writer = await asyncio.open_connection(LOCAL, node.port)
            await read_frame(reader, HANDSHAKE_FRAME)  # its hello: it is in this handshake now
            held.append((reader, writer))
        # Every place is taken, by one host: an honest peer still links, in the place of
        # that host's oldest connection.
        _, writer, session = await dial(LOCAL, node.port, PrivateKey.from_label("hostile-honest"), chain_id)
        writer.close()
        assert len(session.handshake_hash) == 64
        oldest_closed = await closed(held[0][0])
        timed_out = list(await asyncio.gather(*(closed(r) for r, _ in held[1:])))
        return oldest_closed, timed_out

    oldest_closed, timed_out = asyncio.run(scenario())
    assert oldest_closed and timed_out == [True] * (MAX_HANDSHAKES - 1)
    assert wait_for(
        lambda: logged(node, f"TooManyHandshakes: {MAX_HANDSHAKES} connections are in their handshake"),
        WAIT_S,
    )
    assert wait_for(lambda: logged(node, "HandshakeTimeout: no complete handshake within 5 s"), WAIT_S)
    assert wait_for(lambda: logged(node, "linked "), WAIT_S)


def test_a_forged_or_tampered_noise_handshake_is_refused_by_its_rule(
    tmp_path: Path, nodes: list[DevNode]
) -> None:
    node, chain_id = start_node(tmp_path, nodes, "--debug", "net")  # (repeated refusals are debug lines)
    named, signer = PrivateKey.from_label("hostile-named"), PrivateKey.from_label("hostile-signer")

    async def scenario() -> list[bool]:
        return [
            # Signed by another key than the one it names.
            await closed(await forged_identity(LOCAL, node.port, chain_id, named, signer)),
            # Signed by the key it names, for another link (a replayed identity).
            await closed(
                await forged_identity(LOCAL, node.port, chain_id, named, named, chain_id + bytes(64))
            ),
            # A Noise handshake message altered on the way.
            await closed(await tampered_handshake(LOCAL, node.port, chain_id)),
            # An ephemeral key that agrees on no secret.
            await closed(await low_order_key(LOCAL, node.port, chain_id)),
            # A peer of the link protocol's previous version.
            await closed(await older_version(LOCAL, node.port, chain_id)),
        ]

    assert asyncio.run(scenario()) == [True] * 5
    assert wait_for(
        lambda: logged(node, "HandshakeFailed: the peer's node key did not sign this handshake"), WAIT_S
    )
    assert wait_for(lambda: logged(node, "HandshakeFailed: a Noise handshake message of 64 bytes"), WAIT_S)
    assert wait_for(lambda: logged(node, "HandshakeFailed: the peer's handshake key is unusable"), WAIT_S)
    assert wait_for(
        lambda: logged(
            node,
            f"HandshakeFailed: the peer speaks link protocol {PROTOCOL_VERSION - 1}; "
            f"this node speaks {PROTOCOL_VERSION}",
        ),
        WAIT_S,
    )
    stop_all(nodes)
    text = (node.data_dir / "node.log").read_text()
    assert text.count("did not sign this handshake") == 2
    assert "linked " not in text and "Traceback" not in text
