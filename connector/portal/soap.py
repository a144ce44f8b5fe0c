"""The SOAP transport: the adapter's services as the ministry's integration platform (LGSP) exposes them,
driven by a WSDL read from local files once, at start (``SoapContract``), and spoken by ``SoapWire``.

How a call goes, and why this way:

- **zeep reads the WSDL**, once: services, ports, bindings, operations, ``soapAction``, the address, and each
  operation's request and reply elements with their types (``Shape``: the element's qualified name, its children
  in the schema's order, lists, kinds). zeep is loaded with a transport that reads local files only (a WSDL or
  XSD that points at the network is a ``ConfigError``) and fixed ``Settings``, so no per-call override (zeep
  keeps those in a ``threading.local``, unsafe across coroutines) is ever used.
- **The request is built from those shapes with lxml** (``build_element``), then validated against the WSDL's
  own XSD before it is sent. zeep's serializer (``Client.create_message``) was the first choice and measured
  about 420 µs per record (a 100-record ``DongBoHoSoMC`` took ~42 ms to build); the shapes it derived give the
  same elements, order and namespaces for ~15 % of that, and the XSD check after building is the guarantee.
- **aiohttp carries it**, through the same ``post_bounded`` as the REST adapter's calls: one HTTP stack, one
  connection pool, one timeout rule, and the reply read to at most its bound before anything parses it.
  (zeep's ``AsyncTransport`` would bring httpx, and loads the WSDL synchronously through it.)
- **The reply is read safely**: zeep's hardened parser (no DTD, no entity, no network, ``huge_tree`` off),
  the Body's element checked by name and namespace, then validated against the WSDL's own XSD (lxml's
  validator, built from the same files). A reply that does not validate is ``PortalUnavailable``
  (``invalid_reply``) naming the element's path and the rule. Then it is read into the dicts the REST adapter
  answers (``Shape``, derived from zeep's reading of the WSDL), so the pull side and the push side see the
  same values whatever the transport.
- A SOAP fault is an error of the REST kinds: its detail's ``error_code`` decides as an adapter's code does
  (``connector.portal.errors.refusal``), a code listed in ``retryable_fault_codes`` is retried like HTTP 503,
  a fault without a code is the server's trouble (``Server``: retried) or our request's (``Client``: every
  record's, waited out).

Element names follow the REST adapter's JSON names (PORTAL.md), so one mapping serves both transports. Lists are
WCF-style wrappers (``<TaiLieuNop><TaiLieu>…</TaiLieu></TaiLieuNop>``): ``Shape`` turns a JSON list into its
wrapper and back. Fields the platform's WSDL does not declare are left out of the request, and named once in the
log the first time (``soap.fields_not_in_wsdl``).
"""

from __future__ import annotations

import base64
import copy
import hashlib
import os
import re
import uuid
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal
from urllib.parse import unquote, urljoin, urlparse

import structlog
import zeep
import zeep.exceptions
import zeep.loader
import zeep.xsd
from lxml import etree
from zeep.transports import Transport
from zeep.wsse.username import UsernameToken
from zeep.xsd.types import builtins

from connector.config import SOAP_SERVICES, PortalSettings, SoapSettings
from connector.errors import ConfigError, PermanentError, SyncError
from connector.portal.client import Outgoing, portal_password
from connector.portal.errors import (
    SUCCESS_CODES,
    LoginFailed,
    PortalRejected,
    PortalUnavailable,
    SessionExpired,
    classify_coded,
    header_value,
    login_session,
    message_text,
    normalise_code,
    parse_retry_after,
    quoted_body,
    quoting,
    refusal,
    status_error,
)

log = structlog.get_logger(__name__)

SOAP11 = "http://schemas.xmlsoap.org/soap/envelope/"
SOAP12 = "http://www.w3.org/2003/05/soap-envelope"
WSA = "http://www.w3.org/2005/08/addressing"
WSSE = "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-secext-1.0.xsd"
WSU = "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-utility-1.0.xsd"
WSS_MESSAGE_SECURITY = "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-soap-message-security-1.0"
XSD = "http://www.w3.org/2001/XMLSchema"
WSDL = "http://schemas.xmlsoap.org/wsdl/"
LOGIN_SERVICE = "DangNhap"
# WS-Security 1.0's fault codes for a credential refused: our configuration's trouble, not the record's.
WSSE_REFUSALS = frozenset({"FailedAuthentication", "InvalidSecurityToken", "InvalidSecurity", "FailedCheck"})
MAX_PATH_CHARS = 300  # of an element's path in an error

