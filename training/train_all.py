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

from training import distill_guidance, torch_state, train_base, train_vae
from training.data import load_dataset


def _vae_done(steps: int) -> bool:
    """Whether the VAE checkpoint has reached ``steps``."""
    ckpt = train_vae.RUN_DIR / "ckpt.pt"
    return ckpt.exists() and torch_state.load(ckpt)["step"] >= steps


def _base_best() -> float:
    """The base stage's best held-out joint accuracy (the distilled model must beat it to be exported)."""
    best = train_base.RUN_DIR / "best.pt"
    return float(torch_state.load(best)["joint"]) if best.exists() else -1.0


def vae_stage_args(args: argparse.Namespace) -> list[argparse.Namespace]:
    """The VAE's two phases (lr 1e-3 up to ``--vae-steps``, then 5e-4 up to ``--vae-steps-2``) as its own options."""
    return [
        train_vae.arg_parser().parse_args(
            [
                "--seed",
                str(args.seed),
                "--steps",
                str(steps),
                "--batch",
                str(args.vae_batch),
                "--lr",
                str(lr),
                "--out",
                str(args.out / "vae"),
            ]
        )
        for steps, lr in ((args.vae_steps, 1e-3), (args.vae_steps_2, 5e-4))
    ]


def base_stage_args(args: argparse.Namespace) -> argparse.Namespace:
    """``training.train_base`` options for this build (its defaults for everything not set here)."""
    return train_base.arg_parser().parse_args(
        [
            "--seed",
            str(args.seed),
            "--steps",
            str(args.base_steps),
            "--batch",
            str(args.base_batch),
            "--max-minutes",
            str(args.base_minutes),
            "--out",
            str(args.out),
            "--model-dir",
            str(args.out),
        ]
    )


def distill_stage_args(args: argparse.Namespace, best_init: float) -> argparse.Namespace:
    """``training.distill_guidance`` options: teacher = the base stage's checkpoint, export only above its best."""
    return distill_guidance.arg_parser().parse_args(
        [
            "--seed",
            str(args.seed),
            "--teacher",
            str(train_base.RUN_DIR / "ckpt.pt"),
            "--steps",
            str(args.distill_steps),
            "--batch",
            str(args.base_batch),
            "--lr",
            "2e-4",
            "--max-minutes",
            str(args.distill_minutes),
            "--eval-minutes",
            "6",
            "--best-init",
            str(best_init),
            "--out",
            str(args.out),
            "--model-dir",
            str(args.out),
        ]
    )


def arg_parser() -> argparse.ArgumentParser:
    """The end-to-end build's options."""
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
    return parser


def main() -> None:
    args = arg_parser().parse_args()
    torch.set_num_threads(1)
    load_dataset(args.seed)
    if not (train_vae.RUN_DIR / "report.json").exists() or not _vae_done(args.vae_steps_2):
        for vae_args in vae_stage_args(args):
            vae = train_vae.train(vae_args)
        train_vae.finish(vae, vae_args)
    train_base.train(base_stage_args(args))
    if args.distill_steps:
        distill_guidance.train(distill_stage_args(args, _base_best()))


if __name__ == "__main__":
    main()
