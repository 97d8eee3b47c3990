"""Dashboard sessions: tokens kept hashed, idle and absolute expiry, key revocation."""

from __future__ import annotations

from mlambda.dashboard.sessions import SessionStore


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_session_lives_until_idle_or_too_old_or_its_key_is_gone() -> None:
    clock = Clock()
    store = SessionStore(idle_s=60, max_s=300, clock=clock)
    token, session = store.open("k1")
    assert token not in store.sessions  # only the token's hash is kept
    alive = {"k1"}
    assert store.get(token, alive.__contains__) is session
    clock.now += 59
    assert store.get(token, alive.__contains__) is session  # activity: idle restarts
    clock.now += 59
    assert store.get(token, alive.__contains__) is session
    clock.now += 61
    assert store.get(token, alive.__contains__) is None  # idle too long
    assert store.get(token, alive.__contains__) is None  # and gone for good

    token, _ = store.open("k1")
    for _ in range(7):
        clock.now += 50
        last = store.get(token, alive.__contains__)
    assert last is None  # past 300 s after sign-in, however active

    token, _ = store.open("k1")
    alive.clear()  # the key was revoked
    assert store.get(token, alive.__contains__) is None


def test_sign_out_and_unknown_tokens() -> None:
    store = SessionStore(idle_s=60, max_s=300)
    token, _ = store.open("k1")
    assert store.get("not-a-token", lambda h: True) is None
    assert store.get(None, lambda h: True) is None
    store.close(token)
    assert store.get(token, lambda h: True) is None
