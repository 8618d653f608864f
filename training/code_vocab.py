"""Build the kept-token list of a code-vocabulary model (``models/vocab/<name>.npy``).

    python3 -m training.code_vocab                 # gemma3-270m-code from this Python's code
    python3 -m training.code_vocab --check DIR...  # held-out coverage of the shipped list

The kept tokens are those the model's own tokenizer produces on a corpus of Python code:
the standard library and the installed packages (``sysconfig``'s ``stdlib`` and
``purelib``: run it with the project's ``.venv`` Python), plus every control,
user-defined and byte token, then closed under SentencePiece's merges
(:func:`lsp_server.backends.vocab.closed_under_merges`), so that text made of kept tokens
tokenizes as before. ``--check`` reports, for code that was not in the corpus, the share
of tokens the full vocabulary uses that the kept list lacks. Tokenizing the corpus takes
about 10 minutes on 2 cores. Torch-free.
"""

from __future__ import annotations

import argparse
import sys
import sysconfig
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np

from lsp_server.backends.registry import REGISTRY_PATH, embedded_model_path
from lsp_server.backends.vocab import Vocabulary, closed_under_merges, read_vocabulary

VOCAB_DIR = REGISTRY_PATH.parent / "vocab"
DEFAULT_NAME = "gemma3-270m-code"
MAX_FILE_BYTES = 2_000_000  # generated tables, not code
KEEP_TYPES = (4, 6)  # user-defined and byte tokens (llama.cpp's token types)
# Control tokens kept besides those the metadata names (bos, eos, unk, pad); the other
# 6,000-odd control tokens of Gemma's vocabulary are unused.
EXTRA = ("<mask>", "<start_of_turn>", "<end_of_turn>")


def python_files(roots: Iterable[Path], skip: tuple[str, ...] = ()) -> Iterator[Path]:
    for root in roots:
        for path in sorted(root.rglob("*.py")):
            if any(part in skip for part in path.parts):
                continue
            if path.is_file() and path.stat().st_size <= MAX_FILE_BYTES:
                yield path


def default_corpus() -> list[Path]:
    paths = sysconfig.get_paths()
    stdlib, purelib = Path(paths["stdlib"]), Path(paths["purelib"])
    files = list(python_files([stdlib], skip=("site-packages",)))
    return files + list(python_files([purelib]))


def tokenizer(model: Path):  # llama_cpp.Llama, vocabulary only
    from llama_cpp import Llama

    return Llama(str(model), vocab_only=True, verbose=False)


def seen_tokens(model: Path, files: Iterable[Path]) -> tuple[set[int], int, int]:
    """The token ids the model's tokenizer gives the files, and the files' bytes and tokens."""
    llm = tokenizer(model)
    seen: set[int] = set()
    total_bytes = total_tokens = 0
    for path in files:
        data = path.read_bytes()
        ids = llm.tokenize(data, add_bos=False, special=False)
        seen.update(ids)
        total_bytes += len(data)
        total_tokens += len(ids)
    return seen, total_bytes, total_tokens


def kept(seen: set[int], vocabulary: Vocabulary) -> np.ndarray:
    keep = set(seen) | vocabulary.special_ids
    keep.update(i for i, kind in enumerate(vocabulary.types) if int(kind) in KEEP_TYPES)
    keep.update(i for i, raw in enumerate(vocabulary.tokens) if raw.decode(errors="replace") in EXTRA)
    return np.array(sorted(closed_under_merges(keep, vocabulary)), dtype=np.uint32)


def coverage(model: Path, keep: np.ndarray, files: Iterable[Path]) -> tuple[int, int]:
    """How many of the files' tokens (full vocabulary) the kept list lacks, of how many."""
    llm = tokenizer(model)
    inside = np.zeros(llm.n_vocab(), dtype=bool)
    inside[keep] = True
    missing = total = 0
    for path in files:
        ids = np.array(llm.tokenize(path.read_bytes(), add_bos=False, special=False), dtype=np.int64)
        total += len(ids)
        missing += int((~inside[ids]).sum()) if len(ids) else 0
    return missing, total


def argmax_outside(model: Path, keep: np.ndarray, files: Iterable[Path], positions: int) -> tuple[int, int]:
    """Teacher-forced on the files (1,024-token windows, up to ``positions`` tokens): at
    how many positions the full model's most likely next token is not kept, of how many.
    There, greedy decoding with the kept tokens only would write something else."""
    from llama_cpp import Llama

    llm = Llama(str(model), n_ctx=1024, n_batch=512, logits_all=True, verbose=False)
    inside = np.zeros(llm.n_vocab(), dtype=bool)
    inside[keep] = True
    outside = total = 0
    for path in files:
        ids = llm.tokenize(path.read_bytes(), add_bos=True)[:1024]
        if len(ids) < 2:
            continue
        llm.reset()
        llm.eval(ids)
        best = np.asarray(llm.scores[: len(ids)]).argmax(axis=1)
        outside += int((~inside[best]).sum())
        total += len(ids)
        if total >= positions:
            break
    return outside, total


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m training.code_vocab", description=__doc__.split("\n\n")[0])
    parser.add_argument("--name", default=DEFAULT_NAME)
    parser.add_argument("--model", type=Path, help="the full-vocabulary GGUF (default: the embedded one)")
    parser.add_argument("--check", nargs="+", type=Path, metavar="DIR",
                        help="report held-out coverage of the shipped list on these folders' .py files")
    parser.add_argument("--positions", type=int, default=0,
                        help="with --check: also run the full model on this many tokens of them and "
                        "count where its most likely token is not kept")
    args = parser.parse_args(argv)
    model = args.model or embedded_model_path()
    out = VOCAB_DIR / f"{args.name}.npy"
    if args.check:
        keep = np.load(out)
        missing, total = coverage(model, keep, python_files(args.check))
        print(f"{out.name}: {missing} of {total} tokens ({missing / max(total, 1):.3%}) are not kept")
        if args.positions:
            outside, count = argmax_outside(model, keep, python_files(args.check), args.positions)
            print(f"the full model's most likely token is not kept at {outside} of {count} positions "
                  f"({outside / max(count, 1):.3%})")
        return 0
    files = default_corpus()
    seen, size, count = seen_tokens(model, files)
    vocabulary = read_vocabulary(model)
    keep = kept(seen, vocabulary)
    out.parent.mkdir(parents=True, exist_ok=True)
    np.save(out, keep)
    print(f"{out}: {len(keep)} of {len(vocabulary.tokens)} tokens kept ({len(seen)} seen in "
          f"{len(files)} files, {size / 1e6:.1f} MB, {count} tokens)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
