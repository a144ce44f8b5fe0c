"""Hostile attachments on the way back: the files of a citizen's submission.

The surface: the ``TaiLieuNop[]`` items of a ``TraCuuHoSo`` record or an inbound push (``parse_submission``:
``TenTepDinhKem``, ``KichThuoc``, ``MaBam``, ``Base64``, ``DuongDanTaiTepTin``, and the name rule of
``_file_name``), the adapter's ``LayTaiLieuHoSo`` reply ``{error_code, message, TepTinDinhKem: [{TenTep,
Base64}]}`` (``decode_file_reply``), the size and SHA-256 check of what arrived (``check_file``), and the fetch
itself (``SubmissionPoller._fetch_file`` through the real ``PortalClient`` against a loopback adapter that
writes its replies in the chunks the test chooses).

For every input the refusal is ``InvalidSubmission`` naming the field and the rule (or, for what the client
refuses before any file is decoded, its typed ``SyncError``); nothing else is raised. A Hypothesis property
holds ``decode_file_reply`` to the same promise for any JSON value at all.

The rules, as the code states them today:

- A file's name is display text, not a path: "123/QĐ-UBND.pdf" is a usual name and is kept. A name that climbs
  (a ``..`` segment, split on ``/`` and ``\\``, spaces around it ignored) or starts at a root (``/``, ``\\``,
  a drive followed by a separator) is refused. Percent-escapes are not decoded: "%2e%2e%2f" is a name.
- The ``TenTep`` of a ``LayTaiLieuHoSo`` reply is not the file's name (that comes from ``TaiLieuNop``) and is
  never used: it is only checked as one line of text.
- Base64 is the standard alphabet with padding, nothing else: no whitespace or line breaks, no url-safe
  alphabet, no missing or extra padding. Checked before decoding, bounded by the file limit.
- ``KichThuoc`` is an integer or its decimal digits as a string; ``MaBam`` 64 hexadecimal digits, any case.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
from types import SimpleNamespace
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from connector.errors import SyncError
from connector.portal.errors import PortalRejected, PortalUnavailable
from connector.pull.national import (
    DeclaredFile,
    InvalidSubmission,
    Limits,
    check_file,
    decode_file_reply,
    parse_submission,
)
from connector.pull.poller import FILE_REPLY_MARGIN, SubmissionPoller
from tests.hostile.fake_adapter import STEP_SECONDS, FakeAdapter, Reply, adapter, json_reply
from tests.unit.test_pull_national import APPLICATION, ID_NUMBER, record

CLIMBS = "must not be a path that climbs (a .. segment) or starts at a root (/, \\, a drive)"
CONTROL = "must not contain control characters"
BASE64 = "must be standard base64 with padding, nothing else"
SMALL = Limits(max_file_bytes=30)


def b64(content: bytes) -> str:
    return base64.b64encode(content).decode("ascii")


def sha(content: bytes) -> str:
    return hashlib.sha256(content).hexdigest()


def refusal(call: Any, *args: Any, **kwargs: Any) -> InvalidSubmission:
    """The InvalidSubmission ``call`` raises; anything else (or nothing) fails the test."""
    with pytest.raises(InvalidSubmission) as caught:
        call(*args, **kwargs)
    assert type(caught.value) is InvalidSubmission
    return caught.value


def with_file(inline: bool, **changes: Any) -> dict[str, Any]:
    """A record whose first TaiLieuNop item has ``changes`` (a value of None removes the member)."""
    data = record(inline=inline)
    item = data["TaiLieuNop"][0]
    for key, value in changes.items():
        if value is None:
            item.pop(key, None)
        else:
            item[key] = value
    return data


def file_reply(base64_text: Any = None, **changes: Any) -> dict[str, Any]:
    reply: dict[str, Any] = {"error_code": 0, "message": "Thành công",
                             "TepTinDinhKem": [{"TenTep": "Đơn đề nghị.pdf",
                                                "Base64": b64(b"hello") if base64_text is None else base64_text}]}
    reply.update(changes)
    return reply


# --- names: path traversal, controls, length -----------------------------------------------------------------

CLIMBING_NAMES = {
    "two levels up, slashes": "../../etc/passwd",
    "two levels up, backslashes": "..\\..\\win.ini",
    "an absolute path": "/abs",
    "a backslash root": "\\abs",
    "a UNC share": "\\\\server\\share\\a.pdf",
    "a drive and a backslash": "C:\\x",
    "a drive and a slash": "c:/x",
    "down then further up": "a/../../b",
    "a trailing climb": "hồ sơ/..",
    "the parent alone": "..",
    "a climb padded with spaces": " .. /x.pdf",
    "a climb between mixed separators": "a\\../b",
}


@pytest.mark.parametrize("inline", [False, True], ids=["polled", "pushed"])
@pytest.mark.parametrize("name", sorted(CLIMBING_NAMES))
def test_a_file_name_that_climbs_or_starts_at_a_root_is_refused_naming_the_rule(name: str, inline: bool) -> None:
    error = refusal(parse_submission, with_file(inline, TenTepDinhKem=CLIMBING_NAMES[name]), inline=inline)
    assert (error.field, error.reason, error.message) == ("TaiLieuNop[0].TenTepDinhKem", "bad_format", CLIMBS)
    assert str(error) == f"TaiLieuNop[0].TenTepDinhKem: {CLIMBS}"  # the name itself is not quoted


DISPLAY_NAMES = {
    "a decision number with a slash": "123/QĐ-UBND.pdf",
    "percent-escapes are not decoded": "%2e%2e%2f%2e%2e%2fetc%2fpasswd",
    "three dots are a name": ".../x.pdf",
    "dots inside a segment": "a..b/c..d.pdf",
    "a colon later in the name": "Mẫu số 01: Đơn.pdf",
    "a dotted name": ".hidden",
}


@pytest.mark.parametrize("name", sorted(DISPLAY_NAMES))
def test_a_name_that_only_looks_like_a_path_is_display_text_and_kept_as_sent(name: str) -> None:
    sub = parse_submission(with_file(False, TenTepDinhKem=DISPLAY_NAMES[name]), inline=False)
    assert sub.files[0].name == DISPLAY_NAMES[name]


def test_a_drive_relative_name_is_refused_as_starting_at_a_drive() -> None:
    error = refusal(parse_submission, with_file(False, TenTepDinhKem="C:x.pdf"), inline=False)
    assert (error.field, error.reason) == ("TaiLieuNop[0].TenTepDinhKem", "bad_format")


UNUSABLE_NAMES = {
    "NUL": ("a\x00b.pdf", "bad_format", CONTROL),
    "escape": ("a\x1b[31m.pdf", "bad_format", CONTROL),
    "line feed": ("a\nb.pdf", "bad_format", CONTROL),
    "carriage return": ("a\rb.pdf", "bad_format", CONTROL),
    "DEL": ("a\x7f.pdf", "bad_format", CONTROL),
    "C1 control": ("a\x85.pdf", "bad_format", CONTROL),
    "line separator": ("a\u2028b.pdf", "bad_format", CONTROL),
    "lone high surrogate": ("a\ud800.pdf", "bad_format", "must be valid Unicode text"),
    "lone low surrogate": ("\udfff.pdf", "bad_format", "must be valid Unicode text"),
    "10,000 characters": ("x" * 10_000, "too_long", "must be at most 4000 characters"),
    "blank": ("   ", "missing_field", "must not be empty"),
}


@pytest.mark.parametrize("inline", [False, True], ids=["polled", "pushed"])
@pytest.mark.parametrize("name", sorted(UNUSABLE_NAMES))
def test_a_file_name_with_controls_surrogates_or_no_end_is_refused_naming_the_rule(name: str, inline: bool) -> None:
    value, reason, rule = UNUSABLE_NAMES[name]
    error = refusal(parse_submission, with_file(inline, TenTepDinhKem=value), inline=inline)
    assert (error.field, error.reason, error.message) == ("TaiLieuNop[0].TenTepDinhKem", reason, rule)


def test_a_name_of_exactly_4000_characters_is_kept() -> None:
    assert parse_submission(with_file(False, TenTepDinhKem="x" * 4000), inline=False).files[0].name == "x" * 4000


@pytest.mark.parametrize("name", sorted(UNUSABLE_NAMES))
def test_the_reply_s_tenTep_is_checked_as_one_line_of_text(name: str) -> None:
    value, reason, _ = UNUSABLE_NAMES[name]
    reply = file_reply()
    reply["TepTinDinhKem"][0]["TenTep"] = value
    error = refusal(decode_file_reply, reply)
    assert (error.field, error.reason) == ("TepTinDinhKem[0].TenTep", reason)


@pytest.mark.parametrize("name", sorted(CLIMBING_NAMES))
def test_the_reply_s_tenTep_is_never_used_so_a_climbing_one_does_not_matter(name: str) -> None:
    reply = file_reply()
    reply["TepTinDinhKem"][0]["TenTep"] = CLIMBING_NAMES[name]
    assert decode_file_reply(reply) == b"hello"


# --- base64 ------------------------------------------------------------------------------------------------------

BAD_BASE64 = {
    "missing padding": "aGVsbG8",
    "one pad too many": "aGVsbG8==",
    "padding alone": "====",
    "three pads": "a===",
    "padding in the middle": "aGVsbG8=aGVs",
    "a space inside": "aGVs bG8=",
    "a trailing line feed": "aGVsbG8=\n",
    "a MIME line break": "aGVs\r\nbG8=",
    "a tab": "\taGVsbG8=",
    "url-safe alphabet": "-_-_",
    "url-safe, unpadded": "aGVsbG8_",
    "non-alphabet": "aGVs*G8=",
    "non-ASCII digits": "aGVs\u0661G8=",
    "a data: URL": "data:application/pdf;base64,aGVsbG8=",
    "NUL": "aGVs\x00G8=",
}


@pytest.mark.parametrize("name", sorted(BAD_BASE64))
def test_base64_that_is_not_standard_and_padded_is_refused_in_a_file_reply(name: str) -> None:
    error = refusal(decode_file_reply, file_reply(BAD_BASE64[name]))
    assert (error.field, error.reason, error.message) == ("TepTinDinhKem[0].Base64", "bad_base64", BASE64)


@pytest.mark.parametrize("name", sorted(BAD_BASE64))
def test_base64_that_is_not_standard_and_padded_is_refused_in_a_pushed_file(name: str) -> None:
    error = refusal(parse_submission, with_file(True, Base64=BAD_BASE64[name], KichThuoc="", MaBam=""),
                    inline=True)
    assert (error.field, error.reason) == ("TaiLieuNop[0].Base64", "bad_base64")


@pytest.mark.parametrize("value", [7, 7.5, True, ["aGVsbG8="], {"b": "aGVsbG8="}], ids=repr)
def test_base64_that_is_not_a_string_is_refused_as_the_wrong_type(value: Any) -> None:
    error = refusal(decode_file_reply, file_reply(value))
    assert (error.field, error.reason) == ("TepTinDinhKem[0].Base64", "wrong_type")


def test_the_standard_alphabet_with_plus_and_slash_is_accepted() -> None:
    assert decode_file_reply(file_reply("+/+/")) == b"\xfb\xff\xbf"


def test_unused_bits_in_the_last_character_decode_to_the_same_bytes_and_the_digest_judges_them() -> None:
    # "aGVsbB==" carries bits the canonical "aGVsbA==" leaves zero: the same four bytes either way.
    assert decode_file_reply(file_reply("aGVsbB==")) == decode_file_reply(file_reply("aGVsbA==")) == b"hell"


def test_base64_of_the_limit_is_accepted_and_longer_text_is_refused_before_decoding() -> None:
    assert decode_file_reply(file_reply(b64(b"x" * 30)), SMALL) == b"x" * 30
    error = refusal(decode_file_reply, file_reply(b64(b"x" * 31)), SMALL)
    assert (error.field, error.reason) == ("TepTinDinhKem[0].Base64", "file_too_large")
    assert "30 bytes" in error.message


def test_base64_of_many_megabytes_is_refused_as_too_large_not_decoded() -> None:
    error = refusal(decode_file_reply, file_reply("A" * 10_000_000), Limits(max_file_bytes=1_000_000))
    assert (error.field, error.reason) == ("TepTinDinhKem[0].Base64", "file_too_large")


def test_base64_decoding_to_more_than_the_limit_is_refused_even_when_its_text_fits() -> None:
    # 33 bytes are 44 characters, as many as 31 bytes need; the limit is 31.
    error = refusal(decode_file_reply, file_reply(b64(b"x" * 33)), Limits(max_file_bytes=31))
    assert (error.field, error.reason) == ("TepTinDinhKem[0].Base64", "file_too_large")


def test_a_pushed_file_decoding_to_more_than_the_limit_is_refused() -> None:
    error = refusal(parse_submission, with_file(True, Base64=b64(b"x" * 33), KichThuoc="", MaBam=""),
                    inline=True, limits=Limits(max_file_bytes=31))
    assert (error.field, error.reason) == ("TaiLieuNop[0].Base64", "file_too_large")


# --- KichThuoc and MaBam that lie ------------------------------------------------------------------------------

SIZE_TOO_LARGE = 10**9

POLLED_SIZES = {
    "bigger than the limit": (SIZE_TOO_LARGE, "file_too_large"),
    "negative": (-1, "out_of_range"),
    "1e400 (infinite once read)": (float("inf"), "wrong_type"),
    "NaN": (float("nan"), "wrong_type"),
    "a float": (12.0, "wrong_type"),
    "true": (True, "wrong_type"),
    "false": (False, "wrong_type"),
    "a list": ([12], "wrong_type"),
    "signed digits": ("-1", "bad_format"),
    "digits with a space": (" 12", "bad_format"),
    "hexadecimal": ("0x10", "bad_format"),
    "exponent": ("1e3", "bad_format"),
    "17 digits": ("1" * 17, "bad_format"),
    "beyond 64 bits": (2**64, "out_of_range"),
    "absent": (None, "missing_field"),
    "empty text": ("", "missing_field"),
}


@pytest.mark.parametrize("name", sorted(POLLED_SIZES))
def test_a_declared_size_that_is_not_a_size_is_refused_naming_the_rule(name: str) -> None:
    value, reason = POLLED_SIZES[name]
    data = with_file(False)
    data["TaiLieuNop"][0]["KichThuoc"] = value
    error = refusal(parse_submission, data, inline=False)
    assert (error.field, error.reason) == ("TaiLieuNop[0].KichThuoc", reason)


def test_a_size_sent_as_its_digits_is_read_as_the_number() -> None:
    data = with_file(False, KichThuoc=str(len(APPLICATION)))
    assert parse_submission(data, inline=False).files[0].size == len(APPLICATION)


@pytest.mark.parametrize(("declared", "reason"), [(len(APPLICATION) + 1, "file_size_mismatch"),
                                                  (len(APPLICATION) - 1, "file_size_mismatch"),
                                                  (str(len(APPLICATION) + 1), "file_size_mismatch"),
                                                  (0, "file_size_mismatch")],
                         ids=["bigger", "smaller", "bigger, as text", "zero"])
def test_a_pushed_size_that_lies_about_the_content_is_refused(declared: Any, reason: str) -> None:
    error = refusal(parse_submission, with_file(True, KichThuoc=declared), inline=True)
    assert (error.field, error.reason) == ("TaiLieuNop[0].KichThuoc", reason)


BAD_DIGESTS = {
    "not hex": ("g" * 64, "bad_format"),
    "63 digits": ("a" * 63, "bad_format"),
    "65 digits": ("a" * 65, "too_long"),
    "0x prefix": ("0x" + "a" * 62, "bad_format"),
    "a number": (5, "wrong_type"),
    "a list": (["a" * 64], "wrong_type"),
    "spaces": (" " * 64, "missing_field"),
    "NUL": ("\x00" * 64, "bad_format"),
}


@pytest.mark.parametrize("inline", [False, True], ids=["polled", "pushed"])
@pytest.mark.parametrize("name", sorted(BAD_DIGESTS))
def test_a_digest_that_is_not_64_hex_digits_is_refused_naming_the_rule(name: str, inline: bool) -> None:
    value, reason = BAD_DIGESTS[name]
    error = refusal(parse_submission, with_file(inline, MaBam=value), inline=inline)
    assert (error.field, error.reason) == ("TaiLieuNop[0].MaBam", reason)


@pytest.mark.parametrize("digest", [sha(b"another file"), sha(APPLICATION).upper()[:-1] + "0"],
                         ids=["another file's", "one digit off"])
def test_a_pushed_digest_that_lies_is_refused(digest: str) -> None:
    error = refusal(parse_submission, with_file(True, MaBam=digest), inline=True)
    assert (error.field, error.reason) == ("TaiLieuNop[0].MaBam", "file_sha256_mismatch")


def test_an_upper_case_digest_is_the_same_digest() -> None:
    sub = parse_submission(with_file(True, MaBam=sha(APPLICATION).upper()), inline=True)
    assert sub.files[0].sha256 == sha(APPLICATION)


def declared(content: bytes = b"hello", **changes: Any) -> DeclaredFile:
    values: dict[str, Any] = {"id": "f1", "name": "a.pdf", "component_code": None, "size": len(content),
                              "sha256": sha(content), "path": "tailieu/1"}
    return DeclaredFile(**{**values, **changes})


CHECKS = {
    "bigger than declared": (declared(size=4), "KichThuoc", "file_size_mismatch"),
    "smaller than declared": (declared(size=6), "KichThuoc", "file_size_mismatch"),
    "another digest": (declared(sha256=sha(b"jello")), "MaBam", "file_sha256_mismatch"),
    "a digest that is not hex": (declared(sha256="z" * 64), "MaBam", "file_sha256_mismatch"),
    "an empty digest": (declared(sha256=""), "MaBam", "file_sha256_mismatch"),
}


@pytest.mark.parametrize("name", sorted(CHECKS))
def test_content_that_is_not_what_was_declared_is_refused_size_first_then_digest(name: str) -> None:
    file, member, reason = CHECKS[name]
    error = refusal(check_file, file, b"hello", field="TaiLieuNop[3]")
    assert (error.field, error.reason) == (f"TaiLieuNop[3].{member}", reason)


def test_a_polled_file_without_a_path_is_refused_naming_the_path() -> None:
    error = refusal(parse_submission, with_file(False, DuongDanTaiTepTin=None), inline=False)
    assert (error.field, error.reason) == ("TaiLieuNop[0].DuongDanTaiTepTin", "missing_field")


@pytest.mark.parametrize(("path", "reason"), [("a\x00b", "bad_format"), ("x" * 4001, "too_long"), (7, "wrong_type")],
                         ids=["NUL", "4001 characters", "a number"])
def test_a_polled_file_path_that_is_not_one_line_of_bounded_text_is_refused(path: Any, reason: str) -> None:
    error = refusal(parse_submission, with_file(False, DuongDanTaiTepTin=path), inline=False)
    assert (error.field, error.reason) == ("TaiLieuNop[0].DuongDanTaiTepTin", reason)


# --- error_code and the shape of the reply ------------------------------------------------------------------------

ACCEPTED_CODES = {"integer 0": 0, "text 0": "0", "text 00": "00", "integer -0": -0, "absent (null)": None}
REFUSED_CODES = {
    "false": False, "true": True, "text 1e-400": "1e-400", "text -0": "-0", "text 000": "000", "integer 1": 1,
    "integer -1": -1, "text 0.0": "0.0", "NaN": float("nan"), "a list [0]": [0], "an object": {}, "empty text": "",
}
# Read the way classify_reply reads them (normalise_code): a float is no code, an ASCII-padded text is its digits.
MISREAD_CODES = {"float 0.0": (0.0, "refused"), "float -0.0": (-0.0, "refused"),
                 "1e-400 once read (0.0)": (json.loads("1e-400"), "refused"),
                 "text 0 padded": (" 0 ", "accepted"), "text 00 ending in CRLF": ("00\r\n", "accepted")}


@pytest.mark.parametrize("name", sorted(ACCEPTED_CODES))
def test_an_error_code_meaning_success_gives_the_bytes(name: str) -> None:
    assert decode_file_reply(file_reply(error_code=ACCEPTED_CODES[name])) == b"hello"


@pytest.mark.parametrize("name", sorted(REFUSED_CODES))
def test_any_other_error_code_is_the_portal_s_error_and_its_message_is_not_repeated(name: str) -> None:
    error = refusal(decode_file_reply, file_reply(error_code=REFUSED_CODES[name],
                                                  message=f"Không tìm thấy tệp của {ID_NUMBER}"))
    assert (error.field, error.reason) == ("error_code", "portal_error")
    assert ID_NUMBER not in str(error)


@pytest.mark.parametrize("name", sorted(MISREAD_CODES))
def test_an_error_code_is_read_as_the_client_reads_it(name: str) -> None:
    code, outcome = MISREAD_CODES[name]
    reply = file_reply(error_code=code)
    if outcome == "accepted":
        assert decode_file_reply(reply) == b"hello"
    else:
        assert refusal(decode_file_reply, reply).reason == "portal_error"


SHAPES = {
    "a list": ([file_reply()], "(reply)", "wrong_type"),
    "null": (None, "(reply)", "wrong_type"),
    "a string": ("TepTinDinhKem", "(reply)", "wrong_type"),
    "files an object": (file_reply(TepTinDinhKem={"Base64": "aGVsbG8="}), "TepTinDinhKem", "wrong_type"),
    "files a string": (file_reply(TepTinDinhKem="aGVsbG8="), "TepTinDinhKem", "wrong_type"),
    "files a number": (file_reply(TepTinDinhKem=0), "TepTinDinhKem", "wrong_type"),
    "files false": (file_reply(TepTinDinhKem=False), "TepTinDinhKem", "wrong_type"),
    "files empty": (file_reply(TepTinDinhKem=[]), "TepTinDinhKem", "no_file"),
    "files null": (file_reply(TepTinDinhKem=None), "TepTinDinhKem", "no_file"),
    "files empty text": (file_reply(TepTinDinhKem=""), "TepTinDinhKem", "no_file"),
    "no files member": ({"error_code": 0}, "TepTinDinhKem", "no_file"),
    "a list of null": (file_reply(TepTinDinhKem=[None]), "TepTinDinhKem[0]", "wrong_type"),
    "a list of numbers": (file_reply(TepTinDinhKem=[1, 2]), "TepTinDinhKem[0]", "wrong_type"),
    "a list of strings": (file_reply(TepTinDinhKem=["aGVsbG8="]), "TepTinDinhKem[0]", "wrong_type"),
    "a list of lists": (file_reply(TepTinDinhKem=[[]]), "TepTinDinhKem[0]", "wrong_type"),
    "an empty object": (file_reply(TepTinDinhKem=[{}]), "TepTinDinhKem[0].Base64", "missing_field"),
    "Base64 null": (file_reply(TepTinDinhKem=[{"TenTep": "a", "Base64": None}]), "TepTinDinhKem[0].Base64",
                    "missing_field"),
}


@pytest.mark.parametrize("name", sorted(SHAPES))
def test_a_reply_of_the_wrong_shape_is_refused_naming_the_member(name: str) -> None:
    reply, field, reason = SHAPES[name]
    error = refusal(decode_file_reply, reply)
    assert (error.field, error.reason) == (field, reason)


def test_only_the_first_file_is_read_so_a_broken_second_one_does_not_matter() -> None:
    reply = file_reply()
    reply["TepTinDinhKem"].append({"TenTep": "\x00", "Base64": "!!"})
    assert decode_file_reply(reply) == b"hello"


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=12),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=20,
)
FILE_ITEMS = st.fixed_dictionaries({}, optional={
    "TenTep": JSON_VALUES | st.sampled_from(["a.pdf", "../x", "\x00", "\ud800", "x" * 4001]),
    "Base64": JSON_VALUES | st.sampled_from(["", "aGVsbG8=", "aGVsbG8", "-_-_", "aGVsbB==", "A" * 44, " ==="])
    | st.binary(max_size=40).map(lambda raw: base64.b64encode(raw).decode()),
})
REPLIES = JSON_VALUES | st.fixed_dictionaries({}, optional={
    "error_code": JSON_VALUES | st.sampled_from([0, "0", "00", 0.0, " 0", False]),
    "message": JSON_VALUES,
    "TepTinDinhKem": JSON_VALUES | st.lists(FILE_ITEMS | JSON_VALUES, max_size=3),
})


@given(reply=REPLIES)
@settings(max_examples=1500, deadline=None)
def test_any_json_value_as_a_file_reply_gives_bytes_or_an_invalid_submission_and_nothing_else(reply: Any) -> None:
    outcome: bytes | InvalidSubmission
    try:
        outcome = decode_file_reply(reply, SMALL)
    except InvalidSubmission as error:  # anything else escapes and fails the property
        outcome = error
    if isinstance(outcome, InvalidSubmission):
        assert type(outcome) is InvalidSubmission and outcome.field and outcome.reason and outcome.message
    else:
        assert isinstance(outcome, bytes)


# --- the fetch, through the real client against a loopback adapter --------------------------------------------


class PassThrough:
    """The gateway's rate limit, breaker and wait-out have their own tests: here a call is just made."""

    async def request(self, service: str, send: Any) -> Any:
        return await send()


