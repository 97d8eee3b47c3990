"""`mlambda up` picks its engine from --engine / MLAMBDA_ENGINE; a wrong one is refused
with a message that names the setting and what it accepts."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.conftest import TEST_SEED, free_port


def test_unknown_engine_is_refused_naming_the_choices(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "mlambda.cli", "up", "--port", str(free_port()), "--data",
         str(tmp_path / "data"), "--seed", str(TEST_SEED), "--engine", "kubernetes"],
        capture_output=True, text=True, timeout=60)
    assert done.returncode == 2, done.stderr
    assert "engine: expected 'local' or 'ray', got 'kubernetes'" in done.stderr
    assert "Traceback" not in done.stderr
