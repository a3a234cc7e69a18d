"""Gradio API names of INTERFACES.md (generate, replay, history, share) for gradio_client.

In multi-user mode every API call has an owner of its own (``visitors.api_owner``): the hash ``k:<sha256>`` of an
``Authorization: Bearer <token>`` header, else the visitor cookie that gradio_client keeps from its first response
(one owner per ``Client``), else the call is refused. API clients never see a browser's records, nor each other's.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import gradio as gr

from studio import spaces_support
from studio.errors import StudioError
from studio.ui import adapters, visitors
from studio.ui.api_files import api_generate_output, api_record

if TYPE_CHECKING:
    from studio.service import Studio

GPU = "gpu"  # the same concurrency id as the UI's generation events
COALESCING_SLOTS = 8  # GPU events let in at once when coalescing is on: they wait on the engine and share a denoise


NO_IDENTITY = (
    "this multi-user studio needs an identity for API calls — pass "
    "headers={'Authorization': 'Bearer <random token>'} to gradio_client.Client (make one with "
    "python -c 'import secrets; print(secrets.token_urlsafe(32))'; keep it to see your history again), "
    "or keep the studio's visitor cookie between calls"
)


def api_owner(multi_user: bool, request: gr.Request | None) -> str | None:
    """The owner of an API call: None in single-user mode, else ``visitors.api_owner`` (refused when there is none)."""
    if not multi_user:
        return None
    try:
        owner = visitors.api_owner(request)
    except ValueError as exc:
        raise gr.Error(str(exc)) from None
    if not owner:
        raise gr.Error(NO_IDENTITY)
    return owner


def batch_size(batch: int | None) -> int:
    """The request's batch size: 1 when left out (None); 0 and negatives go to validation, as on the CLI."""
    return 1 if batch is None else batch


def register_api(studio: Studio, multi_user: bool, gpu_slots: int = 1) -> None:
    """Gradio API names of INTERFACES.md: generate, replay, history, share (gradio_client).

    In multi-user mode each API client is an owner of its own (see the module docstring).
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
        request: gr.Request | None = None,  # Gradio fills it in; not part of the API
    ) -> dict:
        """Generate images; returns the CLI's generate JSON."""
        from studio.cli_requests import parse_cache, parse_lora
        from studio.request import GenerationRequest

        owner = api_owner(multi_user, request)
        try:
            req = GenerationRequest(
                prompt=prompt, model=model or "", prompt_2=prompt_2 or None, negative_prompt=negative_prompt or None,
                width=width, height=height, steps=steps, seed=seed, batch_size=batch_size(batch), guidance=guidance,
                true_cfg=1.0 if true_cfg is None else true_cfg, schedule=adapters.parse_schedule_json(schedule or ""),
                cache=parse_cache(cache), loras=tuple(parse_lora(x) for x in lora or []),
            ).validate()
            return api_generate_output(studio.generate(req, owner=owner))
        except StudioError as exc:
            raise gr.Error(str(exc)) from None

    def replay(id: str, request: gr.Request | None = None) -> dict:  # noqa: A002 - the contract's name
        """Regenerate a record exactly."""
        owner = api_owner(multi_user, request)
        try:
            return api_generate_output(studio.replay(id, owner=owner))
        except StudioError as exc:
            raise gr.Error(str(exc)) from None

    def history(
        search: str | None = None, limit: int = 50, offset: int = 0, request: gr.Request | None = None
    ) -> dict:
        """Records, newest first."""
        owner = api_owner(multi_user, request)
        try:
            records, total = studio.store.list(search=search or None, limit=limit, offset=offset, owner=owner)
        except StudioError as exc:
            raise gr.Error(str(exc)) from None
        return {"records": [api_record(r) for r in records], "total": total}

    def share(id: str, request: gr.Request | None = None) -> dict:  # noqa: A002 - the contract's name
        """A share link for a record: {"token", "url"}."""
        owner = api_owner(multi_user, request)
        try:
            token = studio.store.share(id, owner)
        except StudioError as exc:
            raise gr.Error(str(exc)) from None
        return {"token": token, "url": f"/share/{token}"}

    spaces_support.install_startup(gr.context.Context.root_block)  # ZeroGPU: what launch() would have run
    gr.api(generate, api_name="generate", concurrency_id=GPU, concurrency_limit=gpu_slots)
    gr.api(share, api_name="share", queue=False)
    gr.api(replay, api_name="replay", concurrency_id=GPU, concurrency_limit=gpu_slots)
    gr.api(history, api_name="history", queue=False)  # browsing never waits behind generations
