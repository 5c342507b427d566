"""S3 answers 503 Slow Down while it scales a new prefix: the functions' client retries it."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from botocore.exceptions import ClientError
from botocore.retries import standard

from groveflow import storage

SLOW_DOWN = (
    b'<?xml version="1.0" encoding="UTF-8"?><Error><Code>SlowDown</Code>'
    b"<Message>Please reduce your request rate.</Message></Error>"
)


class SlowS3:
    """An S3 endpoint on loopback that answers the first ``slow`` requests 503 Slow Down."""

    def __init__(self, slow: int) -> None:
        self.slow, self.requests = slow, 0
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                owner.requests += 1
                status, body = (503, SLOW_DOWN) if owner.requests <= owner.slow else (200, b"ok")
                self.send_response(status)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *_: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.endpoint = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


@pytest.fixture
def slow_s3(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[SlowS3]:
    server = SlowS3(slow=request.param)
    for name, value in {
        "AWS_ENDPOINT_URL_S3": server.endpoint,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
    }.items():
        monkeypatch.setenv(name, value)
    # The backoff's length is botocore's business; the number of attempts is ours.
    monkeypatch.setattr(standard.ExponentialBackoff, "delay_amount", lambda self, context: 0)
    storage._s3.cache_clear()
    yield server
    storage._s3.cache_clear()
    server.server.shutdown()


def test_the_client_uses_standard_retries_with_room_for_a_prefix_to_scale() -> None:
    storage._s3.cache_clear()
    try:
        retries = storage._s3().meta.config.retries
    finally:
        storage._s3.cache_clear()
    assert retries == {"mode": "standard", "total_max_attempts": storage.S3_MAX_ATTEMPTS}
    assert storage.S3_MAX_ATTEMPTS >= 10


@pytest.mark.parametrize("slow_s3", [7], indirect=True)
def test_seven_slow_downs_in_a_row_are_retried_until_s3_answers(slow_s3: SlowS3) -> None:
    # GIVEN S3 answering 503 Slow Down 7 times (botocore's legacy mode gives up after 5 tries)
    # WHEN a function reads an object THEN it gets it, on the 8th attempt
    assert storage.get_bytes("groveflow-bucket", "runs/r/plan.json") == b"ok"
    assert slow_s3.requests == 8


@pytest.mark.parametrize("slow_s3", [50], indirect=True)
def test_a_slow_down_that_lasts_fails_after_the_last_attempt(slow_s3: SlowS3) -> None:
    with pytest.raises(ClientError, match="SlowDown"):
        storage.get_bytes("groveflow-bucket", "runs/r/plan.json")
    assert slow_s3.requests == storage.S3_MAX_ATTEMPTS
