"""LoRA fine-tune of the embedded Gemma 3 270M on the Codex-S set; resumable.

    nice -n 19 nohup .venv-train/bin/python -m training.train --run artifacts/train/run \
        --epochs 3 --checkpoint-every 25 > artifacts/train/train.out 2>&1 &

Run it again with the same ``--run`` and it resumes from the last checkpoint (adapter,
optimizer, scheduler, data position and RNG states). ``kill -TERM $(cat
artifacts/train/train.pid)`` saves a checkpoint at the next step and exits;
``kill -STOP`` / ``kill -CONT`` pause and continue it without exiting.

The base is the embedded Q4_K_M GGUF, dequantised by transformers (``gguf_file=``) and
saved once as an fp32 HF copy (``artifacts/train/base/``: the adapter converter needs
it). Training holds the base in bf16 under autocast where bf16 is native (CUDA, or a CPU
with avx512_bf16/amx_bf16), else in fp32 (see :func:`use_bf16`); the LoRA weights are
always fp32. Sequences are packed (no
padding; each function attends only to itself: positions restart at 0 and
transformers builds the block-diagonal mask), the loss covers body tokens and the
end-of-text token only, and only those positions go through the 262k-entry output
layer. The validation loss of the held-out split is computed at every checkpoint and
the best checkpoint by it is kept (never selected on HumanEval).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import random
import shutil
import signal
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

from training.packing import Example, epoch_rows, load_examples, pack

ROOT = Path(__file__).resolve().parents[1]
ARTIFACTS = ROOT / "artifacts" / "train"
TARGET_MODULES = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


def log(message: str) -> None:
    print(f"[train {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# --- the base model -------------------------------------------------------------------


def embedded_gguf() -> Path:
    from lsp_server.backends.registry import embedded_model_path

    return embedded_model_path()


def prepare_base(gguf: Path, out: Path) -> Path:
    """The fp32 HF copy of the GGUF base (once): dequantised by transformers, with the
    quantiser cleared so that ``save_pretrained`` accepts it."""
    done = out / "base.json"
    if done.exists() and json.loads(done.read_text()).get("gguf_sha256_prefix") == _sha_prefix(gguf):
        return out
    from transformers import AutoModelForCausalLM, AutoTokenizer

    log(f"dequantising {gguf} into {out} (once; about a minute)")
    started = time.time()
    tokenizer = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    model = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name,
                                                 dtype=torch.float32)
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    tmp = out.with_name(out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)
    (tmp / "base.json").write_text(json.dumps({"gguf": str(gguf),
                                               "gguf_sha256_prefix": _sha_prefix(gguf)}))
    shutil.rmtree(out, ignore_errors=True)
    tmp.rename(out)
    log(f"base ready in {time.time() - started:.0f} s")
    return out


def _sha_prefix(path: Path, size: int = 1 << 20) -> str:
    """sha256 of the file's size and first MiB: enough to tell two GGUFs apart, quickly."""
    with path.open("rb") as fh:
        head = fh.read(size)
    return hashlib.sha256(str(path.stat().st_size).encode() + head).hexdigest()


# --- data -----------------------------------------------------------------------------


def collate(rows: list[list[Example]], max_len: int, pad_id: int) -> dict[str, torch.Tensor]:
    """input_ids, position_ids (restarting per example) and the loss mask; the tail of
    a row is padding, as a sequence of its own with no loss."""
    ids = torch.full((len(rows), max_len), pad_id, dtype=torch.long)
    pos = torch.zeros((len(rows), max_len), dtype=torch.long)
    target = torch.zeros((len(rows), max_len), dtype=torch.bool)
    for r, row in enumerate(rows):
        at = 0
        for example in row:
            n = len(example.ids)
            ids[r, at:at + n] = torch.tensor(example.ids)
            pos[r, at:at + n] = torch.arange(n)
            # position t predicts token t+1: targets are the body tokens (and EOS)
            target[r, at + example.n_prompt - 1:at + n - 1] = True
            at += n
        if at < max_len:
            pos[r, at:] = torch.arange(max_len - at)
    return {"input_ids": ids, "position_ids": pos, "target": target}


# --- loss -----------------------------------------------------------------------------


