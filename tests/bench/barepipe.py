"""The bare pipe: the least a Kafka → adapter bridge can do, the practical limit the daemon is compared with.

A consumer group member with manual commits; every poll is cut, per partition, into batches of the daemon's
``push.max_batch_records``, each batch POSTed as one ``DongBoHoSoMC`` call (``isUpdating: "True"``) and its
offset committed once the simulator accepted it. Partitions proceed concurrently, batches of one partition
in order. No decoding, validation, mapping or state: the records were mapped before the clock started and
are looked up by (partition, offset).

Run by the bench as ``python -m tests.bench.barepipe ARGS``; prints JSON lines on stdout
(``{"ready": …}``, ``{"first_consumed": <monotonic time>}``, at the end ``{"posted": n, "calls": n}``).
Stops on SIGTERM.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import pickle
import signal
import sys
import time
from pathlib import Path

import aiohttp
from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition

SUCCESS = (0, "0", "00")


def _say(**fields: object) -> None:
    sys.stdout.write(json.dumps(fields) + "\n")
    sys.stdout.flush()


class Pipe:
    def __init__(self, args: argparse.Namespace, records: dict[int, dict[int, bytes]]) -> None:
        self.args = args
        self.records = records
        self.head = b""
        self.posted = 0
        self.calls = 0

    async def login(self, http: aiohttp.ClientSession) -> None:
        body = {"username": self.args.username, "password": self.args.password}
        async with http.post(self.args.url + self.args.auth_endpoint, json=body) as response:
            reply = await response.json(content_type=None)
        if reply.get("error_code") not in SUCCESS or not reply.get("session"):
            raise SystemExit(f"login refused: {reply.get('message')!r}")
        envelope = {"session": reply["session"], "madonvi": self.args.madonvi, "service": "DongBoHoSoMC",
                    "isUpdating": "True"}
        self.head = json.dumps(envelope, ensure_ascii=False).encode("utf-8")[:-1] + b',"data":['

    async def push(
        self, http: aiohttp.ClientSession, consumer: AIOKafkaConsumer, tp: TopicPartition,
        records: list[ConsumerRecord[bytes, bytes]],
    ) -> None:
        mapped = self.records[tp.partition]
        size = self.args.batch
        for start in range(0, len(records), size):
            batch = records[start:start + size]
            body = self.head + b",".join(mapped[r.offset] for r in batch) + b"]}"
            async with http.post(self.args.url + self.args.integration_endpoint, data=body,
                                 headers={"Content-Type": "application/json"}) as response:
                reply = await response.json(content_type=None)
            if response.status != 200 or reply.get("error_code") not in SUCCESS:
                raise SystemExit(f"the simulator refused a batch (HTTP {response.status}): {reply.get('message')!r}")
            self.calls += 1
            self.posted += len(batch)
            await consumer.commit({tp: batch[-1].offset + 1})


async def main(args: argparse.Namespace, records: dict[int, dict[int, bytes]]) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    pipe = Pipe(args, records)
    timeout = aiohttp.ClientTimeout(total=60)
    async with aiohttp.ClientSession(timeout=timeout) as http:
        await pipe.login(http)
        consumer = AIOKafkaConsumer(
            args.topic, bootstrap_servers=args.bootstrap, group_id=args.group, client_id="bare-pipe",
            enable_auto_commit=False, auto_offset_reset="earliest", session_timeout_ms=args.session_timeout_ms,
        )
        await consumer.start()
        _say(ready=True)
        first = True
        try:
            while not stop.is_set():
                batches = await consumer.getmany(timeout_ms=100, max_records=args.max_poll_records)
                if not batches:
                    continue
                if first:
                    _say(first_consumed=time.monotonic())
                    first = False
                await asyncio.gather(*(pipe.push(http, consumer, tp, recs) for tp, recs in batches.items()))
        finally:
            await consumer.stop()
    _say(posted=pipe.posted, calls=pipe.calls)


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m tests.bench.barepipe")
    parser.add_argument("--bootstrap", required=True)
    parser.add_argument("--topic", required=True)
    parser.add_argument("--group", required=True)
    parser.add_argument("--url", required=True, help="the simulator's base URL")
    parser.add_argument("--auth-endpoint", default="/api/auth")
    parser.add_argument("--integration-endpoint", default="/api/integration")
    parser.add_argument("--username", required=True)
    parser.add_argument("--password", required=True)
    parser.add_argument("--madonvi", required=True)
    parser.add_argument("--batch", type=int, required=True, help="records per DongBoHoSoMC call")
    parser.add_argument("--max-poll-records", type=int, default=500)
    parser.add_argument("--session-timeout-ms", type=int, default=6000)
    parser.add_argument("--records", required=True, help="pickle: {partition: {offset: record JSON bytes}}")
    return parser.parse_args(argv)


if __name__ == "__main__":
    arguments = parse()
    # Loaded before anything connects: the clock starts at the first consumed record.
    asyncio.run(main(arguments, pickle.loads(Path(arguments.records).read_bytes())))
