"""The local bucket's mirror on disk, written as objects are stored.

The local engine's bucket lives in moto's memory; its state directory holds a copy
that outlives the process: ``<state_dir>/s3/<bucket>/<key>`` (plus
``<key>.metadata.json`` for an object's user metadata). Every object a client stores
under a mirrored prefix is written through at once (temp file, then rename), and
every delete removed, so a process killed mid-run leaves a state a rerun resumes
from. A conditional write (``If-None-Match: *``, how a run claims its id) is also an
exclusive create on disk, so two processes sharing a state directory cannot both
claim one run id.

The hook sits in moto's S3 request handling, in this process (the engine's server);
each :class:`Mirror` says which prefixes it takes. A prediction scored by a model of a
taken run (a training run's ``predict`` section under its own ``prediction_id``) is taken
with the run, as its job record is stored.
"""

from __future__ import annotations

import contextlib
import json
import os
import threading
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

__all__ = ["JOB_SUFFIX", "Mirror", "StoredObject", "install"]

StoredObject = tuple[bytes, dict[str, str]]
"""An object's bytes and user metadata."""

_META_SUFFIX = ".metadata.json"
JOB_SUFFIX = "/job.json"
"""Ends a prediction's job record (``predictions/<id>/job.json``), which says its model."""
_USER_META = "x-amz-meta-"
_mirrors: list[Mirror] = []
_registry_lock = threading.Lock()
_claim_lock = threading.Lock()  # conditional writes are checked and made one at a time
_installed = threading.Event()


class Mirror:
    """One state directory's copy of the local bucket.

    Parameters
    ----------
    state_dir : Path
        The state directory; objects go under ``state_dir / "s3" / bucket``.
    bucket : str
        The local bucket.
    everything : bool, default=False
        Mirror every run and prediction (``groveflow serve``); otherwise only the
        prefixes added with :meth:`take`.
    skip : callable or None, default=None
        Keys never mirrored (the training split: large, and rebuilt from the data).
    """

    def __init__(
        self,
        state_dir: Path,
        bucket: str,
        *,
        everything: bool = False,
        skip: Callable[[str], bool] | None = None,
    ) -> None:
        self.root = state_dir / "s3" / bucket
        self.bucket = bucket
        self.everything = everything
        self.skip = skip or (lambda _key: False)
        self._prefixes: set[str] = set()
        self._lock = threading.Lock()

    # ------------------------------------------------------------------ scope

    def take(self, *prefixes: str) -> None:
        """Mirror these prefixes from now on (e.g. ``runs/<run_id>/``)."""
        with self._lock:
            self._prefixes.update(prefixes)

    def covers(self, bucket: str, key: str) -> bool:
        """Whether an object stored at ``key`` in ``bucket`` is mirrored here."""
        if bucket != self.bucket or self.skip(key):
            return False
        if self.everything:
            return key.startswith(("runs/", "predictions/"))
        with self._lock:
            return any(key.startswith(prefix) for prefix in self._prefixes)

    def adopt(self, bucket: str, key: str, data: bytes) -> bool:
        """Take a prediction's prefix when its job (``predictions/<id>/job.json``, ``data``)
        names a model of a run this mirror takes: a training run's ``predict`` section may
        name its own ``prediction_id``, and its predictions are kept with the run. Whether
        the key is covered now."""
        if self.covers(bucket, key):
            return True
        parts = key.split("/")
        if bucket != self.bucket or len(parts) != 3 or parts[::2] != ["predictions", "job.json"]:
            return False
        try:
            model = json.loads(data).get("model_manifest_uri")
        except (ValueError, AttributeError):
            return False
        prefix = f"s3://{bucket}/"
        if not isinstance(model, str) or not model.startswith(prefix):
            return False
        if not self.covers(bucket, model.removeprefix(prefix)):
            return False
        self.take(f"predictions/{parts[1]}/")
        return True

    def open(self) -> None:
        """Start receiving what clients store (see :func:`install`)."""
        with _registry_lock:
            if self not in _mirrors:
                _mirrors.append(self)

    def close(self) -> None:
        """Stop receiving what clients store; what is on disk stays."""
        with _registry_lock:
            if self in _mirrors:
                _mirrors.remove(self)

    # ------------------------------------------------------------------ files

    def path(self, key: str) -> Path:
        """The file holding ``key`` (which must stay under the mirror's root)."""
        path = (self.root / key).resolve()
        if not path.is_relative_to(self.root.resolve()):
            raise ValueError(f"key {key!r} would leave the state directory")
        return path

    def read(self, key: str) -> StoredObject | None:
        """The mirrored object at ``key``, or None."""
        path = self.path(key)
        try:
            data = path.read_bytes()
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
            return None
        meta = path.with_name(path.name + _META_SUFFIX)
        metadata = json.loads(meta.read_text()) if meta.is_file() else {}
        return data, metadata

    def write(self, key: str, data: bytes, metadata: dict[str, str]) -> None:
        """Store ``key`` on disk; readers see the old or the new file, never a part."""
        path = self.path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        meta = path.with_name(path.name + _META_SUFFIX)
        if metadata:
            _atomic_write(meta, json.dumps(metadata, sort_keys=True).encode())
        else:
            with contextlib.suppress(FileNotFoundError):
                meta.unlink()
        _atomic_write(path, data)

    def claim(self, key: str, data: bytes, metadata: dict[str, str]) -> bool:
        """Create ``key`` on disk only if no file holds it yet; False if one does.

        The exclusive create is a hard link of a complete temp file, so a claim is
        atomic even between processes and a reader never sees half a file.
        """
        path = self.path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        temp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
        temp.write_bytes(data)
        try:
            if metadata:
                meta = path.with_name(path.name + _META_SUFFIX)
                _atomic_write(meta, json.dumps(metadata, sort_keys=True).encode())
            os.link(temp, path)
        except FileExistsError:
            return False
        finally:
            temp.unlink()
        return True

    def delete(self, key: str) -> None:
        """Remove ``key`` (and its metadata) from disk, if present."""
        path = self.path(key)
        for stale in (path, path.with_name(path.name + _META_SUFFIX)):
            with contextlib.suppress(FileNotFoundError):
                stale.unlink()

    def keys(self, prefix: str) -> Iterator[str]:
        """Every mirrored key under ``prefix``, sorted."""
        directory = self.path(prefix) if prefix else self.root
        if not directory.is_dir():
            return
        for path in sorted(directory.rglob("*")):
            name = path.name
            if path.is_file() and not name.endswith(_META_SUFFIX) and not name.startswith("."):
                yield path.relative_to(self.root).as_posix()

    def restore(self, prefix: str) -> int:
        """Load the objects mirrored under ``prefix`` into the local bucket; how many.

        An object the bucket holds already is left as it is (in this process it is
        at least as new as the disk's copy).
        """
        backend = _backend()
        restored = 0
        for key in self.keys(prefix):
            if backend.get_object(self.bucket, key) is not None:
                continue
            stored = self.read(key)
            if stored is not None:
                _store_in_backend(backend, self.bucket, key, stored)
                restored += 1
        return restored


