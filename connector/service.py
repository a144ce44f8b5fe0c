"""The daemon, assembled: settings → mappings, state store, adapter client, Kafka, admin listener.

``Service`` owns the life cycle; ``run`` returns when ``stop`` is set and the in-flight work has finished
and been committed.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from types import TracebackType

import structlog
from aiohttp import web
from yarl import URL

from connector.admin import Operations, start_admin
from connector.config import Settings
from connector.errors import SyncError
from connector.heap import trim_heap
from connector.kafka import DeadLetterQueue, build_consumer, build_producer
from connector.mapping import Mappings, load_mappings
from connector.observability import Metrics
from connector.pipeline.audit import AuditTrail
from connector.pipeline.failures import FailureRecorder
from connector.pipeline.push import DossierSync, EventReader, PortalGateway, PushPipeline
from connector.pipeline.replay import Replayer, open_replayer
from connector.portal.errors import PortalUnavailable
from connector.portal.rest import PortalClient
from connector.store import StateStore

log = structlog.get_logger(__name__)

# How often memory the allocator holds free goes back to the system while the daemon runs.
HEAP_TRIM_SECONDS = 2.0
READINESS_TIMEOUT = 5.0


class Service:
    def __init__(self, settings: Settings, *, mappings: Mappings | None = None) -> None:
        self.settings = settings
        # Loaded (and validated) before anything connects: a bad mapping stops start-up, not an event.
        self.mappings = mappings if mappings is not None else load_mappings(settings.mappings.dir)
        self.metrics = Metrics()
        self.admin_url = ""
        self._admin: web.AppRunner | None = None
        self._unwatch_collector: Callable[[], None] | None = None

    async def __aenter__(self) -> Service:
        s = self.settings
        admin_token = s.admin.token_value()  # before connecting anything: a ConfigError leaves nothing open
        self.store = await StateStore.open(s.state.url)
        self.audit = AuditTrail(self.store, self.metrics, retention_days=s.state.audit_retention_days)
        self.portal = PortalClient(s.portal, observer=self.metrics.observe_portal_call, auditor=self.audit.record)
        self.producer = build_producer(s.kafka)
        await self.producer.start()
        self.consumer = build_consumer(s.kafka)
        await self.consumer.start()
        self.gateway = PortalGateway(self.portal, s.portal, self.metrics)
        operations = Operations(store=self.store, replayer=self._replayer, readiness=self.readiness)
        self._admin, self.admin_url = await start_admin(self.metrics, s.admin.host, s.admin.port,
                                                        token=admin_token, operations=operations)
        self._unwatch_collector = self.metrics.watch_collector()
        log.info("service started", topic=s.kafka.topics.dossier_events, group=s.kafka.group_id,
                 admin=self.admin_url, portal=str(URL(s.portal.adapter_url).with_user(None)))
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._unwatch_collector is not None:
            self._unwatch_collector()
            self._unwatch_collector = None
        # Leave the group first so the partitions move on quickly, then release the rest.
        for close in (self.consumer.stop, self.producer.stop, self.portal.close, self.audit.close, self.store.close):
            try:
                await close()
            except Exception as error:  # noqa: BLE001 - closing must go on for the others
                log.warning("error while closing", part=getattr(close, "__qualname__", "?"),
                            error=type(error).__name__)
        if self._admin is not None:
            await self._admin.cleanup()
        log.info("service stopped")

    async def run(self, stop: asyncio.Event) -> None:
        s = self.settings
        failures = FailureRecorder(self.store, DeadLetterQueue(self.producer, s.kafka.topics.dead_letter),
                                   s.portal.retry)
        gateway = self.gateway
        pipeline = PushPipeline(
            consumer=self.consumer,
            reader=EventReader(s, self.mappings, self.metrics),
            sync=DossierSync(settings=s, store=self.store, gateway=gateway, failures=failures),
            gateway=gateway,
            failures=failures,
            metrics=self.metrics,
            topic=s.kafka.topics.dossier_events,
            push=s.push,
        )
        trimming = asyncio.create_task(_trim_heap_until(stop))
        self.audit.start()
        try:
            await pipeline.run(stop)
        finally:
            trimming.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await trimming


    def _replayer(self, changed_by: str) -> contextlib.AbstractAsyncContextManager[Replayer]:
        # The mappings as they are on disk now: a replay follows a mapping fix (live events pick it up at
        # the next start). Through the daemon's own store and gateway: a replay shares the rate limit and
        # the breaker. Raises MappingsInvalid.
        return open_replayer(self.settings, load_mappings(self.settings.mappings.dir), changed_by=changed_by,
                             store=self.store, gateway=self.gateway, metrics=self.metrics)

    async def readiness(self) -> dict[str, str]:
        """Broker, state store and adapter session, each "ok" or why not (checked side by side)."""

        async def check(name: str, probe: Callable[[], Awaitable[object]]) -> tuple[str, str]:
            try:
                await asyncio.wait_for(probe(), READINESS_TIMEOUT)
            except TimeoutError:
                return name, f"no answer within {READINESS_TIMEOUT:g} s"
            except SyncError as error:
                return name, f"{type(error).__name__} ({error.reason})"
            except Exception as error:  # noqa: BLE001 - a probe's failure is its answer
                # The class only: /readyz needs no token, and an error's text may quote the far side.
                return name, type(error).__name__
            return name, "ok"

        async def portal() -> None:
            if self.gateway.unavailable:
                raise PortalUnavailable("circuit open or an outage being waited out", reason="adapter_failing")
            if self.portal.session_token is None:
                await self.portal.login()

        results = await asyncio.gather(check("broker", self.consumer.topics), check("state_store", self.store.ping),
                                       check("portal", portal))
        return dict(results)


async def _trim_heap_until(stop: asyncio.Event) -> None:
    while not stop.is_set() and trim_heap():
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), HEAP_TRIM_SECONDS)
