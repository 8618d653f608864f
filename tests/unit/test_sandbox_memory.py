"""A sandboxed run's memory is bounded as a whole: the budget split (pure), finding the
cgroup hierarchy (pure parsers), and real runs that fork children past the budget
under each isolation and memory bound this machine offers."""

from __future__ import annotations

import os
import subprocess
import time
import uuid

import pytest

from benchmarks.sandbox_memory import measure, run_pss_kb
from lsp_server.sandbox import SandboxLimits, isolation_available, memory_bound, run_python
from lsp_server.sandbox import memory as mem
from tests.unit.test_sandbox import processes_with

BOUND = memory_bound()
HAVE_CGROUP = BOUND.whole_run
ISOLATIONS = [
    pytest.param("bubblewrap", id="bubblewrap",
                 marks=pytest.mark.skipif(isolation_available() != "bubblewrap",
                                          reason="bwrap does not work here")),
    pytest.param("rlimits", id="rlimits"),
]
MODES = [
    pytest.param("cgroup", id="cgroup",
                 marks=pytest.mark.skipif(not HAVE_CGROUP, reason=f"no cgroup: {BOUND.detail}")),
    pytest.param("processes", id="processes"),
]
# PSS sampled from outside also counts a share of library pages that processes outside
# the run faulted in first (the kernel charges those elsewhere): a few MB over the
# cgroup's own count, never hundreds.
PSS_SLACK_MB = 32


@pytest.fixture
def mode(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    if request.param == "processes":
        monkeypatch.setenv(mem.FORCE_ENV, "processes")
    return str(request.param)


@pytest.mark.parametrize(
    ("memory_mb", "process_mb", "max_processes", "bound", "expected"),
    [
        pytest.param(1024, None, 64, "cgroup2", (1024, 1024, 64), id="cgroup-defaults"),
        pytest.param(4096, 1024, 64, "cgroup1", (4096, 1024, 64), id="cgroup-per-process"),
        pytest.param(1024, 4096, 64, "systemd-run", (1024, 1024, 64), id="cgroup-clamped"),
        pytest.param(1024, None, 64, "processes", (None, 256, 4), id="fallback-defaults"),
        pytest.param(512, None, 64, "processes", (None, 128, 4), id="fallback-512"),
        pytest.param(4096, 1024, 64, "processes", (None, 1024, 4), id="fallback-per-process"),
        pytest.param(1024, 100, 64, "processes", (None, 100, 10), id="fallback-small-processes"),
        pytest.param(1024, 100, 3, "processes", (None, 100, 3), id="fallback-few-allowed"),
        pytest.param(1024, None, 2, "processes", (None, 512, 2), id="fallback-two"),
        pytest.param(100, None, 64, "processes", (None, 64, 1), id="fallback-tiny-budget"),
        pytest.param(1024, 2048, 64, "processes", (None, 1024, 1), id="fallback-one-big"),
    ],
)
def test_plan(memory_mb: int, process_mb: int | None, max_processes: int, bound: str,
              expected: tuple[int | None, int, int]) -> None:
    plan = mem.plan(memory_mb, process_mb, max_processes, bound)
    assert (plan.run_mb, plan.process_mb, plan.max_processes) == expected
    assert plan.mode == bound


@pytest.mark.parametrize("memory_mb", [1, 63, 64, 100, 512, 1000, 1024, 4096, 65536])
@pytest.mark.parametrize("process_mb", [None, 1, 50, 256, 1024, 10**6])
@pytest.mark.parametrize("max_processes", [1, 2, 4, 5, 64, 1000])
def test_fallback_never_exceeds_the_budget(memory_mb: int, process_mb: int | None,
                                           max_processes: int) -> None:
    plan = mem.plan(memory_mb, process_mb, max_processes, "processes")
    assert plan.max_processes * plan.process_mb <= memory_mb
    assert 1 <= plan.max_processes <= max_processes


@pytest.mark.parametrize(
    ("args", "message"),
    [
        pytest.param((0, None, 64, "cgroup2"), "memory_mb", id="no-memory"),
        pytest.param((1024, None, 0, "processes"), "max_processes", id="no-processes"),
        pytest.param((1024, 0, 64, "processes"), "process_memory_mb", id="no-process-memory"),
    ],
)
def test_plan_rejects_nonsense(args: tuple[int, int | None, int, str], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        mem.plan(*args)


HYBRID_CGROUP = """9:name=systemd:/
8:pids:/
4:memory:/process_api/17fc
2:cpu,cpuacct:/
0::/
"""
HYBRID_MOUNTINFO = """31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu,cpuacct rw,relatime - cgroup cgroup rw,cpu,cpuacct
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
39 31 0:36 / /sys/fs/cgroup/pids rw,relatime - cgroup cgroup rw,pids
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
"""
V2_CGROUP = "0::/user.slice/user-1000.slice/user@1000.service/app.slice/ghost.scope\n"
V2_MOUNTINFO = "30 24 0:26 / /sys/fs/cgroup rw,nosuid - cgroup2 cgroup2 rw,nsdelegate\n"
# A container's cgroup namespace: the mount's root is the container's own cgroup.
NS_MOUNTINFO = "700 690 0:26 /docker/abc /sys/fs/cgroup ro - cgroup2 cgroup2 rw\n"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param(HYBRID_CGROUP, {"name=systemd": "/", "pids": "/", "memory": "/process_api/17fc",
                                     "cpu": "/", "cpuacct": "/", "": "/"}, id="hybrid"),
        pytest.param(V2_CGROUP, {"": V2_CGROUP.strip()[3:]}, id="unified"),
        pytest.param("garbage\n\n", {}, id="garbage"),
    ],
)
def test_parse_proc_cgroup(text: str, expected: dict[str, str]) -> None:
    assert mem.parse_proc_cgroup(text) == expected


