"""``run_python``: one untrusted Python program, one contained subprocess.

The child is started through a tiny bootstrap (``python -I -S -c``) that sets the
resource limits, drops to the run's private user id when we are root, and ``exec``s
the real ``python -I``. No ``preexec_fn``: the evaluation harness calls this from many
threads at once, where ``preexec_fn`` is unsafe. Where a cgroup bounds the run's
memory as a whole (:mod:`lsp_server.sandbox.memory`), the command line starts with the
step that joins it, before bubblewrap and the bootstrap.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from lsp_server.sandbox import isolation, memory

# Exit status of the bootstrap when it cannot set up the run (never the program's).
BOOTSTRAP_FAILED = memory.SETUP_FAILED
_BOOTSTRAP_TAG = memory.SETUP_TAG

_BOOTSTRAP = f"""
import json, os, resource, sys
cfg = json.loads(sys.argv[1]); cmd = sys.argv[2:]
try:
    for name, value in cfg["rlimits"]:
        resource.setrlimit(getattr(resource, name), (value, value))
    if cfg["uid"] is not None:
        os.setgroups([]); os.setgid(cfg["uid"]); os.setuid(cfg["uid"])
    os.umask(0o022)
    os.execv(cmd[0], cmd)
except BaseException as exc:
    sys.stderr.write("{_BOOTSTRAP_TAG} " + type(exc).__name__ + ": " + str(exc) + "\\n")
    os._exit({BOOTSTRAP_FAILED})
"""

_POLL_S = 0.02


@dataclass(frozen=True)
class SandboxLimits:
    """What one run may use. ``network=True`` keeps the host network (bubblewrap only
    ever cuts it; under plain rlimits it is never cut).

    ``memory_mb`` is the budget of the whole run, all its processes together: a cgroup
    holds the run to it where one can be made, else the run gets fewer processes so
    that processes × per-process memory fits (:func:`memory.plan`).
    ``process_memory_mb`` is each process's address space (default: the whole budget
    under a cgroup, an equal share of it without)."""

    timeout_s: float = 10.0
    memory_mb: int = 1024
    max_processes: int = 64
    max_file_mb: int = 16
    network: bool = False
    # stdout and stderr are each kept up to this size; the rest is dropped.
    output_limit_kb: int = 256
    process_memory_mb: int | None = None


@dataclass
class SandboxResult:
    status: str  # "passed" | "failed" | "timeout" | "killed" | "error"
    returncode: int | None
    stdout: str
    stderr: str
    duration_s: float
    isolation: str  # "bubblewrap" | "rlimits"
    # Why the run ended the way it did, in words ("timeout after 10.0 s",
    # "process limit (64)", "cancelled", "memory limit"...); empty for a plain exit.
    reason: str = ""
    truncated: bool = False
    details: dict[str, object] = field(default_factory=dict)

    @property
    def passed(self) -> bool:
        return self.status == "passed"


def describe(limits: SandboxLimits | None = None) -> dict[str, object]:
    """What a run with ``limits`` gets on this machine: isolation and memory bound
    (for ``ghostpilot doctor`` and the evaluation records)."""
    limits = limits or SandboxLimits()
    bound = memory.memory_bound()
    plan = memory.plan(limits.memory_mb, limits.process_memory_mb, limits.max_processes,
                       bound.mode)
    return {"isolation": isolation.isolation_available(), "memory_bound": bound.mode,
            "memory_bound_detail": bound.detail, "memory_plan": plan.describe()}


class _Launch:
    """Everything needed to start, watch and clean up one run."""

    def __init__(self, limits: SandboxLimits, isolation_kind: str, plan: memory.MemoryPlan,
                 reachable: Sequence[str]) -> None:
        self.limits = limits
        self.isolation = isolation_kind
        self.plan = plan
        self.root = isolation.is_root()
        self.uid: int | None = None
        # As root, RLIMIT_NPROC is ignored unless the run gets a user id of its own.
        # Under bubblewrap that uid always works (mounts it cannot read are staged);
        # without, it must reach the interpreter and everything the run reads.
        if self.root and (isolation_kind == "bubblewrap" or all(
                isolation.tree_readable_by_others(path, ancestors=True) for path in reachable)):
            self.uid = isolation.next_private_uid()
        # With no way to enforce RLIMIT_NPROC we count the run's processes instead.
        self.watch_processes = self.root and self.uid is None
        self.cgroup: memory.RunCgroup | None = None

    def rlimits(self) -> list[tuple[str, int]]:
        mb = 1024 * 1024
        limits = [
            ("RLIMIT_AS", self.plan.process_mb * mb),
            ("RLIMIT_FSIZE", self.limits.max_file_mb * mb),
            ("RLIMIT_CORE", 0),
        ]
        nproc = self.nproc_limit()
        if nproc is not None:
            limits.append(("RLIMIT_NPROC", nproc))
        return limits

    def nproc_limit(self) -> int | None:
        if self.uid is not None or self.isolation == "bubblewrap":
            # A private uid, or a user namespace of its own: the count is this run's.
            return self.plan.max_processes
        if self.root:
            return None
        # Plain rlimits as an ordinary user: the kernel counts all of this user's
        # processes, so allow what already runs plus the run's share.
        return _count_user_processes(os.getuid()) + self.plan.max_processes

    def processes(self, pid: int) -> int:
        """The run's live processes: its cgroup's where it has one (no escaping by
        ``setsid``), else its session's."""
        if self.cgroup is not None and self.cgroup.path is not None:
            return len(self.cgroup.pids())
        return len(_session_processes(pid))


