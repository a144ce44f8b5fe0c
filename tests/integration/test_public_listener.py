"""The listeners that face the outside: the public one needs a credential unless told otherwise (a bearer
token inline or in a file, or mutual TLS); an ``Authorization`` header that is not UTF-8 is a 401 on both the
public and the admin listener; a body is read whole up to its limit whatever its chunks, and refused with
413 past it or 400 when unreadable, naming the field and the rule."""

from __future__ import annotations

import base64
import contextlib
import json
import shutil
import ssl
import subprocess
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from structlog.testing import capture_logs

from connector.config import DEFAULT_MAPPINGS_DIR, Settings, load_settings
from connector.errors import ConfigError
from connector.listeners import create_public_app, start_public
from connector.national_time import PORTAL_TZ
from connector.observability import Metrics
from connector.operators.admin import start_admin
from connector.outbox.relay import OutboxRelay
from connector.pull.attachments import AttachmentStore
from connector.pull.intake import SubmissionIntake, max_pushed_body_bytes
from connector.push.mapping import load_mappings
from connector.service import Service
from connector.store import StateStore
from connector.store.way_back import InboundStore
from tests import REPO_ROOT
from tests.conftest import TopicFactory
from tests.integration.pipeline_harness import Topics, daemon_config, unique_group
from tests.integration.raw_http import raw_request, request_bytes

AGENCY = "000.00.01.G12"
TOKEN = "inbound-token-for-tests"
HTTP_TIMEOUT = aiohttp.ClientTimeout(total=30)
PATH = "/dvcqg/hoso"


def pushed(no: str, files: list[bytes]) -> dict[str, Any]:
    return {"MaHoSo": no, "PhienBan": "1", "MaTTHC": "1.009972.000.00.00.G12", "DonViXuLy": AGENCY,
            "NgayNopHoSo": datetime.now(PORTAL_TZ).strftime("%Y%m%d%H%M%S"), "TrangThaiHoSo": "1",
            "ChuHoSo": "Nguyễn Văn An",
            "TaiLieuNop": [{"TepDinhKemId": f"{no}-{i}", "TenTepDinhKem": f"Tài liệu {i}.pdf",
                            "Base64": base64.b64encode(content).decode()} for i, content in enumerate(files)]}


# --- 1. no public listener without a credential ------------------------------------------------------------


