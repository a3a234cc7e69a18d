"""LoRA panel: search the LoRA folders, pick several LoRAs with a weight each, see trigger words and previews, and
insert the trigger words into the prompt with one click. No torch here: entries come from ``LoraLibrary.describe``.

An *entry* is one ``describe`` dict (name, path, sha256, trigger_words, rank, base_model, title, preview, target,
error). A *slot* is one picked LoRA: a name dropdown and a weight slider.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import gradio as gr

from studio.ui.lora_recommend import describe as describe_recommendation

SLOTS = 4
NONE = "(none)"
FIELDS = ("name", "weight")
TABLE_HEADERS = ["name", "trigger words", "rank", "base model", "status"]


# ---- pure helpers (tested without a browser) ---------------------------------------------------------------
def filter_entries(entries: list[dict[str, Any]], query: str) -> list[dict[str, Any]]:
    """Entries whose name, title, base model or trigger words contain every word of ``query`` (any case)."""
    words = (query or "").lower().split()

    def text(entry: dict[str, Any]) -> str:
        parts = [entry.get("name"), entry.get("title"), entry.get("base_model"), *entry.get("trigger_words", [])]
        return " ".join(str(p) for p in parts if p).lower()

    return [e for e in entries if all(w in text(e) for w in words)]


def status(entry: dict[str, Any]) -> str:
    """``ok``, or why the entry cannot be used (a pickle, a broken file, another architecture)."""
    if entry.get("error"):
        return f"✗ {entry['error']}"
    target = entry.get("target")
    if target and target not in ("flux", "unknown"):
        return f"✗ trained for {target}, not Flux"
    return "ok"


def usable(entry: dict[str, Any]) -> bool:
    """Whether the entry can be picked."""
    return status(entry) == "ok"


def table_rows(entries: list[dict[str, Any]]) -> list[list[Any]]:
    """The library table: name, trigger words, rank, base model, status."""
    return [
        [e["name"], ", ".join(e.get("trigger_words") or []), e.get("rank"), e.get("base_model") or "", status(e)]
        for e in entries
    ]


def choices(entries: list[dict[str, Any]]) -> list[str]:
    """Names a slot can pick (usable entries only), after the ``(none)`` choice."""
    return [NONE, *(e["name"] for e in entries if usable(e))]


def insert_trigger_words(prompt: str, words: list[str]) -> str:
    """The prompt with the trigger words it does not contain yet put in front (``zwx, outlined, <prompt>``)."""
    prompt = prompt or ""
    missing = [w for w in dict.fromkeys(words) if w and w.lower() not in prompt.lower()]
    if not missing:
        return prompt
    return ", ".join(missing) + (", " + prompt if prompt.strip() else "")


def selection(values: list[tuple[str | None, float | None]], entries: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Slot values (name, weight) → ``{"name", "sha256", "weight"}`` dicts (= LoraSpec fields), skipping empty
    slots; the sha256 pins the exact file the user saw. The same LoRA twice is refused."""
    by_name = {e["name"]: e for e in entries}
    picked: list[dict[str, Any]] = []
    for name, weight in values:
        if not name or name == NONE:
            continue
        if any(p["name"] == name for p in picked):
            raise gr.Error(f"LoRA {name} is picked twice — pick it once with the weights added up")
        entry = by_name.get(name, {})
        picked.append(
            {"name": name, "sha256": entry.get("sha256") or "", "weight": 1.0 if weight is None else float(weight)}
        )
    return picked


def slot_values(loras: list[dict[str, Any]]) -> list[Any]:
    """Slot widget values (name, weight per slot) that reproduce a stored request's ``loras`` ("reuse settings")."""
    values: list[Any] = []
    for k in range(SLOTS):
        lora = loras[k] if k < len(loras) else None
        values += [lora["name"], float(lora.get("weight", 1.0))] if lora else [NONE, 1.0]
    return values


def trigger_words_of(names: list[str | None], entries: list[dict[str, Any]]) -> list[str]:
    """The trigger words of the picked LoRAs, in slot order."""
    by_name = {e["name"]: e for e in entries}
    words: list[str] = []
    for name in names:
        words += by_name.get(name or "", {}).get("trigger_words") or []
    return words


def details(name: str | None, entries: list[dict[str, Any]]) -> tuple[str, Any]:
    """A slot's info line (trigger words, rank, base model, recommended settings) and its preview (hidden if none)."""
    entry = next((e for e in entries if e["name"] == name), None) if isinstance(entries, list) else None
    if entry is None:
        return "", gr.update(value=None, visible=False)
    words = ", ".join(f"`{w}`" for w in entry.get("trigger_words") or []) or "none"
    info = f"trigger words: {words} · rank {entry.get('rank') or '?'}"
    if entry.get("base_model"):
        info += f" · base {entry['base_model']}"
    settings = (entry.get("recommended") or {}).get("settings") or {}
    if settings:
        info += f" · recommended: {describe_recommendation(settings)}"
    if entry.get("control"):
        info += " · Flux Control LoRA: add exactly one canny or depth control in the Structure tab"
    image = _preview(entry.get("preview"))
    return info, gr.update(value=image, visible=image is not None)


def recommendation(name: str | None, entries: list[dict[str, Any]]) -> tuple[dict[str, Any], str]:
    """The picked LoRA's recommended settings and the note that says they were applied ({} and "" if none)."""
    entry = next((e for e in entries if e["name"] == name), None) if isinstance(entries, list) else None
    recommended = (entry or {}).get("recommended") or {}
    settings = recommended.get("settings") or {}
    if not settings:
        return {}, ""
    note = f"Applied {name}'s recommended settings: {describe_recommendation(settings)}"
    if recommended.get("note"):
        note += f" — {recommended['note']}"
    return settings, note


