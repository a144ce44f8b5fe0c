"""The fast (Rust) check and the reference validator must agree on what is a valid event.

The product's verdict is always the reference validator's: the fast check only spares it the valid events.
So the rule that matters is that the fast check never passes an event the reference refuses; on real
events they must agree both ways, or the fast path would stop sparing anything.
"""

import copy
import json
import re

import jsonschema_rs
from hypothesis import given, settings
from hypothesis import strategies as st

from connector.dev.samples import generate_events
from connector.push.events import _fast_validator, _schema, _validator, schema_errors

SAMPLES = [json.loads(m.value) for m in generate_events(dossiers=30, seed=3) if m.label != "malformed-json"]


def leaves(value, path=()):
    if isinstance(value, dict):
        for key, item in value.items():
            yield from leaves(item, (*path, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from leaves(item, (*path, index))
    yield path


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=30)
    | st.sampled_from(["2020-10-05T08:00:00+07:00", "citizen", "online", "processing", "", "x" * 5000,
                       "1.001.00.00.H12\n", "2020-10-05T08:00:00+07:00\n"]),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=5,
)


def test_they_agree_on_the_samples() -> None:
    assert any(not _validator().is_valid(document) for document in SAMPLES)  # the samples hold bad events too
    for document in SAMPLES:
        assert _fast_validator().is_valid(document) == _validator().is_valid(document)


@settings(max_examples=400, deadline=None)
@given(st.integers(min_value=0, max_value=len(SAMPLES) - 1), st.data(), JSON_VALUES, st.booleans())
def test_the_fast_check_never_passes_what_the_reference_refuses(index, data, replacement, delete) -> None:
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
    if _fast_validator().is_valid(document):
        assert _validator().is_valid(document), path
    assert (schema_errors(document) == []) == _validator().is_valid(document), path


def test_a_code_ending_in_a_newline_is_refused_by_both() -> None:
    # Python's "$" also matches before a final newline; JSON Schema's (ECMA-262) does not, and the reference
    # reads patterns the JSON Schema way: "G12-0001\n" is no code.
    document = copy.deepcopy(next(d for d in SAMPLES if _validator().is_valid(d)))
    for field in ("procedure_code", "no", "agency_code"):
        changed = copy.deepcopy(document)
        changed["dossier"][field] += "\n"
        assert not _fast_validator().is_valid(changed)
        assert not _validator().is_valid(changed) and schema_errors(changed) != [], field


def test_a_value_the_fast_check_cannot_take_in_goes_to_the_reference() -> None:
    odd = {1: "not a JSON key"}
    errors = schema_errors(odd)
    assert sorted(e.message for e in errors) == sorted(e.message for e in _validator().iter_errors(odd))
    assert "'event_id' is a required property" in [e.message for e in errors]


_WHOLE_SCHEMA = object()


def schema_patterns(node=_WHOLE_SCHEMA):
    # A sentinel, not None: a JSON null inside the schema (an enum's null) is a node too.
    node = _schema() if node is _WHOLE_SCHEMA else node
    if isinstance(node, dict):
        if isinstance(node.get("pattern"), str):
            yield node["pattern"]
        for value in node.values():
            yield from schema_patterns(value)
    elif isinstance(node, list):
        for value in node:
            yield from schema_patterns(value)


# Where regular-expression engines differ most: control characters, Latin-1, the Unicode spaces, the
# byte-order mark, the end of the BMP and beyond it.
CODE_POINTS = [*range(0, 0x3100), 0xFEFF, 0xFFFE, 0xFFFF, 0x1F600, 0x10FFFF]
# Values some pattern of the schema admits, to put a character into.
PATTERN_EXAMPLES = ["https://a.vn/x", "1.001.00.00.H12", "G09-250101-0001", "2020-10-05T08:00:00+07:00",
                    "2e4a0c3a-1b2c-4d5e-8f90-a1b2c3d4e5f6", "abc"]


def test_no_pattern_of_the_schema_admits_a_character_the_reference_refuses() -> None:
    patterns = sorted(set(schema_patterns()))
    assert len(patterns) >= 5
    for pattern in patterns:
        fast = jsonschema_rs.validator_for({"type": "string", "pattern": pattern})
        reference = re.compile(pattern)
        for example in (e for e in PATTERN_EXAMPLES if reference.search(e)):
            for point in CODE_POINTS:
                for text in (example + chr(point), chr(point) + example, example[:4] + chr(point) + example[4:]):
                    if fast.is_valid(text):
                        assert reference.search(text), (pattern, hex(point))
