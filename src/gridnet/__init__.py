"""GRIDNET: a fully distributed smart-grid ledger."""

import logging

# A library logs nothing unless its program configures logging (gridnet node does).
logging.getLogger(__name__).addHandler(logging.NullHandler())

__version__ = "0.1.0"
