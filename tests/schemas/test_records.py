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


def test_hybrid_projects_the_text_view_by_default_and_old_records_keep_the_full_vector():
    from schemas import DEFAULT_TEXT_DIMS, BuildRecord, CellVectorSpec

    assert CellVectorSpec().text_dims == DEFAULT_TEXT_DIMS == 8
    assert CellVectorSpec(mode="paper").text_dims is None
    assert CellVectorSpec(mode="hybrid", text_dims=None).text_dims is None
    new = BuildRecord(
        reference="r", version=1, spec=CellVectorSpec(species="human"), dim=70, label_key="l",
        created="2026-11-01T00:00:00Z",
    )
    assert BuildRecord.model_validate(new.model_dump(mode="json")).spec.text_dims == 8
    old = new.model_dump(mode="json")
    del old["spec"]["text_dims"]  # written before text_dims existed: it stored the full text vector
    assert BuildRecord.model_validate(old).spec.text_dims is None
