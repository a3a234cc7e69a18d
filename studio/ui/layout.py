"""The page's frame: header (title, model picker, gallery link), CSS, and the page scripts (Ctrl+Enter, region brush).

Colours come from Gradio's theme variables, so dark and light follow Gradio's theme switch.
"""

from __future__ import annotations

import html
from pathlib import Path
from typing import Any

import gradio as gr

SCRIPTS = Path(__file__).with_name("page_scripts.js")
CSS = """
.fs-header {display: flex; align-items: center; justify-content: space-between; gap: 1rem; padding: 2px 4px}
.fs-header h1 {font-size: 1.35rem; margin: 0; font-weight: 600}
.fs-header code {font-size: 0.95rem}
.fs-header a {font-weight: 600; text-decoration: none; color: var(--link-text-color, var(--color-accent))}
#top_bar {align-items: center; flex-wrap: nowrap; gap: 10px}
#top_bar > * {flex: 0 0 auto !important; min-width: 0 !important; width: auto !important}
#top_bar > #gallery_box {margin-left: auto}
#model_picker {width: 300px !important}
#model_picker input {font-family: var(--font-mono); font-size: 0.95rem}
#model_note {color: var(--body-text-color-subdued); font-size: 0.85rem; white-space: nowrap}
#reference_note p {margin: 0}
#prompt_row {align-items: stretch}
#run_buttons {gap: 6px; justify-content: center}
#run_buttons button#generate {min-height: 52px}
#examples {align-items: center; gap: 6px; flex-wrap: wrap}
#examples > * {flex: 0 0 auto !important; min-width: 0 !important; width: auto !important}
.fs-examples-label p {margin: 0; color: var(--body-text-color-subdued)}
.fs-chip {border-radius: 999px !important}
#result {padding: 0}
.fs-result {height: clamp(384px, calc(100vh - 370px), 760px); display: grid; gap: 6px; padding: 8px;
  grid-template-columns: repeat(var(--cols, 1), minmax(0, 1fr)); grid-auto-rows: minmax(0, 1fr);
  background: var(--background-fill-secondary); border: 1px solid var(--border-color-primary);
  border-radius: var(--block-radius, 8px); box-sizing: border-box; position: relative; overflow: hidden}
.fs-cell {container-type: size; margin: 0; min-width: 0; min-height: 0; position: relative;
  display: flex; align-items: center; justify-content: center}
.fs-cell a {display: contents}
#result img.fs-img {width: min(100cqw, 100cqh * var(--ar, 1)); height: min(100cqh, 100cqw / var(--ar, 1));
  max-width: none; max-height: none; object-fit: contain; display: block; margin: 0; border-radius: 2px}
#result img.fs-pixelated {image-rendering: pixelated}
.fs-badge {position: absolute; left: 6px; bottom: 6px; font-size: 12px; line-height: 1.4; padding: 1px 6px;
  border-radius: 4px; background: rgba(0, 0, 0, 0.6); color: #fff}
.fs-note {position: absolute; right: 12px; top: 10px; font-size: 12px; padding: 1px 8px; border-radius: 4px;
  background: rgba(0, 0, 0, 0.6); color: #fff}
.fs-empty {display: flex; align-items: center; justify-content: center; text-align: center;
  color: var(--body-text-color-subdued)}
.fs-empty p {max-width: 32em; margin: 0 1em}
#result_bar {align-items: center; gap: 8px; flex-wrap: nowrap}
#status {min-height: 1.5em; flex: 1 1 200px !important; min-width: 0 !important}
#status p {margin: 0}
#result_actions {flex: 0 0 auto !important; width: auto !important; gap: 6px; flex-wrap: nowrap; justify-content: flex-end}
#result_actions button {flex: 0 0 auto}
#history_row {align-items: center}
#history_refresh {align-self: center}
#seed_buttons {gap: 6px; justify-content: flex-end}
#region_prompt_red label > span:first-child::before, #region_prompt_green label > span:first-child::before,
#region_prompt_blue label > span:first-child::before, #region_prompt_yellow label > span:first-child::before {
  content: ""; display: inline-block; width: 0.8em; height: 0.8em; border-radius: 50%; margin-right: 6px;
  vertical-align: -1px}
#region_prompt_red label > span:first-child::before {background: #ff0000}
#region_prompt_green label > span:first-child::before {background: #00c000}
#region_prompt_blue label > span:first-child::before {background: #0000ff}
#region_prompt_yellow label > span:first-child::before {background: #ffd000}
#history .grid-wrap {height: auto !important; max-height: 130px}
#history .grid-container {grid-template-columns: none !important; grid-template-rows: 96px !important;
  grid-auto-flow: column; grid-auto-columns: 96px; overflow-x: auto; justify-content: start; padding-bottom: 4px}
#history .thumbnail-item {width: 96px; height: 96px; aspect-ratio: 1 / 1}
#history .thumbnail-item img {object-fit: contain; width: 100%; height: 100%}
#history .caption-label {display: none}
body:has(.fs-toy-model) #history img {image-rendering: pixelated}
#side_column {gap: 10px}
#side_tabs button[role="tab"] {padding-left: 7px; padding-right: 7px}
#settings_note p {margin: 0; color: var(--color-accent)}
#lora_table {overflow-x: auto}
[data-testid="upload-text"], [data-testid="upload-text"] .prompt {white-space: normal !important;
  text-overflow: clip !important; overflow: visible !important; text-align: center; line-height: 1.3;
  flex-wrap: wrap; justify-content: center}
"""


def header(model: str, toy: bool, picker: bool = False) -> None:
    """The title: "Flux Studio · <model>" — or "Flux Studio ·" when the model picker (a dropdown) follows it."""
    name = html.escape(Path(model).name or model)
    marker = ' class="fs-header fs-toy-model"' if toy else ' class="fs-header"'
    shown = "" if picker else f" <code>{name}</code>"
    gr.HTML(f"<div{marker}><h1>Flux Studio ·{shown}</h1></div>", elem_id="header", container=False, padding=False)


def gallery_link() -> None:
    """The link to the gallery (opens in a new tab), at the header's right end."""
    gr.HTML(
        '<div class="fs-header"><a id="gallery_link" href="gallery" target="_blank" rel="noopener">Gallery ↗</a></div>',
        elem_id="gallery_box",
        container=False,
        padding=False,
    )


def install_scripts(demo: Any) -> None:
    """Run the page scripts once when the page loads (no server call)."""
    demo.load(None, None, None, js=SCRIPTS.read_text(), api_visibility="private")