@pytest.mark.parametrize(
    ("proc_cgroup", "mountinfo", "expected"),
    [
        pytest.param(HYBRID_CGROUP, HYBRID_MOUNTINFO,
                     {"cgroup1": "/sys/fs/cgroup/memory/process_api/17fc",
                      "cgroup2": "/sys/fs/cgroup/unified"}, id="hybrid"),
        pytest.param(V2_CGROUP, V2_MOUNTINFO,
                     {"cgroup2": "/sys/fs/cgroup/user.slice/user-1000.slice/user@1000.service/"
                                 "app.slice/ghost.scope"}, id="unified"),
        pytest.param("0::/docker/abc/inner\n", NS_MOUNTINFO,
                     {"cgroup2": "/sys/fs/cgroup/inner"}, id="mount-root-below"),
        pytest.param("0::/elsewhere\n", NS_MOUNTINFO, {}, id="outside-the-mount"),
        pytest.param(V2_CGROUP, "", {}, id="nothing-mounted"),
        pytest.param("4:memory:/a b\n",
                     "35 31 0:32 / /sys/fs/cgroup/mem\\040ory rw - cgroup cgroup rw,memory\n",
                     {"cgroup1": "/sys/fs/cgroup/mem ory/a b"}, id="escaped-mountpoint"),
    ],
)
def test_own_cgroup_dirs(proc_cgroup: str, mountinfo: str, expected: dict[str, str]) -> None:
    assert mem.own_cgroup_dirs(proc_cgroup, mountinfo) == expected


@pytest.mark.parametrize(("user", "first"), [(True, "--user"), (False, "--scope")])
def test_systemd_run_argv(user: bool, first: str) -> None:
    argv = mem.systemd_run_argv("ghostpilot-sbx-1-2.scope", 512 * 2**20, user=user)
    assert argv[1] == first
    assert "--unit=ghostpilot-sbx-1-2.scope" in argv
    assert f"MemoryMax={512 * 2**20}" in argv and "MemorySwapMax=0" in argv
    assert argv[-1] == "--"


