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

from connector.config import Settings
from connector.errors import SyncError
from connector.failures import FailureRecorder
from connector.heap import trim_heap
from connector.kafka import DeadLetterQueue, build_consumer, build_producer
from connector.listeners import create_public_app, server_tls, start_public
from connector.observability import Metrics
from connector.operators.admin import Operations, start_admin
from connector.operators.replay import Replayer, open_replayer
from connector.outbox.lease import Leadership, Loop
from connector.outbox.relay import OutboxRelay
from connector.payments.desk import PaymentDesk, PaymentRequestConsumer, build_request_consumer
from connector.payments.platform import PaymentPlatformClient
from connector.portal.audit import AuditTrail
from connector.portal.client import LOGIN, PortalClient
from connector.pull.attachments import AttachmentStore
from connector.pull.poller import SubmissionIntake, SubmissionPoller, max_pushed_body_bytes
from connector.push.mapping import Mappings, load_mappings
from connector.push.pipeline import DossierSync, EventReader, PortalGateway, PushPipeline
from connector.store import StateStore
from connector.store.way_back import InboundStore

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
        self.public_url = ""
        self._admin: web.AppRunner | None = None
        self._public: web.AppRunner | None = None
        self._unwatch_collector: Callable[[], None] | None = None
        self._warm_up: asyncio.Task[None] | None = None

    async def __aenter__(self) -> Service:
        s = self.settings
        admin_token = s.admin.token_value()  # before connecting anything: a ConfigError leaves nothing open
        inbound_token = s.public.inbound_token_value() if s.public.listen is not None else None
        public_tls = (server_tls(s.public.tls_cert_file, s.public.tls_key_file, s.public.tls_client_ca_file,
                                 section="public")
                      if s.public.listen is not None and s.public.tls_cert_file and s.public.tls_key_file else None)
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
        # The way back: what the national side sends, published once into Kafka through the outbox.
        self.inbound = InboundStore(self.store)
        self.relay = OutboxRelay(self.inbound, self.producer, s.kafka, self.metrics)
        self.intake = SubmissionIntake(s, self.mappings, self.inbound, self.relay,
                                       AttachmentStore(s.submissions.attachments_dir), self.metrics)
        self.desk: PaymentDesk | None = None
        if s.payments.enabled:
            self.platform = PaymentPlatformClient(s.payments)
            self.desk = PaymentDesk(s, self.inbound, self.relay, self.platform, self.metrics)
            self.payment_consumer = build_request_consumer(s)
            await self.payment_consumer.start()
        if s.public.listen is not None:
            app = create_public_app(
                metrics=self.metrics, submissions_path=s.public.submissions_path,
                payments_path=s.public.payments_path, intake=self.intake, payments=self.desk,
                max_submission_bytes=max_pushed_body_bytes(self.intake.limits), inbound_token=inbound_token)
            host, _, port = s.public.listen.rpartition(":")
            self._public, self.public_url = await start_public(app, host.strip("[]"), int(port),
                                                               ssl_context=public_tls)
            if inbound_token is None and not s.public.mutual_tls:
                # Only with allow_unauthenticated (the settings refuse it otherwise): the simulator and tests.
                log.warning("public.unauthenticated", public=self.public_url,
                            rule="anyone who reaches this listener can push a dossier (allow_unauthenticated)")
        self._unwatch_collector = self.metrics.watch_collector()
        self._warm_up = asyncio.create_task(self._log_in_once())
        log.info("service started", topic=s.kafka.topics.dossier_events, group=s.kafka.group_id,
                 admin=self.admin_url, public=self.public_url or None,
                 portal=str(URL(s.portal.adapter_url).with_user(None)))
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._unwatch_collector is not None:
            self._unwatch_collector()
            self._unwatch_collector = None
        if self._warm_up is not None:
            self._warm_up.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._warm_up
        if self._public is not None:  # first: take nothing more in while the rest closes
            await self._public.cleanup()
        # Leave the groups first so the partitions move on quickly, then release the rest.
        closing = [self.consumer.stop]
        if self.desk is not None:
            closing += [self.payment_consumer.stop, self.platform.close]
        for close in (*closing, self.producer.stop, self.portal.close, self.audit.close, self.store.close):
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
        way_back = [asyncio.create_task(self._run_way_back(stop))]
        if self.desk is not None:
            # Every instance registers payment requests (its share of the partitions); one queries them.
            requests = PaymentRequestConsumer(
                s, self.desk, self.payment_consumer,
                FailureRecorder(self.store, DeadLetterQueue(self.producer, s.kafka.topics.dead_letter),
                                s.portal.retry), self.metrics)
            way_back.append(asyncio.create_task(requests.run(stop)))
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
        if self.desk is not None:
            loops.append(self.desk.run)
        # A SQLite store serves one instance; several instances share a PostgreSQL one, and elect.
        self.leadership = Leadership(self.inbound, "way-back", solo=self.store.engine.dialect.name == "sqlite")
        await self.leadership.run(stop, loops, grace_seconds=s.push.shutdown_grace_seconds)


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
