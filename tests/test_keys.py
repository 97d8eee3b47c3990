"""The key ring: which secret may be used when, and why not."""

from __future__ import annotations

import pytest

from mlambda.errors import Forbidden
from mlambda.keys import DISABLED, REVOKED, ApiKey, KeyRing, hash_secret

NOW = 1_800_000_000.0


def ring(**fields: object) -> KeyRing:
    return KeyRing([ApiKey("k_1", "app", "invoke", hash_secret("new"), **fields)])  # type: ignore[arg-type]


def test_the_secret_finds_its_key_and_others_are_invalid() -> None:
    assert ring().check(b"new", NOW).key_id == "k_1"
    with pytest.raises(Forbidden, match=r"^invalid API key$"):
        ring().check(b"other", NOW)


@pytest.mark.parametrize(("fields", "reason"), [
    ({"state": DISABLED}, "API key app is disabled"),
    ({"state": REVOKED}, "API key app is revoked"),
    ({"expires_at": NOW}, "API key app expired at 2027-01-15T08:00:00Z"),
])
def test_a_key_that_may_not_be_used_says_why(fields: dict[str, object], reason: str) -> None:
    with pytest.raises(Forbidden, match=f"^{reason}$"):
        ring(**fields).check(b"new", NOW)


def test_the_previous_secret_works_until_the_grace_period_ends() -> None:
    keys = ring(old_hash=hash_secret("old"), old_until=NOW + 60)
    assert keys.check(b"old", NOW + 59).key_id == "k_1"
    assert keys.check(b"new", NOW + 61).key_id == "k_1"
    with pytest.raises(Forbidden, match="was rotated"):
        keys.check(b"old", NOW + 60)


def test_replace_swaps_the_ring_whole() -> None:
    keys = ring()
    keys.replace([ApiKey("k_1", "app", "invoke", hash_secret("new"), state=DISABLED)])
    with pytest.raises(Forbidden, match="disabled"):
        keys.check(b"new", NOW)


def test_roles_grant_actions() -> None:
    admin, invoke, metrics = (ApiKey("k", "n", role, "h") for role in ("admin", "invoke",
                                                                         "metrics"))
    assert admin.may("admin") and admin.may("invoke") and admin.may("metrics")
    assert invoke.may("invoke") and not invoke.may("admin") and not invoke.may("metrics")
    assert metrics.may("metrics") and not metrics.may("invoke") and not metrics.may("admin")
