"""The run's documents: what each says, which versions this groveflow reads, their checks.

A model manifest (``runs/<run>/model/manifest.json``) is read by the predict functions,
``load_forest``, ``groveflow report`` and ``export``; each reads it through
:func:`check_manifest`, so a manifest written by a newer groveflow (another
``manifest_version``, another artifact ``format_version``) is refused by name instead of
being misread. A stored grove is checked by :func:`grove_problem` alone, wherever it is
read: when a builder decides to reuse it, when the merge collects it, when a prediction
scores a group of groves.
"""

from __future__ import annotations

from typing import Any

from groveflow.errors import ArtifactError
from groveflow.storage import sha256_hex

__all__ = ["MANIFEST_VERSION", "check_manifest", "grove_problem"]

MANIFEST_VERSION = 1
"""The model manifest's layout, written as ``manifest_version``."""


def check_manifest(manifest: Any, where: str) -> dict[str, Any]:
    """``manifest`` if this groveflow can read it; else :class:`ArtifactError` naming ``where``.

    A manifest may omit both versions (a hand-written ``{"forest": {...}}`` for
    :func:`groveflow.load_forest`); a version it states must be one this groveflow reads.
    """
    from groveflow.artifact import FORMAT_VERSION

    if not isinstance(manifest, dict):
        raise ArtifactError(f"the manifest {where} must be a JSON object")
    for name, supported in (
        ("manifest_version", MANIFEST_VERSION),
        ("format_version", FORMAT_VERSION),
    ):
        stated = manifest.get(name, supported)
        if stated != supported:
            raise ArtifactError(
                f"the manifest {where} has {name}={stated!r}; this groveflow reads {name} "
                f"{supported}: upgrade groveflow to read it (or retrain the run with this one)"
            )
    return manifest


def grove_problem(
    blob: bytes, metadata: dict[str, str], *, seed: int | None = None, sha256: str | None = None
) -> str | None:
    """What is wrong with a stored grove, or None if it verifies.

    Parameters
    ----------
    blob : bytes
        The grove object.
    metadata : dict
        Its S3 user metadata, as the builder wrote it (``sha256``, ``seed``).
    seed : int or None, default=None
        The seed the plan gives the grove, if known.
    sha256 : str or None, default=None
        The checksum a model manifest recorded for it, if any.
    """
    actual = sha256_hex(blob)
    if metadata.get("sha256") != actual:
        return "its bytes do not match the checksum stored with it"
    if seed is not None and metadata.get("seed") != str(seed):
        return f"it was built with seed {metadata.get('seed')}, the plan says {seed}"
    if sha256 is not None and actual != sha256:
        return "it differs from the model manifest's sha256"
    return None