def test_a_public_listener_without_a_credential_is_refused_naming_the_fields_and_the_rule(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings(None, public={"listen": "0.0.0.0:8443"})
    message = str(caught.value)
    for named in ("public", "listen", "inbound_token", "inbound_token_file", "tls_client_ca_file",
                  "allow_unauthenticated"):
        assert named in message, message
    with pytest.raises(ConfigError, match="inbound_token"):  # a blank token is no credential
        load_settings(None, public={"listen": "0.0.0.0:8443", "inbound_token": "  "})
    token = tmp_path / "token"
    token.write_text("from-a-file\n", encoding="utf-8")
    from_file = load_settings(None, public={"listen": "0.0.0.0:8443", "inbound_token_file": str(token)})
    assert from_file.public.inbound_token_value() == "from-a-file"
    assert load_settings(None, public={"listen": "0.0.0.0:8443", "inbound_token": "x"}).public.inbound_token_value() \
        == "x"
    assert load_settings(None, public={"listen": "127.0.0.1:0", "allow_unauthenticated": True}).public.listen
    with pytest.raises(ConfigError, match="inbound_token_file"):
        load_settings(None, public={"listen": "127.0.0.1:0", "inbound_token": "x", "inbound_token_file": str(token)})
    with pytest.raises(ConfigError, match="tls_cert_file"):  # a client CA means nothing without a certificate
        load_settings(None, public={"listen": "127.0.0.1:0", "tls_client_ca_file": str(token)})
    assert load_settings(None).public.listen is None  # no listener, nothing to guard


def test_the_example_config_gives_the_public_listener_a_token_from_a_file() -> None:

    settings = load_settings(REPO_ROOT / "deploy" / "config.example.yaml")
    assert settings.public.listen is not None and settings.public.inbound_token_file is not None
    assert not settings.public.allow_unauthenticated


async def test_an_empty_token_file_stops_the_service_before_anything_opens(tmp_path: Path) -> None:
    empty = tmp_path / "token"
    empty.write_text("\n", encoding="utf-8")
    settings = load_settings(None, kafka={"bootstrap_servers": "127.0.0.1:9"},
                             state={"url": f"sqlite+aiosqlite:///{tmp_path / 'state.db'}"},
                             public={"listen": "127.0.0.1:0", "inbound_token_file": str(empty)})
    with pytest.raises(ConfigError, match=r"public\.inbound_token_file"):
        async with Service(settings):
            pass
    assert not (tmp_path / "state.db").exists()  # nothing was opened


@dataclass(frozen=True)
class Certificates:
    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path
    stranger_cert: Path  # a client certificate from another CA
    stranger_key: Path


def _openssl(*args: str | Path, cwd: Path) -> None:
    subprocess.run(["openssl", *map(str, args)], cwd=cwd, check=True, capture_output=True, timeout=60)


@pytest.fixture
def certificates(tmp_path: Path) -> Certificates:
    """A throwaway CA, a server certificate for 127.0.0.1 and two client certificates (one from the CA, one
    from a stranger's), made with the openssl command line."""
    if shutil.which("openssl") is None:
        pytest.skip("the openssl command line is needed to make throwaway certificates, and is not installed")
    d = tmp_path / "tls"
    d.mkdir()
    key = ("-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes")
    for ca in ("ca", "stranger-ca"):
        _openssl("req", "-x509", *key, "-keyout", f"{ca}.key", "-out", f"{ca}.pem", "-days", "2",
                 "-subj", f"/CN={ca}", cwd=d)
    (d / "server.ext").write_text("subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth\n")
    (d / "client.ext").write_text("extendedKeyUsage=clientAuth\n")
    for name, ca, ext in (("server", "ca", "server.ext"), ("client", "ca", "client.ext"),
                          ("stranger", "stranger-ca", "client.ext")):
        _openssl("req", *key, "-keyout", f"{name}.key", "-out", f"{name}.csr", "-subj", f"/CN={name}", cwd=d)
        _openssl("x509", "-req", "-in", f"{name}.csr", "-CA", f"{ca}.pem", "-CAkey", f"{ca}.key",
                 "-CAcreateserial", "-out", f"{name}.pem", "-days", "2", "-extfile", ext, cwd=d)
    return Certificates(d / "ca.pem", d / "server.pem", d / "server.key", d / "client.pem", d / "client.key",
                        d / "stranger.pem", d / "stranger.key")


def _client_tls(certs: Certificates, cert: Path | None, key: Path | None) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=str(certs.ca))
    if cert is not None and key is not None:
        context.load_cert_chain(str(cert), str(key))
    return context


@contextlib.asynccontextmanager
async def _service(tmp_path: Path, kafka_bootstrap: str, topics: TopicFactory, portal_url: str,
                   public: dict[str, Any]) -> AsyncIterator[tuple[Service, Settings]]:
    stream = Topics(await topics.create("dossier.events"), await topics.create("dossier.events.dlq"), unique_group())
    config = daemon_config(kafka_bootstrap, portal_url, stream, tmp_path)
    config["kafka"]["topics"]["submissions"] = await topics.create("portal.submissions")
    config["submissions"] = {"attachments_dir": str(tmp_path / "attachments")}
    config["public"] = {"listen": "127.0.0.1:0", **public}
    settings = load_settings(None, **config)
    async with Service(settings) as service:
        yield service, settings


@pytest.mark.broker
async def test_with_mutual_tls_the_listener_serves_https_and_takes_only_a_client_certificate_of_its_ca(
        tmp_path: Path, kafka_bootstrap: str, topics: TopicFactory, portal_url: str,
        certificates: Certificates) -> None:
    c = certificates
    tls = {"tls_cert_file": str(c.server_cert), "tls_key_file": str(c.server_key),
           "tls_client_ca_file": str(c.ca)}
    async with _service(tmp_path, kafka_bootstrap, topics, portal_url, tls) as (service, settings):
        assert service.public_url.startswith("https://127.0.0.1:")
        url = service.public_url + settings.public.submissions_path
        body = pushed(f"{AGENCY}-261124-0701", [b"%PDF-1.7"])
        trusted = _client_tls(c, c.client_cert, c.client_key)
        async with aiohttp.ClientSession(timeout=HTTP_TIMEOUT) as http, http.post(url, json=body, ssl=trusted) as r:
            assert (r.status, (await r.json())["error_code"]) == (200, 0)
        for cert, key in ((None, None), (c.stranger_cert, c.stranger_key)):
            with pytest.raises((aiohttp.ClientError, ssl.SSLError, ConnectionError)):
                async with aiohttp.ClientSession(timeout=HTTP_TIMEOUT) as http, http.post(
                        url, json=body, ssl=_client_tls(c, cert, key)) as r:
                    await r.read()
        inbound = InboundStore(service.store)
        assert await inbound.outbox_backlog() == 1  # only the trusted client's push


