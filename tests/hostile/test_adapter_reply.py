"""Hostile DVCQG adapter replies: ``classify_reply`` fed a table, any bytes at all, and the real client
against a loopback adapter that writes its replies in one-byte chunks. Each reply ends as a typed
``SyncError``, or as success only when it truly is one: a JSON object whose ``error_code`` is the integer 0
or the text "0" / "00", under a 2xx; or, under ``Content-Type: text/plain``, the whole body the phrase
"thành công". A refusal that quotes the body keeps at most 200 characters of it and is marked
``quotes_remote_text`` (failure table and DLQ headers, never a log line)."""

from __future__ import annotations

import asyncio
import json
import unicodedata
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from connector.errors import SyncError
from connector.portal.errors import (
    MAX_REPLY_BYTES,
    AlreadyExists,
    PortalRejected,
    PortalUnavailable,
    SessionExpired,
    classify_reply,
)
from connector.untrusted import UnreadableJson, UnsafeText, parse_json
from tests.hostile.fake_adapter import STEP_SECONDS, FakeAdapter, Reply, adapter, json_reply

JSON = {"Content-Type": "application/json"}
TEXT = {"Content-Type": "text/plain; charset=utf-8"}
HTML = {"Content-Type": "text/html"}
EXPIRED = ("-2",)

OK = None  # success
MALFORMED = (PortalUnavailable, "malformed_reply")
BAD_CODE = (PortalRejected, "bad_error_code")
REFUSED = (PortalRejected, "portal_rejected")


def code(raw: str) -> bytes:
    return b'{"error_code": ' + raw.encode() + b', "message": "m"}'


HTML_PAGE = ("<html><head><title>502</title></head><body><h1>Cập nhật thành công?</h1>" + "x" * 5000
             + "</body></html>").encode()