def poller(fake: FakeAdapter, client: Any, limits: Limits) -> SubmissionPoller:
    # _fetch_file uses the intake's limits, the gateway and the portal client; nothing else of the poller.
    return SubmissionPoller(settings=fake.settings(), intake=SimpleNamespace(limits=limits), inbound=None,
                            relay=None, portal=client, gateway=PassThrough(), metrics=None)


def fetched(content: bytes = APPLICATION, **changes: Any) -> DeclaredFile:
    return declared(content, **{"path": "/dvcqg/tailieu/2020/10/05/0.pdf", **changes})


async def fetch(fake: FakeAdapter, file: DeclaredFile, *, limits: Limits = SMALL, index: int = 0) -> bytes:
    async with fake.client() as client:
        return await asyncio.wait_for(poller(fake, client, limits)._fetch_file(file, index), STEP_SECONDS * 2)


LARGE = Limits(max_file_bytes=4096)


async def test_a_file_reply_in_one_byte_chunks_is_read_whole_and_checked(adapter: FakeAdapter) -> None:
    adapter.answer("LayTaiLieuHoSo", json_reply(file_reply(b64(APPLICATION)), chunk=1))
    assert await fetch(adapter, fetched(), limits=LARGE) == APPLICATION
    assert adapter.calls == ["LayTaiLieuHoSo"]


