"""Hostile SOAP replies: the real ``PortalClient`` over the SOAP transport against a loopback fake that writes
every reply byte for byte, and ``SoapWire.reply`` fed random bytes and mutated envelopes.

Each hostile reply ends as a typed ``SyncError`` with a stable reason, and the same client then takes a good
reply: a DTD or an entity is refused unread (``unsafe_xml``: nothing fetched, nothing expanded, no file quoted),
a reply over the bound is refused before anything parses it (``reply_too_large``), what is not XML is
``malformed_reply`` (or, under an HTTP 5xx, that status's error), an envelope holding anything but the
operation's one response element is ``unexpected_reply``, a response the XSD refuses is ``invalid_reply`` naming
the element's path and the rule, and a fault is classified by its detail's code or else its fault code. No error
message, and no log line, quotes the password, the session or the content of a local file."""

from __future__ import annotations

import asyncio
import gzip
import http.server
import resource
import threading
import tracemalloc
import uuid
from collections.abc import Awaitable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest
import structlog
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import SecretStr

from connector.config import PortalSettings
from connector.errors import SyncError
from connector.portal import soap
from connector.portal.client import PortalClient
from connector.portal.errors import (
    MAX_REPLY_BYTES,
    SUCCESS_CODES,
    PortalRejected,
    PortalUnavailable,
    SessionExpired,
    normalise_code,
)
from connector.portal.soap import SOAP11, SOAP12, SoapWire
from tests.hostile.fake_adapter import SOAP_LOGIN, STEP_SECONDS, FakeAdapter, Reply, adapter

T = TypeVar("T")

NS = "urn:portal-sync:dvcqg:v1"
TYPES = "urn:portal-sync:dvcqg:types:v1"
XML = "text/xml; charset=utf-8"
PASSWORD = "pw-SECRET-3f1c9e"  # a test's own; sent as PasswordText, so a leak would show
SESSION = "session-SECRET-8d20b7"
SECRETS = (PASSWORD, SESSION)
PUSH = "DongBoHoSoMC"
LOOKUP = "TraCuuHoSo"
DOSSIER = "000.00.01.G12-261124-0004"

# A record DongBoHoSoMC's XSD takes (the required fields of t:HoSo).
RECORD = {
    "MaHoSo": "000.00.01.H22-261124-0004", "MaTTHC": "1.001234", "TenTTHC": "Cấp giấy phép xây dựng",
    "MaLinhVuc": "G09-XD", "TenLinhVuc": "Xây dựng", "LoaiDoiTuong": "1", "NgayTiepNhan": "20241126083000",
    "NgayHenTra": "20241210170000", "TrangThaiHoSo": "2", "HinhThuc": "0", "DonViXuLy": "UBND huyện",
}


# --- envelopes ----------------------------------------------------------------------------------------------


def envelope(body: str, *, namespace: str = SOAP11, prolog: str = "") -> bytes:
    return f'{prolog}<s:Envelope xmlns:s="{namespace}"><s:Body>{body}</s:Body></s:Envelope>'.encode()


def response(operation: str, inner: str, *, namespace: str = NS) -> str:
    return (f'<{operation}Response xmlns="{namespace}"><{operation}Result>{inner}</{operation}Result>'
            f"</{operation}Response>")


def result(code: str = "0", message: str = "ok") -> str:
    return f"<error_code>{code}</error_code><message>{message}</message>"


GOOD_PUSH = envelope(response(PUSH, result()))
GOOD_LOOKUP = envelope(response(LOOKUP, result() + f'<result><HoSo xmlns="{TYPES}"><MaHoSo>{DOSSIER}</MaHoSo>'
                                                    "<TrangThaiHoSo>4</TrangThaiHoSo></HoSo></result>"))
LOOKED_UP = {"MaHoSo": DOSSIER, "TrangThaiHoSo": "4"}
LOGIN_OK = envelope(response(SOAP_LOGIN, result() + f"<session>{SESSION}</session>"))


def portal_fault(code: str, message: str = "Hồ sơ không hợp lệ", dossier: str | None = None) -> str:
    named = f"<MaHoSo>{dossier}</MaHoSo>" if dossier else ""
    return (f'<detail><PortalFault xmlns="{TYPES}"><error_code>{code}</error_code><message>{message}</message>'
            f"{named}</PortalFault></detail>")


def fault(code: str, text: str = "fault", detail: str = "") -> bytes:
    """A SOAP 1.1 fault (faultcode, faultstring and detail are unqualified, as the specification has them)."""
    return envelope(f"<s:Fault><faultcode>{code}</faultcode><faultstring>{text}</faultstring>{detail}</s:Fault>")


def fault12(code: str, text: str = "fault", detail: str = "") -> bytes:
    return envelope(f'<s:Fault><s:Code><s:Value>{code}</s:Value></s:Code><s:Reason><s:Text xml:lang="vi">{text}'
                    f"</s:Text></s:Reason>{detail}</s:Fault>", namespace=SOAP12)


