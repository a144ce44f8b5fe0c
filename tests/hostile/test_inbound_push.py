"""Hostile pushes at the inbound dossier endpoint, served on loopback over the real intake (the real parser,
mappings and a SQLite state store): bodies and headers as raw bytes, a table of them.

For every one: a well-formed refusal (400, 401 or 413; never a 500, JSON with ``error_code`` -1 when the app
answers, aiohttp's own 400 when the request line or a header cannot be parsed at all), nothing owed to the
outbox, and a valid push right after is still accepted; no identity value of the sample citizen (ID number,
phone, email, name) and no token reaches a log line or the reply. And a property: any JSON value given to
``parse_submission`` either parses or raises ``InvalidSubmission``, never anything else."""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import logging
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from structlog.testing import capture_logs

from connector.config import DEFAULT_MAPPINGS_DIR, load_settings
from connector.listeners import create_public_app, start_public
from connector.national_time import PORTAL_TZ
from connector.observability import Metrics
from connector.outbox.relay import OutboxRelay
from connector.pull.attachments import AttachmentStore
from connector.pull.intake import SubmissionIntake, max_pushed_body_bytes
from connector.pull.national import InvalidSubmission, Limits, parse_submission
from connector.push.mapping import load_mappings
from connector.store import StateStore
from connector.store.way_back import InboundStore
from tests.integration.raw_http import RawReply, chunked_request_parts, raw_request, request_bytes

AGENCY = "000.00.01.G12"
PATH = "/dvcqg/hoso"
TOKEN = "inbound-push-t0ken-s3cret"
ID_NUMBER, PHONE, EMAIL, NAME = "001089012345", "0912345678", "an.nguyen@example.vn", "Nguyễn Văn An"
IDENTITY = (ID_NUMBER, PHONE, EMAIL, NAME, "Nguy")
MAX_DOSSIER_BYTES = 4 * 1024 * 1024  # the body limit is then about 6.6 MB: a 10 MB body is over it
BODY_LIMIT = max_pushed_body_bytes(Limits(max_dossier_bytes=MAX_DOSSIER_BYTES))
FILE = b"%PDF-1.7 don de nghi"
SENTINEL = "\u00a7\u00a7"  # replaced by a raw JSON fragment in the encoded body
AUTH = b"Authorization: Bearer " + TOKEN.encode()


def sample(no: str = f"{AGENCY}-261124-0901") -> dict[str, Any]:
    """The sample citizen's valid push."""
    return {"MaHoSo": no, "PhienBan": "1", "MaTTHC": "1.009972.000.00.00.G12", "DonViXuLy": AGENCY,
            "NgayNopHoSo": datetime.now(PORTAL_TZ).strftime("%Y%m%d") + "080000", "TrangThaiHoSo": "1",
            "ChuHoSo": NAME, "LoaiDoiTuong": "1", "SoDienThoai": PHONE, "Email": EMAIL,
            "DinhDanhCHS": [{"LoaiDinhDanh": "1", "SoDinhDanh": ID_NUMBER}],
            "DiaChiChuHoSo": "Số 1 Tràng Tiền, Hoàn Kiếm, Hà Nội", "TrichYeuHoSo": "Cấp chứng chỉ hành nghề",
            "TaiLieuNop": [{"TepDinhKemId": "1", "TenTepDinhKem": "Đơn đề nghị.pdf", "MaThanhPhanHoSo": "TPHS-01",
                            "KichThuoc": len(FILE), "MaBam": hashlib.sha256(FILE).hexdigest(),
                            "Base64": base64.b64encode(FILE).decode()}]}


def encoded(record: Any) -> bytes:
    return json.dumps(record, ensure_ascii=False).encode("utf-8")


def changed(edit: Callable[[dict[str, Any]], None]) -> bytes:
    record = sample()
    edit(record)
    return encoded(record)


