"""Cryptography, one home each: hashing.py, keys.py (signing), address.py, boxes.py (sealed
boxes), noise.py (peer links)."""