# Parsing replies: strict (no recovery from broken XML), no DTD, no entity, nothing fetched, no huge trees.
_SAFE = zeep.Settings(strict=True, raw_response=False, forbid_dtd=True, forbid_entities=True, forbid_external=True,
                      xml_huge_tree=False, xsd_ignore_sequence_order=False)


class RequestInvalid(PermanentError):
    """A request that the WSDL's schema refuses, found before sending: the record's own error (a field too long,
    a date in the wrong form). Its message may quote the record, so it goes to the failure table, not to logs."""

    quotes_remote_text = True

    def __init__(self, message: str) -> None:
        super().__init__(message, reason="request_invalid")


# --- shapes: what an element holds, read from the WSDL ------------------------------------------------------

Kind = Literal["text", "int", "bool", "base64", "complex"]


@dataclass(frozen=True, eq=False)
class Shape:
    """One element as the WSDL declares it: its qualified name, whether it may repeat, and what it holds —
    text of a kind, children by local name, or (a list wrapper) one repeated item."""

    qname: str
    kind: Kind
    repeated: bool = False
    children: Mapping[str, Shape] = field(default_factory=dict)
    item: str | None = None  # a wrapper's one repeated child: a JSON list

    @property
    def local(self) -> str:
        return str(etree.QName(self.qname).localname)


MAX_SHAPE_DEPTH = 32  # a type nested deeper (or containing itself) is refused at start, never recursed into


def shape_of(element: Any, depth: int = 0) -> Shape:
    """The shape of a zeep element (``zeep.xsd.Element``)."""
    if depth > MAX_SHAPE_DEPTH:
        raise ConfigError(f"portal.soap.wsdl: {element.qname} nests more than {MAX_SHAPE_DEPTH} levels deep "
                          "(a type that contains itself?)")
    xsd_type = element.type
    repeated = element.max_occurs == "unbounded" or (isinstance(element.max_occurs, int) and element.max_occurs > 1)
    qname = str(element.qname)
    if not hasattr(xsd_type, "elements"):
        return Shape(qname, _simple_kind(xsd_type), repeated)
    children = {name: shape_of(child, depth + 1) for name, child in xsd_type.elements}
    many = [name for name, child in children.items() if child.repeated]
    item = many[0] if len(children) == 1 and many else None
    return Shape(qname, "complex", repeated, children, item)


def _simple_kind(xsd_type: Any) -> Kind:
    # zeep's restrictions are subclasses of its built-in types.
    if isinstance(xsd_type, builtins.Boolean):
        return "bool"
    if isinstance(xsd_type, builtins.Base64Binary):
        return "base64"
    if isinstance(xsd_type, builtins.Integer):
        return "int"
    return "text"


def from_xml(element: etree._Element, shape: Shape) -> Any:
    """A validated element read into the JSON shape the REST adapter answers with: text as text (base64 too),
    integers as integers, lists from their wrappers; an absent element is an absent key."""
    if shape.item is not None:
        item = shape.children[shape.item]
        return [from_xml(e, item) for e in element if isinstance(e.tag, str)]
    if shape.kind == "complex":
        out: dict[str, Any] = {}
        for e in element:
            if not isinstance(e.tag, str):
                continue
            name = etree.QName(e).localname
            child = shape.children.get(name)
            if child is None:
                continue
            value = from_xml(e, child)
            if child.repeated and child.item is None:
                out.setdefault(name, []).append(value)
            else:
                out[name] = value
        return out
    text = element.text or ""
    if shape.kind == "int":
        return int(text.strip())
    if shape.kind == "bool":
        return text.strip() in ("true", "1")
    if shape.kind == "base64":
        return "".join(text.split())
    return text


def build_element(value: Any, shape: Shape, dropped: set[str] | None = None) -> etree._Element:
    """``value`` (JSON-shaped) as the element ``shape`` describes: children in the WSDL's order, lists in their
    wrappers, booleans as ``true``/``false``. A field the WSDL does not declare is left out (its path added to
    ``dropped``); a value of the wrong shape (a list where an object is declared…) is ``RequestInvalid``."""
    element = etree.Element(shape.qname)
    _fill(element, value, shape, dropped if dropped is not None else set(), shape.local)
    return element