def run_python(
    code: str | None = None,
    *,
    argv: Sequence[str] = (),
    files: Mapping[str, str] | None = None,
    workdir_ro_mounts: Sequence[str] = (),
    limits: SandboxLimits = SandboxLimits(),
    env: Mapping[str, str] | None = None,
    cancel: threading.Event | None = None,
    cwd: str | None = None,
    isolation_kind: str | None = None,
) -> SandboxResult:
    """Run ``code`` (written to ``main.py``) or ``python -I *argv`` in a sandbox.

    ``files`` are written into the run's temporary working directory first (relative
    paths only). ``workdir_ro_mounts`` are host directories the run may read (under
    bubblewrap nothing else outside the system directories is visible). ``cwd``, if
    given, must be one of those mounts or inside one; the default is the temporary
    directory. ``isolation_kind`` forces "rlimits" even where bubblewrap works.
    Never raises for anything the program does; bad arguments raise ``ValueError``.
    """
    kind = isolation.isolation_available() if isolation_kind is None else isolation_kind
    if kind not in ("bubblewrap", "rlimits"):
        raise ValueError(f"unknown isolation {kind!r}")
    if kind == "bubblewrap" and isolation.isolation_available() != "bubblewrap":
        raise ValueError("bubblewrap isolation is not available on this machine")
    if code is None and not argv:
        raise ValueError("run_python needs code or argv")
    for mount in workdir_ro_mounts:
        if not os.path.isdir(mount) and not os.path.isfile(mount):
            raise ValueError(f"read-only mount does not exist: {mount}")

    bound = memory.memory_bound()
    plan = memory.plan(limits.memory_mb, limits.process_memory_mb, limits.max_processes,
                       bound.mode)
    if cwd is not None and not os.path.isdir(cwd):
        raise ValueError(f"cwd does not exist: {cwd}")
    reads = [sys.executable, *workdir_ro_mounts, *([cwd] if cwd is not None else [])]
    launch = _Launch(limits, kind, plan, reads)
    details: dict[str, object] = {"uid": launch.uid}
    start = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="ghostpilot-sbx-") as scratch:
        workdir = os.path.join(scratch, "work")
        os.mkdir(workdir)
        _write_files(workdir, files or {}, code)
        run_cwd = _resolve_cwd(cwd, workdir, workdir_ro_mounts)
        if launch.uid is not None:
            _chown_tree(workdir, launch.uid)
            os.chmod(scratch, 0o711)
        try:
            staged = _stage_unreadable(launch, scratch, workdir_ro_mounts)
        except isolation.StageError as error:
            return SandboxResult("error", None, "", str(error), time.monotonic() - start, kind,
                                 reason="sandbox setup failed", details=details)
        if staged:
            details["staged"] = sorted(staged)
        if bound.whole_run:
            try:
                launch.cgroup = memory.RunCgroup(bound, plan.run_mb or limits.memory_mb)
            except OSError as error:
                # Made before, not now (a full hierarchy, a changed mount): say so and
                # fall back to bounding by processes for this run.
                details["memory_note"] = f"cannot create the run's cgroup: {error}"
                launch.plan = plan = memory.plan(limits.memory_mb, limits.process_memory_mb,
                                                 limits.max_processes, "processes")
        details.update({"memory_bound": plan.mode, "memory_limit_mb": plan.run_mb,
                        "process_memory_mb": plan.process_mb,
                        "nproc_limit": launch.nproc_limit()})
        try:
            command = _command(launch, workdir, run_cwd, code, argv, workdir_ro_mounts, staged)
            out_path, err_path = os.path.join(scratch, "stdout"), os.path.join(scratch, "stderr")
            run_env = _scrubbed_env(workdir, env)
            start = time.monotonic()
            try:
                with open(out_path, "wb") as out, open(err_path, "wb") as err:
                    proc = subprocess.Popen(
                        command, stdin=subprocess.DEVNULL, stdout=out, stderr=err,
                        cwd=run_cwd if kind == "rlimits" else workdir, env=run_env,
                        start_new_session=True, close_fds=True,
                    )
            except OSError as exc:
                return SandboxResult("error", None, "", f"cannot start sandbox: {exc}",
                                     time.monotonic() - start, kind, reason="launch failed",
                                     details=details)
            returncode, ended_by = _wait(proc, launch, cancel, start)
            duration = time.monotonic() - start
            _kill_everything(proc, launch)
            if launch.cgroup is not None:
                oom_kills = launch.cgroup.oom_kills()
                peak = launch.cgroup.peak_bytes()
                details["oom_kills"] = oom_kills
                details["memory_peak_mb"] = None if peak is None else round(peak / 2**20, 1)
                if oom_kills and ended_by == "exit":
                    ended_by = "memory"
        finally:
            if launch.cgroup is not None:
                launch.cgroup.remove()
        limit = limits.output_limit_kb * 1024
        stdout, cut_out = _read_capped(out_path, limit)
        stderr, cut_err = _read_capped(err_path, limit)
    status, reason = classify(returncode, ended_by, stderr, limits, plan)
    return SandboxResult(status, returncode, stdout, stderr, duration, kind, reason=reason,
                         truncated=cut_out or cut_err, details=details)


