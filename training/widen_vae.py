"""Widen a trained AutoencoderKL without changing what it computes (Net2Net-style channel duplication).

    python -m training.widen_vae --vae assets/models/flux-mini/vae --channels 32 64 128 128 --out runs/wide_vae/start

Why: the flux-mini VAE's full-resolution decoder stage has 16 channels, too few to draw 1-px stick-figure strokes
from an 8×8 latent; but the encoder defines the latent space the transformer, ControlNet and LoRA were trained in,
and diffusers' AutoencoderKL has one ``block_out_channels`` for both halves. So every channel of every stage is
duplicated ``factor`` times: a layer's output channels are tiled, the next layer's input weights are tiled and
divided by ``factor``. GroupNorm (one group here) sees the same mean and variance over the tiled channels,
residual sums and nearest upsampling commute with tiling, and the mid-block attention's query is scaled by
``1 / sqrt(factor)`` to undo the larger dot product — so the wide VAE encodes and decodes exactly as the narrow one
(float rounding apart). The decoder's tiled input weights then get zero-sum noise across copies (still exact, since
the copies' inputs are equal) so fine-tuning (``training.finetune_decoder --vae OUT``) can make the copies differ
and use the new capacity; the encoder stays frozen and identical.
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

import torch
from diffusers import AutoencoderKL


def _tile(tensor: torch.Tensor, dim: int, factor: int) -> torch.Tensor:
    return torch.cat([tensor] * factor, dim=dim)


def _zero_sum_noise(shape: torch.Size, factor: int, scale: float, gen: torch.Generator) -> torch.Tensor:
    """Noise for ``factor`` copies tiled along the input dim (1) that sums to zero across the copies."""
    copies = torch.randn((factor, *shape), generator=gen) * scale
    copies = copies - copies.mean(dim=0, keepdim=True)
    return torch.cat(list(copies), dim=1)


def widen_tensor(narrow: torch.Tensor, wide_shape: torch.Size) -> tuple[torch.Tensor, int]:
    """Tile ``narrow`` to ``wide_shape``: outputs (dim 0) copied, inputs (dim 1) copied and divided by the factor.

    Returns the tensor and the input factor (1 where dim 1 did not grow)."""
    out = narrow
    in_factor = 1
    for dim, (n, w) in enumerate(zip(narrow.shape, wide_shape, strict=True)):
        if n == w:
            continue
        if w % n or dim > 1:
            raise ValueError(
                f"cannot widen {tuple(narrow.shape)} to {tuple(wide_shape)}: only whole multiples of "
                "the output and input channels"
            )
        factor = w // n
        out = _tile(out, dim, factor)
        if dim == 1:
            out = out / factor
            in_factor = factor
    return out, in_factor


def widen_vae(narrow: AutoencoderKL, channels: tuple[int, ...], noise: float = 0.05, seed: int = 0) -> AutoencoderKL:
    """A wider VAE computing the same function as ``narrow``; ``noise`` (relative to each weight's std) breaks the
    decoder copies' symmetry without changing the output."""
    config = dict(narrow.config)
    old = tuple(config["block_out_channels"])
    if (
        len(channels) != len(old)
        or len({c / o for c, o in zip(channels, old, strict=True)}) != 1
        or channels[0] % old[0]
    ):
        # one factor for all blocks: with mixed factors a block whose input and output widths become equal loses
        # its learned 1x1 shortcut (diffusers builds it only where they differ), which no tiling can reproduce
        raise ValueError(f"--channels must be one whole multiple of {old} for every block")
    if config.get("norm_num_groups", 32) != 1:
        raise ValueError("channel tiling keeps GroupNorm statistics only with norm_num_groups=1")
    config["block_out_channels"] = list(channels)
    wide = AutoencoderKL.from_config({k: v for k, v in config.items() if not k.startswith("_")})
    narrow_state = narrow.state_dict()
    gen = torch.Generator().manual_seed(seed)
    state = {}
    for name, target in wide.state_dict().items():
        tensor, in_factor = widen_tensor(narrow_state[name], target.shape)
        if "attentions" in name and ".to_q." in name and target.shape[0] != narrow_state[name].shape[0]:
            tensor = tensor / math.sqrt(target.shape[0] // narrow_state[name].shape[0])
        if name.startswith("decoder.") and in_factor > 1 and noise > 0 and tensor.ndim > 1:
            scale = noise * float(narrow_state[name].std())
            tensor = tensor + _zero_sum_noise(
                tensor.shape[:1] + (tensor.shape[1] // in_factor,) + tensor.shape[2:], in_factor, scale, gen
            )
        state[name] = tensor
    wide.load_state_dict(state)
    return wide.eval()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--vae", type=Path, default=Path("assets/models/flux-mini/vae"))
    parser.add_argument("--channels", type=int, nargs="+", default=[32, 64, 128, 128])
    parser.add_argument("--noise", type=float, default=0.05)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    narrow = AutoencoderKL.from_pretrained(args.vae)
    wide = widen_vae(narrow, tuple(args.channels), args.noise, args.seed)
    wide.save_pretrained(args.out, safe_serialization=True)
    print(
        f"{sum(p.numel() for p in narrow.parameters())} -> {sum(p.numel() for p in wide.parameters())} parameters; "
        f"written to {args.out}"
    )


if __name__ == "__main__":
    main()
