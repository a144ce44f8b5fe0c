"""The shared readers of untrusted bytes (``connector.untrusted``): any byte string either parses into a value
of usable text or raises the module's refusal types, never anything else; a body in many small chunks is
read whole up to its limit."""

from __future__ import annotations

import asyncio
import contextlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from connector.untrusted import (
    BodyTooLarge,
    UnreadableJson,
    UnsafeText,
    bearer_matches,
    check_text,
    parse_json,
    read_body,
)

HOSTILE_JSON = {
    "lone surrogate": (b'{"a": "\\ud800"}', UnsafeText, "a"),
    "lone low surrogate in a list": (b'{"a": ["ok", "\\udfff"]}', UnsafeText, "a[1]"),
    "NUL": (b'{"code": "A\\u0000B"}', UnsafeText, "code"),
    "C0 control": (b'{"x": {"y": "\\u001b[31m"}}', UnsafeText, "x.y"),
    "control in a key": (b'{"a\\u0001": 1}', UnsafeText, "(document)"),
    "overlong UTF-8": (b'{"a": "\xc0\xaf"}', UnreadableJson, "malformed_json"),
    "invalid UTF-8": (b'{"a": "\xff\xfe"}', UnreadableJson, "malformed_json"),
    "byte-order mark": (b'\xef\xbb\xbf{"a": 1}', UnreadableJson, "malformed_json"),
    "duplicate keys": (b'{"MaThamChieu": "A", "MaThamChieu": "B"}', UnreadableJson, "duplicate_key"),
    "NaN": (b'{"SoTien": NaN}', UnreadableJson, "malformed_json"),
    "Infinity": (b'{"SoTien": -Infinity}', UnreadableJson, "malformed_json"),
    "1e400": (b'{"SoTien": 1e400}', UnreadableJson, "number_out_of_range"),
    "a 5,000-digit integer": (b'{"n": ' + b"9" * 5000 + b"}", UnreadableJson, "number_out_of_range"),
    "depth 10,000": (b"[" * 10_000 + b"]" * 10_000, UnreadableJson, "too_deep"),
    "depth 100": (b"[" * 100 + b"]" * 100, UnsafeText, "[0]" * 64),
    "empty": (b"", UnreadableJson, "malformed_json"),
    "two values": (b"{} {}", UnreadableJson, "malformed_json"),
}


@pytest.mark.parametrize("name", sorted(HOSTILE_JSON))
def test_a_hostile_json_body_is_one_clear_refusal(name: str) -> None:
    raw, refusal, detail = HOSTILE_JSON[name]
    with pytest.raises(refusal) as caught:
        parse_json(raw)
    if isinstance(caught.value, UnreadableJson):
        assert caught.value.reason == detail
    else:
        assert caught.value.field == detail


def test_usable_text_passes_tab_newline_carriage_return_minus_zero_and_vietnamese() -> None:
    assert parse_json('{"a": "Hồ sơ\\t1\\r\\n", "b": -0, "c": 1.5}'.encode()) == {
        "a": "Hồ sơ\t1\r\n", "b": 0, "c": 1.5}


@given(st.binary(max_size=300))
@settings(max_examples=400, deadline=None)
def test_any_bytes_parse_or_raise_one_of_the_refusals(raw: bytes) -> None:
    try:
        value = parse_json(raw)
    except (UnreadableJson, UnsafeText):
        return
    check_text(value)  # what parses is usable text throughout


@given(st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False)
                    | st.text(), lambda inner: st.lists(inner) | st.dictionaries(st.text(), inner), max_leaves=20))
@settings(max_examples=300, deadline=None)
def test_any_json_text_parses_or_raises_one_of_the_refusals(value: object) -> None:
    import json

    raw = json.dumps(value, ensure_ascii=False).encode("utf-8", errors="surrogatepass")
    with contextlib.suppress(UnreadableJson, UnsafeText):
        parse_json(raw)


class _Trickle:
    """A body delivered ``size`` bytes at a time, as a slow network does."""

    def __init__(self, body: bytes, size: int) -> None:
        self._body, self._size = body, size

    async def read(self, n: int = -1) -> bytes:
        await asyncio.sleep(0)
        take = min(self._size, n if n >= 0 else self._size)
        chunk, self._body = self._body[:take], self._body[take:]
        return chunk


async def test_a_body_in_one_byte_chunks_is_read_whole() -> None:
    body = b'{"a": "' + b"x" * 5000 + b'"}'
    assert await read_body(_Trickle(body, 1), len(body)) == body


async def test_a_body_one_byte_over_the_limit_is_too_large_however_it_arrives() -> None:
    body = b"x" * 1001
    for size in (1, 7, 4096):
        with pytest.raises(BodyTooLarge):
            await read_body(_Trickle(body, size), 1000)


@pytest.mark.parametrize("header", ["Bearer wrong", "Basic c2VjcmV0", "Bearer s\udcffcret", "Bearer secret\r\nX: 1",
                                    "bearer", ""])
def test_the_bearer_check_refuses_anything_but_the_token(header: str) -> None:
    assert not bearer_matches({"Authorization": header}, "secret")


def test_the_bearer_check_takes_the_token() -> None:
    assert bearer_matches({"Authorization": "Bearer secret"}, "secret")
    assert bearer_matches({"Authorization": "bearer  secret "}, "secret")
