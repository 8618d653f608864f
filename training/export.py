"""Turn a trained LoRA adapter into a llama.cpp adapter GGUF, and check it.

    .venv-train/bin/python -m training.export ADAPTER_DIR OUT.gguf [--check]

The converter is ``convert_lora_to_gguf.py`` from the llama.cpp sources vendored in the
llama-cpp-python sdist the product pins (the same llama.cpp that loads the adapter).
The sdist is fetched once by ``scripts/fetch-llama-sdist.sh`` into the project cache
(``~/.cache/ghostpilot/sdist``, shared with scripts/build-llama-server.sh); the few
Python files the converter needs are unpacked beside it.

``--check`` then greedy-decodes one prompt three ways and compares: HF base + LoRA
(here, torch), llama.cpp base + adapter GGUF (the product's venv, ``Llama(model_path=,
lora_path=)``), and llama.cpp base alone. The first two must agree token for token.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CACHE = Path(os.environ.get("GHOSTPILOT_CACHE", Path.home() / ".cache" / "ghostpilot"))
PRODUCT_PYTHON = ROOT / ".venv" / "bin" / "python"
CHECK_PROMPT = '''def is_palindrome(text: str) -> bool:
    """Whether text reads the same backwards, ignoring case.

    >>> is_palindrome("Anna")
    True
    >>> is_palindrome("abc")
    False
    """
'''


def pinned_llama_version() -> str:
    text = (ROOT / "pyproject.toml").read_text(encoding="utf-8")
    found = re.search(r'"llama-cpp-python==([^"]+)"', text)
    return found.group(1) if found else "0.3.36"


def sdist_tarball(version: str) -> Path:
    """The cached llama-cpp-python sdist, fetched by the project's script if missing."""
    cached = CACHE / "sdist" / f"llama_cpp_python-{version}.tar.gz"
    if cached.exists():
        return cached
    script = ROOT / "scripts" / "fetch-llama-sdist.sh"
    env = {**os.environ, "LLAMA_CPP_PYTHON_VERSION": version}
    if script.exists():
        out = subprocess.run(["bash", str(script)], capture_output=True, text=True, env=env,
                             check=False)
        if out.returncode == 0 and Path(out.stdout.strip()).exists():
            return Path(out.stdout.strip())
        raise RuntimeError(f"fetch-llama-sdist.sh failed: {out.stderr.strip()[-500:]}")
    cached.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run([sys.executable, "-m", "pip", "download", "--quiet", "--no-deps",
                    "--no-binary", ":all:", f"llama-cpp-python=={version}", "-d",
                    str(cached.parent)], check=True)
    return cached


def converter(version: str | None = None) -> Path:
    """``convert_lora_to_gguf.py`` with the modules it imports, unpacked once."""
    version = version or pinned_llama_version()
    dest = CACHE / f"llama.cpp-{version}" / "convert"
    script = dest / "convert_lora_to_gguf.py"
    if script.exists():
        return script
    tarball = sdist_tarball(version)
    prefix = f"llama_cpp_python-{version}/vendor/llama.cpp/"
    wanted = ("convert_lora_to_gguf.py", "convert_hf_to_gguf.py", "conversion/", "gguf-py/")
    tmp = dest.with_name("convert.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    with tarfile.open(tarball) as tf:
        for member in tf.getmembers():
            if not member.name.startswith(prefix):
                continue
            rel = member.name[len(prefix):]
            if member.isfile() and rel.startswith(wanted):
                target = tmp / rel
                target.parent.mkdir(parents=True, exist_ok=True)
                handle = tf.extractfile(member)
                if handle is not None:
                    target.write_bytes(handle.read())
    if not (tmp / "convert_lora_to_gguf.py").exists():
        raise RuntimeError(f"no convert_lora_to_gguf.py in {tarball}")
    tmp.rename(dest)
    return script


# The public id of the model the embedded GGUF is a quantisation of: the adapter's
# general.base_model metadata names it (PEFT records the local fp32 copy's path instead).
BASE_MODEL_ID = "google/gemma-3-270m"


def export(adapter: Path, base: Path, out: Path, outtype: str = "f16") -> Path:
    """Run the converter (in this interpreter: it needs torch and transformers).

    The adapter's config is copied with ``base_model_name_or_path`` set to
    :data:`BASE_MODEL_ID`, so the GGUF's metadata names the public base, not a path on the
    machine that trained it (``--base`` still gives the converter the local config).
    """
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="adapter-") as tmp:
        clean = Path(tmp) / "adapter"
        shutil.copytree(adapter, clean)
        config_path = clean / "adapter_config.json"
        config = json.loads(config_path.read_text())
        config["base_model_name_or_path"] = BASE_MODEL_ID
        config_path.write_text(json.dumps(config, indent=2))
        (clean / "README.md").unlink(missing_ok=True)  # PEFT's card names the local path too
        cmd = [sys.executable, str(converter()), "--base", str(base), "--outtype", outtype,
               "--outfile", str(out), str(clean)]
        subprocess.run(cmd, check=True)
    return out


# llama.cpp runs the Q4_K_M base with quantised activations, HF the same weights
# dequantised to fp32: where two tokens are nearly tied, greedy decoding may pick either.
# The check therefore asks HF, teacher-forced on llama.cpp's tokens, how far each of them
# is below HF's own top token; a wrong adapter conversion puts them nats away.
TIE_NATS = 0.5


