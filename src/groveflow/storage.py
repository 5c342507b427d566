"""Object storage: the one place groveflow talks to S3 or the local disk.

Handlers use the same calls on AWS and on the local engine; locally, boto3 is
pointed at the engine's S3 server by the standard ``AWS_ENDPOINT_URL_S3``
variable, so there is a single code path.
"""

from __future__ import annotations

import functools
import hashlib
import io
import json
import time
from pathlib import Path
from typing import Any

import numpy as np

from groveflow.errors import DatasetNotFound

__all__ = [
    "create_bytes",
    "create_json",
    "delete",
    "download",
    "exists",
    "get_bytes",
    "get_json",
    "get_object",
    "head_metadata",
    "list_keys",
    "npy_bytes",
    "parse_s3_uri",
    "put_bytes",
    "put_file",
    "put_json",
    "read_npy",
    "read_uri",
    "sha256_hex",
]


S3_MAX_ATTEMPTS = 10
"""Attempts per S3 call (botocore's standard retries: 503 Slow Down, throttles, 5xx).

While S3 scales a new prefix under a thousand grove builders it answers ``503 Slow Down``;
botocore's legacy mode (the default) tries 5 times with little backoff, then fails the
grove. Standard mode backs off exponentially with jitter (up to 20 s between attempts).
"""


@functools.cache
def _s3() -> Any:
    import boto3
    from botocore.config import Config

    config = Config(
        retries={"mode": "standard", "total_max_attempts": S3_MAX_ATTEMPTS},
        max_pool_connections=64,  # the merge's grove readers each hold a connection
    )
    return boto3.client("s3", config=config)


def parse_s3_uri(uri: str) -> tuple[str, str]:
    """Split ``s3://bucket/key`` into ``(bucket, key)``; the key may be empty or a prefix."""
    if not uri.startswith("s3://"):
        raise ValueError(f"not an s3:// URI: {uri!r}")
    bucket, _, key = uri[len("s3://") :].partition("/")
    if not bucket:
        raise ValueError(f"s3 URI has no bucket: {uri!r}")
    return bucket, key


def sha256_hex(data: bytes) -> str:
    """Hex SHA-256 of ``data``."""
    return hashlib.sha256(data).hexdigest()


def _is_missing(error: Exception) -> bool:
    code = getattr(error, "response", {}).get("Error", {}).get("Code", "")
    return code in {"NoSuchKey", "404", "NotFound", "NoSuchBucket"}


def get_object(bucket: str, key: str) -> tuple[bytes, dict[str, str]]:
    """Read one object and its user metadata; a missing one raises ``FileNotFoundError``."""
    try:
        response = _s3().get_object(Bucket=bucket, Key=key)
    except Exception as error:
        if _is_missing(error):
            raise FileNotFoundError(f"s3://{bucket}/{key}") from error
        raise
    return response["Body"].read(), dict(response.get("Metadata", {}))


def head_metadata(bucket: str, key: str) -> dict[str, str]:
    """One object's user metadata, read without its body (a HEAD); a missing object
    raises ``FileNotFoundError``."""
    try:
        response = _s3().head_object(Bucket=bucket, Key=key)
    except Exception as error:
        if _is_missing(error):
            raise FileNotFoundError(f"s3://{bucket}/{key}") from error
        raise
    return dict(response.get("Metadata", {}))


def get_bytes(bucket: str, key: str) -> bytes:
    """Read one object; a missing object or bucket raises ``FileNotFoundError``."""
    return get_object(bucket, key)[0]


def put_bytes(
    bucket: str, key: str, data: bytes, *, metadata: dict[str, str] | None = None
) -> None:
    """Write one object (a single PUT: readers see all of it or none of it)."""
    _s3().put_object(Bucket=bucket, Key=key, Body=data, Metadata=metadata or {})


def put_file(bucket: str, key: str, path: str | Path) -> None:
    """Upload a local file as one object, in parts when large, never holding it in memory."""
    _s3().upload_file(str(path), bucket, key)


