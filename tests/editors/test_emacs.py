"""Emacs end to end: editors/emacs/ghostpilot.el with eglot (Debian emacs-nox 28 plus
elpa-eglot, or Emacs 29+'s built-in eglot) in ``emacs --batch``, connected to the real
``ghostpilot serve`` with the real embedded model.

The scenario itself is tests/editors/emacs/test-ghostpilot.el; this wrapper writes a
sample project, runs Emacs once with a timeout, and checks its exit code and the JSON
report it writes. Without Emacs or eglot the tests skip, except under CI=true, where
that is a failure.
"""

from __future__ import annotations

import re
import subprocess

import pytest

from tests.editors.harness import (
    REPO,
    SAMPLE_START,
    STEP_TIMEOUT_S,
    Run,
    check_docstring_action,
    check_labelled_as_ai,
    function_source,
    make_project,
    missing,
    require_editor,
    run_editor,
    server_executable,
)

pytestmark = [pytest.mark.editor, pytest.mark.e2e]

SCENARIO = REPO / "tests" / "editors" / "emacs" / "test-ghostpilot.el"
PLUGIN = REPO / "editors" / "emacs"
INSTALL_HINT = "apt-get install emacs-nox elpa-eglot, or scripts/setup-editors-apt.sh"

# <COMPLETE>, <SUGGEST> and <DOCSTRING> mark cursor positions and are removed. They are
# used bottom-up, so text inserted at one never moves the next.
SAMPLE = SAMPLE_START + '''\
<SUGGEST>


def is_odd(n):
    """Return True when n is odd."""
    <COMPLETE>
'''


def require_emacs_with_eglot() -> str:
    emacs = require_editor("emacs", INSTALL_HINT)
    probe = subprocess.run(
        [
            emacs,
            "--batch",
            "--eval",
            "(progn (require 'package) (package-activate-all) (require 'eglot))",
        ],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    if probe.returncode != 0:
        missing(f"eglot cannot be loaded ({INSTALL_HINT}): {probe.stderr.strip()[-300:]}")
    return emacs


@pytest.fixture(scope="module")
def emacs_run(tmp_path_factory: pytest.TempPathFactory) -> Run:
    emacs = require_emacs_with_eglot()
    server = server_executable()
    project = make_project(tmp_path_factory, "emacs-project", SAMPLE)
    env = project.env(PLUGIN, server, GHOSTPILOT_STEP_TIMEOUT_S=str(STEP_TIMEOUT_S))
    run = run_editor([emacs, "--batch", "-l", str(SCENARIO)], env, project, strict_ok=True)
    run.save("emacs-report.json")
    print(
        f"\nemacs {run.report.get('emacs')} eglot {run.report.get('eglot')}: "
        f"{run.seconds:.1f}s wall ({run.timings()})"
    )
    return run


def test_scenario_exits_cleanly(emacs_run: Run) -> None:
    emacs_run.check_exited_cleanly()


@pytest.mark.parametrize(
    "name",
    [
        pytest.param("attach", id="eglot-guess-contact-starts-ghostpilot"),
        pytest.param("model", id="model-loads"),
        pytest.param("complete", id="completion-at-point-applies-ai-item"),
        pytest.param("suggest", id="ghost-text-preview-and-accept"),
        pytest.param("docstring", id="docstring-code-action"),
        pytest.param("tested", id="tested-suggestion-code-actions"),
    ],
)
def test_step_passes(emacs_run: Run, name: str) -> None:
    emacs_run.check_step(name)


def test_eglot_manages_the_buffer_with_ghostpilot(emacs_run: Run) -> None:
    facts = emacs_run.facts("attach")
    assert facts["class"] == "ghostpilot-server"
    assert facts["major_mode"] == "python-mode"
    assert facts["ghostpilot_mode"] is True
    assert facts["completionProvider"] and facts["codeActionProvider"]


@pytest.mark.parametrize(
    "step, function",
    [
        pytest.param("complete", "is_odd", id="completion-at-point"),
        pytest.param("suggest", "is_even", id="ghost-text-accept"),
    ],
)
def test_accepted_suggestion_lands_in_its_function(
    emacs_run: Run, step: str, function: str
) -> None:
    facts = emacs_run.facts(step)
    assert facts["newText"].strip(), "the AI item inserts only whitespace"
    assert facts["newText"].strip() in function_source(facts["after"], function)


def test_completion_item_is_labelled_and_acceptance_reported(emacs_run: Run) -> None:
    facts = emacs_run.facts("complete")
    check_labelled_as_ai(facts)
    assert len(facts["accept_arguments"]) == 1, facts["accept_arguments"]


def test_preview_shows_the_suggestion_then_clears(emacs_run: Run) -> None:
    facts = emacs_run.facts("suggest")
    assert facts["preview"].strip() and facts["preview"] in facts["newText"]
    assert facts["preview_cleared"] is True


def test_docstring_code_action_documents_add(emacs_run: Run) -> None:
    facts = emacs_run.facts("docstring")
    assert facts["via"] == "eglot-code-actions", facts
    assert facts["docstring_commands"] == 1, "the command did not go through ghostpilot.el's method"
    check_docstring_action(facts["title"], emacs_run.report["after_accept"], facts["after"], "add")


def test_tested_suggestion_offers_ranked_candidates_as_code_actions(emacs_run: Run) -> None:
    """"Suggest tested implementation" through eglot: ranked candidates with their pass
    counts, code actions "Insert candidate 1: passes N/2 examples", the chosen one in the
    buffer."""
    facts = emacs_run.facts("tested")
    assert facts["count"] >= 1, facts
    assert facts["summary"].startswith(f"{facts['passing']} of {facts['count']} pass 2 docstring examples")
    inserts = [t for t in facts["titles"] if t.startswith("Insert candidate ")]
    assert len(inserts) == facts["count"], facts["titles"]
    assert re.fullmatch(r"Insert candidate 1: passes [0-2]/2 examples.*", inserts[0]), inserts
    assert facts["best"].strip() in facts["after"]
