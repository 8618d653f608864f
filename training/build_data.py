"""Build the Codex-S training set and its data card.

    .venv/bin/python -m training.build_data [--out artifacts/train/data] [--card training/DATA_CARD.md]

Steps, each counted for the data card: fetch the pinned sdists (training/manifest.toml);
keep permissive licences; extract documented standalone functions with ``>>>``
examples (training/extract.py); drop exact duplicates; drop any function sharing a
10-gram with HumanEval or HumanEval-Infilling (training/decontam.py); run the examples
in the sandbox and keep the functions that pass (training/verify.py); split train /
validation by source file; write ``train.jsonl`` and ``val.jsonl``. Torch-free.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import time
from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from training import decontam, extract, sources, verify

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_OUT = ROOT / "artifacts" / "train" / "data"
DEFAULT_CARD = Path(__file__).with_name("DATA_CARD.md")
CACHE = Path(os.environ.get("GHOSTPILOT_CACHE", Path.home() / ".cache" / "ghostpilot"))


def split_of(source: str, path: str, val_percent: int) -> str:
    """``"val"`` or ``"train"`` for every function of one source file (no leakage of a
    file's functions across the split), stable across runs and machines."""
    digest = hashlib.sha256(f"{source}/{path}".encode()).digest()
    return "val" if int.from_bytes(digest[:4], "big") % 100 < val_percent else "train"


def dedupe(candidates: Iterable[extract.Candidate]) -> tuple[list[extract.Candidate], int]:
    """First occurrence of each function, compared without comments or layout."""
    seen: set[str] = set()
    kept, dropped = [], 0
    for candidate in candidates:
        key = extract.strip_comments(candidate.signature + candidate.body)
        if key in seen:
            dropped += 1
            continue
        seen.add(key)
        kept.append(candidate)
    return kept, dropped


def decontaminate(candidates: Iterable[extract.Candidate], index: decontam.NgramIndex
                  ) -> tuple[list[extract.Candidate], list[tuple[extract.Candidate, dict[str, str]]]]:
    kept, dropped = [], []
    for candidate in candidates:
        found = index.matches(candidate.code)
        if found:
            dropped.append((candidate, found))
        else:
            kept.append(candidate)
    return kept, dropped


def record(candidate: extract.Candidate, version: str, licence: str) -> dict[str, object]:
    return {"id": f"{candidate.source}/{candidate.path}:{candidate.qualname}",
            "source": candidate.source, "version": version, "licence": licence,
            "path": candidate.path, "qualname": candidate.qualname,
            "prompt": candidate.prompt, "body": candidate.body}


@dataclass
class SourceReport:
    source: sources.Source
    licence: str | None = None
    status: str = "used"
    files: int = 0
    functions: int = 0
    rejected: Counter[str] = field(default_factory=Counter)
    extracted: int = 0
    final_train: int = 0
    final_val: int = 0


def gather(srcs: list[sources.Source], archives: dict[str, Path | str]
           ) -> tuple[list[SourceReport], list[extract.Candidate]]:
    reports, found = [], []
    for src in srcs:
        report = SourceReport(src)
        reports.append(report)
        if src.name == "stdlib":
            files: Iterable[tuple[str, str]] = sources.stdlib_files()
            report.licence = "PSF"
        else:
            archive = archives.get(src.name)
            if not isinstance(archive, Path):
                report.status = str(archive or "not fetched")
                continue
            members = sources.read_archive(archive)
            report.licence = sources.sdist_licence(members)
            if report.licence not in sources.ALLOWED_LICENCES:
                report.status = ("skipped: licence not MIT, BSD, Apache-2.0 or PSF "
                                 "(or not stated)")
                continue
            if report.licence != sources.normalise_licence(src.declared_licence):
                report.status = (f"skipped: sdist says {report.licence}, manifest says "
                                 f"{src.declared_licence}")
                continue
            files = ((p, t) for p, t in sorted(members.items()) if sources.is_code_file(p))
        for path, text in files:
            report.files += 1
            for item in extract.extract(text, source=src.name, path=path):
                report.functions += 1
                if isinstance(item, extract.Rejected):
                    report.rejected[item.reason] += 1
                else:
                    report.extracted += 1
                    found.append(item)
    return reports, found


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m training.build_data", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--card", type=Path, default=DEFAULT_CARD)
    parser.add_argument("--manifest", type=Path, default=sources.MANIFEST)
    parser.add_argument("--sdists", type=Path, default=CACHE / "train-sdists",
                        help="where the sdists are downloaded (once)")
    parser.add_argument("--infilling-dir", type=Path, default=decontam.INFILLING_DIR)
    parser.add_argument("--val-percent", type=int, default=10)
    parser.add_argument("--workers", type=int, default=2, help="sandbox runs at once")
    parser.add_argument("--model", default=None,
                        help="GGUF whose tokenizer counts the tokens (default: the embedded model)")
    args = parser.parse_args(argv)

    started = time.time()
    srcs = [sources.stdlib_source(), *sources.load_manifest(args.manifest)]
    log(f"fetching {len(srcs) - 1} sdists into {args.sdists}")
    archives = sources.fetch([s for s in srcs if s.name != "stdlib"], args.sdists)
    reports, extracted = gather(srcs, archives)
    log(f"{len(extracted)} standalone documented functions with examples")

    unique, duplicates = dedupe(extracted)
    index = decontam.build_index([*decontam.humaneval_texts(),
                                  *decontam.infilling_texts(args.infilling_dir)])
    clean, contaminated = decontaminate(unique, index)
    log(f"{duplicates} duplicates, {len(contaminated)} contaminated; "
        f"running {len(clean)} doctests in the sandbox")
    cache = verify.VerdictCache(args.out / "verdicts.jsonl")
    verdicts = verify.check_all(clean, cache, workers=args.workers,
                                progress=lambda d, t: log(f"  sandbox {d}/{t}") if d % 50 == 0 else None)
    passed = [c for c, v in zip(clean, verdicts) if v.passed]
    failures = Counter(_failure_kind(v.reason) for v in verdicts if not v.passed)

    by_name = {r.source.name: r for r in reports}
    rows: dict[str, list[dict[str, object]]] = defaultdict(list)
    for candidate in passed:
        report = by_name[candidate.source]
        split = split_of(candidate.source, candidate.path, args.val_percent)
        rows[split].append(record(candidate, report.source.version, report.licence or ""))
        if split == "val":
            report.final_val += 1
        else:
            report.final_train += 1
    args.out.mkdir(parents=True, exist_ok=True)
    for split in ("train", "val"):
        with (args.out / f"{split}.jsonl").open("w", encoding="utf-8") as fh:
            for row in rows[split]:
                fh.write(json.dumps(row, ensure_ascii=False) + "\n")
    tokens = count_tokens(rows, args.model)
    card = data_card(reports, extracted=len(extracted), duplicates=duplicates,
                     contaminated=contaminated, index=index,
                     benchmark_files=decontam.benchmark_files(args.infilling_dir),
                     verdict_count=len(clean), passed=len(passed), failures=failures,
                     rows=rows, tokens=tokens, val_percent=args.val_percent)
    args.card.write_text(card, encoding="utf-8")
    (args.out / "DATA_CARD.md").write_text(card, encoding="utf-8")
    log(f"train {len(rows['train'])}, val {len(rows['val'])} functions; tokens {tokens}; "
        f"{time.time() - started:.0f} s; card: {args.card}")
    return 0


