"""Guidance distillation (FLUX-dev style): teach the guidance embedding to stand in for true CFG.

    python -m training.distill_guidance --seed 0 --steps 600 --batch 32
    python -m training.distill_guidance --size 128 --teacher training/checkpoints/base128 --model-dir DIR \\
        --latents-dir runs/base128 --run-dir runs/distill128       # the 128-px family

Teacher: the base model's EMA weights (``runs/base/ckpt.pt``), frozen. Student: a copy of the teacher
transformer (the text encoders stay frozen and shared). Per sample g ~ U[1, 6]; the target is the teacher's
CFG velocity ``v_u + g (v_c - v_u)`` (v_u: empty prompt) at the same x_t, σ; the student sees guidance g.
Resumable from ``runs/distill/ckpt.pt`` (and with ``--keep DIR`` from a committable safetensors copy);
periodically exports (EMA of the student) and evaluates like ``training.train_base``, writing to ``--out`` when
the held-out joint accuracy is the best seen in this stage.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from diffusers import FlowMatchEulerDiscreteScheduler
from diffusers.pipelines.flux.pipeline_flux import calculate_shift

from training import portable_checkpoint, torch_state, train_base
from training.spec import MiniSpec

RUN_DIR = Path(os.environ.get("FLUX_MINI_DISTILL_DIR", "runs/distill"))


def train(args: argparse.Namespace) -> None:
    """Distil (or resume) until ``args.steps`` or ``args.max_minutes``."""
    torch.set_num_threads(1)
    spec = replace(MiniSpec(), native_size=args.size)
    run_dir, model_dir = args.run_dir, args.model_dir
    run_dir.mkdir(parents=True, exist_ok=True)
    enc = train_base.prepare(args.seed, spec, model_dir, run_dir=args.latents_dir)
    teacher = train_base.Models(spec, model_dir)
    train_base.init_weights(teacher, args.teacher)
    teacher.requires_grad_(False).eval()
    student = copy.deepcopy(teacher)
    student.transformer.requires_grad_(True).train()
    ema = copy.deepcopy(student).requires_grad_(False)
    opt = torch.optim.AdamW(student.transformer.parameters(), lr=args.lr, betas=(0.9, 0.99), weight_decay=0.0)
    step, best, opt_start = 0, args.best_init, 0  # opt_start: the step the optimizer (re)started at (warmup)
    ckpt = run_dir / "ckpt.pt"
    if ckpt.exists():
        state = torch_state.load(ckpt)
        student.load_state_dict(state["student"])
        ema.load_state_dict(state["ema"])
        opt.load_state_dict(state["opt"])
        step, best, opt_start = state["step"], state["best"], state.get("opt_start", 0)
        print(f"resumed at step {step}", flush=True)
    elif kept := portable_checkpoint.resume(args.keep, {"student": student, "ema": ema}, args.warmup):
        step, best, opt_start = kept["step"], kept["best"], kept["step"]
    sched = FlowMatchEulerDiscreteScheduler.from_pretrained(model_dir / "scheduler")
    seq_len = enc.latents.shape[1]
    visited = train_base.sampler_sigmas(sched, spec.default_steps, seq_len)
    cfg = sched.config
    mu = calculate_shift(seq_len, cfg.base_image_seq_len, cfg.max_image_seq_len, cfg.base_shift, cfg.max_shift)
    log = (run_dir / "log.jsonl").open("a")
    start = last_ckpt = last_eval = time.time()
    losses: list[float] = []
    while step < args.steps:
        gen = torch.Generator().manual_seed(args.seed * 7_000_003 + step)
        b = args.batch
        idx = train_base.sample_indices(gen, enc, b, args.p_figure)
        x0 = enc.latents[idx]
        sigma = train_base.sample_sigma(gen, b, mu, visited, args.p_visited)
        g = 1.0 + 5.0 * torch.rand(b, generator=gen)
        noise = torch.randn(x0.shape, generator=gen)
        s = sigma[:, None, None]
        xt = (1 - s) * x0 + s * noise
        with torch.no_grad():
            pooled_c = teacher.clip(enc.clip_ids[idx]).pooler_output
            seq_c = teacher.t5(enc.t5_ids[idx])[0]
            pooled_u = teacher.clip(enc.empty_clip[None]).pooler_output.expand(b, -1)
            seq_u = teacher.t5(enc.empty_t5[None])[0].expand(b, -1, -1)
            v = teacher.transformer(
                hidden_states=torch.cat([xt, xt]),
                timestep=torch.cat([sigma, sigma]),
                guidance=torch.full((2 * b,), 1.0),
                pooled_projections=torch.cat([pooled_c, pooled_u]),
                encoder_hidden_states=torch.cat([seq_c, seq_u]),
                txt_ids=enc.txt_ids,
                img_ids=enc.img_ids,
                return_dict=False,
            )[0]
            v_c, v_u = v[:b], v[b:]
            target = v_u + g[:, None, None] * (v_c - v_u)
        pred = student.transformer(
            hidden_states=xt,
            timestep=sigma,
            guidance=g,
            pooled_projections=pooled_c,
            encoder_hidden_states=seq_c,
            txt_ids=enc.txt_ids,
            img_ids=enc.img_ids,
            return_dict=False,
        )[0]
        loss = F.mse_loss(pred, target)
        for group in opt.param_groups:
            group["lr"] = args.lr * min(1.0, (step - opt_start + 1) / args.warmup)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(student.transformer.parameters(), 1.0)
        opt.step()
        step += 1
        train_base.ema_update(ema, student, min(args.ema, (1 + step) / (10 + step)))
        losses.append(loss.item())
        if step % 50 == 0:
            rec = {"step": step, "loss": float(np.mean(losses)), "min": (time.time() - start) / 60}
            log.write(json.dumps(rec) + "\n")
            log.flush()
            print(rec, flush=True)
            losses = []
        now = time.time()
        done = step >= args.steps or (now - start) / 60 >= args.max_minutes
        if now - last_ckpt >= args.ckpt_minutes * 60 or done:
            torch.save(
                {
                    "student": student.state_dict(),
                    "ema": ema.state_dict(),
                    "opt": opt.state_dict(),
                    "step": step,
                    "best": float(best),
                    "opt_start": opt_start,
                },
                run_dir / "ckpt.tmp",
            )
            (run_dir / "ckpt.tmp").replace(ckpt)
            if args.keep is not None:
                portable_checkpoint.save(
                    args.keep,
                    {"student": student, "ema": ema},
                    {"step": step, "best": best, "size": args.size, "seed": args.seed},
                )
            last_ckpt = now
        if now - last_eval >= args.eval_minutes * 60 or done:
            folder = run_dir / "eval_model"
            train_base.export(ema, folder, model_dir, run_dir)
            scores = train_base.evaluate_folder(folder, n=args.n_eval, size=args.size)
            rec = {"step": step, "eval_one_heldout_4steps": scores, "time": time.strftime("%H:%M:%S")}
            print(json.dumps(rec), flush=True)
            with (run_dir / "eval.jsonl").open("a") as f:
                f.write(json.dumps(rec) + "\n")
            if scores["joint"] > best:
                best = scores["joint"]
                if args.out is not None:
                    train_base.export(ema, args.out, model_dir, run_dir)
                    print(f"exported student (joint {best:.3f}) to {args.out}", flush=True)
            last_eval = time.time()
        if done:
            break


def arg_parser() -> argparse.ArgumentParser:
    """The command-line options."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--teacher",
        type=Path,
        default=train_base.RUN_DIR / "ckpt.pt",
        help="the base's ckpt.pt or kept folder (its EMA), or a flux-mini model folder",
    )
    parser.add_argument(
        "--keep",
        type=Path,
        default=None,
        help="a folder to commit: student + EMA as safetensors and the step, written with every "
        "checkpoint and resumed from (fresh optimizer) when --run-dir has no ckpt.pt",
    )
    parser.add_argument("--steps", type=int, default=600)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--lr", type=float, default=1e-4)
    parser.add_argument("--warmup", type=int, default=50)
    parser.add_argument("--ema", type=float, default=0.995)
    parser.add_argument("--p-visited", type=float, default=0.5)
    parser.add_argument("--p-figure", type=float, default=0.0, help="extra share of stick-figure scenes per batch")
    parser.add_argument("--max-minutes", type=float, default=1e9)
    parser.add_argument("--ckpt-minutes", type=float, default=4.0)
    parser.add_argument("--eval-minutes", type=float, default=8.0)
    parser.add_argument("--n-eval", type=int, default=32)
    parser.add_argument(
        "--best-init",
        type=float,
        default=-1.0,
        help="export only when the held-out joint beats this (e.g. the base model's best)",
    )
    parser.add_argument("--out", type=Path, default=None, help="export the best student here (e.g. the model folder)")
    parser.add_argument("--size", type=int, default=128, help="scene size in pixels (128: 64 image tokens)")
    parser.add_argument("--run-dir", type=Path, default=RUN_DIR, help="checkpoint, log and eval folder")
    parser.add_argument(
        "--model-dir",
        type=Path,
        default=train_base.MODEL_DIR,
        help="model folder giving the VAE, tokenizers, scheduler and configs (and the export template)",
    )
    parser.add_argument(
        "--latents-dir",
        type=Path,
        default=train_base.RUN_DIR,
        help="where the base run cached its encoded training set (e.g. runs/base128)",
    )
    return parser


def main() -> None:
    train(arg_parser().parse_args())


if __name__ == "__main__":
    main()
