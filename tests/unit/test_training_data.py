"""The training data pipeline without torch: licences, split, duplicates, sandbox check,
packing."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from training import build_data, extract, packing, sources, verify


def test_the_data_pipeline_does_not_import_torch() -> None:
    assert "torch" not in sys.modules


@pytest.mark.parametrize("text, expected", [
    pytest.param("MIT", "MIT", id="mit"),
    pytest.param("MIT License", "MIT", id="mit-classifier"),
    pytest.param("BSD-3-Clause", "BSD", id="bsd-spdx"),
    pytest.param("BSD License", "BSD", id="bsd-classifier"),
    pytest.param("Apache Software License", "Apache-2.0", id="apache-classifier"),
    pytest.param("Apache-2.0 OR BSD-3-Clause", "Apache-2.0", id="dual-or"),
    pytest.param("Python Software Foundation License", "PSF", id="psf"),
    pytest.param("GNU General Public License v3 (GPLv3)", None, id="gpl"),
    pytest.param("LGPL-2.1-or-later", None, id="lgpl"),
    pytest.param("MPL-2.0", None, id="mpl"),
    pytest.param("Zope Public License", None, id="zpl"),
    pytest.param("MIT AND GPL-3.0", None, id="and-with-copyleft"),
    pytest.param("", None, id="empty"),
])
def test_only_permissive_licences_are_accepted(text: str, expected: str | None) -> None:
    assert sources.normalise_licence(text) == expected


def test_licence_from_metadata_then_licence_file() -> None:
    spdx = "Metadata-Version: 2.4\nName: x\nLicense-Expression: MIT\n\n"
    classifier = "Metadata-Version: 2.1\nName: x\nClassifier: License :: OSI Approved :: BSD License\n\n"
    gpl = "Metadata-Version: 2.4\nName: x\nLicense-Expression: GPL-3.0-only\n\n"
    bare = "Metadata-Version: 2.1\nName: x\n\n"
    assert sources.licence_of(spdx, []) == "MIT"
    assert sources.licence_of(classifier, []) == "BSD"
    assert sources.licence_of(gpl, ["Permission is hereby granted, free of charge, ..."]) is None
    assert sources.licence_of(bare, ["Redistribution and use in source and binary\n forms"]) == "BSD"
    assert sources.licence_of(bare, ["All rights reserved."]) is None
    zope = ("Metadata-Version: 2.1\nName: roman\nLicense: ZPL-2.1\n"
            "Classifier: License :: OSI Approved :: Zope Public License\n\n")
    # ZPL's text says "Redistribution and use in source and binary forms" too
    assert sources.licence_of(zope, ["Redistribution and use in source and binary forms"]) is None


def test_manifest_pins_every_source() -> None:
    for source in sources.load_manifest():
        assert source.version and source.version[0].isdigit(), source
        assert source.declared_licence


@pytest.mark.parametrize("path, kept", [
    pytest.param("more_itertools/more.py", True, id="library"),
    pytest.param("src/pkg/util.py", True, id="src-layout"),
    pytest.param("tests/test_more.py", False, id="tests-dir"),
    pytest.param("pkg/test_util.py", False, id="test-file"),
    pytest.param("pkg/util_test.py", False, id="test-suffix"),
    pytest.param("docs/conf.py", False, id="docs"),
    pytest.param("setup.py", False, id="setup"),
    pytest.param("pkg/_vendor/six.py", False, id="vendored"),
    pytest.param("pkg/data.txt", False, id="not-python"),
])
def test_code_files_exclude_tests_docs_and_vendored_copies(path: str, kept: bool) -> None:
    assert sources.is_code_file(path) is kept


def test_split_keeps_a_files_functions_together_and_is_stable() -> None:
    splits = {build_data.split_of("pkg", f"m{i}.py", 5) for i in range(400)}
    assert splits == {"train", "val"}
    for i in range(50):
        first = build_data.split_of("pkg", f"m{i}.py", 5)
        assert all(build_data.split_of("pkg", f"m{i}.py", 5) == first for _ in range(3))
    share = sum(build_data.split_of("pkg", f"m{i}.py", 5) == "val" for i in range(4000)) / 4000
    assert 0.03 < share < 0.07
    assert build_data.split_of("pkg", "m.py", 0) == "train"


def _candidate(body: str, *, name: str = "f", doc: str = ">>> f(2)\n4\n",
               path: str = "m.py") -> extract.Candidate:
    block = '    """Double.\n\n' + "".join(f"    {line}\n" for line in doc.splitlines()) + '    """\n'
    return extract.Candidate("t", path, name, 1, "", f"def {name}(x):\n", block, body,
                             "Double.\n\n" + doc)


def test_dedupe_ignores_comments_and_keeps_the_first() -> None:
    a = _candidate("    return 2 * x\n", path="a.py")
    b = _candidate("    # twice\n    return 2 * x\n", path="b.py")
    c = _candidate("    return x + x\n", path="c.py")
    kept, dropped = build_data.dedupe([a, b, c])
    assert kept == [a, c] and dropped == 1


@pytest.mark.parametrize("body, doc, passed", [
    pytest.param("    return 2 * x\n", ">>> f(2)\n4\n", True, id="correct"),
    pytest.param("    return x + 1\n", ">>> f(2)\n4\n", False, id="wrong-answer"),
    pytest.param("    return helper(x)\n", ">>> f(2)\n4\n", False, id="needs-module-helper"),
    pytest.param("    return 2 * x\n", ">>> f(2)  # doctest: +SKIP\n4\n", False, id="nothing-ran"),
    pytest.param("    while True:\n        pass\n", ">>> f(2)\n4\n", False, id="hangs"),
])
def test_sandbox_keeps_only_functions_whose_examples_pass(body: str, doc: str, passed: bool) -> None:
    limits = verify.SandboxLimits(timeout_s=3.0, memory_mb=512, output_limit_kb=16)
    verdict = verify.check(_candidate(body, doc=doc), limits)
    assert verdict.passed is passed, verdict
    if not passed:
        assert verdict.reason


def test_staticmethod_examples_may_call_through_the_class() -> None:
    cand = extract.Candidate("t", "m.py", "Tools.f", 1, "", "def f(x):\n",
                             '    """Double.\n\n    >>> Tools.f(2)\n    4\n    """\n',
                             "    return 2 * x\n", "Double.\n\n>>> Tools.f(2)\n4\n")
    assert verify.check(cand).passed


def test_verdicts_are_cached_by_program(tmp_path: Path) -> None:
    cache = verify.VerdictCache(tmp_path / "v.jsonl")
    good = _candidate("    return 2 * x\n")
    assert [v.passed for v in verify.check_all([good], cache, workers=1)] == [True]
    reread = verify.VerdictCache(tmp_path / "v.jsonl")
    assert reread.get(verify.cache_key(good)) == verify.Verdict(True, 1, 0, "")


class _Tokenizer:
    bos_token_id, eos_token_id = 2, 1

    def encode(self, text: str, add_special_tokens: bool = False) -> list[int]:
        return [10 + len(word) for word in text.split()]


def test_examples_carry_bos_prompt_body_eos_and_long_ones_are_dropped(tmp_path: Path) -> None:
    data = tmp_path / "train.jsonl"
    data.write_text('{"prompt": "def f():", "body": "return 1"}\n'
                    '{"prompt": "' + "w " * 50 + '", "body": "x"}\n')
    examples, dropped = packing.load_examples(data, _Tokenizer(), max_len=20)
    assert dropped == 1
    assert examples == [packing.Example([2, 13, 14, 16, 11, 1], n_prompt=3)]


def test_packing_keeps_whole_examples_within_the_row_length() -> None:
    examples = [packing.Example(list(range(n)), 1) for n in (5, 4, 3, 6, 2)]
    rows = packing.pack(examples, 8)
    assert [[len(e.ids) for e in row] for row in rows] == [[5], [4, 3], [6, 2]]
    assert all(sum(len(e.ids) for e in row) <= 8 for row in rows)


def test_epoch_rows_are_reproducible_and_differ_between_epochs() -> None:
    examples = [packing.Example([i] * (1 + i % 5), 1) for i in range(60)]
    a0 = packing.epoch_rows(examples, 16, seed=7, epoch=0)
    assert a0 == packing.epoch_rows(examples, 16, seed=7, epoch=0)
    assert a0 != packing.epoch_rows(examples, 16, seed=7, epoch=1)
    seen = sorted(e.ids[0] for row in a0 for e in row)
    assert seen == list(range(60))


def test_status_summarises_loss_speed_validation_and_time_left(tmp_path: Path) -> None:
    from training import status

    run = tmp_path / "run"
    run.mkdir()
    rows = [{"step": 0, "val_loss": 1.5, "time": 0.0}]
    rows += [{"step": i, "epoch": 0, "loss": 2.0 - i / 10, "tokens": 1000 * i, "time": 10.0 * i}
             for i in range(1, 11)]
    rows += [{"step": 10, "epoch": 0, "val_loss": 1.2, "best_val": 1.2, "time": 101.0}]
    (run / "log.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows) + "{broken\n")
    (run / "total_steps").write_text("40\n")
    (run / "train.pid").write_text("999999999\n")
    text = status.summary(run, window=5)
    assert "pid 999999999: not running" in text
    assert "step 10, epoch 0, 10000 tokens" in text
    assert "mean loss of the last 5 steps 1.2000" in text
    assert "100.0 tokens/s" in text
    assert "30 steps at 10 s/step" in text
    assert "val loss at step 10: 1.2000  <- best" in text
    assert "val loss at step 0: 1.5000\n" in text


def test_the_product_never_imports_torch_or_training() -> None:
    import ast

    root = Path(__file__).resolve().parents[2] / "lsp_server"
    offenders = []
    for path in sorted(root.rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [node.module or ""] if isinstance(node, ast.ImportFrom) and not node.level else []
            offenders += [f"{path.relative_to(root)}: {n}" for n in names
                          if n.split(".")[0] in ("torch", "training", "transformers", "peft")]
    assert offenders == []