async def test_a_file_reply_over_the_size_limit_is_too_large_before_any_decoding(adapter: FakeAdapter) -> None:
    limit = LARGE.max_file_bytes * 4 // 3 + FILE_REPLY_MARGIN
    body = json.dumps(file_reply("A" * (limit + 4 - limit % 4))).encode()
    adapter.answer("LayTaiLieuHoSo", Reply(body, chunk=4096))
    with pytest.raises(PortalUnavailable) as caught:
        await fetch(adapter, fetched(), limits=LARGE)
    assert caught.value.reason == "reply_too_large"


async def test_a_fetched_file_over_the_limit_but_within_the_reply_margin_is_refused_as_too_large(
        adapter: FakeAdapter) -> None:
    adapter.answer("LayTaiLieuHoSo", json_reply(file_reply(b64(APPLICATION)), chunk=1))
    with pytest.raises(InvalidSubmission) as caught:
        await fetch(adapter, fetched(), limits=Limits(max_file_bytes=len(APPLICATION) - 3))
    assert (caught.value.field, caught.value.reason) == ("TepTinDinhKem[0].Base64", "file_too_large")


FETCH_LIES = {
    "a size bigger than the file": (fetched(size=len(APPLICATION) + 1), "TaiLieuNop[2].KichThuoc",
                                    "file_size_mismatch"),
    "a size smaller than the file": (fetched(size=len(APPLICATION) - 1), "TaiLieuNop[2].KichThuoc",
                                     "file_size_mismatch"),
    "another file's digest": (fetched(sha256=sha(b"x")), "TaiLieuNop[2].MaBam", "file_sha256_mismatch"),
    "no path": (fetched(path=None), "TaiLieuNop[2].DuongDanTaiTepTin", "file_path_missing"),
}