def _fill(element: etree._Element, value: Any, shape: Shape, dropped: set[str], path: str) -> None:
    # The hot path of every SOAP request: leaves are written in the loop, paths are only built to be reported.
    if shape.item is not None:
        if not isinstance(value, list | tuple):
            raise RequestInvalid(f"{path}: must be a list")
        item = shape.children[shape.item]
        for index, each in enumerate(value):
            _fill(etree.SubElement(element, item.qname), each, item, dropped, f"{path}[{index}]")
        return
    if shape.kind != "complex":
        element.text = _text(value, path)
        return
    if not isinstance(value, Mapping):
        raise RequestInvalid(f"{path}: must be an object")
    children = shape.children
    if not children.keys() >= value.keys():
        within = _unindexed(path).partition(".")[2]  # below the operation's element, lists as []
        dropped.update(f"{within}.{key}" if within else key for key in value.keys() - children.keys())
    sub_element = etree.SubElement
    for name, child in children.items():
        found = value.get(name)
        if found is None:
            continue
        if child.kind != "complex" and not child.repeated:
            sub_element(element, child.qname).text = found if type(found) is str else _text(found, f"{path}.{name}")
        elif child.repeated and child.item is None and isinstance(found, list | tuple):
            for each in found:
                _fill(sub_element(element, child.qname), each, child, dropped, f"{path}.{name}")
        else:
            _fill(sub_element(element, child.qname), found, child, dropped, f"{path}.{name}")


def _text(value: Any, path: str) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return value
    if isinstance(value, int | float):
        return str(value)
    raise RequestInvalid(f"{path}: must be a text or a number, not {type(value).__name__}")


def _unindexed(path: str) -> str:
    return re.sub(r"\[\d+\]", "[]", path)


# --- the contract: a WSDL and its schemas, loaded once ------------------------------------------------------


@dataclass(frozen=True)
class Operation:
    """One WSDL operation as a service of ours uses it."""

    service: str  # our (REST) name
    name: str  # the WSDL's
    soap_action: str
    request: Shape
    reply: Shape
    result: str | None  # the reply's one ``<Op>Result`` child, WCF-style; None when the reply holds the fields


class SoapContract:
    """A WSDL read from local files (never fetched), with the XSD of its messages."""

    def __init__(self, settings: SoapSettings) -> None:
        wsdl = settings.wsdl.resolve()
        if not wsdl.is_file():
            raise ConfigError(f"portal.soap.wsdl: {wsdl} is not a file")
        try:
            self.client = zeep.Client(str(wsdl), transport=_LocalFiles(), settings=_SAFE)  # type: ignore[no-untyped-call]
            self.schema = _schema_of(wsdl)
        except ConfigError:
            raise
        except (zeep.exceptions.Error, etree.Error, OSError, ValueError, KeyError) as exc:
            raise ConfigError(f"portal.soap.wsdl: {wsdl} cannot be read: {type(exc).__name__}: {exc}"[:800]) from exc
        # The schemas' global elements, as zeep read them (its own xs:schema element aside).
        self._globals = frozenset(str(e.qname) for e in self.client.wsdl.types.elements
                                  if e.qname.namespace != XSD)
        _, port = _port(self.client, settings.service, settings.port)
        self.binding = port.binding
        self.version = SOAP12 if "Soap12" in type(port.binding).__name__ else SOAP11
        address = settings.address or port.binding_options.get("address")
        if not address:
            raise ConfigError("portal.soap.address: the WSDL's port has no soap:address; set one")
        self.address: str = address
        self.operations = {name: self._operation(name, settings.operations.get(name, name)) for name in SOAP_SERVICES
                           if settings.operations.get(name, name) in port.binding._operations}
        for operation in self.operations.values():
            for element in (operation.request.qname, operation.reply.qname):
                if not self.declares(element):
                    raise ConfigError(f"portal.soap.wsdl: {wsdl.name}: the schemas do not declare {element} "
                                      f"({operation.name}): an import that could not be located?")
        self.session_header = self._global("session_header", settings.session_header)
        self.dossier_header = (None if settings.dossier_header is None
                               else self._global("dossier_header", settings.dossier_header))
        self.fault_detail = self._global("fault_detail", settings.fault_detail)

    def declares(self, qname: str) -> bool:
        """Does the validator know a global element ``qname``? (libxml2 skips an import it cannot locate with a
        warning only; this finds it at start, not on the first call.)"""
        self.schema.validate(etree.Element(qname))
        return not any(e.type_name == "SCHEMAV_CVC_ELT_1" for e in self.schema.error_log)

    def operation(self, service: str) -> Operation:
        found = self.operations.get(service)
        if found is None:
            raise ConfigError(f"the WSDL has no operation for {service} (portal.soap.operations may name it)")
        return found

    def _operation(self, service: str, name: str) -> Operation:
        bound = self.binding._operations[name]
        request = shape_of(bound.input.body)
        reply = shape_of(bound.output.body)
        results = [n for n, child in reply.children.items() if n.endswith("Result") and child.kind == "complex"]
        result = results[0] if len(reply.children) == 1 and results else None
        return Operation(service, name, bound.soapaction or "", request, reply, result)

    def _global(self, setting: str, name: str) -> str:
        """A global element of the schemas by ``{ns}Name`` or by local name."""
        if name.startswith("{"):
            if name in self._globals:
                return name
        else:
            found = [q for q in self._globals if etree.QName(q).localname == name]
            if len(found) == 1:
                return found[0]
            if len(found) > 1:
                raise ConfigError(f"portal.soap.{setting}: '{name}' is in several namespaces; write {{ns}}{name}")
        raise ConfigError(f"portal.soap.{setting}: the WSDL's schemas have no global element '{name}'")


