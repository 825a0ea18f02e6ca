"""Data relays: token pools, transmission tokens, hop entries and shares, transit claims,
fraud proofs against double-signed hop entries, and onion routing."""