@pytest.mark.broker
async def test_an_unauthenticated_listener_is_allowed_only_when_asked_and_is_warned_about(
        tmp_path: Path, kafka_bootstrap: str, topics: TopicFactory, portal_url: str) -> None:
    with capture_logs() as logs:
        async with _service(tmp_path, kafka_bootstrap, topics, portal_url, {"allow_unauthenticated": True}) as (
                service, settings), aiohttp.ClientSession(timeout=HTTP_TIMEOUT) as http, http.post(
                service.public_url + settings.public.submissions_path,
                json=pushed(f"{AGENCY}-261124-0702", [b"x"])) as r:
            assert (await r.json())["error_code"] == 0
    warned = [e for e in logs if e["event"] == "public.unauthenticated"]
    assert warned and warned[0]["log_level"] == "warning"


# --- the public app over a real intake, for headers and bodies ----------------------------------------------


@dataclass
class Served:
    url: str
    port: int
    inbound: InboundStore


@contextlib.asynccontextmanager
async def _public(tmp_path: Path, *, max_dossier_bytes: int | None = None) -> AsyncIterator[Served]:
    submissions: dict[str, Any] = {"attachments_dir": str(tmp_path / "attachments"), "max_inline_bytes": 4096}
    if max_dossier_bytes is not None:
        submissions["max_dossier_bytes"] = max_dossier_bytes
    settings = load_settings(None, state={"url": f"sqlite+aiosqlite:///{tmp_path / 'state.db'}"},
                             submissions=submissions, public={"listen": "127.0.0.1:0", "inbound_token": TOKEN})
    store = await StateStore.open(settings.state.url)
    metrics = Metrics()
    inbound = InboundStore(store)
    relay = OutboxRelay(inbound, None, settings.kafka, metrics)  # never runs: what is accepted stays owed
    intake = SubmissionIntake(settings, load_mappings(DEFAULT_MAPPINGS_DIR), inbound, relay,
                              AttachmentStore(settings.submissions.attachments_dir), metrics)
    app = create_public_app(metrics=metrics, submissions_path=PATH, payments_path=settings.public.payments_path,
                            intake=intake, payments=None, max_submission_bytes=max_pushed_body_bytes(intake.limits),
                            inbound_token=TOKEN)
    runner, url = await start_public(app, "127.0.0.1", 0)
    try:
        yield Served(url, int(url.rsplit(":", 1)[1]), inbound)
    finally:
        await runner.cleanup()
        await store.close()


# --- 2. an Authorization header that is not UTF-8 -----------------------------------------------------------

NOT_UTF8 = [b"Authorization: Bearer \xff\xfe", b"Authorization: \xc0\xaf" + TOKEN.encode(),
            b"Authorization: Bearer " + TOKEN.encode() + b"\x80"]


@pytest.mark.parametrize("header", NOT_UTF8, ids=["ff-fe", "overlong", "token-then-0x80"])
async def test_an_authorization_header_that_is_not_utf8_is_a_401_at_the_public_listener(
        tmp_path: Path, header: bytes) -> None:
    async with _public(tmp_path) as served:
        body = json.dumps(pushed(f"{AGENCY}-261124-0703", [b"x"])).encode()
        reply = await raw_request(served.port, request_bytes(
            "POST", PATH, headers=[header, b"Content-Type: application/json"], body=body))
        assert reply.status == 401, reply
        assert reply.json() == {"error_code": -1, "message": "Authorization: a valid bearer token is required"}
        assert await served.inbound.outbox_backlog() == 0


