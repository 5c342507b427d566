"""Not corrections: moto's start-up and per-request costs, cut with the same answers.

moto's interpreter imports what it needs where it patches it, as every module of this
package does: importing it is what costs start-up time."""

from __future__ import annotations

import functools
import importlib.util
import sys
import threading
import types
from collections.abc import Callable
from typing import Any

import boto3

__all__ = [
    "cache_boto_clients",
    "import_interpreter_without_batch_backend",
    "list_moto_services_once",
    "parse_each_definition_once",
    "parse_each_json_path_once",
    "share_error_lookups",
]


def import_interpreter_without_batch_backend() -> None:
    """Import moto's ASL interpreter without loading its Batch and EC2 backends (~0.7 s).

    Not a departure from AWS, a start-up cost: the interpreter's Batch integration
    needs only ``moto.batch.utils``, but importing it runs ``moto/batch/__init__.py``,
    which loads the Batch backend and, through it, all of EC2's models. A placeholder
    package lets ``moto.batch.utils`` load alone; it is removed afterwards, so a later
    ``import moto.batch`` (a Batch call to the local server) loads the real package.
    """
    if "moto.batch" in sys.modules:
        return
    spec = importlib.util.find_spec("moto.batch")
    if spec is None or spec.submodule_search_locations is None:
        return
    placeholder = types.ModuleType("moto.batch")
    placeholder.__path__ = list(spec.submodule_search_locations)
    sys.modules["moto.batch"] = placeholder
    try:
        import moto.stepfunctions.parser.asl.parse.asl_parser  # noqa: F401
    finally:
        if sys.modules.get("moto.batch") is placeholder:
            del sys.modules["moto.batch"]


_PARSED_DEFINITIONS = 64
"""Parse trees kept (of state machine definitions, and of intrinsic functions apart)."""


def parse_each_definition_once() -> None:
    """Keep the parse trees of ``AmazonStateLanguageParser.parse`` and
    ``IntrinsicParser.parse`` (asl/parse/), and build each call's components afresh from
    the kept tree.

    Not a correction: moto lexes and parses a state machine's whole definition with
    ANTLR's Python runtime at every ``StartExecution`` (and each intrinsic function as it
    builds the program), 0.1-0.2 s of the engine's CPU per execution, beside its workers,
    for the same text every time. The components (what executes) are still made new for
    each execution by moto's own preprocessor, from an unchanged tree; a definition that
    does not parse is not kept, so it fails as before.
    """
    from moto.stepfunctions.parser.asl.parse import asl_parser, preprocessor
    from moto.stepfunctions.parser.asl.parse.intrinsic import intrinsic_parser
    from moto.stepfunctions.parser.asl.parse.intrinsic import preprocessor as intrinsic

    lock = threading.Lock()

    def kept(original: Callable[[str], Any], visitor: type) -> Callable[[str], Any]:
        trees: dict[str, Any] = {}

        def parse(source: str) -> Any:
            tree = trees.get(source)
            if tree is None:
                component, tree = original(source)
                with lock:
                    if len(trees) >= _PARSED_DEFINITIONS:
                        trees.pop(next(iter(trees)))
                    trees[source] = tree
                return component, tree
            return visitor().visit(tree), tree

        return parse

    language = asl_parser.AmazonStateLanguageParser
    language.parse = staticmethod(  # type: ignore[method-assign,assignment]
        kept(language.parse, preprocessor.Preprocessor)
    )
    functions = intrinsic_parser.IntrinsicParser
    functions.parse = staticmethod(  # type: ignore[method-assign,assignment]
        kept(functions.parse, intrinsic.Preprocessor)
    )


def parse_each_json_path_once() -> None:
    """Keep the JSONPath expressions moto parses (``extract_json`` in asl/utils/json_path.py,
    ``ResultPath`` in asl/component/common/path/result_path.py), by their text.

    Not a correction: moto parses a path each time a state reads or writes one, and each
    parse builds jsonpath_ng's PLY parser anew (its grammar tables included), several times
    per Map child. A parsed expression is only read by ``find`` and ``update``, so one
    serves every evaluation of the same text, with the same matches.
    """
    from moto.stepfunctions.parser.asl.component.common.path import result_path
    from moto.stepfunctions.parser.asl.utils import json_path

    for module in (json_path, result_path):
        module.parse = functools.lru_cache(maxsize=1024)(module.parse)  # type: ignore[attr-defined]


def share_error_lookups() -> None:
    """Let every ``ErrorLookupFactory`` (moto/core/errors.py) share one cache.

    Not a correction: ``get_error_model`` makes a new factory for each error it answers, so
    its cache of a service's error shapes is built and dropped every time: a grove
    builder's "no stored grove yet" (S3 ``NoSuchKey``) cost the server more than the object
    it then stores. The shapes come from the same service model; the answers are the same.
    """
    from moto.core import errors

    shared: dict[str, Any] = {}

    def __init__(self: Any) -> None:
        self._error_lut_cache = shared

    errors.ErrorLookupFactory.__init__ = __init__  # type: ignore[method-assign]


def list_moto_services_once() -> None:
    """Cache ``moto.backends.list_of_moto_modules`` (moto_server/werkzeug_app.py).

    The server's dispatcher calls it for every request, under a lock: a listing of moto's
    package directory and some 200 ``isdir`` calls, 0.5-0.7 ms of CPU per request that
    a 10,000-grove run (four requests a grove) spends beside its workers. The folders
    cannot change while the process runs; the answer is the same tuple every time.
    """
    from moto import backends

    listed = tuple(backends.list_of_moto_modules())
    backends.list_of_moto_modules = lambda: listed


def cache_boto_clients() -> None:
    """Replace ``boto_client_for`` (asl/utils/boto_client.py) with a per-session cache.

    moto builds a new boto3 client for every Lambda invoke and S3 read (milliseconds
    each), and concurrently from Map workers, although creating clients from one
    session is not thread-safe. Clients are cached per (default session, region,
    service, endpoint) and created under a lock; created clients are thread-safe.
    Clients copy the session's event hooks when created: register the invoke hook
    before the first execution, or call ``boto3.setup_default_session()`` again.
    """
    from moto.core.models import botocore_stubber
    from moto.settings import moto_server_port
    from moto.stepfunctions.parser.asl.utils import boto_client

    original = boto_client.boto_client_for
    clients: dict[tuple[Any, ...], Any] = {}
    lock = threading.Lock()

    def boto_client_for(region: str, service: str, state_credentials: Any = None) -> Any:
        with lock:
            if boto3.DEFAULT_SESSION is None:
                boto3.setup_default_session()
            session, stubbed = boto3.DEFAULT_SESSION, botocore_stubber.enabled
            key = (session, region, service, stubbed, moto_server_port())
            if key not in clients:
                clients[key] = original(region, service, state_credentials)
            return clients[key]

    for name, module in list(sys.modules.items()):
        if (
            name.startswith("moto.stepfunctions")
            and vars(module).get("boto_client_for") is original
        ):
            module.boto_client_for = boto_client_for  # type: ignore[attr-defined]
