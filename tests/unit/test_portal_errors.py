"""How adapter answers are classified: success, or which error kind and reason."""

from __future__ import annotations

import json
import unicodedata
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from typing import Any

import pytest

from connector.portal.errors import (
    MAX_REPLY_BYTES,
    AlreadyExists,
    PortalRejected,
    PortalUnavailable,
    SessionExpired,
    classify_reply,
    parse_retry_after,
)

EXPIRED = ("-2", "401")


def classify(status: int, body: bytes | dict[str, Any] | str, headers: dict[str, str] | None = None) -> Any:
    if isinstance(body, dict):
        raw = json.dumps(body).encode()
    elif isinstance(body, str):
        raw = body.encode("utf-8")
    else:
        raw = body
    return classify_reply(status, headers or {}, raw, expired_codes=EXPIRED)


TEXT = {"Content-Type": "text/plain; charset=utf-8"}


@pytest.mark.parametrize("code", [0, "0", "00", " 0 "])
def test_success_codes_return_the_parsed_reply(code: Any) -> None:
    reply = {"error_code": code, "message": "ok", "result": [{"MaHoSo": "x"}]}
    assert classify(200, reply) == reply


@pytest.mark.parametrize("raw", [b'{"error_code": 1e-400}', b'{"error_code": 0.0}', b'{"error_code": -0.0}',
                                 b'{"error_code": false}', b'{"error_code": "0.0"}', b'{"error_code": [0]}'])
def test_a_code_that_only_reads_as_zero_is_no_success(raw: bytes) -> None:
    with pytest.raises(PortalRejected):
        classify(200, raw)


@pytest.mark.parametrize("text", ["Thành công", " THÀNH CÔNG\r\n", unicodedata.normalize("NFD", "thành công")])
def test_plain_text_success_from_provincial_proxies(text: str) -> None:
    reply = classify(200, text, TEXT)
    assert reply["error_code"] == "0"


@pytest.mark.parametrize(("text", "headers"), [
    ("Đồng bộ không thành công", TEXT), ("Chưa thành công", TEXT), ("OK", TEXT),
    ("Đồng bộ hồ sơ thành công", TEXT),  # the phrase inside longer text
    ("thành công", {}), ("thành công", {"Content-Type": "text/html"}),  # not declared plain text
    ("<html><body>Lỗi hệ thống ... thành công</body></html>", {"Content-Type": "text/html"}),
    ('"thành công"', {"Content-Type": "application/json"}),
])
def test_anything_but_the_whole_phrase_in_plain_text_is_malformed(text: str, headers: dict[str, str]) -> None:
    with pytest.raises(PortalUnavailable) as caught:
        classify(200, text, headers)
    assert caught.value.reason == "malformed_reply"
    assert caught.value.kind == "retryable"
    assert caught.value.quotes_remote_text and repr(text[:200]) in caught.value.message


@pytest.mark.parametrize("code", ["-3", "3", -3, 3])
@pytest.mark.parametrize("form", ["NFC", "NFD"])
def test_already_exists(code: Any, form: str) -> None:
    message = unicodedata.normalize(form, "Hồ sơ 000.00.01.H22-1 ĐÃ TỒN TẠI trên hệ thống")
    with pytest.raises(AlreadyExists) as caught:
        classify(200, {"error_code": code, "message": message})
    assert caught.value.reason == "already_exists"
    assert caught.value.kind == "permanent"
    assert caught.value.error_code == str(code)


def test_code_3_without_the_already_exists_message_is_a_rejection() -> None:
    with pytest.raises(PortalRejected) as caught:
        classify(200, {"error_code": "-3", "message": "Lỗi khác"})
    assert caught.value.reason == "portal_rejected"


def test_already_exists_text_with_another_code_is_a_rejection() -> None:
    with pytest.raises(PortalRejected):
        classify(200, {"error_code": "-1", "message": "Hồ sơ đã tồn tại"})


def test_other_codes_are_rejected_with_the_portal_message_truncated() -> None:
    with pytest.raises(PortalRejected) as caught:
        classify(200, {"error_code": "-1", "message": "x" * 600})
    assert caught.value.reason == "portal_rejected"
    assert caught.value.kind == "permanent"
    assert caught.value.message == "x" * 500
    assert caught.value.error_code == "-1"