def field_is(path: str, value: Any) -> bytes:
    """The sample with the value at ``path`` (``TaiLieuNop.0.TenTepDinhKem``) replaced."""
    def edit(record: dict[str, Any]) -> None:
        *parents, last = path.split(".")
        target: Any = record
        for part in parents:
            target = target[int(part)] if isinstance(target, list) else target[part]
        if isinstance(target, list):
            target[int(last)] = value
        else:
            target[last] = value
    return changed(edit)


def fragment_at(path: str, raw: bytes) -> bytes:
    """The sample with the value at ``path`` replaced by the raw JSON bytes ``raw`` (as sent, not re-encoded)."""
    body = field_is(path, SENTINEL)
    return body.replace(json.dumps(SENTINEL, ensure_ascii=False).encode(), raw, 1)


def nested(depth: int) -> Any:
    value: Any = "x"
    for _ in range(depth):
        value = {"a": value}
    return value


@dataclass(frozen=True)
class Hostile:
    body: bytes = b""
    headers: tuple[bytes, ...] = (AUTH,)
    chunk: int | None = None  # sent with Transfer-Encoding: chunked, this many bytes a chunk
    expect: frozenset[int] = frozenset({400})
    parser_refuses: bool = False  # aiohttp's HTTP parser answers before the app: a plain-text 400


def b(body: bytes, **kwargs: Any) -> Hostile:
    return Hostile(body=body, **kwargs)


def h(*headers: bytes, expect: int = 401, parser_refuses: bool = False) -> Hostile:
    return Hostile(body=encoded(sample()), headers=headers, expect=frozenset({expect}),
                   parser_refuses=parser_refuses)


TEN_MB = b'{"MaHoSo": "' + b"A" * (10 * 1024 * 1024) + b'"}'

