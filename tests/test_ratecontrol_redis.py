"""The shared request budget against a real ``redis-server`` on a free loopback port (threads and processes)."""

from __future__ import annotations

import hashlib
import json
import logging
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from peak_provider.ratecontrol import (
    HEADROOM,
    AdaptivePacer,
    RedisSlots,
    SharedBudget,
    Slot,
    budget_key,
    redis_client,
)
from tests.pg import free_port
from tests.redis_server import MISSING, REDIS_SERVER, RedisServer, redis_server
from tests.test_ratecontrol import FakeClock, draw_in_threads, gaps
from tests.tls import self_signed_cert

pytestmark = pytest.mark.skipif(REDIS_SERVER is None, reason=MISSING)

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def server() -> Iterator[RedisServer]:
    with redis_server() as started:
        yield started


@pytest.fixture
def client(server: RedisServer) -> Iterator:
    connected = server.client()
    connected.flushall()
    yield connected
    connected.close()


def redis_conn(server: RedisServer, **fields: object):
    from airflow.models import Connection

    return Connection(
        conn_id=f"budget_{uuid.uuid4().hex[:8]}",
        conn_type="redis",
        host=server.host,
        port=server.port,
        password=server.password,
        **fields,  # type: ignore[arg-type]
    )


class RecordingSlots(RedisSlots):
    """The real slot schedule, remembering every slot it hands out and every attempt to draw one."""

    def __init__(self, *args: object) -> None:
        super().__init__(*args)  # type: ignore[arg-type]
        self.drawn: list[Slot] = []
        self.attempts = 0

    def next_slot(self) -> Slot:
        self.attempts += 1
        slot = super().next_slot()
        self.drawn.append(slot)
        return slot


def test_slots_are_evenly_spaced_across_threads_by_redis_time(client) -> None:
    slots = RedisSlots(client, "peak:rate:test-threads", 100)
    drawn = draw_in_threads([slots], threads=8, each=25)
    starts = sorted(slot.start for slot in drawn)
    assert len(set(starts)) == 200
    assert min(gaps(starts)) >= 1e6 / 100  # no two slots closer than 1/rate, in Redis's microseconds
    assert slots.interval_us == round(HEADROOM * 1e6 / 100)
    assert all(slot.start >= slot.now for slot in drawn)


CHILD = r"""
import json, sys, time
import redis
from peak_provider.ratecontrol import AdaptivePacer, RedisSlots, SharedBudget

port, key, rate = int(sys.argv[1]), sys.argv[2], float(sys.argv[3])
client = redis.Redis(host="127.0.0.1", port=port)
starts = []

class Recording(RedisSlots):
    def next_slot(self):
        slot = super().next_slot()
        starts.append(slot.start)
        return slot

budget = SharedBudget(Recording(client, key, rate), AdaptivePacer(rate))
client.rpush(key + ":ready", 1)
assert client.blpop([key + ":go"], timeout=60), "never told to go"
for _ in range(50):
    budget.acquire()
    budget.on_success()
print(json.dumps(starts))
"""


