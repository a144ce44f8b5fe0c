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
from aiokafka import AIOKafkaConsumer
from yarl import URL

from connector.config import Settings
from connector.errors import SyncError
from connector.failures import FailureRecorder
from connector.heap import trim_heap
from connector.kafka import DeadLetterQueue, build_consumer, build_producer
from connector.listeners import create_public_app, server_tls, start_public
from connector.observability import Metrics
from connector.operators.admin import Operations, start_admin
from connector.operators.replay import Replayer, open_replayer
from connector.outbox.lease import Lease, Loop
from connector.outbox.relay import OutboxRelay
from connector.payments.platform import PaymentPlatformClient
from connector.payments.requests import PaymentRequestConsumer, build_request_consumer
from connector.payments.tracker import PaymentTracker
from connector.portal.client import LOGIN
from connector.portal.gateway import open_gateway
from connector.pull.attachments import AttachmentStore
from connector.pull.intake import SubmissionIntake, max_pushed_body_bytes
from connector.pull.poller import SubmissionPoller
from connector.push.mapping import Mappings, load_mappings
from connector.push.pipeline import PushPipeline
from connector.push.sync import DossierSync, EventReader
from connector.stats.publisher import StatisticsPublisher
from connector.store import StateStore
from connector.store.way_back import InboundStore

log = structlog.get_logger(__name__)

# How often memory the allocator holds free goes back to the system while the daemon runs.
HEAP_TRIM_SECONDS = 2.0
READINESS_TIMEOUT = 5.0


