"""Where a run's objects live in the bucket, and how its groves are seeded.

Every key is a pure function of the run id and grove number, so a retried or
resumed grove writes exactly the same key, never a duplicate.
"""

from __future__ import annotations

from typing import Any

import numpy as np

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
    from groveflow.ids import is_valid_id

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
    from groveflow.ids import is_valid_id

    location = model_manifest(model, "")
    if location is None:
        return None
    parts = location[1].split("/")
    run_id = parts[1] if len(parts) > 2 and parts[0] == "runs" else None
    return run_id if is_valid_id(run_id) else None


class keys:
    """S3 keys of one run, all under ``runs/<run_id>/``."""

    @staticmethod
    def run_prefix(run_id: str) -> str:
        return f"runs/{run_id}/"

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
        return f"runs/{run_id}/model/forest.gfa"

    @staticmethod
    def forest_of(manifest: dict[str, Any]) -> str:
        """The key of the forest a (JSON) model manifest names: ``forest.gfa`` for a run's
        first model, ``forest-<sha256 prefix>.gfa`` once it has grown."""
        return f"runs/{manifest['run_id']}/model/{manifest['forest']['key']}"

    @staticmethod
    def oob_decision(run_id: str) -> str:
        """The forest's OOB decision function (or regression predictions) on the training rows."""
        return f"runs/{run_id}/model/oob.npy"

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
