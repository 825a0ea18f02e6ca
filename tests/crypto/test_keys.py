"""Signing keys: domain-separated signatures and key files that stay private."""

from __future__ import annotations

import itertools
import json
import os
import stat
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gridnet.crypto.address import address_from_public_key
from gridnet.crypto.keys import Domain, PrivateKey, read_key_file, verify_signature, write_key_file
from gridnet.errors import KeyFileError

KEY = PrivateKey.from_label("crypto-test")
OTHER = PrivateKey.from_label("crypto-test-other")
OTHER_DOMAINS = [d for d in Domain if d is not Domain.TRANSACTION]


def test_signature_verifies_for_its_domain_key_and_message() -> None:
    sig = KEY.sign(Domain.TRANSACTION, b"hello")
    assert len(sig) == 64
    assert verify_signature(Domain.TRANSACTION, KEY.public_key, b"hello", sig)
    assert not verify_signature(Domain.TRANSACTION, KEY.public_key, b"hellO", sig)
    assert not verify_signature(Domain.TRANSACTION, OTHER.public_key, b"hello", sig)
    assert not verify_signature(Domain.TRANSACTION, KEY.public_key, b"hello", sig[:-1])
    assert not verify_signature(Domain.TRANSACTION, KEY.public_key[:31], b"hello", sig)


def test_domain_tags_are_distinct_and_prefix_free() -> None:
    tags = [d.value for d in Domain]
    assert len(set(tags)) == len(tags)
    for a, b in itertools.permutations(tags, 2):
        assert not b.startswith(a), f"{a!r} is a prefix of {b!r}"


@settings(max_examples=30, deadline=None)
@given(message=st.binary(max_size=200), other=st.sampled_from(OTHER_DOMAINS))
def test_transaction_signature_never_verifies_for_another_domain(message: bytes, other: Domain) -> None:
    sig = KEY.sign(Domain.TRANSACTION, message)
    assert verify_signature(Domain.TRANSACTION, KEY.public_key, message, sig)
    signed = Domain.TRANSACTION.value + message
    # The same message, the whole signed string, and the message re-cut so that
    # other tag + message' would spell the signed bytes if the tags overlapped.
    candidates = [message, signed, signed[len(other.value) :], signed[len(Domain.TRANSACTION.value) :]]
    for candidate in candidates:
        assert not verify_signature(other, KEY.public_key, candidate, sig)


@pytest.mark.parametrize("domain", list(Domain), ids=lambda d: d.name)
def test_every_domain_rejects_every_other_domains_signature(domain: Domain) -> None:
    sig = KEY.sign(domain, b"same bytes")
    for other in Domain:
        assert verify_signature(other, KEY.public_key, b"same bytes", sig) is (other is domain)


def test_labelled_keys_are_deterministic_and_distinct() -> None:
    assert PrivateKey.from_label("a").seed == PrivateKey.from_label("a").seed
    assert PrivateKey.from_label("a").address != PrivateKey.from_label("b").address
    assert KEY.address == address_from_public_key(KEY.public_key)
    assert PrivateKey(KEY.seed).public_key == KEY.public_key
    with pytest.raises(ValueError):
        PrivateKey(b"short")


# --- key files ---------------------------------------------------------------------------------


def test_key_file_is_private_and_round_trips(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "node.key"
    old = os.umask(0)  # even a permissive umask must not widen the mode
    try:
        write_key_file(path, KEY)
    finally:
        os.umask(old)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert read_key_file(path).seed == KEY.seed


def test_key_file_is_never_overwritten(tmp_path: Path) -> None:
    path = tmp_path / "node.key"
    write_key_file(path, KEY)
    before = path.read_bytes()
    with pytest.raises(KeyFileError):
        write_key_file(path, OTHER)
    assert path.read_bytes() == before
    assert read_key_file(path).seed == KEY.seed


@pytest.mark.parametrize("mode", [0o640, 0o604, 0o620, 0o602, 0o660, 0o644, 0o700 | 0o010])
def test_key_file_readable_by_others_is_refused(tmp_path: Path, mode: int) -> None:
    path = tmp_path / "node.key"
    write_key_file(path, KEY)
    path.chmod(mode)
    with pytest.raises(KeyFileError):
        read_key_file(path)
    path.chmod(0o600)
    assert read_key_file(path).seed == KEY.seed


def test_missing_or_corrupt_key_file_is_refused(tmp_path: Path) -> None:
    with pytest.raises(KeyFileError):
        read_key_file(tmp_path / "absent.key")
    bad = tmp_path / "bad.key"
    for content in ["not json", json.dumps({"kind": "other", "seed": KEY.seed.hex()}), json.dumps({})]:
        bad.unlink(missing_ok=True)
        bad.write_text(content)
        bad.chmod(0o600)
        with pytest.raises(KeyFileError):
            read_key_file(bad)


def test_key_file_whose_address_does_not_match_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "node.key"
    write_key_file(path, KEY)
    record = json.loads(path.read_text())
    other = tmp_path / "other.key"
    write_key_file(other, OTHER)
    record["address"] = json.loads(other.read_text())["address"]
    path.write_text(json.dumps(record))
    with pytest.raises(KeyFileError):
        read_key_file(path)
