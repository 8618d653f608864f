"""Bounding the memory of a whole run, not of each of its processes.

``RLIMIT_AS`` is per process: five children of 1 GB each stay inside a 1 GB limit
and still take 5 GB together. A run's total is bounded by the first of these that
works here (:func:`memory_bound` finds out once per process):

- ``"cgroup2"``: a cgroup v2 of its own for each run, a child of the server's cgroup
  (or of the directory named by ``GHOSTPILOT_SANDBOX_CGROUP``), with ``memory.max``,
  ``memory.swap.max = 0`` and ``memory.oom.group = 1``. Needs the memory controller
  delegated to us and enabled for that directory's children.
- ``"cgroup1"``: the same on a cgroup v1 memory hierarchy (``memory.limit_in_bytes``
  and ``memory.memsw.limit_in_bytes``), as containers and VMs that still mount v1 give
  root.
- ``"systemd-run"``: a transient scope, ``systemd-run [--user] --scope -p MemoryMax=…``,
  where a systemd manager with the memory controller answers.
- ``"processes"``: none of those. The run then gets fewer processes so that processes
  × per-process ``RLIMIT_AS`` stays inside the budget (:func:`plan`). ``RLIMIT_NPROC``
  counts threads too, so this also caps threads.

In every cgroup mode the run's processes are joined to the cgroup before the run's
own code starts (a process joins itself, then ``exec``s), every process left in it is
killed when the run ends, and an OOM kill inside it ends the whole run. Set
``GHOSTPILOT_SANDBOX_MEMORY=processes`` to refuse cgroups (tests, odd hosts).
"""

from __future__ import annotations

import functools
import itertools
import os
import shutil
import signal
import subprocess
import threading
import time
from dataclasses import dataclass

FORCE_ENV = "GHOSTPILOT_SANDBOX_MEMORY"
PARENT_ENV = "GHOSTPILOT_SANDBOX_CGROUP"
MODES = ("cgroup2", "cgroup1", "systemd-run", "processes")

# Without a cgroup, the budget is split among at most this many processes by default.
FALLBACK_PROCESSES = 4
_MIN_PROCESS_MB = 64
_MB = 1024 * 1024

_counter = itertools.count()
_counter_lock = threading.Lock()

# Tag and exit status of a run that could not be set up (the runner's bootstrap uses
# the same ones).
SETUP_TAG = "ghostpilot-sandbox:"
SETUP_FAILED = 125

# Joins the cgroup whose ``cgroup.procs`` is $1 (writing 0 moves the writer), then
# runs the rest. /bin/sh keeps this step cheap; nothing of the run has started yet.
JOIN_SCRIPT = (f'echo 0 > "$1" || {{ echo "{SETUP_TAG} cannot join cgroup $1" >&2; '
               f'exit {SETUP_FAILED}; }}; shift; exec "$@"')


@dataclass(frozen=True)
class MemoryBound:
    """How this machine bounds a run's memory: ``mode`` (one of :data:`MODES`), the
    cgroup directory run cgroups are made in (cgroup modes), and why, in words."""

    mode: str
    parent: str | None = None
    detail: str = ""

    @property
    def whole_run(self) -> bool:
        return self.mode != "processes"


@dataclass(frozen=True)
class MemoryPlan:
    """The limits one run gets (pure result of :func:`plan`)."""

    mode: str
    run_mb: int | None  # the whole run's limit, enforced by a cgroup; None without one
    process_mb: int  # RLIMIT_AS of each process
    max_processes: int  # processes (and threads) the run may have at once

    def describe(self) -> str:
        if self.run_mb is not None:
            return (f"{self.run_mb} MB for the whole run ({self.mode}); "
                    f"{self.process_mb} MB per process, {self.max_processes} processes")
        return (f"{self.max_processes} processes × {self.process_mb} MB = "
                f"{self.max_processes * self.process_mb} MB (no cgroup: fewer processes)")