class _LocalFiles(Transport):
    """zeep's loader, for local files only: a WSDL that imports from the network is refused at start."""

    def load(self, url: str) -> bytes:
        parsed = urlparse(url)
        if parsed.scheme not in ("", "file") and not (len(parsed.scheme) == 1 and os.name == "nt"):
            raise ConfigError(f"portal.soap.wsdl: refuses to fetch {url[:200]}: every document must be a local file")
        path = unquote(parsed.path) if parsed.scheme == "file" else url
        return Path(path).read_bytes()


_CONTRACTS: dict[tuple[str, int], SoapContract] = {}


def load_contract(settings: SoapSettings) -> SoapContract:
    """The contract of ``settings`` (read once per WSDL file version; ConfigError when it cannot be used)."""
    try:
        mtime = settings.wsdl.stat().st_mtime_ns
    except OSError as exc:
        raise ConfigError(f"portal.soap.wsdl: {settings.wsdl}: {exc.strerror}") from exc
    key = (settings.model_dump_json(), mtime)
    if key not in _CONTRACTS:
        if len(_CONTRACTS) >= 8:
            _CONTRACTS.clear()
        _CONTRACTS[key] = SoapContract(settings)
    return _CONTRACTS[key]


def _port(client: zeep.Client, service_name: str | None, port_name: str | None) -> tuple[Any, Any]:
    services = client.wsdl.services
    if not services:
        raise ConfigError("portal.soap.wsdl: the WSDL declares no service")
    if service_name is None:
        service = next(iter(services.values()))
    elif service_name in services:
        service = services[service_name]
    else:
        raise ConfigError(f"portal.soap.service: no service '{service_name}' in the WSDL ({', '.join(services)})")
    soap_ports = {n: p for n, p in service.ports.items() if hasattr(p.binding, "_operations")}
    if port_name is None:
        if not soap_ports:
            raise ConfigError(f"portal.soap.port: service '{service.name}' has no SOAP port")
        return service, next(iter(soap_ports.values()))
    if port_name not in soap_ports:
        raise ConfigError(f"portal.soap.port: no SOAP port '{port_name}' in service '{service.name}'")
    return service, soap_ports[port_name]


_SCHEMA_PARSER_OPTIONS: dict[str, Any] = {"resolve_entities": False, "no_network": True, "load_dtd": False,
                                          "huge_tree": False, "remove_comments": True}


class _InlineSchemas(etree.Resolver):  # type: ignore[misc]
    """Serves the schemas written inside a WSDL (``?singleWsdl``) to lxml's schema compiler; refuses the network."""

    def __init__(self, documents: Mapping[str, bytes]) -> None:
        super().__init__()
        self._documents = documents

    def resolve(self, system_url: str, public_id: str, context: Any) -> Any:
        if system_url in self._documents:
            return self.resolve_string(self._documents[system_url], context)
        if urlparse(system_url).scheme in ("http", "https", "ftp"):
            raise ConfigError(f"portal.soap.wsdl: a schema imports {system_url[:200]}: only local files are read")
        return None