def _atomic_write(path: Path, data: bytes) -> None:
    temp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    temp.write_bytes(data)
    os.replace(temp, path)


# ---------------------------------------------------------------------- the hook


def _backend() -> Any:
    from moto.core import DEFAULT_ACCOUNT_ID
    from moto.s3.models import s3_backends

    return s3_backends[DEFAULT_ACCOUNT_ID]["aws"]


def _store_in_backend(backend: Any, bucket: str, key: str, stored: StoredObject) -> None:
    data, metadata = stored
    new_key = backend.put_object(bucket, key, data, disable_notification=True)
    new_key.set_metadata({f"{_USER_META}{name}": value for name, value in metadata.items()})


def _user_metadata(fake_key: Any) -> dict[str, str]:
    return {
        name[len(_USER_META) :]: str(value)
        for name, value in fake_key.metadata.items()
        if name.lower().startswith(_USER_META)
    }


def _covering(bucket: str, key: str, data: bytes | None = None) -> list[Mirror]:
    """The mirrors that take ``key``; with ``data`` (what is being stored), those a
    prediction's job makes take it too (:meth:`Mirror.adopt`)."""
    with _registry_lock:
        mirrors = list(_mirrors)
    if data is None or not key.endswith(JOB_SUFFIX):
        return [mirror for mirror in mirrors if mirror.covers(bucket, key)]
    return [mirror for mirror in mirrors if mirror.adopt(bucket, key, data)]


def install() -> None:
    """Hook moto's S3 PUT and DELETE handling in this process; idempotent."""
    with _registry_lock:
        if _installed.is_set():
            return
        _installed.set()
    from moto.s3.models import S3Backend
    from moto.s3.responses import S3Response

    original_put = S3Response.put_object
    original_delete = S3Backend.delete_object

    def put_object(self: Any) -> Any:
        key = self.parse_key_name()
        mirrors = _covering(self.bucket_name, key)
        if self.headers.get("If-None-Match") != "*":
            return _put_and_mirror(self, original_put, key, mirrors)
        return _claim_and_mirror(self, original_put, key, mirrors)

    def delete_object(self: Any, bucket_name: str, key_name: str, *args: Any, **kwargs: Any) -> Any:
        answer = original_delete(self, bucket_name, key_name, *args, **kwargs)
        for mirror in _covering(bucket_name, key_name):
            mirror.delete(key_name)
        return answer

    S3Response.put_object = put_object  # type: ignore[method-assign]
    S3Backend.delete_object = delete_object  # type: ignore[method-assign]


def _put_and_mirror(
    response: Any, original_put: Callable[[Any], Any], key: str, mirrors: list[Mirror]
) -> Any:
    """An unconditional PUT, then the stored object written to the mirrors that take it."""
    answer = original_put(response)
    job = key.endswith(JOB_SUFFIX)
    if not mirrors and not job:
        return answer
    stored = response.backend.get_object(response.bucket_name, key)
    value = bytes(stored.value)
    for mirror in _covering(response.bucket_name, key, value) if job else mirrors:
        mirror.write(key, value, _user_metadata(stored))
    return answer


def _claim_and_mirror(
    response: Any, original_put: Callable[[Any], Any], key: str, mirrors: list[Mirror]
) -> Any:
    """A conditional PUT (``If-None-Match: *``), claimed on the mirrors too.

    Conditional writes one at a time, mirrored or not: moto checks and then stores, so two
    at once could both pass. A claim another process made is on disk only: load it first,
    so the write fails here as it would on one shared S3 bucket.
    """
    from moto.s3.exceptions import PreconditionFailed

    backend, bucket = response.backend, response.bucket_name
    with _claim_lock:
        for mirror in mirrors:
            on_disk = mirror.read(key)
            if on_disk is not None and backend.get_object(bucket, key) is None:
                _store_in_backend(backend, bucket, key, on_disk)
        answer = original_put(response)
        stored = backend.get_object(bucket, key)
        value, metadata = bytes(stored.value), _user_metadata(stored)
        for mirror in _covering(bucket, key, value):
            if not mirror.claim(key, value, metadata):  # claimed on disk meanwhile
                winner = mirror.read(key)
                if winner is not None:
                    _store_in_backend(backend, bucket, key, winner)
                raise PreconditionFailed("If-None-Match")
        return answer