@pytest.mark.parametrize("name", sorted(FETCH_LIES))
async def test_a_fetched_file_that_is_not_what_the_record_declared_is_refused(adapter: FakeAdapter, name: str) -> None:
    file, field, reason = FETCH_LIES[name]
    adapter.answer("LayTaiLieuHoSo", json_reply(file_reply(b64(APPLICATION)), chunk=7))
    with pytest.raises(InvalidSubmission) as caught:
        await fetch(adapter, file, limits=LARGE, index=2)
    assert (caught.value.field, caught.value.reason) == (field, reason)


FETCH_REPLIES = {
    "bad padding": (file_reply("aGVsbG8"), "TepTinDinhKem[0].Base64", "bad_base64"),
    "url-safe alphabet": (file_reply("-_-_"), "TepTinDinhKem[0].Base64", "bad_base64"),
    "MIME line breaks": (file_reply("aGVs\r\nbG8="), "TepTinDinhKem[0].Base64", "bad_base64"),
    "no file": (file_reply(TepTinDinhKem=[]), "TepTinDinhKem", "no_file"),
    "a list of strings": (file_reply(TepTinDinhKem=["aGVsbG8="]), "TepTinDinhKem[0]", "wrong_type"),
    "a NUL in the name": (file_reply(TepTinDinhKem=[{"TenTep": "a\u0000", "Base64": "aGVsbG8="}]), None, None),
}