def _preview(path: str | None) -> Any:
    """The preview as a PIL image (so Gradio needs no access to the LoRA folders)."""
    if not path:
        return None
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            image.thumbnail((256, 256))
            return image.convert("RGB")
    except (OSError, UnidentifiedImageError):
        return None


# ---- widgets ---------------------------------------------------------------------------------------------
def build(
    list_entries: Callable[[], list[dict[str, Any]]], prompt: Any, settings: dict[str, Any] | None = None
) -> dict[str, Any]:
    """The LoRA tab: search + library table, ``SLOTS`` picks (name, weight, trigger words, preview), and an
    "Insert trigger words" button that edits ``prompt``. Returns the widgets; ``slots`` holds each slot's.

    ``settings`` (the panel's ``steps``, ``true_cfg``, ``guidance`` and a ``note`` Markdown): picking a LoRA that
    recommends settings fills them and says so in the note.
    """
    entries = list_entries()
    w: dict[str, Any] = {"entries": gr.State(entries), "initial": entries}
    gr.Markdown(
        "LoRAs from the LoRA folders (`STUDIO_LORA_DIRS`). Pick up to four with a weight each; a file "
        "that does not fit the model is refused with the reason when you generate."
    )
    with gr.Row():
        w["search"] = gr.Textbox(label="Search (name, trigger word, base model)", elem_id="lora_search", scale=4)
        w["refresh"] = gr.Button("Rescan folders", size="sm", elem_id="lora_refresh", scale=1)
    w["table"] = gr.Dataframe(
        table_rows(entries),
        headers=TABLE_HEADERS,
        interactive=False,
        elem_id="lora_table",
        wrap=True,
        max_height=260,
        column_widths=["30%", "22%", "10%", "22%", "16%"],
    )
    slots = [_slot(0, entries, w["entries"], settings)]
    with gr.Accordion(f"More LoRAs (up to {SLOTS} in all)", open=False, elem_id="lora_more"):
        slots += [_slot(k, entries, w["entries"], settings) for k in range(1, SLOTS)]
    w["slots"] = slots
    w["insert"] = gr.Button("Insert trigger words", size="sm", elem_id="lora_insert_triggers")
    _wire(w, list_entries, prompt)
    return w


def _slot(k: int, entries: list[dict[str, Any]], known: Any, settings: dict[str, Any] | None) -> dict[str, Any]:
    """One pick: name and weight side by side, its info line, and its preview (shown only when it has one)."""
    s: dict[str, Any] = {}
    with gr.Row(equal_height=False):
        with gr.Column(scale=3):
            with gr.Row():
                s["name"] = gr.Dropdown(
                    choices(entries),
                    value=NONE,
                    label=f"LoRA {k + 1}",
                    filterable=True,
                    elem_id=f"lora_{k}_name",
                    scale=3,
                    min_width=160,
                )
                s["weight"] = gr.Slider(
                    -2, 2, value=1.0, step=0.05, label="Weight", elem_id=f"lora_{k}_weight", scale=2, min_width=140
                )
            s["info"] = gr.Markdown("", elem_id=f"lora_{k}_info")
        s["preview"] = gr.Image(
            label="Preview",
            interactive=False,
            height=96,
            scale=1,
            visible=False,
            elem_id=f"lora_{k}_preview",
            min_width=96,
        )
    s["name"].change(details, [s["name"], known], [s["info"], s["preview"]], api_visibility="private")
    if settings:
        _wire_recommendation(s, known, settings)
    return s


def _wire_recommendation(slot: dict[str, Any], entries: Any, settings: dict[str, Any]) -> None:
    """A user's pick (not a reuse or an example) fills the LoRA's recommended settings."""
    keys = [k for k in ("steps", "true_cfg", "guidance") if k in settings]

    def apply(name: str | None, known: list[dict[str, Any]]) -> list[Any]:
        recommended, note = recommendation(name, known)
        return [recommended.get("weight", gr.skip()), *(recommended.get(k, gr.skip()) for k in keys), note or gr.skip()]

    slot["name"].input(
        apply,
        [slot["name"], entries],
        [slot["weight"], *(settings[k] for k in keys), settings["note"]],
        api_visibility="private",
    )


def _wire(w: dict[str, Any], list_entries: Callable[[], list[dict[str, Any]]], prompt: Any) -> None:
    names = [s["name"] for s in w["slots"]]

    def search(query: str, entries: list[dict[str, Any]], *current: str) -> list[Any]:
        found = filter_entries(entries, query)
        updates = []
        for value in current:  # a slot keeps its pick even when the search hides it
            options = choices(found)
            updates.append(gr.update(choices=options if value in options else [*options, value]))
        return [table_rows(found), *updates]

    def rescan(query: str, *current: str) -> list[Any]:
        entries = list_entries()
        return [entries, *search(query, entries, *current)]

    w["search"].change(search, [w["search"], w["entries"], *names], [w["table"], *names], api_visibility="private")
    w["refresh"].click(rescan, [w["search"], *names], [w["entries"], w["table"], *names], api_visibility="private")

    def insert(text: str, entries: list[dict[str, Any]], *picked: str) -> str:
        return insert_trigger_words(text, trigger_words_of(list(picked), entries))

    w["insert"].click(insert, [prompt, w["entries"], *names], prompt, api_visibility="private")
