"""Which isolation this machine offers, and the command lines that set it up.

Two levels:

- ``"bubblewrap"``: ``bwrap`` with fresh network, PID, IPC and UTS namespaces; the
  root file system is an empty tmpfs with read-only binds of the system directories
  and of the Python installation, and only the run's temporary directory is writable.
- ``"rlimits"``: a plain subprocess with resource limits; nothing stops it from
  reaching the network or the files its user may write.

Processes are bounded with ``RLIMIT_NPROC``. The kernel counts that limit per user
and ignores it for root, so when we are root every run executes as a user id of its
own (never one from ``/etc/passwd``): the count is then exactly the run's processes,
and every one of them can be killed at the end by signalling that user id.

That user id owns nothing, so it cannot read a workspace in a 0700 directory (anything
under ``/root``, pytest's temporary directories). Under bubblewrap such a mount is
copied for it (:func:`stage_copy`) and the copy is bound at the mount's own path;
under plain rlimits, where paths cannot be remapped, the run keeps root's user id
instead (as when the interpreter itself is out of reach), and the run's cgroup, where
there is one, still finds and kills every process it started.
"""

from __future__ import annotations

import functools
import itertools
import os
import shutil
import stat
import subprocess
import sys
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path

# Set to "rlimits" to refuse bubblewrap even where it works (tests, odd hosts).
FORCE_ENV = "GHOSTPILOT_SANDBOX"

# Private user ids: far above any real account, one per run.
_UID_BASE = 2_100_000_000
_UID_SPAN = 10_000_000
_uid_counter = itertools.count()
_uid_lock = threading.Lock()

# Top-level system directories a Python process needs; bound read-only (or
# recreated as the same symlink on merged-/usr systems).
_SYSTEM_DIRS = ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32")
_ETC_FILES = ("/etc/ld.so.cache", "/etc/localtime", "/etc/nsswitch.conf", "/etc/passwd",
              "/etc/group", "/etc/hosts", "/etc/ssl", "/etc/alternatives")


def is_root() -> bool:
    return hasattr(os, "geteuid") and os.geteuid() == 0


def next_private_uid() -> int:
    """A user id no account and no other live run uses (unique per process and call)."""
    with _uid_lock:
        n = next(_uid_counter)
    slot = (os.getpid() % 10_000) * 1_000 + n % 1_000
    return _UID_BASE + slot % _UID_SPAN


def bwrap_path() -> str | None:
    return shutil.which("bwrap")


@functools.lru_cache(maxsize=1)
def _bwrap_works() -> bool:
    exe = bwrap_path()
    if exe is None:
        return False
    argv = [exe, *namespace_flags(root=is_root(), network=False), "--ro-bind", "/", "/",
            "--proc", "/proc", "--dev", "/dev", "--die-with-parent", "true"]
    try:
        done = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return False
    return done.returncode == 0


def isolation_available() -> str:
    """``"bubblewrap"`` if a trial ``bwrap`` run with its own namespaces works, else ``"rlimits"``."""
    if os.environ.get(FORCE_ENV, "").strip().lower() == "rlimits":
        return "rlimits"
    return "bubblewrap" if _bwrap_works() else "rlimits"


def namespace_flags(*, root: bool, network: bool) -> list[str]:
    """bwrap's namespace options. As root no user namespace: the run switches to its
    private uid inside, which a one-uid user namespace could not map."""
    flags = ["--unshare-ipc", "--unshare-pid", "--unshare-uts", "--unshare-cgroup-try"]
    if not network:
        flags.append("--unshare-net")
    if not root:
        flags.insert(0, "--unshare-user")
    return flags


def bwrap_argv(
    *,
    bwrap: str,
    workdir: str,
    cwd: str,
    python_prefixes: Sequence[str],
    ro_mounts: Sequence[str],
    root: bool,
    network: bool,
    staged: Mapping[str, str] | None = None,
) -> list[str]:
    """The ``bwrap`` command line up to (not including) the command it runs.

    ``staged`` maps a read-only mount to the copy that is bound at its place (a mount
    the run's user could not read, copied for it)."""
    argv = [bwrap, *namespace_flags(root=root, network=network),
            "--die-with-parent", "--new-session"]
    for top in _SYSTEM_DIRS:
        path = Path(top)
        if path.is_symlink():
            argv += ["--symlink", os.readlink(top), top]
        elif path.is_dir():
            argv += ["--ro-bind", top, top]
    for etc in _ETC_FILES:
        argv += ["--ro-bind-try", etc, etc]
    if network:
        argv += ["--ro-bind-try", "/etc/resolv.conf", "/etc/resolv.conf"]
    argv += ["--proc", "/proc", "--dev", "/dev", "--perms", "1777", "--tmpfs", "/tmp"]
    binds = [p for p in _outermost(python_prefixes) if not _under(p, "/usr")]
    binds += [os.path.realpath(m) for m in ro_mounts]
    # bwrap would create missing parents as 0700 root: unreachable for the run's uid.
    for parent in _parents([*binds, workdir], skip={"/", "/tmp", *_SYSTEM_DIRS}):
        argv += ["--perms", "0755", "--dir", parent]
    for bind in binds:
        argv += ["--ro-bind", (staged or {}).get(bind, bind), bind]
    argv += ["--bind", workdir, workdir, "--chdir", cwd]
    if root:
        # Only so that the bootstrap can switch to the run's private uid; setuid()
        # away from root clears them again before any sandboxed code runs.
        argv += ["--cap-drop", "ALL", "--cap-add", "CAP_SETUID", "--cap-add", "CAP_SETGID"]
    return argv


