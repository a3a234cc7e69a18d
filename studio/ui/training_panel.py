"""LoRA training tab: images (uploaded or picked from the history) with captions, trigger word, rank, steps, learning
rate; trains on the resident model with live loss, can be stopped (nothing half-written appears in the picker), and
the LoRA joins the picker. A history image's caption defaults to its record's prompt."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import gradio as gr
from PIL import Image

from studio.core.errors import Cancelled, InvalidRequest, StudioError
from studio.core.limits import open_image
from studio.ui import stored_images
from studio.ui.jobs import stream_job

if TYPE_CHECKING:
    from studio.service import Studio


def captions_for(files: list[str], text: str, trigger: str) -> list[str]:
    """One caption per image: the matching line of ``text``, else the file name as words (trigger goes in front)."""
    lines = [line.strip() for line in (text or "").splitlines()]
    captions = []
    for k, path in enumerate(files):
        line = lines[k] if k < len(lines) else ""
        captions.append(line or Path(path).stem.replace("_", " ").replace("-", " "))
    return captions


def load_images(paths: list[str]) -> list[Image.Image]:
    """The training images in RGB; the count, each file's bytes and (from its header) pixels are checked first."""
    from studio.lora.training_inputs import MAX_IMAGES

    if len(paths) > MAX_IMAGES:
        raise InvalidRequest(f"{len(paths)} training images are too many — use at most {MAX_IMAGES} (10–30 work best)")
    return [open_image(path, f"training image {Path(path).name!r}").convert("RGB") for path in paths]


HISTORY_CHOICES = 200
PROGRESS_EVERY_S = 0.25  # status updates at most 4 per second: a tiny model trains ~50 steps/s


def history_choices(studio: Studio, owner: str | None) -> list[tuple[str, str]]:
    """(label, record id) of the visitor's finished generations with an image, newest first."""
    records, _ = studio.store.list(limit=HISTORY_CHOICES, owner=owner, status="done")
    return [(f"{r['request']['prompt'][:70] or '(no prompt)'} · {r['id']}", r["id"]) for r in records if r["images"]]


def history_examples(studio: Studio, ids: list[str], owner: str | None) -> tuple[list[str], list[str]]:
    """(image paths, prompts) of the chosen records — only the visitor's own (NotFound otherwise)."""
    paths, prompts = [], []
    for gen_id in ids:
        record = studio.store.get(gen_id, owner)
        if not record["images"]:
            raise StudioError(f"record {gen_id[:8]} has no image — pick another")
        paths.append(record["images"][0]["path"])
        prompts.append(record["request"]["prompt"])
    return paths, prompts


