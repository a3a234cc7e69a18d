"""LoRA training tab: images with captions, trigger word, rank, steps, learning rate; trains on the resident model
with live loss, can be stopped (nothing half-written appears in the picker), and the LoRA joins the picker."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

import gradio as gr
from PIL import Image

from studio.errors import Cancelled, StudioError
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


def build(studio: Studio, gpu_slots: int = 1) -> dict[str, Any]:
    """The Train tab's widgets and events."""
    w: dict[str, Any] = {}
    gr.Markdown("Train a LoRA on the loaded model from 10–30 images. Images are centre-cropped to the model's size; "
                "the trigger word is put in front of every caption. The result appears in the LoRA picker "
                "(press *Rescan folders*).")
    w["images"] = gr.File(file_count="multiple", file_types=["image"], type="filepath", label="Images",
                          elem_id="train_images")
    w["captions"] = gr.Textbox(lines=5, label="Captions, one line per image in order (empty: the file name)",
                               elem_id="train_captions")
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

    def train(files: list[str] | None, text: str, name: str, trigger: str, rank: float, steps: float,
              lr: float, request: gr.Request) -> Any:
        session = request.session_hash or "local"
        files = files or []
        try:
            images = [Image.open(path).convert("RGB") for path in files]
        except OSError as exc:
            raise gr.Error(f"an image could not be read ({exc}) — upload PNG or JPEG files") from None
        cancel = stop_event[session] = threading.Event()
        captions = captions_for(files, text, trigger)

        def run(on_step: Any) -> Any:
            return studio.train_lora(name, trigger, images, captions, int(rank or 8), int(steps or 200),
                                     float(lr or 1e-3), lambda step, total, loss: on_step((step, total, loss)), cancel)

        try:
            for event in stream_job(run, cancel):
                if event.kind == "step":
                    step, total, loss = event.payload
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

    def stop(request: gr.Request) -> str:
        event = stop_event.get(request.session_hash or "local")
        if event is None:
            return "Nothing is training."
        event.set()
        return "Stopping…"

    w["start"].click(train, [w[k] for k in ("images", "captions", "name", "trigger", "rank", "steps", "lr")],
                     w["status"], concurrency_id="gpu", concurrency_limit=gpu_slots, api_visibility="private")
    w["stop"].click(stop, None, w["status"], queue=False, api_visibility="private")
    return w
