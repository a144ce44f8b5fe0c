import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from connector.contracts import parse_record_json
from connector.dev.samples import generate_events
from connector.push.events import InvalidEvent, decode_event, event_from_document
from tests.factories import encode, event_dict, step_dict

MAX = 1_048_576


def test_a_valid_event_decodes_to_typed_values() -> None:
    key, value = encode(event_dict(version=7))
    event = decode_event(key, value, max_bytes=MAX)
    assert event.dossier.version == 7
    assert event.dossier.received_at.utcoffset() is not None
    assert event.dossier.applicant.type == "citizen"


def test_unknown_extra_fields_are_ignored() -> None:
    data = event_dict()
    data["trace_id"] = "abc"
    data["dossier"]["future_field"] = {"x": 1}
    key, value = encode(data)
    assert decode_event(key, value, max_bytes=MAX).dossier.no == data["dossier"]["no"]


@pytest.mark.parametrize(
    ("mutate", "field", "reason"),
    [
        (lambda d: d["dossier"].pop("agency_code"), "dossier", "schema"),
        (lambda d: d.update(event_type="dossier.deleted"), "event_type", "schema"),
        (lambda d: d["dossier"].update(version=0), "dossier.version", "schema"),
        (lambda d: d["dossier"].update(received_at="2020-10-05 08:30"), "dossier.received_at", "schema"),
        (lambda d: d["dossier"].update(received_at="2020-10-05T08:30:00"), "dossier.received_at", "schema"),
        (lambda d: d["dossier"]["applicant"].update(type="robot"), "dossier.applicant.type", "schema"),
        (lambda d: d.update(event_type="dossier.step"), "(event)", "schema"),
        (lambda d: d.update(schema_version=2), "schema_version", "unsupported_schema_version"),
    ],
)
def test_schema_violations_name_the_field_and_the_rule(mutate, field, reason) -> None:
    data = event_dict()
    mutate(data)
    key, value = encode(data)
    with pytest.raises(InvalidEvent) as caught:
        decode_event(key, value, max_bytes=MAX)
    assert caught.value.reason == reason
    assert caught.value.field == field
    assert caught.value.kind == "invalid_input"


def test_a_missing_required_field_is_named() -> None:
    data = event_dict()
    del data["dossier"]["agency_code"]
    key, value = encode(data)
    with pytest.raises(InvalidEvent, match="agency_code"):
        decode_event(key, value, max_bytes=MAX)


def test_a_step_event_needs_its_step() -> None:
    data = event_dict(event_type="dossier.step", status="processing")
    data["step"] = step_dict()
    key, value = encode(data)
    assert decode_event(key, value, max_bytes=MAX).step is not None


@pytest.mark.parametrize("value", [b"{not json", b"\xff\xfe", b"[]", b"null", b'"text"'])
def test_garbage_is_invalid_not_a_crash(value: bytes) -> None:
    with pytest.raises(InvalidEvent):
        decode_event(b"k", value, max_bytes=MAX)


def test_a_tombstone_is_invalid() -> None:
    with pytest.raises(InvalidEvent) as caught:
        decode_event(b"k", None, max_bytes=MAX)
    assert caught.value.reason == "empty_value"


def test_oversized_records_are_refused_before_parsing() -> None:
    key, value = encode(event_dict())
    with pytest.raises(InvalidEvent) as caught:
        decode_event(key, value, max_bytes=len(value) - 1)
    assert caught.value.reason == "too_large"


def test_the_key_must_be_the_dossier_number() -> None:
    _, value = encode(event_dict())
    with pytest.raises(InvalidEvent) as caught:
        decode_event(b"another-dossier", value, max_bytes=MAX)
    assert caught.value.reason == "key_mismatch"


def test_error_messages_do_not_quote_personal_values() -> None:
    data = event_dict()
    data["dossier"]["applicant"]["phone"] = 912345678  # wrong type; the value must not be echoed
    key, value = encode(data)
    with pytest.raises(InvalidEvent) as caught:
        decode_event(key, value, max_bytes=MAX)
    assert "912345678" not in str(caught.value)
    assert json.dumps(caught.value.field) == '"dossier.applicant.phone"'


def test_an_impossible_date_is_invalid_not_a_crash() -> None:
    key, value = encode(event_dict(due_at="2020-13-45T08:00:00+07:00"))
    with pytest.raises(InvalidEvent) as caught:
        decode_event(key, value, max_bytes=MAX)
    assert caught.value.field == "dossier.due_at"


@pytest.mark.parametrize(("where", "field"), [("occurred_at", "occurred_at"), ("dossier", "dossier.received_at"),
                                              ("step", "step.at")])
def test_a_day_the_calendar_lacks_is_named_wherever_it_is(where: str, field: str) -> None:
    data = event_dict(event_type="dossier.step")
    data["step"] = step_dict()
    bad = "2021-02-29T08:00:00+07:00"
    if where == "occurred_at":
        data["occurred_at"] = bad
    elif where == "dossier":
        data["dossier"]["received_at"] = bad
    else:
        data["step"]["at"] = bad
    with pytest.raises(InvalidEvent) as caught:
        decode_event(*encode(data), max_bytes=MAX)
    assert (caught.value.reason, caught.value.field) == ("schema", field)
    assert "not a real date" in caught.value.message