def causal_lm(model: Any) -> Any:
    """The Gemma3ForCausalLM inside a PeftModel (or the model itself)."""
    return model.get_base_model() if hasattr(model, "get_base_model") else model


def loss_and_count(model: Any, batch: dict[str, torch.Tensor], device: torch.device,
                   autocast: bool) -> tuple[torch.Tensor, int]:
    """Mean cross-entropy over the target positions; only those go through lm_head."""
    lm = causal_lm(model)
    ids = batch["input_ids"].to(device)
    pos = batch["position_ids"].to(device)
    target = batch["target"].to(device)
    labels = torch.roll(ids, shifts=-1, dims=1)[target]
    with torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=autocast):
        hidden = lm.model(input_ids=ids, position_ids=pos, attention_mask=None,
                          use_cache=False).last_hidden_state
        logits = lm.lm_head(hidden[target])
    logits = logits.float()
    cap = getattr(lm.config, "final_logit_softcapping", None)
    if cap:
        logits = torch.tanh(logits / cap) * cap
    loss = torch.nn.functional.cross_entropy(logits, labels)
    return loss, int(labels.numel())


@torch.no_grad()
def validate(model: Any, rows: list[list[Example]], args: argparse.Namespace,
             device: torch.device, pad_id: int) -> float:
    model.eval()
    total, count = 0.0, 0
    for i in range(0, len(rows), args.batch_size):
        batch = collate(rows[i:i + args.batch_size], args.seq_len, pad_id)
        loss, n = loss_and_count(model, batch, device, args.autocast)
        total += float(loss) * n
        count += n
    model.train()
    return total / max(count, 1)


# --- checkpoints ------------------------------------------------------------------------


@dataclass
class Position:
    step: int = 0
    epoch: int = 0
    row: int = 0  # next row of the epoch
    tokens: int = 0  # training tokens seen (all positions)
    target_tokens: int = 0
    best_val: float = math.inf
    best_step: int = -1


def checkpoints(run: Path) -> list[Path]:
    return sorted(p for p in run.glob("ckpt-*") if (p / "state.pt").exists())


def save_checkpoint(run: Path, model: Any, optimizer: Any, scheduler: Any,
                    position: Position, val_loss: float | None, keep: int) -> Path:
    from peft import get_peft_model_state_dict
    from safetensors.torch import save_file

    final = run / f"ckpt-{position.step:07d}"
    tmp = run / f".tmp-{final.name}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    model.save_pretrained(tmp / "adapter")
    state = {
        "position": asdict(position),
        "val_loss": val_loss,
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict(),
        "rng": {"python": random.getstate(), "torch": torch.get_rng_state()},
    }
    torch.save(state, tmp / "state.pt")
    save_file({k: v.contiguous() for k, v in get_peft_model_state_dict(model).items()},
              str(tmp / "adapter_weights.safetensors"))
    shutil.rmtree(final, ignore_errors=True)
    tmp.rename(final)
    for old in checkpoints(run)[:-keep]:
        shutil.rmtree(old, ignore_errors=True)
    return final


def load_checkpoint(path: Path, model: Any, optimizer: Any, scheduler: Any) -> Position:
    from peft import set_peft_model_state_dict
    from safetensors.torch import load_file

    set_peft_model_state_dict(model, load_file(str(path / "adapter_weights.safetensors")))
    state = torch.load(path / "state.pt", weights_only=False)
    optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    random.setstate(state["rng"]["python"])
    torch.set_rng_state(state["rng"]["torch"])
    return Position(**state["position"])


def lr_lambda(warmup: int, total: int, floor: float = 0.1) -> Any:
    def f(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        progress = min(1.0, (step - warmup) / max(1, total - warmup))
        return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * progress))
    return f


# --- main -----------------------------------------------------------------------------


def build_model(base: Path, args: argparse.Namespace, device: torch.device) -> Any:
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    dtype = torch.bfloat16 if args.autocast else torch.float32
    model = AutoModelForCausalLM.from_pretrained(str(base), dtype=dtype,
                                                 attn_implementation="sdpa")
    config = LoraConfig(r=args.rank, lora_alpha=args.alpha, lora_dropout=args.dropout,
                        target_modules=TARGET_MODULES, task_type="CAUSAL_LM")
    model = get_peft_model(model, config, autocast_adapter_dtype=True)
    for param in model.parameters():
        if param.requires_grad:
            param.data = param.data.float()
    return model.to(device)


