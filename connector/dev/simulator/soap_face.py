"""The simulator's SOAP face: the adapter's services as an integration platform (LGSP) exposes them, from the
same WSDL the client loads (``connector.portal.soap.SoapContract``; lxml on this side).

``SoapCodec`` only turns bytes into the JSON-shaped request the REST face decodes (``{"service", "session",
"madonvi", ...}``) and a JSON-shaped reply back into an envelope, so every rule, fault knob and counter of
``app`` applies to both faces unchanged. What only SOAP has:

- every request is read by the hardened parser and validated against the XSD before anything is served; a
  request that does not validate is a ``Client`` fault (HTTP 500) naming the element's path and the rule;
- the session travels in the ``Session`` header (login: the ``DangNhap`` operation), or every request carries
  a WS-Security UsernameToken: PasswordText or PasswordDigest, either with a ``Nonce`` seen once (a replay is
  refused) and ``Created`` within ``soap_skew_seconds`` of now;
- a reply whose ``error_code`` is not "0" is a SOAP fault (HTTP 500) whose detail (``PortalFault``) carries the
  code, the message and, when the reply names one, the dossier; a success reply holds only what the WSDL
  declares (``<Op>Response/<Op>Result``).

``GET`` on the SOAP path with ``?wsdl`` serves the WSDL, ``?xsd=<file>`` one of the schemas beside it.
"""

from __future__ import annotations

import base64
import hmac
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from datetime import datetime
from pathlib import Path
from typing import Any

from aiohttp import web
from lxml import etree

from connector.config import SoapSettings
from connector.errors import SyncError
from connector.portal.soap import (
    SOAP11,
    WSSE,
    WSU,
    SoapContract,
    build_element,
    from_xml,
    load_contract,
    parse_reply,
    password_digest,
    schema_error,
)

_DIGEST = "#PasswordDigest"
_NONCES_KEPT = 100_000

Decoded = tuple[str, dict[str, Any], bool]
"""The service, the request in the REST face's shape, and whether a verified UsernameToken signed it."""


