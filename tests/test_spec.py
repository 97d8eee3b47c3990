"""function.toml validation: every bad file is refused with its path, field and expectation."""

from __future__ import annotations

from pathlib import Path

import pytest

from mlambda.errors import InvalidSpec
from mlambda.spec import FunctionSpec, load_spec, parse_spec

CASES = sorted((Path(__file__).parent / "data" / "specs").glob("*.toml"))


@pytest.mark.parametrize("case", CASES, ids=[c.stem for c in CASES])
def test_bad_spec_is_refused_with_a_message_naming_file_and_field(case: Path) -> None:
    text = case.read_text()
    expected = text.splitlines()[0].removeprefix("# expect: ")
    with pytest.raises(InvalidSpec) as err:
        parse_spec(text, str(case))
    assert str(case) in err.value.message
    assert expected in err.value.message, err.value.message


def test_good_spec_has_defaults() -> None:
    spec = parse_spec('name = "f"\nhandler = "app.handler"\n[batch]\nmax_batch = 8\n')
    assert isinstance(spec, FunctionSpec)
    assert spec.batch.max_batch == 8
    assert spec.batch.max_wait_ms == 0
    assert spec.event == "body"
    assert spec.max_instances >= 1
    assert spec.template_ttl_s >= spec.scaling.idle_ttl_s


def test_handler_module_must_exist_in_the_bundle(tmp_path: Path) -> None:
    (tmp_path / "function.toml").write_text('name = "f"\nhandler = "missing.handler"\n')
    with pytest.raises(InvalidSpec, match=r"module `missing` not found in the bundle"):
        load_spec(tmp_path)
    (tmp_path / "missing.py").write_text("def handler(e, c): return e\n")
    assert load_spec(tmp_path).handler == "missing.handler"


def test_bundle_without_function_toml(tmp_path: Path) -> None:
    with pytest.raises(InvalidSpec, match=r"missing; a function bundle needs a function\.toml"):
        load_spec(tmp_path)


def test_shipped_bundles_are_valid() -> None:
    root = Path(__file__).parent.parent
    bundles = [*root.glob("functions/*/function.toml"), *root.glob("tests/functions/*/*.toml")]
    for toml in (b for b in bundles if b.name == "function.toml"):
        assert load_spec(toml.parent).name