def python_prefixes() -> list[str]:
    """Directories the interpreter needs: the venv, its base installation, and
    the real location of the executable (pyenv shims, symlinks)."""
    candidates = {sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix,
                  str(Path(os.path.realpath(sys.executable)).parent.parent)}
    return sorted(os.path.realpath(c) for c in candidates if c)


def path_reachable_by_others(path: str) -> bool:
    """Whether a user who owns nothing can traverse to ``path`` and read/execute it."""
    current = Path(os.path.realpath(path))
    for part in [*reversed(current.parents), current]:
        try:
            mode = part.stat().st_mode
        except OSError:
            return False
        needed = stat.S_IXOTH if part != current or stat.S_ISDIR(mode) else stat.S_IROTH | stat.S_IXOTH
        if mode & needed != needed:
            return False
    return True


# Never copied when a mount is staged for the run's user: version control, caches and
# virtual environments (the run uses our interpreter, not the workspace's).
STAGE_SKIP = frozenset({".git", ".hg", ".svn", "__pycache__", ".mypy_cache", ".pytest_cache",
                        ".ruff_cache", ".tox", ".nox", ".venv", "venv", "node_modules"})
STAGE_LIMIT_MB = 256


class StageError(Exception):
    """A mount the run's user cannot read could not be copied for it."""


def tree_readable_by_others(path: str, *, ancestors: bool) -> bool:
    """Whether a user who owns nothing can read ``path`` and everything under it
    (directories listed and entered, files read), skipping :data:`STAGE_SKIP`.
    ``ancestors``: also the directories above it must let that user through (not so
    under bubblewrap, which recreates them 0755)."""
    real = os.path.realpath(path)
    if ancestors and not path_reachable_by_others(real):
        return False
    stack = [real]
    while stack:
        current = stack.pop()
        try:
            mode = os.lstat(current).st_mode
        except OSError:
            return False
        if stat.S_ISDIR(mode):
            if mode & (stat.S_IROTH | stat.S_IXOTH) != stat.S_IROTH | stat.S_IXOTH:
                return False
            try:
                with os.scandir(current) as entries:
                    stack += [e.path for e in entries if e.name not in STAGE_SKIP]
            except OSError:
                return False
        elif stat.S_ISREG(mode) and not mode & stat.S_IROTH:
            return False
    return True


def stage_copy(source: str, target: str, uid: int, limit_mb: int = STAGE_LIMIT_MB) -> None:
    """Copy ``source`` to ``target`` for ``uid`` to read (owned by it, user-readable),
    without :data:`STAGE_SKIP` and refusing more than ``limit_mb``."""
    budget = [limit_mb * 1024 * 1024]

    def ignore(directory: str, names: list[str]) -> set[str]:
        skipped = {n for n in names if n in STAGE_SKIP}
        for name in names:
            if name in skipped:
                continue
            try:
                info = os.lstat(os.path.join(directory, name))
            except OSError:
                continue
            if stat.S_ISREG(info.st_mode):
                budget[0] -= info.st_size
            elif not (stat.S_ISDIR(info.st_mode) or stat.S_ISLNK(info.st_mode)):
                skipped.add(name)  # sockets, fifos, devices
        if budget[0] < 0:
            raise StageError(f"{source} is over {limit_mb} MB; make it readable by others "
                             f"(chmod -R o+rX) so that the sandbox can mount it instead")
        return skipped

    try:
        shutil.copytree(source, target, symlinks=True, ignore=ignore)
    except shutil.Error as error:
        raise StageError(f"cannot copy {source} for the sandbox: {error}") from None
    except OSError as error:
        raise StageError(f"cannot copy {source} for the sandbox: {error}") from None
    for parent, dirs, names in os.walk(target):
        for name in [*dirs, *names]:
            entry = os.path.join(parent, name)
            os.chown(entry, uid, uid, follow_symlinks=False)
            if not os.path.islink(entry):
                os.chmod(entry, os.lstat(entry).st_mode | stat.S_IRUSR
                         | (stat.S_IXUSR if os.path.isdir(entry) else 0))
    os.chown(target, uid, uid)
    os.chmod(target, 0o755)


def _under(path: str, parent: str) -> bool:
    return path == parent or path.startswith(parent.rstrip("/") + "/")


def _outermost(paths: Sequence[str]) -> list[str]:
    """Drop paths that lie inside another one in the list."""
    unique = sorted(set(paths))
    return [p for p in unique if not any(q != p and _under(p, q) for q in unique)]


def _parents(paths: Sequence[str], skip: set[str]) -> list[str]:
    """Every proper ancestor of ``paths``, outermost first, minus ``skip`` and the paths."""
    found: set[str] = set()
    for path in paths:
        found.update(str(p) for p in Path(path).parents)
    found -= skip | set(paths)
    return sorted(found, key=lambda p: (p.count("/"), p))