@pytest.mark.parametrize("header", NOT_UTF8, ids=["ff-fe", "overlong", "token-then-0x80"])
async def test_an_authorization_header_that_is_not_utf8_is_a_401_at_the_admin_listener(header: bytes) -> None:
    runner, url = await start_admin(Metrics(), "127.0.0.1", 0, token=TOKEN)
    try:
        reply = await raw_request(int(url.rsplit(":", 1)[1]), request_bytes("GET", "/api/failures", headers=[header]))
        assert reply.status == 401, reply
        assert reply.json() == {"error": "a valid bearer token is required"}
        assert reply.headers.get("www-authenticate") == "Bearer"
    finally:
        await runner.cleanup()
    runner, url = await start_admin(Metrics(), "127.0.0.1", 0, token=None)
    try:
        reply = await raw_request(int(url.rsplit(":", 1)[1]), request_bytes("GET", "/api/failures", headers=[header]))
        assert (reply.status, reply.json()) == (401, {
            "error": "the admin API is disabled: no admin token is configured"})
    finally:
        await runner.cleanup()


# --- 3. bounded reads that are bounded, and whole -----------------------------------------------------------


async def _chunks(body: bytes, size: int) -> AsyncIterator[bytes]:
    for start in range(0, len(body), size):
        yield body[start:start + size]  # each chunk its own write: the server meets the body in pieces


async def _post_chunked(served: Served, body: bytes, *, size: int) -> tuple[int, dict[str, Any]]:
    async with aiohttp.ClientSession(timeout=HTTP_TIMEOUT) as http, http.post(
            served.url + PATH, data=_chunks(body, size),
            headers={"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"}) as response:
        return response.status, await response.json()


async def test_a_valid_700_kb_push_arriving_in_many_small_chunks_is_read_whole_and_accepted(
        tmp_path: Path) -> None:
    content = bytes(range(256)) * (700 * 1024 // 256)
    body = json.dumps(pushed(f"{AGENCY}-261124-0704", [content])).encode()
    assert len(body) > 900 * 1024
    async with _public(tmp_path) as served:
        assert await _post_chunked(served, body, size=1024) == (200, {"error_code": 0, "message": "created"})
        assert await served.inbound.outbox_backlog() == 1


async def test_a_push_over_the_limit_is_413_naming_the_body_and_its_limit_chunked_or_declared(
        tmp_path: Path) -> None:
    async with _public(tmp_path, max_dossier_bytes=64 * 1024) as served:
        limit = 64 * 1024 * 4 // 3 + 1024 * 1024
        body = json.dumps(pushed(f"{AGENCY}-261124-0705", [b"\0" * (limit + 4096)])).encode()
        status, reply = await _post_chunked(served, body, size=4096)
        assert (status, reply["error_code"]) == (413, -1)
        assert "body" in reply["message"] and str(limit) in reply["message"], reply
        async with aiohttp.ClientSession(timeout=HTTP_TIMEOUT) as http, http.post(
                served.url + PATH, data=body, headers={"Authorization": f"Bearer {TOKEN}"}) as response:
            assert (response.status, (await response.json())["message"]) == (413, reply["message"])
        assert await served.inbound.outbox_backlog() == 0


@pytest.mark.parametrize(("raw", "named"), [
    (b'{"MaHoSo": "\\ud800"}', "MaHoSo: must be text"),
    (b'{"ChuHoSo": "A\\u0000B"}', "ChuHoSo: must not contain the control character U+0000"),
    (b'{"MaHoSo": "A", "MaHoSo": "B"}', "the key 'MaHoSo' appears twice"),
    (b'\xef\xbb\xbf{"MaHoSo": "A"}', "the body starts with a byte-order mark"),
    (b'{"PhienBan": 1e400}', "a number too large"),
])
async def test_an_unreadable_push_is_400_naming_the_field_and_the_rule_never_the_value(
        tmp_path: Path, raw: bytes, named: str) -> None:
    async with _public(tmp_path) as served:
        status, reply = await _post_chunked(served, raw, size=3)
        assert status == 400 and reply["error_code"] == -1
        assert named in reply["message"], reply
        assert await served.inbound.outbox_backlog() == 0
