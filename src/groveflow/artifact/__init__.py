"""The pickle-free forest artifact: one format for groves and merged forests.

- :mod:`._forest`: the Forest API (prediction exactly as scikit-learn's, merging, export).
- :mod:`._codec`: the column codec (trees as flat columns, and back as scikit-learn trees).
- :mod:`._container`: the sealed container (layout, checksum, validation of hostile input).
- :mod:`._loading`: loading by URI (an artifact, a manifest, or a model directory).
"""

from groveflow.artifact._container import decode_trees, encode_forest_file, encode_trees
from groveflow.artifact._forest import Forest, n_threads_for
from groveflow.artifact._loading import load_forest
from groveflow.documents import FORMAT_VERSION  # the versions live with the documents

__all__ = [
    "FORMAT_VERSION",
    "Forest",
    "decode_trees",
    "encode_forest_file",
    "encode_trees",
    "load_forest",
    "n_threads_for",
]
