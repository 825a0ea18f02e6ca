"""End-to-end tests of the ``gridnet`` command, run as a real subprocess in tmp_path."""

from __future__ import annotations

import json
import os
import re
import resource
import shutil
import sqlite3
import stat
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from gridnet.cli.meter import read_hex_file
from gridnet.crypto.address import address_from_text
from gridnet.crypto.keys import write_key_file
from gridnet.errors import ConfigError
from gridnet.files import MAX_TOML_BYTES, MAX_TOML_DEPTH
from gridnet.ledger.chain import Chain
from gridnet.ledger.params import load_genesis_file
from gridnet.ledger.txs.firmware import RELEASES, release_key
from gridnet.ledger.txs.meter import METERS, RegisterMeter
from gridnet.ledger.txs.transfer import Transfer
from gridnet.meter.status import firmware_image_hash
from tests.helpers import extend, sign, test_keys, test_params

HEX64 = re.compile(r"^[0-9a-f]{64}$")
ADDRESS = re.compile(r"^gn[a-z2-7]{39}$")


def gridnet(*args: str | Path, cwd: Path, timeout: float = 90) -> subprocess.CompletedProcess[str]:
    """Run ``python -m gridnet ARGS`` in ``cwd``; never raises on a non-zero exit."""
    env = dict(os.environ, COLUMNS="200", NO_COLOR="1", PYTHONUNBUFFERED="1")
    return subprocess.run(
        [sys.executable, "-m", "gridnet", *map(str, args)],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def ok(result: subprocess.CompletedProcess[str]) -> str:
    """Assert success; return stdout."""
    assert result.returncode == 0, (
        f"exit {result.returncode}\nstdout: {result.stdout}\nstderr: {result.stderr}"
    )
    assert "Traceback" not in result.stderr
    return result.stdout


def one_line_error(result: subprocess.CompletedProcess[str]) -> str:
    """Assert exit 1 with exactly one 'error: ...' line on stderr (no traceback); return it."""
    assert "Traceback" not in result.stderr, result.stderr
    assert result.returncode == 1, (
        f"exit {result.returncode}\nstdout: {result.stdout}\nstderr: {result.stderr}"
    )
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, f"expected one line on stderr, got: {result.stderr!r}"
    assert lines[0].startswith("error: "), lines[0]
    return lines[0]


def new_key(cwd: Path, name: str) -> str:
    out = ok(gridnet("keys", "new", "--out", name, "--unencrypted", cwd=cwd)).strip()
    assert ADDRESS.match(out), out
    return out


def account(cwd: Path, data_dir: str | Path, address: str) -> dict[str, object]:
    out = ok(gridnet("chain", "account", "--data-dir", data_dir, "--address", address, "--json", cwd=cwd))
    return json.loads(out)


def show(cwd: Path, data_dir: str | Path) -> dict[str, object]:
    return json.loads(ok(gridnet("chain", "show", "--data-dir", data_dir, "--json", cwd=cwd)))


@dataclass
class Funded:
    """A chain of height 5 whose block 4 carries one transfer of 2.5 GNC from a to b."""

    root: Path
    data: Path
    a: str
    b: str


@pytest.fixture(scope="module")
def funded(tmp_path_factory: pytest.TempPathFactory) -> Funded:
    root = tmp_path_factory.mktemp("funded")
    a = new_key(root, "a.key")
    b = new_key(root, "b.key")
    out = ok(gridnet("chain", "init", "--data-dir", "D", cwd=root))
    assert "initialised" in out
    out = ok(gridnet("chain", "mine", "--data-dir", "D", "--blocks", "3", "--key", "a.key", cwd=root))
    assert "mined 3 block(s)" in out and "height 3" in out and a in out
    out = ok(
        gridnet("tx", "transfer", "--data-dir", "D", "--key", "a.key", "--to", b, "--amount", "2.5", cwd=root)
    )
    assert re.search(r"pending [0-9a-f]{64}", out), out
    out = ok(gridnet("chain", "mine", "--data-dir", "D", "--blocks", "2", "--key", "a.key", cwd=root))
    assert "with 1 transaction(s)" in out and "height 5" in out, out
    return Funded(root, root / "D", a, b)


def copy_chain(funded: Funded, tmp_path: Path) -> Path:
    """A private copy of the funded chain (with the key files) for tests that change it."""
    dest = tmp_path / "D"
    shutil.copytree(funded.data, dest)
    for name in ("a.key", "b.key"):
        shutil.copy2(funded.root / name, tmp_path / name)
    return dest


# --- keys ------------------------------------------------------------------------------


def test_keys_new_mode_0600_and_refuses_overwrite(tmp_path: Path) -> None:
    address = new_key(tmp_path, "k.key")
    path = tmp_path / "k.key"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    before = path.read_bytes()

    line = one_line_error(gridnet("keys", "new", "--out", "k.key", "--unencrypted", cwd=tmp_path))
    assert "refus" in line and "overwrite" in line and "k.key" in line
    assert path.read_bytes() == before, "the existing key file was changed"
    assert ok(gridnet("keys", "show", "--key", "k.key", cwd=tmp_path)).strip() == address


def test_key_file_readable_by_others_is_refused(tmp_path: Path) -> None:
    new_key(tmp_path, "k.key")
    (tmp_path / "k.key").chmod(0o644)
    line = one_line_error(gridnet("keys", "show", "--key", "k.key", cwd=tmp_path))
    assert "chmod 600" in line


# --- a chain with a transfer ------------------------------------------------------------


def test_transfer_is_credited_in_base_units(funded: Funded) -> None:
    acct_b = account(funded.root, funded.data, funded.b)
    assert acct_b == {
        "address": funded.b,
        "balance": 250_000_000,
        "nonce": 0,
        "bonded": 0,
        "unbonding": 0,
    }
    acct_a = account(funded.root, funded.data, funded.a)
    assert acct_a["nonce"] == 1
    # 5 rewards of 50 GNC, minus 2.5 sent; the fee went back to a as the miner.
    assert acct_a["balance"] == 5 * 50 * 10**8 - 250_000_000
    text = ok(gridnet("chain", "account", "--data-dir", funded.data, "--address", funded.b, cwd=funded.root))
    assert "2.50000000 GNC" in text


def test_chain_show_json(funded: Funded) -> None:
    summary = show(funded.root, funded.data)
    assert summary["height"] == 5
    assert HEX64.match(str(summary["head"]))
    assert isinstance(summary["cumulative_work"], int) and summary["cumulative_work"] > 0
    assert summary["transactions"] == 1
    assert summary["pending"] == 0


def test_chain_verify_valid(funded: Funded) -> None:
    result = gridnet("chain", "verify", "--data-dir", funded.data, cwd=funded.root)
    out = ok(result)
    assert out.startswith("chain valid: 6 blocks, 1 transaction "), out


def test_chain_verify_json(funded: Funded) -> None:
    out = ok(gridnet("chain", "verify", "--data-dir", funded.data, "--json", cwd=funded.root))
    assert len(out.strip().splitlines()) == 1, out
    report = json.loads(out)
    assert report["ok"] is True
    assert report["height"] == 5
    assert report["transactions"] == 1
    assert isinstance(report["tx_per_s"], int | float) and report["tx_per_s"] >= 0


@pytest.mark.parametrize("kind", ["typo", "truncated", "prefix"])
def test_transfer_to_mistyped_address(funded: Funded, kind: str) -> None:
    b = funded.b
    if kind == "typo":
        bad = b[:12] + ("a" if b[12] != "a" else "b") + b[13:]
        expected = "checksum"
    elif kind == "truncated":
        bad = b[:-1]
        expected = "characters"
    else:
        bad = "gx" + b[2:]
        expected = "start with"
    result = gridnet(
        "tx", "transfer", "--data-dir", funded.data, "--key", "a.key", "--to", bad, "--amount", "1",
        cwd=funded.root,
    )  # fmt: skip
    line = one_line_error(result)
    assert bad in line and "address" in line and expected in line, line
    assert show(funded.root, funded.data)["pending"] == 0


def test_overspend_names_insufficient_balance(funded: Funded) -> None:
    result = gridnet(
        "tx", "transfer", "--data-dir", funded.data, "--key", "b.key", "--to", funded.a, "--amount", "100",
        cwd=funded.root,
    )  # fmt: skip
    line = one_line_error(result)
    assert "InsufficientBalance" in line, line
    assert show(funded.root, funded.data)["pending"] == 0


@pytest.mark.parametrize("amount", ["abc", "0", "1.000000001"])
def test_bad_amount_is_one_line(funded: Funded, amount: str) -> None:
    result = gridnet(
        "tx", "transfer", "--data-dir", funded.data, "--key", "a.key", "--to", funded.b, "--amount", amount,
        cwd=funded.root,
    )  # fmt: skip
    line = one_line_error(result)
    assert repr(amount) in line, line


# --- audit of a tampered store ------------------------------------------------------------


def ok_or_1(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 1, result
    assert "Traceback" not in result.stderr, result.stderr
    assert len(result.stdout.strip().splitlines()) == 1, result.stdout
    return result.stdout


def tamper(data_dir: Path, height: int, column: str, index: int) -> None:
    """Flip one bit of ``blocks.<column>`` of the main-chain block at ``height``."""
    db = sqlite3.connect(data_dir / "chain.sqlite")
    try:
        (block_hash,) = db.execute("SELECT hash FROM main WHERE height=?", (height,)).fetchone()
        (raw,) = db.execute(f"SELECT {column} FROM blocks WHERE hash=?", (block_hash,)).fetchone()
        data = bytearray(raw)
        data[index] ^= 0x01
        db.execute(f"UPDATE blocks SET {column}=? WHERE hash=?", (bytes(data), block_hash))
        db.commit()
    finally:
        db.close()


@pytest.mark.parametrize(
    ("height", "column", "index", "rule"),
    [
        (4, "txs", -5, None),  # inside the transfer's signature
        (2, "header", 10, "HashMismatch"),
        (3, "txs", -1, None),  # the coinbase-only block
        (1, "header", -1, "HashMismatch"),
    ],
)
def test_verify_names_tampered_height(
    funded: Funded, tmp_path: Path, height: int, column: str, index: int, rule: str | None
) -> None:
    data = copy_chain(funded, tmp_path)
    tamper(data, height, column, index)

    result = gridnet("chain", "verify", "--data-dir", data, cwd=tmp_path)
    assert "Traceback" not in result.stderr, result.stderr
    assert result.returncode == 1, result
    lines = result.stdout.strip().splitlines()
    assert len(lines) == 1, result.stdout
    m = re.fullmatch(rf"chain invalid at height {height}: ([A-Z][A-Za-z]+): (.+)", lines[0])
    assert m, lines[0]
    if rule is not None:
        assert m.group(1) == rule, lines[0]

    report = json.loads(ok_or_1(gridnet("chain", "verify", "--data-dir", data, "--json", cwd=tmp_path)))
    assert report["ok"] is False
    assert report["bad_height"] == height
    assert report["rule"] == m.group(1)


def test_verify_detects_tampered_state(funded: Funded, tmp_path: Path) -> None:
    data = copy_chain(funded, tmp_path)
    db = sqlite3.connect(data / "chain.sqlite")
    (key,) = db.execute("SELECT key FROM state ORDER BY key LIMIT 1").fetchone()
    db.execute("DELETE FROM state WHERE key=?", (key,))
    db.commit()
    db.close()
    result = gridnet("chain", "verify", "--data-dir", data, cwd=tmp_path)
    line = ok_or_1(result).strip()
    assert re.fullmatch(r"chain invalid at height 5: StateMismatch: .+", line), line


# --- init / mine misuse -----------------------------------------------------------------


def test_init_on_existing_chain_fails_clearly(funded: Funded, tmp_path: Path) -> None:
    data = copy_chain(funded, tmp_path)
    line = one_line_error(gridnet("chain", "init", "--data-dir", data, cwd=tmp_path))
    assert "already holds a chain" in line and str(data) in line, line
    assert show(tmp_path, data)["height"] == 5


@pytest.mark.parametrize("existing", [False, True])
def test_mine_without_chain_hints_init(tmp_path: Path, existing: bool) -> None:
    data = tmp_path / "nochain"
    if existing:
        data.mkdir()
    line = one_line_error(gridnet("chain", "mine", "--data-dir", data, "--blocks", "1", cwd=tmp_path))
    assert "gridnet chain init" in line, line
    assert data.exists() == existing, "a failed 'chain mine' must not create the data directory"
    if existing:
        assert list(data.iterdir()) == [], "a failed 'chain mine' must leave the directory empty"


def test_mine_on_a_chain_stamped_ahead_of_the_clock_says_to_check_it(tmp_path: Path) -> None:
    """A chain whose blocks are stamped ahead of this machine's clock (here its genesis): its
    next block would be refused as too far in the future, so mining says why before it starts."""
    ok(gridnet("chain", "genesis", "--out", "g.toml", cwd=tmp_path))
    text = (tmp_path / "g.toml").read_text()
    (tmp_path / "g.toml").write_text(
        re.sub(r'genesis_time = "[^"]*"', 'genesis_time = "2199-01-01T00:00:00Z"', text)
    )
    ok(gridnet("chain", "init", "--data-dir", "d", "--genesis", "g.toml", cwd=tmp_path))
    mine = ("chain", "mine", "--data-dir", "d", "--blocks", "1", "--unencrypted-key")
    line = one_line_error(gridnet(*mine, cwd=tmp_path))
    assert "needs its next block stamped" in line and "check the clock" in line
    assert show(tmp_path, tmp_path / "d")["height"] == 0


# --- identity and bond --------------------------------------------------------------------


def test_register_identity_and_bond(funded: Funded, tmp_path: Path) -> None:
    data = copy_chain(funded, tmp_path)
    out = ok(gridnet("tx", "register-identity", "--data-dir", data, "--key", "a.key", cwd=tmp_path))
    assert "identity proof" in out and "pending" in out
    ok(gridnet("tx", "bond", "--data-dir", data, "--key", "a.key", "--amount", "1", cwd=tmp_path))
    assert show(tmp_path, data)["pending"] == 2
    # Mined by b so that a's balance only changes by its own transactions.
    before = account(tmp_path, data, funded.a)
    out = ok(gridnet("chain", "mine", "--data-dir", data, "--blocks", "1", "--key", "b.key", cwd=tmp_path))
    assert "with 2 transaction(s)" in out, out
    after = account(tmp_path, data, funded.a)
    assert after["bonded"] == 100_000_000
    assert after["nonce"] == 3
    fees = before["balance"] - after["balance"] - 100_000_000  # type: ignore[operator]
    assert 0 < fees < 10_000, fees
    ok(gridnet("chain", "verify", "--data-dir", data, cwd=tmp_path))


# --- genesis files ------------------------------------------------------------------------


def test_genesis_allocation_is_credited(tmp_path: Path) -> None:
    a = new_key(tmp_path, "a.key")
    b = new_key(tmp_path, "b.key")
    out = ok(
        gridnet(
            "chain", "genesis", "--out", "g.toml", "--alloc", f"{a}=100", "--alloc", f"{b}=0.5", cwd=tmp_path
        )
    )
    assert "g.toml" in out
    ok(gridnet("chain", "init", "--data-dir", "G", "--genesis", "g.toml", cwd=tmp_path))
    assert account(tmp_path, "G", a)["balance"] == 100 * 10**8
    assert account(tmp_path, "G", b)["balance"] == 50_000_000
    # The allocation is spendable.
    ok(
        gridnet(
            "tx", "transfer", "--data-dir", "G", "--key", "a.key", "--to", b, "--amount", "1", cwd=tmp_path
        )
    )
    ok(gridnet("chain", "mine", "--data-dir", "G", "--blocks", "1", "--key", "b.key", cwd=tmp_path))
    assert account(tmp_path, "G", b)["balance"] > 150_000_000
    ok(gridnet("chain", "verify", "--data-dir", "G", cwd=tmp_path))

    line = one_line_error(gridnet("chain", "genesis", "--out", "g.toml", cwd=tmp_path))
    assert "refusing to overwrite" in line
    # A genesis no chain could start from is refused before it is written.
    huge = ("--alloc", f"{a}=50000000000", "--alloc", f"{b}=50000000000")
    line = one_line_error(gridnet("chain", "genesis", "--out", "g2.toml", *huge, cwd=tmp_path))
    assert "exceed" in line and not (tmp_path / "g2.toml").exists()


def test_init_never_overwrites_a_genesis_file_in_the_data_directory(tmp_path: Path) -> None:
    (tmp_path / "D").mkdir()
    mine = '# my chain\n[chain]\nname = "otherchain"\n'
    (tmp_path / "D" / "genesis.toml").write_text(mine)
    line = one_line_error(gridnet("chain", "init", "--data-dir", "D", cwd=tmp_path))
    assert "exists and would be overwritten" in line and "--genesis" in line
    assert (tmp_path / "D" / "genesis.toml").read_text() == mine and not (
        tmp_path / "D" / "chain.sqlite"
    ).exists()
    # Given as the genesis, it is the chain's, and stays as written.
    ok(gridnet("chain", "init", "--data-dir", "D", "--genesis", "D/genesis.toml", cwd=tmp_path))
    assert (tmp_path / "D" / "genesis.toml").read_text() == mine
    assert "otherchain" in ok(gridnet("chain", "show", "--data-dir", "D", cwd=tmp_path))


BAD_GENESIS = {
    "unknown_key": ("[chain]\nfoo = 1\n", ["foo", "[chain]"]),
    "unknown_section": ("[mining]\nbits = 1\n", ["mining"]),
    "wrong_type": ('[pow]\ninitial_difficulty_bits = "ten"\n', ["initial_difficulty_bits", "[pow]"]),
    "negative_reward": ("[reward]\ninitial_gnc = -1\n", ["initial_gnc", "[reward]", "negative"]),
    "bad_address": ('[[allocation]]\naddress = "gnabc"\ngnc = 1\n', ["allocation 1", "gnabc"]),
    "bad_time": ('[chain]\ngenesis_time = "yesterday"\n', ["genesis_time", "yesterday"]),
    "not_toml": ("[chain\n", ["not valid TOML"]),
    "not_utf8": ("\udcff\udcfe[chain]\n", ["not UTF-8 text"]),
    "infinite": ("[chain]\nblock_interval_s = inf\n", ["block_interval_s", "finite"]),
    "nan_reward": ("[reward]\ninitial_gnc = nan\n", ["initial_gnc", "finite"]),
}


@pytest.mark.parametrize("case", sorted(BAD_GENESIS))
def test_bad_genesis_is_a_config_error_one_liner(tmp_path: Path, case: str) -> None:
    text, needles = BAD_GENESIS[case]
    path = tmp_path / "bad.toml"
    path.write_bytes(text.encode("utf-8", "surrogateescape"))  # (not_utf8: bytes 0xff 0xfe)
    with pytest.raises(ConfigError):
        load_genesis_file(path)
    line = one_line_error(gridnet("chain", "init", "--data-dir", "H", "--genesis", "bad.toml", cwd=tmp_path))
    for needle in needles:
        assert needle in line, f"{needle!r} missing from {line!r}"
    assert not (tmp_path / "H" / "chain.sqlite").exists()


def test_user_text_with_brackets_is_printed_verbatim(funded: Funded) -> None:
    """User input echoed in an error must not be interpreted as console markup."""
    result = gridnet(
        "tx", "transfer", "--data-dir", funded.data, "--key", "a.key", "--to", "[/x]", "--amount", "1",
        cwd=funded.root,
    )  # fmt: skip
    line = one_line_error(result)
    assert "'[/x]'" in line, line


def test_default_fee_still_sufficient_after_128_transactions(tmp_path: Path) -> None:
    """The default fee must cover the transaction's real size whatever its nonce (a nonce
    of 128 or more encodes one byte longer than a nonce below 128)."""
    a, b = test_keys(2)
    chain = Chain.create(tmp_path / "D", test_params([a]))
    try:
        txs = [sign(chain, a, Transfer(b.address, 1_000), nonce, fee=1_000) for nonce in range(128)]
        extend(chain, txs)
        assert chain.account(a.address).nonce == 128
    finally:
        chain.close()
    write_key_file(tmp_path / "a.key", a)
    b_text = ok(gridnet("keys", "new", "--out", "b.key", "--unencrypted", cwd=tmp_path)).strip()

    result = gridnet(
        "tx", "transfer", "--data-dir", "D", "--key", "a.key", "--to", b_text, "--amount", "1", cwd=tmp_path
    )  # fmt: skip
    ok(result)
    out = ok(gridnet("chain", "mine", "--data-dir", "D", "--blocks", "1", "--key", "b.key", cwd=tmp_path))
    assert "with 1 transaction(s)" in out, out
    assert account(tmp_path, "D", b_text)["balance"] > 100_000_000


# --- the security layer and on-chain orders --------------------------------------------------


def test_a_manufacturer_publishes_firmware_and_what_the_chain_refuses_is_one_line(
    funded: Funded, tmp_path: Path
) -> None:
    data = copy_chain(funded, tmp_path)
    ok(gridnet("tx", "register-identity", "--data-dir", data, "--key", "a.key", cwd=tmp_path))
    ok(gridnet("chain", "mine", "--data-dir", data, "--blocks", "1", "--key", "b.key", cwd=tmp_path))
    args = ("--data-dir", data, "--key", "a.key")
    ok(
        gridnet(
            "tx",
            "register-authority",
            *args,
            "--roles",
            "manufacturer,advisory",
            "--name",
            "Acme",
            cwd=tmp_path,
        )
    )
    ok(gridnet("chain", "mine", "--data-dir", data, "--blocks", "1", "--key", "b.key", cwd=tmp_path))
    image = b"Acme M1 firmware 2.0" * 160_000  # (3.2 MB: hashed in several chunks as it is read)
    (tmp_path / "fw.bin").write_bytes(image)
    release = ("--vendor", "Acme", "--model", "M1", "--version", "2.0", "--image", "fw.bin")
    ok(gridnet("tx", "publish-firmware", *args, *release, cwd=tmp_path))
    ok(gridnet("chain", "mine", "--data-dir", data, "--blocks", "1", "--key", "b.key", cwd=tmp_path))
    chain = Chain.open(data)
    try:
        found = chain.view().get(RELEASES, release_key(address_from_text(funded.a), "Acme", "M1", "2.0"))
    finally:
        chain.close()
    assert found is not None and found.image == firmware_image_hash(image)
    again = one_line_error(gridnet("tx", "publish-firmware", *args, *release, cwd=tmp_path))
    assert "FirmwareReleaseExists" in again or "already published" in again, again
    # The default genesis names no advisory authority: the advisory role alone is not enough.
    advisory = ("--id", "A-1", "--vendor", "Acme", "--model", "M1", "--affected", "1.0", "--fixed-in", "2.0")
    line = one_line_error(gridnet("tx", "publish-advisory", *args, *advisory, cwd=tmp_path))
    assert "AdvisoryNotAuthorized" in line or "named in the genesis" in line, line
    bad = one_line_error(
        gridnet("tx", "publish-advisory", *args, *advisory, "--severity", "dire", cwd=tmp_path)
    )
    assert "--severity" in bad, bad
    # This chain clears its market off chain: it takes no order transactions.
    order = ("--side", "bid", "--meter", funded.a, "--area", "north", "--at", "2026-06-21T12:00:00Z")
    line = one_line_error(
        gridnet("tx", "place-order", *args, *order, "--wh", "500", "--price", "0.12 GNC/kWh", cwd=tmp_path)
    )
    assert "MarketOffChain" in line or "off chain" in line, line
    late = one_line_error(
        gridnet(
            "tx",
            "place-order",
            *args,
            *order[:-1],
            "2026-06-21T12:05:00Z",
            "--wh",
            "5",
            "--price",
            "1",
            cwd=tmp_path,
        )
    )
    assert "quarter hour" in late, late


def test_a_meter_is_certified_bound_to_its_owner_and_registered_from_the_command_line(
    funded: Funded, tmp_path: Path
) -> None:
    """a is the manufacturer, b the owner: the meter's key binds its registration to b on this
    chain, so a (or anyone but b) cannot send it."""
    data = copy_chain(funded, tmp_path)
    for who in ("a", "b"):
        ok(gridnet("tx", "register-identity", "--data-dir", data, "--key", f"{who}.key", cwd=tmp_path))
    ok(gridnet("chain", "mine", "--data-dir", data, "--blocks", "1", "--key", "b.key", cwd=tmp_path))
    maker = ("--data-dir", data, "--key", "a.key", "--roles", "manufacturer", "--name", "Acme")
    ok(gridnet("tx", "register-authority", *maker, cwd=tmp_path))
    ok(gridnet("chain", "mine", "--data-dir", data, "--blocks", "1", "--key", "b.key", cwd=tmp_path))
    meter = new_key(tmp_path, "meter.key")
    public = ok(gridnet("keys", "show", "--key", "meter.key", "--public-key", cwd=tmp_path)).strip()
    product = ("--vendor", "Acme", "--model", "M1", "--firmware", "1.0", "--serial", "7")
    certify = ("meter", "certify", "--key", "a.key", "--meter-key", public, *product)
    out = ok(gridnet(*certify, "--out", "meter.cert", cwd=tmp_path))
    assert meter in out, out
    bind = ("meter", "bind", "--key", "meter.key", "--certificate", "meter.cert", "--area", "north")
    out = ok(gridnet(*bind, "--owner", funded.b, "--data-dir", data, "--out", "b.reg", cwd=tmp_path))
    assert "tx register-meter" in out, out
    again = one_line_error(
        gridnet(*bind, "--owner", funded.b, "--data-dir", data, "--out", "b.reg", cwd=tmp_path)
    )
    assert "already exists" in again, again
    other = new_key(tmp_path, "other.key")
    line = one_line_error(
        gridnet(
            *bind[:3],
            "other.key",
            *bind[4:],
            "--owner",
            funded.b,
            "--data-dir",
            data,
            "--out",
            "o.reg",
            cwd=tmp_path,
        )
    )
    assert other in line and meter in line, line
    # A meter that installed a release signs its status at its own number (one per release).
    (tmp_path / "fw.img").write_bytes(b"Acme M1 firmware 2.0")
    updated = (*bind, "--owner", funded.b, "--data-dir", data, "--firmware", "2.0", "--image", "fw.img")
    line = one_line_error(gridnet(*updated, "--out", "u.reg", cwd=tmp_path))
    assert "--status-seq" in line and not (tmp_path / "u.reg").exists(), line
    ok(gridnet(*updated, "--status-seq", "3", "--out", "u.reg", cwd=tmp_path))
    status = read_hex_file(tmp_path / "u.reg", RegisterMeter, "registration").status.status
    assert (status.seq, status.firmware) == (3, "2.0")
    assert status.image == firmware_image_hash(b"Acme M1 firmware 2.0")
    send = ("tx", "register-meter", "--data-dir", data, "--registration", "b.reg")
    line = one_line_error(gridnet(*send, "--key", "a.key", cwd=tmp_path))  # a copy by another sender
    assert "did not bind it to" in line and funded.a in line, line
    ok(gridnet(*send, "--key", "b.key", cwd=tmp_path))
    ok(gridnet("chain", "mine", "--data-dir", data, "--blocks", "1", "--key", "b.key", cwd=tmp_path))
    chain = Chain.open(data)
    try:
        record = chain.view().get(METERS, address_from_text(meter))
    finally:
        chain.close()
    assert record is not None and record.owner == address_from_text(funded.b) and record.area == "north"


# --- a permissioned chain ------------------------------------------------------------------


def test_a_permissioned_chain_from_the_command_line(tmp_path: Path) -> None:
    from gridnet.crypto.keys import PrivateKey
    from gridnet.ledger.params import CONSENSUS_POA, Validator, params_to_toml
    from gridnet.ledger.poa import pending_change, validator_set

    keys = [PrivateKey.from_label(f"cli-validator-{i}") for i in range(4)]
    for i, k in enumerate(keys):
        write_key_file(tmp_path / f"v{i}.key", k)
    members = tuple(sorted((Validator(k.public_key, 1) for k in keys), key=lambda v: v.key))
    (tmp_path / "g.toml").write_text(
        params_to_toml(test_params(keys, consensus=CONSENSUS_POA, validators=members))
    )
    ok(gridnet("chain", "init", "--data-dir", "D", "--genesis", "g.toml", cwd=tmp_path))
    ok(gridnet("keys", "new", "--out", "x.key", "--unencrypted", cwd=tmp_path))
    line = one_line_error(
        gridnet("chain", "mine", "--data-dir", "D", "--blocks", "1", "--key", "x.key", cwd=tmp_path)
    )
    assert "not a validator" in line, line
    ok(gridnet("chain", "mine", "--data-dir", "D", "--blocks", "2", "--key", "v0.key", cwd=tmp_path))

    new_set = [f"--member={k.public_key.hex()}" for k in keys[:3]]
    approvals = [
        ok(
            gridnet(
                "tx", "approve-validators", "--key", f"v{i}.key", "--data-dir", "D", "--seq", "1", *new_set,
                cwd=tmp_path,
            )
        ).strip()
        for i in range(3)
    ]  # fmt: skip
    change = ("tx", "change-validators", "--data-dir", "D", "--key", "v0.key", "--seq", "1", *new_set)
    short = one_line_error(gridnet(*change, *(f"--approval={a}" for a in approvals[:2]), cwd=tmp_path))
    assert "InsufficientApprovals" in short or "two thirds" in short, short
    ok(gridnet(*change, *(f"--approval={a}" for a in approvals), cwd=tmp_path))
    out = ok(gridnet("chain", "mine", "--data-dir", "D", "--blocks", "1", "--key", "v1.key", cwd=tmp_path))
    assert "with 1 transaction(s)" in out, out
    chain = Chain.open(tmp_path / "D", readonly=True)
    try:
        current, pending = validator_set(chain.view()), pending_change(chain.view())
    finally:
        chain.close()
    # pending until its block is final under the set in force (no votes here: it stays so)
    assert current.seq == 0 and len(current.members) == 4
    assert pending is not None and {m.key for m in pending.members} == {k.public_key for k in keys[:3]}
    ok(gridnet("chain", "verify", "--data-dir", "D", cwd=tmp_path))


# --- Helios credits ----------------------------------------------------------------------------


def test_encrypted_member_keys_take_their_own_passphrase_files(funded: Funded, tmp_path: Path) -> None:
    """Member keys were loaded without --passphrase-file, and the error asked for the flag the
    command had been given: --member-passphrase-file pairs one with each --member-key."""
    from gridnet.crypto.keys import KDF_COST_MIN, PrivateKey

    data = copy_chain(funded, tmp_path)
    members = [PrivateKey.from_label(f"cli-sealed-neighbour-{i}") for i in range(2)]
    pairs: list[str] = []
    for i, k in enumerate(members):
        write_key_file(tmp_path / f"s{i}.key", k, f"passphrase {i}".encode(), cost=KDF_COST_MIN)
        (tmp_path / f"s{i}.pass").write_text(f"passphrase {i}\n")
        (tmp_path / f"s{i}.pass").chmod(0o600)
        pairs += ["--member-key", f"s{i}.key", "--member-passphrase-file", f"s{i}.pass"]
    keys = [f"--member={k.public_key.hex()}" for k in members]
    args = ("tx", "register-controller", "--data-dir", data, "--key", "a.key", "--name", "Sealed", *keys)
    line = one_line_error(gridnet(*args, "--threshold", "2", *pairs[:-2], cwd=tmp_path))
    assert "1 --member-passphrase-file for 2 --member-key" in line, line
    ok(gridnet(*args, "--threshold", "2", *pairs, cwd=tmp_path))


def test_a_helios_controller_from_the_command_line(funded: Funded, tmp_path: Path) -> None:
    from gridnet.crypto.address import address_to_text
    from gridnet.crypto.keys import PrivateKey

    data = copy_chain(funded, tmp_path)
    members = [PrivateKey.from_label(f"cli-neighbour-{i}") for i in range(3)]
    for i, k in enumerate(members):
        write_key_file(tmp_path / f"m{i}.key", k)
    keys = [f"--member={k.public_key.hex()}" for k in members]
    args = ("tx", "register-controller", "--data-dir", data, "--key", "a.key", "--name", "Island", *keys)
    short = one_line_error(gridnet(*args, "--threshold", "2", "--member-key", "m0.key", cwd=tmp_path))
    assert "InsufficientConsortium" in short or "needs 2" in short, short
    ok(gridnet(*args, "--threshold", "2", "--member-key", "m0.key", "--member-key", "m1.key", cwd=tmp_path))
    ok(gridnet("chain", "mine", "--data-dir", data, "--blocks", "1", "--key", "b.key", cwd=tmp_path))
    # The controller is a.key's "Island": named by its registrant's public key and the name.
    registrant = ok(gridnet("keys", "show", "--key", "a.key", "--public-key", cwd=tmp_path)).strip()
    controller = ("--controller", "Island", "--registrant", registrant)
    out = ok(gridnet("chain", "credits", "--data-dir", data, *controller, cwd=tmp_path))
    assert "Island: 0 credits in circulation" in out, out
    line = one_line_error(
        gridnet(
            "tx", "enroll-producer", "--data-dir", data, "--key", "a.key", *controller, "--meter", funded.b,
            cwd=tmp_path,
        )
    )  # fmt: skip
    assert "UnknownMeter" in line or "not registered" in line, line
    missing = one_line_error(
        gridnet("chain", "credits", "--data-dir", data, "--controller", "Nowhere", "--registrant", registrant,
                cwd=tmp_path)
    )  # fmt: skip
    assert "no Helios controller" in missing, missing
    b_key = ok(gridnet("keys", "show", "--key", "b.key", "--public-key", cwd=tmp_path)).strip()
    theirs = one_line_error(
        gridnet("chain", "credits", "--data-dir", data, "--controller", "Island", "--registrant", b_key,
                cwd=tmp_path)
    )  # fmt: skip
    assert f"no Helios controller named 'Island' registered by {b_key}" in theirs, theirs
    # A transaction naming it with another registrant is refused by that name and key, not by an id.
    line = one_line_error(
        gridnet("tx", "transfer-credits", "--data-dir", data, "--key", "a.key", "--controller", "Island",
                "--registrant", b_key, "--to", funded.b, "--credits", "1", cwd=tmp_path)
    )  # fmt: skip
    assert line.startswith(
        f"error: UnknownController: no Helios controller named 'Island' is registered by {b_key}"
    )
    assert "check --registrant" in line and "--controller" in line, line
    for wrong in ("abc", "00" * 31, funded.a):
        line = one_line_error(
            gridnet("tx", "enroll-producer", "--data-dir", data, "--key", "a.key", "--controller", "Island",
                    "--registrant", wrong, "--meter", funded.b, cwd=tmp_path)
        )  # fmt: skip
        assert "--registrant" in line and "give the 32-byte public key" in line, line
    bad = one_line_error(
        gridnet(
            "tx", "register-island", "--data-dir", data, "--key", "a.key", *controller,
            "--gateway", funded.a, "--island-node", f"{funded.b}:130", "--member-key", "m0.key", cwd=tmp_path,
        )
    )  # fmt: skip
    assert "METER:INJECT_W:WITHDRAW_W" in bad, bad
    # Each meter's owner signs its consent (the gateway's a, the node's b), printed for --consent.
    island = (*controller, "--gateway", funded.a, "--island-node", f"{funded.b}:130:500")
    consents = [
        ok(
            gridnet(
                "tx", "consent-island", "--key", f"{who}.key", "--data-dir", data, *island, "--meter", meter,
                cwd=tmp_path,
            )
        ).strip()
        for who, meter in (("a", funded.a), ("b", funded.b))
    ]  # fmt: skip
    assert all(len(c) == 64 + 1 + 128 for c in consents), consents
    elsewhere = address_to_text(PrivateKey.from_label("cli-not-in-the-island").address)
    line = one_line_error(
        gridnet(
            "tx", "consent-island", "--key", "a.key", "--data-dir", data, *island, "--meter", elsewhere,
            cwd=tmp_path,
        )
    )  # fmt: skip
    assert "neither the --gateway nor one of the --island-node" in line, line
    register = (
        "tx", "register-island", "--data-dir", data, "--key", "a.key", *island, "--member-key", "m0.key",
        "--member-key", "m1.key",
    )  # fmt: skip
    line = one_line_error(gridnet(*register, "--consent", consents[0], cwd=tmp_path))
    assert f"no --consent signs this island for meter(s) {funded.b}" in line, line
    # Both consents found: the chain refuses it for what it is (neither meter is registered).
    line = one_line_error(gridnet(*register, *(f"--consent={c}" for c in reversed(consents)), cwd=tmp_path))
    assert "UnknownMeter" in line or "not registered" in line, line


U63 = 2**63 - 1


@pytest.mark.parametrize(
    ("caps", "expected"),
    [
        ((f"{U63}:10", f"{U63}:10"), f"the nodes' caps add up to more than {U63} W"),  # (was signed)
        (
            (f"{U63}:10", f"{U63}:10", f"{U63}:10"),
            f"the nodes' caps add up to more than {U63} W",
        ),  # (OverflowError)
        (("0:0", "130:500"), "an island node may inject or withdraw something"),
        (("3:500", "130:500"), "a cap of 3 W allows 0 Wh an interval"),
    ],
)
def test_an_island_the_chain_would_refuse_is_refused_before_anyone_signs_it(
    funded: Funded, caps: tuple[str, ...], expected: str
) -> None:
    """``consent-island`` and ``register-island`` check what the chain checks of an island (its
    nodes' caps' sums are the gateway's, at most 2^63 - 1 W): an owner signed a consent to an
    island no block could hold, or met ``OverflowError`` (a 60-line traceback)."""
    from gridnet.crypto.address import address_to_text
    from gridnet.crypto.keys import PrivateKey

    meters = [
        funded.b,
        *(address_to_text(PrivateKey.from_label(f"cli-island-{i}").address) for i in range(2)),
    ]
    nodes = [f"--island-node={m}:{c}" for m, c in zip(meters, caps, strict=False)]
    island = ("--controller", "Island", "--registrant", "00" * 32, "--gateway", funded.a, *nodes)
    for args in (
        ("consent-island", "--meter", funded.a),
        ("register-island", "--member-key", "a.key"),
    ):
        line = one_line_error(
            gridnet("tx", *args, "--key", "a.key", "--data-dir", funded.data, *island, cwd=funded.root)
        )
        assert line.startswith("error: --island-node: ") and expected in line, line


def test_an_island_listing_a_meter_twice_or_its_gateway_is_refused_by_the_option(funded: Funded) -> None:
    for nodes, expected in (
        ((f"{funded.b}:130:500", f"{funded.b}:40:40"), f"--island-node: meter {funded.b} is given twice"),
        ((f"{funded.a}:130:500",), "--island-node: the gateway's meter is not one of the island's nodes"),
    ):
        island = ("--controller", "Island", "--registrant", "00" * 32, "--gateway", funded.a)
        line = one_line_error(
            gridnet(
                "tx", "consent-island", "--meter", funded.a, "--key", "a.key", "--data-dir", funded.data,
                *island, *(f"--island-node={n}" for n in nodes), cwd=funded.root,
            )
        )  # fmt: skip
        assert expected in line, line


# --- the credit bank ---------------------------------------------------------------------------


def test_a_credit_bank_from_the_command_line(funded: Funded, tmp_path: Path) -> None:
    from gridnet.crypto.keys import PrivateKey

    data = copy_chain(funded, tmp_path)
    members = [PrivateKey.from_label(f"cli-banker-{i}") for i in range(2)]
    for i, k in enumerate(members):
        write_key_file(tmp_path / f"m{i}.key", k)
    (tmp_path / "criteria.toml").write_text(
        "base_value = 10\nper_kwh_sold = 5\nper_loan_repaid = 20\nper_default = 100\nper_missed = 15\n"
        "min_value = 5\ncoins_per_point = 100000000\nmax_loan = 1000000000\ninstallments = 4\n"
        "every_intervals = 4\ninterest_bps = 500\nrepay_share_pct = 50\n"
    )
    (tmp_path / "bad.toml").write_text("base_value = -1\n")  # and every other key missing
    args = (
        "tx", "register-credit-bank", "--data-dir", data, "--key", "a.key", "--name", "Commons",
        *(f"--member={k.public_key.hex()}" for k in members), "--threshold", "2", "--capital", "100",
        "--member-key", "m0.key", "--member-key", "m1.key",
    )  # fmt: skip
    bad = one_line_error(gridnet(*args, "--criteria", "bad.toml", cwd=tmp_path))
    assert "bad.toml: not valid credit criteria" in bad, bad
    ok(gridnet(*args, "--criteria", "criteria.toml", cwd=tmp_path))
    ok(gridnet("tx", "register-identity", "--data-dir", data, "--key", "b.key", cwd=tmp_path))  # (to borrow)
    ok(gridnet("chain", "mine", "--data-dir", data, "--blocks", "1", "--key", "b.key", cwd=tmp_path))
    registrant = ok(gridnet("keys", "show", "--key", "a.key", "--public-key", cwd=tmp_path)).strip()
    bank = ("--bank", "Commons", "--registrant", registrant)  # (a.key's "Commons")
    loan = ("tx", "request-loan", "--data-dir", data, "--key", "b.key", *bank)
    big = one_line_error(gridnet(*loan, "--amount", "11", cwd=tmp_path))
    assert "LoanTooLarge" in big, big
    theirs = ok(gridnet("keys", "show", "--key", "b.key", "--public-key", cwd=tmp_path)).strip()
    line = one_line_error(
        gridnet("tx", "request-loan", "--data-dir", data, "--key", "b.key", "--bank", "Commons",
                "--registrant", theirs, "--amount", "1", cwd=tmp_path)
    )  # fmt: skip
    assert line.startswith(
        f"error: UnknownCreditBank: no credit bank named 'Commons' is registered by {theirs}"
    )
    assert "check --registrant" in line and "--bank" in line, line
    ok(gridnet(*loan, "--amount", "8", cwd=tmp_path))
    ok(gridnet("chain", "mine", "--data-dir", data, "--blocks", "1", "--key", "a.key", cwd=tmp_path))
    out = ok(
        gridnet(
            "chain",
            "credit-bank",
            "--data-dir",
            data,
            "--name",
            "Commons",
            "--registrant",
            registrant,
            "--borrower",
            funded.b,
            cwd=tmp_path,
        )
    )
    assert "Commons: 92.00000000 GNC to lend, 1 loan(s)" in out and "8.40000000 GNC outstanding" in out, out
    early = one_line_error(
        gridnet(
            "tx",
            "report-missed-repayment",
            "--data-dir",
            data,
            "--key",
            "a.key",
            "--borrower",
            funded.b,
            cwd=tmp_path,
        )
    )
    assert "RepaymentNotDue" in early, early
    ok(gridnet("tx", "repay-loan", "--data-dir", data, "--key", "b.key", "--amount", "8.4", cwd=tmp_path))
    ok(gridnet("chain", "mine", "--data-dir", data, "--blocks", "1", "--key", "a.key", cwd=tmp_path))
    out = ok(
        gridnet(
            "chain",
            "credit-bank",
            "--data-dir",
            data,
            "--name",
            "Commons",
            "--registrant",
            registrant,
            "--borrower",
            funded.b,
            cwd=tmp_path,
        )
    )
    # 10 to start, and 20 for max_loan (10 GNC) of principal repaid: 16 for the 8 GNC repaid
    assert "credit value 26" in out and "its loan is repaid" in out, out
    withdraw = (
        "tx", "withdraw-capital", "--data-dir", data, "--key", "a.key", *bank, "--to", funded.a,
        "--member-key", "m0.key", "--member-key", "m1.key",
    )  # fmt: skip
    short = one_line_error(gridnet(*withdraw, "--seq", "1", "--amount", "100.5", cwd=tmp_path))
    assert "BankCapitalShort" in short, short  # 100.4 GNC: the capital and the interest repaid
    ok(gridnet(*withdraw, "--seq", "1", "--amount", "100.4", cwd=tmp_path))
    ok(gridnet("chain", "mine", "--data-dir", data, "--blocks", "1", "--key", "a.key", cwd=tmp_path))
    again = one_line_error(gridnet(*withdraw, "--seq", "1", "--amount", "1", cwd=tmp_path))
    assert "StaleWithdrawal" in again, again
    name = ("--name", "Commons", "--registrant", registrant)
    out = ok(gridnet("chain", "credit-bank", "--data-dir", data, *name, cwd=tmp_path))
    assert "0.00000000 GNC to lend" in out and "100.40000000 GNC withdrawn in 1 withdrawal(s)" in out, out
    missing = one_line_error(
        gridnet("chain", "credit-bank", "--data-dir", data, "--name", "Nowhere", "--registrant", registrant,
                cwd=tmp_path)
    )  # fmt: skip
    assert f"no credit bank named 'Nowhere' registered by {registrant}" in missing, missing


def test_a_file_that_is_not_text_is_one_line_wherever_it_is_given(tmp_path: Path) -> None:
    """Binary bytes (or a byte-order mark before valid TOML) in any file a person writes."""
    (tmp_path / "bin").write_bytes(bytes(range(256)) * 4)
    (tmp_path / "private-bin").write_bytes(bytes(range(256)) * 4)
    (tmp_path / "private-bin").chmod(0o600)  # (a token file others may read is refused before it is read)
    run = tmp_path / "run"
    run.mkdir()
    (run / "report.json").write_bytes(b"\xff\xfe{")
    listed = tmp_path / "listed"
    listed.mkdir()
    (listed / "report.json").write_text("[1, 2]")
    transfer = ("--key", "k.key", "--to", new_key(tmp_path, "k.key"), "--amount", "1")
    cases = [
        (("chain", "init", "--data-dir", "D", "--genesis", "bin"), "genesis file bin is not UTF-8 text"),
        (
            ("node", "--data-dir", "N", "--print-config", "--config", "bin"),
            "config file bin is not UTF-8 text",
        ),
        (("simulate", "bin", "--out", "o"), "scenario file bin is not UTF-8 text"),
        (("sweep", "bin"), "sweep file bin is not UTF-8 text"),
        (("dashboard", "run", "--port", "0"), "is not a run's report (not JSON"),
        (("dashboard", "listed", "--port", "0"), "is not a run's report"),
        (
            ("tx", "transfer", "--node", "127.0.0.1:9", "--api-token-file", "private-bin", *transfer),
            "API token file private-bin is not text",
        ),
    ]
    for args, expected in cases:
        line = one_line_error(gridnet(*args, cwd=tmp_path))
        assert expected in line, (args, line)
    (tmp_path / "bom.toml").write_bytes(b"\xef\xbb\xbf[homes]\ncount = 'x'\n")
    line = one_line_error(gridnet("simulate", "bom.toml", "--out", "o", cwd=tmp_path))
    assert "[homes] count must be an integer" in line


def test_a_file_that_is_no_regular_file_is_one_line_not_read_for_ever(tmp_path: Path) -> None:
    """A pipe or a device (/dev/zero) given for a file a person writes would be read for ever:
    refused at once, as is a file larger than any such file."""
    os.mkfifo(tmp_path / "pipe")
    with (tmp_path / "huge.toml").open("wb") as f:
        f.truncate(MAX_TOML_BYTES + 1)  # (sparse: no disk taken)
    for path in ("pipe", "/dev/zero"):
        for args, what in (
            (("chain", "init", "--data-dir", "D", "--genesis", path), "genesis file"),
            (("node", "--data-dir", "N", "--print-config", "--config", path), "config file"),
            (("simulate", path, "--out", "o"), "scenario file"),
            (("sweep", path), "sweep file"),
        ):
            line = one_line_error(gridnet(*args, cwd=tmp_path, timeout=60))
            assert f"{what} {path} is not a regular file (a pipe or a device?); give a file" in line, line
    line = one_line_error(gridnet("simulate", "huge.toml", "--out", "o", cwd=tmp_path))
    assert f"is {MAX_TOML_BYTES + 1:,} bytes: at most {MAX_TOML_BYTES:,} are read" in line
    weather = tmp_path / "weather.toml"
    weather.write_text('[weather]\nsky = "file"\nweather_file = "pipe"\n')
    line = one_line_error(gridnet("simulate", "weather.toml", "--out", "o", cwd=tmp_path))
    assert "the weather file" in line and "is not a regular file" in line, line
    assert not (tmp_path / "o").exists()


def test_a_toml_file_nested_too_deep_is_one_line_from_every_reader(tmp_path: Path) -> None:
    """600 nested brackets (1.2 kB) were a RecursionError traceback from every TOML reader; a
    policy file was read apart from them (a pipe named in [policies] was waited on for ever)."""
    (tmp_path / "deep.toml").write_text("a = " + "[" * 600 + "]" * 600 + "\n")
    scenario = '[simulation]\nintervals = 2\n[homes]\ncount = 3\n[policies]\nhome-0 = "{}"\n'
    (tmp_path / "policy.toml").write_text(scenario.format("deep.toml"))
    deep = f"deep.toml nests tables and arrays more than {MAX_TOML_DEPTH} deep; "
    deep += "check its brackets and dotted keys"
    for args, what in (
        (("simulate", "deep.toml", "--out", "o"), "scenario file"),
        (("sweep", "deep.toml", "--workers", "1"), "sweep file"),
        (("chain", "init", "--data-dir", "D", "--genesis", "deep.toml"), "genesis file"),
        (("node", "--data-dir", "N", "--print-config", "--config", "deep.toml"), "config file"),
        (("simulate", "policy.toml", "--out", "o"), "policy.toml: [policies] home-0: policy file"),
    ):
        assert one_line_error(gridnet(*args, cwd=tmp_path)) == f"error: {what} {deep}", args
    os.mkfifo(tmp_path / "pipe")
    (tmp_path / "piped.toml").write_text(scenario.format("pipe"))
    line = one_line_error(gridnet("simulate", "piped.toml", "--out", "o", cwd=tmp_path, timeout=60))
    assert "[policies] home-0: policy file pipe is not a regular file (a pipe or a device?)" in line, line
    assert not (tmp_path / "o").exists()


def test_a_role_text_the_chain_would_refuse_stops_simulate_before_its_run(tmp_path: Path) -> None:
    """[manufacturer] firmware = "" ran the day with every meter's registration refused
    WrongType (no meter on chain, exit 0 in a sweep): now the scenario is refused in one line
    before anything is written."""
    (tmp_path / "s.toml").write_text(
        '[simulation]\nintervals = 4\n[homes]\ncount = 4\n[manufacturer]\nfirmware = ""\n'
    )
    line = one_line_error(gridnet("simulate", "s.toml", "--out", "o", cwd=tmp_path))
    assert line == (
        "error: s.toml: [manufacturer] firmware must be 1 to 64 characters, what the chain takes ('' has 0)"
    )
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize(
    "args",
    [
        ("bench", "meters", "--meters", "99999999999"),
        ("bench", "ledger", "--per-block", "99999999999"),
        ("bench", "auction", "--homes", "99999999999"),
        ("tx", "redeem-credits", "--credits", "99999999999999999999"),
        ("chain", "mine", "--blocks", "99999999999999999999"),
        ("meter", "run", "--clock-origin", "99999999999999999999999"),
    ],
)
def test_sizes_beyond_what_a_run_or_a_transaction_takes_are_refused_at_once(
    tmp_path: Path, args: tuple[str, ...]
) -> None:
    line = one_line_error(gridnet(*args, cwd=tmp_path))
    assert f"Invalid value for '{args[2]}'" in line


@pytest.mark.parametrize("kind", ["fifo", "device", "too large"])
def test_a_firmware_image_is_a_regular_file_of_at_most_256_mib(tmp_path: Path, kind: str) -> None:
    """The image is hashed as it is read, from a regular file only: --image /dev/zero was read
    whole into memory (4 GB in 4 s, then more), a FIFO waited for ever, and any size was read."""
    if kind == "fifo":
        image = tmp_path / "fw.fifo"
        os.mkfifo(image)
        expected = f"error: --image {image} is not a regular file; give the firmware image's file"
    elif kind == "device":
        image = Path("/dev/null")  # (as /dev/zero, which without the check fills the memory)
        expected = "error: --image /dev/null is not a regular file; give the firmware image's file"
    else:
        image = tmp_path / "fw.bin"
        with image.open("wb") as sparse:
            sparse.truncate(256 * 1024 * 1024 + 1)
        expected = (
            f"error: --image {image} has 268,435,457 bytes: "
            "a firmware image has at most 268,435,456 (256 MiB)"
        )
    release = ("--vendor", "Acme", "--model", "M1", "--version", "2.0", "--image", image)
    line = one_line_error(
        gridnet(
            "tx",
            "publish-firmware",
            *release,
            "--key",
            "none.key",
            "--data-dir",
            "D",
            cwd=tmp_path,
            timeout=30,
        )
    )
    assert line == expected


SPEED_ABOVE = "Invalid value for '--clock-speed': Input should be less than or equal to 10000"
ORIGIN_ABOVE = "Invalid value for '--clock-origin': Input should be less than or equal to 253402300800000"


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (("--clock-origin", "1", "--clock-speed", "inf"), SPEED_ABOVE),
        (("--clock-origin", "1", "--clock-speed", "1e300", "--mine"), SPEED_ABOVE),
        (("--clock-origin", "99999999999999999999999", "--mine"), ORIGIN_ABOVE),
        (
            ("--clock-origin", "-1"),
            "Invalid value for '--clock-origin': Input should be greater than or equal to 0",
        ),
        (
            ("--clock-origin", "1", "--clock-anchor", "99999999999999999999999"),
            "Invalid value for '--clock-anchor': Input should be less than or equal to 253402300800000",
        ),
        (
            ("--clock-origin", "0", "--clock-anchor", "253402300799999", "--clock-speed", "10000"),
            "--clock-origin 0, --clock-anchor 253402300799999 and --clock-speed 10000 would have the clock "
            "read -",
        ),
    ],
)
def test_a_node_clock_is_refused_at_once_unless_it_stays_within_the_ledger_for_centuries(
    tmp_path: Path, args: tuple[str, ...], expected: str
) -> None:
    """--clock-speed inf was an OverflowError; 1e300, or an origin past 2^63, started a node that
    died in its first tick ('its tick failed with OverflowError'). Speeds up to 10,000 and times
    up to the year 9999 keep the clock below 2^63 ms for some 29,000 years."""
    line = one_line_error(gridnet("node", "--data-dir", "N", *args, cwd=tmp_path))
    assert line.startswith(f"error: {expected}"), line
    assert not (tmp_path / "N").exists()