def _failure_kind(reason: str) -> str:
    if "examples failed" in reason:
        return "an example failed"
    return reason.split(" after ")[0] if reason else "unknown"


def count_tokens(rows: dict[str, list[dict[str, object]]], model: str | None
                 ) -> dict[str, dict[str, int]]:
    """Prompt and body tokens per split, with the model's own tokenizer (llama.cpp)."""
    try:
        from llama_cpp import Llama

        from lsp_server.backends.registry import embedded_model_path
    except ImportError:
        return {}
    path = model or str(embedded_model_path())
    vocab = Llama(model_path=path, vocab_only=True, verbose=False)
    out: dict[str, dict[str, int]] = {}
    for split, items in rows.items():
        prompt = sum(len(vocab.tokenize(str(r["prompt"]).encode(), add_bos=True)) for r in items)
        body = sum(len(vocab.tokenize(str(r["body"]).encode(), add_bos=False)) + 1 for r in items)
        out[split] = {"prompt": prompt, "body": body}
    return out


def data_card(reports: list[SourceReport], *, extracted: int, duplicates: int,
              contaminated: list[tuple[extract.Candidate, dict[str, str]]],
              index: decontam.NgramIndex, benchmark_files: list[Path], verdict_count: int,
              passed: int, failures: Counter[str], rows: dict[str, list[dict[str, object]]],
              tokens: dict[str, dict[str, int]], val_percent: int) -> str:
    functions = sum(r.functions for r in reports)
    reasons: Counter[str] = Counter()
    for r in reports:
        reasons.update(r.rejected)
    lines = [
        "# Data card: Codex-S training set for the embedded model",
        "",
        "Generated by `python -m training.build_data` (training/README.md); do not edit by hand.",
        "",
        "Each example is one standalone Python function in the Codex prompt format: the",
        "prompt is its standard-library imports, signature and docstring; the target is its",
        "body (loss on the body tokens and the end-of-text token only).",
        "",
        "## Sources",
        "",
        "| source | version | licence (from the sdist) | status | files | functions | with examples | kept train | kept val |",
        "|---|---|---|---|---:|---:|---:|---:|---:|",
    ]
    for r in reports:
        lines.append(f"| {r.source.name} | {r.source.version} | {r.licence or '?'} | {r.status} "
                     f"| {r.files} | {r.functions} | {r.extracted} | {r.final_train} | {r.final_val} |")
    lines += [
        "",
        "Only MIT, BSD, Apache-2.0 and PSF sources are read; a source whose sdist metadata",
        "disagrees with the manifest is skipped. Tests, docs, examples and vendored copies",
        "are never read.",
        "",
        "## Counts at each filter",
        "",
        "| step | functions left | dropped |",
        "|---|---:|---:|",
        f"| functions and methods in the files read | {functions} | |",
    ]
    left = functions
    for reason in extract.REJECT_ORDER:
        left -= reasons[reason]
        lines.append(f"| {reason} | {left} | {reasons[reason]} |")
    assert left == extracted, (left, extracted)
    left -= duplicates
    lines.append(f"| exact duplicates (ignoring comments and layout) | {left} | {duplicates} |")
    left -= len(contaminated)
    lines.append(f"| 10-gram overlap with HumanEval / HumanEval-Infilling | {left} | {len(contaminated)} |")
    lines.append(f"| docstring examples fail in the sandbox | {passed} | {verdict_count - passed} |")
    lines += ["", "Why the sandboxed examples failed:", ""]
    lines += [f"- {kind}: {count}" for kind, count in failures.most_common()]
    lines += [
        "",
        "## Decontamination",
        "",
        "An n-gram is n consecutive whitespace-separated tokens (`str.split()`), exact and",
        "case-sensitive. A function (imports + signature + docstring + body) is dropped if any",
        "of its 10-grams is a 10-gram of a HumanEval prompt + canonical solution, a HumanEval",
        "test, or a HumanEval-Infilling prompt + solution + suffix.",
        "",
        f"- benchmark texts indexed: {index.documents}, distinct 10-grams: {len(index)}",
    ]
    for path in benchmark_files:
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        lines.append(f"- `{path.name}` sha256 `{digest[:16]}…`")
    lines.append(f"- functions dropped: {len(contaminated)}")
    for candidate, found in contaminated[:40]:
        task, gram = next(iter(found.items()))
        lines.append(f"  - `{candidate.source}/{candidate.path}:{candidate.qualname}` ~ {task}: "
                     f"`{gram[:90]}`")
    if len(contaminated) > 40:
        lines.append(f"  - … and {len(contaminated) - 40} more")
    lines += [
        "",
        "## Split and size",
        "",
        f"Validation: every function of a source file goes to the same split "
        f"(sha256 of `source/path`, {val_percent} % of files), so no file leaks across.",
        "",
        "| split | functions | prompt tokens | body tokens (+ end-of-text) |",
        "|---|---:|---:|---:|",
    ]
    for split in ("train", "val"):
        t = tokens.get(split, {})
        lines.append(f"| {split} | {len(rows[split])} | {t.get('prompt', '?')} | {t.get('body', '?')} |")
    lines += [
        "",
        "Tokens are counted with the embedded model's tokenizer (Gemma 3, through llama.cpp),",
        "each prompt with its BOS token.",
        "",
        "## Not included",
        "",
        "The second tier the issue allows (standalone functions without passing examples that",
        "their package's own tests exercise) is not built yet: it needs each package's test",
        "suite run under coverage. See training/README.md.",
        "",
    ]
    return "\n".join(lines)


def log(message: str) -> None:
    print(f"[build_data] {message}", file=sys.stderr, flush=True)


if __name__ == "__main__":
    raise SystemExit(main())