@pytest.mark.slow  # cost: four processes paced for seconds
def test_four_processes_share_one_budget(server: RedisServer, client) -> None:
    key, rate = "peak:rate:test-processes", 100.0
    processes = [
        subprocess.Popen(
            [sys.executable, "-c", CHILD, str(server.port), key, str(rate)],
            cwd=REPO,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(4)
    ]
    try:
        deadline = time.monotonic() + 60
        while client.llen(f"{key}:ready") < 4:  # every child connected: start them together
            assert all(p.poll() is None for p in processes), [p.communicate() for p in processes]
            assert time.monotonic() < deadline, "the children did not start"
            time.sleep(0.05)
        client.rpush(f"{key}:go", *[1] * 4)
        outputs = [p.communicate(timeout=120) for p in processes]
        assert [p.returncode for p in processes] == [0] * 4, outputs
    finally:
        for p in processes:
            if p.poll() is None:
                p.kill()
            p.wait()
    per_process = [json.loads(out) for out, _ in outputs]
    assert [len(starts) for starts in per_process] == [50] * 4
    union = sorted(start for starts in per_process for start in starts)
    assert min(gaps(union)) >= 1e6 / rate - 1  # evenly spaced at 1/rate (1 µs of rounding)
    assert max(min(s) for s in per_process) < min(max(s) for s in per_process)  # they really drew together


def test_the_budget_key_in_redis_holds_no_token(server: RedisServer, client) -> None:
    token = f"pat-{uuid.uuid4().hex}-secret"
    key = budget_key("http://127.0.0.1:8080", token)
    budget = SharedBudget.shared(redis_conn(server), key, 1000)
    budget.acquire()
    budget.on_throttle(0.01)
    stored = client.keys("*")
    assert stored == [key.encode()]
    assert hashlib.sha256(token.encode()).hexdigest().encode() in stored[0]
    assert token.encode() not in stored[0]
    assert token.encode() not in client.get(stored[0])
    assert budget.available


def test_acquire_waits_for_the_redis_slot(client) -> None:
    key, rate = "peak:rate:test-acquire", 100
    budgets, waits = [], []
    for _ in range(2):  # two workers of one tenant, each with its own pacer and (fake) sleep
        clock, slept = FakeClock(), []
        pacer = AdaptivePacer(rate, clock=clock, sleep=clock.sleep)
        budgets.append(SharedBudget(RecordingSlots(client, key, rate), pacer, clock=clock, sleep=slept.append))
        waits.append(slept)
    for _ in range(10):
        for budget in budgets:
            budget.acquire()
    for budget, slept in zip(budgets, waits, strict=True):
        slots = budget.slots
        assert isinstance(slots, RecordingSlots)
        assert slept == [slot.wait for slot in slots.drawn if slot.wait > 0]
    union = sorted(slot.start for budget in budgets for slot in budget.slots.drawn)  # type: ignore[attr-defined]
    assert len(union) == 20
    assert min(gaps(union)) >= 1e6 / rate


def test_a_throttle_pauses_every_worker_of_the_budget(client) -> None:
    key = "peak:rate:test-push"
    one = SharedBudget(RedisSlots(client, key, 50), AdaptivePacer(50, rand=lambda: 0.0))
    other = RedisSlots(client, key, 50)  # another worker, elsewhere
    seconds, micros = client.time()
    before = seconds * 1_000_000 + micros
    assert one.on_throttle(2.0) == pytest.approx(2.0, abs=0.01)
    assert one.pacer.rate == 50  # the budget sets the rate: a throttle pauses, it does not cut
    held = int(client.get(key))
    assert held >= before + 2_000_000
    assert other.next_slot().start == held  # the other worker's next slot comes after the pause


def test_redis_down_warns_once_and_falls_back_to_the_pacer(caplog: pytest.LogCaptureFixture) -> None:
    from airflow.models import Connection

    conn = Connection(
        conn_id="budget_down",
        conn_type="redis",
        host="127.0.0.1",
        port=free_port(),  # nothing listens there
        password="budget-down-password",
    )
    budget = SharedBudget.shared(conn, f"peak:rate:down-{uuid.uuid4().hex}", 1000)
    with caplog.at_level(logging.DEBUG, logger="peak_provider.ratecontrol"):
        for _ in range(20):
            budget.acquire()
            budget.on_success()
        budget.on_throttle(0.0)
    assert budget.pacer.rate < 1000  # alone, the pacer adapts: the throttle cut its rate
    warnings = [r for r in caplog.records if r.name == "peak_provider.ratecontrol" and r.levelno >= logging.WARNING]
    assert len(warnings) == 1, caplog.text
    assert "budget_down" in warnings[0].getMessage()
    assert "paces itself" in warnings[0].getMessage()
    assert "budget-down-password" not in caplog.text
    assert not budget.available


def test_a_redis_error_falls_back_and_never_logs_the_password(caplog: pytest.LogCaptureFixture) -> None:
    with redis_server(password="the-right-password") as guarded:
        conn = redis_conn(guarded)
        conn.password = "a-wrong-password"
        budget = SharedBudget.shared(conn, f"peak:rate:auth-{uuid.uuid4().hex}", 1000)
        with caplog.at_level(logging.DEBUG, logger="peak_provider.ratecontrol"):
            for _ in range(5):
                budget.acquire()
    ours = [r.levelno for r in caplog.records if r.name == "peak_provider.ratecontrol" and r.levelno >= logging.WARNING]
    assert ours == [logging.WARNING]
    assert "AuthenticationError" in caplog.text or "invalid" in caplog.text.lower()
    assert "a-wrong-password" not in caplog.text
    assert "the-right-password" not in caplog.text
    assert not budget.available


def test_fallback_paces_alone_then_returns_to_redis(caplog: pytest.LogCaptureFixture) -> None:
    with redis_server() as store:
        clock = FakeClock()
        pacer = AdaptivePacer(50, clock=clock, sleep=clock.sleep)
        slots = RecordingSlots(redis_client(redis_conn(store)), "peak:rate:test-recover", 50)
        budget = SharedBudget(slots, pacer, clock=clock, sleep=clock.sleep, retry_down=30.0)
        budget.acquire()
        assert (len(slots.drawn), budget.available) == (1, True)
        store.stop()
        with caplog.at_level(logging.INFO, logger="peak_provider.ratecontrol"):
            starts = [budget.acquire() for _ in range(10)]
            assert not budget.available
            assert slots.attempts == 2  # one failed draw, then the pacer alone until retry_down passes
            assert gaps(starts) == pytest.approx([HEADROOM / 50] * 9, rel=1e-9)
            clock.t += 31
            budget.acquire()
            assert slots.attempts == 3 and not budget.available
            store.start()
            clock.t += 31
            budget.acquire()
        assert (len(slots.drawn), budget.available) == (2, True)
        levels = [r.levelno for r in caplog.records if r.name == "peak_provider.ratecontrol"]
        assert levels == [logging.WARNING, logging.INFO]  # one warning, one "answers again"


def test_redis_client_from_an_airflow_connection(tmp_path: Path) -> None:
    with redis_server(password="budget-db-password") as guarded:
        client = redis_client(redis_conn(guarded, login="default", extra={"db": 5}))
        assert client.ping()
        assert client.client_info()["db"] == 5
        client.close()
    cert, key = self_signed_cert(tmp_path)
    with redis_server(tls=(cert, key)) as secure:
        tls_conn = redis_conn(secure, extra={"ssl": True, "ssl_ca_certs": cert})
        tls_conn.host = "localhost"  # the name in the certificate
        client = redis_client(tls_conn)
        assert client.ping()
        client.close()
        import redis

        unverified = redis_conn(secure, extra={"ssl": "true"})  # no CA given: the server is not trusted
        with pytest.raises(redis.ConnectionError):
            redis_client(unverified).ping()