KEY_A, KEY_B = "ab" * 32, "cd" * 32
VOTES_HELP = "give a 32-byte public key in hex, optionally :VOTES (1 to 2,147,483,647)"


@pytest.mark.parametrize(
    ("members", "expected"),
    [
        ((f"{KEY_A}:99999999999999999999999",), f"--member '{KEY_A}:99999999999999999999999': {VOTES_HELP}"),
        ((f"{KEY_A}:2147483648",), f"--member '{KEY_A}:2147483648': {VOTES_HELP}"),
        (
            (KEY_A, f"{KEY_A}:2"),
            f"--member {KEY_A} is given twice; give each member once, with its whole vote weight",
        ),
        (
            (f"{KEY_A}:2147483647", KEY_B),
            "--member: the members' votes come to 2,147,483,648; a validator set's are fewer than "
            "2,147,483,648 together",
        ),
    ],
)
@pytest.mark.parametrize("command", ["approve-validators", "change-validators"])
def test_a_validator_set_the_ledger_would_refuse_is_refused_by_its_option(
    tmp_path: Path, command: str, members: tuple[str, ...], expected: str
) -> None:
    """The ledger's own bounds (votes 1 to 2^31 - 1, fewer than 2^31 together, each key once),
    before anything is read or signed: a weight past 2^64 was an OverflowError, and a key given
    twice was signed as an approval."""
    given = [arg for m in members for arg in ("--member", m)]
    approval = ("--approval", f"{KEY_A}:{'00' * 64}") if command == "change-validators" else ()
    line = one_line_error(
        gridnet(
            "tx",
            command,
            "--key",
            "none.key",
            "--seq",
            "1",
            *given,
            *approval,
            "--data-dir",
            "D",
            cwd=tmp_path,
        )
    )
    assert line == f"error: {expected}"


