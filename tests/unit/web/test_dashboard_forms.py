"""The start form built from a workflow's input schema, and submissions read back as inputs."""

from __future__ import annotations

import pytest

from agent33.errors import ValidationFailed
from web.dashboard import forms
from web.dashboard.dag import StepShape, layers, layout

pytestmark = pytest.mark.dashboard

SCHEMA = {
    "type": "object",
    "properties": {
        "release": {"type": "string", "default": "v1.0", "description": "Tag"},
        "count": {"type": "integer"},
        "ratio": {"type": "number"},
        "dry": {"type": "boolean", "default": True},
        "mode": {"enum": ["fast", "safe"]},
        "extra": {"type": "object"},
    },
    "required": ["count"],
}


def test_fields_follow_the_schema() -> None:
    fields = {f.name: f for f in forms.fields_for(SCHEMA)}
    assert [f.kind for f in fields.values()] == [
        "string",
        "integer",
        "number",
        "boolean",
        "enum",
        "json",
    ]
    assert fields["release"].default == "v1.0" and fields["release"].description == "Tag"
    assert fields["count"].required and not fields["ratio"].required
    assert fields["mode"].choices == ("fast", "safe")
    assert fields["count"].key == "inputs.count"


def test_a_schema_without_properties_gets_one_json_box() -> None:
    (only,) = forms.fields_for({"type": "object"})
    assert (only.name, only.kind, only.key) == ("inputs", "json", "inputs")
    assert forms.read([only], {"inputs": '{"a": [1, 2]}'}) == {"a": [1, 2]}
    with pytest.raises(ValidationFailed) as refused:
        forms.read([only], {"inputs": "[1]"})
    assert refused.value.fields == {"inputs": ["'[1]' is not of type 'object'"]}


def test_submissions_are_typed_and_empty_ones_left_out() -> None:
    fields = forms.fields_for(SCHEMA)
    form = {"release": "", "count": " 3 ", "ratio": "0.5", "mode": "safe", "extra": '{"k": 1}'}
    assert forms.read(fields, form) == {
        "count": 3,
        "ratio": 0.5,
        "dry": False,
        "mode": "safe",
        "extra": {"k": 1},
    }


@pytest.mark.parametrize(
    ("name", "raw", "message"),
    [
        ("count", "many", "'many' is not of type 'integer'"),
        ("ratio", "nan", "'nan' is not a finite number"),
        ("count", "9" * 40, "out of range"),
        ("extra", "{" * 100 + "}" * 100, "nested deeper than 64"),
        ("extra", "{oops", "not valid JSON"),
    ],
)
def test_bad_values_name_their_field(name: str, raw: str, message: str) -> None:
    with pytest.raises(ValidationFailed) as refused:
        forms.read(forms.fields_for(SCHEMA), {name: raw})
    (key,) = refused.value.fields
    assert key == f"inputs.{name}"
    assert message in refused.value.fields[key][0]


def test_api_errors_land_on_their_controls() -> None:
    fields = forms.fields_for(SCHEMA)
    placed = forms.errors_by_field(
        fields,
        {
            "inputs": ["'count' is a required property", "something else"],
            "inputs.extra.k": ["bad"],
        },
    )
    assert placed == {
        "count": ["'count' is a required property"],
        "inputs": ["something else"],
        "extra": ["bad"],
    }


def test_dag_layers_put_each_step_after_its_deepest_dependency() -> None:
    steps = [
        StepShape("a", "transform", ()),
        StepShape("b", "transform", ("a",)),
        StepShape("c", "transform", ("a",)),
        StepShape("d", "transform", ("b", "c", "a")),
        StepShape("e", "transform", ("ghost",)),
    ]
    assert layers(steps) == {"a": 0, "b": 1, "c": 1, "d": 2, "e": 0}
    drawn = layout(steps)
    nodes = {node.step_id: node for node in drawn.nodes}
    assert nodes["b"].x == nodes["c"].x > nodes["a"].x and nodes["b"].y < nodes["c"].y
    assert {(e.source, e.target) for e in drawn.edges} == {
        ("a", "b"),
        ("a", "c"),
        ("b", "d"),
        ("c", "d"),
        ("a", "d"),
    }
    assert drawn.width >= nodes["d"].x + drawn.node_w
    assert drawn.height >= nodes["c"].y + drawn.node_h
