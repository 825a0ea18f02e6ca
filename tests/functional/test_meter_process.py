"""A ``gridnet meter`` process on 127.0.0.1, driven over HTTP with MeterClient and the CLI.

The meter runs on a simulated clock, so the tests move its time and feed it steps; they wait
for the process (its info file, then its first answer) with a ceiling far above what a busy
machine needs, and stop it by PID."""

from __future__ import annotations

import http.client
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import msgspec
import pytest

from gridnet.crypto.address import address_to_text
from gridnet.crypto.keys import Domain, PrivateKey, write_key_file
from gridnet.encoding import encode
from gridnet.meter.client import MeterAnswerInvalid, MeterClient, MeterRefused, MeterUnavailable
from gridnet.meter.device import SignedRelayCommand, sign_relay_command
from tests.functional.test_cli import gridnet, ok, one_line_error
from tests.helpers import wait_for

START_S = 60.0
"""Ceiling for the process to start and answer [s]."""
ORIGIN_MS = 1_767_225_600_000
QUARTER = 15 * 60 * 1000  # [ms]


@dataclass
class MeterProcess:
    url: str
    process: subprocess.Popen[bytes]
    info_file: Path
    meter: PrivateKey
    owner: PrivateKey
    dso: PrivateKey
    stranger: PrivateKey


def _answers(url: str) -> bool:
    try:
        MeterClient(url, timeout_s=2).identity()
    except MeterUnavailable:
        return False
    return True


def start_meter(tmp_path: Path) -> MeterProcess:
    """``gridnet meter run`` in ``tmp_path``: 1 AC and 1 DC meter, an owner and a DSO authority,
    a sim clock; the keys are labelled by this process, so a second start is the same meter."""
    tag = os.getpid()
    keys = {
        name: PrivateKey.from_label(f"meter-process-{name}-{tag}") for name in ("meter", "owner", "dso", "x")
    }
    for name, key in keys.items():
        if not (tmp_path / f"{name}.key").exists():
            write_key_file(tmp_path / f"{name}.key", key)
    info_file = tmp_path / "meter.json"
    cmd = [
        *(sys.executable, "-m", "gridnet", "meter", "run", "--key", "meter.key"),
        *("--owner", address_to_text(keys["owner"].address), "--dso", keys["dso"].public_key.hex()),
        *("--ac", "1", "--dc", "1", "--listen", "127.0.0.1:0"),
        *("--clock", "sim", "--clock-origin", str(ORIGIN_MS), "--info-file", str(info_file)),
    ]
    with (tmp_path / "console.log").open("ab") as out:
        process = subprocess.Popen(cmd, cwd=tmp_path, stdout=out, stderr=subprocess.STDOUT)
    try:
        assert wait_for(lambda: info_file.exists() or process.poll() is not None, START_S)
        assert process.poll() is None, (tmp_path / "console.log").read_text()
        url = json.loads(info_file.read_text())["url"]
        assert wait_for(lambda: _answers(url), START_S)
    except BaseException:
        stop_meter(process)
        raise
    return MeterProcess(url, process, info_file, keys["meter"], keys["owner"], keys["dso"], keys["x"])


def stop_meter(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.terminate()
    try:
        process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=10)


@pytest.fixture
def meter(tmp_path: Path) -> Iterator[MeterProcess]:
    started = start_meter(tmp_path)
    try:
        yield started
    finally:
        stop_meter(started.process)


def refusal(client: MeterClient, signed: SignedRelayCommand) -> str:
    with pytest.raises(MeterRefused) as refused:
        client.command(signed)
    return refused.value.rule


