"""Where a run's objects live in the bucket, and how its groves are seeded.

Every key is a pure function of the run id and grove number, so a retried or
resumed grove writes exactly the same key, never a duplicate.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from groveflow.ids import is_valid_id

__all__ = ["grove_seeds", "keys", "model_manifest", "run_of_model"]


def grove_seeds(seed: int, n_groves: int) -> list[int]:
    """Per-grove ``random_state`` values from ``SeedSequence(seed).spawn(n_groves)``.

    Independent of concurrency, order and retries: grove ``i`` always gets the same seed.
    """
    children = np.random.SeedSequence(seed).spawn(n_groves)
    return [int(child.generate_state(1, dtype=np.uint32)[0]) for child in children]


def model_manifest(model: str, bucket: str) -> tuple[str, str] | None:
    """The bucket and manifest key a ``model`` names, or None if it names none.

    The one rule, for the predict functions and the local engine: a run id (in
    ``bucket``), ``s3://b/.../manifest.json``, or ``s3://b/<prefix>`` of a model directory.
    """
    if model.startswith("s3://"):
        model_bucket, _, key = model[len("s3://") :].partition("/")
        if not model_bucket:
            return None
        if not key.endswith(".json"):
            key = key.rstrip("/") + "/manifest.json"
        return model_bucket, key.lstrip("/")
    if is_valid_id(model):
        return bucket, keys.manifest(model)
    return None


def run_of_model(model: str) -> str | None:
    """The run id a ``model`` names (a run id, or ``s3://b/runs/<id>/...``), if any."""
    location = model_manifest(model, "")
    if location is None:
        return None
    parts = location[1].split("/")
    run_id = parts[1] if len(parts) > 2 and parts[0] == "runs" else None
    return run_id if is_valid_id(run_id) else None


class keys:
    """Every S3 key groveflow writes: a run's under ``runs/<run_id>/``, a prediction's under
    ``predictions/<prediction_id>/``, the Maps' result files under ``map-results/`` and
    Ingest's columnar copies under ``converted/``."""

    RUNS = "runs/"
    PREDICTIONS = "predictions/"
    MAP_RESULTS = "map-results/"
    """Where a Distributed Map's ResultWriter stores its result files: under this, then the
    run's or prediction's own prefix (``map-results/runs/<id>/build-groves/...``,
    ``map-results/predictions/<id>/score-shards/...``: the ``Prefix`` of
    statemachine/*.asl.json), a prefix the stack's lifecycle rule expires."""
    CONVERTED = "converted/"
    FOREST = "forest.gfa"
    """A run's first forest's file name (:meth:`model_file_name` names those that follow)."""
    OOB_DECISION = "oob.npy"
    """A run's first OOB decision's file name."""

    @staticmethod
    def run_prefix(run_id: str) -> str:
        return f"runs/{run_id}/"

    @staticmethod
    def map_results(prefix: str) -> str:
        """The prefix of the Map result files of the run or prediction under ``prefix``."""
        return f"{keys.MAP_RESULTS}{prefix}"

    @staticmethod
    def converted(state_machine: str, execution: str, section: str) -> str:
        """The prefix of Ingest's columnar parts of one section (``data``, ``predict``) of
        an execution's input. Execution names are unique per state machine only, so the
        machine's name comes first (when known: ``""`` leaves it out)."""
        machine = f"{state_machine}/" if state_machine else ""
        return f"{keys.CONVERTED}{machine}{execution}/{section}/"

    @staticmethod
    def converted_part(prefix: str, number: int, suffix: str) -> str:
        """Ingest's ``number``-th part under a :meth:`converted` prefix."""
        return f"{prefix}part-{number:05d}{suffix}"

    @staticmethod
    def shards(run_id: str) -> str:
        """The shard document of a run whose split is in row shards."""
        return f"runs/{run_id}/data/shards.json"

    @staticmethod
    def shard(run_id: str, part: str, number: int) -> str:
        """Row shard ``number`` of the split's ``part`` (``train``, ``test``)."""
        return f"runs/{run_id}/data/{part}/shard-{number:05d}.npz"

    @staticmethod
    def request(run_id: str) -> str:
        return f"runs/{run_id}/run.json"

    @staticmethod
    def plan(run_id: str) -> str:
        return f"runs/{run_id}/plan.json"

    @staticmethod
    def split(run_id: str, name: str) -> str:
        """``name`` is one of ``X_train``, ``y_train``, ``X_test``, ``y_test``."""
        return f"runs/{run_id}/data/{name}.npy"

    @staticmethod
    def split_source(run_id: str) -> str:
        """Names the run whose split this run trains on, when not its own (a search's
        candidates share the search's split)."""
        return f"runs/{run_id}/data/source.json"

    @staticmethod
    def search(search_id: str) -> str:
        """A search's candidates, schedule and scores (:mod:`groveflow.tuning`)."""
        return f"runs/{search_id}/search.json"

    @staticmethod
    def groves_prefix(run_id: str) -> str:
        return f"runs/{run_id}/groves/"

    @staticmethod
    def grove(run_id: str, grove: int) -> str:
        return f"runs/{run_id}/groves/grove-{grove:05d}.gfa"

    @staticmethod
    def grove_oob(run_id: str, grove: int) -> str:
        """The grove's out-of-bag sums and counts (only for ``oob_score``)."""
        return f"runs/{run_id}/groves/grove-{grove:05d}.oob.npz"

    @staticmethod
    def model_prefix(run_id: str) -> str:
        return f"runs/{run_id}/model/"

    @staticmethod
    def forest(run_id: str) -> str:
        return keys.model_file(run_id, keys.FOREST)

    @staticmethod
    def model_file(run_id: str, name: str) -> str:
        """A file of the run's model, by the name its manifest gives it."""
        return f"runs/{run_id}/model/{name}"

    @staticmethod
    def model_file_name(name: str, sha256: str) -> str:
        """The name of a model file stored beside a model it will replace: ``name``
        (``forest.gfa``, ``oob.npy``) with its bytes' sha256 prefix, ``forest-<16 hex>.gfa``."""
        stem, _, suffix = name.rpartition(".")
        return f"{stem}-{sha256[:16]}.{suffix}"

    @staticmethod
    def beside(key: str, name: str) -> str:
        """The key of ``name`` in the same "directory" as ``key`` (a model file beside the
        manifest that names it)."""
        return f"{key.rsplit('/', 1)[0]}/{name}"

    @staticmethod
    def forest_of(manifest: dict[str, Any]) -> str:
        """The key of the forest a (JSON) model manifest names: ``forest.gfa`` for a run's
        first model, ``forest-<sha256 prefix>.gfa`` once it has grown."""
        return keys.model_file(manifest["run_id"], manifest["forest"]["key"])

    @staticmethod
    def oob_decision(run_id: str) -> str:
        """The forest's OOB decision function (or regression predictions) on the training rows."""
        return keys.model_file(run_id, keys.OOB_DECISION)

    @staticmethod
    def predictions_prefix(prediction_id: str) -> str:
        return f"predictions/{prediction_id}/"

    @staticmethod
    def predictions_job(prediction_id: str) -> str:
        return f"predictions/{prediction_id}/job.json"

    @staticmethod
    def predictions_shards(prediction_id: str) -> str:
        return f"predictions/{prediction_id}/shards.json"

    @staticmethod
    def predictions_part(prediction_id: str, shard: int) -> str:
        return f"predictions/{prediction_id}/part-{shard:05d}.csv"

    @staticmethod
    def predictions_manifest(prediction_id: str) -> str:
        """The predictions' commit point: written last, once every part exists."""
        return f"predictions/{prediction_id}/manifest.json"

    @staticmethod
    def manifest(run_id: str) -> str:
        """The model's commit point: written last, and a model exists only once it does."""
        return f"runs/{run_id}/model/manifest.json"
