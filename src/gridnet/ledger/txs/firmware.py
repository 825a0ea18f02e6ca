"""Firmware releases on chain (seed 004's SEL knowledge base, the patches half).

PublishFirmware: a manufacturer authority publishes a release of its firmware for a vendor
and model: the version and the hash of its image. A release is immutable (a new image needs
a new version). A meter's status may name a release only of the manufacturer that certified
it, with the same image hash (``check_release``): a status cannot claim firmware nobody
published.
"""

from __future__ import annotations

from gridnet.crypto.address import address_to_text
from gridnet.crypto.hashing import hash32
from gridnet.encoding import U63, HashBytes, Wire, encode
from gridnet.errors import FirmwareReleaseExists, MalformedTransaction, NotAuthorized, UnknownFirmwareRelease
from gridnet.ledger.params import ChainParams
from gridnet.ledger.state import StateView, register_table
from gridnet.ledger.txs.authority import AUTHORITIES
from gridnet.ledger.txs.base import BlockEnv, TxRules
from gridnet.ledger.txs.identity import refuse_revoked
from gridnet.meter.certificate import Label
from gridnet.meter.status import FACTORY_IMAGE, MeterStatus
from gridnet.security.roles import Role
from gridnet.units import Address


class FirmwareRelease(Wire, frozen=True):
    image: HashBytes
    """Hash of the release's image (what a meter that installed it reports)."""
    published_at: U63
    """Block that published it."""


RELEASES = register_table("releases", b"W", FirmwareRelease)


def release_key(manufacturer: Address, vendor: str, model: str, version: str) -> bytes:
    return hash32(encode((manufacturer, vendor, model, version)))


class PublishFirmware(Wire, frozen=True, tag=21):
    vendor: Label
    model: Label
    version: Label
    image: HashBytes
    """Hash of the image (the meter's status names it after installing the release)."""


def validate_publish_firmware(payload: PublishFirmware, params: ChainParams) -> None:
    if payload.image == FACTORY_IMAGE:
        raise MalformedTransaction("a release's image hash cannot be all zero (that names shipped firmware)")


def apply_publish_firmware(
    state: StateView, env: BlockEnv, sender: Address, payload: PublishFirmware
) -> None:
    authority = state.get(AUTHORITIES, sender)
    if authority is None or not authority.roles & Role.MANUFACTURER:
        raise NotAuthorized(
            f"{address_to_text(sender)} is not a manufacturer authority and cannot publish firmware"
        )
    refuse_revoked(state, sender, "publishing firmware")
    key = release_key(sender, payload.vendor, payload.model, payload.version)
    if state.get(RELEASES, key) is not None:
        raise FirmwareReleaseExists(
            f"{payload.vendor} {payload.model} firmware {payload.version} is already published; "
            "a new image needs a new version"
        )
    state.put(RELEASES, key, FirmwareRelease(payload.image, env.height))


def check_release(state: StateView, manufacturer: Address, status: MeterStatus, shipped: str | None) -> None:
    """Raise ``UnknownFirmwareRelease`` unless ``status`` names a release ``manufacturer``
    published with the same image hash, or (``shipped``) the factory firmware it shipped with."""
    if shipped is not None and status.image == FACTORY_IMAGE and status.firmware == shipped:
        return
    release = state.get(RELEASES, release_key(manufacturer, status.vendor, status.model, status.firmware))
    if release is None or release.image != status.image:
        raise UnknownFirmwareRelease(
            f"{status.vendor} {status.model} firmware {status.firmware} with image "
            f"{status.image.hex()[:16]} was never published by the meter's manufacturer "
            f"{address_to_text(manufacturer)}"
        )


PUBLISH_FIRMWARE_RULES = TxRules(PublishFirmware, validate_publish_firmware, apply_publish_firmware)
