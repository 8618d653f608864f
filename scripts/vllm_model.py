"""Convert a GGUF (the embedded Gemma 3 270M) into the Hugging Face folder vLLM serves.

vLLM's own GGUF loader needs CUDA, so on a CPU-only machine the weights are dequantised by
``transformers`` and written as safetensors with the tokenizer. Run with the vLLM venv's
Python (it has torch, transformers and gguf), from scripts/setup-vllm.sh:

    .venv-vllm/bin/python scripts/vllm_model.py GGUF OUT_DIR [--dtype bfloat16|float16|float32]

Idempotent: OUT_DIR keeps a stamp naming the GGUF (size, modification time) and the
dtype; a folder with the same stamp is left as it is. The folder is written beside OUT_DIR
first and renamed into place, so an interrupted run never leaves a half-written model.
Prints OUT_DIR.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

STAMP = "ghostpilot-source.json"
# Bumped when the conversion changes, so that folders written before are converted again.
CONVERTER = 2
DTYPES = ("bfloat16", "float16", "float32")


def stamp_for(gguf: Path, dtype: str) -> dict[str, object]:
    info = gguf.stat()
    return {"gguf": gguf.name, "size": info.st_size, "mtime_ns": info.st_mtime_ns, "dtype": dtype,
            "converter": CONVERTER}  # fmt: skip


def gguf_flag(gguf: Path, key: str) -> bool:
    from gguf import GGUFReader

    field = GGUFReader(gguf).fields.get(key)
    return bool(field.contents()) if field is not None else False


def is_current(out: Path, stamp: dict[str, object]) -> bool:
    try:
        return bool(json.loads((out / STAMP).read_text()) == stamp)
    except (OSError, ValueError):
        return False


def convert(gguf: Path, out: Path, dtype: str) -> Path:
    stamp = stamp_for(gguf, dtype)
    if is_current(out, stamp):
        return out
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    work = out.with_name(out.name + ".partial")
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    # transformers drops the GGUF's add-BOS flag: without it vLLM's /tokenize (and a text
    # prompt) would go without the <bos> that Gemma needs.
    tokenizer.add_bos_token = gguf_flag(gguf, "tokenizer.ggml.add_bos_token")
    model = AutoModelForCausalLM.from_pretrained(
        gguf.parent, gguf_file=gguf.name, dtype=getattr(torch, dtype)
    )
    # The weights are dequantised: nothing of the GGUF quantisation is left to describe.
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    model.save_pretrained(work, safe_serialization=True)
    tokenizer.save_pretrained(work)
    (work / STAMP).write_text(json.dumps(stamp) + "\n")
    shutil.rmtree(out, ignore_errors=True)
    work.rename(out)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("gguf", type=Path)
    parser.add_argument("out", type=Path)
    parser.add_argument("--dtype", choices=DTYPES, default="bfloat16")
    args = parser.parse_args(argv)
    if not args.gguf.is_file():
        print(f"vllm_model: no GGUF at {args.gguf}", file=sys.stderr)
        return 2
    try:
        print(convert(args.gguf.resolve(), args.out.expanduser().resolve(), args.dtype))
    except ImportError as error:
        print(f"vllm_model: run with the vLLM venv's Python ({error})", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
