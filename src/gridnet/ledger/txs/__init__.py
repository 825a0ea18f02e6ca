"""Transaction types: one module each (payload, stateless and stateful rules).

Adding a type is one module here plus one entry in :mod:`gridnet.ledger.registry`.
"""
