"""Running untrusted Python (model samples, the user's tests) without letting it out.

Each run is its own ``python -I`` subprocess in a fresh temporary directory with a
scrubbed environment, resource limits and a timeout that kills everything it started.
Where bubblewrap works, the run also gets its own network, PID, IPC and UTS
namespaces and sees the file system read-only except for its temporary directory.
:func:`isolation_available` says which of the two a run will get, and every
:class:`SandboxResult` records the one it got.
"""

from lsp_server.sandbox.isolation import isolation_available
from lsp_server.sandbox.runner import SandboxLimits, SandboxResult, run_python

__all__ = ["SandboxLimits", "SandboxResult", "isolation_available", "run_python"]