HOSTILE: dict[str, Hostile] = {
    # --- text that is not text ---------------------------------------------------------------------------
    "lone surrogate in ChuHoSo": b(fragment_at("ChuHoSo", b'"Nguy\\ud800n"')),
    "lone low surrogate in a file name": b(fragment_at("TaiLieuNop.0.TenTepDinhKem", b'"\\udc00.pdf"')),
    "lone surrogate in a key": b(b'{"\\ud83d": 1, ' + encoded(sample())[1:]),
    "NUL in MaHoSo": b(fragment_at("MaHoSo", b'"000.00.01.G12\\u0000-1"')),
    "NUL in SoDinhDanh": b(fragment_at("DinhDanhCHS.0.SoDinhDanh", b'"0010\\u000089012345"')),
    "ESC in TrichYeuHoSo": b(fragment_at("TrichYeuHoSo", b'"\\u001b[31mred"')),
    "BEL in Email": b(fragment_at("Email", b'"an\\u0007@example.vn"')),
    "CR LF in ChuHoSo": b(field_is("ChuHoSo", "An\r\nX-Injected: 1")),
    "C1 control in ChuHoSo": b(field_is("ChuHoSo", "An\u0085")),
    "line separator in MaTTHC": b(field_is("MaTTHC", "1.0\u2028")),
    "overlong UTF-8 in ChuHoSo": b(fragment_at("ChuHoSo", b'"\xc0\xaf"')),
    "invalid UTF-8 in ChuHoSo": b(fragment_at("ChuHoSo", b'"\xff\xfe"')),
    "UTF-8 encoded surrogate in ChuHoSo": b(fragment_at("ChuHoSo", b'"\xed\xa0\x80"')),
    "truncated UTF-8 at the end": b(encoded(sample())[:-1] + b"\xe1"),
    "UTF-8 byte-order mark": b(b"\xef\xbb\xbf" + encoded(sample())),
    "UTF-16 body": b(json.dumps(sample(), ensure_ascii=False).encode("utf-16")),
    # --- size and shape ----------------------------------------------------------------------------------
    "10 MB body, declared": b(TEN_MB, expect=frozenset({413})),
    "10 MB body, chunked": b(TEN_MB, chunk=256 * 1024, expect=frozenset({413})),
    "1-byte chunks of a body with a wrong type": b(field_is("PhienBan", True), chunk=1),
    "1-byte chunks of invalid UTF-8": b(fragment_at("ChuHoSo", b'"\xff"'), chunk=1),
    "depth 10,000 nesting": b(b'{"MaHoSo": ' + b"[" * 10_000 + b"]" * 10_000 + b"}"),
    "depth 100 in an unknown member": b(field_is("ThongTinKhac", nested(100))),
    "depth 20 in an unknown member": b(field_is("ThongTinKhac", nested(20))),
    "empty body": b(b""),
    "only whitespace": b(b" \r\n\t "),
    "two JSON values": b(encoded(sample()) + b" {}"),
    "a JSON array of the record": b(b"[" + encoded(sample()) + b"]"),
    "a JSON string": b(b'"' + NAME.encode() + b'"'),
    "null": b(b"null"),
    "truncated JSON": b(encoded(sample())[:200]),
    # --- numbers -----------------------------------------------------------------------------------------
    "1e400 as PhienBan": b(fragment_at("PhienBan", b"1e400")),
    "NaN as PhienBan": b(fragment_at("PhienBan", b"NaN")),
    "Infinity as KichThuoc": b(fragment_at("TaiLieuNop.0.KichThuoc", b"Infinity")),
    "-0 as LoaiDoiTuong": b(fragment_at("LoaiDoiTuong", b"-0")),
    "-0.0 as PhienBan": b(fragment_at("PhienBan", b"-0.0")),
    "a 5,000-digit PhienBan": b(fragment_at("PhienBan", b"9" * 5000)),
    "2**64 as PhienBan": b(field_is("PhienBan", 2**64)),
    "negative KichThuoc": b(field_is("TaiLieuNop.0.KichThuoc", -1)),
    # --- duplicate keys ----------------------------------------------------------------------------------
    "duplicate MaHoSo": b(b'{"MaHoSo": "' + f"{AGENCY}-261124-0999".encode() + b'", ' + encoded(sample())[1:]),
    "duplicate key in a file": b(fragment_at("TaiLieuNop.0", b'{"TepDinhKemId": "1", "TepDinhKemId": "2"}')),
    # --- wrong types at fields ---------------------------------------------------------------------------
    "MaHoSo a number": b(field_is("MaHoSo", 26112409)),
    "PhienBan true": b(field_is("PhienBan", True)),
    "ChuHoSo a list": b(field_is("ChuHoSo", [NAME])),
    "TaiLieuNop an object": b(field_is("TaiLieuNop", {"0": sample()["TaiLieuNop"][0]})),
    "TaiLieuNop item a string": b(field_is("TaiLieuNop.0", "Đơn đề nghị.pdf")),
    "DinhDanhCHS a string": b(field_is("DinhDanhCHS", ID_NUMBER)),
    "Base64 a number": b(field_is("TaiLieuNop.0.Base64", 12345)),
    "TrangThaiHoSo a float": b(field_is("TrangThaiHoSo", 1.0)),
    "IsDeleted a number": b(field_is("TaiLieuNop.0.IsDeleted", 2)),
    # --- unknown fields (tolerated and published in "national", unless they break a bound) ---------------
    "unknown field with a 300-character key": b(field_is("K" * 300, "x")),
    "unknown field holding 250,000 values": b(field_is("ThongTinKhac", [0] * 250_000)),
    "unknown field with a NUL": b(fragment_at("ThongTinKhac", b'"\\u0000"')),
    "unknown field with a lone surrogate": b(fragment_at("ThongTinKhac", b'["\\udfff"]')),
    # --- numbers as strings and strings as numbers -------------------------------------------------------
    "PhienBan in fullwidth digits": b(field_is("PhienBan", "\uff11")),
    "PhienBan signed": b(field_is("PhienBan", "+1")),
    "PhienBan with a space": b(field_is("PhienBan", " 1")),
    "PhienBan of 17 digits": b(field_is("PhienBan", "1" * 17)),
    "PhienBan as 1e3": b(field_is("PhienBan", "1e3")),
    "KichThuoc a string that lies": b(field_is("TaiLieuNop.0.KichThuoc", "999")),
    "SoDinhDanh a number (its leading zeros lost)": b(field_is("DinhDanhCHS.0.SoDinhDanh", 1089012345)),
    "NgayNopHoSo a number": b(field_is("NgayNopHoSo", 20261124080000)),
    "TrangThaiHoSo out of range": b(field_is("TrangThaiHoSo", "11")),
    # --- timestamps --------------------------------------------------------------------------------------
    "NgayNopHoSo in RFC 3339 at +25:00": b(field_is("NgayNopHoSo", "2026-11-24T08:00:00+25:00")),
    "NgayNopHoSo with an offset suffix": b(field_is("NgayNopHoSo", "20261124080000+0700")),
    "NgayNopHoSo with Z": b(field_is("NgayNopHoSo", "20261124080000Z")),
    "NgayNopHoSo at -12:00": b(field_is("NgayNopHoSo", "2026-11-24T08:00:00-12:00")),
    "NgayNopHoSo at hour 25": b(field_is("NgayNopHoSo", "20261124250000")),
    "NgayNopHoSo on 31 November": b(field_is("NgayNopHoSo", "20261131080000")),
    "NgayNopHoSo in 1999": b(field_is("NgayNopHoSo", "19991231235959")),
    # --- files -------------------------------------------------------------------------------------------
    "TenTepDinhKem climbing out": b(field_is("TaiLieuNop.0.TenTepDinhKem", "../../etc/passwd")),
    "TenTepDinhKem from the root": b(field_is("TaiLieuNop.0.TenTepDinhKem", "/etc/passwd")),
    "TenTepDinhKem climbing out, Windows": b(field_is("TaiLieuNop.0.TenTepDinhKem", "..\\..\\boot.ini")),
    "TenTepDinhKem on a drive": b(field_is("TaiLieuNop.0.TenTepDinhKem", "C:\\Windows\\win.ini")),
    "TenTepDinhKem with a NUL": b(fragment_at("TaiLieuNop.0.TenTepDinhKem", b'"don.pdf\\u0000.exe"')),
    "Base64 that is not base64": b(field_is("TaiLieuNop.0.Base64", "!!!!")),
    "Base64 without padding": b(field_is("TaiLieuNop.0.Base64", base64.b64encode(FILE).decode().rstrip("="))),
    "MaBam of another file": b(field_is("TaiLieuNop.0.MaBam", hashlib.sha256(b"another").hexdigest())),
    "two files with one id": b(changed(lambda r: r["TaiLieuNop"].append(dict(r["TaiLieuNop"][0])))),
    # --- headers -----------------------------------------------------------------------------------------
    "no Authorization": h(),
    "a wrong token": h(b"Authorization: Bearer wrong-token"),
    "Basic instead of Bearer": h(b"Authorization: Basic " + base64.b64encode(TOKEN.encode())),
    "the token twice": h(AUTH + b" " + TOKEN.encode()),
    "Authorization not UTF-8": h(b"Authorization: Bearer \xff\xfe"),
    "Authorization overlong UTF-8": h(b"Authorization: \xc0\xaf" + TOKEN.encode()),
    "the token then a Latin-1 byte": h(AUTH + b"\xe9"),
    "a second Authorization after CR LF": h(b"Authorization: Bearer wrong\r\n" + AUTH),
    "bare CR in Authorization": h(AUTH + b"\rX-Injected: 1", expect=400, parser_refuses=True),
    "bare LF in Authorization": h(AUTH + b"\nX-Injected: 1", expect=400, parser_refuses=True),
    "Authorization folded": h(b"Authorization: Bearer\r\n " + TOKEN.encode(), expect=400, parser_refuses=True),
    "NUL in Authorization": h(AUTH + b"\x00", expect=400, parser_refuses=True),
    "C0 control in Authorization": h(AUTH + b"\x1b[0m", expect=400, parser_refuses=True),
    "a header name with a space": h(b"Authorization : Bearer " + TOKEN.encode(), expect=400, parser_refuses=True),
}