def _schema_of(wsdl: Path) -> etree.XMLSchema:
    """One lxml validator for every schema of the WSDL (its ``types``, and the files they import)."""
    parser = etree.XMLParser(**_SCHEMA_PARSER_OPTIONS)
    root = etree.parse(str(wsdl), parser).getroot()
    inline: dict[str, bytes] = {}
    namespaces: dict[str, str] = {}  # target namespace -> where its schema is
    schemas = root.findall(f"{{{WSDL}}}types/{{{XSD}}}schema")
    base = wsdl.as_uri()
    # Named as lxml asks for them (absolute, beside the WSDL); served by _InlineSchemas, never read from disk.
    urls = [urljoin(base, f"{wsdl.name}.inline-schema-{index}.xsd") for index in range(len(schemas))]
    for index, schema in enumerate(schemas):
        copied = etree.Element(schema.tag, attrib=dict(schema.attrib), nsmap=schema.nsmap)
        copied.extend(copy.deepcopy(child) for child in schema)
        namespaces.setdefault(schema.get("targetNamespace", ""), urls[index])
        inline[urls[index]] = b""  # filled below, once every inline namespace is known
        schemas[index] = copied
    for index, schema in enumerate(schemas):
        for imported in schema.findall(f"{{{XSD}}}import") + schema.findall(f"{{{XSD}}}include"):
            location = imported.get("schemaLocation")
            if location:
                if urlparse(location).scheme in ("http", "https", "ftp"):
                    raise ConfigError(f"portal.soap.wsdl: a schema imports {location[:200]}: only local files are read")
                imported.set("schemaLocation", urljoin(base, location))
            elif imported.get("namespace") in namespaces:
                imported.set("schemaLocation", namespaces[imported.get("namespace", "")])
        inline[urls[index]] = etree.tostring(schema)
    # The validator's root imports every namespace once, straight from where it is written: libxml2 does not
    # follow an import made by a schema that declares nothing itself (a WSDL's "imports only" schema).
    locations: dict[str, str] = {}
    for url, text in inline.items():
        schema = etree.fromstring(text, etree.XMLParser(**_SCHEMA_PARSER_OPTIONS))
        if len(schema.findall(f"{{{XSD}}}element")) + len(schema.findall(f"{{{XSD}}}complexType")) + len(
                schema.findall(f"{{{XSD}}}simpleType")):
            locations.setdefault(schema.get("targetNamespace", ""), url)
        for imported in schema.findall(f"{{{XSD}}}import"):
            if imported.get("schemaLocation", "").startswith("file:"):
                locations.setdefault(imported.get("namespace", ""), imported.get("schemaLocation"))
    wrapper = etree.Element(f"{{{XSD}}}schema", nsmap={"xs": XSD}, targetNamespace="urn:portal-sync:soap:validation")
    for namespace, url in locations.items():
        etree.SubElement(wrapper, f"{{{XSD}}}import", namespace=namespace, schemaLocation=url)
    resolving = etree.XMLParser(**_SCHEMA_PARSER_OPTIONS)
    resolving.resolvers.add(_InlineSchemas(inline))
    document = etree.fromstring(etree.tostring(wrapper), resolving, base_url=base)
    return etree.XMLSchema(document)


# --- the wire: envelopes out, replies in --------------------------------------------------------------------


@dataclass(frozen=True)
class Fault:
    """A SOAP fault as received: the fault code's local part (Server, Client, …), its text, and the detail's
    ``error_code``, ``message`` and ``MaHoSo`` when it carries the contract's detail element."""

    code: str
    text: str
    error_code: str | None = None
    message: str = ""
    dossier: str | None = None


# A DOCTYPE before the root element: after a BOM, the XML declaration, comments and processing instructions.
_DOCTYPE_IN_PROLOG = re.compile(rb"(?:\xef\xbb\xbf)?\s*(?:<\?.*?\?>\s*|<!--.*?-->\s*)*<!DOCTYPE", re.S | re.I)