# name → (status, headers, body, None for success or (error class, reason))
REPLIES: dict[str, tuple[int, dict[str, str], bytes, tuple[type[SyncError], str] | None]] = {
    # what success truly is
    "integer 0": (200, JSON, code("0"), OK),
    "text 0": (200, JSON, code('"0"'), OK),
    "text 00": (200, JSON, code('"00"'), OK),
    "text 0 padded with spaces": (200, JSON, code('" 0 "'), OK),
    "text 00 ending in CRLF": (200, JSON, code('"00\\r\\n"'), OK),
    "integer -0 (the integer zero)": (200, JSON, code("-0"), OK),
    "201 with code 0": (201, JSON, code("0"), OK),
    "JSON labelled text/html": (200, HTML, code("0"), OK),
    "the phrase as plain text": (200, TEXT, "Thành công".encode(), OK),
    "the phrase, capitals, CRLF": (200, TEXT, " THÀNH CÔNG\r\n".encode(), OK),
    "the phrase decomposed (NFD)": (200, TEXT, unicodedata.normalize("NFD", "thành công").encode(), OK),
    # numbers that only read as zero
    "float 0.0": (200, JSON, code("0.0"), BAD_CODE),
    "float -0.0": (200, JSON, code("-0.0"), BAD_CODE),
    "1e-400 (underflows to 0)": (200, JSON, code("1e-400"), BAD_CODE),
    "0e0": (200, JSON, code("0e0"), BAD_CODE),
    "1e400 (overflows a float)": (200, JSON, code("1e400"), MALFORMED),
    "NaN": (200, JSON, code("NaN"), MALFORMED),
    "-Infinity": (200, JSON, code("-Infinity"), MALFORMED),
    "a 5,000-digit integer": (200, JSON, code("9" * 5000), MALFORMED),
    "a 40-digit integer": (200, JSON, code("1" + "0" * 39), BAD_CODE),
    # wrong types
    "false": (200, JSON, code("false"), BAD_CODE),
    "true": (200, JSON, code("true"), BAD_CODE),
    "null": (200, JSON, code("null"), BAD_CODE),
    "a list [0]": (200, JSON, code("[0]"), BAD_CODE),
    "an object": (200, JSON, code('{"v": 0}'), BAD_CODE),
    "empty text": (200, JSON, code('""'), BAD_CODE),
    "text of 100 characters": (200, JSON, code('"' + "0" * 100 + '"'), BAD_CODE),
    "a message that is a list": (200, JSON, b'{"error_code": -1, "message": ["a", 1]}', REFUSED),
    "top level a list": (200, JSON, b"[0]", MALFORMED),
    "top level a number": (200, JSON, b"0", MALFORMED),
    "top level a string": (200, JSON, b'"0"', MALFORMED),
    "no error_code": (200, JSON, '{"message": "thành công"}'.encode(), MALFORMED),
    "empty body": (200, JSON, b"", MALFORMED),
    # numbers as strings, and what they mean
    "text 0.0": (200, JSON, code('"0.0"'), REFUSED),
    "text -0": (200, JSON, code('"-0"'), REFUSED),
    "text 0 after a no-break space": (200, JSON, code('"\\u00a00"'), REFUSED),
    "text -1": (200, JSON, code('"-1"'), REFUSED),
    "integer -1": (200, JSON, code("-1"), REFUSED),
    "text -2 (expired)": (200, JSON, code('"-2"'), (SessionExpired, "session_expired")),
    "text 3, already exists": (200, JSON, '{"error_code": "3", "message": "Hồ sơ đã tồn tại"}'.encode(),
                               (AlreadyExists, "already_exists")),
    # strictness of the JSON itself
    "duplicate error_code, 0 first": (200, JSON, b'{"error_code": 0, "error_code": 5}', MALFORMED),
    "duplicate error_code, 0 last": (200, JSON, b'{"error_code": 5, "error_code": 0}', MALFORMED),
    "lone surrogate in the message": (200, JSON, b'{"error_code": 0, "message": "\\ud800"}', MALFORMED),
    "lone surrogate in a key": (200, JSON, b'{"error_code": 0, "\\udfff": 1}', MALFORMED),
    "NUL in the result": (200, JSON, b'{"error_code": 0, "result": "a\\u0000b"}', MALFORMED),
    "raw NUL byte": (200, JSON, b'{"error_code": 0, "m": "\x00"}', MALFORMED),
    "overlong UTF-8": (200, JSON, b'{"error_code": 0, "message": "\xc0\xaf"}', MALFORMED),
    "invalid UTF-8": (200, JSON, b'{"error_code": 0, "message": "\xff\xfe"}', MALFORMED),
    "UTF-16": (200, JSON, '{"error_code": 0}'.encode("utf-16"), MALFORMED),
    "byte-order mark": (200, JSON, b'\xef\xbb\xbf{"error_code": 0}', MALFORMED),
    "depth 10,000": (200, JSON, b'{"error_code": 0, "r": ' + b"[" * 10_000 + b"]" * 10_000 + b"}", MALFORMED),
    "depth 100": (200, JSON, b'{"error_code": 0, "r": ' + b"[" * 100 + b"]" * 100 + b"}", MALFORMED),
    "two JSON values": (200, JSON, b'{"error_code": 0} {"error_code": 0}', MALFORMED),
    "10 MB": (200, JSON, b'{"error_code": 0, "r": "' + b"x" * 10_000_000 + b'"}',
              (PortalUnavailable, "reply_too_large")),
    # the success phrase where it does not mean success
    "HTML error page under 200 saying thành công": (200, HTML, HTML_PAGE, MALFORMED),
    "the phrase inside longer text": (200, TEXT, "Đồng bộ hồ sơ thành công".encode(), MALFORMED),
    "the phrase negated": (200, TEXT, "Không thành công".encode(), MALFORMED),
    "the phrase, no Content-Type": (200, {}, "thành công".encode(), MALFORMED),
    "the phrase as text/html": (200, HTML, "thành công".encode(), MALFORMED),
    "the phrase as a JSON string": (200, JSON, '"thành công"'.encode(), MALFORMED),
    "the phrase as a JSON string under text/plain": (200, TEXT, '"thành công"'.encode(), MALFORMED),
    "the phrase in Latin-1": (200, TEXT, "thành công".encode("latin-1", errors="replace") + b"\xe0", MALFORMED),
    "the phrase with a BOM": (200, TEXT, "\ufeffthành công".encode(), MALFORMED),
    "the phrase with a NUL": (200, TEXT, "thành công\x00".encode(), MALFORMED),
    "the phrase under 404": (404, TEXT, "thành công".encode(), (PortalRejected, "http_404")),
    # HTTP statuses
    "code 0 under 404": (404, JSON, code("0"), (PortalRejected, "http_404")),
    "code 0 under 302": (302, JSON, code("0"), (PortalRejected, "http_302")),
    "HTML 404 page": (404, HTML, b"<html>Not Found</html>", (PortalRejected, "http_404")),
    "code -1 under 400": (400, JSON, code("-1"), REFUSED),
    "401 with code 0": (401, JSON, code("0"), (SessionExpired, "session_expired")),
    "503 with code 0": (503, JSON, code("0"), (PortalUnavailable, "http_503")),
    "429": (429, JSON, b"", (PortalUnavailable, "http_429")),
}


