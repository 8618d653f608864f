"""The sandbox contains what untrusted samples do: one escape attempt of each kind,
under each isolation this machine offers."""

from __future__ import annotations

import os
import socket
import sys
import threading
import time
import uuid
from pathlib import Path

import pytest

from lsp_server.sandbox import SandboxLimits, SandboxResult, isolation_available, memory, run_python
from lsp_server.sandbox import isolation as iso
from lsp_server.sandbox.runner import classify

HAVE_BWRAP = isolation_available() == "bubblewrap"
ISOLATIONS = [
    pytest.param("bubblewrap", id="bubblewrap",
                 marks=pytest.mark.skipif(not HAVE_BWRAP, reason="bwrap does not work here")),
    pytest.param("rlimits", id="rlimits"),
]


def processes_with(marker: str) -> list[int]:
    """Live (non-zombie) processes whose command line contains ``marker``."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            cmdline = Path(f"/proc/{entry}/cmdline").read_bytes()
            state = Path(f"/proc/{entry}/stat").read_bytes().rsplit(b")", 1)[1].split()[0]
        except OSError:
            continue
        if marker.encode() in cmdline and state != b"Z":
            found.append(int(entry))
    return found


def _isolated_writes(kind: str) -> bool:
    """Whether this isolation keeps the run from writing files our user can write."""
    if kind == "bubblewrap":
        return True
    return iso.is_root() and iso.path_reachable_by_others(sys.executable)


@pytest.mark.parametrize("kind", ISOLATIONS)
def test_ordinary_program_runs_and_reports_isolation(kind: str) -> None:
    result = run_python("import sys\nprint('out', sys.argv[1:])\nprint('err', file=sys.stderr)\n",
                        argv=["a", "b"], files={"pkg/data.txt": "x"}, isolation_kind=kind)
    assert result.status == "passed", result
    assert result.stdout == "out ['a', 'b']\n"
    assert result.stderr == "err\n"
    assert result.isolation == kind
    assert result.returncode == 0


@pytest.mark.parametrize("kind", ISOLATIONS)
def test_environment_is_scrubbed(kind: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GHOSTPILOT_SECRET_TOKEN", "hunter2")
    code = "import os\nprint(sorted(k for k in os.environ if 'SECRET' in k))\nprint(os.environ['X'])"
    result = run_python(code, env={"X": "given"}, isolation_kind=kind)
    assert result.stdout.split() == ["[]", "given"]


@pytest.mark.parametrize("kind", ISOLATIONS)
def test_infinite_loop_times_out(kind: str) -> None:
    result = run_python("while True:\n    pass\n", limits=SandboxLimits(timeout_s=1.0),
                        isolation_kind=kind)
    assert result.status == "timeout"
    assert 1.0 <= result.duration_s < 6.0
    assert "timeout" in result.reason


@pytest.mark.parametrize("kind", ISOLATIONS)
def test_memory_hog_fails_with_memory_error(kind: str) -> None:
    code = "chunks = []\nwhile True:\n    chunks.append(bytearray(8 * 1024 * 1024))\n"
    result = run_python(code, limits=SandboxLimits(memory_mb=256, timeout_s=20),
                        isolation_kind=kind)
    assert result.status == "failed"
    assert "MemoryError" in result.stderr
    assert result.reason.startswith("memory limit")


@pytest.mark.parametrize("kind", ISOLATIONS)
def test_fork_without_bound_is_stopped_and_cleaned_up(kind: str) -> None:
    marker = f"forkbomb-{uuid.uuid4().hex}"
    code = (
        "import os, sys, time\n"
        "n = 0\n"
        "try:\n"
        "    while n < 2000:\n"
        "        if os.fork() == 0:\n"
        "            time.sleep(60)\n"
        "            os._exit(0)\n"
        "        n += 1\n"
        "except OSError:\n"
        "    print('blocked at', n)\n"
        "    sys.exit(3)\n"
        "print('forked', n)\n"
    )
    limits = SandboxLimits(max_processes=16, timeout_s=20)
    result = run_python(code, argv=[marker], limits=limits, isolation_kind=kind)
    assert "forked" not in result.stdout, result
    if result.stdout.startswith("blocked at"):
        assert int(result.stdout.split()[-1]) < limits.max_processes
        assert result.status == "failed"
    else:  # counted and killed from outside (root without a private uid)
        assert result.status == "killed" and result.reason.startswith("process limit")
    deadline = time.monotonic() + 3
    while processes_with(marker) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert processes_with(marker) == []


@pytest.mark.skipif(not HAVE_BWRAP, reason="an unbounded fork bomb is only run under bwrap")
def test_classic_fork_bomb_is_contained() -> None:
    marker = f"bomb-{uuid.uuid4().hex}"
    code = "import os\nwhile True:\n    try:\n        os.fork()\n    except OSError:\n        pass\n"
    result = run_python(code, argv=[marker], limits=SandboxLimits(timeout_s=2, max_processes=32))
    assert result.status == "timeout"
    time.sleep(0.2)
    assert processes_with(marker) == []


@pytest.mark.parametrize("kind", ISOLATIONS)
def test_socket_connect_is_cut(kind: str) -> None:
    if kind == "rlimits":
        pytest.skip("plain rlimits cannot cut the network; the result says 'rlimits'")
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(0.2)
    port = listener.getsockname()[1]
    accepted: list[object] = []

    def accept() -> None:
        try:
            accepted.append(listener.accept())
        except OSError:
            pass

    thread = threading.Thread(target=accept)
    thread.start()
    code = (f"import socket\ns = socket.create_connection(('127.0.0.1', {port}), timeout=2)\n"
            "print('connected')\n")
    result = run_python(code, isolation_kind=kind)
    thread.join()
    listener.close()
    assert accepted == []
    assert result.status == "failed"
    assert "connected" not in result.stdout
    assert "ConnectionRefusedError" in result.stderr or "OSError" in result.stderr


@pytest.mark.parametrize("kind", ISOLATIONS)
def test_write_outside_workdir_does_not_reach_host(kind: str, tmp_path: Path) -> None:
    if not _isolated_writes(kind):
        pytest.skip("as root without bwrap and an interpreter others can reach, "
                    "the run keeps root's file permissions")
    target = tmp_path / "escaped.txt"
    code = (f"open({str(target)!r}, 'w').write('pwned')\n"
            "open('inside.txt', 'w').write('ok')\nprint('ok')\n")
    run_python(code, isolation_kind=kind)
    assert not target.exists()
    # The temp working dir itself stays writable.
    result = run_python("open('inside.txt', 'w').write('ok')\nprint(open('inside.txt').read())",
                        isolation_kind=kind)
    assert result.stdout == "ok\n"


@pytest.mark.parametrize("kind", ISOLATIONS)
def test_file_size_limit(kind: str) -> None:
    code = "open('big.bin', 'wb').write(b'x' * (3 * 1024 * 1024))\n"
    result = run_python(code, limits=SandboxLimits(max_file_mb=1), isolation_kind=kind)
    assert result.status in ("failed", "killed")
    assert result.reason.startswith("file size limit")


@pytest.mark.parametrize("kind", ISOLATIONS)
def test_daemon_left_behind_is_killed(kind: str) -> None:
    marker = f"daemon-{uuid.uuid4().hex}"
    code = ("import os, time\n"
            "if os.fork() == 0:\n    os.setsid()\n    time.sleep(60)\n    os._exit(0)\n"
            "print('parent done')\n")
    result = run_python(code, argv=[marker], isolation_kind=kind)
    assert result.status == "passed"
    if kind == "rlimits" and not (iso.is_root() and iso.path_reachable_by_others(sys.executable)):
        pytest.skip("a child that leaves the session is only reachable by uid or PID namespace")
    deadline = time.monotonic() + 3
    while processes_with(marker) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert processes_with(marker) == []


@pytest.mark.parametrize("kind", ISOLATIONS)
def test_cancel_kills_the_run(kind: str) -> None:
    cancel = threading.Event()
    threading.Timer(0.5, cancel.set).start()
    result = run_python("import time\ntime.sleep(30)\n", cancel=cancel, isolation_kind=kind)
    assert result.status == "killed"
    assert result.reason == "cancelled"
    assert result.duration_s < 5


@pytest.mark.parametrize("kind", ISOLATIONS)
def test_huge_output_is_truncated(kind: str) -> None:
    code = "import sys\nfor _ in range(2000):\n    sys.stdout.write('y' * 1000 + '\\n')\n"
    result = run_python(code, limits=SandboxLimits(output_limit_kb=16), isolation_kind=kind)
    assert result.status == "passed"
    assert result.truncated
    assert len(result.stdout) < 17 * 1024


@pytest.mark.parametrize("kind", ISOLATIONS)
def test_read_only_mount_is_readable_not_writable(kind: str, tmp_path: Path) -> None:
    (tmp_path / "data.txt").write_text("hello")
    os.chmod(tmp_path, 0o755)
    code = (f"print(open({str(tmp_path / 'data.txt')!r}).read())\n"
            f"open({str(tmp_path / 'new.txt')!r}, 'w')\n")
    result = run_python(code, workdir_ro_mounts=[str(tmp_path)], isolation_kind=kind)
    if _isolated_writes(kind):
        assert result.stdout == "hello\n"
        assert not (tmp_path / "new.txt").exists()
        assert result.status == "failed"


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        pytest.param({"code": None}, "needs code or argv", id="nothing-to-run"),
        pytest.param({"code": "1", "files": {"../x": ""}}, "relative", id="file-escapes"),
        pytest.param({"code": "1", "files": {"/etc/x": ""}}, "relative", id="file-absolute"),
        pytest.param({"code": "1", "workdir_ro_mounts": ["/no/such/dir"]}, "does not exist",
                     id="missing-mount"),
        pytest.param({"code": "1", "isolation_kind": "docker"}, "unknown isolation",
                     id="unknown-isolation"),
        pytest.param({"code": "1", "cwd": "/etc"}, "cwd must be", id="cwd-outside"),
    ],
)
def test_bad_arguments_raise_value_error(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        run_python(**kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("returncode", "ended_by", "stderr", "status", "reason"),
    [
        pytest.param(0, "exit", "", "passed", "", id="ok"),
        pytest.param(1, "exit", "AssertionError\n", "failed", "", id="assertion"),
        pytest.param(1, "exit", "Traceback\nMemoryError\n", "failed",
                     "memory limit (1024 MB per process)", id="memory-error"),
        pytest.param(-9, "memory", "", "killed", "memory limit (1024 MB for the whole run)",
                     id="whole-run-memory"),
        pytest.param(-9, "timeout", "", "timeout", "timeout after 10 s", id="timeout"),
        pytest.param(-9, "cancelled", "", "killed", "cancelled", id="cancelled"),
        pytest.param(-9, "exit", "", "killed", "killed by SIGKILL", id="signal"),
        pytest.param(-25, "exit", "", "killed", "file size limit (16 MB)", id="sigxfsz"),
        pytest.param(125, "exit", "ghostpilot-sandbox: PermissionError", "error",
                     "sandbox setup failed", id="bootstrap"),
        pytest.param(1, "exit", "bwrap: Can't mount proc", "error", "bubblewrap setup failed",
                     id="bwrap"),
    ],
)
def test_classify(returncode: int, ended_by: str, stderr: str, status: str, reason: str) -> None:
    assert classify(returncode, ended_by, stderr, SandboxLimits()) == (status, reason)


@pytest.mark.parametrize(
    ("ended_by", "stderr", "reason"),
    [
        pytest.param("exit", "Traceback\nMemoryError\n", "memory limit (256 MB per process)",
                     id="memory-error"),
        pytest.param("processes", "", "process limit (4)", id="processes"),
        pytest.param("exit", "BlockingIOError: [Errno 11] Resource temporarily unavailable\n"
                     "  in fork", "process limit (4)", id="fork-refused"),
    ],
)
def test_classify_names_the_fallback_split(ended_by: str, stderr: str, reason: str) -> None:
    """Without a cgroup the reasons name what the run really had, not the asked-for limits."""
    plan = memory.plan(1024, None, 64, "processes")
    assert classify(1, ended_by, stderr, SandboxLimits(), plan)[1] == reason


def test_private_uids_are_distinct_and_unprivileged() -> None:
    uids = {iso.next_private_uid() for _ in range(100)}
    assert len(uids) == 100
    assert all(2**31 - 1 > uid > 65535 for uid in uids)


def test_result_type() -> None:
    result = SandboxResult("passed", 0, "", "", 0.1, "rlimits")
    assert result.passed and result.reason == ""


@pytest.fixture
def private_workspace(tmp_path: Path) -> Path:
    """A workspace only its owner can read: 0700 directories and 0600 files, in a 0700
    parent (as anything under /root, or pytest's own temporary directories)."""
    workspace = tmp_path / "ws"
    (workspace / "pkg").mkdir(parents=True)
    (workspace / "pkg" / "data.txt").write_text("private-ok")
    (workspace / ".git").mkdir()
    (workspace / ".git" / "HEAD").write_text("ref: refs/heads/main\n")
    for path in [*workspace.rglob("*"), workspace, tmp_path]:
        path.chmod(0o700 if path.is_dir() else 0o600)
    return workspace


@pytest.mark.parametrize("kind", ISOLATIONS)
def test_workspace_in_0700_directory_is_readable(kind: str, private_workspace: Path) -> None:
    code = ("import os\nprint(open('pkg/data.txt').read())\n"
            "try:\n    open('pkg/new.txt', 'w')\nexcept OSError as e:\n    print('write', type(e).__name__)\n")
    result = run_python(code, workdir_ro_mounts=[str(private_workspace)],
                        cwd=str(private_workspace), isolation_kind=kind)
    assert result.status == "passed", result
    assert result.stdout.splitlines()[0] == "private-ok"
    if kind == "bubblewrap" and iso.is_root():
        # Copied for the run's private uid and bound read-only at the same path.
        assert result.details["staged"] == [str(private_workspace.resolve())]
        assert result.stdout.splitlines()[1] == "write OSError"
        assert not (private_workspace / "pkg" / "new.txt").exists()
    assert (private_workspace / "pkg" / "data.txt").read_text() == "private-ok"


@pytest.mark.parametrize(
    ("modes", "readable"),
    [
        pytest.param({"": 0o755, "a": 0o755, "a/f": 0o644}, True, id="open"),
        pytest.param({"": 0o700, "a": 0o755, "a/f": 0o644}, False, id="top-0700"),
        pytest.param({"": 0o755, "a": 0o711, "a/f": 0o644}, False, id="dir-not-listable"),
        pytest.param({"": 0o755, "a": 0o755, "a/f": 0o600}, False, id="file-0600"),
        pytest.param({"": 0o755, ".git": 0o700, ".git/f": 0o600}, True, id="skipped-dir-ignored"),
    ],
)
def test_tree_readable_by_others(tmp_path: Path, modes: dict[str, int], readable: bool) -> None:
    top = tmp_path / "top"
    top.mkdir()
    for relative in sorted(modes, key=len):
        path = top / relative if relative else top
        if relative.rsplit("/", 1)[-1] == "f":
            path.write_text("x")
        elif relative:
            path.mkdir()
    for relative in sorted(modes, key=len, reverse=True):
        (top / relative if relative else top).chmod(modes[relative])
    assert iso.tree_readable_by_others(str(top), ancestors=False) is readable
    tmp_path.chmod(0o700)
    assert iso.tree_readable_by_others(str(top), ancestors=True) is False


def test_stage_copy_skips_caches_and_refuses_too_much(tmp_path: Path) -> None:
    source = tmp_path / "src"
    for name in ("pkg/mod.py", ".git/HEAD", ".venv/bin/python", "pkg/__pycache__/mod.pyc"):
        (source / name).parent.mkdir(parents=True, exist_ok=True)
        (source / name).write_text("x")
    uid = os.getuid()
    if iso.is_root():  # root reads a 0000 file; the copy must be readable by its owner
        (source / "pkg" / "mod.py").chmod(0o000)
        uid = iso.next_private_uid()
    iso.stage_copy(str(source), str(tmp_path / "copy"), uid)
    copied = sorted(p.relative_to(tmp_path / "copy").as_posix() for p in (tmp_path / "copy").rglob("*"))
    assert copied == ["pkg", "pkg/mod.py"]
    assert (tmp_path / "copy" / "pkg" / "mod.py").stat().st_uid == uid
    assert (tmp_path / "copy" / "pkg" / "mod.py").stat().st_mode & 0o400
    (source / "big.bin").write_bytes(b"\0" * (2 * 1024 * 1024))
    with pytest.raises(iso.StageError, match="over 1 MB"):
        iso.stage_copy(str(source), str(tmp_path / "copy2"), uid, limit_mb=1)
