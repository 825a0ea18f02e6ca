"""A meter's binding: its own key signs which owner registers it, on which chain.

A certificate is valid on any chain and a meter's status names neither its owner nor a
chain, so a registration made of those alone could be copied out of a pending transaction by
anyone with an identity and mined first (the copier would own the meter on chain and be paid
for its energy), or replayed on another chain. The meter therefore signs a ``MeterBinding``
(``Domain.METER_BINDING``, after the chain id, as every chain-bound signature in GRIDNET) naming
its owner; the chain registers the meter only to that owner, on that chain
(``MeterBindingInvalid`` otherwise).

The device signs it when its owner asks (``gridnet meter bind``, with the meter's key): the
owner's key never signs for the meter, and the meter's key never leaves it.
"""

from __future__ import annotations

from gridnet.crypto.address import address_from_public_key
from gridnet.crypto.keys import Domain, PrivateKey, SignatureCheck, verify_signature
from gridnet.encoding import AddressBytes, Wire, encode
from gridnet.units import Address, Hash32, PublicKey, Signature


class MeterBinding(Wire, frozen=True):
    meter: AddressBytes
    """The meter's id (address of its key)."""
    owner: AddressBytes
    """The address that registers it (the registration's sender), the meter's owner on chain."""


def binding_message(chain_id: Hash32, binding: MeterBinding) -> bytes:
    """What the meter signs: the chain id, then the encoded binding."""
    return chain_id + encode(binding)


def sign_binding(meter_key: PrivateKey, chain_id: Hash32, owner: Address) -> Signature:
    """The meter's signature binding its registration to ``owner`` on chain ``chain_id``."""
    binding = MeterBinding(meter_key.address, owner)
    return meter_key.sign(Domain.METER_BINDING, binding_message(chain_id, binding))


def binding_check(
    meter_key: PublicKey, chain_id: Hash32, owner: Address, signature: Signature
) -> SignatureCheck:
    """Checking ``signature`` as ``meter_key``'s binding of its registration to ``owner`` on
    chain ``chain_id``."""
    binding = MeterBinding(address_from_public_key(meter_key), owner)
    return (Domain.METER_BINDING, meter_key, binding_message(chain_id, binding), signature)


def is_bound_to(meter_key: PublicKey, chain_id: Hash32, owner: Address, signature: Signature) -> bool:
    """True when ``signature`` is ``meter_key``'s binding of its registration to ``owner`` on
    chain ``chain_id``."""
    return verify_signature(*binding_check(meter_key, chain_id, owner, signature))
