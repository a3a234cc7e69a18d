"""The studio page's one context object: the backend, every panel's widgets, and what handlers share.

Panels put their widgets into ``Page`` while the layout is built (``page.panel``, ``page.result``, ``page.history``,
``page.ext``) and wire their events from it afterwards, so no panel reaches into another's closure.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import gradio as gr

from studio.core.errors import StudioError
from studio.ui import adapters, edit_panel, lora_panel, model_panel, region_masks, stored_images
from studio.ui.controls_panel import FIELDS as CONTROL_FIELDS
from studio.ui.feedback import internal_error, user_error
from studio.ui.jobs import CancelRegistry, WaitLine
from studio.ui.regions_panel import prompt_names as region_prompt_names
from studio.web.visitors import owner as visitor_owner

if TYPE_CHECKING:
    from studio.service import Studio
    from studio.ui.studio_ui import UIContext

HISTORY_SIZE = 24


def as_gradio_error(exc: BaseException) -> gr.Error:
    """A user's mistake as one log line and a message; anything else as a real fault (with its traceback)."""
    return user_error(str(exc)) if isinstance(exc, StudioError) else internal_error(exc)


@dataclass
class Page:
    """The studio page being built: context, widgets by panel, and the shared server-side state."""

    ctx: UIContext
    demo: Any = None  # the gr.Blocks being built (for page-load events)
    cancels: CancelRegistry = field(default_factory=CancelRegistry)
    line: WaitLine = field(default_factory=WaitLine)  # generations in arrival order: who waits behind whom
    panel: dict[str, Any] = field(default_factory=dict)  # prompt and settings widgets (adapters.FIELDS and more)
    result: dict[str, Any] = field(default_factory=dict)  # result area, status line, record actions
    history: dict[str, Any] = field(default_factory=dict)  # history strip and its ids
    ext: dict[str, Any] = field(default_factory=dict)  # side tabs: schedule, regions, controls, edit, loras, ...
    guide: dict[str, Any] = field(default_factory=dict)  # example chips and the prompt builder
    run: dict[str, Any] = field(default_factory=dict)  # the Generate handler, its inputs, outputs and options
    selected_id: Any = None  # gr.State: the record the actions apply to (set on select and after each run)
    choices: list[Any] = field(default_factory=list)  # the model picker's ModelChoices (studio.models.choices)

    @property
    def studio(self) -> Studio:
        """The backend."""
        return self.ctx.studio

    def demo_load(self, fn: Any, inputs: Any, outputs: Any) -> None:
        """Run ``fn`` when the page loads (not part of the API; no loading spinners over the fresh page)."""
        self.demo.load(fn, inputs, outputs, api_visibility="private", show_progress="hidden")

    # ---- who is asking, and where their images come from -----------------------------------------------------
    def owner(self, request: Any) -> str | None:
        """Whose records this request may see: the visitor in multi-user mode (refused without one), else all."""
        if not self.ctx.multi_user:
            return None
        token = visitor_owner(request)  # hf:<user> when Hugging Face login is on, else the visitor cookie
        if not token:
            raise StudioError("this browser has no visitor id yet — allow cookies and reload the page")
        return token

    def who(self, request: Any) -> str | None:
        """``owner`` for a handler: a missing visitor id is a user error (no traceback)."""
        try:
            return self.owner(request)
        except StudioError as exc:
            raise user_error(str(exc)) from None

    def root(self, request: Any) -> str:
        """Where the browser fetches stored images from (owner-checked routes, never Gradio's file server)."""
        return stored_images.root_url(request, self.ctx.share_base_url)

    def history_items(self, owner: str | None, root: str) -> tuple[list[tuple[str, str]], list[str]]:
        """The history strip: (owner-checked image URL, prompt) of the newest finished records, and their ids."""
        done = self.studio.recent(owner, HISTORY_SIZE)
        return (
            [(stored_images.image_url(root, r["id"]), r["request"]["prompt"][:80]) for r in done],
            [r["id"] for r in done],
        )

    # ---- widgets → request ---------------------------------------------------------------------------------
    @property
    def panel_inputs(self) -> list[Any]:
        """The prompt/settings widgets in ``adapters.FIELDS`` order."""
        return [self.panel[name] for name in adapters.FIELDS]

    @property
    def lora_slot_inputs(self) -> list[Any]:
        """Every LoRA slot's (name, weight) widgets, slot by slot."""
        return [s[f] for s in self.ext["loras"]["slots"] for f in lora_panel.FIELDS]

    @property
    def settings_outputs(self) -> list[Any]:
        """What "reuse settings" fills: the panel and the LoRA slots."""
        return self.panel_inputs + self.lora_slot_inputs

    @property
    def request_inputs(self) -> set[Any]:
        """Every widget a generation request is made from."""
        regions, loras, edit = self.ext["regions"], self.ext["loras"], self.ext["edit"]
        return {
            *self.panel_inputs,
            regions["editor"],
            *(regions[n] for n in region_prompt_names()),
            *(u[f] for u in self.ext["controls"] for f in CONTROL_FIELDS),
            loras["entries"],
            *self.lora_slot_inputs,
            edit["mode"],
            edit["editor"],
            edit["strength"],
            edit["reference"],
            regions["base_ratio"],
            *([self.panel["model"]] if "model" in self.panel else []),
        }

    def painted_regions(
        self, data: dict[Any, Any], width: int, height: int, require_prompts: bool = True
    ) -> list[region_masks.Region]:
        """The Regions tab's painted regions at the output size (a preview may show regions without a prompt)."""
        regions = self.ext["regions"]
        prompts = {
            name.removeprefix("prompt_"): data[regions[name]] if isinstance(data[regions[name]], str) else ""
            for name in region_prompt_names()
        }
        return region_masks.painted_regions(data[regions["editor"]], prompts, width, height, require_prompts)

    def request_from(self, data: dict[Any, Any]) -> Any:
        """Every panel's widget values → one validated request (inputs stored by content hash)."""
        ctx, ext = self.ctx, self.ext
        values = adapters.PromptPanelValues(*(data[self.panel[name]] for name in adapters.FIELDS))
        model = model_panel.model_for(self, data[self.panel["model"]] if "model" in self.panel else "")
        req = adapters.request_from_panel(values, model)
        width, height = req.width or ctx.width, req.height or ctx.height
        pairs = [(r.mask, r.prompt) for r in self.painted_regions(data, width, height)]
        units = [{f: data[u[f]] for f in CONTROL_FIELDS} for u in ext["controls"]]
        put = self.studio.store.assets.put_image
        loras, edit = ext["loras"], ext["edit"]
        picked = lora_panel.selection(
            [(data[s["name"]], data[s["weight"]]) for s in loras["slots"]], data[loras["entries"]]
        )
        edit_fields = edit_panel.edit_fields(data[edit["mode"]], data[edit["editor"]], data[edit["strength"]], put)
        edit_fields |= edit_panel.reference_fields(data[edit["reference"]], self.studio.store.assets.put_file)
        return req.replace(
            regions=adapters.region_specs(pairs, put),
            controls=adapters.control_specs(units, put),
            loras=adapters.lora_specs(picked),
            region_base_ratio=float(data[ext["regions"]["base_ratio"]] or 0.0),
            **edit_fields,
        ).validate()

    def settings_from(self, stored: dict[str, Any]) -> list[Any]:
        """Widget values (panel, then LoRA slots) that reproduce a stored request."""
        values = adapters.panel_from_request(stored)
        return [getattr(values, name) for name in adapters.FIELDS] + lora_panel.slot_values(stored.get("loras") or [])
