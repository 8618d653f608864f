"""``ghostpilot models list`` and ``ghostpilot models verify PATH``."""

from __future__ import annotations

import argparse
import json
import sys

from lsp_server.backends.gguf import GGUFError
from lsp_server.backends.registry import ModelNotFound, load_registry, models_dir, resolve, verify
from lsp_server.prompts.fim import detect_template


def add_parser(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    parser = subparsers.add_parser("models", help="list known models, verify a GGUF file")
    commands = parser.add_subparsers(dest="models_command", metavar="SUBCOMMAND")
    listing = commands.add_parser("list", help="known models and whether each is available")
    listing.add_argument("--json", action="store_true")
    listing.set_defaults(func=run_list)
    checking = commands.add_parser("verify", help="check a GGUF file's header and sha256")
    checking.add_argument("path")
    checking.add_argument("--no-sha", action="store_true", help="skip hashing the file")
    checking.set_defaults(func=run_verify)
    parser.set_defaults(func=lambda _: (parser.print_help(sys.stderr), 2)[1])


def run_list(args: argparse.Namespace) -> int:
    rows = []
    for entry in load_registry():
        try:
            path = str(resolve(entry.name).path)
        except ModelNotFound:
            path = None
        rows.append({**entry.__dict__, "path": path})
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    print(f"models directory: {models_dir()}")
    print(f"{'name':<22} {'FIM':<10} {'ctx':>6}  {'available':<9}  licence / source")
    for row in rows:
        status = "yes" if row["path"] else "no"
        print(f"{row['name']:<22} {row['fim']:<10} {row['n_ctx']:>6}  {status:<9}  "
              f"{row['license']} / {row['source']}")
    return 0


def run_verify(args: argparse.Namespace) -> int:
    try:
        result = verify(args.path, check_sha=not args.no_sha)
    except GGUFError as error:
        print(f"ghostpilot models verify: {error}", file=sys.stderr)
        return 1
    header = result.header
    template = detect_template(header.metadata, header.special_tokens)
    print(f"{args.path}: GGUF v{header.version}, {header.tensor_count} tensors, "
          f"{header.file_size} bytes")
    print(f"  architecture: {header.architecture or '?'}; name: {header.name or '?'}; "
          f"vocabulary: {header.vocab_size} tokens")
    print(f"  FIM template: {template.name if template else 'none (prefix-only prompts)'}")
    if result.sha_ok is True:
        print(f"  sha256: {result.sha256} (matches the registry)")
    elif result.expected_sha256 is None:
        print("  sha256: not in the registry (header checked only)")
    return 0
