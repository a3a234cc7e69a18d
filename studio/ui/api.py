"""Gradio API names of INTERFACES.md (generate, replay, history, share) for gradio_client."""

from __future__ import annotations

from typing import TYPE_CHECKING

import gradio as gr

from studio.errors import StudioError
from studio.outputs import generate_output
from studio.ui import adapters

if TYPE_CHECKING:
    from studio.service import Studio

GPU = "gpu"  # the same concurrency id as the UI's generation events
COALESCING_SLOTS = 8  # GPU events let in at once when coalescing is on: they wait on the engine and share a denoise


def register_api(studio: Studio, owner: str | None, gpu_slots: int = 1) -> None:
    """Gradio API names of INTERFACES.md: generate, replay, history, share (gradio_client).

    In multi-user mode API clients are one owner of their own (``API_OWNER``): they never see browsers' records.
    """

    def generate(
        prompt: str,
        prompt_2: str | None = None,
        negative_prompt: str | None = None,
        width: int | None = None,
        height: int | None = None,
        steps: int | None = None,
        seed: int | None = None,
        guidance: float | None = None,
        true_cfg: float = 1.0,
        schedule: str | None = None,
        batch: int = 1,
        model: str | None = None,
        cache: str | None = None,
        lora: list[str] | None = None,
    ) -> dict:
        """Generate images; returns the CLI's generate JSON."""
        from studio.cli_requests import parse_cache, parse_lora
        from studio.request import GenerationRequest

        try:
            req = GenerationRequest(
                prompt=prompt, model=model or "", prompt_2=prompt_2 or None, negative_prompt=negative_prompt or None,
                width=width, height=height, steps=steps, seed=seed, batch_size=batch or 1, guidance=guidance,
                true_cfg=1.0 if true_cfg is None else true_cfg, schedule=adapters.parse_schedule_json(schedule or ""),
                cache=parse_cache(cache), loras=tuple(parse_lora(x) for x in lora or []),
            ).validate()
            return generate_output(studio.generate(req, owner=owner))
        except StudioError as exc:
            raise gr.Error(str(exc)) from None

    def replay(id: str) -> dict:  # noqa: A002 - the contract's name
        """Regenerate a record exactly."""
        try:
            return generate_output(studio.replay(id, owner=owner))
        except StudioError as exc:
            raise gr.Error(str(exc)) from None

    def history(search: str | None = None, limit: int = 50, offset: int = 0) -> dict:
        """Records, newest first."""
        try:
            records, total = studio.store.list(search=search or None, limit=limit, offset=offset, owner=owner)
        except StudioError as exc:
            raise gr.Error(str(exc)) from None
        return {"records": records, "total": total}

    def share(id: str) -> dict:  # noqa: A002 - the contract's name
        """A share link for a record: {"token", "url"}."""
        try:
            token = studio.store.share(id, owner)
        except StudioError as exc:
            raise gr.Error(str(exc)) from None
        return {"token": token, "url": f"/share/{token}"}

    gr.api(generate, api_name="generate", concurrency_id=GPU, concurrency_limit=gpu_slots)
    gr.api(share, api_name="share", queue=False)
    gr.api(replay, api_name="replay", concurrency_id=GPU, concurrency_limit=gpu_slots)
    gr.api(history, api_name="history", queue=False)  # browsing never waits behind generations
