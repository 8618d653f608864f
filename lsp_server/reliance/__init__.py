"""Over-reliance tracking: accepted AI code, where it went, and whether tests exercise it.

Everything here is free of LSP; ``lsp_server/features/reliance_diagnostics.py`` and
``reliance_commands.py`` are the LSP edge and ``lsp_server/cli/reliance.py`` the
command-line one.

- ``session``: the server's workspaces, editor events, saving, run and test plans; it
  reports back through a ``changed(uri)`` callback.
- ``workspace``: one workspace's records, test index, run results and state file.
- ``settings``: the typed ``reliance.*`` settings and their one parser.
- ``spans``: AI-written character spans following text changes.
- ``records``: accepted suggestions (records) per file and the tracker that owns them.
- ``state``: persistence per workspace and re-anchoring after a restart.
- ``functions``: functions of a Python file and the AI-written share of each.
- ``testindex``: static index of pytest files (who references which name).
- ``status``: function status (untested, tested, passing, failing, reviewed) and reports.
- ``runner``: dynamic test runs under coverage.py in the sandbox, and how each ended.
- ``testgen``: prompts and edits for "Generate a test for this function".
"""