def classify(returncode: int | None, ended_by: str, stderr: str,
             limits: SandboxLimits, plan: memory.MemoryPlan | None = None) -> tuple[str, str]:
    """The result's status and reason from how the run ended (pure). ``plan``: the
    memory plan the run had (default: the limits under a cgroup)."""
    if plan is None:
        plan = memory.plan(limits.memory_mb, limits.process_memory_mb, limits.max_processes,
                           "cgroup2")
    if ended_by == "timeout":
        return "timeout", f"timeout after {limits.timeout_s:g} s"
    if ended_by == "cancelled":
        return "killed", "cancelled"
    if ended_by == "memory":
        return "killed", f"memory limit ({plan.run_mb or limits.memory_mb} MB for the whole run)"
    if ended_by == "processes":
        return "killed", f"process limit ({plan.max_processes})"
    if returncode == BOOTSTRAP_FAILED and _BOOTSTRAP_TAG in stderr:
        return "error", "sandbox setup failed"
    if returncode == 1 and stderr.startswith("bwrap:"):
        return "error", "bubblewrap setup failed"
    if returncode == 0:
        return "passed", ""
    if returncode is not None and returncode < 0:
        name = _signal_name(-returncode)
        if -returncode == getattr(signal, "SIGXFSZ", -1):
            return "killed", f"file size limit ({limits.max_file_mb} MB)"
        return "killed", f"killed by {name}"
    tail = stderr.strip().splitlines()[-1] if stderr.strip() else ""
    if "MemoryError" in tail:
        return "failed", f"memory limit ({plan.process_mb} MB per process)"
    if "Resource temporarily unavailable" in stderr and "fork" in stderr:
        return "failed", f"process limit ({plan.max_processes})"
    if "File too large" in stderr:
        return "failed", f"file size limit ({limits.max_file_mb} MB)"
    return "failed", ""


