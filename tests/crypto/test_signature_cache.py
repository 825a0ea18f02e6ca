"""A node's signature cache (each signature verified once per node, never a forgery taken
for a signature it has seen) and signatures checked on all cores (``verify_many``)."""

from __future__ import annotations

import pytest

from gridnet.crypto.keys import (
    Domain,
    PrivateKey,
    SignatureCache,
    verification_limit,
    verify_many,
    verify_signature,
)
from gridnet.crypto.ops import snapshot

KEY = PrivateKey.from_label("cache-test")
OTHER = PrivateKey.from_label("cache-test-other")
MSG = b"pay 5 GNC to the line owner"
SIG = KEY.sign(Domain.TRANSACTION, MSG)


def flipped(sig: bytes, at: int = 10) -> bytes:
    return sig[:at] + bytes([sig[at] ^ 1]) + sig[at + 1 :]


def test_a_signature_is_verified_once_then_answered_from_the_cache() -> None:
    cache = SignatureCache()
    before = snapshot()
    with cache.active():
        assert verify_signature(Domain.TRANSACTION, KEY.public_key, MSG, SIG)
        assert verify_signature(Domain.TRANSACTION, KEY.public_key, MSG, SIG)
        assert verify_signature(Domain.TRANSACTION, KEY.public_key, MSG, SIG)
    ops = snapshot().since(before)
    assert (ops.verifies, ops.verifies_cached) == (1, 2)
    assert len(cache) == 1


def test_nothing_but_the_very_check_the_cache_saw_is_answered_by_it() -> None:
    cache = SignatureCache()
    with cache.active():
        assert verify_signature(Domain.TRANSACTION, KEY.public_key, MSG, SIG)
        # Each part changed is a different check, verified (and refused) for real.
        assert not verify_signature(Domain.TRANSACTION, KEY.public_key, MSG, flipped(SIG))
        assert not verify_signature(Domain.TRANSACTION, KEY.public_key, MSG + b"0", SIG)
        assert not verify_signature(Domain.TRANSACTION, OTHER.public_key, MSG, SIG)
        assert not verify_signature(Domain.READING, KEY.public_key, MSG, SIG)
        assert not verify_signature(Domain.TRANSACTION, KEY.public_key, MSG, SIG[:63])
    assert len(cache) == 1


def test_a_failed_check_is_not_remembered() -> None:
    cache = SignatureCache()
    bad = flipped(SIG)
    before = snapshot()
    with cache.active():
        assert not verify_signature(Domain.TRANSACTION, KEY.public_key, MSG, bad)
        assert not verify_signature(Domain.TRANSACTION, KEY.public_key, MSG, bad)
    ops = snapshot().since(before)
    assert (ops.verifies, ops.verifies_cached) == (2, 0)
    assert len(cache) == 0


def test_each_holder_verifies_for_itself() -> None:
    """Two nodes in one process (a simulation) each check a signature themselves: one's
    cache is not the other's, and outside both nothing is cached."""
    a, b = SignatureCache(), SignatureCache()
    before = snapshot()
    with a.active():
        verify_signature(Domain.TRANSACTION, KEY.public_key, MSG, SIG)
        with b.active():
            verify_signature(Domain.TRANSACTION, KEY.public_key, MSG, SIG)
        verify_signature(Domain.TRANSACTION, KEY.public_key, MSG, SIG)  # a's again: cached
    verify_signature(Domain.TRANSACTION, KEY.public_key, MSG, SIG)  # no cache: verified
    ops = snapshot().since(before)
    assert (ops.verifies, ops.verifies_cached) == (3, 1)


def test_the_cache_keeps_at_most_its_capacity_dropping_the_oldest() -> None:
    cache = SignatureCache(capacity=2)
    msgs = [b"m0", b"m1", b"m2"]
    sigs = [KEY.sign(Domain.TRANSACTION, m) for m in msgs]
    with cache.active():
        for m, s in zip(msgs, sigs, strict=True):
            assert verify_signature(Domain.TRANSACTION, KEY.public_key, m, s)
        assert len(cache) == 2
        before = snapshot()
        assert verify_signature(Domain.TRANSACTION, KEY.public_key, msgs[2], sigs[2])  # newest: kept
        assert verify_signature(Domain.TRANSACTION, KEY.public_key, msgs[0], sigs[0])  # oldest: gone
    ops = snapshot().since(before)
    assert (ops.verifies, ops.verifies_cached) == (1, 1)
    with pytest.raises(ValueError):
        SignatureCache(capacity=0)


def batch() -> list[tuple[Domain, bytes, bytes, bytes]]:
    """Valid and invalid checks mixed: every fifth signature forged, every seventh key cut."""
    checks = []
    for i in range(200):
        msg = f"reading {i}".encode()
        sig = KEY.sign(Domain.READING, msg)
        if i % 5 == 0:
            sig = flipped(sig, i % 64)
        key = KEY.public_key[:31] if i % 7 == 0 else KEY.public_key
        checks.append((Domain.READING, key, msg, sig))
    return checks


@pytest.mark.parametrize("cores", [1, 2, 4])
def test_a_batch_on_all_cores_has_the_verdicts_of_one_by_one_checks(cores: int) -> None:
    checks = batch()
    expected = [verify_signature(*c) for c in checks]
    assert expected.count(True) == sum(1 for i in range(200) if i % 5 and i % 7)
    with verification_limit(cores):
        assert verify_many(checks) == expected
    assert verify_many([]) == []


def test_a_batch_uses_and_fills_the_current_cache_with_its_successes_only() -> None:
    checks = batch()
    valid = sum(1 for i in range(200) if i % 5 and i % 7)
    malformed = sum(1 for i in range(200) if i % 7 == 0)
    cache = SignatureCache()
    with cache.active(), verification_limit(2):
        before = snapshot()
        first = verify_many(checks)
        again = verify_many(checks)
    assert first == again
    assert len(cache) == valid
    ops = snapshot().since(before)
    assert ops.verifies_cached == valid  # the second pass: every success from the cache
    assert ops.verifies == 2 * (200 - malformed) - valid  # failures checked again (malformed: never)


def test_verification_needs_a_core() -> None:
    with pytest.raises(ValueError), verification_limit(0):
        pass
