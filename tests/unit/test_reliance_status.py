"""Functions and their AI share, the static test index, statuses and the report."""

from __future__ import annotations

import pytest

from lsp_server.reliance import functions as fn
from lsp_server.reliance import status as ss
from lsp_server.reliance.records import new_record
from lsp_server.reliance.testindex import TestIndex, index_text, is_test_file
from lsp_server.reliance.workspace import RelianceWorkspace, module_names

MODULE = '''import math


class Shape:
    def __init__(self, size):
        self.size = size

    def area(self):
        def helper():
            return self.size ** 2
        return helper()


@cache
def circle(r):
    return math.pi * r * r
'''


def test_functions_qualnames_and_ranges():
    found = {f.qualname: f for f in fn.functions(MODULE)}
    assert list(found) == ["Shape.__init__", "Shape.area", "Shape.area.helper", "circle", "<module>"]
    assert found["Shape.area"].class_name == "Shape"
    assert found["Shape.area.helper"].class_name is None
    circle = found["circle"]
    assert MODULE[circle.start :].startswith("@cache")  # decorators belong to the function
    assert MODULE[circle.name_start : circle.name_end] == "circle"
    assert found["Shape.area"].nested == ((found["Shape.area.helper"].start, found["Shape.area.helper"].end),)


def test_deeply_nested_code_is_walked_without_recursion():
    """500 nested ifs raised RecursionError in every completion request (the tested
    suggestions look up the function at the cursor with this walk); found by a
    hostile-input run against the real server."""
    depth = 500
    text = "def k(x):\n" + "".join("    " * (i + 1) + f"if x > {i}:\n" for i in range(depth))
    text += "    " * (depth + 1) + "def inner():\n" + "    " * (depth + 2) + "return x\n"
    text += "class C:\n    def m(self):\n        pass\n"
    found = {f.qualname: f for f in fn.functions(text)}
    assert list(found) == ["k", "k.inner", "C.m", "<module>"]
    assert found["k"].nested == ((found["k.inner"].start, found["k.inner"].end),)
    assert found["C.m"].class_name == "C" and found["k.inner"].class_name is None
    assert found["<module>"].nested == ((found["k"].start, found["k"].end), (found["C.m"].start, found["C.m"].end))


def test_non_ascii_offsets_are_code_points():
    text = 'É = "ü"\n\ndef f():\n    return "𝄞"\n'
    (f, _module) = fn.functions(text)
    assert text[f.start : f.end] == 'def f():\n    return "𝄞"'


@pytest.mark.parametrize(
    ("inserted_at", "inserted", "expected"),
    [
        pytest.param("return self.size ** 2", "return self.size ** 2", {"Shape.area.helper"}, id="inner-only"),
        pytest.param("return helper()", "return helper()", {"Shape.area"}, id="outer-not-inner"),
        pytest.param("import math", "import math", {"<module>"}, id="module-level"),
        pytest.param("self.size = size\n\n    def area", "self.size = size\n\n    def area", {"Shape.__init__", "Shape.area"}, id="spans-two"),
    ],
)
def test_ai_characters_belong_to_the_innermost_function(inserted_at, inserted, expected):
    start = MODULE.index(inserted_at)
    record = new_record(start, inserted, "m")
    assert {s.function.qualname for s in fn.shares(MODULE, [record])} == expected


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        pytest.param("test_calc.py", True, id="test-prefix"),
        pytest.param("pkg/calc_test.py", True, id="test-suffix"),
        pytest.param("tests/helpers.py", True, id="tests-dir"),
        pytest.param("src/tests/unit/conftest.py", True, id="nested-tests-dir"),
        pytest.param("calc.py", False, id="plain"),
        pytest.param("testing/calc.py", False, id="testing-dir"),
        pytest.param("tests/data.json", False, id="not-python"),
    ],
)
def test_is_test_file(path, expected):
    assert is_test_file(path) is expected


TEST_FILE = '''
import pytest
from calc import add, unused_import
from pkg import shapes


@pytest.fixture
def made():
    return shapes.Shape(2)


def helper_not_a_test():
    return mul(2, 3)


def test_add(made):
    assert add(1, 2) == 3
    assert made.area() == 4


@pytest.mark.parametrize("f", [circle])
def test_param(f, keyword=sub):
    assert f(1)


class TestMath:
    def test_div(self):
        assert calc.div(4, 2) == 2

    def not_a_test(self):
        pass


def not_collected():
    unrelated(x=1)
'''


def test_index_text_names_per_test():
    indexed = index_text("tests/test_calc.py", TEST_FILE)
    tests = {t.nodeid: t.names for t in indexed.tests}
    assert list(tests) == [
        "tests/test_calc.py::test_add",
        "tests/test_calc.py::test_param",
        "tests/test_calc.py::TestMath::test_div",
    ]
    assert {"add", "area", "made"} <= tests["tests/test_calc.py::test_add"]
    assert "div" in tests["tests/test_calc.py::TestMath::test_div"]
    assert "sub" in tests["tests/test_calc.py::test_param"]  # default values are uses
    assert "keyword" not in tests["tests/test_calc.py::test_param"]  # parameter names are not
    assert {"circle", "Shape", "mul", "unrelated"} <= indexed.module_names
    assert "unused_import" not in indexed.all_names  # importing is not calling
    assert "x" not in indexed.all_names  # keyword-argument names are not uses
    assert {"calc", "pkg"} <= indexed.imported_modules


