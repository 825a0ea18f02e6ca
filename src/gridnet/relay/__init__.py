"""Data relays: token pools, transmission tokens, hop lists, transit claims and onion routing."""
