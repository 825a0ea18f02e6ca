"""The off-chain energy market: signed orders, deterministic matching, private policies (pure)."""