def billion_laughs(levels: int = 9) -> bytes:
    entities = '<!ENTITY lol0 "lol">' + "".join(
        f'<!ENTITY lol{i} "{f"&lol{i - 1};" * 10}">' for i in range(1, levels + 1))
    return envelope(response(PUSH, result(message=f"&lol{levels};")),
                    prolog=f'<?xml version="1.0"?><!DOCTYPE s:Envelope [{entities}]>')


def quadratic_blowup() -> bytes:
    """One 50 kB entity referenced 2,000 times: 100 MB if expanded."""
    return envelope(response(PUSH, result(message="&a;" * 2000)),
                    prolog=f'<!DOCTYPE s:Envelope [<!ENTITY a "{"a" * 50_000}">]>')


# --- the client, and what every hostile reply must leave behind ---------------------------------------------


def soap_settings(fake: FakeAdapter, **soap_changes: Any) -> PortalSettings:
    values: dict[str, Any] = {"address": fake.url + "/soap", "auth": "username_token", "password_type": "text"}
    return fake.settings(transport="soap", password=SecretStr(PASSWORD), soap={**values, **soap_changes})


def soap_client(fake: FakeAdapter, **soap_changes: Any) -> PortalClient:
    return PortalClient(soap_settings(fake, **soap_changes))


async def within(call: Awaitable[T]) -> T:
    return await asyncio.wait_for(call, STEP_SECONDS)


async def push(client: PortalClient) -> dict[str, Any]:
    return await within(client.call(PUSH, {"isUpdating": "True", "data": [RECORD]}))


async def refused_push(client: PortalClient) -> tuple[PortalUnavailable, int]:
    """A push that must end as ``PortalUnavailable``, and the peak of Python's allocations while it ran."""
    tracemalloc.start()
    try:
        with pytest.raises(PortalUnavailable) as caught:
            await push(client)
        return caught.value, tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


async def lookup(client: PortalClient) -> Any:
    return await within(client.submission(DOSSIER))


async def good_call(client: PortalClient, service: str) -> None:
    """The call the fake answers with the good reply queued after the hostile one: it must succeed."""
    if service == PUSH:
        assert await push(client) == {"error_code": "0", "message": "ok"}
    else:
        assert await lookup(client) == LOOKED_UP


def good_reply(service: str) -> Reply:
    return Reply(GOOD_PUSH if service == PUSH else GOOD_LOOKUP, content_type=XML)


def texts_of(error: BaseException) -> str:
    """Everything an error can show: its message, str and repr, along its whole chain."""
    parts: list[str] = []
    seen: BaseException | None = error
    while seen is not None and len(parts) < 30:
        parts += [str(seen), repr(seen), str(getattr(seen, "message", ""))]
        seen = seen.__cause__ or seen.__context__
    return "\n".join(parts)


def assert_quotes_no_secret(error: BaseException, logs: list[Any], *more: str) -> None:
    shown = texts_of(error) + "\n" + repr(logs)
    for secret in (*SECRETS, *more):
        assert secret not in shown


async def hostile_then_good(fake: FakeAdapter, service: str, hostile: Reply, *, client: PortalClient | None = None,
                            secrets: tuple[str, ...] = ()) -> SyncError:
    """``hostile`` answers one call of ``service``, a good reply the next, on one client: the first ends as a
    SyncError (returned), which quotes no secret, in no log line either; the second succeeds."""
    fake.answer(service, hostile, good_reply(service))
    async with client or soap_client(fake) as used:
        with structlog.testing.capture_logs() as logs, pytest.raises(SyncError) as caught:
            await (push(used) if service == PUSH else lookup(used))
        assert_quotes_no_secret(caught.value, logs, *secrets)
        await good_call(used, service)
    return caught.value


# --- the table ----------------------------------------------------------------------------------------------

UNSAFE = (PortalUnavailable, "unsafe_xml")
MALFORMED = (PortalUnavailable, "malformed_reply")
UNEXPECTED = (PortalUnavailable, "unexpected_reply")
INVALID = (PortalUnavailable, "invalid_reply")

HTML_PAGE = b"<html><head><title>Bad Gateway</title></head><body><p>Upstream down<br></body></html>"
DTD_ONLY = '<!DOCTYPE s:Envelope [<!ELEMENT s:Envelope ANY><!ATTLIST s:Envelope id ID #IMPLIED>]>'

