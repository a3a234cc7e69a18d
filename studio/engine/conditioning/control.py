"""Structure guidance: control images → (annotator) → VAE latents → FluxControlNet residuals per step.

A ControlExtension adds ``controlnet_block_samples`` to the transformer call. XLabs-style nets (diffusers format,
with an ``input_hint_block``) take the control image itself and a few double blocks whose residuals repeat over the
transformer's blocks (``controlnet_blocks_repeat``), as in diffusers' FluxControlNetPipeline; they cannot be summed
with InstantX-style nets, whose residuals are spread differently. Residuals are computed once per step
on the positive pass and reused on the negative pass (as diffusers' FluxControlNetPipeline does). A unit's scale
at step i is strength × control curve(i), and 0 outside its own [start, end] window; units at 0 cost nothing.

BFL's Flux Control models (FLUX.1-Canny-dev, FLUX.1-Depth-dev) take the control differently: their transformer has
twice the input channels, and the control map's packed latents are concatenated to the image latents' channels at
every step (ChannelControl, as diffusers' FluxControlPipeline does). Such a model needs exactly one control, at
full strength over all steps (it has no conditioning scale).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from PIL import Image

from studio.core.errors import StudioError
from studio.core.limits import check_image
from studio.core.request import ControlSpec, GenerationRequest
from studio.models import kinds as model_kinds

# Shakker-Labs FLUX.1-dev-ControlNet-Union-Pro control modes (its model card)
UNION_MODES = {"canny": 0, "tile": 1, "depth": 2, "blur": 3, "pose": 4, "gray": 5, "lq": 6}
DEFAULT_HUB_CONTROLNET = "Shakker-Labs/FLUX.1-dev-ControlNet-Union-Pro"


@dataclass
class ControlUnit:
    """One loaded control: its net, packed control latents, union mode and per-step scales."""

    net: Any
    cond: torch.Tensor
    mode: torch.Tensor | None
    scales: Sequence[float]
    repeat_blocks: bool = False  # XLabs-style nets: few blocks whose residuals repeat over the transformer's


def takes_pixels(net: Any) -> bool:
    """XLabs-style ControlNets (diffusers format) embed the control *image* with their own ``input_hint_block``;
    InstantX / Shakker-Labs nets take the control's VAE latents."""
    return getattr(net, "input_hint_block", None) is not None


@torch.no_grad()
def control_pixels(pipe: Any, image: Image.Image, width: int, height: int, batch: int) -> torch.Tensor:
    """Control map → the normalised pixel batch an XLabs-style net's hint block takes (FluxControlNetPipeline's
    ``prepare_image``)."""
    pixels = pipe.image_processor.preprocess(image.convert("RGB"), height=height, width=width)
    return pixels.to(device=next(pipe.vae.parameters()).device, dtype=pipe.vae.dtype).repeat(batch, 1, 1, 1)


def controlnet_source(kind: str, configured: dict[str, str], location: Any, model_name: str) -> tuple[str, int | None]:
    """Where the ControlNet for ``kind`` loads from, and its union mode (None for a single-kind net).

    Order: STUDIO_CONTROLNET_<KIND>, STUDIO_CONTROLNET_UNION, the model folder's ``studio.json`` ``controlnets``
    (paths relative to the folder), then the default union ControlNet for hub models.
    """
    import json

    nets = dict(configured)
    if location is not None and not location.is_hub:
        card = Path(location.source) / "studio.json"
        folder_nets = json.loads(card.read_text()).get("controlnets", {}) if card.is_file() else {}
        for name, rel in folder_nets.items():
            nets.setdefault(name, str((Path(location.source) / rel).resolve()))
    if kind in nets:
        return nets[kind], None
    if "union" in nets:
        return nets["union"], UNION_MODES[kind]
    if location is not None and location.is_hub:
        return DEFAULT_HUB_CONTROLNET, UNION_MODES[kind]
    raise StudioError(
        f"no {kind} ControlNet is configured for {model_name} — set STUDIO_CONTROLNET_{kind.upper()} "
        "(or STUDIO_CONTROLNET_UNION) to a FluxControlNetModel folder or hub id"
    )


