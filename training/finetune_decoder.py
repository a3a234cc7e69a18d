"""Fine-tune only the VAE decoder (encoder frozen, so the base model's latents stay valid). Written, not yet run.

    python -m training.finetune_decoder --seed 0 --steps 1000 --batch 16

Why: after ``training.train_vae`` the reconstructions are right for circles, squares and triangles but stick
figures (1-2 px strokes at 64 px) come back as blobs. This stage oversamples scenes with a stick figure
(``--p-figure``) and weights edge pixels more (``--edge-boost``). ``shift_factor`` / ``scaling_factor`` are
unchanged (they describe the encoder). Resumable from ``runs/decoder/ckpt.pt``; at the end the reconstruction
ToyGenEval is measured and the VAE is written to ``--out``.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from diffusers import AutoencoderKL

from training.data import load_dataset
from training.train_vae import edge_weight, lr_at, recon_eval

RUN_DIR = Path("runs/decoder")


def figure_index(prompts: list[str]) -> np.ndarray:
    """Indices of scenes that contain a stick figure."""
    return np.array([i for i, p in enumerate(prompts) if "stick figure" in p])


def train(args: argparse.Namespace) -> AutoencoderKL:
    """Fine-tune (or resume) the decoder; returns the VAE in eval mode."""
    torch.set_num_threads(1)
    data = load_dataset(args.seed)
    figures = figure_index(data.prompts)
    vae = AutoencoderKL.from_pretrained(args.vae)
    vae.encoder.requires_grad_(False).eval()
    params = list(vae.decoder.parameters())
    opt = torch.optim.AdamW(params, lr=args.lr, weight_decay=0.0)
    RUN_DIR.mkdir(parents=True, exist_ok=True)
    ckpt = RUN_DIR / "ckpt.pt"
    step = 0
    if ckpt.exists():
        state = torch.load(ckpt, weights_only=False)
        vae.load_state_dict(state["model"])
        opt.load_state_dict(state["opt"])
        step = state["step"]
        print(f"resumed at step {step}", flush=True)
    log = (RUN_DIR / "log.jsonl").open("a")
    vae.decoder.train()
    t0 = time.time()
    while step < args.steps:
        rng = np.random.default_rng([args.seed, 29, step])
        n_fig = int(rng.binomial(args.batch, args.p_figure))
        idx = np.concatenate([rng.choice(figures, n_fig), rng.integers(0, len(data), args.batch - n_fig)])
        x = data.tensor(idx)
        with torch.no_grad():
            z = vae.encode(x).latent_dist.sample(generator=torch.Generator().manual_seed(args.seed * 1_000 + step))
        recon = vae.decode(z).sample
        w = edge_weight(x, args.edge_boost)
        l1 = ((recon - x).abs() * w).mean()
        mse = F.mse_loss(recon, x)
        loss = l1 + mse
        for group in opt.param_groups:
            group["lr"] = lr_at(step, args.steps, args.lr, args.warmup)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        step += 1
        if step % 20 == 0 or step == args.steps:
            rec = {"step": step, "loss": loss.item(), "l1": l1.item(), "mse": mse.item(),
                   "s_per_step": (time.time() - t0) / 20}
            t0 = time.time()
            log.write(json.dumps(rec) + "\n")
            log.flush()
            print(rec, flush=True)
        if step % args.ckpt_every == 0 or step == args.steps:
            torch.save({"model": vae.state_dict(), "opt": opt.state_dict(), "step": step}, ckpt)
    return vae.eval()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--vae", type=Path, default=Path("runs/vae/final"), help="the trained VAE to start from")
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--lr", type=float, default=3e-4)
    parser.add_argument("--warmup", type=int, default=20)
    parser.add_argument("--p-figure", type=float, default=0.6)
    parser.add_argument("--edge-boost", type=float, default=10.0)
    parser.add_argument("--ckpt-every", type=int, default=100)
    parser.add_argument("--out", type=Path, default=Path("assets/models/flux-mini/vae"))
    args = parser.parse_args()
    vae = train(args)
    data = load_dataset(args.seed)
    report = {"recon_toygeneval": recon_eval(vae, data)}
    print(json.dumps(report, indent=1), flush=True)
    (RUN_DIR / "report.json").write_text(json.dumps(report, indent=1))
    vae.save_pretrained(RUN_DIR / "final", safe_serialization=True)
    vae.save_pretrained(args.out, safe_serialization=True)


if __name__ == "__main__":
    main()