def test_relay_commands_from_owner_and_dso_act_and_others_are_refused(meter: MeterProcess) -> None:
    client = MeterClient(meter.url, meter.meter.public_key)
    address = meter.meter.address
    # The simulated world: 15 minutes of 2 kW export through AC meter 0.
    client.set_clock(ORIGIN_MS + QUARTER)
    assert client.feed("ac", 0, 2_000, QUARTER) == 500
    assert client.read("ac", 0, "instant_power").answer.value == 2_000_000
    signed = client.read("ac", 0, "average_power")
    assert (signed.answer.value, signed.answer.timestamp_ms) == (2_000_000, ORIGIN_MS + QUARTER)

    # The owner opens relay 0: the meter reads zero flow, and the next step delivers nothing.
    state = client.command(sign_relay_command(meter.owner, address, 0, "open", 1, "owner away"))
    assert (state.relay, state.closed, state.kind, state.index) == (0, False, "ac", 0)
    assert client.read("ac", 0, "instant_power").answer.value == 0
    assert client.read("ac", 0, "current").answer.value == 0
    client.set_clock(ORIGIN_MS + 2 * QUARTER)
    assert client.feed("ac", 0, 2_000, QUARTER) == 0
    assert client.read("ac", 0, "exported_energy").answer.value == 500
    assert client.read("ac", 0, "average_power").answer.value == 0

    # Refused, each with its rule: a stranger, a tampered command, a replay, another meter.
    assert refusal(client, sign_relay_command(meter.stranger, address, 0, "close", 1)) == (
        "RelayCommandNotAuthorized"
    )
    honest = sign_relay_command(meter.dso, address, 0, "close", 5, "DSO restores")
    tampered = msgspec.structs.replace(honest, command=msgspec.structs.replace(honest.command, nonce=6))
    assert refusal(client, tampered) == "RelayCommandSignatureInvalid"
    foreign = msgspec.structs.replace(
        honest, signature=meter.dso.sign(Domain.COMMAND, encode(honest.command))
    )
    assert refusal(client, foreign) == "RelayCommandSignatureInvalid"
    assert refusal(client, sign_relay_command(meter.owner, meter.owner.address, 0, "close", 9)) == (
        "RelayCommandWrongMeter"
    )
    assert refusal(client, sign_relay_command(meter.owner, address, 0, "close", 1)) == "RelayCommandReplayed"
    assert refusal(client, sign_relay_command(meter.owner, address, 2, "close", 9)) == "NoSuchChannel"

    # The DSO closes it: energy flows again.
    assert client.command(honest).closed
    assert refusal(client, honest) == "RelayCommandReplayed"
    client.set_clock(ORIGIN_MS + 3 * QUARTER)
    assert client.feed("ac", 0, -1_000, QUARTER) == -250
    assert client.read("ac", 0, "imported_energy").answer.value == 250

    log = client.log()
    assert [(e.role, e.at_ms, e.signed.command.action) for e in log] == [
        ("owner", ORIGIN_MS + QUARTER, "open"),
        ("dso", ORIGIN_MS + 2 * QUARTER, "close"),
    ]
    assert log[1].signed == honest
    assert [s.closed for s in client.relays()] == [True, True]


def test_an_accepted_command_is_refused_as_a_replay_after_the_meter_restarts(tmp_path: Path) -> None:
    """The nonces accepted live in KEY.state.json (0600): the DSO's command, copied from the
    public log, does not act again on the restarted meter, nor does a lower nonce."""
    first = start_meter(tmp_path)
    try:
        client = MeterClient(first.url, first.meter.public_key)
        dso_open = sign_relay_command(first.dso, first.meter.address, 0, "open", 1_000, "DSO emergency")
        assert client.command(dso_open).closed is False
        owner_close = sign_relay_command(first.owner, first.meter.address, 0, "close", 7, "override")
        assert client.command(owner_close).closed is True
        copied = client.log()[0].signed  # anyone may read the log
    finally:
        stop_meter(first.process)
    state = tmp_path / "meter.key.state.json"
    assert state.stat().st_mode & 0o777 == 0o600
    assert not first.info_file.exists()

    second = start_meter(tmp_path)
    try:
        client = MeterClient(second.url, second.meter.public_key)
        assert [s.closed for s in client.relays()] == [True, True]  # relays start closed again
        assert refusal(client, copied) == "RelayCommandReplayed"
        assert refusal(client, owner_close) == "RelayCommandReplayed"
        lower = sign_relay_command(second.dso, second.meter.address, 0, "open", 999)
        assert refusal(client, lower) == "RelayCommandReplayed"
        assert [s.closed for s in client.relays()] == [True, True]
        assert (
            client.command(sign_relay_command(second.dso, second.meter.address, 0, "open", 1_001)).closed
            is False
        )
    finally:
        stop_meter(second.process)


def test_answers_are_verified_against_the_meter_key(meter: MeterProcess) -> None:
    announced = MeterClient(meter.url)  # trusts the key the meter announces
    assert announced.address == meter.meter.address
    first = announced.read("dc", 0, "voltage")
    assert first.answer.value == 12_000
    assert announced.read("dc", 0, "voltage").answer.sequence > first.answer.sequence
    pinned_wrong = MeterClient(meter.url, meter.stranger.public_key)
    with pytest.raises(MeterAnswerInvalid):
        pinned_wrong.read("ac", 0, "voltage")