@pytest.mark.parametrize("name", sorted(FETCH_REPLIES))
async def test_a_hostile_file_reply_through_the_client_is_a_named_refusal(adapter: FakeAdapter, name: str) -> None:
    reply, field, reason = FETCH_REPLIES[name]
    adapter.answer("LayTaiLieuHoSo", json_reply(reply, chunk=3))
    with pytest.raises(SyncError) as caught:
        await fetch(adapter, fetched(b"hello"))
    if field is None:  # the client's strict reading refuses it before the reply is looked at
        assert (type(caught.value), caught.value.reason) == (PortalUnavailable, "malformed_reply")
    else:
        assert type(caught.value) is InvalidSubmission
        assert (caught.value.field, caught.value.reason) == (field, reason)


@pytest.mark.parametrize("code", [-1, "99", "1e-400", 0.0, False, None], ids=repr)
async def test_an_adapter_error_code_through_the_client_is_its_typed_refusal_not_a_file(
        adapter: FakeAdapter, code: Any) -> None:
    adapter.answer("LayTaiLieuHoSo", json_reply(file_reply(error_code=code, message=f"lỗi {ID_NUMBER}"), chunk=5))
    with pytest.raises(PortalRejected) as caught:
        await fetch(adapter, fetched(b"hello"))
    assert caught.value.reason in ("portal_rejected", "bad_error_code")


async def test_a_padded_success_code_through_the_client_gives_the_file(adapter: FakeAdapter) -> None:
    adapter.answer("LayTaiLieuHoSo", json_reply(file_reply(b64(b"hello"), error_code=" 0 "), chunk=1))
    assert await fetch(adapter, fetched(b"hello")) == b"hello"


async def test_the_client_is_still_usable_after_a_refused_file(adapter: FakeAdapter) -> None:
    adapter.answer("LayTaiLieuHoSo", json_reply(file_reply("-_-_"), chunk=1),
                   json_reply(file_reply(b64(b"hello")), chunk=1))
    async with adapter.client() as client:
        fetcher = poller(adapter, client, SMALL)
        with pytest.raises(InvalidSubmission):
            await asyncio.wait_for(fetcher._fetch_file(fetched(b"hello"), 0), STEP_SECONDS * 2)
        assert await asyncio.wait_for(fetcher._fetch_file(fetched(b"hello"), 0), STEP_SECONDS * 2) == b"hello"
    assert adapter.logins == 1


__all__ = ["adapter"]