def _hf_model(base: Path, adapter: Path | None) -> tuple[object, object]:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(base))
    model = AutoModelForCausalLM.from_pretrained(str(base), dtype=torch.float32)
    if adapter is not None:
        from peft import PeftModel

        model = PeftModel.from_pretrained(model, str(adapter))
    model.eval()
    return tokenizer, model


def hf_greedy(hf: tuple[object, object], prompt: str, max_tokens: int) -> list[int]:
    """Greedy continuation token ids from ``hf`` (``_hf_model``'s tokenizer and model)."""
    import torch

    tokenizer, model = hf
    ids = torch.tensor([[tokenizer.bos_token_id, *tokenizer.encode(prompt, add_special_tokens=False)]])  # type: ignore[attr-defined]
    with torch.no_grad():
        out = model.generate(input_ids=ids, max_new_tokens=max_tokens, do_sample=False,  # type: ignore[attr-defined]
                             eos_token_id=tokenizer.eos_token_id)  # type: ignore[attr-defined]
    return [int(t) for t in out[0, ids.shape[1]:]]


def hf_gaps(hf: tuple[object, object], prompt: str, continuation: list[int]) -> list[float]:
    """For each token of ``continuation`` (teacher-forced after ``prompt``), how many nats
    HF's log-probability of it is below HF's most likely token there (0: HF's choice too)."""
    import torch

    tokenizer, model = hf
    prompt_ids = [tokenizer.bos_token_id, *tokenizer.encode(prompt, add_special_tokens=False)]  # type: ignore[attr-defined]
    ids = torch.tensor([[*prompt_ids, *continuation]])
    with torch.no_grad():
        logits = model(input_ids=ids).logits[0].float()  # type: ignore[operator]
    logprobs = torch.log_softmax(logits, dim=-1)
    gaps = []
    for i, token in enumerate(continuation):
        row = logprobs[len(prompt_ids) - 1 + i]
        gaps.append(float(row.max() - row[token]))
    return gaps


_LLAMA_PROGRAM = r"""
import json, sys
from llama_cpp import Llama
cfg = json.loads(sys.argv[1])
kw = {"lora_path": cfg["lora"]} if cfg["lora"] else {}
llm = Llama(model_path=cfg["model"], n_ctx=1024, n_threads=2, verbose=False, **kw)
ids = llm.tokenize(cfg["prompt"].encode(), add_bos=True)
out = []
for tok in llm.generate(ids, temp=0.0, top_k=1, repeat_penalty=1.0):
    if tok == llm.token_eos() or len(out) >= cfg["max_tokens"]:
        break
    out.append(int(tok))
print(json.dumps({"ids": out, "text": llm.detokenize(out).decode("utf-8", "replace")}))
"""


def llama_greedy(model: Path, lora: Path | None, prompt: str, max_tokens: int,
                 python: Path = PRODUCT_PYTHON) -> dict[str, object]:
    """Greedy ids and text from llama-cpp-python in the product's venv."""
    cfg = json.dumps({"model": str(model), "lora": str(lora) if lora else None,
                      "prompt": prompt, "max_tokens": max_tokens})
    done = subprocess.run([str(python), "-c", _LLAMA_PROGRAM, cfg], capture_output=True,
                          text=True, check=True)
    result: dict[str, object] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def check(adapter_dir: Path, adapter_gguf: Path, base: Path, gguf: Path,
          max_tokens: int = 48) -> dict[str, object]:
    model = _hf_model(base, adapter_dir)  # HF + PEFT, loaded once for the three questions
    hf = hf_greedy(model, CHECK_PROMPT, max_tokens)
    with_lora = llama_greedy(gguf, adapter_gguf, CHECK_PROMPT, max_tokens)
    plain = llama_greedy(gguf, None, CHECK_PROMPT, max_tokens)
    ids: list[int] = with_lora["ids"]  # type: ignore[assignment]
    gaps = hf_gaps(model, CHECK_PROMPT, ids)
    # The base's tokens under HF + adapter: a conversion that lost the adapter scores these.
    base_gaps = hf_gaps(model, CHECK_PROMPT, plain["ids"])  # type: ignore[arg-type]
    return {"hf_lora_ids": hf, "llama_lora": with_lora, "llama_base": plain,
            "hf_equals_llama": hf[:len(ids)] == ids,
            "max_gap_nats": round(max(gaps, default=0.0), 4),
            "base_max_gap_nats": round(max(base_gaps, default=0.0), 4),
            "agrees": max(gaps, default=0.0) <= TIE_NATS,
            "adapter_changes_output": ids != plain["ids"]}


def main(argv: list[str] | None = None) -> int:
    from training.train import ARTIFACTS, embedded_gguf, prepare_base

    p = argparse.ArgumentParser(prog="python -m training.export", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("adapter", type=Path, help="a checkpoint's adapter/ folder (PEFT)")
    p.add_argument("out", type=Path, help="the adapter GGUF to write")
    p.add_argument("--base", type=Path, default=ARTIFACTS / "base")
    p.add_argument("--outtype", default="f16", choices=["f32", "f16", "bf16", "q8_0"])
    p.add_argument("--check", action="store_true", help="compare HF+LoRA with llama.cpp+adapter")
    p.add_argument("--max-tokens", type=int, default=48)
    args = p.parse_args(argv)
    gguf = embedded_gguf()
    base = prepare_base(gguf, args.base)
    export(args.adapter, base, args.out)
    print(f"wrote {args.out} ({args.out.stat().st_size / 1e6:.1f} MB)", file=sys.stderr)
    if args.check:
        result = check(args.adapter, args.out, base, gguf, args.max_tokens)
        print(json.dumps(result, indent=2))
        return 0 if result["agrees"] else 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
