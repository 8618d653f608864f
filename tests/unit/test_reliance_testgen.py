"""'Generate a test for this function': file choice, prompt, body clean-up, edits."""

from __future__ import annotations

import pytest

from lsp_server.backends.base import CancelToken, GenerationRequest, GenerationResult, ModelInfo
from lsp_server.parsing.syntax import error_count, parse_text
from lsp_server.prompts.budget import MARGIN_TOKENS, PromptBudget
from lsp_server.reliance import testgen


@pytest.mark.parametrize(
    ("module", "existing", "has_tests_dir", "expected"),
    [
        pytest.param("calc.py", [], True, "tests/test_calc.py", id="new-in-tests-dir"),
        pytest.param("pkg/calc.py", [], False, "pkg/test_calc.py", id="new-next-to-module"),
        pytest.param("calc.py", [], False, "test_calc.py", id="new-at-root"),
        pytest.param("src/pkg/calc.py", ["tests/unit/test_calc.py"], True, "tests/unit/test_calc.py", id="existing-wins"),
        pytest.param("calc.py", ["tests/calc_test.py"], True, "tests/calc_test.py", id="suffix-style"),
    ],
)
def test_choose_test_file(module, existing, has_tests_dir, expected):
    assert testgen.choose_test_file(module, existing, has_tests_dir) == expected


@pytest.mark.parametrize(
    ("path", "name", "class_name", "expected"),
    [
        pytest.param("calc.py", "add", None, "from calc import add", id="module"),
        pytest.param("src/pkg/geo.py", "area", "Shape", "from pkg.geo import Shape", id="method-src-layout"),
        pytest.param("pkg/__init__.py", "f", None, "from pkg import f", id="package"),
    ],
)
def test_import_line(path, name, class_name, expected):
    assert testgen.import_line(path, name, class_name) == expected


@pytest.mark.parametrize(
    ("generated", "expected"),
    [
        pytest.param("assert add(1, 2) == 3\n", "    assert add(1, 2) == 3", id="one-line"),
        pytest.param("x = add(1, 2)\n    assert x == 3\n\nprint(x)", "    x = add(1, 2)\n    assert x == 3", id="stops-at-dedent"),
        pytest.param("assert add(1, (2\n", None, id="unparseable-cut-to-nothing"),
        pytest.param("assert add(1, 2) == 3\n    assert add(", "    assert add(1, 2) == 3", id="cut-back-to-parse"),
        pytest.param("# TODO\n", None, id="comment-only"),
        pytest.param("", None, id="empty"),
    ],
)
def test_clean_body(generated, expected):
    assert testgen.clean_body(generated) == expected


def test_prompt_ends_where_the_body_begins():
    prompt = testgen.build_prompt("calc.py", "def add(a, b):\n    return a + b\n", "from calc import add", "test_add").text
    assert prompt.endswith("def test_add():\n    ")
    assert "# file: calc.py\ndef add(a, b):" in prompt
    assert "from calc import add" in prompt


BIG = "def big(x):\n    \"\"\"Doc.\"\"\"\n" + "".join(f"    y{i} = x + {i}\n" for i in range(300)) + "    return x\n"


@pytest.mark.parametrize("n_ctx", [400, 1024])
def test_prompt_is_fitted_to_the_model_keeping_the_function_top(n_ctx: int) -> None:
    """One token a character: the prompt and the tokens to generate fit the context; the
    function under test loses lines from its end, never its signature or docstring."""
    prompt = testgen.build_prompt("calc.py", BIG, "from calc import big", "test_big")
    fitted = prompt.fitted(PromptBudget(n_ctx, len))
    assert len(fitted) + testgen.MAX_TOKENS + MARGIN_TOKENS <= n_ctx
    assert fitted.startswith("# file: calc.py\ndef big(x):\n    \"\"\"Doc.\"\"\"\n    y0 = x + 0")
    assert fitted.endswith(prompt.tail)
    assert BIG.startswith(fitted[len(prompt.head) : len(fitted) - len(prompt.tail)] + "\n")
    assert prompt.fitted(PromptBudget(100_000, len)) == prompt.text


def test_generation_job_fits_with_the_backend_tokenizer() -> None:
    seen: list[GenerationRequest] = []

    class Backend:
        info = ModelInfo("stand-in", "-", None, 512, 1, 0)

        def tokenize(self, text: str, *, special: bool = False) -> list[int]:
            return [ord(ch) for ch in text]

        def generate(self, request: GenerationRequest, cancel: CancelToken) -> GenerationResult:
            seen.append(request)
            return GenerationResult(text="assert big(1) == 1")

        def close(self) -> None:
            pass

    prompt = testgen.build_prompt("calc.py", BIG, "from calc import big", "test_big")
    result = testgen.generation(prompt)(Backend(), CancelToken())
    assert result.text == "assert big(1) == 1"
    (request,) = seen
    assert request.prompt == prompt.fitted(PromptBudget(512, len))
    assert (request.max_tokens, request.stop, request.temperature) == (testgen.MAX_TOKENS, testgen.STOP, 0.0)


@pytest.mark.parametrize(
    "existing",
    [
        pytest.param(None, id="new-file"),
        pytest.param('"""Tests."""\nimport pytest\n\n\ndef test_other():\n    pass', id="no-import-no-newline"),
        pytest.param("from calc import add\n\n\ndef test_add():\n    pass\n", id="already-imported"),
    ],
)
def test_insertions_give_a_parseable_test_file(existing):
    name = testgen.unique_test_name("add", existing or "")
    text = existing or ""
    for piece in sorted(testgen.insertions(existing, "from calc import add", name, "    assert add(1, 2) == 3"),
                        key=lambda p: p.offset, reverse=True):
        text = text[: piece.offset] + piece.text + text[piece.offset :]
    assert error_count(parse_text(text).root_node) == 0, text
    assert text.count("from calc import add") == 1
    assert f"def {name}():\n    assert add(1, 2) == 3" in text
    if existing and "def test_add(" in existing:
        assert name == "test_add_2"
    if existing and existing.startswith('"""'):
        assert text.index("from calc import add") > text.index("import pytest")