def test_bad_requests_are_4xx_with_the_rule_never_500(meter: MeterProcess) -> None:
    port = int(meter.url.rsplit(":", 1)[1])

    def ask(method: str, path: str, body: bytes | None = None) -> tuple[int, str]:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        try:
            conn.request(method, path, body=body, headers={"content-type": "application/json"})
            response = conn.getresponse()
            return response.status, json.loads(response.read())["code"]
        finally:
            conn.close()

    assert ask("GET", "/ac/0/frequency") == (404, "UnknownQuantity")
    assert ask("GET", "/ac/7/voltage") == (404, "NoSuchChannel")
    assert ask("GET", "/ac/-1/voltage") == (404, "NoSuchChannel")
    assert ask("GET", "/ac/x/voltage") == (400, "BadRequest")
    assert ask("GET", "/nothing") == (404, "NotFound")
    # A route matched a path with a newline after it ("/meter%0A" was "/meter"), and a 404 quoted
    # the path without its newlines.
    assert ask("GET", "/meter%0A") == (404, "NotFound")
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        conn.request("GET", "/no%0Athing")
        assert json.loads(conn.getresponse().read())["message"] == "no such command: '/no\\nthing'"
    finally:
        conn.close()
    assert ask("POST", "/feed", b"not json") == (400, "BadRequest")
    assert ask("POST", "/feed", b'{"kind": "ac", "index": 0, "power_w": 1}') == (400, "BadRequest")
    assert ask("POST", "/feed", b'{"kind": "ac", "index": 0, "power_w": 1, "duration_ms": 0}') == (
        400,
        "InvalidFeed",
    )
    assert ask("POST", "/clock", b'{"now_ms": 1}') == (409, "ClockWentBackwards")
    assert ask("POST", "/clock", b'{"now_ms": 99999999999999999999999}') == (400, "BadRequest")
    assert ask("POST", "/relay/0/open", b'{"hex": "zz"}') == (400, "BadRequest")
    assert ask("POST", "/relay/0/open", b'{"hex": "00"}')[0] == 400
    signed = sign_relay_command(meter.owner, meter.meter.address, 0, "open", 1)
    body = json.dumps({"hex": encode(signed).hex()}).encode()
    assert ask("POST", "/relay/0/close", body) == (400, "RelayCommandMismatch")
    # The mismatch is the last rule: a forged or unauthorised command sent elsewhere is named so.
    stranger = sign_relay_command(meter.stranger, meter.meter.address, 0, "open", 1)
    assert ask("POST", "/relay/1/close", json.dumps({"hex": encode(stranger).hex()}).encode()) == (
        403,
        "RelayCommandNotAuthorized",
    )
    forged = msgspec.structs.replace(signed, command=msgspec.structs.replace(signed.command, nonce=2))
    assert ask("POST", "/relay/1/close", json.dumps({"hex": encode(forged).hex()}).encode()) == (
        403,
        "RelayCommandSignatureInvalid",
    )
    assert ask("POST", "/relay/0/open", b"{" + b" " * 10_000 + b"}") == (413, "PayloadTooLarge")


def test_posts_from_other_sites_and_far_clock_jumps_are_refused(meter: MeterProcess) -> None:
    """What a web page in a browser could send (a "simple" cross-origin POST, text/plain or a
    form) is refused, as is any POST with a foreign Origin; a clock step past a year too."""
    port = int(meter.url.rsplit(":", 1)[1])

    def ask(path: str, body: bytes, headers: dict[str, str]) -> tuple[int, str]:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        try:
            conn.request("POST", path, body=body, headers=headers)
            response = conn.getresponse()
            return response.status, json.loads(response.read())["code"]
        finally:
            conn.close()

    far = json.dumps({"now_ms": 2**63 - 1}).encode()
    step = json.dumps({"kind": "ac", "index": 0, "power_w": 1_000, "duration_ms": 1_000}).encode()
    signed = sign_relay_command(meter.owner, meter.meter.address, 0, "open", 1)
    command = json.dumps({"hex": encode(signed).hex()}).encode()
    evil = {"origin": "http://evil.example", "content-type": "text/plain"}
    for path, body in (("/clock", far), ("/feed", step), ("/relay/0/open", command)):
        assert ask(path, body, evil) == (403, "CrossOriginRefused")
        assert ask(path, body, {"origin": "http://evil.example", "content-type": "application/json"}) == (
            403,
            "CrossOriginRefused",
        )
        assert ask(path, body, {"origin": "null", "content-type": "application/json"}) == (
            403,
            "CrossOriginRefused",
        )
        assert ask(path, body, {"content-type": "text/plain"}) == (415, "UnsupportedMediaType")
        assert ask(path, body, {"content-type": "application/x-www-form-urlencoded"}) == (
            415,
            "UnsupportedMediaType",
        )
        assert ask(path, body, {}) == (415, "UnsupportedMediaType")
    json_here = {"origin": f"http://127.0.0.1:{port}", "content-type": "application/json; charset=utf-8"}
    assert ask("/clock", far, json_here) == (409, "ClockJumpTooFar")
    client = MeterClient(meter.url, meter.meter.public_key)
    assert client.identity().now_ms == ORIGIN_MS  # nothing above moved the clock or fed the meter
    client.set_clock(ORIGIN_MS + QUARTER)
    assert client.feed("ac", 0, 2_000, QUARTER) == 500
    assert client.command(signed).closed is False