def parse_reply(body: bytes) -> etree._Element:
    """The Envelope of a reply, parsed by zeep's hardened parser. ``PortalUnavailable``: ``unsafe_xml`` for a DTD or
    an entity (refused, never expanded or fetched), ``malformed_reply`` for what is not XML."""
    try:
        root = zeep.loader.parse_xml(body, None, settings=_SAFE)  # type: ignore[arg-type]  # bytes: as lxml takes
    except (zeep.exceptions.DTDForbidden, zeep.exceptions.EntitiesForbidden,
            zeep.exceptions.ExternalReferenceForbidden) as exc:
        raise PortalUnavailable(f"reply refused: {type(exc).__name__} (no DTD or entity is read)",
                                reason="unsafe_xml") from None
    except (zeep.exceptions.XMLSyntaxError, ValueError) as exc:
        if _DOCTYPE_IN_PROLOG.match(body):  # libxml2's own entity limits stopped it before zeep's DTD check
            raise PortalUnavailable("reply refused: it declares a DTD (no DTD or entity is read)",
                                    reason="unsafe_xml") from None
        raise quoting(PortalUnavailable(f"reply is not XML: {quoted_body(body)}", reason="malformed_reply")) from exc
    if not isinstance(root.tag, str):
        raise PortalUnavailable("reply is not XML", reason="malformed_reply")
    return root


