"""Cryptography, one home each: hashing.py, keys.py (signing), address.py."""
