"""Reproduce flux-mini end to end, resumably: data → VAE → base (transformer + text encoders) → guidance distillation.

    python -m training.build --out assets/models/flux-mini --seed 0   # configs, tokenizers, random weights
    python -m training.train_all --seed 0

Each stage resumes from its checkpoint under ``runs/`` (``runs/vae/ckpt.pt``, ``runs/base/ckpt.pt``); a VAE that
finished (``runs/vae/report.json`` present) is not retrained. One process, one thread (the machine is shared).
Stage options mirror ``training.train_vae`` and ``training.train_base``; see their ``--help``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from training import distill_guidance, train_base, train_vae
from training.data import load_dataset


def _vae_done(steps: int) -> bool:
    """Whether the VAE checkpoint has reached ``steps``."""
    ckpt = train_vae.RUN_DIR / "ckpt.pt"
    return ckpt.exists() and torch.load(ckpt, weights_only=False)["step"] >= steps


def _base_best() -> float:
    """The base stage's best held-out joint accuracy (the distilled model must beat it to be exported)."""
    best = train_base.RUN_DIR / "best.pt"
    return torch.load(best, weights_only=False)["joint"] if best.exists() else -1.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--vae-steps", type=int, default=1500, help="phase 1: lr 1e-3, cosine over these steps")
    parser.add_argument("--vae-steps-2", type=int, default=2700, help="phase 2 (resumed): lr 5e-4 up to here")
    parser.add_argument("--vae-batch", type=int, default=16)
    parser.add_argument("--base-steps", type=int, default=6000)
    parser.add_argument("--base-batch", type=int, default=32)
    parser.add_argument("--base-minutes", type=float, default=1e9, help="stop the base stage after this long")
    parser.add_argument("--distill-steps", type=int, default=1000, help="guidance distillation (0: skip)")
    parser.add_argument("--distill-minutes", type=float, default=1e9)
    parser.add_argument("--out", type=Path, default=Path("assets/models/flux-mini"))
    args = parser.parse_args()
    torch.set_num_threads(1)
    load_dataset(args.seed)
    if not (train_vae.RUN_DIR / "report.json").exists() or not _vae_done(args.vae_steps_2):
        for steps, lr in ((args.vae_steps, 1e-3), (args.vae_steps_2, 5e-4)):
            vae_args = argparse.Namespace(
                seed=args.seed, steps=steps, batch=args.vae_batch, lr=lr, warmup=50, kl_weight=1e-6,
                ckpt_every=100, out=args.out / "vae",
            )
            vae = train_vae.train(vae_args)
        train_vae.finish(vae, vae_args)
    base_args = argparse.Namespace(
        seed=args.seed, steps=args.base_steps, batch=args.base_batch, lr=5e-4, text_lr_mult=0.5, warmup=200,
        ema=0.999, p_uncond=0.1, p_visited=0.3, max_minutes=args.base_minutes, ckpt_minutes=4.0, eval_minutes=10.0,
        n_eval=32, out=args.out, limit_data=0,
    )
    train_base.train(base_args)
    if args.distill_steps:
        distill_args = argparse.Namespace(
            seed=args.seed, teacher=train_base.RUN_DIR / "ckpt.pt", steps=args.distill_steps, batch=args.base_batch,
            lr=2e-4, warmup=50, ema=0.995, p_visited=0.5, max_minutes=args.distill_minutes, ckpt_minutes=4.0,
            eval_minutes=6.0, n_eval=32, best_init=_base_best(), out=args.out,
        )
        distill_guidance.train(distill_args)


if __name__ == "__main__":
    main()
