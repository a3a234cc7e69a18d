"""Gradio API names of docs/cli.md (generate, replay, history, share) for gradio_client.

In multi-user mode every API call has an owner of its own (``visitors.api_owner``): the hash ``k:<sha256>`` of an
``Authorization: Bearer <token>`` header, else the visitor cookie that gradio_client keeps from its first response
(one owner per ``Client``), else the call is refused. API clients never see a browser's records, nor each other's.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import gradio as gr

from studio import spaces_support
from studio.core.errors import InvalidRequest, StudioError
from studio.core.request import GenerationRequest
from studio.ui import adapters
from studio.ui.api_files import (
    ControlInput,
    GenerateOutput,
    ImageFile,
    RegionInput,
    api_controls,
    api_generate_output,
    api_record,
    api_references,
    api_regions,
    store_upload,
)
from studio.web import visitors

if TYPE_CHECKING:
    from studio.service import Studio

EXAMPLES = {"schedule": """'{"guidance": [[0, 4], [1, 2]]}'""", "cache": "'fbcache:0.1'", "lora": "['zwx-orange:0.8']"}
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
    """Gradio API names of docs/cli.md: generate, replay, history, share (gradio_client; docs/api.md).

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
        init_image: ImageFile | None = None,
        mask: ImageFile | None = None,
        strength: float | None = None,
        control: list[ControlInput] | None = None,
        region: list[RegionInput] | None = None,
        region_base_ratio: float = 0.0,
        reference: list[ImageFile] | None = None,
        request: gr.Request | None = None,  # Gradio fills it in; not part of the API
    ) -> GenerateOutput:
        """Generate images (txt2img, img2img, inpaint, controls, regions); the CLI's generate JSON, images as files.

        Args:
            prompt: what to draw (required, at most 4000 characters)
            prompt_2: second prompt for the T5 encoder (default: the prompt)
            negative_prompt: what to avoid; used only when true_cfg > 1
            width: image width, a multiple of 16 from 16 to 4096 (default: the model's)
            height: image height, a multiple of 16 from 16 to 4096 (default: the model's)
            steps: denoising steps, 1 to 200 (default: the model's)
            seed: 0 to 4294967295; image k of a batch uses seed + k (default: random)
            guidance: distilled guidance, 0 to 30 (default: the model's)
            true_cfg: true classifier-free guidance scale, 0 to 30; 1 turns it off
            schedule: per-step curves as JSON, e.g. '{"guidance": [[0, 4], [1, 2]]}' (txt2img only)
            batch: images to make, 1 to 16
            model: a model the server allows (default: the server's STUDIO_MODEL)
            cache: step caching KIND[:THRESHOLD] with KIND none, fbcache, magcache or taylorseer (txt2img only)
            lora: LoRAs from the server's LoRA folders as NAME[:WEIGHT], e.g. ["zwx-orange:0.8"]
            init_image: start from this image (handle_file) → img2img; with mask → inpaint
            mask: inpaint mask image (handle_file), white = repaint; needs init_image
            strength: how far img2img/inpaint may move from init_image, in (0, 1] (default 0.6)
            control: up to 3 {"kind", "image": handle_file(...), "strength", "start", "end"}; kind canny/depth/pose[-map]
            region: up to 8 {"mask": handle_file(...), "prompt"}: white mask area follows its prompt (txt2img)
            region_base_ratio: share of the main prompt mixed into every region prompt, 0 to 1
            reference: reference images (handle_file) for models that edit from references; others refuse, naming why
        Returns:
            the record's id, status, seed, request and timings; its images as files the client downloads
        """
        args = dict(locals())  # the parameters as given, by name
        owner = api_owner(multi_user, request)
        try:
            req = api_request(studio, args)
            return api_generate_output(studio.generate(req, owner=owner))
        except StudioError as exc:
            raise gr.Error(str(exc)) from None

    def replay(id: str, request: gr.Request | None = None) -> GenerateOutput:  # noqa: A002 - the contract's name
        """Regenerate one of your records exactly; the same JSON as generate, with replay_of.

        Args:
            id: the record's id (from generate or history)
        """
        owner = api_owner(multi_user, request)
        try:
            return api_generate_output(studio.replay(id, owner=owner))
        except StudioError as exc:
            raise gr.Error(str(exc)) from None

    def history(search: str | None = None, limit: int = 50, offset: int = 0, request: gr.Request | None = None) -> dict:
        """Your records, newest first: {"records": [...], "total"}; each image as an owner-checked gallery URL.

        Args:
            search: words the prompt must contain (default: every record)
            limit: records per page
            offset: records to skip (for the next page)
        """
        owner = api_owner(multi_user, request)
        try:
            records, total = studio.store.list(search=search or None, limit=limit, offset=offset, owner=owner)
        except StudioError as exc:
            raise gr.Error(str(exc)) from None
        return {"records": [api_record(r) for r in records], "total": total}

    def share(id: str, request: gr.Request | None = None) -> dict:  # noqa: A002 - the contract's name
        """A share link for one of your records: {"token", "url"}.

        Args:
            id: the record's id
        """
        owner = api_owner(multi_user, request)
        try:
            token = studio.store.share(id, owner)
        except StudioError as exc:
            raise gr.Error(str(exc)) from None
        return {"token": token, "url": f"/share/{token}"}

    blocks = gr.context.Context.root_block
    spaces_support.install_startup(blocks)  # ZeroGPU: what launch() would have run
    describe(blocks, generate, gr.api(generate, api_name="generate", concurrency_id=GPU, concurrency_limit=gpu_slots))
    describe(blocks, share, gr.api(share, api_name="share", queue=False))
    describe(blocks, replay, gr.api(replay, api_name="replay", concurrency_id=GPU, concurrency_limit=gpu_slots))
    describe(blocks, history, gr.api(history, api_name="history", queue=False))  # never waits behind generations