@dataclass
class Served:
    port: int
    inbound: InboundStore
    pushes: list[str] = field(default_factory=list)

    async def send(self, case: Hostile) -> RawReply:
        headers = [*case.headers, b"Content-Type: application/json"]
        if case.chunk is not None:
            return await raw_request(self.port, chunked_request_parts("POST", PATH, case.body, chunk=case.chunk,
                                                                      headers=headers))
        return await raw_request(self.port, request_bytes("POST", PATH, headers=headers, body=case.body))


@contextlib.asynccontextmanager
async def served(tmp_path: Path) -> AsyncIterator[Served]:
    config = load_settings(None, state={"url": f"sqlite+aiosqlite:///{tmp_path / 'state.db'}"},
                           submissions={"attachments_dir": str(tmp_path / "attachments"),
                                        "max_dossier_bytes": MAX_DOSSIER_BYTES},
                           public={"listen": "127.0.0.1:0", "inbound_token": TOKEN})
    store = await StateStore.open(config.state.url)
    metrics = Metrics()
    inbound = InboundStore(store)
    relay = OutboxRelay(inbound, None, config.kafka, metrics)  # never runs: what is accepted stays owed
    intake = SubmissionIntake(config, load_mappings(DEFAULT_MAPPINGS_DIR), inbound, relay,
                              AttachmentStore(config.submissions.attachments_dir), metrics)
    assert max_pushed_body_bytes(intake.limits) == BODY_LIMIT < len(TEN_MB)
    app = create_public_app(metrics=metrics, submissions_path=PATH, payments_path=config.public.payments_path,
                            intake=intake, payments=None, max_submission_bytes=BODY_LIMIT, inbound_token=TOKEN)
    runner, url = await start_public(app, "127.0.0.1", 0)
    try:
        yield Served(int(url.rsplit(":", 1)[1]), inbound)
    finally:
        await runner.cleanup()
        await store.close()


