"""``ghostpilot reliance report [WORKSPACE] [--json]``: every AI-written function and its status.

Reads the state the server saved for the workspace (XDG state directory or
``.ghostpilot/``; the newer of the two unless ``--state`` says which), re-anchors the
records to the files on disk, indexes the test files and prints the report. Read-only:
it never writes the state or the workspace.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from lsp_server.reliance import state as st
from lsp_server.reliance.status import render
from lsp_server.reliance.workspace import RelianceWorkspace


def add_parser(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    parser = subparsers.add_parser("reliance", help="over-reliance report of accepted AI code")
    commands = parser.add_subparsers(dest="reliance_command", metavar="COMMAND")
    report = commands.add_parser("report", help="AI-written functions and whether tests exercise them")
    report.add_argument("workspace", nargs="?", default=".", help="workspace folder (default: .)")
    report.add_argument("--json", action="store_true", help="print JSON")
    report.add_argument(
        "--state", choices=("auto", *st.LOCATIONS), default="auto",
        help="where the server keeps its state (default: whichever exists, the newer)",
    )
    report.set_defaults(func=run_report)
    parser.set_defaults(func=lambda args: _usage(parser))


def _usage(parser: argparse.ArgumentParser) -> int:
    parser.print_help(sys.stderr)
    return 2


def run_report(args: argparse.Namespace) -> int:
    root = Path(args.workspace).expanduser()
    if not root.is_dir():
        print(f"ghostpilot reliance report: {args.workspace} is not a directory", file=sys.stderr)
        return 2
    root = root.resolve()
    if args.state == "auto":
        state_file = st.find_state(root) or st.state_path(root, "xdg")
        location = "workspace" if state_file == st.state_path(root, "workspace") else "xdg"
    else:
        location = args.state
        state_file = st.state_path(root, location)
    workspace = RelianceWorkspace(root, location, state_file)
    workspace.load(move_aside=False)
    workspace.scan_tests()
    report = workspace.report()
    if args.json:
        print(report.to_json_text())
    else:
        print(render(report))
        print(f"(state: {state_file}{'' if state_file.exists() else ', none saved yet'})")
    return 0
