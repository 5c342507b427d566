"""Moved to :mod:`groveflow.local_commands` (the command line's, not the local engine's).

Kept only until ``groveflow.cli`` imports it from there; removed with that change.
"""

from groveflow.local_commands import invoke_one, serve_forever

__all__ = ["invoke_one", "serve_forever"]