def _no_identity(text: str) -> None:
    for value in (*IDENTITY, TOKEN):
        assert value not in text, f"{value[:4]}... reached {text[:200]!r}"


@pytest.mark.parametrize("name", list(HOSTILE))
async def test_a_hostile_push_is_refused_well_formed_owes_nothing_and_the_next_valid_push_is_taken(
        name: str, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    case = HOSTILE[name]
    caplog.set_level(logging.DEBUG)
    async with served(tmp_path) as endpoint:
        with capture_logs() as logs:
            reply = await endpoint.send(case)
            assert reply.status in case.expect, (reply.status, reply.body[:300])
            if case.parser_refuses:
                assert reply.headers["content-type"].startswith("text/plain")
            else:
                answer = reply.json()
                assert answer["error_code"] == -1 and isinstance(answer["message"], str) and answer["message"]
                _no_identity(answer["message"])
            assert await endpoint.inbound.outbox_backlog() == 0

            valid = await endpoint.send(Hostile(body=encoded(sample(f"{AGENCY}-261124-0902"))))
            assert (valid.status, valid.json()["error_code"]) == (200, 0), valid.body[:300]
            assert await endpoint.inbound.outbox_backlog() == 1
    _no_identity(repr(logs))
    _no_identity("\n".join(f"{r.getMessage()} {r.exc_text or ''} {r.exc_info or ''}" for r in caplog.records))
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR], [r.getMessage() for r in caplog.records]


