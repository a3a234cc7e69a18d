"""Regional prompting on Flux: each painted region's image tokens attend to their own prompt (and the base).

The text of every region prompt is appended to the base prompt's tokens; one boolean joint-attention mask over
[text tokens | image tokens] says who may attend to whom:

- base text ↔ every image token; region text k ↔ the image tokens of region k only;
- text segments never attend to each other's tokens; image tokens attend to all image tokens;
- unpainted image tokens see only the base prompt.

Overlaps: a later region wins. A region that covers no image token is dropped, so a mask selecting nothing
changes nothing (the plain base conditioning is used, bit for bit).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import torch

from studio.core.errors import InvalidRequest
from studio.core.request import GenerationRequest
from studio.engine import attention
from studio.engine.sampling import TextConditioning

MAX_TEXT_TOKENS = 4096


def token_regions(masks: Sequence[np.ndarray], height: int, width: int, cell: int = 16) -> np.ndarray:
    """Per image token (row-major over the packed grid), the index of its region or -1: later masks win.

    Each mask is a boolean (H, W) array; a token is in a region when most of its cell is painted.
    """
    rows, cols = height // cell, width // cell
    owner = np.full(rows * cols, -1, dtype=np.int64)
    for k, mask in enumerate(masks):
        if mask.shape != (height, width):
            raise InvalidRequest(f"region mask {k + 1} is {mask.shape[1]}x{mask.shape[0]}, expected {width}x{height}")
        cover = mask[: rows * cell, : cols * cell].reshape(rows, cell, cols, cell).mean(axis=(1, 3))
        owner[(cover > 0.5).reshape(-1)] = k
    return owner


def attention_mask(owner: np.ndarray, text_len: int, regions: int) -> torch.Tensor:
    """Boolean (S, S) mask, S = text_len * (1 + regions) + image tokens; True = may attend."""
    n_img = owner.shape[0]
    n_txt = text_len * (1 + regions)
    size = n_txt + n_img
    segment = np.repeat(np.arange(1 + regions), text_len)  # 0 = base, k+1 = region k
    allowed = np.zeros((size, size), dtype=bool)
    allowed[:n_txt, :n_txt] = segment[:, None] == segment[None, :]
    image_segment = owner + 1  # 0 = unpainted
    text_sees_image = (segment[:, None] == 0) | (segment[:, None] == image_segment[None, :])
    allowed[:n_txt, n_txt:] = text_sees_image
    allowed[n_txt:, :n_txt] = text_sees_image.T
    allowed[n_txt:, n_txt:] = True
    return torch.from_numpy(allowed)


@dataclass(frozen=True)
class RegionalConditioning:
    """What the loop needs: the joined text tokens and the mask, plus the per-step on/off window and the configured
    attention backend (the loop runs on one that takes masks: ``scope``)."""

    cond: TextConditioning
    mask: torch.Tensor
    window: Sequence[float]
    backend: str = ""

    def scope(self, pipe: Any) -> AbstractContextManager[None]:
        """Held around the loop: native SDPA while the configured backend cannot take the mask."""
        return attention.masked_attention(pipe.transformer, self.backend)

    def transformer_kwargs(self, step: int, pass_name: str, inputs: dict[str, Any]) -> dict[str, Any]:
        """Joined text + mask on the positive pass at steps where the window is > 0.5; {} otherwise."""
        if pass_name != "cond" or self.window[step] <= 0.5:
            return {}
        return {
            "encoder_hidden_states": self.cond.prompt_embeds,
            "txt_ids": self.cond.text_ids,
            "joint_attention_kwargs": {"attention_mask": self.mask},
        }


def build(
    base: TextConditioning,
    region_conds: Sequence[TextConditioning],
    masks: Sequence[np.ndarray],
    height: int,
    width: int,
    window: Sequence[float],
    batch: int,
    base_ratio: float = 0.0,
) -> RegionalConditioning | None:
    """Regional conditioning for a batch, or None when no region covers any image token.

    ``base_ratio`` r mixes the base prompt into each region's text tokens: (1 − r)·region + r·base (0 = off).
    """
    owner = token_regions(masks, height, width)
    used = [k for k in range(len(masks)) if (owner == k).any()]
    if not used:
        return None
    remap = {old: new for new, old in enumerate(used)}
    owner = np.array([remap.get(int(k), -1) for k in owner])
    text_len = base.prompt_embeds.shape[1]
    total = text_len * (1 + len(used)) + owner.shape[0]
    if total > MAX_TEXT_TOKENS:
        raise InvalidRequest(
            f"{len(used)} regions need {total} attention tokens — use at most "
            f"{MAX_TEXT_TOKENS // text_len - 2} regions at this size"
        )
    region_seqs = [region_conds[k].prompt_embeds for k in used]
    if base_ratio > 0:
        region_seqs = [torch.lerp(seq, base.prompt_embeds, base_ratio) for seq in region_seqs]
    seq = torch.cat([base.prompt_embeds, *region_seqs], dim=1)
    ids = torch.zeros(seq.shape[1], 3, dtype=base.text_ids.dtype, device=base.text_ids.device)
    joined = TextConditioning(seq.expand(batch, -1, -1), base.pooled_embeds.expand(batch, -1), ids)
    mask = attention_mask(owner, text_len, len(used)).to(seq.device)
    return RegionalConditioning(joined, mask, list(window))


def for_request(
    req: GenerationRequest,
    load: Callable[[str], Any],
    encode: Callable[[str, str | None], TextConditioning],
    window: Sequence[float],
    backend: str = "",
) -> RegionalConditioning | None:
    """The regional extension for a request's painted regions (None without regions or when all are empty).

    ``load`` opens a stored mask (PIL), ``encode`` gives a prompt's cached encodings, ``window`` the per-step regions
    curve, ``backend`` the configured attention backend."""
    if not req.regions:
        return None
    from PIL import Image

    assert req.width and req.height
    masks = []
    for region in req.regions:
        mask = load(region.mask).convert("L")
        if mask.size != (req.width, req.height):
            mask = mask.resize((req.width, req.height), Image.Resampling.NEAREST)
        masks.append(np.asarray(mask) > 127)
    region_conds = [encode(region.prompt, None) for region in req.regions]
    base = encode(req.prompt, req.prompt_2)
    built = build(base, region_conds, masks, req.height, req.width, window, req.batch_size, req.region_base_ratio)
    return None if built is None else replace(built, backend=backend)