def classify(status: int, headers: dict[str, str], body: bytes) -> dict[str, Any]:
    return classify_reply(status, headers, body, expired_codes=EXPIRED)


@pytest.mark.parametrize("name", sorted(REPLIES))
def test_a_hostile_reply_is_a_typed_refusal_or_true_success(name: str) -> None:
    status, headers, body, expected = REPLIES[name]
    if expected is None:
        reply = classify(status, headers, body)
        assert isinstance(reply, dict) and str(reply["error_code"]).strip() in ("0", "00")
        return
    refusal, reason = expected
    with pytest.raises(SyncError) as caught:
        classify(status, headers, body)
    assert type(caught.value) is refusal, caught.value
    assert caught.value.reason == reason


@pytest.mark.parametrize("name", sorted(n for n, (*_, e) in REPLIES.items() if e in (MALFORMED, BAD_CODE)
                                        or (e is not None and e[1] == "http_404")))
def test_a_refusal_quotes_at_most_200_characters_of_the_body_and_keeps_them_out_of_logs(name: str) -> None:
    status, headers, body, _ = REPLIES[name]
    with pytest.raises(SyncError) as caught:
        classify(status, headers, body)
    error = caught.value
    assert error.quotes_remote_text
    assert len(error.message) <= 200 * 6 + 120  # 200 characters, each at most a 6-character escape
    if name == "HTML error page under 200 saying thành công":
        assert repr(HTML_PAGE.decode()[:200]) in error.message


def test_an_html_page_under_a_2xx_is_retried_like_a_broken_proxy_a_bad_code_waits_for_everyone() -> None:
    with pytest.raises(PortalUnavailable) as html:
        classify(200, HTML, HTML_PAGE)
    with pytest.raises(PortalRejected) as bad_code:
        classify(200, JSON, code("1e-400"))
    with pytest.raises(PortalRejected) as record:
        classify(200, JSON, code("-1"))
    assert (html.value.kind, html.value.affects_every_record) == ("retryable", True)
    # An adapter that writes codes no adapter writes answers every record so: wait, do not dead-letter.
    assert (bad_code.value.kind, bad_code.value.affects_every_record) == ("permanent", True)
    assert (record.value.affects_every_record, record.value.error_code) == (False, "-1")


def truly_success(status: int, headers: dict[str, str], body: bytes) -> bool:
    if not 200 <= status < 300:
        return False
    try:
        document = parse_json(body)
    except (UnreadableJson, UnsafeText):
        content_type = headers.get("Content-Type", "").split(";")[0].strip()
        text = body.decode("utf-8", errors="replace").strip()
        folded = unicodedata.normalize("NFC", unicodedata.normalize("NFC", text).casefold())
        return content_type == "text/plain" and folded == "thành công"
    if not isinstance(document, dict) or "error_code" not in document:
        return False
    value = document["error_code"]
    if isinstance(value, str):
        return value.strip(" \t\r\n") in ("0", "00")
    return type(value) is int and value == 0


REPLY_BODIES = st.one_of(
    st.binary(max_size=200),
    st.builds(lambda v, m: json.dumps({"error_code": v, "message": m}).encode(),
              st.one_of(st.integers(-5, 5), st.floats(allow_nan=False), st.booleans(), st.none(),
                        st.sampled_from(["0", "00", " 0", "0.0", "-0", "", "3", "-2"]), st.text(max_size=5)),
              st.text(max_size=20)),
    st.sampled_from(["thành công", "Thành công ", "không thành công", "<b>thành công</b>"]).map(str.encode),
)


@given(status=st.sampled_from([200, 201, 204, 301, 400, 401, 403, 404, 429, 500, 503]),
       content_type=st.sampled_from(["application/json", "text/plain", "text/plain; charset=utf-8", "text/html",
                                     ""]),
       body=REPLY_BODIES)
