"""HTTP/1.1 details of the event routes on a real ``geo-edge`` (one worker, real Kafka), spoken over
raw sockets: these routes run in the edge's direct cycle (``service_kit.direct_cycle``), not in
uvicorn's, so what uvicorn's cycle did for them is checked here — pipelined requests answered in
order (mixed with a route that takes the ordinary ASGI way), ``Expect: 100-continue``, a body that
arrives in pieces, HTTP/1.0 and ``Connection: close`` answered and closed, a client that leaves in
the middle of its body."""

from __future__ import annotations

import socket
from typing import Iterator

import orjson
import pytest
from aiokafka import TopicPartition

from edge.config import EdgeConfig
from edge.testing import edge_argv, edge_env, wait_status
from harness.ports import free_port
from harness.process import spawn, terminate

TOPIC = "http-details"


@pytest.fixture(scope="module")
def edge(kafka, tmp_path_factory) -> Iterator[EdgeConfig]:
    cfg = EdgeConfig(host="127.0.0.1", port=free_port(), metrics_host="127.0.0.1", metrics_port=free_port(),
                     kafka=kafka.bootstrap, topic=TOPIC, workers=1, kafka_check_interval=0.5)
    proc = spawn(edge_argv(cfg), tmp_path_factory.mktemp("http-edge") / "edge.log", env=edge_env())
    try:
        wait_status(f"http://127.0.0.1:{cfg.port}/status", 200, 60)
        yield cfg
    finally:
        assert terminate(proc, 30) == 0


def post(body: bytes, *extra: str, version: str = "1.1") -> bytes:
    head = [f"POST /post HTTP/{version}", "Host: edge", "Content-Type: application/json",
            f"Content-Length: {len(body)}", *extra]
    return ("\r\n".join(head) + "\r\n\r\n").encode() + body


class Reader:
    """Reads HTTP/1.1 answers (with Content-Length) off a socket."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock, self.buffer = sock, b""

    def _fill(self) -> bool:
        chunk = self.sock.recv(65536)
        self.buffer += chunk
        return bool(chunk)

    def answer(self) -> tuple[int, dict[str, str], bytes]:
        while b"\r\n\r\n" not in self.buffer:
            assert self._fill(), f"closed before a whole answer: {self.buffer!r}"
        head, self.buffer = self.buffer.split(b"\r\n\r\n", 1)
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split()[1])
        headers = {k.strip().lower(): v.strip() for k, v in (line.split(":", 1) for line in lines[1:])}
        length = int(headers.get("content-length", "0"))
        while len(self.buffer) < length:
            assert self._fill(), "closed inside a body"
        body, self.buffer = self.buffer[:length], self.buffer[length:]
        return status, headers, body

    def closed(self) -> bool:
        """True when the server closes the connection (and sends nothing more)."""
        return not self._fill() and not self.buffer


def connect(cfg: EdgeConfig) -> tuple[socket.socket, Reader]:
    sock = socket.create_connection(("127.0.0.1", cfg.port), timeout=10)
    return sock, Reader(sock)


def stored(kafka, partition: int, offset: int) -> bytes:
    """The value of the record at ``partition``/``offset`` of the edge's topic."""
    import asyncio

    from aiokafka import AIOKafkaConsumer

    async def read() -> bytes:
        consumer = AIOKafkaConsumer(bootstrap_servers=kafka.bootstrap, enable_auto_commit=False)
        await consumer.start()
        try:
            tp = TopicPartition(TOPIC, partition)
            consumer.assign([tp])
            consumer.seek(tp, offset)
            record = await consumer.getone()
            return record.value
        finally:
            await consumer.stop()

    return asyncio.run(read())


def test_pipelined_requests_are_answered_in_order_beside_an_asgi_route(edge: EdgeConfig, kafka) -> None:
    events = [orjson.dumps({"event": "pipelined", "n": n}) for n in range(3)]
    status_request = b"GET /status HTTP/1.1\r\nHost: edge\r\n\r\n"
    sock, reader = connect(edge)
    with sock:
        sock.sendall(post(events[0]) + status_request + post(events[1]) + post(events[2]))
        answers = [reader.answer() for _ in range(4)]
    assert [a[0] for a in answers] == [200, 200, 200, 200]
    assert orjson.loads(answers[1][2])["status"] == "ok"      # /status: the ordinary ASGI way
    acks = [orjson.loads(a[2]) for a in (answers[0], answers[2], answers[3])]
    for event, ack in zip(events, acks):
        assert ack["status"] == "ok"
        assert stored(kafka, ack["partition"], ack["offset"]) == event  # each answer is its own event


