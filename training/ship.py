"""Ship an exported adapter: copy it into ``models/adapters/`` and write its registry entry.

    python3 -m training.ship artifacts/train/gemma3-270m-python-lora.gguf

Torch-free. The entry (``gemma3-270m-python`` by default) names the base registry model
and pins both files' sha256s; running it again replaces the entry and the file, so the
registry never holds two entries of one name. The data card is copied beside the adapter.
Whether the entry becomes the default is decided on the measured results (training/README.md),
not here.
"""

from __future__ import annotations

import argparse
import re
import shutil
from pathlib import Path

from lsp_server.backends.gguf import GGUFError, read_header, sha256_of
from lsp_server.backends.registry import ADAPTERS_DIR, REGISTRY_PATH, find_entry, load_registry

ROOT = Path(__file__).resolve().parents[1]
DATA_CARD = ROOT / "training" / "DATA_CARD.md"


def entry_text(name: str, file: str, sha256: str, base: str, base_sha256: str, card: str,
               n_ctx: int, license: str, license_url: str | None) -> str:
    lines = [
        "[[model]]",
        f'name = "{name}"',
        'title = "Gemma 3 270M + Python LoRA (Codex-S style)"',
        ('description = "The embedded Gemma 3 270M with a LoRA adapter fine-tuned on correct, '
         'standalone Python functions (training/). Shipped in this repository."'),
        'source = "this repository: training/ (python -m training.ship)"',
        f'file = "{file}"',
        f'sha256 = "{sha256}"',
        f'base = "{base}"',
        f'base_sha256 = "{base_sha256}"',
        f'data_card = "{card}"',
        'fim = "none"',
        f"n_ctx = {n_ctx}",
        f'license = "{license}"',
    ]
    if license_url:
        lines.append(f'license_url = "{license_url}"')
    return "\n".join(lines) + "\n"


def replace_entry(registry: str, name: str, block: str) -> str:
    """``registry``'s text with the ``[[model]]`` block named ``name`` replaced by
    ``block`` (appended when there is none); other entries and comments are kept."""
    parts = re.split(r"(?m)^(?=\[\[model\]\]\s*$)", registry)
    named = re.compile(rf'(?m)^name\s*=\s*"{re.escape(name)}"\s*$')
    kept = [part for part in parts if not (part.startswith("[[model]]") and named.search(part))]
    text = "".join(kept).rstrip("\n") + "\n\n" + block
    return text


def ship(adapter: Path, *, name: str, base: str, registry: Path, adapters: Path,
         card: Path | None) -> str:
    header = read_header(adapter)
    if header.metadata.get("general.type") != "adapter":
        raise GGUFError(f"{adapter}: not an adapter GGUF")
    entries = load_registry(registry)
    base_entry = find_entry(base, entries)
    if base_entry is None or base_entry.is_adapter:
        raise SystemExit(f"no base model {base!r} in {registry}")
    adapters.mkdir(parents=True, exist_ok=True)
    file = f"{name}-lora.gguf"
    target = adapters / file
    if adapter.resolve() != target.resolve():
        shutil.copyfile(adapter, target)
    card_name = ""
    if card is not None and card.exists():
        card_target = adapters / f"{name}.DATA_CARD.md"
        shutil.copyfile(card, card_target)
        card_name = card_target.relative_to(registry.parent.parent).as_posix() \
            if card_target.is_relative_to(registry.parent.parent) else str(card_target)
    block = entry_text(name, file, sha256_of(target), base, base_entry.sha256, card_name,
                       base_entry.n_ctx, base_entry.license, base_entry.license_url)
    registry.write_text(replace_entry(registry.read_text(), name, block))
    return block


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("adapter", type=Path, help="the exported adapter GGUF (training.export)")
    p.add_argument("--name", default="gemma3-270m-python")
    p.add_argument("--base", default="gemma3-270m")
    p.add_argument("--registry", type=Path, default=REGISTRY_PATH)
    p.add_argument("--adapters", type=Path, default=ADAPTERS_DIR)
    p.add_argument("--card", type=Path, default=DATA_CARD)
    args = p.parse_args(argv)
    print(ship(args.adapter, name=args.name, base=args.base, registry=args.registry,
               adapters=args.adapters, card=args.card))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