async def test_a_valid_push_in_1_byte_chunks_and_an_unknown_member_is_accepted_and_kept(tmp_path: Path) -> None:
    """The controls: what arrives one byte at a time is read whole; a member this service does not read is
    tolerated and published as received (in ``national``)."""
    record = sample()
    record["ThongTinKhac"] = {"GhiChu": "nộp trực tuyến"}
    async with served(tmp_path) as endpoint:
        reply = await endpoint.send(Hostile(body=encoded(record), chunk=1))
        assert (reply.status, reply.json()["error_code"]) == (200, 0)
        [owed] = await endpoint.inbound.unpublished()
        assert json.loads(owed.value)["national"]["ThongTinKhac"] == {"GhiChu": "nộp trực tuyến"}


# --- the record parser, for any JSON value ------------------------------------------------------------------

FIELDS = ["MaHoSo", "PhienBan", "MaTTHC", "DonViXuLy", "NgayNopHoSo", "TrangThaiHoSo", "ChuHoSo", "LoaiDoiTuong",
          "HinhThuc", "TrichYeuHoSo", "SoDienThoai", "Email", "MaDoiTuong", "DiaChiChuHoSo", "DinhDanhCHS",
          "LoaiDinhDanh", "SoDinhDanh", "TaiLieuNop", "TepDinhKemId", "TenTepDinhKem", "MaThanhPhanHoSo",
          "KichThuoc", "MaBam", "Base64", "DuongDanTaiTepTin", "IsDeleted"]
SCALARS = (st.none() | st.booleans() | st.integers() | st.integers(min_value=-2**70, max_value=2**70)
           | st.floats() | st.text(max_size=20)
           | st.sampled_from(["", "1", "0", "-0", "True", "false", "20261124080000", "20261131250000", AGENCY,
                              f"{AGENCY}-1", "aGVsbG8=", "!!!!", "\ud800", "\x00", "../../etc/passwd", "a" * 64,
                              "1.009972.000.00.00.G12", "9" * 30]))
JSON = st.recursive(SCALARS, lambda inner: st.lists(inner, max_size=4)
                    | st.dictionaries(st.sampled_from(FIELDS) | st.text(max_size=6), inner, max_size=8),
                    max_leaves=24)


def _near_valid() -> st.SearchStrategy[Any]:
    """The sample with some of its members (top level or in its file and identity) replaced by any JSON."""
    def build(top: dict[str, Any], in_file: dict[str, Any], in_identity: dict[str, Any]) -> dict[str, Any]:
        record = sample()
        record["TaiLieuNop"][0].update(in_file)
        record["DinhDanhCHS"][0].update(in_identity)
        record.update(top)
        return record

    members = st.dictionaries(st.sampled_from(FIELDS), JSON, max_size=3)
    return st.builds(build, members, members, members)


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.one_of(JSON, _near_valid()), st.booleans())
def test_any_json_value_parses_or_raises_invalid_submission_never_anything_else(record: Any, inline: bool) -> None:
    refusal: InvalidSubmission | None = None
    try:
        parsed = parse_submission(record, inline=inline)
    except InvalidSubmission as error:
        refusal = error
    if refusal is not None:
        assert refusal.field is None or isinstance(refusal.field, str)
        assert isinstance(refusal.reason, str) and refusal.reason
    else:
        assert parsed.no == record["MaHoSo"] and parsed.revision >= 0


async def test_a_chunked_push_of_exactly_the_limit_is_read_and_one_byte_more_is_too_large(tmp_path: Path) -> None:
    async with served(tmp_path) as endpoint:
        for size, status in ((BODY_LIMIT, 400), (BODY_LIMIT + 1, 413)):
            body = b'{"a": "' + b"x" * (size - 10) + b'"}'
            body += b" " * (size - len(body))  # whitespace after the value: still one JSON value
            assert len(body) == size
            reply = await endpoint.send(Hostile(body=body, chunk=65_536))
            assert reply.status == status, (size, reply.body[:300])  # 400: read whole, then refused as a record
        assert await endpoint.inbound.outbox_backlog() == 0
