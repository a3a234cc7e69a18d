"""Turn kept training checkpoints (``training/checkpoints/...``) into the shipped diffusers folders.

    python -m training.export_kept --base training/checkpoints/base128 \
        --model-dir training/checkpoints/flux-mini-128 --out assets/models/flux-mini \
        --controlnet training/checkpoints/controlnet128 --controlnet-out assets/models/flux-mini-controlnet-union \
        --undistilled

The base's EMA (transformer + CLIP + T5) is written with ``save_pretrained`` next to ``--model-dir``'s VAE,
tokenizers, scheduler and ``studio.json`` (``train_base.export``); the ControlNet's EMA is loaded into a
``FluxControlNetModel`` of the shipped net's config and saved the same way. ``--controlnet-name`` keeps the
``controlnets`` entry of the output's ``studio.json`` pointing at it, so the folder works offline as before;
``--undistilled`` writes ``"guidance_distilled": false`` there (a base that was not guidance-distilled ignores the
guidance value, and the studio says so).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from diffusers import FluxControlNetModel
from safetensors.torch import load_model

from training import portable_checkpoint
from training.spec import MiniSpec
from training.train_base import Models, export, init_weights


def kept_step(kept: Path) -> int:
    """The training step a kept checkpoint folder was saved at."""
    return json.loads((kept / portable_checkpoint.STATE).read_text())["step"]


def export_base(kept: Path, model_dir: Path, out: Path, controlnet_ref: str | None, distilled: bool = True) -> int:
    """Write the kept base's EMA as a full flux-mini folder at ``out``; returns its training step."""
    models = Models(MiniSpec(), model_dir)
    init_weights(models, kept)
    export(models, out, model_dir, run_dir=out.parent / f".{out.name}-export")
    card = json.loads((out / "studio.json").read_text())
    if controlnet_ref:
        card["controlnets"] = {"union": controlnet_ref}
    if not distilled:
        card["guidance_distilled"] = False
    (out / "studio.json").write_text(json.dumps(card, indent=2) + "\n")
    return kept_step(kept)


def export_controlnet(kept: Path, config_from: Path, out: Path) -> int:
    """Write the kept ControlNet's EMA (architecture from ``config_from``) to ``out``; returns its step."""
    net = FluxControlNetModel.from_pretrained(config_from)
    load_model(net, str(kept / "ema.safetensors"), strict=True)
    net.save_pretrained(out, safe_serialization=True)
    return kept_step(kept)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--base", type=Path, required=True, help="kept base checkpoint folder (train_base --keep)")
    parser.add_argument(
        "--model-dir",
        type=Path,
        required=True,
        help="folder with the VAE, tokenizers, scheduler and studio.json to ship with it",
    )
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--controlnet", type=Path, help="kept ControlNet checkpoint (train_controlnet --keep)")
    parser.add_argument(
        "--controlnet-config",
        type=Path,
        default=Path("assets/models/flux-mini-controlnet-union"),
        help="a ControlNet folder of the same architecture (its config is reused)",
    )
    parser.add_argument("--controlnet-out", type=Path)
    parser.add_argument(
        "--controlnet-name",
        default="../flux-mini-controlnet-union",
        help="the studio.json 'controlnets.union' entry written into --out",
    )
    parser.add_argument(
        "--undistilled",
        action="store_true",
        help="the base is not guidance-distilled: write guidance_distilled false into studio.json",
    )
    args = parser.parse_args()
    step = export_base(args.base, args.model_dir, args.out, args.controlnet_name, distilled=not args.undistilled)
    print(f"base of step {step} written to {args.out}")
    if args.controlnet is not None:
        out = args.controlnet_out or args.out.parent / "flux-mini-controlnet-union"
        step = export_controlnet(args.controlnet, args.controlnet_config, out)
        print(f"ControlNet of step {step} written to {out}")


if __name__ == "__main__":
    main()