def _command(launch: _Launch, workdir: str, cwd: str, code: str | None,
             argv: Sequence[str], ro_mounts: Sequence[str],
             staged: Mapping[str, str]) -> list[str]:
    python = sys.executable
    # main.py by its full path: ``cwd`` may be a mount, not the work dir.
    main = [os.path.join(workdir, "main.py")] if code is not None else []
    program = [python, "-I", "-B", *main, *argv]
    config = json.dumps({"rlimits": launch.rlimits(), "uid": launch.uid})
    bootstrap = [python, "-I", "-S", "-c", _BOOTSTRAP, config]
    join = launch.cgroup.prefix() if launch.cgroup is not None else []
    if launch.isolation == "rlimits":
        return [*join, *bootstrap, *program]
    exe = isolation.bwrap_path()
    assert exe is not None
    prefix = isolation.bwrap_argv(
        bwrap=exe, workdir=workdir, cwd=cwd, python_prefixes=isolation.python_prefixes(),
        ro_mounts=ro_mounts, root=launch.root, network=launch.limits.network, staged=staged,
    )
    return [*join, *prefix, *bootstrap, *program]


def _stage_unreadable(launch: _Launch, scratch: str, ro_mounts: Sequence[str]) -> dict[str, str]:
    """Under bubblewrap as root: copy each mount the run's private uid could not read
    into ``scratch`` for it; {mount: copy}, bound at the mount's place."""
    if launch.isolation != "bubblewrap" or launch.uid is None:
        return {}
    staged: dict[str, str] = {}
    for index, mount in enumerate(ro_mounts):
        real = os.path.realpath(mount)
        if real in staged or isolation.tree_readable_by_others(real, ancestors=False):
            continue
        target = os.path.join(scratch, f"mount-{index}")
        if os.path.isdir(real):
            isolation.stage_copy(real, target, launch.uid)
        else:
            try:
                shutil.copyfile(real, target)
            except OSError as error:
                raise isolation.StageError(f"cannot copy {real} for the sandbox: {error}") from None
            os.chown(target, launch.uid, launch.uid)
            os.chmod(target, 0o644)
        staged[real] = target
    return staged


def _wait(proc: subprocess.Popen[bytes], launch: _Launch, cancel: threading.Event | None,
          start: float) -> tuple[int | None, str]:
    deadline = start + launch.limits.timeout_s
    while True:
        try:
            return proc.wait(timeout=_POLL_S), "exit"
        except subprocess.TimeoutExpired:
            pass
        ended_by = ""
        if cancel is not None and cancel.is_set():
            ended_by = "cancelled"
        elif time.monotonic() >= deadline:
            ended_by = "timeout"
        elif launch.cgroup is not None and _over_memory(launch.cgroup, proc.pid):
            ended_by = "memory"
        elif launch.watch_processes and launch.processes(proc.pid) > launch.plan.max_processes:
            ended_by = "processes"
        if ended_by:
            _kill_everything(proc, launch)
            try:
                return proc.wait(timeout=5), ended_by
            except subprocess.TimeoutExpired:
                return None, ended_by


def _over_memory(cgroup: memory.RunCgroup, pid: int) -> bool:
    """Whether the kernel has killed one of the run's processes for its memory limit."""
    cgroup.locate(pid)
    return cgroup.oom_kills() > 0