def test_a_signature_that_is_not_key_colon_signature_in_hex_is_refused_by_its_option(tmp_path: Path) -> None:
    line = one_line_error(
        gridnet(
            *("tx", "change-validators", "--key", "none.key", "--seq", "1", "--member", KEY_A),
            *("--approval", f"{KEY_A}:not-hex", "--data-dir", "D"),
            cwd=tmp_path,
        )
    )
    assert line == f"error: --approval {KEY_A[:24]}...: give KEY:SIGNATURE in hex"


ORDER = ("--meter", "x", "--area", "north", "--wh", "1", "--price", "1")


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (("tx", "register-authority", "--roles", "dso", "--name", ""), "--name has 0 characters"),
        (("meter", "relay", "http://127.0.0.1:9", "0", "close", "--reason", "x" * 121), "--reason has 121"),
        (
            ("tx", "place-order", "--at", "1900-01-01T00:00:00Z", "--side", "bid", *ORDER),
            "--at: '1900-01-01T00:00:00Z' is before 1970",
        ),
    ],
)
def test_options_a_transaction_could_not_hold_are_named(
    tmp_path: Path, args: tuple[str, ...], expected: str
) -> None:
    """Refused by the option's name, not by the encoder's position in the transaction."""
    line = one_line_error(gridnet(*args, "--key", "none.key", cwd=tmp_path))
    assert expected in line and "$[" not in line


