"""Loading a model by URI: an artifact, a manifest, or a model directory, local or on S3."""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING

from groveflow import storage
from groveflow.artifact._container import _decode, decode_trees
from groveflow.documents import check_manifest
from groveflow.encoding import Encoding
from groveflow.errors import ArtifactError, DatasetNotFound, ModelNotFound
from groveflow.layout import model_manifest

_MANIFEST_NAME = "manifest.json"
_BLOB_SUFFIX = ".gfa"

if TYPE_CHECKING:
    from groveflow.artifact._forest import Forest


# --------------------------------------------------------------------------- loading


def load_forest(uri: str, manifest: dict | None = None) -> Forest:
    """Load and validate a forest from a local path or an ``s3://bucket/key`` URI.

    The URI names either an artifact (any local file not ending in ``.json``; on S3 a key
    ending in ``.gfa``), a manifest (ending in ``.json``), or a directory / S3 prefix that holds
    ``manifest.json``. A manifest is JSON of the form
    ``{"forest": {"key": "forest.gfa", "sha256": "<hex>"}}``; ``key`` is relative to the
    manifest's directory and the artifact's sha256 must match.

    Parameters
    ----------
    uri : str
        Where the artifact or its manifest is.
    manifest : dict or None, default=None
        An already-read manifest; ``uri`` then names its directory (or the manifest itself).

    Returns
    -------
    Forest
        The validated forest.

    Raises
    ------
    ModelNotFound
        If the artifact or manifest does not exist.
    ArtifactError
        If the manifest is malformed, the checksum differs, or the artifact is invalid.
    """
    manifest_uri = _manifest_uri(uri)
    if manifest is None and manifest_uri is None:
        return decode_trees(_read(uri))
    if manifest is None:
        assert manifest_uri is not None
        manifest = _parse_manifest(_read(manifest_uri), uri)
    key, sha256 = _manifest_forest(manifest, uri)
    directory = manifest_uri.rpartition("/")[0] or "." if manifest_uri else uri.rstrip("/")
    blob = _read(f"{directory}/{key}")
    if hashlib.sha256(blob).hexdigest() != sha256:
        raise ArtifactError(f"the sha256 of {key!r} differs from the one in the manifest of {uri}")
    # The manifest's sha256 covers every byte, so the embedded checksum need not be recomputed.
    forest = _decode(blob, verify_checksum=False)
    if manifest.get("encoding") is not None:
        where = f"the encoding in the manifest of {uri}"
        forest.encoding = Encoding.from_dict(manifest["encoding"], where)
        if len(forest.encoding.feature_names) != forest.n_features_in_:
            raise ArtifactError(
                f"{where} gives {len(forest.encoding.feature_names)} features; "
                f"the forest has {forest.n_features_in_}"
            )
    return forest


def _manifest_uri(uri: str) -> str | None:
    """The manifest a model URI names; None if it names an artifact.

    On S3 the manifest a URI names is :func:`groveflow.layout.model_manifest`'s (the rule the
    predict functions follow); a key ending in ``.gfa`` is an artifact. A local path is a
    manifest if it ends in ``.json``, a model directory if it is a directory, else an artifact.
    """
    if uri.startswith("s3://"):
        if uri.endswith(_BLOB_SUFFIX):
            return None
        location = model_manifest(uri, "")
        if location is None:
            raise ModelNotFound(f"{uri!r} names no bucket")
        return f"s3://{location[0]}/{location[1]}"
    if uri.endswith(".json"):
        return uri
    if Path(uri).expanduser().is_dir():
        return f"{uri.rstrip('/')}/{_MANIFEST_NAME}"
    return None


def _read(uri: str) -> bytes:
    """Bytes of one model file or object; a missing one raises ModelNotFound."""
    try:
        return storage.read_uri(uri)
    except DatasetNotFound:
        raise ModelNotFound(f"no model file at {uri}") from None


def _parse_manifest(raw: bytes, uri: str) -> dict:
    try:
        manifest = json.loads(raw)
    except (ValueError, RecursionError) as error:
        raise ArtifactError(f"the manifest of {uri} is not valid JSON: {error}") from None
    return check_manifest(manifest, f"of {uri}")


def _manifest_forest(manifest: dict, uri: str) -> tuple[str, str]:
    entry = manifest.get("forest")
    key = entry.get("key") if isinstance(entry, dict) else None
    sha256 = entry.get("sha256") if isinstance(entry, dict) else None
    if not isinstance(key, str) or not isinstance(sha256, str):
        raise ArtifactError(
            f"the manifest of {uri} needs {{'forest': {{'key': <file name>, 'sha256': <hex>}}}}"
        )
    parts = PurePosixPath(key).parts
    if not parts or key.startswith("/") or ".." in parts or "\\" in key:
        raise ArtifactError(
            f"manifest forest key {key!r} must be a relative name below the manifest"
        )
    if not re.fullmatch(r"[0-9a-f]{64}", sha256):
        raise ArtifactError(f"manifest forest sha256 {sha256!r} must be 64 lowercase hex digits")
    return key, sha256