def cpu_has_native_bf16() -> bool:
    try:
        flags = Path("/proc/cpuinfo").read_text().split()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def use_bf16(precision: str, device: torch.device) -> bool:
    """Whether to hold the base in bf16 under autocast. On a CPU without native bf16
    (AVX2 only, like the 2-core development machine) torch falls back to a reference
    GEMM: a bf16 matmul of the output layer's backward shape measured 150x slower
    than fp32 there, so auto picks fp32."""
    if precision != "auto":
        return precision == "bf16"
    return device.type == "cuda" or cpu_has_native_bf16()


def data_hash(*paths: Path) -> str:
    digest = hashlib.sha256()
    for path in paths:
        digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m training.train", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--run", type=Path, default=ARTIFACTS / "run", help="checkpoints and logs")
    p.add_argument("--data", type=Path, default=ARTIFACTS / "data", help="train.jsonl, val.jsonl")
    p.add_argument("--base", type=Path, default=ARTIFACTS / "base", help="fp32 HF copy (made once)")
    p.add_argument("--gguf", type=Path, default=None, help="the GGUF base (default: embedded)")
    p.add_argument("--epochs", type=float, default=3.0)
    p.add_argument("--max-steps", type=int, default=0, help="stop after this many steps (0: epochs)")
    p.add_argument("--lr", type=float, default=2e-4)
    p.add_argument("--warmup", type=int, default=20)
    p.add_argument("--weight-decay", type=float, default=0.0)
    p.add_argument("--rank", type=int, default=16)
    p.add_argument("--alpha", type=int, default=32)
    p.add_argument("--dropout", type=float, default=0.05)
    p.add_argument("--seq-len", type=int, default=1024)
    p.add_argument("--batch-size", type=int, default=2, help="packed rows per step")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--checkpoint-every", type=int, default=50)
    p.add_argument("--keep", type=int, default=2, help="latest checkpoints kept (besides best)")
    p.add_argument("--seed", type=int, default=1234)
    p.add_argument("--device", default="auto", help="auto (cuda if there is one), cpu, cuda")
    p.add_argument("--precision", choices=["auto", "bf16", "fp32"], default="auto",
                   help="bf16 weights + autocast, or fp32; auto: bf16 on CUDA or a CPU with "
                        "native bf16 (avx512_bf16/amx_bf16), else fp32")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    device = torch.device("cuda" if args.device == "auto" and torch.cuda.is_available()
                          else "cpu" if args.device == "auto" else args.device)
    args.autocast = use_bf16(args.precision, device)
    args.run.mkdir(parents=True, exist_ok=True)
    pid_file = ARTIFACTS / "train.pid" if args.run.resolve().parent == ARTIFACTS.resolve() \
        else args.run / "train.pid"
    pid_file.write_text(f"{os.getpid()}\n")

    base = prepare_base(args.gguf or embedded_gguf(), args.base)
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(base))
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    train, dropped = load_examples(args.data / "train.jsonl", tokenizer, args.seq_len)
    val, val_dropped = load_examples(args.data / "val.jsonl", tokenizer, args.seq_len)
    val_rows = pack(val, args.seq_len)
    rows_per_epoch = len(epoch_rows(train, args.seq_len, args.seed, 0))
    steps_per_epoch = math.ceil(rows_per_epoch / args.batch_size)
    total_steps = args.max_steps or math.ceil(steps_per_epoch * args.epochs)
    tokens = sum(len(e.ids) for e in train)
    target_tokens = sum(len(e.ids) - e.n_prompt for e in train)

    config = {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()}
    config["data_hash"] = data_hash(args.data / "train.jsonl", args.data / "val.jsonl")
    config_path = args.run / "run_config.json"
    if config_path.exists():
        old = json.loads(config_path.read_text())
        if old.get("data_hash") != config["data_hash"] and checkpoints(args.run):
            log(f"{args.run} was trained on other data ({old.get('data_hash')}); "
                "use a new --run folder")
            return 2
    config_path.write_text(json.dumps(config, indent=2))
    (args.run / "total_steps").write_text(f"{total_steps}\n")
    log(f"device {device}, {args.threads} threads, {'bf16' if args.autocast else 'fp32'}; train {len(train)} functions "
        f"({dropped} over {args.seq_len} tokens dropped), {tokens} tokens, {target_tokens} "
        f"with loss; {rows_per_epoch} rows, {steps_per_epoch} steps/epoch; total {total_steps} "
        f"steps; val {len(val)} functions ({val_dropped} dropped), {len(val_rows)} rows")

    model = build_model(base, args, device)
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=args.lr, weight_decay=args.weight_decay)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_lambda(args.warmup, total_steps))
    position = Position()
    found = checkpoints(args.run)
    if found:
        position = load_checkpoint(found[-1], model, optimizer, scheduler)
        log(f"resumed from {found[-1].name}: step {position.step}, epoch {position.epoch}, "
            f"row {position.row}, best val {position.best_val:.4f} at {position.best_step}")
    else:
        random.seed(args.seed)
        torch.manual_seed(args.seed)
        log(f"fresh run: {trainable} trainable parameters")
    metrics = (args.run / "log.jsonl").open("a", encoding="utf-8")

    stop = {"now": False}

    def on_signal(signum: int, _frame: Any) -> None:
        log(f"signal {signum}: saving a checkpoint at the end of this step")
        stop["now"] = True

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)

    def checkpoint() -> None:
        val_loss = validate(model, val_rows, args, device, pad_id) if val_rows else None
        is_best = val_loss is not None and val_loss < position.best_val
        if val_loss is not None and is_best:
            position.best_val, position.best_step = val_loss, position.step
        path = save_checkpoint(args.run, model, optimizer, scheduler, position, val_loss,
                               args.keep)
        if is_best:
            best = args.run / "best"
            shutil.rmtree(best, ignore_errors=True)
            shutil.copytree(path, best)
        metrics.write(json.dumps({"step": position.step, "epoch": position.epoch,
                                  "val_loss": val_loss, "best_val": position.best_val,
                                  "best_step": position.best_step, "time": time.time()}) + "\n")
        metrics.flush()
        log(f"checkpoint {path.name}: val loss {val_loss if val_loss is None else round(val_loss, 4)}"
            f"{' (best)' if is_best else ''}")

    if position.step == 0 and val_rows and not found:
        metrics.write(json.dumps({"step": 0, "val_loss": validate(model, val_rows, args, device,
                                                                  pad_id), "time": time.time()}) + "\n")
        metrics.flush()
    model.train()
    rows = epoch_rows(train, args.seq_len, args.seed, position.epoch)
    window_start, window_tokens = time.time(), 0
    while position.step < total_steps and not stop["now"]:
        if position.row >= len(rows):
            position.epoch += 1
            position.row = 0
            rows = epoch_rows(train, args.seq_len, args.seed, position.epoch)
        chunk = rows[position.row:position.row + args.batch_size]
        batch = collate(chunk, args.seq_len, pad_id)
        loss, n = loss_and_count(model, batch, device, args.autocast)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        position.step += 1
        position.row += len(chunk)
        used = sum(len(e.ids) for row in chunk for e in row)
        position.tokens += used
        position.target_tokens += n
        window_tokens += used
        elapsed = time.time() - window_start
        metrics.write(json.dumps({"step": position.step, "epoch": position.epoch,
                                  "loss": round(float(loss), 5), "lr": scheduler.get_last_lr()[0],
                                  "tokens": position.tokens, "tok_s": round(window_tokens / elapsed, 1),
                                  "time": time.time()}) + "\n")
        metrics.flush()
        if position.step % 10 == 0 or position.step <= 3:
            log(f"step {position.step}/{total_steps} epoch {position.epoch} loss {float(loss):.4f} "
                f"lr {scheduler.get_last_lr()[0]:.2e} {window_tokens / elapsed:.0f} tok/s")
            window_start, window_tokens = time.time(), 0
        if position.step % args.checkpoint_every == 0 or position.step == total_steps or stop["now"]:
            checkpoint()
    log(f"stopped at step {position.step}/{total_steps}; best val {position.best_val:.4f} "
        f"at step {position.best_step}")
    metrics.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