CONSORTIUM = ("--member-key", "m.key", "--data-dir", "D")
HELIOS = ("--controller", "c", "--registrant", KEY_A, "--meter", "x")
ADVISORY = ("tx", "publish-advisory", "--vendor", "v", "--model", "m")
CRITERIA = (
    "base_value = 10\nper_kwh_sold = 5\nper_loan_repaid = 20\nper_default = 100\nper_missed = 15\n"
    "min_value = 5\ncoins_per_point = 100000000\nmax_loan = 1000000000\nevery_intervals = 4\n"
    "interest_bps = 500\nrepay_share_pct = 50\n"
)
BANK = ("tx", "register-credit-bank", "--member", KEY_A, "--threshold", "1", "--capital", "1", *CONSORTIUM)


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (
            ("tx", "register-controller", "--name", "", "--member", KEY_A, "--threshold", "1", *CONSORTIUM),
            "error: --name has 0 characters: a controller's name has 1 to 64",
        ),
        (
            (
                "tx",
                "register-controller",
                "--name",
                "n" * 65,
                "--member",
                KEY_A,
                "--threshold",
                "1",
                *CONSORTIUM,
            ),
            "error: --name has 65 characters: a controller's name has 1 to 64",
        ),
        (
            (*BANK, "--name", "", "--criteria", "c.toml"),
            "error: --name has 0 characters: a bank's name has 1 to 64",
        ),
        (
            (
                "tx",
                "register-controller",
                "--name",
                "c",
                "--member",
                KEY_A,
                "--threshold",
                "4294967296",
                *CONSORTIUM,
            ),
            "error: Invalid value for '--threshold': Input should be less than or equal to 32",
        ),
        (
            ("tx", "register-controller", "--name", "c", "--member", KEY_A, "--threshold", "2", *CONSORTIUM),
            "error: --threshold 2 is more than the 1 --member",
        ),
        (
            ("tx", "register-controller", "--name", "c", "--member", "00", "--threshold", "1", *CONSORTIUM),
            "error: --member '00': give a consortium member's 32-byte public key in hex",
        ),
        (
            (
                "tx",
                "register-controller",
                "--name",
                "c",
                *("--member", KEY_A) * 2,
                "--threshold",
                "1",
                *CONSORTIUM,
            ),
            f"error: --member {KEY_A} is given twice",
        ),
        (
            ("tx", "transfer-credits", "--controller", "", *HELIOS[2:4], "--to", "x", "--credits", "1"),
            "error: --controller has 0 characters: a controller's name has 1 to 64",
        ),
        (
            ("tx", "request-loan", "--bank", "b" * 65, "--registrant", KEY_A, "--amount", "1"),
            "error: --bank has 65 characters: a bank's name has 1 to 64",
        ),
        (
            ("tx", "enroll-producer", *HELIOS, "--every", str(2**63 - 1)),
            "error: Invalid value for '--every': Input should be less than or equal to 672",
        ),
        (
            ("tx", "redeem-credits", *HELIOS, "--credits", "1", "--within", str(2**63 - 1)),
            "error: Invalid value for '--within': Input should be less than or equal to 672",
        ),
        (
            ("tx", "publish-firmware", "--vendor", "", "--model", "m", "--version", "1", "--image", "img"),
            "error: --vendor has 0 characters: a vendor has 1 to 64",
        ),
        (
            (
                "tx",
                "publish-firmware",
                "--vendor",
                "v",
                "--model",
                "m",
                "--version",
                "9" * 65,
                "--image",
                "img",
            ),
            "error: --version has 65 characters: a firmware version has 1 to 64",
        ),
        (
            (*ADVISORY, "--id", "", "--affected", "1.0"),
            "error: --id has 0 characters: an advisory's id has 1 to 64",
        ),
        ((*ADVISORY, "--id", "A-1", "--affected", f"1.0,{'9' * 65}"), "error: --affected has 65 characters"),
        (
            (*ADVISORY, "--id", "A-1", "--affected", ",".join(map(str, range(65)))),
            "error: --affected lists 65 versions: an advisory lists 1 to 64, each once",
        ),
        (
            (*ADVISORY, "--id", "A-1", "--affected", "1.0", "--fixed-in", "1.0"),
            "error: --fixed-in '1.0' is one of the --affected versions",
        ),
        (
            (*ADVISORY, "--id", "A-1", "--affected", "1.0", "--fixed-in", "2" * 65),
            "error: --fixed-in has 65 characters: the fixing version has 0 to 64",
        ),
        (
            (
                "tx",
                "place-order",
                "--at",
                "2030-01-01T00:00:00Z",
                "--side",
                "bid",
                *ORDER,
                "--area",
                "a" * 33,
            ),
            "error: --area has 33 characters: an area has 1 to 32",
        ),
        (
            (*BANK, "--name", "b", "--criteria", "big.toml"),
            "error: big.toml: not valid credit criteria (installments is not a whole number from 0 to "
            "4,294,967,295)",
        ),
        (
            (*BANK, "--name", "b", "--criteria", "zero.toml"),
            "error: zero.toml: not valid credit criteria (installments must be 1 to 96, every_intervals "
            "1 to 672)",
        ),
    ],
)
def test_options_take_the_ledgers_bounds_and_are_refused_by_name_at_once(
    tmp_path: Path, args: tuple[str, ...], expected: str
) -> None:
    """An option wider than its transaction field (a U32, a name of 1 to 64 characters) or than
    the chain's rule for it was refused by the encoder ('WrongType: Expected int <= 4294967295 -
    at $[0][3]') or the chain, after the key was loaded and the node asked: now at once, naming
    the option (the key file given does not exist)."""
    (tmp_path / "c.toml").write_text(CRITERIA + "installments = 4\n")
    (tmp_path / "big.toml").write_text(CRITERIA + f"installments = {2**32}\n")
    (tmp_path / "zero.toml").write_text(CRITERIA + "installments = 0\n")
    line = one_line_error(gridnet(*args, "--key", "none.key", cwd=tmp_path))
    assert line.startswith(expected) and "$[" not in line, line