class SoapWire:
    """The SOAP side of ``PortalClient``: requests built from the contract, replies classified into the errors of
    ``connector.portal.errors``."""

    name = "soap"

    def __init__(self, settings: PortalSettings, contract: SoapContract | None = None) -> None:
        self._settings = settings
        self._soap = settings.soap
        self.contract = contract or load_contract(settings.soap)
        self.logs_in = settings.soap.auth == "session"
        if self.logs_in:
            self.contract.operation(LOGIN_SERVICE)
        self._warned: set[str] = set()

    # Requests

    def login(self, username: str, password: str) -> Outgoing:
        return self._request(LOGIN_SERVICE, None, {"username": username, "password": password}, ())

    def request(self, service: str, token: str, params: Mapping[str, Any],
                dossiers: Sequence[str]) -> Outgoing:
        values = {"madonvi": self._settings.madonvi, **params}
        return self._request(service, token, values, dossiers)

    def _request(self, service: str, token: str | None, params: Mapping[str, Any],
                 dossiers: Sequence[str]) -> Outgoing:
        operation = self.contract.operation(service)
        dropped: set[str] = set()
        try:
            payload = build_element(params, operation.request, dropped)
        except ValueError as exc:  # lxml: a text no XML document can hold (a control character, a lone surrogate)
            raise RequestInvalid(f"{service}: {exc}"[:1000]) from None
        if dropped:
            self._warn_dropped(service, dropped)
        message_id = f"urn:uuid:{uuid.uuid4()}"
        version = self.contract.version
        envelope = etree.Element(f"{{{version}}}Envelope", nsmap={"s": version})
        header = etree.SubElement(envelope, f"{{{version}}}Header")
        header.extend(self._headers(operation, token, message_id, dossiers))
        etree.SubElement(envelope, f"{{{version}}}Body").append(payload)
        if token is not None and not self.logs_in:
            password = portal_password(self._settings)  # read per call: a rotated password file takes effect
            digest = self._soap.password_type == "digest"  # noqa: S105 - a setting's value, not a password
            token_header = UsernameToken(  # type: ignore[no-untyped-call]
                self._settings.username, password, use_digest=digest, zulu_timestamp=True)
            token_header.apply(envelope, {})  # type: ignore[no-untyped-call]
            if not digest:  # zeep sends no Nonce or Created with a PasswordText: ours guard against a replay
                _add_nonce_and_created(envelope)
        if not self.contract.schema.validate(payload):
            raise RequestInvalid(f"{service}: {schema_error(self.contract.schema)}")
        http_headers = {"Content-Type": "text/xml; charset=utf-8", "Accept": "text/xml",
                        "SOAPAction": f'"{operation.soap_action}"'}
        if self.contract.version == SOAP12:
            http_headers = {"Content-Type": f'application/soap+xml; charset=utf-8; action="{operation.soap_action}"',
                            "Accept": "application/soap+xml"}
        if self._settings.dstcode:
            http_headers["dstcode"] = self._settings.dstcode
        text = etree.tostring(envelope, xml_declaration=True, encoding="utf-8")
        return self.contract.address, text, http_headers, message_id if self._soap.addressing else ""

    def _headers(self, operation: Operation, token: str | None, message_id: str,
                 dossiers: Sequence[str]) -> list[etree._Element]:
        headers: list[etree._Element] = []
        if token is not None and self.logs_in:
            session = etree.Element(self.contract.session_header)
            session.text = token
            headers.append(session)
        if self._soap.addressing:
            for name, text in (("MessageID", message_id), ("Action", operation.soap_action),
                               ("To", self.contract.address)):
                element = etree.Element(f"{{{WSA}}}{name}", nsmap={"wsa": WSA})
                element.text = text
                headers.append(element)
        if self.contract.dossier_header is not None and dossiers:
            named = etree.Element(self.contract.dossier_header)
            namespace = etree.QName(self.contract.dossier_header).namespace
            for no in dossiers:
                etree.SubElement(named, f"{{{namespace}}}MaHoSo").text = no
            headers.append(named)
        return headers

    def _warn_dropped(self, service: str, dropped: Collection[str]) -> None:
        new = sorted(set(dropped) - self._warned)
        if new:
            self._warned.update(new)
            log.warning("soap.fields_not_in_wsdl", service=service, fields=new[:50])

    # Replies

    def login_reply(self, status: int, headers: Mapping[str, str], body: bytes) -> str:
        return login_session(lambda: self.reply(LOGIN_SERVICE, status, headers, body, expired_codes=()))

    def reply(self, service: str, status: int, headers: Mapping[str, str], body: bytes, *,
              expired_codes: Collection[str] | None = None) -> dict[str, Any]:
        """The reply's fields (the ``<Op>Result``) when it means success; raise the matching error otherwise."""
        expired = self._settings.session_expired_codes if expired_codes is None else expired_codes
        operation = self.contract.operation(service)
        if status == 401:
            raise SessionExpired()
        if not body.strip():
            raise status_error(status, headers) or PortalUnavailable(f"HTTP {status} with an empty reply",
                                                                     reason="malformed_reply")
        try:
            envelope = parse_reply(body)
        except PortalUnavailable:
            error = status_error(status, headers)
            if error is not None:
                raise error from None
            raise
        payload = self._payload(envelope, status, headers)
        fault = self._fault(payload) if etree.QName(payload).localname == "Fault" and etree.QName(
            payload).namespace in (SOAP11, SOAP12) else None
        if fault is not None:
            raise self.fault_error(fault, status, headers, expired)
        error = status_error(status, headers)
        if error is not None:
            raise error
        if payload.tag != operation.reply.qname:
            raise quoting(PortalUnavailable(
                f"{service}: expected {operation.reply.qname} in the Body, got {payload.tag[:200]}",
                reason="unexpected_reply"))
        if not self.contract.schema.validate(payload):
            raise quoting(PortalUnavailable(f"{service}: {schema_error(self.contract.schema)}",
                                            reason="invalid_reply"))
        fields = from_xml(payload, operation.reply)
        if operation.result is not None:
            fields = fields.get(operation.result, {})
        if not 200 <= status < 300:
            raise quoting(PortalRejected(f"HTTP {status}: {quoted_body(body)}", reason=f"http_{status}"))
        if "error_code" not in fields:
            return {"error_code": "0", **fields}
        return classify_coded(status, fields, expired_codes=expired, quoted=quoted_body(body))

    def _payload(self, envelope: etree._Element, status: int, headers: Mapping[str, str]) -> etree._Element:
        namespace = etree.QName(envelope).namespace
        if etree.QName(envelope).localname != "Envelope" or namespace not in (SOAP11, SOAP12):
            raise status_error(status, headers) or quoting(PortalUnavailable(
                f"reply is not a SOAP envelope (root {envelope.tag[:200]})", reason="unexpected_reply"))
        body = envelope.find(f"{{{namespace}}}Body")
        children = [] if body is None else [e for e in body if isinstance(e.tag, str)]
        if len(children) != 1:
            raise status_error(status, headers) or PortalUnavailable(
                f"the reply's Body holds {len(children)} elements, not one", reason="unexpected_reply")
        return children[0]

    def _fault(self, fault: etree._Element) -> Fault:
        namespace = etree.QName(fault).namespace
        if namespace == SOAP12:
            code = fault.findtext(f"{{{SOAP12}}}Code/{{{SOAP12}}}Value") or ""
            text = fault.findtext(f"{{{SOAP12}}}Reason/{{{SOAP12}}}Text") or ""
            detail = fault.find(f"{{{SOAP12}}}Detail")
        else:
            code = fault.findtext("faultcode") or ""
            text = fault.findtext("faultstring") or ""
            detail = fault.find("detail")
        # SOAP 1.1 codes may be refined with dots (Client.Authentication, Server.userException): the class decides.
        local_code = code.strip().rpartition(":")[2].split(".", 1)[0][:64]
        found = None if detail is None else detail.find(self.contract.fault_detail)
        if found is None or not self.contract.schema.validate(found):
            return Fault(local_code, message_text(text))
        error_code = normalise_code(found.findtext("{*}error_code"))
        if error_code in SUCCESS_CODES:  # "success" inside a fault says nothing: the fault code decides
            error_code = None
        return Fault(local_code, message_text(text), error_code, message_text(found.findtext("{*}message")),
                     found.findtext("{*}MaHoSo"))

    def fault_error(self, fault: Fault, status: int, headers: Mapping[str, str],
                    expired_codes: Collection[str]) -> SyncError:
        """A fault as the error kinds of ``connector.portal.errors``: by its detail's code when it has one, else by
        its fault code (``Server``/``Receiver``: retried; ``Client``/``Sender``: our request, every record's)."""
        retry_after = parse_retry_after(header_value(headers, "Retry-After"))
        if fault.code in WSSE_REFUSALS:
            return LoginFailed(f"the platform refused our WS-Security credential (SOAP fault {fault.code})")
        if fault.error_code is None:
            if fault.code in ("Client", "Sender"):
                return quoting(PortalRejected(f"SOAP fault {fault.code}: {fault.text}", reason="soap_fault_client"))
            reason = "soap_fault_server" if fault.code in ("Server", "Receiver") else "soap_fault_unknown"
            return quoting(PortalUnavailable(f"SOAP fault {fault.code or '(no code)'}: {fault.text}", reason=reason,
                                             retry_after=retry_after))
        if fault.error_code in self._soap.retryable_fault_codes:
            return quoting(PortalUnavailable(f"SOAP fault {fault.error_code}: {fault.message or fault.text}",
                                             reason="soap_fault_retryable", retry_after=retry_after))
        message = fault.message or fault.text
        if fault.dossier:
            message = f"{message} (MaHoSo {fault.dossier[:100]})"
        return refusal(fault.error_code, message, expired_codes=expired_codes)


