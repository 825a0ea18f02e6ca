"""GRIDNET: a fully distributed smart-grid ledger."""

__version__ = "0.1.0"
