"""Train flux-mini's AutoencoderKL from random init on rendered toy scenes (CPU, fp32, one thread).

    python -m training.train_vae --seed 0 --steps 1500 --batch 16 --out runs/vae/out             # lr 1e-3
    python -m training.train_vae --seed 0 --steps 2700 --batch 16 --lr 5e-4 --out runs/vae/out   # resumed

Loss: L1 + MSE reconstruction (edge pixels weighted up) + a tiny KL term. Checkpoints (model + optimizer + step)
go to ``--run-dir``/ckpt.pt (``runs/vae``) every ``--ckpt-every`` steps and a run resumes from there. At the end
the script measures ToyGenEval on reconstructions, sets ``shift_factor`` / ``scaling_factor`` from latent
statistics (shift = mean, scale = 1/std of the latent means, so ``(z - shift) * scale`` is ~unit variance) and
writes the VAE with ``save_pretrained`` into ``--run-dir``/final and ``--out``. The geometry is
``training.spec.MiniSpec``'s (the shipped wide VAE); scenes are ``--size`` px (128).
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from diffusers import AutoencoderKL

from studio.toyworld import evaluate_many
from training import torch_state
from training.build import make_vae
from training.data import DEFAULT_DIR, ToyData, load_dataset
from training.spec import MiniSpec

RUN_DIR = Path("runs/vae")


def edge_weight(x: torch.Tensor, boost: float = 4.0) -> torch.Tensor:
    """Per-pixel weight (B, 1, H, W): 1 + ``boost`` within one pixel of a colour edge of ``x``."""
    dx = (x[..., :, 1:] - x[..., :, :-1]).abs().sum(1, keepdim=True) > 1e-3
    dy = (x[..., 1:, :] - x[..., :-1, :]).abs().sum(1, keepdim=True) > 1e-3
    edges = F.pad(dx.float(), (0, 1, 0, 0)) + F.pad(dx.float(), (1, 0, 0, 0))
    edges = edges + F.pad(dy.float(), (0, 0, 0, 1)) + F.pad(dy.float(), (0, 0, 1, 0))
    return 1.0 + boost * (edges > 0).float()


def vae_loss(vae: AutoencoderKL, x: torch.Tensor, kl_weight: float) -> tuple[torch.Tensor, dict[str, float]]:
    """Reconstruction (edge-weighted L1 + MSE) plus ``kl_weight`` x KL of the posterior."""
    posterior = vae.encode(x).latent_dist
    recon = vae.decode(posterior.sample()).sample
    w = edge_weight(x)
    l1 = ((recon - x).abs() * w).mean()
    mse = F.mse_loss(recon, x)
    kl = posterior.kl().mean() / x[0].numel()
    loss = l1 + mse + kl_weight * kl
    return loss, {"l1": l1.item(), "mse": mse.item(), "kl": kl.item()}


def lr_at(step: int, total: int, peak: float, warmup: int) -> float:
    """Linear warmup then cosine decay to 10 % of ``peak``."""
    if step < warmup:
        return peak * (step + 1) / warmup
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    return peak * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress)))


def batch_indices(seed: int, step: int, n: int, batch: int) -> np.ndarray:
    """The step's batch, a pure function of (seed, step) so resumed runs see the same data."""
    return np.random.default_rng([seed, 17, step]).integers(0, n, size=batch)


@torch.no_grad()
def latent_stats(vae: AutoencoderKL, data: ToyData, n: int = 2048, batch: int = 64) -> tuple[float, float]:
    """Mean and std over all elements of the posterior means of ``n`` images spread over the set (all if fewer)."""
    n = min(n, len(data))
    idx = np.linspace(0, len(data) - 1, n).astype(int)
    zs = [vae.encode(data.tensor(idx[i : i + batch])).latent_dist.mean for i in range(0, n, batch)]
    z = torch.cat(zs)
    return z.mean().item(), z.std().item()