def schema_error(schema: etree.XMLSchema) -> str:
    """The first complaint of the validator: the element's path and the rule (lxml's message names both)."""
    error = schema.error_log.last_error
    if error is None:
        return "does not satisfy the schema"
    path = (error.path or "")[:MAX_PATH_CHARS]
    return f"{path}: {error.type_name}: {error.message}"[:1000]


def _add_nonce_and_created(envelope: etree._Element) -> None:
    token = envelope.find(f".//{{{WSSE}}}UsernameToken")
    if token is None:
        return
    nonce = etree.SubElement(token, f"{{{WSSE}}}Nonce", EncodingType=f"{WSS_MESSAGE_SECURITY}#Base64Binary")
    nonce.text = base64.b64encode(os.urandom(16)).decode()
    etree.SubElement(token, f"{{{WSU}}}Created").text = utc_created()


def password_digest(nonce: bytes, created: str, password: str) -> str:
    """WS-Security UsernameToken PasswordDigest: Base64(SHA-1(nonce + created + password))."""
    return base64.b64encode(hashlib.sha1(nonce + created.encode() + password.encode()).digest()).decode()  # noqa: S324


def utc_created(now: datetime | None = None) -> str:
    return (now or datetime.now(UTC)).strftime("%Y-%m-%dT%H:%M:%SZ")


__all__ = [
    "LOGIN_SERVICE",
    "SOAP11",
    "SOAP12",
    "WSA",
    "WSSE",
    "WSU",
    "Fault",
    "Operation",
    "RequestInvalid",
    "Shape",
    "SoapContract",
    "SoapWire",
    "build_element",
    "from_xml",
    "load_contract",
    "parse_reply",
    "password_digest",
    "schema_error",
    "shape_of",
    "utc_created",
]
