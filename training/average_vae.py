"""Average the VAE weights of several fine-tune snapshots into one VAE folder (checkpoint averaging).

    python -m training.average_vae --start runs/wide_vae/start --out runs/wide_vae/avg \\
        runs/wide_vae/snaps/1200.pt runs/wide_vae/snaps/1400.pt runs/wide_vae/snaps/1600.pt

Why: the adversarial decoder fine-tune oscillates from checkpoint to checkpoint (the generator chases its
discriminator); the mean of the weights along the late trajectory — what an EMA of the generator, as in StyleGAN
or Polyak averaging, keeps — decodes more reliably than any single snapshot (measured in the model card). The
snapshots come from ``training.finetune_decoder --snapshots`` (``{"model": state_dict, "step": N}``, written by this
project, so loading them trusts only our own files); ``--start`` is the folder whose config they share.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch
from diffusers import AutoencoderKL


def average_states(states: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """The element-wise mean of state dicts with the same keys and shapes."""
    if not states:
        raise ValueError("give at least one snapshot")
    keys = states[0].keys()
    if any(s.keys() != keys for s in states):
        raise ValueError("the snapshots are of different models")
    return {k: torch.stack([s[k].float() for s in states]).mean(dim=0).to(states[0][k].dtype) for k in keys}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("snapshots", type=Path, nargs="+")
    parser.add_argument("--start", type=Path, required=True, help="a VAE folder with the snapshots' config")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    loaded = [torch.load(p, map_location="cpu", weights_only=True) for p in args.snapshots]
    vae = AutoencoderKL.from_pretrained(args.start)
    vae.load_state_dict(average_states([s["model"] for s in loaded]))
    vae.save_pretrained(args.out, safe_serialization=True)
    print(f"mean of steps {[s['step'] for s in loaded]} written to {args.out}")


if __name__ == "__main__":
    main()
