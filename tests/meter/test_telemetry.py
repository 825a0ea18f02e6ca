"""In-memory telemetry and simulated meters: order, counters, signatures."""

from __future__ import annotations

import msgspec
import pytest

from gridnet.agents.device import SimulatedDevice
from gridnet.crypto.keys import PrivateKey
from gridnet.errors import FirmwareInstallFailed
from gridnet.meter.reading import is_signed_by
from gridnet.meter.telemetry import InMemoryTelemetry, SimulatedMeter, Telemetry
from gridnet.sim.physics import Battery

KEY = PrivateKey.from_label("telemetry-test-meter")
OTHER = PrivateKey.from_label("telemetry-test-other")
START = 1_966_080  # an interval index (2026-01-29)


def test_in_memory_telemetry_returns_readings_in_order_and_empties() -> None:
    telemetry: Telemetry = InMemoryTelemetry()
    meters = [SimulatedMeter(KEY), SimulatedMeter(OTHER)]
    sent = [meter.read(START + i, 10 * i, i) for i in range(3) for meter in meters]
    for reading in sent:
        telemetry.publish(reading)
    assert telemetry.collect() == sent
    assert telemetry.collect() == []
    late = meters[0].read(START + 3, 1, 1)
    telemetry.publish(late)
    assert telemetry.collect() == [late]


def test_simulated_meter_counters_accumulate_and_readings_verify() -> None:
    meter = SimulatedMeter(KEY, firmware="2.1.0")
    energy = [(500, 0), (250, 40), (0, 300), (0, 0)]
    total_export = total_import = 0
    for offset, (exported, imported) in enumerate(energy):
        signed = meter.read(START + offset, exported, imported)
        total_export += exported
        total_import += imported
        reading = signed.reading
        assert reading.meter == KEY.address == meter.meter_id
        assert reading.interval == START + offset
        assert (reading.exported_wh, reading.imported_wh) == (exported, imported)
        assert (reading.total_exported_wh, reading.total_imported_wh) == (total_export, total_import)
        assert reading.firmware == "2.1.0"
        assert is_signed_by(signed, KEY.public_key)
        assert not is_signed_by(signed, OTHER.public_key)
    assert (meter.total_exported_wh, meter.total_imported_wh) == (750, 340)


def test_a_meter_that_cannot_take_a_release_keeps_its_firmware() -> None:
    """Installed through the adapter: an updatable meter runs the release and signs a new
    status; one that cannot be updated refuses it by name and its status and readings stay
    as they were."""
    image = b"release 1.1.0"
    updatable = SimulatedDevice(SimulatedMeter(OTHER), None)
    assert updatable.install("1.1.0", image).status.firmware == "1.1.0"
    stuck = SimulatedDevice(SimulatedMeter(KEY, updatable=False), None)
    before = stuck.firmware()
    with pytest.raises(
        FirmwareInstallFailed, match=r"GridMeter GM-15 firmware 1\.1\.0; it keeps running 1\.0\.0"
    ):
        stuck.install("1.1.0", image)
    assert stuck.firmware() == before
    assert stuck.meter.read(START, 1, 0).reading.firmware == "1.0.0"


def test_the_adapter_moves_the_storage_once_an_interval() -> None:
    """``operate`` takes the interval's net move (+ charge, - discharge), as far as the
    storage allows; a site without storage moves nothing."""
    battery = Battery(10_000, 5_000, max_power_w=4_000, efficiency=1.0)  # (1,000 Wh an interval)
    device = SimulatedDevice(SimulatedMeter(OTHER), battery)
    assert device.operate(1_500) == 1_000 and device.stored_wh() == 6_000
    assert SimulatedDevice(SimulatedMeter(KEY), None).operate(-300) == 0


def test_simulated_meter_refuses_negative_energy() -> None:
    meter = SimulatedMeter(KEY)
    with pytest.raises(ValueError):
        meter.read(START, -1, 0)
    with pytest.raises(ValueError):
        meter.read(START, 0, -1)
    assert (meter.total_exported_wh, meter.total_imported_wh) == (0, 0)


@pytest.mark.parametrize(
    "change",
    [
        {"interval": START + 1},
        {"exported_wh": 1_000},
        {"imported_wh": 1},
        {"total_exported_wh": 10_000},
        {"firmware": "6.6.6"},
        {"meter": OTHER.address},
    ],
)
def test_reading_altered_after_signing_fails_verification(change: dict[str, object]) -> None:
    signed = SimulatedMeter(KEY).read(START, 400, 20)
    assert is_signed_by(signed, KEY.public_key)
    altered = msgspec.structs.replace(signed, reading=msgspec.structs.replace(signed.reading, **change))
    assert not is_signed_by(altered, KEY.public_key)