def test_expect_100_continue_then_the_body(edge: EdgeConfig) -> None:
    body = orjson.dumps({"event": "continue"})
    request = post(body, "Expect: 100-continue")
    head, _ = request.split(b"\r\n\r\n", 1)
    sock, reader = connect(edge)
    with sock:
        sock.sendall(head + b"\r\n\r\n")
        interim = sock.recv(64)
        assert interim.startswith(b"HTTP/1.1 100 Continue\r\n\r\n"), interim
        reader.buffer = interim[len(b"HTTP/1.1 100 Continue\r\n\r\n"):]
        sock.sendall(body)
        status, _, answer = reader.answer()
    assert status == 200 and orjson.loads(answer)["status"] == "ok"


def test_a_body_in_pieces(edge: EdgeConfig) -> None:
    body = orjson.dumps({"event": "pieces", "pad": "x" * 300})
    request = post(body)
    sock, reader = connect(edge)
    with sock:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        split = request.index(b"\r\n\r\n") + 4
        for piece in (request[:split], body[:10], body[10:200], body[200:]):
            sock.sendall(piece)
        status, headers, answer = reader.answer()
        assert status == 200 and orjson.loads(answer)["status"] == "ok"
        assert headers.get("connection") != "close"
        sock.sendall(post(orjson.dumps({"event": "after"})))   # the connection is kept
        assert reader.answer()[0] == 200


@pytest.mark.parametrize("version, extra", [("1.0", ()), ("1.1", ("Connection: close",))])
def test_http_1_0_and_connection_close_are_answered_then_closed(edge: EdgeConfig, version: str,
                                                                 extra: tuple[str, ...]) -> None:
    sock, reader = connect(edge)
    with sock:
        sock.sendall(post(orjson.dumps({"event": "closing"}), *extra, version=version))
        status, headers, _ = reader.answer()
        assert status == 200
        assert headers["connection"] == "close"
        assert reader.closed()


def test_a_client_leaving_inside_its_body_leaves_the_edge_serving(edge: EdgeConfig) -> None:
    body = orjson.dumps({"event": "left"})
    sock, _ = connect(edge)
    sock.sendall(post(body)[:-5])
    sock.close()
    sock, reader = connect(edge)
    with sock:
        sock.sendall(post(orjson.dumps({"event": "next"})))
        assert reader.answer()[0] == 200


def test_rejections_and_events_alternate_on_one_connection(edge: EdgeConfig, kafka) -> None:
    """A rejection is answered while the request is parsed, an event after Kafka's ack (the
    immediate way); both leave the connection open for the next request, answered in turn."""
    good = [orjson.dumps({"event": "turn", "n": n}) for n in range(2)]
    sock, reader = connect(edge)
    with sock:
        answers = []
        for body in (b"{not json", good[0], b"   ", good[1]):
            sock.sendall(post(body))
            answers.append(reader.answer())
    assert [a[0] for a in answers] == [400, 200, 400, 200]
    assert [orjson.loads(a[2])["error"]["reason"] for a in (answers[0], answers[2])] == ["invalid_json", "empty_body"]
    for event, answer in zip(good, (answers[1], answers[3])):
        ack = orjson.loads(answer[2])
        assert answer[1]["content-type"] == "application/json"
        assert stored(kafka, ack["partition"], ack["offset"]) == event


def test_a_client_leaving_before_its_answer_leaves_the_edge_serving(edge: EdgeConfig) -> None:
    for n in range(20):  # whole requests, gone before Kafka's ack comes back
        sock, _ = connect(edge)
        sock.sendall(post(orjson.dumps({"event": "gone", "n": n})))
        sock.close()
    sock, reader = connect(edge)
    with sock:
        for n in range(2):
            sock.sendall(post(orjson.dumps({"event": "after", "n": n})))
            assert reader.answer()[0] == 200
