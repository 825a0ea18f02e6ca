"""The node's HTTP API (FastAPI; OpenAPI at ``/docs``): read the chain, its state, the
mempool and the market's order topics; submit transactions and orders.

``create_app(node, clock=..., broadcast=...)`` serves one :class:`~gridnet.node.node.Node`.
The node runs in the same asyncio event loop as the app, so every handler is ``async`` and
calls the node directly (never from a worker thread). Submissions go through the node like
a local user's: ``submit_tx`` / ``post_order`` at ``clock()``, and the gossip they produce is
handed to ``broadcast`` (the transport delivers it).

JSON conventions: addresses in their ``gn...`` text form, hashes, keys, signatures and
canonical bytes in lowercase hex, amounts in base units and energy in Wh as integers,
cumulative work as a decimal string. Every error is ``{"code": ..., "message": ...}``:
the rule's name (``BadSignature``, ``NonceGap``, ``InvalidAddress``, ``Malformed``, ...) or
``BadRequest`` / ``NotFound`` / ``MethodNotAllowed`` / ``InternalError``.

Transactions are found by id through an in-memory index of the main chain, built lazily
on the first lookup and brought up to date on each later one (a reorg re-indexes from the
fork point). It is not stored: a restarted node rebuilds it on its first lookup.

Pydantic lives here only (the edge); the ledger's objects stay msgspec Structs.
"""

from gridnet.node.api.app import create_app

__all__ = ["create_app"]
