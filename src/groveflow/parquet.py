"""Converting Parquet to the columnar form the other functions read, in its own Lambda.

pyarrow (about 160 MB unzipped) and scikit-learn (about 195 MB) cannot share one Lambda:
together they exceed the 250 MB limit. So a ``ConvertParquet`` step, with a layer of
pyarrow and numpy only, runs first when the input names Parquet data: it writes each
Parquet file as a ``.gfcols`` file (an ``.npz`` of the columns, no pickle) under
``converted/<execution>/``, and the plan reads those in place of the Parquet files.
"""

from __future__ import annotations

import io
from typing import Any

import numpy as np

from groveflow import storage, telemetry
from groveflow.datasets import (
    COLUMNS_SUFFIX,
    CONVERTED_FORMAT,
    check_readable,
    sources,
    write_columns,
)
from groveflow.errors import InvalidDataset, InvalidRequest

__all__ = ["check_before_conversion", "convert_parquet", "is_parquet"]


def is_parquet(data: Any) -> bool:
    """Whether a ``data`` section names Parquet (by ``format`` or by a ``.parquet`` URI)."""
    if not isinstance(data, dict) or not isinstance(data.get("uri"), str):
        return False
    return data.get("format") == "parquet" or data["uri"].lower().endswith(".parquet")


def _column(array: Any) -> np.ndarray:
    """A pyarrow column as numbers (nulls as NaN) or, for anything else, unicode strings."""
    import pyarrow as pa
    import pyarrow.compute as pc

    kind = array.type
    if pa.types.is_boolean(kind) or pa.types.is_integer(kind) or pa.types.is_floating(kind):
        if array.null_count:
            return np.asarray(pc.cast(array, pa.float64()).to_numpy(zero_copy_only=False))
        return np.asarray(array.to_numpy(zero_copy_only=False))
    strings = pc.fill_null(pc.cast(array, pa.string()), "")
    return np.array(strings.to_pylist(), dtype=str)


def _convert_file(source: str) -> bytes:
    import pyarrow.parquet as pq

    try:
        table = pq.read_table(io.BytesIO(storage.read_uri(source)))
    except Exception as error:
        raise InvalidDataset(f"{source} is not a readable Parquet file: {error}") from None
    return write_columns(
        list(table.column_names), [_column(table.column(n)) for n in table.column_names]
    )


def _convert(uri: str, bucket: str, prefix: str) -> dict[str, Any]:
    files = [s for s in sources(uri) if s.lower().endswith(".parquet")]
    if not files:
        raise InvalidDataset(f"no .parquet files at {uri}")
    for number, source in enumerate(files):
        key = f"{prefix}part-{number:05d}{COLUMNS_SUFFIX}"
        storage.put_bytes(bucket, key, _convert_file(source))
    telemetry.logger.info("parquet converted", extra={"uri": uri, "files": len(files)})
    return {"uri": f"s3://{bucket}/{prefix}", "format": CONVERTED_FORMAT, "files": len(files)}


def check_before_conversion(event: dict[str, Any]) -> dict[str, Any]:
    """Validate the request a conversion is about to run for, so a bad one converts nothing.

    Runs in the ``ValidateRequest`` step, on the scikit-learn layer (model parameters are
    checked by scikit-learn), before ``ConvertParquet``; Plan and PlanPredictions check the
    same request again with the data, as they do for every run.

    Parameters
    ----------
    event : dict
        ``{"request": <the execution input>, "kind": "train" | "predict"}``.

    Returns
    -------
    dict
        ``{"valid": True}``.

    Raises
    ------
    InvalidRequest
        For a training request, or its ``predict`` section, that Plan would refuse.
    InvalidPredictRequest
        For a prediction request that PlanPredictions would refuse.
    """
    from groveflow.errors import GroveflowError
    from groveflow.prediction import parse_predict_request
    from groveflow.request import parse_train_request

    kind = event.get("kind")
    request = event.get("request")
    if kind == "predict":
        parse_predict_request(request)
    elif kind == "train":
        parse_train_request(request)
        if isinstance(request, dict) and request.get("predict") is not None:
            section = {**request["predict"], "model": "the-run-being-trained"}
            try:
                parse_predict_request(section)
            except GroveflowError as error:
                raise InvalidRequest(f"predict: {error}") from None
    else:
        raise InvalidRequest(f"kind={kind!r} is not a request kind: 'train' or 'predict'")
    return {"valid": True}


def convert_parquet(
    event: dict[str, Any],
    *,
    bucket: str,
    data_buckets: tuple[str, ...] = (),
    local_paths: bool = False,
) -> dict[str, Any]:
    """Convert the Parquet a training or prediction input names; pass the input through.

    Converts ``data`` and, in a training input, ``predict.data`` when they are Parquet.

    Returns
    -------
    dict
        ``{"request": <the input, unchanged>, "converted": {"data": ..., "predict": ...}}``;
        each entry is ``{"uri", "format": "columns", "files"}``.
    """
    request = event.get("request")
    name = str(event.get("execution_name", ""))
    converted: dict[str, Any] = {}
    if isinstance(request, dict):
        predict = request.get("predict")
        sections = {
            "data": request.get("data"),
            "predict": predict.get("data") if isinstance(predict, dict) else None,
        }
        for section, data in sections.items():
            if isinstance(data, dict) and is_parquet(data):
                uri = data["uri"]
                check_readable(uri, (bucket, *data_buckets), local_paths, InvalidRequest)
                converted[section] = _convert(uri, bucket, f"converted/{name}/{section}/")
    return {"request": request, "converted": converted}