def plan(memory_mb: int, process_memory_mb: int | None, max_processes: int,
         mode: str) -> MemoryPlan:
    """Split a run's budget of ``memory_mb`` into what each process may use.

    With a cgroup the run as a whole is held to ``memory_mb`` and each process to
    ``process_memory_mb`` (default: the whole budget). Without one, processes ×
    per-process memory must fit the budget: by default at most
    :data:`FALLBACK_PROCESSES` processes of an equal share each.
    """
    if memory_mb < 1 or max_processes < 1:
        raise ValueError("memory_mb and max_processes must be at least 1")
    if process_memory_mb is not None and process_memory_mb < 1:
        raise ValueError("process_memory_mb must be at least 1")
    if mode != "processes":
        per = min(process_memory_mb or memory_mb, memory_mb)
        return MemoryPlan(mode, memory_mb, per, max_processes)
    if process_memory_mb is None:
        share = min(max_processes, FALLBACK_PROCESSES)
        per = max(memory_mb // share, min(_MIN_PROCESS_MB, memory_mb))
    else:
        per = min(process_memory_mb, memory_mb)
    processes = max(1, min(max_processes, memory_mb // per))
    return MemoryPlan(mode, None, per, processes)


# --- finding out what works here ---------------------------------------------------


def parse_proc_cgroup(text: str) -> dict[str, str]:
    """``/proc/<pid>/cgroup`` as {controller: path}; the v2 entry is under ``""``."""
    found: dict[str, str] = {}
    for line in text.splitlines():
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        _, controllers, path = parts
        if parts[0] == "0" and controllers == "":
            found[""] = path
            continue
        for controller in controllers.split(","):
            if controller:
                found.setdefault(controller, path)
    return found


@dataclass(frozen=True)
class CgroupMount:
    root: str  # the mount's root inside the hierarchy
    mountpoint: str
    fstype: str  # "cgroup" | "cgroup2"
    options: frozenset[str]  # super options ("memory", "rw", ...)


def parse_mountinfo(text: str) -> list[CgroupMount]:
    """The cgroup and cgroup2 mounts listed in ``/proc/<pid>/mountinfo``."""
    mounts = []
    for line in text.splitlines():
        left, sep, right = line.partition(" - ")
        if not sep:
            continue
        fields, tail = left.split(), right.split()
        if len(fields) < 5 or len(tail) < 3 or tail[0] not in ("cgroup", "cgroup2"):
            continue
        mounts.append(CgroupMount(_unescape(fields[3]), _unescape(fields[4]), tail[0],
                                  frozenset(tail[2].split(","))))
    return mounts


def _unescape(field: str) -> str:
    """mountinfo escapes space, tab, newline and backslash as octal."""
    for code, char in (("\\040", " "), ("\\011", "\t"), ("\\012", "\n"), ("\\134", "\\")):
        field = field.replace(code, char)
    return field


def cgroup_dir(mount: CgroupMount, path: str) -> str | None:
    """Where the hierarchy path ``path`` lies under ``mount`` (None if outside it)."""
    root = mount.root.rstrip("/")
    if root and path != root and not path.startswith(root + "/"):
        return None
    relative = path[len(root):].lstrip("/")
    return os.path.join(mount.mountpoint, relative) if relative else mount.mountpoint


def own_cgroup_dirs(proc_cgroup: str, mountinfo: str) -> dict[str, str]:
    """This process's cgroup directories: ``"cgroup2"`` (unified) and ``"cgroup1"``
    (the v1 memory hierarchy), where mounted."""
    paths = parse_proc_cgroup(proc_cgroup)
    found: dict[str, str] = {}
    for mount in parse_mountinfo(mountinfo):
        if mount.fstype == "cgroup2" and "" in paths and "cgroup2" not in found:
            where = cgroup_dir(mount, paths[""])
            if where:
                found["cgroup2"] = where
        elif mount.fstype == "cgroup" and "memory" in mount.options and "memory" in paths \
                and "cgroup1" not in found:
            where = cgroup_dir(mount, paths["memory"])
            if where:
                found["cgroup1"] = where
    return found


def _read(path: str) -> str:
    try:
        with open(path, encoding="utf-8") as fh:
            return fh.read()
    except OSError:
        return ""


def _write(path: str, value: str) -> None:
    with open(path, "w", encoding="utf-8") as fh:
        fh.write(value)


def _probe_cgroup2(parent: str) -> str:
    """Empty if run cgroups with a memory limit can be made under ``parent``, else why not."""
    if "memory" not in _read(os.path.join(parent, "cgroup.controllers")).split():
        return f"memory controller not delegated to {parent}"
    if "memory" not in _read(os.path.join(parent, "cgroup.subtree_control")).split():
        try:
            _write(os.path.join(parent, "cgroup.subtree_control"), "+memory")
        except OSError as error:
            return f"cannot enable memory for children of {parent}: {error.strerror}"
    return _probe_child(parent, "memory.max")


def _probe_cgroup1(parent: str) -> str:
    return _probe_child(parent, "memory.limit_in_bytes")


def _probe_child(parent: str, limit_file: str) -> str:
    probe = os.path.join(parent, f"ghostpilot-probe-{os.getpid()}-{_next()}")
    try:
        os.mkdir(probe)
    except OSError as error:
        return f"cannot create a cgroup in {parent}: {error.strerror}"
    try:
        _write(os.path.join(probe, limit_file), str(64 * _MB))
        return ""
    except OSError as error:
        return f"cannot set {limit_file} in {parent}: {error.strerror}"
    finally:
        try:
            os.rmdir(probe)
        except OSError:
            pass


def systemd_run_argv(unit: str, limit_bytes: int, *, user: bool) -> list[str]:
    """The ``systemd-run`` prefix that starts a command in a memory-bounded scope."""
    exe = shutil.which("systemd-run") or "systemd-run"
    return [exe, *(["--user"] if user else []), "--scope", "--quiet", "--collect",
            f"--unit={unit}", "-p", f"MemoryMax={limit_bytes}", "-p", "MemorySwapMax=0", "--"]


def _probe_systemd_run(user: bool) -> str:
    if shutil.which("systemd-run") is None:
        return "systemd-run not found"
    # The scope must really carry the limit: print its memory.max from inside.
    show = "cat /sys/fs/cgroup$(grep '^0::' /proc/self/cgroup | cut -d: -f3)/memory.max"
    argv = [*systemd_run_argv(f"ghostpilot-probe-{os.getpid()}-{_next()}", 64 * _MB, user=user),
            "/bin/sh", "-c", show]
    try:
        done = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, timeout=10,
                              text=True)
    except (OSError, subprocess.SubprocessError) as error:
        return f"systemd-run failed: {error}"
    if done.returncode != 0:
        return f"systemd-run failed: {(done.stderr.strip().splitlines() or ['exit status'])[-1]}"
    if done.stdout.strip() != str(64 * _MB):
        return "systemd-run scopes do not get a memory limit here"
    return ""


@functools.lru_cache(maxsize=1)
def _detect() -> MemoryBound:
    reasons: list[str] = []
    explicit = os.environ.get(PARENT_ENV, "").strip()
    dirs = own_cgroup_dirs(_read("/proc/self/cgroup"), _read("/proc/self/mountinfo"))
    candidates: list[tuple[str, str]] = []
    if explicit:
        kind = "cgroup2" if os.path.exists(os.path.join(explicit, "cgroup.controllers")) \
            else "cgroup1"
        candidates.append((kind, explicit))
    candidates += [(kind, dirs[kind]) for kind in ("cgroup2", "cgroup1") if kind in dirs]
    for kind, parent in candidates:
        why = _probe_cgroup2(parent) if kind == "cgroup2" else _probe_cgroup1(parent)
        if not why:
            return MemoryBound(kind, parent, f"a {kind} of its own under {parent}")
        reasons.append(why)
    if not dirs and not explicit:
        reasons.append("no cgroup memory hierarchy mounted")
    user = os.geteuid() != 0
    why = _probe_systemd_run(user)
    if not why:
        return MemoryBound("systemd-run", None,
                           f"a transient scope from systemd-run{' --user' if user else ''}")
    reasons.append(why)
    return MemoryBound("processes", None, "; ".join(reasons))


def memory_bound() -> MemoryBound:
    """How runs are bounded here (probed once; ``GHOSTPILOT_SANDBOX_MEMORY=processes``
    forces the fallback)."""
    if os.environ.get(FORCE_ENV, "").strip().lower() == "processes":
        return MemoryBound("processes", None, f"forced by {FORCE_ENV}")
    return _detect()


def _next() -> int:
    with _counter_lock:
        return next(_counter)


# --- one run's cgroup -------------------------------------------------------------


class RunCgroup:
    """The cgroup of one run: made before it starts, read while it runs, emptied and
    removed when it ends. Its processes join it through :meth:`prefix`."""

    def __init__(self, bound: MemoryBound, limit_mb: int) -> None:
        self.mode = bound.mode
        self.limit_bytes = limit_mb * _MB
        self.name = f"ghostpilot-sbx-{os.getpid()}-{_next()}"
        self.path: str | None = None
        self._made = False
        if bound.mode in ("cgroup1", "cgroup2"):
            assert bound.parent is not None
            path = os.path.join(bound.parent, self.name)
            os.mkdir(path)
            self.path, self._made = path, True
            try:
                self._set_limits()
            except OSError:
                self.remove()
                raise
        elif bound.mode == "systemd-run":
            self.name += ".scope"
        else:
            raise ValueError(f"no cgroup in memory mode {bound.mode!r}")

    def _set_limits(self) -> None:
        assert self.path is not None
        if self.mode == "cgroup2":
            _write(os.path.join(self.path, "memory.max"), str(self.limit_bytes))
            for name, value in (("memory.swap.max", "0"), ("memory.oom.group", "1")):
                if os.path.exists(os.path.join(self.path, name)):
                    _write(os.path.join(self.path, name), value)
        else:
            _write(os.path.join(self.path, "memory.limit_in_bytes"), str(self.limit_bytes))
            memsw = os.path.join(self.path, "memory.memsw.limit_in_bytes")
            if os.path.exists(memsw):
                _write(memsw, str(self.limit_bytes))

    def prefix(self) -> list[str]:
        """What goes before the run's command line so that it starts inside."""
        if self.mode == "systemd-run":
            return systemd_run_argv(self.name, self.limit_bytes, user=os.geteuid() != 0)
        assert self.path is not None
        return ["/bin/sh", "-c", JOIN_SCRIPT, "sh", os.path.join(self.path, "cgroup.procs")]

    def locate(self, pid: int) -> None:
        """For a systemd scope: find its directory from the first process's cgroup."""
        if self.path is not None or self.mode != "systemd-run":
            return
        own = own_cgroup_dirs(_read(f"/proc/{pid}/cgroup"), _read("/proc/self/mountinfo"))
        where = own.get("cgroup2")
        if where and os.path.basename(where) == self.name:
            self.path = where

    def oom_kills(self) -> int:
        """How many processes the kernel killed for the run's memory limit so far."""
        if self.path is None:
            return 0
        name = "memory.events" if self.mode != "cgroup1" else "memory.oom_control"
        for line in _read(os.path.join(self.path, name)).splitlines():
            key, _, value = line.partition(" ")
            if key == "oom_kill" and value.strip().isdigit():
                return int(value)
        return 0

    def peak_bytes(self) -> int | None:
        """The most memory the run held at once (None where the kernel does not say)."""
        if self.path is None:
            return None
        name = "memory.peak" if self.mode != "cgroup1" else "memory.max_usage_in_bytes"
        value = _read(os.path.join(self.path, name)).strip()
        return int(value) if value.isdigit() else None

    def pids(self) -> list[int]:
        if self.path is None:
            return []
        return [int(p) for p in _read(os.path.join(self.path, "cgroup.procs")).split()
                if p.isdigit()]

    def kill_all(self) -> None:
        """SIGKILL every process in the cgroup, also ones that left the run's session."""
        if self.path is None:
            return
        kill_file = os.path.join(self.path, "cgroup.kill")
        if os.path.exists(kill_file):
            try:
                _write(kill_file, "1")
            except OSError:
                pass
        for _ in range(200):
            pids = self.pids()
            if not pids:
                return
            for pid in pids:
                try:
                    os.kill(pid, signal.SIGKILL)
                except (ProcessLookupError, PermissionError):
                    pass
            time.sleep(0.01)

    def remove(self) -> None:
        """Remove a cgroup we made (systemd collects its scopes itself)."""
        if not self._made or self.path is None:
            return
        for _ in range(100):
            try:
                os.rmdir(self.path)
                self._made = False
                return
            except FileNotFoundError:
                self._made = False
                return
            except OSError:
                self.kill_all()
                time.sleep(0.01)
