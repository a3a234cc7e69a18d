"""What the loaded model understands: example prompts and, for the toy model, its grammar and a prompt builder.

The toy model (``flux-mini``) only knows the toy world's grammar (``studio.toyworld.grammar``); its examples are
made with ``scene_prompt`` from the vocabulary, so they always parse. Real FLUX models get generic examples.
Pure Python (no widgets, no torch).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from studio.core.errors import InvalidRequest
from studio.toyworld.grammar import Scene, ToyObject, object_prompt, scene_prompt
from studio.toyworld.vocab import COLOUR_NAMES, CORNERS, POSITION_NAMES, SHAPES, STICK_FIGURE, STYLES

TWO_OBJECT_TRUE_CFG = 2.0  # true CFG 2 keeps both objects of a two-object prompt
NO_SECOND = "(none)"
NO_STYLE = "(none)"


@dataclass(frozen=True)
class Example:
    """One clickable example: a label, the prompt, and the settings that go with it.

    ``kind`` is ``prompt`` (just the prompt and settings), ``regions`` (paints ``regions``: colour → (prompt, box as
    fractions left, top, right, bottom)), ``control`` (a pose map of ``pose`` in control 1) or ``lora`` (picks
    ``lora`` in LoRA slot 1 at its recommended settings).
    """

    label: str
    prompt: str
    kind: str = "prompt"
    settings: dict[str, Any] = field(default_factory=dict)
    regions: dict[str, tuple[str, tuple[float, float, float, float]]] = field(default_factory=dict)
    pose: str | None = None
    lora: str | None = None


def is_toy_model(model: str) -> bool:
    """Whether ``model`` (a folder or a name) is the embedded toy model: its ``studio.json`` names it flux-mini."""
    path = Path(model)
    card = path / "studio.json"
    try:
        if card.is_file():
            data = json.loads(card.read_text())
            return bool(data.get("toyworld")) or str(data.get("name", "")).startswith("flux-mini")
    except (OSError, ValueError):
        return False
    return path.name.startswith("flux-mini")


def toy_examples(lora_names: list[str] | None = None) -> list[Example]:
    """Examples in the toy grammar: one object, two objects, regions, a pose control, and the outlined LoRA."""
    red = ToyObject(COLOUR_NAMES[0], SHAPES[0], CORNERS[0])  # a red circle in the top left
    blue = ToyObject("blue", "square", CORNERS[3])  # a blue square in the bottom right
    one = Scene((ToyObject("yellow", "triangle", "center"),), "blue")
    two = Scene((red, blue), "white")
    examples = [
        Example("one object", scene_prompt(one)),
        Example("two objects", scene_prompt(two), settings={"true_cfg": TWO_OBJECT_TRUE_CFG}),
        Example(
            "regions",
            scene_prompt(two),
            "regions",
            {"true_cfg": TWO_OBJECT_TRUE_CFG},
            regions={
                "red": (object_prompt(red, "white"), (0.04, 0.04, 0.48, 0.48)),
                "blue": (object_prompt(blue, "white"), (0.52, 0.52, 0.96, 0.96)),
            },
        ),
        Example(
            "pose control",
            scene_prompt(Scene((ToyObject("green", STICK_FIGURE, "center"),), "white")),
            "control",
            pose="arms up",
        ),
    ]
    style = STYLES[0]
    if style in (lora_names or []):
        styled = Scene((ToyObject("purple", "circle", "center"),), "white", style)
        examples.append(Example(f"{style} LoRA", scene_prompt(styled), "lora", lora=style))
    return examples


def generic_examples() -> list[Example]:
    """Examples for a real FLUX model."""
    return [
        Example("portrait", "portrait photo of an old fisherman, weathered face, soft window light, 85mm"),
        Example("landscape", "a misty pine forest at sunrise, god rays, highly detailed landscape photography"),
        Example("illustration", "a cozy reading nook with a cat, warm colours, children's book illustration"),
        Example("product", "a glass perfume bottle on black marble, studio lighting, product photo"),
        Example("text", 'a neon sign that says "Flux Studio" on a brick wall at night'),
    ]


def examples_for(model: str, lora_names: list[str] | None = None) -> list[Example]:
    """The examples shown for ``model``."""
    return toy_examples(lora_names) if is_toy_model(model) else generic_examples()


def grammar_help() -> str:
    """One line of Markdown naming the toy grammar and its words."""
    return (
        "**flux-mini only understands**: `a {colour} {shape} in the {position} [and a {colour} {shape} in the "
        "{position}] on a {colour} background` · colours: "
        + ", ".join(COLOUR_NAMES)
        + " · shapes: "
        + ", ".join(SHAPES)
        + " · positions: "
        + ", ".join(POSITION_NAMES)
        + " (two objects: two different corners; true CFG 2 helps) · style word: "
        + ", ".join(STYLES)
    )


def built_prompt(
    colour: str,
    shape: str,
    position: str,
    background: str,
    colour_2: str | None = None,
    shape_2: str | None = None,
    position_2: str | None = None,
    style: str | None = None,
) -> str:
    """The builder's dropdowns as a prompt in the grammar; InvalidRequest names a rule that is broken."""
    try:
        objects = [ToyObject(colour, shape, position)]
        if colour_2 and colour_2 != NO_SECOND:
            objects.append(ToyObject(colour_2, shape_2 or SHAPES[0], position_2 or CORNERS[3]))
        scene = Scene(tuple(objects), background, None if style in (None, "", NO_STYLE) else style)
    except ValueError as exc:
        raise InvalidRequest(f"{exc} — change the builder's choices") from None
    return scene_prompt(scene)