@pytest.mark.parametrize("offset", ["+07:60", "+24:00", "-00:99"])
def test_an_offset_that_is_not_a_real_one_is_refused(offset: str) -> None:
    with pytest.raises(InvalidEvent) as caught:
        decode_event(*encode(event_dict(received_at=f"2020-10-05T08:30:00{offset}")), max_bytes=MAX)
    assert caught.value.field == "dossier.received_at"


def test_rfc3339_lower_case_separators_and_long_fractions_read_as_the_same_instant() -> None:
    upper = decode_event(*encode(event_dict(received_at="2020-10-05T08:30:00.123456789Z")), max_bytes=MAX)
    lower = decode_event(*encode(event_dict(received_at="2020-10-05t08:30:00.123456789z")), max_bytes=MAX)
    assert upper.dossier.received_at == lower.dossier.received_at
    assert upper.dossier.received_at.isoformat() == "2020-10-05T08:30:00.123456+00:00"


def test_absurdly_nested_json_is_invalid_not_a_crash() -> None:
    value = b'{"x":' + b"[" * 100_000 + b"]" * 100_000 + b"}"
    with pytest.raises(InvalidEvent) as caught:
        decode_event(b"k", value, max_bytes=MAX)
    assert caught.value.reason == "malformed_json"


# ---- the JSON reader is json.loads, only faster ---------------------------------------------------------

JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.integers(min_value=10**19, max_value=10**400)
    | st.floats() | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=20,
)


def utf8_json(raw: bytes):
    """json.loads's reading of UTF-8 text (of bytes alone it would also take UTF-16 and UTF-32)."""
    return json.loads(raw.decode("utf-8"))


def outcome(read, raw: bytes) -> str:
    """What reading ``raw`` gives, exactly: the value with its types (1 is not 1.0), or the error."""
    try:
        return json.dumps(read(raw), ensure_ascii=True)
    except Exception as exc:  # the very error is what is compared
        return f"{type(exc).__name__}: {exc}"


@given(JSON_VALUES, st.booleans())
def test_the_json_reader_reads_what_json_loads_reads_of_utf8(value, ascii_only) -> None:
    raw = json.dumps(value, ensure_ascii=ascii_only).encode("utf-8", "surrogatepass")
    assert outcome(parse_record_json, raw) == outcome(utf8_json, raw)


@given(JSON_VALUES, st.data())
def test_the_json_reader_fails_like_json_loads_on_damaged_json(value, data) -> None:
    raw = json.dumps(value, ensure_ascii=False).encode("utf-8", "surrogatepass")
    at = data.draw(st.integers(min_value=0, max_value=len(raw)))
    junk = data.draw(st.sampled_from([b"", b",", b":", b"{", b"]", b'"', b"\\", b" ", b"0", b"-", b"e", b".",
                                      b"\x00", b"\x1f", b"\xff", b"\xed\xa0\x80", b"NaN", b"x"]))
    cut = data.draw(st.integers(min_value=0, max_value=2))
    damaged = raw[:at] + junk + raw[at + cut:]
    assert outcome(parse_record_json, damaged) == outcome(utf8_json, damaged)


@given(st.binary(max_size=40))
def test_the_json_reader_fails_like_json_loads_on_any_bytes(raw) -> None:
    assert outcome(parse_record_json, raw) == outcome(utf8_json, raw)


@pytest.mark.parametrize("raw", [
    b'"\\ud800"', b'{"\\udc00": 1}', b'"\xed\xa0\x80"', b"\xef\xbb\xbf{}", '{"a": "é"}'.encode("utf-16"),
    '{"a": 1}'.encode("utf-32"), b"[" * 300 + b"]" * 300, b"NaN", b"-Infinity", b"1e400", b"1" * 4000,
    b"1" * 5000, b'{"a": 1, "a": 2}', b"{} {}", b'"\t"', b"\x0c{}", b"01", b"",
])
def test_the_json_reader_agrees_with_json_loads_where_parsers_differ(raw: bytes) -> None:
    assert outcome(parse_record_json, raw) == outcome(utf8_json, raw)


def test_a_decoded_event_is_the_one_json_loads_would_give() -> None:
    for message in generate_events(dossiers=20, seed=5):
        if message.label == "valid":
            event = decode_event(message.key, message.value, max_bytes=MAX)
            assert event == event_from_document(json.loads(message.value))


@pytest.mark.parametrize("value", [b"{not json", b"\xff\xfe", b'{"a": "\xff"}', b'{"a": 1} x'])
def test_malformed_json_is_reported_as_json_loads_words_it(value: bytes) -> None:
    try:
        utf8_json(value)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        where = getattr(exc, "pos", getattr(exc, "start", "?"))
        expected = f"not valid UTF-8 JSON ({exc.__class__.__name__} at position {where})"
    with pytest.raises(InvalidEvent) as caught:
        decode_event(b"k", value, max_bytes=MAX)
    assert caught.value.message == expected
    assert caught.value.reason == "malformed_json"
