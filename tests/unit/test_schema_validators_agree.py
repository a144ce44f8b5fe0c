"""The compiled fast check and the reference validator must agree on what is a valid event."""

import copy
import json

import fastjsonschema
from hypothesis import given, settings
from hypothesis import strategies as st

from connector.events import DOSSIER_EVENT_SCHEMA, _fast_check, _reshaped_for_speed, _schema, _validator
from connector.samples import generate_events

SAMPLES = [json.loads(m.value) for m in generate_events(dossiers=30, seed=3) if m.label != "malformed-json"]


def leaves(value, path=()):
    if isinstance(value, dict):
        for key, item in value.items():
            yield from leaves(item, (*path, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from leaves(item, (*path, index))
    yield path


def fast_says_valid(document) -> bool:
    try:
        _fast_check()(document)
    except fastjsonschema.JsonSchemaException:
        return False
    return True


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=30)
    | st.sampled_from(["2020-10-05T08:00:00+07:00", "citizen", "online", "processing", "", "x" * 5000]),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=5,
)


def test_they_agree_on_the_samples() -> None:
    for document in SAMPLES:
        assert fast_says_valid(document) == _validator().is_valid(document)


@settings(max_examples=400, deadline=None)
@given(st.integers(min_value=0, max_value=len(SAMPLES) - 1), st.data(), JSON_VALUES, st.booleans())
def test_they_agree_on_mutated_events(index, data, replacement, delete) -> None:
    document = copy.deepcopy(SAMPLES[index])
    paths = [p for p in leaves(document) if p]
    path = data.draw(st.sampled_from(paths))
    parent = document
    for step in path[:-1]:
        parent = parent[step]
    if delete and isinstance(parent, dict):
        del parent[path[-1]]
    else:
        parent[path[-1]] = replacement
    assert fast_says_valid(document) == _validator().is_valid(document), path


def test_reshaping_for_speed_leaves_the_published_schema_as_it_is() -> None:
    _fast_check()
    assert _schema() == json.loads(DOSSIER_EVENT_SCHEMA.read_text(encoding="utf-8"))


def test_reshaping_moves_subschemas_only_never_data() -> None:
    # A property named "items" and an enum of objects that look like schemas must come through untouched.
    schema = {
        "type": "object",
        "properties": {
            "items": {"type": "array", "items": {"type": "string", "maxLength": 3}},
            "anyOf": {"enum": [{"items": {"type": "string"}, "anyOf": [1, {"type": "null"}]}]},
            "when": {"anyOf": [{"type": "string", "pattern": "^a"}, {"type": "null"}]},
        },
        "$defs": {"items0": {"const": "taken"}},
    }
    reshaped = _reshaped_for_speed(schema)
    assert reshaped["properties"]["anyOf"] == schema["properties"]["anyOf"]
    assert reshaped["properties"]["items"]["items"] == {"$ref": "#/$defs/_items0"}
    assert reshaped["$defs"] == {"items0": {"const": "taken"}, "_items0": {"type": "string", "maxLength": 3}}
    assert reshaped["properties"]["when"]["anyOf"] == [{"type": "null"}, {"type": "string", "pattern": "^a"}]
    as_is, fast = fastjsonschema.compile(schema), fastjsonschema.compile(reshaped)
    for document in [{}, {"items": ["a", "abcd"]}, {"items": ["abc", 1]}, {"items": ["ab"], "when": None},
                     {"when": "ab"}, {"when": "ba"}, {"when": 3}, {"anyOf": {"items": {"type": "string"},
                                                                            "anyOf": [1, {"type": "null"}]}}]:
        assert verdict(as_is, document) == verdict(fast, document), document


def test_a_schema_with_a_nested_id_is_not_reshaped() -> None:
    schema = {"properties": {"a": {"$id": "urn:x:a", "type": "array", "items": {"type": "string"}}}}
    assert _reshaped_for_speed(schema) == schema


def verdict(check, document) -> bool:
    try:
        check(document)
    except fastjsonschema.JsonSchemaException:
        return False
    return True
