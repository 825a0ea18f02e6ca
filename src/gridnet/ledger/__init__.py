"""Consensus: transactions, blocks, state, state transition, chain, store, mempool."""
