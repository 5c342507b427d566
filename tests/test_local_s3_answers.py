"""The engine answers S3 requests in process as its HTTP server does.

The workers' S3 requests (through their pipes) and the engine's own are answered by moto's
S3 handler directly, without the Flask application the HTTP server runs around it
(``groveflow.local.server._answer_s3``). Each request a client makes here is answered both
ways, and the answers are the same but for what is new in every answer (request ids, an
upload id).
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Callable, Iterator
from typing import Any

import boto3
import pytest

from conftest import unique_name
from groveflow.local.sandbox import request_parts
from groveflow.local.server import CREDENTIALS, Server

# what is new in every answer: request ids, the date, and (a bucket with versioning on, as
# an earlier test may have left the engine's) each PUT's version id
_NEW_EACH_TIME = {"x-amzn-requestid", "x-amz-request-id", "x-amz-id-2", "date", "x-amz-version-id"}
_IDS = re.compile(rb"<(RequestId|HostId|UploadId)>[^<]*</\1>")


def _recorded_requests(
    engine: Any, calls: list[Callable[[Any, str], Any]]
) -> Iterator[tuple[Any, ...]]:
    """Make each call with a client of the engine's endpoint; each request it sent."""
    client = boto3.client(
        "s3",
        endpoint_url=engine.endpoint,
        region_name="us-east-1",
        **{
            "aws_access_key_id": CREDENTIALS["AWS_ACCESS_KEY_ID"],
            "aws_secret_access_key": CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
        },
    )
    sent: list[tuple[Any, ...]] = []

    def record(request: Any, **_: Any) -> None:
        sent.append((request.method, request.url, *request_parts(request)))

    client.meta.events.register_first("before-send", record)
    prefix = f"answers/{unique_name('s3')}/"
    for call in calls:
        sent.clear()
        with contextlib.suppress(client.exceptions.ClientError):
            call(client, prefix)
        yield from list(sent)


def _comparable(answer: tuple[int, list[tuple[str, str]], bytes]) -> tuple[Any, ...]:
    status, headers, body = answer
    new = _NEW_EACH_TIME | ({"content-length"} if _IDS.search(body) else set())  # ids' lengths
    kept = sorted((n.lower(), v) for n, v in headers if n.lower() not in new)
    return status, kept, _IDS.sub(rb"<\1/>", body)


CALLS: list[Callable[[Any, str], Any]] = [
    lambda s3, p: s3.get_object(Bucket="groveflow-local", Key=p + "missing"),
    lambda s3, p: s3.head_object(Bucket="groveflow-local", Key=p + "missing"),
    lambda s3, p: s3.put_object(
        Bucket="groveflow-local", Key=p + "a", Body=b"abc", Metadata={"sha256": "1", "my_key": "v"}
    ),
    lambda s3, p: s3.put_object(Bucket="groveflow-local", Key=p + "a", Body=b"x", IfNoneMatch="*"),
    lambda s3, p: s3.get_object(Bucket="groveflow-local", Key=p + "a"),
    lambda s3, p: s3.get_object(Bucket="groveflow-local", Key=p + "a", Range="bytes=1-2"),
    lambda s3, p: s3.get_object(Bucket="groveflow-local", Key=p + "a", Range="bytes=9-12"),
    lambda s3, p: s3.head_object(Bucket="groveflow-local", Key=p + "a"),
    lambda s3, p: s3.get_object(
        Bucket="groveflow-local",
        Key=p + "a",
        IfNoneMatch=s3.head_object(Bucket="groveflow-local", Key=p + "a")["ETag"],
    ),
    lambda s3, p: s3.put_object(Bucket="groveflow-local", Key=p + "we ird%2Fkey+ü", Body=b"ab"),
    lambda s3, p: s3.list_objects_v2(Bucket="groveflow-local", Prefix=p),
    lambda s3, p: s3.list_objects_v2(Bucket="groveflow-local", Prefix=p, Delimiter="/", MaxKeys=1),
    lambda s3, p: s3.head_bucket(Bucket="groveflow-local"),
    lambda s3, p: s3.get_object(Bucket="no-such-bucket", Key="k"),
    lambda s3, p: s3.create_multipart_upload(Bucket="groveflow-local", Key=p + "parts"),
    lambda s3, p: s3.delete_object(Bucket="groveflow-local", Key=p + "never-stored"),
]


def test_every_s3_answer_in_process_is_the_http_servers_answer(engine: Any) -> None:
    # GIVEN the requests a client sends for reads, writes, conditional and ranged requests,
    # errors, listings and a multipart upload
    # WHEN the engine answers each in process, and its HTTP server's application answers it
    # (the repeat of a write meets the object the first answer stored: both see it)
    in_process = Server._in_process
    assert in_process is not None
    for method, url, headers, body in _recorded_requests(engine, CALLS):
        direct = in_process.answer(method, url, headers, body)
        through_flask = in_process._answer_wsgi(method, url, headers, body)
        # THEN both answers are the same
        assert _comparable(direct) == _comparable(through_flask), (method, url)


@pytest.mark.parametrize("service", ["stepfunctions", "logs"])
def test_other_services_are_answered_by_the_application(engine: Any, service: str) -> None:
    # GIVEN a request signed for another service WHEN it is answered in process
    client = boto3.client(
        service,
        endpoint_url=engine.endpoint,
        region_name="us-east-1",
        **{
            "aws_access_key_id": CREDENTIALS["AWS_ACCESS_KEY_ID"],
            "aws_secret_access_key": CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
        },
    )
    # THEN it is answered as before (the S3 route is for S3 only)
    if service == "stepfunctions":
        assert "stateMachines" in client.list_state_machines()
    else:
        assert "logGroups" in client.describe_log_groups()
