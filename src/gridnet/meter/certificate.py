"""Meter certificates: a manufacturer vouches for a meter key.

The manufacturer signs the certificate once, at the factory; it is valid on any chain.
The meter's owner registers it on chain, binding the meter to the owner's identity;
the owner never holds the meter's signing key.
"""

from __future__ import annotations

from typing import Annotated

import msgspec

from gridnet.crypto.address import address_from_public_key
from gridnet.crypto.keys import Domain, PrivateKey, verify_signature
from gridnet.encoding import PublicKeyBytes, SignatureBytes, Wire, encode
from gridnet.units import Address, PublicKey

Label = Annotated[str, msgspec.Meta(min_length=1, max_length=64)]


class MeterCertificate(Wire, frozen=True):
    meter_key: PublicKeyBytes
    """The meter's own Ed25519 public key (its readings are signed with it)."""
    vendor: Label
    model: Label
    firmware: Label
    """Firmware version the meter shipped with."""
    serial: Label
    manufacturer: PublicKeyBytes
    """Key of the manufacturer that signs this certificate."""


class SignedCertificate(Wire, frozen=True):
    certificate: MeterCertificate
    signature: SignatureBytes
    """The manufacturer's signature of the certificate (CERTIFICATE domain)."""


def meter_id(meter_key: PublicKey) -> Address:
    """A meter is known by the address of its key."""
    return address_from_public_key(meter_key)


def issue_certificate(
    manufacturer: PrivateKey, meter_key: PublicKey, *, vendor: str, model: str, firmware: str, serial: str
) -> SignedCertificate:
    cert = MeterCertificate(meter_key, vendor, model, firmware, serial, manufacturer.public_key)
    return SignedCertificate(cert, manufacturer.sign(Domain.CERTIFICATE, encode(cert)))


def is_valid_certificate(signed: SignedCertificate) -> bool:
    """True when the certificate is signed by the manufacturer key it names."""
    cert = signed.certificate
    return verify_signature(Domain.CERTIFICATE, cert.manufacturer, encode(cert), signed.signature)
