"""The connections an operator's command needs when it runs beside the daemon rather than inside it: the
state store, and the adapter behind a gateway of its own (rate limit, retries, breaker), its calls in the
audit trail like the daemon's."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

from connector.config import Settings
from connector.observability import Metrics
from connector.portal.audit import AuditTrail
from connector.portal.client import PortalClient
from connector.push.pipeline import PortalGateway
from connector.store import StateStore


@dataclass(frozen=True)
class Connections:
    store: StateStore
    gateway: PortalGateway
    metrics: Metrics


async def open_connections(settings: Settings, stack: contextlib.AsyncExitStack, *, store: StateStore | None = None,
                           gateway: PortalGateway | None = None, metrics: Metrics | None = None) -> Connections:
    """What is not given is opened here and closed by ``stack``: given a running daemon's store and gateway,
    a command shares its rate limit and breaker."""
    metrics = metrics or Metrics()
    if store is None:
        store = await StateStore.open(settings.state.url)
        stack.push_async_callback(store.close)
    if gateway is None:
        audit = AuditTrail(store, metrics, retention_days=settings.state.audit_retention_days)
        stack.push_async_callback(audit.close)  # after the client: its last calls are flushed too
        portal = PortalClient(settings.portal, observer=metrics.observe_portal_call, auditor=audit.record)
        stack.push_async_callback(portal.close)
        gateway = PortalGateway(portal, settings.portal, metrics)
    return Connections(store, gateway, metrics)
