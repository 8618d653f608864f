"""Over-reliance tracking: accepted AI code, where it went, and whether tests exercise it.

Pure logic lives here; ``lsp_server/features/reliance.py`` is the LSP edge and
``lsp_server/cli/reliance.py`` the command-line one.

- ``spans``: AI-written character spans following text changes.
- ``records``: accepted suggestions (records) per file and the tracker that owns them.
- ``state``: persistence per workspace and re-anchoring after a restart.
- ``functions``: functions of a Python file and the AI-written share of each.
- ``testindex``: static index of pytest files (who references which name).
- ``status``: function status (untested, tested, passing, failing, reviewed) and reports.
- ``runner``: dynamic test runs under coverage.py in the sandbox.
- ``testgen``: prompts and edits for "Generate a test for this function".
"""