def _kill_everything(proc: subprocess.Popen[bytes], launch: _Launch) -> None:
    """Kill the run and anything it left behind: its process group, its session (for
    children that made their own group), every process in its cgroup and, without a
    PID namespace, every process of its private uid. Under bubblewrap the namespace
    dies with its first process."""
    if launch.cgroup is not None:
        launch.cgroup.kill_all()
    _signal_group(proc.pid)
    for _ in range(100):
        victims = _session_processes(proc.pid)
        if not victims:
            break
        for pid in victims:
            _signal_pid(pid)
        time.sleep(0.01)
    if launch.uid is not None and launch.isolation == "rlimits":
        _kill_uid(launch.uid)
    try:
        proc.wait(timeout=5)
    except subprocess.TimeoutExpired:
        pass


def _kill_uid(uid: int) -> None:
    """SIGKILL every process running as ``uid`` (kill(-1) from that uid reaches exactly them)."""
    code = (f"import os\nos.setgroups([]); os.setgid({uid}); os.setuid({uid})\n"
            "try: os.kill(-1, 9)\nexcept ProcessLookupError: pass\n")
    try:
        subprocess.run([sys.executable, "-I", "-S", "-c", code], stdin=subprocess.DEVNULL,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=10,
                       env={"PATH": "/usr/bin:/bin"})
    except (OSError, subprocess.SubprocessError):
        pass


def _signal_group(pgid: int) -> None:
    try:
        os.killpg(pgid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def _signal_pid(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def _session_processes(sid: int) -> list[int]:
    """PIDs whose session id is ``sid`` (Linux /proc; empty elsewhere)."""
    pids = []
    try:
        entries = os.listdir("/proc")
    except OSError:
        return []
    for entry in entries:
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as fh:
                data = fh.read()
        except OSError:
            continue
        fields = data[data.rfind(b")") + 2:].split()
        # fields: state ppid pgrp session ...
        if len(fields) > 3 and int(fields[3]) == sid and fields[0] != b"Z":
            pids.append(int(entry))
    return pids


def _count_user_processes(uid: int) -> int:
    count = 0
    try:
        entries = os.listdir("/proc")
    except OSError:
        return 256
    for entry in entries:
        if entry.isdigit():
            try:
                if os.stat(f"/proc/{entry}").st_uid == uid:
                    count += 1
            except OSError:
                continue
    return count


def _write_files(workdir: str, files: Mapping[str, str], code: str | None) -> None:
    items = dict(files)
    if code is not None:
        items["main.py"] = code
    for name, content in items.items():
        rel = PurePosixPath(name)
        if rel.is_absolute() or ".." in rel.parts or not rel.parts:
            raise ValueError(f"sandbox file names must be relative and stay inside: {name!r}")
        target = Path(workdir, *rel.parts)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(content, encoding="utf-8")


def _resolve_cwd(cwd: str | None, workdir: str, ro_mounts: Sequence[str]) -> str:
    if cwd is None:
        return workdir
    real = os.path.realpath(cwd)
    allowed = [workdir, *(os.path.realpath(m) for m in ro_mounts)]
    if not any(real == a or real.startswith(a.rstrip("/") + "/") for a in allowed):
        raise ValueError(f"cwd must be inside the work dir or a read-only mount: {cwd}")
    return real


def _chown_tree(path: str, uid: int) -> None:
    os.chown(path, uid, uid)
    for parent, dirs, names in os.walk(path):
        for name in dirs + names:
            os.chown(os.path.join(parent, name), uid, uid, follow_symlinks=False)


def _scrubbed_env(workdir: str, extra: Mapping[str, str] | None) -> dict[str, str]:
    env = {
        "PATH": "/usr/local/bin:/usr/bin:/bin",
        "HOME": workdir,
        "TMPDIR": workdir,
        "LANG": "C.UTF-8",
        "LC_ALL": "C.UTF-8",
    }
    env.update(extra or {})
    return env


def _read_capped(path: str, limit: int) -> tuple[str, bool]:
    try:
        with open(path, "rb") as fh:
            data = fh.read(limit + 1)
    except OSError:
        return "", False
    cut = len(data) > limit
    text = data[:limit].decode("utf-8", errors="replace")
    return (text + "\n[output truncated]" if cut else text), cut


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"
