"""The node core: ledger + mempool + miner + gossip logic, without any I/O."""