def options_taking_values(command: Any, path: tuple[str, ...] = ()) -> Iterator[tuple[tuple[str, ...], str]]:
    """Each command's path and each of its options that takes a value (not a flag)."""
    for name, sub in sorted(getattr(command, "commands", {}).items()):
        yield from options_taking_values(sub, (*path, name))
    for param in command.params:
        long = [o for o in param.opts if o.startswith("--")]
        if long and not (getattr(param, "is_flag", False) or getattr(param, "count", False)):
            yield path, long[0]


NOT_UTF8 = "give it in UTF-8 (a name, a path, any value)"


def test_text_that_is_not_utf8_is_refused_by_its_option_whatever_the_option(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Python turns argv bytes that do not decode into lone surrogates: any option given them
    (a controller's name, a bank's, a vendor, a path...) met ``UnicodeEncodeError`` wherever it
    was encoded, a 25-99 line traceback. ``main`` refuses them first, by the option's name."""
    import typer.main

    from gridnet.cli import app, main

    checked = 0
    for path, flag in options_taking_values(typer.main.get_command(app)):
        for args in ((*path, flag, "x\udcff"), (*path, f"{flag}=x\udcff")):
            monkeypatch.setattr(sys, "argv", ["gridnet", *args])
            with pytest.raises(SystemExit) as exited:
                main()
            assert exited.value.code == 1, args
            assert capsys.readouterr().err == f"error: {flag} is not valid UTF-8 text: 'x\\xff'; {NOT_UTF8}\n"
            checked += 1
    assert checked > 600  # (every command's: chain credits --controller, tx publish-advisory --vendor...)


def test_text_that_is_not_utf8_is_one_line_before_anything_is_read_or_written(funded: Funded) -> None:
    key = funded.root / "a.key"
    for args, flag in (
        (("chain", "credits", "--controller", "\udcff", "--registrant", "00" * 32), "--controller"),
        (("tx", "register-controller", "--key", key, "--name", "c\udcff", "--member", "00" * 32), "--name"),
        (("tx", "transfer-credits", "--key", key, "--controller", "\udcff"), "--controller"),
        (("chain", "init"), "--data-dir"),
        (("meter", "relay", "http://127.0.0.1:9", "\udcff", "close"), "a command-line argument"),
    ):
        data_dir = "E\udcff" if args == ("chain", "init") else funded.data
        line = one_line_error(gridnet(*args, "--data-dir", data_dir, cwd=funded.root))
        assert line.startswith(f"error: {flag} is not valid UTF-8 text: ") and NOT_UTF8 in line, line
    assert all(name.isascii() for name in os.listdir(funded.root))  # (no E\xff was created)


def test_chain_show_prints_hashes_whole_in_a_narrow_terminal(funded: Funded) -> None:
    """A hash folds over lines but is never cut to '…' (a script or a person copies it)."""
    head = json.loads(ok(gridnet("chain", "show", "--data-dir", funded.data, "--json", cwd=funded.root)))[
        "head"
    ]
    env = dict(os.environ, COLUMNS="60", NO_COLOR="1")
    shown = subprocess.run(
        [sys.executable, "-m", "gridnet", "chain", "show", "--data-dir", str(funded.data)],
        cwd=funded.root,
        env=env,
        capture_output=True,
        text=True,
        timeout=90,
    )
    assert shown.returncode == 0 and "…" not in shown.stdout
    assert head[:20] in shown.stdout and head[-6:] in shown.stdout


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (("devnet", "--speed", "5"), "--speed sets a scenario's clock"),
        (("keys", "new", "--out", "", "--unencrypted"), "is a directory"),
        (
            ("keys", "new", "--out", "missing/k.key", "--unencrypted"),
            "missing does not exist; create it first",
        ),
        (("meter", "run", "--owner", "x", "--generate", "--clock-origin", "5"), "give it with --clock sim"),
        (("meter", "run", "--owner", "x", "--generate", "--ac", "0", "--dc", "0"), "1 to"),
        (("meter", "run", "--owner", "x", "--generate", "--key", "k.key"), "exclude each other"),
    ],
)
def test_options_that_would_be_ignored_or_misread_are_refused(
    tmp_path: Path, args: tuple[str, ...], expected: str
) -> None:
    line = one_line_error(gridnet(*args, cwd=tmp_path))
    assert expected in line
    assert not (tmp_path / "missing").exists() and not (tmp_path / "out").exists()


