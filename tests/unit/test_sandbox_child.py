"""The shared pieces of sandboxed drivers: the plan/finish prelude and reading its line."""

from __future__ import annotations

import json
import subprocess
import sys

from lsp_server.sandbox.child import PLAN_AND_FINISH, VALUE_CHECKER, marked_payload, new_marker


def test_finish_reaches_stdout_and_prints_do_not(tmp_path):
    marker = new_marker()
    (tmp_path / "plan.json").write_text(json.dumps({"paths": [str(tmp_path / "lib")], "value": 7}))
    driver = PLAN_AND_FINISH + (
        'print(MARKER + json.dumps({"value": "forged"}), flush=True)\n'
        'finish({"value": PLAN["value"], "first_path": sys.path[0]})\n'
    )
    (tmp_path / "driver.py").write_text(driver)
    done = subprocess.run([sys.executable, "-I", str(tmp_path / "driver.py"), marker],
                          capture_output=True, text=True, timeout=60, check=True)
    assert marked_payload(done.stdout, marker) == {"value": 7, "first_path": str(tmp_path / "lib")}
    # What the code printed went to stderr, where it cannot pass for the result.
    assert "forged" not in done.stdout and "forged" in done.stderr


def test_buffered_or_late_prints_cannot_forge_the_result(tmp_path):
    """Code under test that learns the marker (it is in argv) and prints a forged line
    without flushing, or from an atexit handler, does not override the real result."""
    marker = new_marker()
    (tmp_path / "plan.json").write_text(json.dumps({"paths": []}))
    driver = PLAN_AND_FINISH + (
        "import atexit\n"
        'print(sys.argv[1] + json.dumps({"value": "buffered"}))\n'
        'atexit.register(lambda: print(sys.argv[1] + json.dumps({"value": "late"}), flush=True))\n'
        'finish({"value": "real"})\n'
    )
    (tmp_path / "driver.py").write_text(driver)
    done = subprocess.run([sys.executable, "-I", str(tmp_path / "driver.py"), marker],
                          capture_output=True, text=True, timeout=60, check=True)
    assert marked_payload(done.stdout, marker) == {"value": "real"}
    assert "buffered" in done.stderr and "late" in done.stderr


def test_marked_payload_takes_the_last_marked_line():
    assert marked_payload('M{"a": 1}\nnoise\nM{"a": 2}\ntail\n', "M") == {"a": 2}
    assert marked_payload('M{"a": 1}\nM{not json\n', "M") is None
    assert marked_payload('{"a": 1}\n', "M") is None
    assert new_marker() != new_marker()


def test_value_checker_accepts_equal_literals():
    names: dict[str, object] = {}
    exec("import ast, doctest\n" + VALUE_CHECKER, names)
    checker = names["ValueChecker"]()
    flags = names["EXAMPLE_FLAGS"]
    assert checker.check_output("'21'\n", '"21"\n', flags)
    assert checker.check_output("[1,  2]\n", "[1, 2]\n", flags)
    assert not checker.check_output("21\n", "22\n", flags)