@settings(max_examples=500, deadline=None)
def test_any_reply_is_success_exactly_when_it_truly_is_and_a_sync_error_otherwise(
        status: int, content_type: str, body: bytes) -> None:
    headers = {"Content-Type": content_type} if content_type else {}
    try:
        reply = classify(status, headers, body)
    except SyncError:
        assert not truly_success(status, headers, body)
    else:
        assert isinstance(reply, dict)
        assert truly_success(status, headers, body)


# --- through the real client, against a loopback adapter ----------------------------------------------------


async def within(call: Any) -> Any:
    return await asyncio.wait_for(call, STEP_SECONDS * 2)


async def test_a_reply_in_one_byte_chunks_is_read_whole(adapter: FakeAdapter) -> None:
    record = {"MaHoSo": "000.00.01.H22-1", "TrichYeuHoSo": "Cấp phép xây dựng " * 100}
    adapter.login = Reply(adapter.login.body, chunk=1)
    adapter.answer("TraCuuHoSo", json_reply({"error_code": 0, "result": [record]}, chunk=1))
    async with adapter.client() as client:
        assert await within(client.lookup("000.00.01.H22-1")) == record
    assert (adapter.logins, adapter.calls) == (1, ["TraCuuHoSo"])


CLIENT_CASES = [
    "HTML error page under 200 saying thành công", "1e-400 (underflows to 0)", "duplicate error_code, 0 last",
    "lone surrogate in the message", "depth 10,000", "byte-order mark", "the phrase inside longer text",
    "the phrase as plain text", "text 00", "float -0.0", "NaN", "code 0 under 404",
]


@pytest.mark.parametrize("name", CLIENT_CASES)
async def test_a_hostile_reply_in_small_chunks_through_the_client_ends_as_the_table_says(
        adapter: FakeAdapter, name: str) -> None:
    status, headers, body, expected = REPLIES[name]
    adapter.answer("CapNhatTienDoHoSoMC", Reply(body, status=status, content_type=headers.get("Content-Type"),
                                                chunk=7))
    async with adapter.client() as client:
        if expected is None:
            await within(client.push_progress([{"MaHoSo": "000.00.01.H22-1"}]))
            return
        with pytest.raises(SyncError) as caught:
            await within(client.push_progress([{"MaHoSo": "000.00.01.H22-1"}]))
    assert (type(caught.value), caught.value.reason) == expected


def file_reply(size: int) -> bytes:
    """A LayTaiLieuHoSo reply of exactly ``size`` bytes."""
    head, tail = b'{"error_code": 0, "TepTinDinhKem": [{"TenTep": "a.pdf", "Base64": "', b'"}]}'
    return head + b"A" * (size - len(head) - len(tail)) + tail


async def test_a_reply_of_exactly_the_limit_is_read_and_one_byte_more_is_too_large(adapter: FakeAdapter) -> None:
    body = file_reply(3000)
    adapter.answer("LayTaiLieuHoSo", Reply(body, chunk=1), Reply(body, chunk=1))
    async with adapter.client() as client:
        reply = await within(client.fetch_file("tailieu/1", max_bytes=3000))
        assert reply["TepTinDinhKem"][0]["Base64"] == "A" * (3000 - len(file_reply(0)))
        with pytest.raises(PortalUnavailable) as caught:
            await within(client.fetch_file("tailieu/1", max_bytes=2999))
    assert caught.value.reason == "reply_too_large"


async def test_an_adapter_reply_over_the_limit_is_too_large_and_an_endless_one_is_not_read_for_ever(
        adapter: FakeAdapter) -> None:
    over = b'{"error_code": 0, "r": "' + b"x" * MAX_REPLY_BYTES + b'"}'
    adapter.answer("TraCuuHoSo", Reply(over), Reply(b'{"error_code": 0, "r": "', endless=True))
    async with adapter.client() as client:
        for _ in range(2):
            with pytest.raises(PortalUnavailable) as caught:
                await within(client.lookup("000.00.01.H22-1"))
            assert caught.value.reason == "reply_too_large"
        # The client is still usable afterwards.
        assert await within(client.lookup("000.00.01.H22-1")) is None


__all__ = ["adapter"]
