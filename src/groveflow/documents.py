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

from dataclasses import asdict, dataclass
from typing import Any

from groveflow.errors import ArtifactError
from groveflow.storage import sha256_hex

__all__ = ["MANIFEST_VERSION", "GroveTask", "ShardTask", "check_manifest", "grove_problem"]

MANIFEST_VERSION = 1
"""The model manifest's layout, written as ``manifest_version``."""


def _field(item: Any, name: str, kind: type, document: str) -> Any:
    value = item.get(name) if isinstance(item, dict) else None
    if kind is int and (isinstance(value, bool) or not isinstance(value, int) or value < 0):
        raise ArtifactError(f"{document} {item!r}: {name} must be a whole number >= 0")
    if kind is str and (not isinstance(value, str) or not value):
        raise ArtifactError(f"{document} {item!r}: {name} must be a non-empty string")
    return value


@dataclass(frozen=True)
class GroveTask:
    """One item of a run's grove plan (``plan.json``): what one builder fits.

    Parameters
    ----------
    run_id : str
    grove : int
        The grove's number, 0-based; names ``groves/grove-NNNNN.gfa``.
    seed : int
        Its ``random_state``, from ``SeedSequence(seed).spawn``.
    n_trees : int
    """

    run_id: str
    grove: int
    seed: int
    n_trees: int

    @classmethod
    def from_item(cls, item: Any) -> GroveTask:
        """The task a Map item holds; :class:`ArtifactError` naming a damaged field."""
        document = "the grove plan's item"
        task = cls(
            run_id=_field(item, "run_id", str, document),
            grove=_field(item, "grove", int, document),
            seed=_field(item, "seed", int, document),
            n_trees=_field(item, "n_trees", int, document),
        )
        if task.n_trees < 1:
            raise ArtifactError(f"{document} {item!r}: n_trees must be at least 1")
        return task

    def to_item(self) -> dict[str, Any]:
        """The Map item (JSON) this task is written as."""
        return asdict(self)


@dataclass(frozen=True)
class ShardTask:
    """One item of a prediction's shard plan (``shards.json``): rows one Lambda scores.

    Parameters
    ----------
    prediction_id : str
    shard : int
        Names ``part-NNNNN.csv``.
    source : str
        The file the rows are in.
    file : int
        Its position among the input's files.
    start, stop : int
        The rows of ``source`` to score (``start`` included, ``stop`` excluded).
    first_row : int
        The global 0-based index of row ``start`` in the whole input.
    """

    prediction_id: str
    shard: int
    source: str
    file: int
    start: int
    stop: int
    first_row: int

    @classmethod
    def from_item(cls, item: Any) -> ShardTask:
        """The task a Map item holds; :class:`ArtifactError` naming a damaged field."""
        document = "the shard plan's item"
        task = cls(
            prediction_id=_field(item, "prediction_id", str, document),
            shard=_field(item, "shard", int, document),
            source=_field(item, "source", str, document),
            file=_field(item, "file", int, document),
            start=_field(item, "start", int, document),
            stop=_field(item, "stop", int, document),
            first_row=_field(item, "first_row", int, document),
        )
        if task.stop < task.start:
            raise ArtifactError(f"{document} {item!r}: stop is before start")
        return task

    def to_item(self) -> dict[str, Any]:
        """The Map item (JSON) this task is written as."""
        return asdict(self)


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