def test_genesis_refuses_an_address_allocated_twice(tmp_path: Path) -> None:
    a = new_key(tmp_path, "a.key")
    line = one_line_error(
        gridnet("chain", "genesis", "--out", "g.toml", "--alloc", f"{a}=1", "--alloc", f"{a}=2", cwd=tmp_path)
    )
    assert "given twice" in line and not (tmp_path / "g.toml").exists()


def test_a_pending_transaction_is_replaced_with_nonce_and_a_higher_fee(
    funded: Funded, tmp_path: Path
) -> None:
    """``--nonce`` signs for one of the sender's pending nonces: with a higher fee the new
    transaction replaces the pending one, in the data directory's pool as on a node (it stayed
    beside it before, and which of the two was mined depended on the order they were read);
    with a fee no higher it is ReplacementUnderpriced, in one line."""
    data = copy_chain(funded, tmp_path)
    nonce = account(tmp_path, data, funded.a)["nonce"]
    send = ("tx", "transfer", "--data-dir", data, "--key", "a.key", "--to", funded.b)
    ok(gridnet(*send, "--amount", "1", "--fee", "2000", cwd=tmp_path))
    line = one_line_error(
        gridnet(*send, "--amount", "7", "--fee", "2000", "--nonce", str(nonce), cwd=tmp_path)
    )
    assert "ReplacementUnderpriced" in line or "pay more to replace it" in line, line
    ok(gridnet(*send, "--amount", "7", "--fee", "3000", "--nonce", str(nonce), cwd=tmp_path))
    assert show(tmp_path, data)["pending"] == 1
    before = account(tmp_path, data, funded.b)["balance"]
    out = ok(gridnet("chain", "mine", "--data-dir", data, "--blocks", "1", "--key", "a.key", cwd=tmp_path))
    assert "with 1 transaction(s)" in out, out
    after = account(tmp_path, data, funded.b)["balance"]
    assert isinstance(before, int) and isinstance(after, int)
    assert after - before == 7 * 10**8  # the replacement's 7 GNC, not the 1 GNC it replaced
    assert account(tmp_path, data, funded.a)["nonce"] == nonce + 1


