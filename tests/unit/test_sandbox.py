"""The sandbox contains what untrusted samples do: one escape attempt of each kind,
under each isolation this machine offers."""

from __future__ import annotations

import os
import socket
import threading
import time
import uuid
from pathlib import Path

import pytest

from lsp_server.sandbox import SandboxLimits, SandboxResult, isolation_available, run_python
from lsp_server.sandbox import isolation as iso
from lsp_server.sandbox.runner import classify

HAVE_BWRAP = isolation_available() == "bubblewrap"
ISOLATIONS = [
    pytest.param("bubblewrap", id="bubblewrap",
                 marks=pytest.mark.skipif(not HAVE_BWRAP, reason="bwrap does not work here")),
    pytest.param("rlimits", id="rlimits"),
]


def _processes_with(marker: str) -> list[int]:
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
    return iso.is_root() and iso.path_reachable_by_others(os.sys.executable)


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
    while _processes_with(marker) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _processes_with(marker) == []


@pytest.mark.skipif(not HAVE_BWRAP, reason="an unbounded fork bomb is only run under bwrap")
def test_classic_fork_bomb_is_contained() -> None:
    marker = f"bomb-{uuid.uuid4().hex}"
    code = "import os\nwhile True:\n    try:\n        os.fork()\n    except OSError:\n        pass\n"
    result = run_python(code, argv=[marker], limits=SandboxLimits(timeout_s=2, max_processes=32))
    assert result.status == "timeout"
    time.sleep(0.2)
    assert _processes_with(marker) == []


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
    if kind == "rlimits" and not (iso.is_root() and iso.path_reachable_by_others(os.sys.executable)):
        pytest.skip("a child that leaves the session is only reachable by uid or PID namespace")
    deadline = time.monotonic() + 3
    while _processes_with(marker) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _processes_with(marker) == []


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
        pytest.param(1, "exit", "Traceback\nMemoryError\n", "failed", "memory limit (1024 MB)",
                     id="memory"),
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


def test_private_uids_are_distinct_and_unprivileged() -> None:
    uids = {iso.next_private_uid() for _ in range(100)}
    assert len(uids) == 100
    assert all(2**31 - 1 > uid > 65535 for uid in uids)


def test_result_type() -> None:
    result = SandboxResult("passed", 0, "", "", 0.1, "rlimits")
    assert result.passed and result.reason == ""
