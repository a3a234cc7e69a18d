"""Write a diffusers/peft Flux LoRA on the double-stream blocks in kohya sd-scripts' Flux format.

    python -m training.kohya_export assets/loras/outlined.safetensors assets/loras/kohya/outlined-kohya.safetensors

kohya fuses q/k/v into ``lora_unet_double_blocks_{i}_img_attn_qkv`` (``txt_attn_qkv`` for the text stream's
``add_{q,k,v}_proj``): its down weight is the three down weights stacked (rank 3r) and its up weight the
block-diagonal of the three up weights, with ``alpha`` = 3r so that alpha / rank keeps peft's scale of 1 — exactly
the "sparse" layout diffusers' ``_convert_kohya_flux_lora_to_diffusers`` splits back. The other layers map one to
one: ``to_out.0`` → ``img_attn_proj``, ``to_add_out`` → ``txt_attn_proj``, ``ff.net.0.proj`` / ``ff.net.2`` →
``img_mlp_0`` / ``img_mlp_2``, ``ff_context.net.*`` → ``txt_mlp_*``. Single-block LoRAs are not exported (kohya
fuses them with the MLP at FLUX.1's full width, which diffusers' converter assumes).
"""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import save_file

_KEY = re.compile(
    r"^transformer\.transformer_blocks\.(\d+)\.(attn\.(?:to_q|to_k|to_v|to_out\.0|add_q_proj|add_k_proj|"
    r"add_v_proj|to_add_out)|ff\.net\.(?:0\.proj|2)|ff_context\.net\.(?:0\.proj|2))\.lora_([AB])\.weight$"
)
_FUSED = {
    "img_attn_qkv": ("attn.to_q", "attn.to_k", "attn.to_v"),
    "txt_attn_qkv": ("attn.add_q_proj", "attn.add_k_proj", "attn.add_v_proj"),
}
_SINGLE = {
    "img_attn_proj": "attn.to_out.0",
    "txt_attn_proj": "attn.to_add_out",
    "img_mlp_0": "ff.net.0.proj",
    "img_mlp_2": "ff.net.2",
    "txt_mlp_0": "ff_context.net.0.proj",
    "txt_mlp_2": "ff_context.net.2",
}


def to_kohya(tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """kohya Flux tensors for the double-block LoRA ``tensors`` (diffusers keys); other layers are refused, and so
    is a q/k/v triple with a part missing (kohya can only store the three together)."""
    parts: dict[int, dict[str, torch.Tensor]] = {}
    for key, value in tensors.items():
        match = _KEY.match(key)
        if not match:
            raise ValueError(f"{key} is not a double-block LoRA weight; only those can be exported")
        block, module, ab = match.groups()
        parts.setdefault(int(block), {})[f"{module}.{ab}"] = value
    out: dict[str, torch.Tensor] = {}
    for block, p in sorted(parts.items()):
        prefix = f"lora_unet_double_blocks_{block}"
        for name, modules in _FUSED.items():
            present = [m for m in modules if f"{m}.A" in p]
            if not present:
                continue
            if len(present) < 3:
                raise ValueError(f"block {block} has a LoRA on {present} but not on all of {list(modules)}")
            downs, ups = [p[f"{m}.A"] for m in modules], [p[f"{m}.B"] for m in modules]
            out[f"{prefix}_{name}.lora_down.weight"] = torch.cat(downs).contiguous()
            out[f"{prefix}_{name}.lora_up.weight"] = torch.block_diag(*ups).contiguous()
            out[f"{prefix}_{name}.alpha"] = torch.tensor(float(3 * downs[0].shape[0]))
        for name, module in _SINGLE.items():
            if f"{module}.A" in p:
                out[f"{prefix}_{name}.lora_down.weight"] = p[f"{module}.A"].contiguous()
                out[f"{prefix}_{name}.lora_up.weight"] = p[f"{module}.B"].contiguous()
                out[f"{prefix}_{name}.alpha"] = torch.tensor(float(p[f"{module}.A"].shape[0]))
    return out


def export(src: Path, dest: Path) -> Path:
    """Convert ``src`` to kohya format at ``dest`` with kohya-style ``ss_*`` metadata (trigger words kept)."""
    with safe_open(str(src), "pt") as f:
        tensors = {k: f.get_tensor(k) for k in f.keys()}
        meta = f.metadata() or {}
    kohya = to_kohya(tensors)
    trigger = meta.get("flux_studio.trigger_words", "")
    rank = next(v.shape[0] for k, v in tensors.items() if k.endswith("lora_A.weight"))
    metadata = {
        "ss_base_model_version": "flux1",
        "ss_network_module": "networks.lora_flux",
        "ss_network_dim": str(rank),
        "ss_network_alpha": str(rank),
        "ss_output_name": dest.stem,
        "ss_tag_frequency": json.dumps({"toy": {trigger: 64}} if trigger else {}),
        "modelspec.title": dest.stem,
        "flux_studio.converted_from": src.name,
    }
    dest.parent.mkdir(parents=True, exist_ok=True)
    save_file(kohya, str(dest), metadata=metadata)
    return dest


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("src", type=Path)
    parser.add_argument("dest", type=Path)
    args = parser.parse_args()
    print(export(args.src, args.dest))


if __name__ == "__main__":
    main()
