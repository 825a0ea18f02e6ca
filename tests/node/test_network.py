"""Nodes on the in-memory network: gossip, mining, partitions and convergence."""

from __future__ import annotations

from pathlib import Path

from gridnet.crypto.keys import PrivateKey
from gridnet.encoding import encode
from gridnet.ledger.chain import Chain
from gridnet.ledger.commitment import StateCommitment
from gridnet.ledger.genesis import genesis_state
from gridnet.ledger.state import StateView
from gridnet.ledger.transition import apply_block
from gridnet.ledger.txs.transfer import Transfer
from gridnet.net.memory import MemoryNetwork
from gridnet.node.node import Node, NodeConfig
from gridnet.units import UNITS_PER_GNC
from gridnet.work import target_from_bits, target_to_bytes
from tests.helpers import GENESIS_TIME, sign, test_keys, test_params


def make_network(
    tmp_path: Path, n: int, miners: set[int], bits: int = 12
) -> tuple[MemoryNetwork, list[PrivateKey]]:
    keys = test_keys(4)
    params = test_params(
        keys,
        block_interval_ms=2_000,
        initial_target=target_to_bytes(target_from_bits(bits)),
        pow_limit=target_to_bytes(target_from_bits(4)),
    )
    net = MemoryNetwork(start_ms=GENESIS_TIME, latency_ms=40, jitter_ms=30, seed=7)
    for i in range(n):
        chain = Chain.create(tmp_path / f"n{i}", params)
        # Distinct miner addresses so coinbases (and so blocks) differ between nodes.
        miner = PrivateKey.from_label(f"miner-{i}").address if i in miners else None
        net.add(Node(f"n{i}", chain, NodeConfig(miner=miner, hashes_per_tick=300)))
    net.link_all()
    return net, keys


def replay_root(chain: Chain) -> bytes:
    """State root after replaying the chain's main blocks from genesis into a fresh state."""
    values = genesis_state(chain.params)
    commitment = StateCommitment.from_items(values.items())

    for height in range(1, chain.height + 1):
        block = chain.block_at(height)
        assert block is not None
        parent = chain.main[height - 1]
        ctx = chain.header_context(parent, now=block.header.timestamp)

        result = apply_block(StateView(values), commitment, block, ctx, encoded_size=len(encode(block)))
        for k, v in result.changes.items():
            if v is None:
                values.pop(k, None)
            else:
                values[k] = v
    assert values == chain.values
    return commitment.root


def test_transactions_gossip_and_get_mined(tmp_path: Path) -> None:
    net, keys = make_network(tmp_path, 3, miners={0})
    chain0 = net.nodes["n0"].chain
    tx = sign(chain0, keys[1], Transfer(keys[2].address, 5 * UNITS_PER_GNC), 0)
    events = net.submit("n2", tx)
    assert events[0].kind.value == "accepted"
    net.run_for(30_000)
    assert net.settle()
    for node in net.nodes.values():
        assert node.chain.height >= 3
        assert node.chain.account(keys[2].address).balance == 1_005 * UNITS_PER_GNC
        assert len(node.mempool) == 0


def test_partition_heals_to_most_work_chain(tmp_path: Path) -> None:
    net, keys = make_network(tmp_path, 3, miners={0, 1, 2})
    net.run_for(6_000)
    assert net.settle()
    # Split: n0 alone mines on one side, n1 with n2 on the other, with a sixth of their hash
    # power (so its branch has less work whatever the luck of a few blocks).
    net.partition({"n0"}, {"n1", "n2"})
    net.nodes["n0"].config.hashes_per_tick = 100
    spend_a = sign(net.nodes["n0"].chain, keys[1], Transfer(keys[2].address, 7 * UNITS_PER_GNC), 0)
    spend_b = sign(net.nodes["n1"].chain, keys[1], Transfer(keys[3].address, 7 * UNITS_PER_GNC), 0)
    net.submit("n0", spend_a)
    net.submit("n1", spend_b)
    # A run of transactions from one sender on n0's side: if n0's branch loses, they
    # must return to the mempool in nonce order and be mined on the winning branch.
    # Spaced out so that they land in different blocks.
    for nonce in range(3):
        tx = sign(net.nodes["n0"].chain, keys[0], Transfer(keys[3].address, 1), nonce)
        assert net.submit("n0", tx)[0].kind.value == "accepted"
        net.run_for(10_000)
    net.run_for(10_000)
    heads = {name: n.chain.head.hash for name, n in net.nodes.items()}
    assert heads["n0"] != heads["n1"], "each side must have mined its own branch"
    assert heads["n1"] == heads["n2"]
    works = {name: n.chain.head.total_work for name, n in net.nodes.items()}
    assert works["n1"] > works["n0"], "more hash power out-mines less: n0's branch must lose"
    net.heal()
    assert net.settle(max_ms=60_000)
    winner = max(works.values())
    for node in net.nodes.values():
        assert node.chain.head.total_work >= winner
    net.run_for(20_000)
    assert net.settle()
    roots = {replay_root(n.chain) for n in net.nodes.values()}
    assert len(roots) == 1
    for node in net.nodes.values():
        assert node.chain.account(keys[0].address).nonce == 3
    # Exactly one of the two conflicting spends survives everywhere.
    b2 = net.nodes["n2"].chain.account(keys[2].address).balance
    b3 = net.nodes["n2"].chain.account(keys[3].address).balance
    assert {b2, b3 - 3} == {1_000 * UNITS_PER_GNC, 1_007 * UNITS_PER_GNC}
