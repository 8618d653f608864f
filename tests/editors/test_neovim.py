"""Neovim end to end: the shipped Lua setup (editors/neovim) in headless Neovim 0.7+,
attached to the real ``ghostpilot serve`` with the real embedded model.

The scenario itself is tests/editors/neovim/test_init.lua; this wrapper writes a sample
project, runs ``nvim --headless -u test_init.lua`` once with a timeout, and checks its
exit code and the JSON report it writes (step outcomes and buffer texts). Without nvim
the tests skip, except under CI=true, where that is a failure.
"""

from __future__ import annotations

import re

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
    require_editor,
    run_editor,
    server_executable,
)

pytestmark = [pytest.mark.editor, pytest.mark.e2e]

SCENARIO = REPO / "tests" / "editors" / "neovim" / "test_init.lua"
PLUGIN = REPO / "editors" / "neovim"

# <COMPLETE> and <DOCSTRING> mark cursor positions and are removed. The completion
# point comes after the docstring point, so the inserted text does not move it.
SAMPLE = SAMPLE_START + "<COMPLETE>\n"


@pytest.fixture(scope="module")
def nvim_run(tmp_path_factory: pytest.TempPathFactory) -> Run:
    nvim = require_editor("nvim", "apt-get install neovim, or scripts/setup-editors-apt.sh")
    server = server_executable()
    project = make_project(tmp_path_factory, "nvim-project", SAMPLE)
    env = project.env(PLUGIN, server, GHOSTPILOT_STEP_TIMEOUT_MS=str(STEP_TIMEOUT_S * 1000))
    command = [nvim, "--headless", "-i", "NONE", "-u", str(SCENARIO)]
    run = run_editor(command, env, project)
    run.save("neovim-report.json")
    print(f"\nneovim {run.report.get('nvim')}: {run.seconds:.1f}s wall ({run.timings()})")
    return run


def test_scenario_exits_cleanly(nvim_run: Run) -> None:
    nvim_run.check_exited_cleanly()


@pytest.mark.parametrize(
    "name",
    [
        pytest.param("attach", id="attach-to-ghostpilot-serve"),
        pytest.param("model", id="model-loads"),
        pytest.param("complete", id="completion-offers-ai-item"),
        pytest.param("accept", id="accept-applies-text-edit"),
        pytest.param("docstring", id="docstring-code-action"),
        pytest.param("tested", id="tested-suggestion-code-actions"),
        pytest.param("shutdown", id="server-stops"),
    ],
)
def test_step_passes(nvim_run: Run, name: str) -> None:
    nvim_run.check_step(name)


def test_ai_item_is_labelled_previewed_and_tracked(nvim_run: Run) -> None:
    facts = nvim_run.facts("complete")
    assert facts["newText"].strip(), "the AI item inserts only whitespace"
    check_labelled_as_ai(facts)
    assert facts["command"]["command"] == "ghostpilot.accept"
    assert len(facts["command"]["arguments"]) == 1, facts["command"]
    assert facts["preview_shown"] and facts["preview_extmarks"] >= 1


def test_accepted_suggestion_is_in_the_buffer(nvim_run: Run) -> None:
    complete = nvim_run.facts("complete")
    accept = nvim_run.facts("accept")
    original = nvim_run.report["original"].splitlines(keepends=True)
    after = accept["after_accept"]
    start, end = complete["range"]["start"], complete["range"]["end"]
    prefix = "".join(original[: start["line"]]) + original[start["line"]][: start["character"]]
    suffix = original[end["line"]][end["character"] :] + "".join(original[end["line"] + 1 :])
    assert after == prefix + complete["newText"] + suffix
    assert function_source(after, "is_even").count(complete["newText"].strip()) == 1
    lines = complete["newText"].split("\n")
    end_column = (start["character"] if len(lines) == 1 else 0) + len(lines[-1])
    assert accept["cursor"] == [start["line"] + len(lines), end_column], (
        "cursor not after the insertion"
    )
    assert accept["preview_cleared"]
    assert accept["accept_result"], "the server answered nothing to ghostpilot.accept"


def test_docstring_code_action_documents_add(nvim_run: Run) -> None:
    facts = nvim_run.facts("docstring")
    assert facts["via"] == "codeAction", facts
    check_docstring_action(facts["title"], nvim_run.report["after_accept"], facts["after_docstring"], "add")


def test_tested_suggestion_offers_ranked_candidates_as_code_actions(nvim_run: Run) -> None:
    """"Suggest tested implementation": the candidates come back ranked with their pass
    counts, the code actions say "Insert candidate 1: passes N/2 examples", and the
    chosen one lands in the buffer."""
    facts = nvim_run.facts("tested")
    candidates = facts["candidates"]
    assert candidates, facts
    assert facts["summary"].startswith(f"{facts['passing']} of {len(candidates)} pass 2 docstring examples")
    inserts = [t for t in facts["titles"] if t.startswith("Insert candidate ")]
    assert len(inserts) == len(candidates)
    assert re.fullmatch(r"Insert candidate 1: passes [0-2]/2 examples.*", inserts[0]), inserts
    assert candidates[0]["text"].strip() in facts["after_tested"]