def test_the_cli_reads_commands_and_shows_the_log(meter: MeterProcess, tmp_path: Path) -> None:
    out = ok(gridnet("meter", "read", meter.url, "ac", "0", "voltage", cwd=tmp_path))
    assert "230000 mV" in out and "verified" in out and address_to_text(meter.meter.address) in out
    out = ok(
        gridnet(
            "meter", "relay", meter.url, "1", "open", "--key", "owner.key", "--reason", "away", cwd=tmp_path
        )
    )
    assert "relay 1 (dc meter 0) is open" in out
    line = one_line_error(gridnet("meter", "relay", meter.url, "1", "close", "--key", "x.key", cwd=tmp_path))
    assert "RelayCommandNotAuthorized" in line
    line = one_line_error(gridnet("meter", "read", meter.url, "ac", "3", "voltage", cwd=tmp_path))
    assert "NoSuchChannel" in line
    out = ok(gridnet("meter", "log", meter.url, cwd=tmp_path))
    assert "relay 1 (dc meter 0): open" in out
    assert f"open relay 1 by {address_to_text(meter.owner.address)} (owner)" in out and "away" in out


def test_sigterm_stops_the_meter_and_removes_its_info_file(meter: MeterProcess) -> None:
    meter.process.terminate()
    assert meter.process.wait(timeout=30) == 0
    assert not meter.info_file.exists()


def test_a_second_meter_on_a_running_meters_info_file_is_refused(meter: MeterProcess, tmp_path: Path) -> None:
    before = meter.info_file.read_text()
    line = one_line_error(
        gridnet(
            *("meter", "run", "--generate", "--owner", address_to_text(meter.owner.address)),
            *("--info-file", meter.info_file),
            cwd=tmp_path,
        )
    )
    assert f"belongs to the running meter process {meter.process.pid}" in line
    assert meter.info_file.read_text() == before  # the first meter's URL is still there


def test_an_info_file_path_that_is_not_a_meters_file_is_refused_and_kept(tmp_path: Path) -> None:
    """The meter would replace the file, then delete it when it stops: a file a meter did not
    write (a key file, say), a directory or a path in no directory is refused, and kept."""
    precious = tmp_path / "owner.key"
    precious.write_text("not a meter's\n")
    owner = address_to_text(PrivateKey.from_label("meter-process-precious").address)
    for path, said in (
        (precious, "exists and is not a meter's info file"),
        (tmp_path, "is not a regular file"),
        (tmp_path / "none" / "meter.json", "does not exist"),
    ):
        line = one_line_error(
            gridnet("meter", "run", "--generate", "--owner", owner, "--info-file", path, cwd=tmp_path)
        )
        assert said in line, line
    assert precious.read_text() == "not a meter's\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["owner.key"]  # (no temporary file left)


def test_a_stale_info_file_is_replaced_and_an_index_out_of_range_is_refused(tmp_path: Path) -> None:
    info_file = tmp_path / "meter.json"
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True
    )
    info_file.write_text(json.dumps({"pid": int(dead.stdout), "url": "http://127.0.0.1:1"}))
    owner = address_to_text(PrivateKey.from_label("meter-process-stale").address)
    cmd = [sys.executable, "-m", "gridnet", "meter", "run", "--generate", "--owner", owner]
    with (tmp_path / "console.log").open("ab") as out:
        process = subprocess.Popen(
            [*cmd, "--info-file", str(info_file)], cwd=tmp_path, stdout=out, stderr=out
        )
    try:
        assert wait_for(lambda: _info_pid(info_file) == process.pid or process.poll() is not None, START_S)
        assert process.poll() is None, (tmp_path / "console.log").read_text()
        url = json.loads(info_file.read_text())["url"]
        line = one_line_error(gridnet("meter", "read", url, "ac", "64", "voltage", cwd=tmp_path))
        assert "index" in line and "less than or equal to 63" in line
    finally:
        process.terminate()
        assert process.wait(timeout=30) == 0
    assert not info_file.exists()


def _info_pid(info_file: Path) -> int | None:
    try:
        return int(json.loads(info_file.read_text())["pid"])
    except (OSError, ValueError, KeyError):
        return None