def test_http_401_is_an_expired_session_whatever_the_body() -> None:
    with pytest.raises(SessionExpired) as caught:
        classify(401, {"error_code": 0})
    assert caught.value.reason == "session_expired"
    assert caught.value.kind == "retryable"


@pytest.mark.parametrize("code", ["-2", -2, "401"])
def test_configured_expired_codes_are_expired_sessions(code: Any) -> None:
    with pytest.raises(SessionExpired):
        classify(200, {"error_code": code, "message": "Phiên làm việc đã hết hạn"})


def test_expired_codes_are_configuration() -> None:
    with pytest.raises(PortalRejected):
        classify_reply(200, {}, b'{"error_code": "-2"}', expired_codes=("99",))
    with pytest.raises(SessionExpired):
        classify_reply(200, {}, b'{"error_code": "99"}', expired_codes=("99",))


@pytest.mark.parametrize("status", [408, 425, 429, 500, 502, 503, 504])
def test_retryable_statuses(status: int) -> None:
    with pytest.raises(PortalUnavailable) as caught:
        classify(status, {"error_code": 0})
    assert caught.value.reason == f"http_{status}"
    assert caught.value.retry_after is None


@pytest.mark.parametrize("header", ["Retry-After", "retry-after"])
def test_retry_after_seconds(header: str) -> None:
    with pytest.raises(PortalUnavailable) as caught:
        classify(429, "slow down", headers={header: "7"})
    assert caught.value.reason == "http_429"
    assert caught.value.retry_after == 7.0


def test_retry_after_http_date() -> None:
    later = datetime.now(UTC) + timedelta(seconds=120)
    with pytest.raises(PortalUnavailable) as caught:
        classify(503, "", headers={"Retry-After": format_datetime(later, usegmt=True)})
    assert caught.value.retry_after is not None
    assert 100 < caught.value.retry_after <= 120


def test_parse_retry_after() -> None:
    now = datetime(2024, 1, 1, 12, 0, 0, tzinfo=UTC)
    assert parse_retry_after("Mon, 01 Jan 2024 12:00:30 GMT", now=now) == 30.0
    assert parse_retry_after("Mon, 01 Jan 2024 11:00:00 GMT", now=now) == 0.0  # in the past
    assert parse_retry_after(" 2.5 ") == 2.5
    assert parse_retry_after("-4") == 0.0
    assert parse_retry_after("soon") is None
    assert parse_retry_after("") is None
    assert parse_retry_after(None) is None


@pytest.mark.parametrize(
    "body",
    [b"", b"\x00\xff\xfe garbage", b"<html>Bad gateway</html>", b"[1, 2]", b'"x"', b'{"message": "no code"}'],
)
def test_malformed_replies_are_retryable(body: bytes) -> None:
    with pytest.raises(PortalUnavailable) as caught:
        classify(200, body)
    assert caught.value.reason == "malformed_reply"


def test_other_http_errors_without_a_code_are_rejected_with_the_status() -> None:
    with pytest.raises(PortalRejected) as caught:
        classify(404, "<html>Not Found</html>")
    assert caught.value.reason == "http_404"
    assert caught.value.kind == "permanent"


def test_error_code_in_a_4xx_reply_decides() -> None:
    with pytest.raises(PortalRejected) as caught:
        classify(400, {"error_code": "-1", "message": "Dữ liệu không hợp lệ"})
    assert caught.value.reason == "portal_rejected"
    assert caught.value.message == "Dữ liệu không hợp lệ"


def test_oversized_reply_is_refused() -> None:
    with pytest.raises(PortalUnavailable) as caught:
        classify(200, b" " * (MAX_REPLY_BYTES + 1))
    assert caught.value.reason == "reply_too_large"


def test_reply_of_exactly_the_limit_is_read() -> None:
    small = b'{"error_code": 0}'
    assert classify(200, small + b" " * (MAX_REPLY_BYTES - len(small))) == {"error_code": 0}
