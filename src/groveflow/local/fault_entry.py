"""The entry point the local engine gives an instrumented invocation (see :mod:`.faults`).

The worker pool imports a handler from a file, as Lambda does; this file is that
handler for invocations that meet a fault or record their AWS calls. It runs the
function's real handler, which ``GROVEFLOW_FAULT`` names.
"""

from groveflow.local.faults import handler_with_fault as handler

__all__ = ["handler"]