def test_chain_backup_copies_what_the_write_ahead_log_holds_beside_a_running_writer(tmp_path: Path) -> None:
    """``chain backup`` takes one committed state of a store a writer holds open, the blocks
    still in its -wal included (a copy of chain.sqlite alone lacks them), into a new data
    directory that opens and verifies; a non-empty --out is refused in one line."""
    keys = test_keys(2)
    writer = Chain.create(tmp_path / "D", test_params(keys))
    try:
        for nonce in range(3):
            extend(writer, [sign(writer, keys[0], Transfer(keys[1].address, 1_000), nonce)])
        assert (tmp_path / "D" / "chain.sqlite-wal").stat().st_size > 0  # (not checkpointed)
        (tmp_path / "D" / "gridnet.toml").write_text("# the node's settings\n")
        plain = tmp_path / "plain"
        plain.mkdir()
        shutil.copy2(tmp_path / "D" / "chain.sqlite", plain / "chain.sqlite")
        out = ok(gridnet("chain", "backup", "--data-dir", "D", "--out", "B", cwd=tmp_path))
        assert f"at height {writer.height} ({writer.head.hash.hex()[:16]})" in out, out
    finally:
        writer.close()
    copy = Chain.open(tmp_path / "B", readonly=True)
    try:
        assert copy.height == 3 and copy.account(keys[1].address).balance > 0
    finally:
        copy.close()
    assert (tmp_path / "B" / "gridnet.toml").read_text() == "# the node's settings\n"
    ok(gridnet("chain", "verify", "--data-dir", "B", "--quiet", cwd=tmp_path))
    assert (
        "error" in gridnet("chain", "show", "--data-dir", plain, cwd=tmp_path).stderr
    )  # the copy without -wal
    line = one_line_error(gridnet("chain", "backup", "--data-dir", "D", "--out", "B", cwd=tmp_path))
    assert "not an empty directory" in line
    line = one_line_error(gridnet("chain", "backup", "--data-dir", "nowhere", "--out", "C", cwd=tmp_path))
    assert not (tmp_path / "C").exists()