class SoapCodec:
    """Envelopes in and out for one WSDL; ``signed`` requests (UsernameToken) need no session."""

    def __init__(self, wsdl: Path | None, username: str, password: str, skew_seconds: float,
                 clock: Callable[[], float] = time.time) -> None:
        settings = SoapSettings() if wsdl is None else SoapSettings(wsdl=wsdl)
        self.contract: SoapContract = load_contract(settings)
        self.wsdl = settings.wsdl.resolve()
        self._by_element = {op.request.qname: op for op in self.contract.operations.values()}
        self._username = username
        self._password = password
        self._skew = skew_seconds
        self._clock = clock
        self._nonces: OrderedDict[str, float] = OrderedDict()

    # Requests

    def decode(self, body: bytes) -> Decoded | web.Response:
        """The request decoded, or the fault that answers instead."""
        try:
            envelope = parse_reply(body)
        except SyncError as exc:
            return self.fault("Client", f"the request is not usable XML: {exc.message}")
        if etree.QName(envelope).localname != "Envelope" or etree.QName(envelope).namespace != SOAP11:
            return self.fault("VersionMismatch", "expected a SOAP 1.1 Envelope")
        payloads = [e for e in envelope.findall(f"{{{SOAP11}}}Body/*") if isinstance(e.tag, str)]
        if len(payloads) != 1:
            return self.fault("Client", f"the Body holds {len(payloads)} elements, not one")
        operation = self._by_element.get(payloads[0].tag)
        if operation is None:
            return self.fault("Client", f"no operation for {str(payloads[0].tag)[:200]}")
        if not self.contract.schema.validate(payloads[0]):
            return self.fault("Client", f"{operation.name}: {schema_error(self.contract.schema)}")
        request: dict[str, Any] = from_xml(payloads[0], operation.request)
        signed = False
        header = envelope.find(f"{{{SOAP11}}}Header")
        if header is not None:
            session = header.find(self.contract.session_header)
            if session is not None:
                request["session"] = (session.text or "").strip()
            token = header.find(f"{{{WSSE}}}Security/{{{WSSE}}}UsernameToken")
            if token is not None:
                refused = self._check_token(token)
                if refused is not None:
                    return self.fault("FailedAuthentication", refused)
                signed = True
        return operation.service, request, signed

    def _check_token(self, token: etree._Element) -> str | None:
        """None when the UsernameToken is this simulator's credential, fresh and not replayed; else why not."""
        username = token.findtext(f"{{{WSSE}}}Username") or ""
        password = token.find(f"{{{WSSE}}}Password")
        if password is None or not hmac.compare_digest(username.encode(), self._username.encode()):
            return "unknown user or no password"
        given = password.text or ""
        digest = password.get("Type", "").endswith(_DIGEST)
        if not digest and not hmac.compare_digest(given.encode(), self._password.encode()):
            return "wrong password"
        nonce_text = token.findtext(f"{{{WSSE}}}Nonce") or ""
        created = token.findtext(f"{{{WSU}}}Created") or ""
        try:
            nonce = base64.b64decode(nonce_text, validate=True)
            at = datetime.fromisoformat(created).timestamp()
        except (ValueError, OverflowError):
            return "Nonce or Created unreadable"
        now = self._clock()
        if abs(now - at) > self._skew:
            return f"Created is {now - at:.0f} s from now (allowed {self._skew:.0f})"
        expected = password_digest(nonce, created, self._password) if digest else self._password
        if not hmac.compare_digest(given.encode(), expected.encode()):
            return "wrong password digest" if digest else "wrong password"
        if nonce_text in self._nonces:
            return "nonce already used"
        self._nonces[nonce_text] = now
        # A nonce older than twice the skew can no longer come with an acceptable Created: forget it.
        while self._nonces and (len(self._nonces) > _NONCES_KEPT
                                or next(iter(self._nonces.values())) < now - 2 * self._skew):
            self._nonces.popitem(last=False)
        return None

    # Replies

    def encode(self, service: str, reply: Mapping[str, Any], status: int = 200) -> web.Response:
        """A reply of the REST face as SOAP: a fault for a code other than "0", else ``<Op>Response``."""
        code = str(reply.get("error_code", "0"))
        message = reply.get("message")
        if code != "0":
            return self.fault("Server" if status >= 500 else "Client", str(message or code), error_code=code,
                              message=str(message or ""), dossier=reply.get("MaHoSo"))
        operation = self.contract.operations.get(service)
        if operation is None:  # no operation of that name: the service is unsupported
            return self.fault("Client", f"no operation for {service}")
        fields = dict(reply)
        fields["error_code"] = code
        value = {operation.result: fields} if operation.result is not None else fields
        return self._envelope(build_element(value, operation.reply), status)

    def fault(self, code: str, text: str, *, error_code: str | None = None, message: str = "",
              dossier: Any = None) -> web.Response:
        fault = etree.Element(f"{{{SOAP11}}}Fault")
        etree.SubElement(fault, "faultcode").text = f"s:{code}"
        etree.SubElement(fault, "faultstring").text = text[:2000]
        if error_code is not None:
            namespace = etree.QName(self.contract.fault_detail).namespace
            detail = etree.SubElement(etree.SubElement(fault, "detail"), self.contract.fault_detail)
            etree.SubElement(detail, f"{{{namespace}}}error_code").text = error_code[:32]
            etree.SubElement(detail, f"{{{namespace}}}message").text = message[:2000]
            if isinstance(dossier, str) and dossier:
                etree.SubElement(detail, f"{{{namespace}}}MaHoSo").text = dossier[:64]
        return self._envelope(fault, 500)

    def _envelope(self, payload: etree._Element, status: int) -> web.Response:
        envelope = etree.Element(f"{{{SOAP11}}}Envelope", nsmap={"s": SOAP11})
        etree.SubElement(envelope, f"{{{SOAP11}}}Body").append(payload)
        return web.Response(status=status, body=etree.tostring(envelope, xml_declaration=True, encoding="utf-8"),
                            content_type="text/xml", charset="utf-8")

    # The documents

    def document(self, query: Mapping[str, str]) -> web.Response:
        """``?wsdl``: the WSDL; ``?xsd=<file>``: a schema beside it (only a plain file name)."""
        if "wsdl" in query or "singleWsdl" in query:
            return web.Response(body=self.wsdl.read_bytes(), content_type="text/xml", charset="utf-8")
        name = query.get("xsd", "")
        if name and "/" not in name and "\\" not in name and name.endswith(".xsd"):
            found = self.wsdl.parent / name
            if found.is_file():
                return web.Response(body=found.read_bytes(), content_type="text/xml", charset="utf-8")
        return web.Response(status=404, text="ask for ?wsdl or ?xsd=<file>.xsd")


__all__ = ["Decoded", "SoapCodec"]