def annotate(kind: str, image: Image.Image, preprocess: bool, annotators: Path | None) -> Image.Image:
    """The control map for an input image: canny is weight-free; depth and pose need annotator weights.

    An image over ``MAX_PIXELS`` is refused before any annotator allocates for it.
    """
    check_image(image, "the control image")
    base = kind.removesuffix("-map")
    if not preprocess or kind.endswith("-map"):
        return image.convert("RGB")
    if base == "canny":
        import numpy as np
        from controlnet_aux import CannyDetector

        side = min(image.size)
        return CannyDetector()(
            np.asarray(image.convert("RGB")), detect_resolution=side, image_resolution=side, output_type="pil"
        ).resize(image.size)
    from studio.engine.conditioning.annotators import annotate_with_weights

    return annotate_with_weights(base, image, annotators)


def require_edges(kind: str, control_map: Image.Image) -> Image.Image:
    """``control_map`` as is, unless it is a canny map without edges (nothing for a ControlNet to follow): then a
    StudioError naming the fix. Faint lines (a large map scaled down) still count as edges."""
    if kind.removesuffix("-map") != "canny":
        return control_map
    import numpy as np

    if int((np.asarray(control_map.convert("L")) > 8).sum()) >= 8:
        return control_map
    raise StudioError(
        "the canny map has no edges, so the ControlNet would have nothing to follow — use an image with visible "
        "outlines; a canny tool that works on the grey image (ComfyUI's core Canny node) loses the outline between "
        "colours of equal brightness: lower its thresholds, or give the picture itself with the kind 'canny' (edges "
        "found on the colour image)"
    )


@torch.no_grad()
def encode_control(pipe: Any, image: Image.Image, width: int, height: int, batch: int) -> torch.Tensor:
    """Control map → packed VAE latents (deterministic: the latent mode), as InstantX-style ControlNets expect."""
    from diffusers.pipelines.flux.pipeline_flux_controlnet import retrieve_latents

    vae = pipe.vae
    pixels = pipe.image_processor.preprocess(image.convert("RGB"), height=height, width=width)
    pixels = pixels.to(device=next(vae.parameters()).device, dtype=vae.dtype)
    latents = retrieve_latents(vae.encode(pixels), sample_mode="argmax")
    latents = (latents - vae.config.shift_factor) * vae.config.scaling_factor
    channels, h, w = latents.shape[1:]
    latents = latents.repeat(batch, 1, 1, 1)
    return pipe._pack_latents(latents, batch, channels, h, w)


def step_scales(strength: float, start: float, end: float, curve: Sequence[float]) -> list[float]:
    """Scale per step: strength × curve value inside [start, end] (by step position p), else 0."""
    n = len(curve)
    positions = [i / (n - 1) if n > 1 else 0.0 for i in range(n)]
    return [strength * c if start <= p <= end else 0.0 for p, c in zip(positions, curve)]


def check_compatible(net: Any, transformer: Any, source: str) -> None:
    """Refuse a ControlNet made for another base model before generating."""
    for key in ("in_channels", "joint_attention_dim", "pooled_projection_dim"):
        ours, theirs = transformer.config.get(key), net.config.get(key)
        if ours != theirs:
            raise StudioError(
                f"the ControlNet {source} does not fit the loaded model ({key} {theirs} vs {ours}) — "
                "use a ControlNet trained for this base model"
            )


@dataclass
class ChannelControl:
    """BFL Flux Control: the control map's packed latents joined to the image latents' channels at every step."""

    cond: torch.Tensor

    def transformer_kwargs(self, step: int, pass_name: str, inputs: dict[str, Any]) -> dict[str, Any]:
        """``hidden_states`` with the control latents concatenated (FluxControlPipeline's ``torch.cat(dim=2)``)."""
        latents = inputs["hidden_states"]
        return {"hidden_states": torch.cat([latents, self.cond.to(latents.dtype)], dim=2)}