def test_forced_fallback(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(mem.FORCE_ENV, "processes")
    bound = memory_bound()
    assert bound.mode == "processes" and not bound.whole_run
    assert mem.FORCE_ENV in bound.detail


@pytest.mark.skipif(not HAVE_CGROUP or BOUND.mode == "systemd-run",
                    reason=f"no cgroup made directly here: {BOUND.detail}")
def test_run_cgroup_holds_joins_kills_and_is_removed() -> None:
    cgroup = mem.RunCgroup(BOUND, 64)
    try:
        assert cgroup.path is not None and os.path.isdir(cgroup.path)
        proc = subprocess.Popen([*cgroup.prefix(), "sleep", "30"], start_new_session=True)
        deadline = time.monotonic() + 5
        while proc.pid not in cgroup.pids() and time.monotonic() < deadline:
            time.sleep(0.01)
        assert cgroup.pids() == [proc.pid]
        cgroup.kill_all()
        assert proc.wait(timeout=5) == -9
        assert cgroup.pids() == []
        assert cgroup.oom_kills() == 0
    finally:
        cgroup.remove()
    assert not os.path.exists(cgroup.path)


@pytest.mark.parametrize("kind", ISOLATIONS)
@pytest.mark.parametrize("mode", MODES, indirect=True)
def test_children_past_the_budget_are_stopped_within_it(kind: str, mode: str) -> None:
    """Five children each touching 200 MB against a 512 MB budget for the whole run."""
    budget = 512
    found = measure(5, 200, budget, kind)
    result, details = found.result, found.result.details
    assert result.isolation == kind
    assert found.sampled_peak_mb <= budget + PSS_SLACK_MB, found
    if mode == "cgroup":
        assert details["memory_bound"] == BOUND.mode
        assert result.status == "killed", result
        assert result.reason == f"memory limit ({budget} MB for the whole run)"
        oom_kills = details["oom_kills"]
        assert isinstance(oom_kills, int) and oom_kills >= 1
        peak = details["memory_peak_mb"]
        assert peak is None or (isinstance(peak, float) and peak <= budget)
    else:
        assert details["memory_bound"] == "processes"
        assert details["memory_limit_mb"] is None
        process_mb = details["process_memory_mb"]
        assert isinstance(process_mb, int)
        # By construction: every process that may exist at once, at its limit, fits.
        assert process_mb * mem.plan(budget, None, 64, "processes").max_processes <= budget
        assert 0 <= found.held and found.held * 200 <= budget
    assert run_pss_kb(found.marker) == 0  # nothing of the run is left


@pytest.mark.skipif(not HAVE_CGROUP or BOUND.mode == "systemd-run",
                    reason=f"no cgroup made directly here: {BOUND.detail}")
@pytest.mark.parametrize("kind", ISOLATIONS)
def test_run_leaves_no_cgroup_behind(kind: str) -> None:
    assert BOUND.parent is not None
    mine = f"ghostpilot-sbx-{os.getpid()}-"

    def leftovers() -> list[str]:
        return [name for name in os.listdir(BOUND.parent) if name.startswith(mine)]

    before = leftovers()
    result = run_python("print('hi')", isolation_kind=kind)
    assert result.passed, result
    assert result.details["memory_bound"] == BOUND.mode
    peak = result.details["memory_peak_mb"]
    assert peak is None or 0 < float(peak) <= SandboxLimits().memory_mb  # type: ignore[arg-type]
    assert leftovers() == before


@pytest.mark.skipif(not HAVE_CGROUP, reason=f"no cgroup: {BOUND.detail}")
@pytest.mark.parametrize("kind", ISOLATIONS)
def test_daemon_that_left_the_session_dies_with_the_cgroup(kind: str) -> None:
    """A child that calls setsid() escapes session and process-group kills; as root
    without a private uid (plain rlimits, an interpreter others cannot reach) only the
    cgroup still finds it."""
    marker = f"cgdaemon-{uuid.uuid4().hex}"
    code = ("import os, time\n"
            "if os.fork() == 0:\n    os.setsid()\n    time.sleep(60)\n    os._exit(0)\n"
            "print('parent done')\n")
    result = run_python(code, argv=[marker], isolation_kind=kind)
    assert result.status == "passed", result
    deadline = time.monotonic() + 3
    while processes_with(marker) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert processes_with(marker) == []