@torch.no_grad()
def recon_eval(vae: AutoencoderKL, data: ToyData, n: int = 256, batch: int = 64) -> dict[str, dict[str, float]]:
    """ToyGenEval of decoded posterior means, separately for one- and two-object scenes."""
    out = {}
    for k in (1, 2):
        idx = np.flatnonzero(data.n_objects == k)[:n]
        pairs = []
        for i in range(0, len(idx), batch):
            x = data.tensor(idx[i : i + batch])
            y = vae.decode(vae.encode(x).latent_dist.mean).sample
            imgs = ((y.clamp(-1, 1) + 1) * 127.5).round().byte().permute(0, 2, 3, 1).numpy()
            pairs += [(img, data.prompts[j]) for img, j in zip(imgs, idx[i : i + batch], strict=True)]
        out[f"{k}obj"] = evaluate_many(pairs)
    return out


def train(args: argparse.Namespace) -> AutoencoderKL:
    """Train (or resume) the VAE; returns it in eval mode."""
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    data = load_dataset(args.seed, args.size, args.n_one, args.n_two, args.data_dir)
    vae = make_vae(MiniSpec())
    opt = torch.optim.AdamW(vae.parameters(), lr=args.lr, weight_decay=0.0)
    run_dir = args.run_dir
    run_dir.mkdir(parents=True, exist_ok=True)
    ckpt_path = run_dir / "ckpt.pt"
    step = 0
    if ckpt_path.exists():
        state = torch_state.load(ckpt_path)
        vae.load_state_dict(state["model"])
        opt.load_state_dict(state["opt"])
        step = state["step"]
        print(f"resumed at step {step}", flush=True)
    log = (run_dir / "log.jsonl").open("a")
    vae.train()
    t0 = time.time()
    while step < args.steps:
        for group in opt.param_groups:
            group["lr"] = lr_at(step, args.steps, args.lr, args.warmup)
        x = data.tensor(batch_indices(args.seed, step, len(data), args.batch))
        loss, parts = vae_loss(vae, x, args.kl_weight)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(vae.parameters(), 1.0)
        opt.step()
        step += 1
        if step % 20 == 0 or step == args.steps:
            rec = {"step": step, "loss": loss.item(), **parts, "s_per_step": (time.time() - t0) / 20}
            t0 = time.time()
            log.write(json.dumps(rec) + "\n")
            log.flush()
            print(rec, flush=True)
        if step % args.ckpt_every == 0 or step == args.steps:
            torch.save({"model": vae.state_dict(), "opt": opt.state_dict(), "step": step}, ckpt_path)
    vae.eval()
    return vae


def finish(vae: AutoencoderKL, args: argparse.Namespace) -> dict:
    """Latent statistics -> shift/scale, reconstruction ToyGenEval, save_pretrained into ``args.out``."""
    data = load_dataset(args.seed, args.size, args.n_one, args.n_two, args.data_dir)
    mean, std = latent_stats(vae, data)
    vae.register_to_config(shift_factor=round(mean, 6), scaling_factor=round(1.0 / std, 6))
    scores = recon_eval(vae, data)
    report = {"latent_mean": mean, "latent_std": std, "recon_toygeneval": scores}
    print(json.dumps(report, indent=1), flush=True)
    (args.run_dir / "report.json").write_text(json.dumps(report, indent=1))
    vae.save_pretrained(args.run_dir / "final", safe_serialization=True)
    vae.save_pretrained(args.out, safe_serialization=True)
    return report


def arg_parser() -> argparse.ArgumentParser:
    """The command-line options (also how ``training.train_all`` builds this stage's arguments)."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--steps", type=int, default=1500)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--warmup", type=int, default=50)
    parser.add_argument("--kl-weight", type=float, default=1e-6)
    parser.add_argument("--ckpt-every", type=int, default=100)
    parser.add_argument("--size", type=int, default=128, help="scene size in pixels")
    parser.add_argument("--n-one", type=int, default=10_000, help="one-object training scenes (training.data)")
    parser.add_argument("--n-two", type=int, default=10_000, help="two-object training scenes")
    parser.add_argument("--data-dir", type=Path, default=DEFAULT_DIR, help="where training.data caches the scenes")
    parser.add_argument("--run-dir", type=Path, default=RUN_DIR, help="checkpoint, log and report folder")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (one per free core)")
    parser.add_argument("--out", type=Path, default=RUN_DIR / "out", help="where the finished VAE is written")
    return parser


def main() -> None:
    args = arg_parser().parse_args()
    vae = train(args)
    finish(vae, args)


if __name__ == "__main__":
    main()
