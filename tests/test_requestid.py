"""Request ids: random version-4 UUIDs, never repeated, and a forked child draws its own."""

from __future__ import annotations

import os
import uuid

from mlambda.runtime.requestid import RequestIds


def test_ids_are_version_4_uuids_and_unique() -> None:
    ids = RequestIds()
    drawn = [ids() for _ in range(5000)]  # many reads of the pool
    assert len(set(drawn)) == len(drawn)
    for text in drawn:
        parsed = uuid.UUID(text)
        assert parsed.version == 4 and parsed.variant == uuid.RFC_4122
        assert str(parsed) == text


def test_a_forked_child_does_not_repeat_the_parents_ids() -> None:
    ids = RequestIds()
    ids()  # the pool is filled: the child must not read on from it
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(read)
        os.write(write, "\n".join(ids() for _ in range(10)).encode())
        os._exit(0)
    os.close(write)
    with os.fdopen(read) as f:
        child = set(f.read().split("\n"))
    os.waitpid(pid, 0)
    parent = {ids() for _ in range(300)}
    assert len(child) == 10 and not child & parent
