"""A meter's binding of its registration to an owner on a chain (``meter/binding.py``)."""

from __future__ import annotations

from gridnet.crypto.keys import Domain, PrivateKey
from gridnet.encoding import encode
from gridnet.meter.binding import MeterBinding, binding_message, is_bound_to, sign_binding

METER = PrivateKey.from_label("binding-meter")
OWNER, OTHER = PrivateKey.from_label("binding-owner"), PrivateKey.from_label("binding-other")
CHAIN, OTHER_CHAIN = bytes(range(32)), bytes(32)


def test_a_binding_verifies_for_its_meter_owner_and_chain_only() -> None:
    signature = sign_binding(METER, CHAIN, OWNER.address)
    assert is_bound_to(METER.public_key, CHAIN, OWNER.address, signature)
    assert not is_bound_to(METER.public_key, CHAIN, OTHER.address, signature)  # owner copied
    assert not is_bound_to(METER.public_key, OTHER_CHAIN, OWNER.address, signature)  # chain copied
    assert not is_bound_to(OTHER.public_key, CHAIN, OWNER.address, signature)  # another meter's
    # The owner's key binding the meter is no binding: the meter's own key signs it.
    assert not is_bound_to(METER.public_key, CHAIN, OWNER.address, sign_binding(OWNER, CHAIN, OWNER.address))


def test_the_binding_is_signed_in_its_own_domain_after_the_chain_id() -> None:
    message = CHAIN + encode(MeterBinding(METER.address, OWNER.address))
    assert binding_message(CHAIN, MeterBinding(METER.address, OWNER.address)) == message
    status_like = METER.sign(Domain.METER_STATUS, message)  # (the same bytes, another domain)
    assert not is_bound_to(METER.public_key, CHAIN, OWNER.address, status_like)
    assert is_bound_to(METER.public_key, CHAIN, OWNER.address, METER.sign(Domain.METER_BINDING, message))