def test_index_references_and_incremental_scan(tmp_path):
    (tmp_path / "tests").mkdir()
    (tmp_path / ".venv" / "lib").mkdir(parents=True)
    (tmp_path / ".venv" / "lib" / "test_vendored.py").write_text("def test_x():\n    add()\n")
    (tmp_path / "tests" / "test_calc.py").write_text(TEST_FILE)
    index = TestIndex()
    assert index.scan(tmp_path) is True
    assert list(index.files) == ["tests/test_calc.py"]
    assert index.references({"add"}) == ["tests/test_calc.py::test_add"]
    assert index.references({"mul"}) == ["tests/test_calc.py"]  # module-level use: whole file
    assert index.references({"nowhere"}) == []
    assert index.scan(tmp_path) is False  # unchanged: nothing re-read
    (tmp_path / "tests" / "test_calc.py").unlink()
    assert index.scan(tmp_path) is True and index.files == {}


def test_open_buffer_wins_over_disk(tmp_path):
    (tmp_path / "test_a.py").write_text("def test_a():\n    add()\n")
    index = TestIndex()
    index.scan(tmp_path)
    index.update("test_a.py", "def test_a():\n    sub()\n", from_editor=True)
    index.scan(tmp_path)
    assert index.references({"sub"}) == ["test_a.py::test_a"]
    assert index.references({"add"}) == []


@pytest.mark.parametrize(
    ("unreviewed", "static", "run", "valid", "expected"),
    [
        pytest.param(0, [], None, False, ss.REVIEWED, id="reviewed"),
        pytest.param(5, [], None, False, ss.UNTESTED, id="untested"),
        pytest.param(5, ["t.py::test_a"], None, False, ss.TESTED, id="static"),
        pytest.param(5, ["t.py::a"], ss.FunctionRun("h", "failing", failed=["t.py::a"]), True, ss.FAILING, id="failing"),
        pytest.param(5, ["t.py::a"], ss.FunctionRun("h", "passing"), True, ss.PASSING, id="passing"),
        pytest.param(5, ["t.py::a"], ss.FunctionRun("h", "failing"), False, ss.TESTED, id="stale-run"),
        pytest.param(5, ["t.py::a"], ss.FunctionRun("h", "not-executed"), True, ss.UNTESTED, id="never-executed"),
        pytest.param(0, ["t.py::a"], ss.FunctionRun("h", "failing"), True, ss.REVIEWED, id="reviewed-wins"),
    ],
)
def test_decide(unreviewed, static, run, valid, expected):
    status, detail = ss.decide(unreviewed_chars=unreviewed, static_tests=static, run=run, run_valid=valid)
    assert status == expected
    assert detail


def test_valid_run_tracks_function_and_test_changes():
    run = ss.FunctionRun("abc", "passing", test_digests={"t.py": "1"})
    assert ss.valid_run(run, "abc", {"t.py": "1"})
    assert not ss.valid_run(run, "abd", {"t.py": "1"})
    assert not ss.valid_run(run, "abc", {"t.py": "2"})
    assert not ss.valid_run(run, "abc", {})


def test_module_names():
    assert module_names("pkg/sub/mod.py") == {"pkg.sub.mod", "sub.mod", "mod"}
    assert module_names("pkg/__init__.py") == {"pkg"}


def test_workspace_report_statuses(tmp_path):
    source = "def add(a, b):\n    return a + b\n\n\ndef mul(a, b):\n    return a * b\n"
    (tmp_path / "calc.py").write_text(source)
    (tmp_path / "test_calc.py").write_text("from calc import add\n\ndef test_add():\n    assert add(1, 1) == 2\n")
    workspace = RelianceWorkspace(tmp_path, "workspace")
    for body in ("    return a + b\n", "    return a * b\n"):
        workspace.tracker.add("calc.py", new_record(source.index(body), body, "m"), source)
    workspace.tracker.detach("calc.py", source)
    workspace.scan_tests()
    report = workspace.report()
    assert [(e.qualname, e.status) for e in report.entries] == [("add", "tested"), ("mul", "untested")]
    assert report.ai_chars == 32  # the newline after each body lies outside the function
    assert report.untested == 16
    text = ss.render(report)
    assert "untested  calc.py:5" in text and "tested    calc.py:1" in text
    assert "untested: 16 (50.0%)" in text
    data = report.to_json()
    assert data["counts"]["untested"] == 1 and data["untested_share"] == 0.5
    # Reviewing mul removes it from the untested share.
    assert workspace.mark_reviewed("calc.py", source, "mul", 0, 0) == 16
    assert workspace.report().untested == 0
