"""The ``ghostpilot`` command line. Each sub-command lives in its own module here and
exposes ``add_parser(subparsers)``, which registers it and sets ``func``."""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

# One place lists every sub-command module, in the order ``--help`` shows them.
SUBCOMMANDS: tuple[str, ...] = (
    "serve",
    "complete",
    "models",
    "doctor",
    "docstring",
    "eval",
    "bench",
    "reliance",
)


def positive_int(text: str) -> int:
    """An argparse type: a whole number above 0."""
    value = int(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text}")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ghostpilot",
        description="Local, offline code completion served over LSP from a GGUF model.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in SUBCOMMANDS:
        module = importlib.import_module(f"lsp_server.cli.{name}")
        module.add_parser(subparsers)
    return parser


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("ghostpilot")
    except PackageNotFoundError:  # run from a checkout that was not installed
        return "(not installed)"


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help(sys.stderr)
        return 2
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        return 130