def within_file_size(most: int, cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """``gridnet ARGS`` in ``cwd`` with no file written past ``most`` bytes (as on a full disk)."""
    return subprocess.run(
        [sys.executable, "-m", "gridnet", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=300,
        preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_FSIZE, (most, most)),
    )


def test_a_backup_that_cannot_be_written_is_one_line_and_leaves_nothing(tmp_path: Path) -> None:
    """A copy that fails on its way (here: larger than the process may write, as on a full disk)
    is one line naming it, and leaves no partial file behind (it left a traceback and a
    journal, which made the next try 'not an empty directory'); a dangling link is no --out."""
    keys = test_keys(2)
    chain = Chain.create(tmp_path / "D", test_params(keys))
    try:
        for block in range(10):
            extend(
                chain, [sign(chain, keys[0], Transfer(keys[1].address, 1), 20 * block + i) for i in range(20)]
            )
    finally:
        chain.close()
    db = sqlite3.connect(tmp_path / "D" / "chain.sqlite")
    pages = db.execute("PRAGMA page_count").fetchone()[0] * db.execute("PRAGMA page_size").fetchone()[0]
    db.close()
    assert pages > 64 << 10  # (the copy is larger than the process may write; the -shm of 32 KiB is not)
    (tmp_path / "E").mkdir()
    small = within_file_size(64 << 10, tmp_path, "chain", "backup", "--data-dir", "D", "--out", "E")
    line = one_line_error(small)
    assert f"cannot write the copy {Path('E') / 'chain.sqlite'}" in line, line
    assert list((tmp_path / "E").iterdir()) == []
    ok(gridnet("chain", "backup", "--data-dir", "D", "--out", "E", cwd=tmp_path))
    (tmp_path / "dangling").symlink_to(tmp_path / "nowhere")
    line = one_line_error(gridnet("chain", "backup", "--data-dir", "D", "--out", "dangling", cwd=tmp_path))
    assert "not an empty directory" in line
    db = sqlite3.connect(tmp_path / "D" / "chain.sqlite")
    (header,) = db.execute("SELECT header FROM blocks WHERE height = 3").fetchone()
    db.execute("UPDATE blocks SET header = ? WHERE height = 3", (header[:-1] + bytes([header[-1] ^ 1]),))
    db.commit()
    db.close()
    line = one_line_error(gridnet("chain", "backup", "--data-dir", "D", "--out", "G/H/F", cwd=tmp_path))
    assert "the copy of D does not open (StoreCorrupt: the header stored as block " in line, line
    assert "does not hash to it): D itself is damaged" in line, line
    assert not (tmp_path / "G").exists()  # (nor the directories made for it)


def test_a_simulation_whose_chain_cannot_be_written_is_one_line(tmp_path: Path) -> None:
    """A simulated node's store that cannot be written (here: past the process's file-size
    limit, as on a full disk) raised SQLite's OperationalError through the command: a
    165-line traceback ending 'disk I/O error'. It is one line saying what to do, and --out
    keeps nothing presented as a run (no report)."""
    (tmp_path / "s.toml").write_text("[simulation]\nintervals = 4\n[homes]\ncount = 3\n")
    small = within_file_size(256 << 10, tmp_path, "simulate", "s.toml", "--out", "o")
    line = one_line_error(small)
    assert "a chain's SQLite store could not be written (disk I/O error)" in line, line
    assert "free space or choose another directory" in line
    assert not (tmp_path / "o" / "report.json").exists()