def describe(blocks: gr.Blocks, fn: Callable[..., Any], dependency: dict[str, Any]) -> None:
    """``fn``'s docstring (parsed as Gradio parses it) and return type as its ``view_api()`` descriptions.

    ``gr.api`` derives the parameters' types from the hints and the endpoint's description from the docstring, but
    shows a parameter's description only from its schema's ``additional_description``, which it leaves empty; and
    it reads the return type unresolved (a string under ``from __future__ import annotations``), so it shows Any.
    """
    from typing import get_type_hints

    from gradio.utils import get_function_description, get_function_params
    from gradio_client.utils import python_type_to_json_schema

    _, described, returns = get_function_description(fn)
    names = [name for name, *_ in get_function_params(fn)]
    for name, component_id in zip(names, dependency["inputs"], strict=True):
        blocks.blocks[component_id].api_info()["additional_description"] = described.get(name, "")
    for component_id in dependency["outputs"]:
        schema = blocks.blocks[component_id].api_info()
        schema.clear()
        schema.update(
            python_type_to_json_schema(get_type_hints(fn)["return"]), additional_description=" ".join(returns)
        )


def api_request(studio: Studio, args: dict[str, Any]) -> GenerationRequest:
    """The validated request of ``generate``'s arguments; uploads checked and stored (docs/api.md)."""
    from studio.cli.requests import edit_mode, parse_cache, parse_lora

    _check_texts(args)
    if args["control"] or args["region"]:
        if args["init_image"] is not None or args["mask"] is not None:
            raise InvalidRequest(
                "control and region apply to text-to-image only — drop init_image and mask, or drop control and region"
            )
    if args["strength"] is not None and args["init_image"] is None:
        raise InvalidRequest("strength applies to img2img and inpaint — pass init_image, or drop strength")
    assets = studio.store.assets
    references = api_references(args["reference"], assets, args["model"] or studio.engine.model_name)
    init_image = store_upload(assets, args["init_image"], "init_image") if args["init_image"] is not None else None
    mask = store_upload(assets, args["mask"], "mask") if args["mask"] is not None else None
    return GenerationRequest(
        prompt=args["prompt"],
        model=args["model"] or "",
        mode=edit_mode(init_image, mask),
        prompt_2=args["prompt_2"] or None,
        negative_prompt=args["negative_prompt"] or None,
        width=args["width"],
        height=args["height"],
        steps=args["steps"],
        seed=args["seed"],
        batch_size=batch_size(args["batch"]),
        guidance=args["guidance"],
        true_cfg=1.0 if args["true_cfg"] is None else args["true_cfg"],
        schedule=adapters.parse_schedule_json(args["schedule"] or ""),
        cache=parse_cache(args["cache"]),
        loras=tuple(parse_lora(x) for x in args["lora"] or []),
        init_image=init_image,
        mask=mask,
        strength=args["strength"],
        controls=api_controls(args["control"], assets),
        regions=api_regions(args["region"], assets),
        region_base_ratio=0.0 if args["region_base_ratio"] is None else args["region_base_ratio"],
        **references,
    ).validate()


def _check_texts(args: dict[str, Any]) -> None:
    """``schedule`` and ``cache`` are texts and ``lora`` a list of texts, as on the CLI (refused otherwise)."""
    for name in ("schedule", "cache"):
        if args[name] is not None and not isinstance(args[name], str):
            raise InvalidRequest(f"{name} must be text — e.g. {EXAMPLES[name]}")
    loras = args["lora"]
    if loras is not None and (not isinstance(loras, list) or not all(isinstance(x, str) for x in loras)):
        raise InvalidRequest(f"lora must be a list of NAME[:WEIGHT] texts — e.g. {EXAMPLES['lora']}")