def build(
    studio: Studio, gpu_slots: int = 1, owner_of: Callable[[Any], str | None] = lambda request: None
) -> dict[str, Any]:
    """The Train tab's widgets and events (``owner_of(request)``: whose history the visitor may pick from)."""
    from studio.lora.training_inputs import MAX_IMAGES, MIN_IMAGES

    w: dict[str, Any] = {}
    gr.Markdown(
        f"Train a LoRA on the loaded model from {MIN_IMAGES}–{MAX_IMAGES} images (10–30 work best). Images "
        "are centre-cropped to the model's size; the trigger word is put in front of every caption. The "
        "result appears in the LoRA picker (press *Rescan folders*)."
    )
    w["images"] = gr.File(
        file_count="multiple", file_types=["image"], type="filepath", label="Images", elem_id="train_images"
    )
    with gr.Row():
        w["history"] = gr.Dropdown(
            choices=[],
            value=[],
            multiselect=True,
            scale=4,
            elem_id="train_history",
            label="…and/or images from your history (caption: the record's prompt)",
        )
        w["history_refresh"] = gr.Button("Load history", size="sm", scale=1, elem_id="train_history_refresh")
    w["history_preview"] = gr.Gallery(
        label="Chosen history images", columns=10, height=110, allow_preview=False, elem_id="train_history_preview"
    )
    w["captions"] = gr.Textbox(
        lines=5,
        label="Captions, one line per image in order: uploads, then history images "
        "(empty line: the file name / the record's prompt)",
        elem_id="train_captions",
    )
    with gr.Row():
        w["name"] = gr.Textbox(label="LoRA name", value="my-style", elem_id="train_name")
        w["trigger"] = gr.Textbox(label="Trigger word", value="zwx", elem_id="train_trigger")
    with gr.Row():
        w["rank"] = gr.Slider(1, 64, value=8, step=1, label="Rank", elem_id="train_rank")
        w["steps"] = gr.Number(200, precision=0, minimum=1, maximum=5000, label="Steps", elem_id="train_steps")
        w["lr"] = gr.Number(1e-3, label="Learning rate", elem_id="train_lr")
    with gr.Row():
        w["start"] = gr.Button("Train", variant="primary", elem_id="train_start")
        w["stop"] = gr.Button("Stop", variant="stop", elem_id="train_stop")
    w["status"] = gr.Markdown("", elem_id="train_status")
    stop_event: dict[str, threading.Event] = {}

    def load_history(request: gr.Request) -> Any:
        try:
            return gr.update(choices=history_choices(studio, owner_of(request)))
        except StudioError as exc:
            raise gr.Error(str(exc)) from None

    def show_history(ids: list[str] | None, request: gr.Request) -> list[tuple[str, str]]:
        try:
            ids = list(ids or [])
            _, prompts = history_examples(studio, ids, owner_of(request))
        except StudioError as exc:
            raise gr.Error(str(exc)) from None
        root = stored_images.root_url(request)  # owner-checked image route: the data folder is not served by Gradio
        return [(stored_images.image_url(root, rid), prompt[:60]) for rid, prompt in zip(ids, prompts, strict=True)]

    def train(
        files: list[str] | None,
        history_ids: list[str] | None,
        text: str,
        name: str,
        trigger: str,
        rank: float,
        steps: float,
        lr: float,
        request: gr.Request,
    ) -> Any:
        session = request.session_hash or "local"
        try:
            files = [str(stored_images.uploaded(path)) for path in files or []]  # only what was uploaded here
            history_paths, history_prompts = history_examples(studio, list(history_ids or []), owner_of(request))
        except StudioError as exc:
            raise gr.Error(str(exc)) from None
        try:
            images = load_images([*files, *history_paths])
        except StudioError as exc:
            raise gr.Error(str(exc)) from None
        cancel = stop_event[session] = threading.Event()
        captions = captions_for(files, text, trigger)
        lines = (text or "").splitlines()[len(files) :]
        captions += [(lines[k].strip() if k < len(lines) else "") or prompt for k, prompt in enumerate(history_prompts)]

        def run(on_step: Any) -> Any:
            return studio.train_lora(
                name,
                trigger,
                images,
                captions,
                int(rank or 8),
                int(steps or 200),
                float(lr or 1e-3),
                lambda step, total, loss: on_step((step, total, loss)),
                cancel,
            )

        shown = 0.0
        try:
            for event in stream_job(run, cancel):
                if event.kind == "step":
                    step, total, loss = event.payload
                    if time.monotonic() - shown >= PROGRESS_EVERY_S or step == total:  # don't flood the page
                        shown = time.monotonic()
                        yield f"Training: step {step}/{total} · loss {loss:.4f}"
                elif event.kind == "done":
                    yield f"Done: `{Path(event.payload).name}` is in the LoRA folder — rescan the picker to use it."
                elif isinstance(event.payload, Cancelled):
                    yield "Stopped — nothing was written to the LoRA folder."
                elif isinstance(event.payload, StudioError):
                    raise gr.Error(str(event.payload))
                else:
                    raise gr.Error(f"training failed ({type(event.payload).__name__}: {event.payload})")
        finally:
            stop_event.pop(session, None)

    def stop(request: gr.Request) -> Any:
        event = stop_event.get(request.session_hash or "local")
        if event is None:
            return "Nothing is training."
        event.set()
        # Leave the status to the training stream: its "Stopped" may reach the page before this reply does, and
        # a "Stopping…" written here would then overwrite it for good.
        return gr.update()

    w["history_refresh"].click(load_history, None, w["history"], queue=False, api_visibility="private")
    w["history"].change(show_history, w["history"], w["history_preview"], queue=False, api_visibility="private")
    w["start"].click(
        train,
        [w[k] for k in ("images", "history", "captions", "name", "trigger", "rank", "steps", "lr")],
        w["status"],
        concurrency_id="gpu",
        concurrency_limit=gpu_slots,
        api_visibility="private",
    )
    w["stop"].click(stop, None, w["status"], queue=False, api_visibility="private")
    return w