@dataclass
class ControlExtension:
    """Adds the summed ControlNet residuals of all active units to the transformer inputs."""

    units: Sequence[ControlUnit]
    _step: int = -1
    _cached: dict[str, Any] = field(default_factory=dict)

    def transformer_kwargs(self, step: int, pass_name: str, inputs: dict[str, Any]) -> dict[str, Any]:
        """Residuals for this step (computed on the positive pass, reused on the negative one)."""
        if step != self._step:
            self._step = step
            self._cached = self._residuals(step, inputs)
        return self._cached

    @torch.no_grad()
    def _residuals(self, step: int, inputs: dict[str, Any]) -> dict[str, Any]:
        blocks = singles = None
        for unit in self.units:
            scale = unit.scales[step]
            if scale == 0:
                continue
            guidance = inputs["guidance"] if unit.net.config.guidance_embeds else None
            b, s = unit.net(
                hidden_states=inputs["hidden_states"],
                controlnet_cond=unit.cond,
                controlnet_mode=unit.mode,
                conditioning_scale=scale,
                timestep=inputs["timestep"],
                guidance=guidance,
                pooled_projections=inputs["pooled_projections"],
                encoder_hidden_states=inputs["encoder_hidden_states"],
                txt_ids=inputs["txt_ids"],
                img_ids=inputs["img_ids"],
                joint_attention_kwargs=inputs.get("joint_attention_kwargs") or {},
                return_dict=False,
            )
            blocks = b if blocks is None else [x + y for x, y in zip(blocks, b)]
            singles = s if singles is None or s is None else [x + y for x, y in zip(singles, s)]
        if blocks is None:
            return {}
        return {
            "controlnet_block_samples": blocks,
            "controlnet_single_block_samples": singles,
            "controlnet_blocks_repeat": self.units[0].repeat_blocks,
        }


def for_request(
    req: GenerationRequest,
    pipe: Any,
    curve: Sequence[float],
    map_for: Callable[[ControlSpec], Image.Image],
    net_for: Callable[[str], tuple[Any, int | None]],
    device: Any,
) -> ChannelControl | ControlExtension | None:
    """The control extension for a request's controls (None without controls).

    ``map_for`` gives a unit's (annotated, cached) control map at the output size, ``net_for`` the loaded ControlNet
    for a kind and its union mode, ``curve`` the per-step control schedule. A Flux Control model (channel-concat)
    takes its single map's latents; ControlNets get one unit each."""
    if not req.controls:
        return None
    assert req.width and req.height
    if model_kinds.transformer_kind(pipe.transformer) == "control":  # BFL Flux Control: concatenated
        mapped = map_for(req.controls[0])
        return ChannelControl(encode_control(pipe, mapped, req.width, req.height, req.batch_size))
    units = []
    for spec in req.controls:
        mapped = map_for(spec)
        net, mode = net_for(spec.kind.removesuffix("-map"))
        pixels = takes_pixels(net)  # XLabs-style: the image itself, residuals repeated over blocks
        encode = control_pixels if pixels else encode_control
        cond = encode(pipe, mapped, req.width, req.height, req.batch_size)
        mode_tensor = None
        if mode is not None:
            mode_tensor = torch.tensor([[mode]] * req.batch_size, dtype=torch.long, device=device)
        scales = step_scales(spec.strength, spec.start, spec.end, curve)
        units.append(ControlUnit(net, cond, mode_tensor, scales, repeat_blocks=pixels))
    if len({unit.repeat_blocks for unit in units}) > 1:
        raise StudioError(
            "an XLabs-style ControlNet (with an input hint block) cannot be combined with an "
            "InstantX/Shakker-Labs one in one generation — configure ControlNets of one family"
        )
    return ControlExtension(units)
