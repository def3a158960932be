import pytest
from pydantic import ValidationError

from schemas import DEFAULT_MODE, CellVectorSpec, ExpressionParams, ReferenceManifest


def test_default_spec_is_the_default_mode_with_its_expression_view():
    spec = CellVectorSpec()
    assert spec.mode == DEFAULT_MODE
    if spec.uses_expression():
        assert spec.expression == ExpressionParams()


def test_paper_mode_has_no_expression_view_and_records_are_frozen():
    spec = CellVectorSpec(mode="paper")
    assert spec.expression is None
    assert not spec.uses_expression()
    with pytest.raises(ValidationError):
        spec.mode = "hybrid"  # type: ignore[misc]
    with pytest.raises(ValidationError, match="extra"):
        CellVectorSpec(mode="paper", colour="red")  # type: ignore[call-arg]


def test_manifest_record_lookup():
    man = ReferenceManifest(name="x")
    assert man.record() is None
    assert man.record(3) is None
