"""Running untrusted Python (model samples, the user's tests) without letting it out.

Each run is its own ``python -I`` subprocess in a fresh temporary directory with a
scrubbed environment, resource limits and a timeout that kills everything it started.
Where bubblewrap works, the run also gets its own network, PID, IPC and UTS
namespaces and sees the file system read-only except for its temporary directory.
:func:`isolation_available` says which of the two a run will get, and every
:class:`SandboxResult` records the one it got.

Memory is bounded for the run as a whole (``SandboxLimits.memory_mb``), not per
process: by a cgroup of its own where one can be made (cgroup v2, cgroup v1, or a
``systemd-run`` scope), else by giving the run fewer processes so that processes ×
per-process memory fits the budget. :func:`memory_bound` says which is in force here,
``ghostpilot doctor`` prints it, and every result's ``details`` records the one it got.
"""

from lsp_server.sandbox.isolation import isolation_available
from lsp_server.sandbox.memory import MemoryBound, memory_bound
from lsp_server.sandbox.runner import SandboxLimits, SandboxResult, describe, run_python

__all__ = ["MemoryBound", "SandboxLimits", "SandboxResult", "describe", "isolation_available",
           "memory_bound", "run_python"]