def create_bytes(
    bucket: str, key: str, data: bytes, *, metadata: dict[str, str] | None = None
) -> bool:
    """Write one object only if no object holds ``key`` yet; False if one does.

    An S3 conditional write (``If-None-Match: *``): of two writers racing for one key,
    exactly one succeeds. AWS answers 409 while another conditional write of the key
    is in flight; that is retried until the race is decided.
    """
    for attempt in range(5):
        try:
            _s3().put_object(
                Bucket=bucket, Key=key, Body=data, Metadata=metadata or {}, IfNoneMatch="*"
            )
        except Exception as error:
            code = getattr(error, "response", {}).get("Error", {}).get("Code", "")
            if code == "PreconditionFailed":
                return False
            if code == "ConditionalRequestConflict" and attempt < 4:
                time.sleep(0.1 * 2**attempt)
                continue
            raise
        return True
    raise AssertionError("unreachable")


def create_json(bucket: str, key: str, value: Any) -> bool:
    """:func:`create_bytes` of ``value`` as :func:`put_json` writes it."""
    return create_bytes(bucket, key, _json_bytes(value))


def _json_bytes(value: Any) -> bytes:
    """Indented, key-sorted JSON; NaN and Infinity are refused (JSON has neither)."""
    return json.dumps(value, indent=2, sort_keys=True, allow_nan=False).encode()


def delete(bucket: str, key: str) -> None:
    """Delete one object (nothing happens if it does not exist)."""
    _s3().delete_object(Bucket=bucket, Key=key)


def exists(bucket: str, key: str) -> bool:
    """Whether an object exists."""
    try:
        _s3().head_object(Bucket=bucket, Key=key)
    except Exception as error:
        if _is_missing(error):
            return False
        raise
    return True


def list_keys(bucket: str, prefix: str) -> list[str]:
    """Every key under ``prefix``, in S3's (lexicographic) order."""
    return [key for key, _ in list_sizes(bucket, prefix)]


def list_sizes(bucket: str, prefix: str) -> list[tuple[str, int]]:
    """Every key under ``prefix`` with its size in bytes, in S3's (lexicographic) order."""
    listed: list[tuple[str, int]] = []
    paginator = _s3().get_paginator("list_objects_v2")
    try:
        for page in paginator.paginate(Bucket=bucket, Prefix=prefix):
            listed.extend((item["Key"], int(item["Size"])) for item in page.get("Contents", []))
    except Exception as error:
        if _is_missing(error):
            return []
        raise
    return listed


def get_json(bucket: str, key: str) -> Any:
    """Read a JSON object."""
    return json.loads(get_bytes(bucket, key))


def put_json(bucket: str, key: str, value: Any) -> None:
    """Write ``value`` as indented, key-sorted JSON (stable bytes for equal values)."""
    put_bytes(bucket, key, _json_bytes(value))


def npy_bytes(array: np.ndarray) -> bytes:
    """Serialize an array in ``.npy`` form (no pickle; object arrays are refused)."""
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=False)
    return buffer.getvalue()


def read_npy(data: bytes) -> np.ndarray:
    """Deserialize ``.npy`` bytes written by :func:`npy_bytes`."""
    array: np.ndarray = np.load(io.BytesIO(data), allow_pickle=False)
    return array


def read_uri(uri: str) -> bytes:
    """Read a whole file from ``s3://bucket/key`` or a local path.

    Raises
    ------
    DatasetNotFound
        If the object or file does not exist.
    """
    try:
        if uri.startswith("s3://"):
            return get_bytes(*parse_s3_uri(uri))
        return Path(uri).expanduser().read_bytes()
    except (FileNotFoundError, IsADirectoryError, NotADirectoryError) as error:
        raise DatasetNotFound(f"no such file or object: {uri}") from error


def download(uri: str, path: str | Path) -> None:
    """Copy the file at ``s3://bucket/key`` to a local path, streaming (never whole in memory).

    Raises
    ------
    DatasetNotFound
        If the object does not exist.
    """
    bucket, key = parse_s3_uri(uri)
    try:
        _s3().download_file(bucket, key, str(path))
    except Exception as error:
        # download_file reports a missing key as a ClientError whose code is "404".
        if _is_missing(error):
            raise DatasetNotFound(f"no such file or object: {uri}") from error
        raise