class Service:
    """Everything is built here, nothing connects: a bad setting (a token file, TLS files) stops start-up
    before anything is opened. ``async with`` starts the edges (state store, Kafka, listeners) and closes them."""

    def __init__(self, settings: Settings, *, mappings: Mappings | None = None) -> None:
        s = self.settings = settings
        # Loaded (and validated) before anything connects: a bad mapping stops start-up, not an event.
        self.mappings = mappings if mappings is not None else load_mappings(s.mappings.dir)
        self.metrics = Metrics()
        self._admin_token = s.admin.token_value()
        self._inbound_token = s.public.inbound_token_value() if s.public.listen is not None else None
        self._public_tls = (server_tls(s.public.tls_cert_file, s.public.tls_key_file, s.public.tls_client_ca_file,
                                       section="public")
                            if s.public.listen is not None and s.public.tls_cert_file and s.public.tls_key_file
                            else None)
        self.store = StateStore.create(s.state.url)
        self._adapter_closing = contextlib.AsyncExitStack()
        adapter = open_gateway(s, self.store, self.metrics, self._adapter_closing)
        self.audit, self.portal, self.gateway = adapter.audit, adapter.client, adapter.gateway
        self.producer = build_producer(s.kafka)
        self.consumer = build_consumer(s.kafka)
        # The way back: what the national side sends, published once into Kafka through the outbox.
        self.inbound = InboundStore(self.store)
        self.relay = OutboxRelay(self.inbound, self.producer, s.kafka, self.metrics)
        self.intake = SubmissionIntake(s, self.mappings, self.inbound, self.relay,
                                       AttachmentStore(s.submissions.attachments_dir), self.metrics)
        self.payment_tracker: PaymentTracker | None = None
        self.payment_requests: PaymentRequestConsumer | None = None
        self._payment_consumer: AIOKafkaConsumer | None = None
        self._platform: PaymentPlatformClient | None = None
        if s.payments.enabled:
            self._platform = PaymentPlatformClient(s.payments)
            self.payment_tracker = PaymentTracker(s, self.inbound, self.relay, self._platform, self.metrics)
            self._payment_consumer = build_request_consumer(s)
            self.payment_requests = PaymentRequestConsumer(s, self.payment_tracker, self._payment_consumer,
                                                           self._failure_recorder("payments"), self.metrics)
        # A SQLite store serves one instance; several instances share a PostgreSQL one, and elect.
        self.lease = Lease(self.inbound, "way-back", solo=self.store.engine.dialect.name == "sqlite")
        self.admin_url = ""
        self.public_url = ""
        self._admin: web.AppRunner | None = None
        self._public: web.AppRunner | None = None
        self._unwatch_collector: Callable[[], None] | None = None
        self._warm_up: asyncio.Task[None] | None = None

    def _failure_recorder(self, origin: str) -> FailureRecorder:
        return FailureRecorder(self.store, DeadLetterQueue(self.producer, self.settings.kafka.topics.dead_letter),
                               self.settings.portal.retry, origin=origin)

    async def __aenter__(self) -> Service:
        try:
            await self._start()
        except BaseException:
            await self._close()
            raise
        return self

    async def _start(self) -> None:
        s = self.settings
        await self.store.migrate()
        await self.producer.start()
        await self.consumer.start()
        if self._payment_consumer is not None:
            await self._payment_consumer.start()
        operations = Operations(store=self.store, replayer=self._replayer, readiness=self.readiness)
        self._admin, self.admin_url = await start_admin(self.metrics, s.admin.host, s.admin.port,
                                                        token=self._admin_token, operations=operations)
        if s.public.listen is not None:
            app = create_public_app(
                metrics=self.metrics, submissions_path=s.public.submissions_path,
                payments_path=s.public.payments_path, intake=self.intake,
                payments=self.payment_tracker,
                max_submission_bytes=max_pushed_body_bytes(self.intake.limits), inbound_token=self._inbound_token)
            host, _, port = s.public.listen.rpartition(":")
            self._public, self.public_url = await start_public(app, host.strip("[]"), int(port),
                                                               ssl_context=self._public_tls)
            if self._inbound_token is None and not s.public.mutual_tls:
                # Only with allow_unauthenticated (the settings refuse it otherwise): the simulator and tests.
                log.warning("public.unauthenticated", public=self.public_url,
                            rule="anyone who reaches this listener can push a dossier (allow_unauthenticated)")
        self._unwatch_collector = self.metrics.watch_collector()
        self._warm_up = asyncio.create_task(self._log_in_once())
        log.info("service started", topic=s.kafka.topics.dossier_events, group=s.kafka.group_id,
                 admin=self.admin_url, public=self.public_url or None,
                 portal=str(URL(s.portal.adapter_url).with_user(None)))

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self._close()
        log.info("service stopped")

    async def _close(self) -> None:
        """Whatever was started, closed; safe on a start that stopped half-way."""
        if self._unwatch_collector is not None:
            self._unwatch_collector()
            self._unwatch_collector = None
        if self._warm_up is not None:
            self._warm_up.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._warm_up
        if self._public is not None:  # first: take nothing more in while the rest closes
            await self._public.cleanup()
            self._public = None
        # Leave the groups first so the partitions move on quickly, then release the rest.
        closing = [self.consumer.stop]
        if self._payment_consumer is not None and self._platform is not None:
            closing += [self._payment_consumer.stop, self._platform.close]
        for close in (*closing, self.producer.stop, self._adapter_closing.aclose, self.store.close):
            try:
                await close()
            except Exception as error:  # noqa: BLE001 - closing must go on for the others
                log.warning("error while closing", part=getattr(close, "__qualname__", "?"),
                            error=type(error).__name__)
        if self._admin is not None:
            await self._admin.cleanup()
            self._admin = None

    async def run(self, stop: asyncio.Event) -> None:
        s = self.settings
        failures = self._failure_recorder("pipeline")
        pipeline = PushPipeline(
            consumer=self.consumer,
            reader=EventReader(s, self.mappings, self.metrics),
            sync=DossierSync(settings=s, store=self.store, gateway=self.gateway, failures=failures),
            gateway=self.gateway,
            failures=failures,
            metrics=self.metrics,
            topic=s.kafka.topics.dossier_events,
            push=s.push,
        )
        trimming = asyncio.create_task(_trim_heap_until(stop))
        way_back = [asyncio.create_task(self._run_way_back(stop))]
        if self.payment_requests is not None:
            # Every instance registers payment requests (its share of the partitions); one queries them.
            way_back.append(asyncio.create_task(self.payment_requests.run(stop)))
        for task in way_back:
            # A way-back loop that ends on an error stops the daemon (exit 1, the supervisor restarts it):
            # running on without it would leave payment requests unread with nobody told.
            task.add_done_callback(lambda ended: stop.set() if not ended.cancelled() and ended.exception() else None)
        self.audit.start()
        try:
            await pipeline.run(stop)
        finally:
            trimming.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await trimming
            stop.set()  # the push side may have ended on its own (a fatal error): the way back stops too
            ended = await asyncio.gather(*way_back, return_exceptions=True)
        errors = [error for error in ended if isinstance(error, BaseException)]
        if errors:
            raise errors[0]

    async def _run_way_back(self, stop: asyncio.Event) -> None:
        """The outbox relay and the polls, on the one instance holding the lease."""
        s = self.settings
        poller = SubmissionPoller(s, self.intake, self.inbound, self.relay, self.portal, self.gateway, self.metrics)
        # Polling or not: pushed revisions are acknowledged once published, and conflicts confirmed.
        loops: list[Loop] = [self.relay.run, poller.follow_up]
        if s.submissions.poll:
            loops.append(poller.run)
        if self.payment_tracker is not None:
            loops.append(self.payment_tracker.run)
        if s.stats.push:
            loops.append(StatisticsPublisher(s, self.store, self.gateway, self.metrics).run)
        await self.lease.run(stop, loops, grace_seconds=s.push.shutdown_grace_seconds)

    def _replayer(self, changed_by: str) -> contextlib.AbstractAsyncContextManager[Replayer]:
        # The mappings as they are on disk now: a replay follows a mapping fix (live events pick it up at
        # the next start). Through the daemon's own store and gateway: a replay shares the rate limit and
        # the breaker. Raises MappingsInvalid.
        return open_replayer(self.settings, load_mappings(self.settings.mappings.dir), changed_by=changed_by,
                             store=self.store, gateway=self.gateway, metrics=self.metrics)

    async def _log_in_once(self) -> None:
        """The start-up login, so that readiness knows the adapter before the first event: through the gateway
        (its rate limit and breaker; an adapter that is down is waited out, a refused login is not tried again
        before the session's hold). Readiness itself never calls the adapter."""
        try:
            await self.gateway.request(LOGIN, self.portal.ensure_session)
        except SyncError as error:  # the pipeline's own calls meet it again; readiness names it meanwhile
            log.warning("portal login at start failed", error_class=type(error).__name__, reason=error.reason)

    async def portal_state_known(self) -> None:
        """Returns once readiness knows the adapter's state: the start-up login (or any call) has ended, however
        it ended (an adapter that is down is still being waited out)."""
        await self.portal.outcome_known()

    async def readiness(self) -> dict[str, str]:
        """Broker, state store and adapter, each "ok" or why not. The broker and the store are asked (side by
        side); the adapter is not: its check is the last known state of the shared session ("ok" once a login
        or call went through and nothing has failed since, the last error's class and reason otherwise, "no
        session yet" before anything is known), so probes never log in."""

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

        results = dict(await asyncio.gather(check("broker", self.consumer.topics),
                                            check("state_store", self.store.ping)))
        portal = self.portal.readiness()
        if portal is None:
            portal = "no session yet"
        elif portal == "ok" and self.gateway.unavailable:
            portal = "PortalUnavailable (adapter_failing)"  # the breaker holds calls back, or an outage is waited out
        results["portal"] = portal
        return results


async def _trim_heap_until(stop: asyncio.Event) -> None:
    while not stop.is_set() and trim_heap():
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), HEAP_TRIM_SECONDS)
