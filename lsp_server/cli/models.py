"""``ghostpilot models list|pull|remove|verify``: the registry's models, downloading one
from the Hugging Face Hub (``backends/download.py``), removing one, checking a GGUF file."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from lsp_server.backends import download
from lsp_server.backends.fim import detect_template
from lsp_server.backends.gguf import GGUFError
from lsp_server.backends.registry import load_registry, models_dir, verify
from lsp_server.config import default_threads


def add_parser(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    parser = subparsers.add_parser("models", help="list known models, verify a GGUF file")
    commands = parser.add_subparsers(dest="models_command", metavar="SUBCOMMAND")
    listing = commands.add_parser(
        "list", help="known models: size, licence, HumanEval, installed; the one for this machine"
    )
    listing.add_argument("--json", action="store_true")
    listing.set_defaults(func=run_list)
    pulling = commands.add_parser(
        "pull", help="download a model from the Hugging Face Hub ($HF_ENDPOINT) and verify it"
    )
    pulling.add_argument("model", help="a registry name (models list) or OWNER/REPO/FILE.gguf")
    pulling.add_argument("--revision", default="main", help="branch, tag or commit (REPO/FILE pulls)")
    pulling.add_argument("--yes", "-y", action="store_true", help="accept the model's licence")
    pulling.set_defaults(func=run_pull)
    removing = commands.add_parser("remove", help="delete a downloaded model and its partial download")
    removing.add_argument("model", help="a registry name or a .gguf file name in the models directory")
    removing.set_defaults(func=run_remove)
    checking = commands.add_parser(
        "verify", help="check a GGUF file's header, hyperparameters and sha256"
    )
    checking.add_argument("path")
    checking.add_argument("--no-sha", action="store_true", help="skip hashing the file")
    checking.add_argument(
        "--load", action="store_true",
        help="also load it with llama.cpp in a separate process and evaluate a few tokens",
    )  # fmt: skip
    checking.set_defaults(func=run_verify)
    parser.set_defaults(func=lambda _: (parser.print_help(sys.stderr), 2)[1])


def run_list(args: argparse.Namespace) -> int:
    from lsp_server.backends.catalog import catalog, detect_machine, recommend

    entries = load_registry()
    machine = detect_machine()
    recommendation = recommend(entries, machine)
    rows = catalog(entries, recommendation)
    if args.json:
        print(json.dumps({
            "modelsDir": str(models_dir()), "machine": machine.__dict__,
            "recommended": recommendation.name if recommendation else None,
            "models": [row.to_json() for row in rows],
        }, indent=2))  # fmt: skip
        return 0
    print(f"models directory: {models_dir()}")
    print(f"{'name':<20} {'size':>9}  {'FIM':<9} {'HumanEval':>10}  {'installed':<9}  licence")
    for row in rows:
        entry = row.entry
        size = _size_text(row.size_bytes, row.size_exact)
        score = f"{entry.humaneval:.1f} %" if entry.humaneval is not None else "not listed"
        mark = "*" if row.recommended else " "
        installed = ("embedded" if entry.embedded and row.installed else "shipped" if entry.is_adapter
                     and row.installed else "derived" if entry.is_derived and row.installed
                     else "yes" if row.installed else "no")
        print(f"{entry.name:<19}{mark} {size:>9}  {entry.fim:<9} {score:>10}  {installed:<9}  {entry.license}")
    for row in rows:
        if row.entry.is_derived:
            print(f"\n{row.entry.name}: {row.entry.derived_from} with the tokens of {row.entry.vocab} only, "
                  f"written into the models directory at first use (sha256 {row.entry.sha256[:12]}…)")
        if row.entry.is_adapter:
            print(f"\n{row.entry.name}: the LoRA adapter {row.entry.file} (sha256 {row.entry.sha256[:12]}…) "
                  f"on {row.entry.base} (sha256 {(row.entry.base_sha256 or '?')[:12]}…)"
                  + (f"; data card: {row.entry.data_card}" if row.entry.data_card else ""))
    if recommendation:
        print(f"\n* recommended: {recommendation.name}: {recommendation.reason}")
        if not any(row.recommended and row.installed for row in rows):
            print(f"  get it with: ghostpilot models pull {recommendation.name}")
    print("\nHumanEval: published pass@1 of the base model, from:")
    for entry in entries:
        print(f"  {entry.name}: {entry.humaneval_source or 'no figure on the model card'}")
    print("~: estimated from the parameter count and quantisation; the Hub's size is used when pulling")
    return 0


def _size_text(size: int | None, exact: bool) -> str:
    if size is None:
        return "?"
    text = download.format_bytes(size)
    return text if exact else "~" + text


def run_pull(args: argparse.Namespace) -> int:
    try:
        spec = download.parse_spec(args.model, revision=args.revision)
    except download.PullError as error:
        print(f"ghostpilot models pull: {error}", file=sys.stderr)
        return 2
    if not _licence_accepted(spec, args.yes):
        return 2
    try:
        remote = download.fetch_metadata(spec)
    except download.PullError as error:
        print(f"ghostpilot models pull: {error}", file=sys.stderr)
        return 1
    destination = models_dir()
    size = download.format_bytes(remote.size) if remote.size is not None else "size unknown"
    print(f"{spec.title}: {spec.local_name} ({size}) from {download.endpoint()}/{spec.repo} "
          f"into {destination}", file=sys.stderr)
    bar = _ByteBar(spec.local_name)
    try:
        result = download.pull(spec, destination, remote=remote, on_progress=bar.update)
    except KeyboardInterrupt:
        bar.close()
        kept = sum(path.stat().st_size for path in download.partial_files(destination, spec.local_name))
        print(f"\ninterrupted: {download.format_bytes(kept)} kept; run the same command to resume",
              file=sys.stderr)
        return 130
    except download.PullError as error:
        bar.close()
        print(f"ghostpilot models pull: {error}", file=sys.stderr)
        return 1
    bar.close()
    if result.already_installed:
        print(f"{spec.name} is already installed and verified: {result.path}")
    else:
        resumed = (f", resumed at {download.format_bytes(result.resumed_from)}"
                   if result.resumed_from else "")
        print(f"installed {result.path} ({download.format_bytes(result.size)}{resumed}; "
              f"sha256 {result.sha256} verified)")
    use = spec.name if spec.entry else str(result.path)
    print(f'use it: set the model setting to "{use}" (editors: ghostpilot.model), or '
          f"ghostpilot complete --model {use} FILE:LINE:COL")
    return 0


def _licence_accepted(spec: download.PullSpec, yes: bool) -> bool:
    """Models under a restrictive or gated licence show it and need a yes."""
    entry = spec.entry
    if entry is None or not entry.needs_license_acceptance:
        return True
    where = f" ({entry.license_url})" if entry.license_url else ""
    print(f"{entry.display_name} is licensed under the {entry.license}{where}.", file=sys.stderr)
    if yes:
        print("licence accepted (--yes)", file=sys.stderr)
        return True
    if not sys.stdin.isatty():
        print("ghostpilot models pull: read the licence, then run again with --yes to accept it",
              file=sys.stderr)
        return False
    answer = input("Accept the licence and download? [y/N] ").strip().lower()
    return answer in ("y", "yes")


class _ByteBar:
    """tqdm on stderr: bytes, percentage, speed and time left."""

    def __init__(self, label: str) -> None:
        self.label = label
        self._bar: Any = None

    def update(self, done: int, total: int | None) -> None:
        if self._bar is None:
            from tqdm import tqdm

            self._bar = tqdm(total=total, initial=done, unit="B", unit_scale=True,
                             desc=self.label, file=sys.stderr, mininterval=0.5, dynamic_ncols=True)
            return
        self._bar.update(done - self._bar.n)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None


def run_remove(args: argparse.Namespace) -> int:
    try:
        removed = download.remove(args.model, models_dir())
    except download.PullError as error:
        print(f"ghostpilot models remove: {error}", file=sys.stderr)
        return 1
    for path in removed:
        print(f"removed {path}")
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
    if args.load:
        from lsp_server.backends.probe import probe

        loaded = probe(args.path, n_threads=default_threads())
        if not loaded.ok:
            print(f"ghostpilot models verify: {loaded.message}", file=sys.stderr)
            return 1
        print(f"  llama.cpp: loads and evaluates ({loaded.seconds:.1f} s, in a separate process)")
    return 0