# name -> (service, HTTP status, body, (error class, reason))
CASES: dict[str, tuple[str, int, bytes, tuple[type[SyncError], str]]] = {
    # DTDs: refused whatever they declare
    "a DTD with an internal subset and no entity": (PUSH, 200, envelope(response(PUSH, result()), prolog=DTD_ONLY),
                                                    UNSAFE),
    "a bare DOCTYPE": (PUSH, 200, envelope(response(PUSH, result()), prolog="<!DOCTYPE s:Envelope>"), UNSAFE),
    "an unreferenced internal entity": (
        PUSH, 200, envelope(response(PUSH, result()), prolog='<!DOCTYPE s:Envelope [<!ENTITY e "x">]>'), UNSAFE),
    "an entity bomb small enough for libxml2 to let through": (PUSH, 200, billion_laughs(3), UNSAFE),
    "an HTML5 page (its DOCTYPE)": (PUSH, 200, "<!DOCTYPE html><html><body>thành công</body></html>".encode(), UNSAFE),
    # not XML
    "HTML that is not well-formed, labelled text/xml": (PUSH, 200, HTML_PAGE, MALFORMED),
    "JSON labelled text/xml": (PUSH, 200, b'{"error_code": 0, "message": "ok"}', MALFORMED),
    "an envelope cut short": (PUSH, 200, GOOD_PUSH[: len(GOOD_PUSH) // 2], MALFORMED),
    "an undeclared entity": (PUSH, 200, envelope(response(PUSH, result(message="&e;"))), MALFORMED),
    "a UTF-16 declaration over UTF-8 bytes": (PUSH, 200, b'<?xml version="1.0" encoding="utf-16"?>' + GOOD_PUSH,
                                              MALFORMED),
    "nesting 300 deep": (PUSH, 200, envelope(response(PUSH, result(message="<a>" * 300 + "</a>" * 300))),
                         MALFORMED),
    "an empty body under 200": (PUSH, 200, b"", MALFORMED),
    "HTML under 502 (the status's error)": (PUSH, 502, HTML_PAGE, (PortalUnavailable, "http_502")),
    "JSON under 503 (the status's error)": (LOOKUP, 503, b'{"error_code": 0}', (PortalUnavailable, "http_503")),
    "an empty body under 500": (PUSH, 500, b"", (PortalUnavailable, "http_500")),
    # envelopes that do not hold the operation's one response
    "the response in another namespace": (PUSH, 200, envelope(response(PUSH, result(), namespace="urn:other:v1")),
                                          UNEXPECTED),
    "the response in no namespace": (PUSH, 200, envelope(response(PUSH, result(), namespace="")), UNEXPECTED),
    "the envelope in another namespace": (PUSH, 200, envelope(response(PUSH, result()), namespace="urn:x:soap"),
                                          UNEXPECTED),
    "well-formed XHTML under 200": (PUSH, 200, b"<html><body><p>OK</p></body></html>", UNEXPECTED),
    "two Body children": (PUSH, 200, envelope(response(PUSH, result()) * 2), UNEXPECTED),
    "a Body child after a fault": (PUSH, 200, envelope("<s:Fault><faultcode>s:Client</faultcode></s:Fault>"
                                                      + response(PUSH, result())), UNEXPECTED),
    "an empty Body": (PUSH, 200, envelope(""), UNEXPECTED),
    "no Body": (PUSH, 200, b'<s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/"><s:Header/>'
                           b"</s:Envelope>", UNEXPECTED),
    "a SOAP 1.2 envelope holding a SOAP 1.1 Body": (
        PUSH, 200, f'<e:Envelope xmlns:e="{SOAP12}" xmlns:s="{SOAP11}"><s:Body>{response(PUSH, result())}</s:Body>'
                   "</e:Envelope>".encode(), UNEXPECTED),
    "another operation's response": (PUSH, 200, GOOD_LOOKUP, UNEXPECTED),
    "the push's response to a lookup": (LOOKUP, 200, GOOD_PUSH, UNEXPECTED),
    "the request element sent back": (PUSH, 200, envelope(f'<{PUSH} xmlns="{NS}"><madonvi>x</madonvi></{PUSH}>'),
                                      UNEXPECTED),
    # what the XSD refuses
    "a result without error_code": (PUSH, 200, envelope(response(PUSH, "<message>ok</message>")), INVALID),
    "an error_code of 33 characters": (PUSH, 200, envelope(response(PUSH, result(code="1" * 33))), INVALID),
    "an empty error_code": (PUSH, 200, envelope(response(PUSH, result(code=""))), INVALID),
    "a message of 2,001 characters": (PUSH, 200, envelope(response(PUSH, result(message="x" * 2001))), INVALID),
    "an element the XSD does not declare": (PUSH, 200, envelope(response(PUSH, result() + "<extra>1</extra>")),
                                            INVALID),
    "the result's children unqualified": (
        PUSH, 200, envelope(f'<{PUSH}Response xmlns="{NS}"><{PUSH}Result xmlns="">{result()}</{PUSH}Result>'
                            f"</{PUSH}Response>"), INVALID),
    "no result at all": (PUSH, 200, envelope(f'<{PUSH}Response xmlns="{NS}"/>'), INVALID),
    "an xsi:type the schema does not have": (
        PUSH, 200, envelope(response(PUSH, result()).replace(
            f"<{PUSH}Result>", f'<{PUSH}Result xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" '
                               'xsi:type="KetQua">')), INVALID),
    "a looked-up record with status 11": (LOOKUP, 200, GOOD_LOOKUP.replace(b">4<", b">11<"), INVALID),
    "a looked-up record without MaHoSo": (LOOKUP, 200, GOOD_LOOKUP.replace(f"<MaHoSo>{DOSSIER}</MaHoSo>".encode(),
                                                                           b""), INVALID),
    # codes in a valid response
    "error_code -1": (PUSH, 200, envelope(response(PUSH, result(code="-1"))), (PortalRejected, "portal_rejected")),
    "error_code of spaces only": (PUSH, 200, envelope(response(PUSH, result(code="   "))),
                                  (PortalRejected, "bad_error_code")),
    "error_code 0 under 404": (PUSH, 404, GOOD_PUSH, (PortalRejected, "http_404")),
    # faults
    "a fault with an unknown code in its detail": (PUSH, 500, fault("s:Client", detail=portal_fault("XYZ-42")),
                                                   (PortalRejected, "portal_rejected")),
    "a fault with a code in its detail, under 200": (PUSH, 200, fault("s:Server", detail=portal_fault("XYZ-42")),
                                                     (PortalRejected, "portal_rejected")),
    "a Server fault without detail": (PUSH, 500, fault("s:Server"), (PortalUnavailable, "soap_fault_server")),
    "a Client fault without detail": (PUSH, 500, fault("s:Client"), (PortalRejected, "soap_fault_client")),
    "a fault whose detail the XSD refuses": (PUSH, 500, fault("s:Client", detail=portal_fault("X" * 40)),
                                             (PortalRejected, "soap_fault_client")),
    "a fault with a retryable code (BUSY)": (PUSH, 500, fault("s:Server", detail=portal_fault("BUSY")),
                                             (PortalUnavailable, "soap_fault_retryable")),
    "a fault with a retryable code, under a Client faultcode": (
        LOOKUP, 500, fault("s:Client", detail=portal_fault("503")), (PortalUnavailable, "soap_fault_retryable")),
    "a VersionMismatch fault": (PUSH, 500, fault("s:VersionMismatch"), (PortalUnavailable, "soap_fault_unknown")),
    "a fault without a faultcode": (PUSH, 500, envelope("<s:Fault/>"), (PortalUnavailable, "soap_fault_unknown")),
    "a SOAP 1.2 Receiver fault": (PUSH, 500, fault12("s:Receiver"), (PortalUnavailable, "soap_fault_server")),
    "a SOAP 1.2 Sender fault": (PUSH, 500, fault12("s:Sender"), (PortalRejected, "soap_fault_client")),
    "a SOAP 1.2 fault with an unknown code in its Detail": (
        PUSH, 500, fault12("s:Sender", detail=portal_fault("XYZ-42").replace("detail>", "s:Detail>")),
        (PortalRejected, "portal_rejected")),
}

# Replies a parser meets before the checks look (libxml2's entity limit stops a bomb before zeep looks for the
# DTD; SOAP 1.1's dotted fault codes): classified by what they are, not by how the parse failed.
MISREADABLE: dict[str, tuple[bytes, tuple[type[SyncError], str]]] = {
    "billion laughs": (billion_laughs(), UNSAFE),
    "a quadratic blow-up": (quadratic_blowup(), UNSAFE),
    "a DTD before an envelope cut short": (envelope(response(PUSH, result()), prolog=DTD_ONLY)[:-20], UNSAFE),
    "a Client.Authentication fault (SOAP 1.1 dotted code)": (fault("s:Client.Authentication"),
                                                             (PortalRejected, "soap_fault_client")),
    "a Server.userException fault (SOAP 1.1 dotted code)": (fault("s:Server.userException"),
                                                            (PortalUnavailable, "soap_fault_server")),
}


@pytest.mark.parametrize("name", sorted(CASES))
async def test_a_hostile_reply_ends_as_a_classified_error_and_the_client_keeps_working(
        adapter: FakeAdapter, name: str) -> None:
    service, status, body, (kind, reason) = CASES[name]
    error = await hostile_then_good(adapter, service, Reply(body, status=status, content_type=XML, chunk=5))
    assert (type(error), error.reason) == (kind, reason), error.message
    assert adapter.calls == [service, service]


@pytest.mark.parametrize("name", sorted(MISREADABLE))
async def test_a_hostile_reply_once_misread_is_classified_by_what_it_is(adapter: FakeAdapter, name: str) -> None:
    body, (kind, reason) = MISREADABLE[name]
    error = await hostile_then_good(adapter, PUSH, Reply(body, status=500 if b"Fault" in body else 200,
                                                         content_type=XML))
    assert (type(error), error.reason) == (kind, reason), error.message


# --- DTDs and entities: nothing read, fetched or expanded ---------------------------------------------------


class _Recorder(http.server.BaseHTTPRequestHandler):
    """Answers every GET with an entity declaration, and remembers that it was asked."""

    def do_GET(self) -> None:
        self.server.hits.append(self.path)  # type: ignore[attr-defined]
        self.send_response(200)
        self.send_header("Content-Type", "application/xml-dtd")
        self.end_headers()
        self.wfile.write(b'<!ENTITY leak "FETCHED">')

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def far_server() -> Iterator[tuple[str, list[str]]]:
    """A loopback HTTP server in its own thread (a fetch made by the parser blocks the event loop): its URL and
    the paths asked of it."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Recorder)
    server.hits = []  # type: ignore[attr-defined]
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", server.hits  # type: ignore[attr-defined]
    server.shutdown()
    server.server_close()
    thread.join(STEP_SECONDS)


@pytest.fixture
def secret_file(tmp_path: Path) -> tuple[Path, str]:
    marker = f"MARKER-{uuid.uuid4().hex}"
    path = tmp_path / "host-secret.txt"
    path.write_text(f"secret={marker}\n", encoding="utf-8")
    return path, marker


def xxe_replies(secret: Path, far: str) -> dict[str, bytes]:
    uri = secret.as_uri()

    def ok_with(message: str) -> str:
        return response(PUSH, result(message=message))

    return {
        "a file entity": envelope(ok_with("&e;"), prolog=f'<!DOCTYPE s:Envelope [<!ENTITY e SYSTEM "{uri}">]>'),
        "a file entity, declared in the XML prolog": envelope(
            ok_with("&e;"), prolog=f'<?xml version="1.0"?><!DOCTYPE s:Envelope [<!ENTITY e SYSTEM "{uri}">]>'),
        "a file parameter entity": envelope(ok_with("x"), prolog=f'<!DOCTYPE s:Envelope [<!ENTITY % p SYSTEM "{uri}">'
                                                                 " %p;]>"),
        "a file as the external DTD": envelope(ok_with("x"), prolog=f'<!DOCTYPE s:Envelope SYSTEM "{uri}">'),
        "an HTTP entity": envelope(ok_with("&e;"), prolog=f'<!DOCTYPE s:Envelope [<!ENTITY e SYSTEM "{far}/e">]>'),
        "an HTTP parameter entity": envelope(ok_with("&leak;"), prolog=f'<!DOCTYPE s:Envelope [<!ENTITY % p SYSTEM '
                                                                       f'"{far}/p.dtd"> %p;]>'),
        "an HTTP external DTD": envelope(ok_with("&leak;"), prolog=f'<!DOCTYPE s:Envelope SYSTEM "{far}/d.dtd">'),
        "a file entity inside the fault's detail": fault("s:Client", detail=portal_fault("&e;")).replace(
            b"<s:Envelope", f'<!DOCTYPE s:Envelope [<!ENTITY e SYSTEM "{uri}">]><s:Envelope'.encode(), 1),
    }


XXE_NAMES = sorted(xxe_replies(Path("/x"), "http://x"))


@pytest.mark.parametrize("name", XXE_NAMES)
async def test_an_external_entity_is_refused_unread_and_nothing_quotes_the_file(
        adapter: FakeAdapter, secret_file: tuple[Path, str], far_server: tuple[str, list[str]], name: str) -> None:
    path, marker = secret_file
    far, hits = far_server
    body = xxe_replies(path, far)[name]
    # Under 200: under a 5xx the status's error would be raised instead (the reply is refused unread either way).
    error = await hostile_then_good(adapter, PUSH, Reply(body, content_type=XML), secrets=(marker, "FETCHED"))
    assert (type(error), error.reason) == UNSAFE
    assert marker not in error.message and str(path) not in error.message
    assert hits == []  # nothing was fetched


async def test_an_entity_bomb_is_refused_without_being_expanded(adapter: FakeAdapter) -> None:
    bombs = [billion_laughs(), quadratic_blowup()]
    adapter.answer(PUSH, *(Reply(bomb, content_type=XML) for bomb in bombs), good_reply(PUSH))
    async with soap_client(adapter) as client:
        for _ in bombs:
            # tracemalloc sees Python's allocations; libxml2's own would show in the peak resident size.
            resident = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
            error, peak = await refused_push(client)
            grown = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - resident  # kB on Linux
            assert error.reason == "unsafe_xml"  # refused, retryable, never a record's refusal
            assert peak < 20 * 1024 * 1024, peak
            assert grown < 200 * 1024, grown
            assert len(error.message) < 2000
        await good_call(client, PUSH)


# --- size -----------------------------------------------------------------------------------------------


def padded(size: int, *, inside: bool) -> bytes:
    """A good DongBoHoSoMC reply of exactly ``size`` bytes: padded with whitespace between elements (still valid),
    or (``inside``) inside its message (valid-looking, over the message's bound)."""
    head, tail = GOOD_PUSH.split(b"<message>ok</message>")
    if inside:
        head += b"<message>"
        tail = b"</message>" + tail
        return head + b"x" * (size - len(head) - len(tail)) + tail
    tail = b"<message>ok</message>" + tail
    return head + b" " * (size - len(head) - len(tail)) + tail


async def test_a_50_mb_reply_is_refused_by_the_bound_before_anything_parses_it(
        adapter: FakeAdapter, monkeypatch: pytest.MonkeyPatch) -> None:
    huge = padded(50 * 1024 * 1024, inside=True)  # built before tracing: the fake's own copy is not the client's
    parsed: list[int] = []
    real_parse = soap.parse_reply

    def spy(body: bytes) -> Any:
        parsed.append(len(body))
        return real_parse(body)

    monkeypatch.setattr(soap, "parse_reply", spy)
    adapter.answer(PUSH, Reply(huge, content_type=XML), good_reply(PUSH))
    async with soap_client(adapter) as client:
        error, peak = await refused_push(client)
        assert error.reason == "reply_too_large"
        assert str(MAX_REPLY_BYTES) in error.message
        assert parsed == []  # refused before parsing
        assert peak < 3 * MAX_REPLY_BYTES < 50 * 1024 * 1024, peak
        await good_call(client, PUSH)
    assert parsed == [len(GOOD_PUSH)]


async def test_a_compressed_reply_is_bounded_by_what_it_inflates_to(adapter: FakeAdapter) -> None:
    """51 kB of gzip that inflate to 50 MB: the bound counts the inflated bytes, and inflating stops near it."""
    bomb = gzip.compress(padded(50 * 1024 * 1024, inside=True), compresslevel=9)
    assert len(bomb) < MAX_REPLY_BYTES // 100
    adapter.answer(PUSH, Reply(bomb, content_type=XML, headers=(("Content-Encoding", "gzip"),)), good_reply(PUSH))
    async with soap_client(adapter) as client:
        error, peak = await refused_push(client)
        assert error.reason == "reply_too_large"
        assert peak < 3 * MAX_REPLY_BYTES, peak
        await good_call(client, PUSH)


async def test_a_reply_of_exactly_the_bound_is_read_and_one_byte_more_is_too_large(adapter: FakeAdapter) -> None:
    bound = 5000
    adapter.answer(PUSH, Reply(padded(bound, inside=False), content_type=XML, chunk=3),
                   Reply(padded(bound + 1, inside=False), content_type=XML, chunk=3),
                   Reply(padded(bound, inside=True), content_type=XML))
    async with soap_client(adapter) as client:
        call = client.call(PUSH, {"isUpdating": "False", "data": [RECORD]}, max_bytes=bound)
        assert await within(call) == {"error_code": "0", "message": "ok"}
        with pytest.raises(PortalUnavailable) as too_large:
            await within(client.call(PUSH, {"isUpdating": "False", "data": [RECORD]},
                                     max_bytes=bound))
        assert too_large.value.reason == "reply_too_large"
        with pytest.raises(PortalUnavailable) as invalid:  # within the bound, a message over its XSD length
            await within(client.call(PUSH, {"isUpdating": "False", "data": [RECORD]},
                                     max_bytes=bound))
        assert invalid.value.reason == "invalid_reply"
        assert "SCHEMAV_CVC_MAXLENGTH_VALID" in invalid.value.message


# --- what the errors say ------------------------------------------------------------------------------------


@pytest.mark.parametrize(("body", "rule", "element"), [
    (envelope(response(PUSH, "<message>ok</message>")), "SCHEMAV_ELEMENT_CONTENT", f"{{{NS}}}error_code"),
    (envelope(response(PUSH, result(code="1" * 33))), "SCHEMAV_CVC_MAXLENGTH_VALID", f"{{{NS}}}error_code"),
])
async def test_an_invalid_reply_names_the_element_path_and_the_rule(
        adapter: FakeAdapter, body: bytes, rule: str, element: str) -> None:
    error = await hostile_then_good(adapter, PUSH, Reply(body, content_type=XML))
    assert isinstance(error, PortalUnavailable) and error.reason == "invalid_reply"
    service, path, named_rule, detail = error.message.split(": ", 3)
    assert (service, named_rule) == (PUSH, rule)
    assert path.startswith("/*/*/*")  # the response, its result, the element
    assert element in detail
    assert error.quotes_remote_text  # lxml's text may quote a value of the reply


async def test_a_fault_with_an_unknown_code_is_the_records_refusal_naming_the_dossier(adapter: FakeAdapter) -> None:
    body = fault("s:Client", "Dữ liệu không hợp lệ", portal_fault("XYZ-42", "Mã TTHC không tồn tại",
                                                                  dossier=RECORD["MaHoSo"]))
    error = await hostile_then_good(adapter, PUSH, Reply(body, status=500, content_type=XML))
    assert isinstance(error, PortalRejected)
    assert (error.reason, error.error_code, error.affects_every_record) == ("portal_rejected", "XYZ-42", False)
    assert error.message == f"Mã TTHC không tồn tại (MaHoSo {RECORD['MaHoSo']})"
    assert error.quotes_remote_text


@pytest.mark.parametrize(("body", "status", "reason"), [
    (fault("s:Server", detail=portal_fault("BUSY")), 500, "soap_fault_retryable"),
    (fault("s:Server"), 503, "soap_fault_server"),
    (HTML_PAGE, 502, "http_502"),
])
async def test_a_retryable_answer_honours_retry_after(adapter: FakeAdapter, body: bytes, status: int,
                                                      reason: str) -> None:
    hostile = Reply(body, status=status, content_type=XML, headers=(("Retry-After", "7"),))
    error = await hostile_then_good(adapter, PUSH, hostile)
    assert isinstance(error, PortalUnavailable)
    assert (error.reason, error.retry_after, error.kind, error.affects_every_record) == (reason, 7.0, "retryable",
                                                                                       True)


async def test_a_client_fault_without_a_code_waits_for_every_record(adapter: FakeAdapter) -> None:
    error = await hostile_then_good(adapter, PUSH, Reply(fault("s:Client", "Bad SOAPAction"), status=500,
                                                         content_type=XML))
    assert isinstance(error, PortalRejected)
    assert (error.reason, error.error_code, error.affects_every_record) == ("soap_fault_client", None, True)


@pytest.mark.parametrize("code", ["0", "00"])
async def test_a_fault_carrying_the_success_code_is_not_the_records_refusal(adapter: FakeAdapter, code: str) -> None:
    error = await hostile_then_good(adapter, PUSH, Reply(fault("s:Server", detail=portal_fault(code)), status=500,
                                                         content_type=XML))
    assert error.affects_every_record


# --- sessions, envelopes of the other SOAP version -----------------------------------------------------------


async def test_a_soap_1_2_envelope_where_1_1_is_bound_is_read_by_its_own_namespace(adapter: FakeAdapter) -> None:
    """The WSDL binds SOAP 1.1, but ``SoapWire`` reads an Envelope of either version (its Body's element is still
    checked by name, namespace and XSD): a platform's proxy that answers in 1.2 is not a failure."""
    adapter.answer(PUSH, Reply(envelope(response(PUSH, result()), namespace=SOAP12),
                               content_type="application/soap+xml; charset=utf-8"))
    async with soap_client(adapter) as client:
        assert await push(client) == {"error_code": "0", "message": "ok"}


async def test_session_auth_logs_in_with_dang_nhap_and_survives_hostile_replies(adapter: FakeAdapter) -> None:
    adapter.login = Reply(LOGIN_OK, content_type=XML, chunk=3)
    client = soap_client(adapter, auth="session")
    error = await hostile_then_good(adapter, PUSH, Reply(billion_laughs(), content_type=XML), client=client)
    assert isinstance(error, PortalUnavailable)
    assert adapter.logins == 1
    login_body = adapter.requests[0][1]
    assert adapter.requests[0][0] == SOAP_LOGIN and PASSWORD.encode() in login_body
    for service, body in adapter.requests[1:]:
        assert service == PUSH
        assert f"{SESSION}</".encode() in body  # the Session header
        assert PASSWORD.encode() not in body


async def test_an_expired_session_fault_logs_in_again_once_and_re_sends(adapter: FakeAdapter) -> None:
    adapter.login = Reply(LOGIN_OK, content_type=XML)
    expired = Reply(fault("s:Client", detail=portal_fault("-2", "Phiên làm việc hết hạn")), status=500,
                    content_type=XML)
    adapter.answer(PUSH, expired, good_reply(PUSH), expired, expired, good_reply(PUSH))
    async with soap_client(adapter, auth="session") as client:
        await good_call(client, PUSH)
        assert adapter.logins == 2
        with pytest.raises(SessionExpired):  # refused again after the fresh login: no loop
            await push(client)
        assert adapter.logins == 3
        await good_call(client, PUSH)
    assert adapter.calls == [PUSH] * 5


@pytest.mark.parametrize(("login", "reason"), [
    (envelope(response(SOAP_LOGIN, result() + "<session>&e;</session>"),
              prolog='<!DOCTYPE s:Envelope [<!ENTITY e "forged-session">]>'), "unsafe_xml"),
    (envelope(response(SOAP_LOGIN, result())), "malformed_reply"),  # no session in it
    (envelope(response(PUSH, result())), "unexpected_reply"),
    (envelope(response(SOAP_LOGIN, result() + "<session>" + "s" * 4001 + "</session>")), "invalid_reply"),
    (fault("s:Server"), "soap_fault_server"),
])
async def test_a_hostile_login_reply_is_a_retryable_error_and_the_next_login_works(
        adapter: FakeAdapter, login: bytes, reason: str) -> None:
    adapter.login = Reply(login, status=500 if b"Fault" in login else 200, content_type=XML)
    adapter.answer(PUSH, good_reply(PUSH))
    async with soap_client(adapter, auth="session") as client:
        with structlog.testing.capture_logs() as logs, pytest.raises(PortalUnavailable) as caught:
            await push(client)
        assert caught.value.reason == reason
        assert_quotes_no_secret(caught.value, logs)
        assert adapter.calls == []  # nothing sent without a session
        adapter.login = Reply(LOGIN_OK, content_type=XML)
        await good_call(client, PUSH)
    assert adapter.logins == 2


@pytest.mark.parametrize(("status", "code"), [(404, "0"), (302, "0"), (200, " ")])
async def test_a_refused_login_reply_does_not_quote_the_session_it_carries(
        adapter: FakeAdapter, status: int, code: str) -> None:
    adapter.login = Reply(envelope(response(SOAP_LOGIN, f"<error_code>{code}</error_code><session>{SESSION}"
                                                        "</session>")), status=status, content_type=XML)
    async with soap_client(adapter, auth="session") as client:
        with pytest.raises(SyncError) as caught:
            await push(client)
    assert caught.value.reason == "login_failed"
    assert SESSION not in texts_of(caught.value)


async def test_an_already_exists_fault_on_a_create_is_re_sent_as_an_update(adapter: FakeAdapter) -> None:
    exists = fault("s:Client", detail=portal_fault("3", "Hồ sơ đã tồn tại trên hệ thống"))
    adapter.answer(PUSH, Reply(exists, status=500, content_type=XML), good_reply(PUSH))
    async with soap_client(adapter) as client:
        assert await within(client.push_dossiers([RECORD], updating=False)) is True
    assert [b"isUpdating>False<" in body for _, body in adapter.requests] == [True, False]


# --- any bytes at all, straight into the wire ------------------------------------------------------------------

WIRE = SoapWire(PortalSettings(transport="soap", username="u", password=SecretStr(PASSWORD), madonvi="000.00.01.H22",
                               soap={"address": "http://127.0.0.1:9/soap", "auth": "username_token"}))
SEEDS = [GOOD_PUSH, GOOD_LOOKUP, fault("s:Client", detail=portal_fault("XYZ-42", dossier="H22-1")),
         fault12("s:Receiver", detail=portal_fault("BUSY").replace("detail>", "s:Detail>")),
         envelope(response(PUSH, result()), prolog=DTD_ONLY)]


@st.composite
def mutated(draw: st.DrawFn) -> bytes:
    body = bytearray(draw(st.sampled_from(SEEDS)))
    for _ in range(draw(st.integers(1, 4))):
        at = draw(st.integers(0, len(body)))
        how = draw(st.sampled_from(["flip", "insert", "delete", "cut", "tag"]))
        if how == "flip" and at < len(body):
            body[at] = draw(st.integers(0, 255))
        elif how == "insert":
            body[at:at] = draw(st.sampled_from([b"<", b">", b"&", b"&e;", b"]]>", b"<!--", b"\x00", b"\xff",
                                                b"<!DOCTYPE x>", b'xmlns="urn:x"', b"<x/>", b"\xc3\xa0"]))
        elif how == "delete":
            del body[at:at + draw(st.integers(1, 40))]
        elif how == "cut":
            del body[at:]
        elif how == "tag":
            text = draw(st.text(max_size=40)).encode()
            body = bytearray(bytes(body).replace(b">0<", b">" + text + b"<", 1).replace(b">ok<", b">" + text + b"<"))
    return bytes(body)


@given(service=st.sampled_from([PUSH, LOOKUP, SOAP_LOGIN]),
       status=st.sampled_from([200, 201, 400, 401, 404, 500, 502, 503]),
       body=st.one_of(st.binary(max_size=300), mutated()))
@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_any_reply_is_a_success_or_a_sync_error_and_nothing_else(service: str, status: int, body: bytes) -> None:
    headers = {"Content-Type": XML}
    refused: SyncError | None = None
    try:
        reply = (WIRE.login_reply(status, headers, body) if service == SOAP_LOGIN
                 else WIRE.reply(service, status, headers, body))
    except SyncError as error:  # anything else fails the test
        refused = error
    if refused is not None:
        assert not any(secret in texts_of(refused) for secret in SECRETS)
        return
    assert 200 <= status < 300
    if service == SOAP_LOGIN:
        assert isinstance(reply, str) and reply
    else:
        assert isinstance(reply, dict) and normalise_code(reply["error_code"]) in SUCCESS_CODES


__all__ = ["adapter"]
