"""Tested suggestions: draw k bodies, run the user's own examples and tests on each in
the sandbox, rank them (passes all, then most, then mean log-prob).

- :mod:`target`: the function at the cursor, its docstring's examples, the workspace
  tests that reference it (:func:`target.checks_for`);
- :mod:`checks`: one candidate's sandboxed run -> :class:`checks.Evidence`;
- :mod:`rank`: formatting-only duplicates dropped (AST), the ranking key;
- :mod:`pipeline`: :func:`pipeline.test_candidates`, which the editor feature
  (``features/tested.py``) and ``ghostpilot eval humaneval --rank doctest`` both call.

Drawing the candidates is the engine's (``CompletionEngine.candidates``), which decodes
the k samples as one llama.cpp batch (``backends/batch.py``).
"""

from lsp_server.tested.checks import Checks, Evidence, check_candidate
from lsp_server.tested.pipeline import TestedOutcome, candidate_title, test_candidates
from lsp_server.tested.rank import Candidate, dedupe, rank_key, ranked
from lsp_server.tested.target import Target, checks_for, function_at

__all__ = ["Candidate", "Checks", "Evidence", "Target", "TestedOutcome", "candidate_title",
           "check_candidate", "checks_for", "dedupe", "function_at", "rank_key", "ranked",
           "test_candidates"]
