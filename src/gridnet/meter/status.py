"""A meter's signed status: what it says it is and runs (seed 004's SEL input).

The meter signs its vendor, model and firmware version, with the image hash of the release
it installed (all zero for the firmware it shipped with). The sequence number is the device's
own, over its whole life: 0 for the status it leaves the factory with, one more after every
update. A status is a fact about the device, like a reading, and names no chain: the same
signed status is true on every chain the meter is registered on. A registration carries the
status the meter signs then (its current number, not 0 once it has updated), and a chain takes
a status only above the number it holds, so an older status (signed before an update, for any
chain) is stale everywhere and cannot roll a chain's view of the meter back.
"""

from __future__ import annotations

from collections.abc import Iterable

from gridnet.crypto.hashing import P_FIRMWARE, hash32, hash32_chunks
from gridnet.crypto.keys import Domain, PrivateKey, verify_signature
from gridnet.encoding import U63, AddressBytes, HashBytes, SignatureBytes, Wire, encode
from gridnet.meter.certificate import Label
from gridnet.units import HASH_BYTES, PublicKey

FACTORY_IMAGE = bytes(HASH_BYTES)
"""The release hash of the firmware a meter shipped with (named by its certificate)."""


class MeterStatus(Wire, frozen=True):
    meter: AddressBytes
    """The meter's id (address of its key)."""
    seq: U63
    """The device's status number: 0 as it shipped, one more after every update it installs
    (never reset, whatever chain it is registered on)."""
    vendor: Label
    model: Label
    firmware: Label
    """Firmware version running now."""
    image: HashBytes
    """Hash of the installed release's image (``FACTORY_IMAGE`` for the shipped firmware)."""


class SignedMeterStatus(Wire, frozen=True):
    status: MeterStatus
    signature: SignatureBytes
    """The meter's signature (METER_STATUS domain) over the encoded status."""


def sign_status(meter_key: PrivateKey, status: MeterStatus) -> SignedMeterStatus:
    return SignedMeterStatus(status, meter_key.sign(Domain.METER_STATUS, encode(status)))


def is_status_signed_by(signed: SignedMeterStatus, meter_key: PublicKey) -> bool:
    return verify_signature(Domain.METER_STATUS, meter_key, encode(signed.status), signed.signature)


def firmware_image_hash(image: bytes) -> bytes:
    """The hash a release publishes for its image bytes (and a meter reports installing it)."""
    return hash32(image, P_FIRMWARE)


def firmware_image_hash_of_chunks(chunks: Iterable[bytes]) -> bytes:
    """``firmware_image_hash`` of an image read piece by piece (a file, never held whole)."""
    return hash32_chunks(chunks, P_FIRMWARE)
