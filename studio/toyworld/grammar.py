"""Toy-world scenes and their prompts: the grammar of TOYWORLD.md, its parser, random scenes and prompt sets."""

from __future__ import annotations

import itertools
import re
from collections.abc import Collection
from dataclasses import dataclass

import numpy as np

from studio.toyworld.vocab import (
    COLOUR_NAMES,
    CORNERS,
    POSE_NAMES,
    POSITION_NAMES,
    SHAPES,
    STICK_FIGURE,
    STYLES,
    article,
)

Combo = tuple[str, str, str]  # (colour, shape, position)
HELD_OUT_SEED = 20240617
HELD_OUT_FRACTION = 0.15
_MAX_TRIES = 10_000


def _check(value: str | None, allowed: tuple[str, ...], what: str) -> None:
    if value not in allowed:
        raise ValueError(f"unknown {what} {value!r}; expected one of: {', '.join(allowed)}")


@dataclass(frozen=True)
class ToyObject:
    """One object: palette colour, shape, anchor position, and (stick figures only) an optional pose name."""

    colour: str
    shape: str
    position: str
    pose: str | None = None

    def __post_init__(self) -> None:
        _check(self.colour, COLOUR_NAMES, "colour")
        _check(self.shape, SHAPES, "shape")
        _check(self.position, POSITION_NAMES, "position")
        if self.pose is not None:
            if self.shape != STICK_FIGURE:
                raise ValueError(f"a pose is only for stick figures, not for a {self.shape}")
            _check(self.pose, POSE_NAMES, "pose")

    @property
    def combo(self) -> Combo:
        """The (colour, shape, position) combination used by the held-out split."""
        return (self.colour, self.shape, self.position)


@dataclass(frozen=True)
class Scene:
    """One or two objects on a background; ``style`` is a LoRA trigger word ("outlined") or None."""

    objects: tuple[ToyObject, ...]
    background: str
    style: str | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "objects", tuple(self.objects))
        _check(self.background, COLOUR_NAMES, "background colour")
        if self.style is not None:
            _check(self.style, STYLES, "style")
        if len(self.objects) not in (1, 2):
            raise ValueError(f"a scene has one or two objects, not {len(self.objects)}")
        for obj in self.objects:
            if obj.colour == self.background:
                raise ValueError(f"object colour {obj.colour!r} equals the background; they must differ")
        if len(self.objects) == 2:
            positions = [obj.position for obj in self.objects]
            if any(p not in CORNERS for p in positions) or positions[0] == positions[1]:
                raise ValueError(f"two objects need two different corner positions, got {positions}")


def _object_phrase(obj: ToyObject, style: str | None) -> str:
    styled = f"{style} {obj.shape}" if style else obj.shape
    return f"{article(obj.colour)} {obj.colour} {styled} in the {obj.position}"


def _background_phrase(background: str) -> str:
    return f"on {article(background)} {background} background"


def scene_prompt(scene: Scene) -> str:
    """The scene's prompt, exactly in the grammar ('a' becomes 'an' before a vowel)."""
    objects = " and ".join(_object_phrase(obj, scene.style) for obj in scene.objects)
    return f"{objects} {_background_phrase(scene.background)}"


def object_prompt(obj: ToyObject, background: str, style: str | None = None) -> str:
    """The one-object (regional) prompt of ``obj``: 'a red circle in the top left on a white background'."""
    return scene_prompt(Scene((obj,), background, style))


_SCENE_RE = re.compile(r"^(?P<objects>.+) on (?:an?) (?P<background>\S+) background$")
_OBJECT_RE = re.compile(r"^(?:an?) (?P<colour>\S+) (?P<rest>.+?) in the (?P<position>.+)$")
_GRAMMAR = "'a {colour} {shape} in the {position} [and a {colour} {shape} in the {position}] on a {colour} background'"


def _parse_object(text: str) -> tuple[ToyObject, str | None]:
    match = _OBJECT_RE.match(text)
    if match is None:
        raise ValueError(f"cannot read object {text!r}; expected 'a {{colour}} {{shape}} in the {{position}}'")
    rest, style = match["rest"], None
    first, _, after = rest.partition(" ")
    if first in STYLES and after:
        style, rest = first, after
    return ToyObject(match["colour"], rest, match["position"]), style


def parse_prompt(text: str) -> Scene:
    """Inverse of ``scene_prompt``; case, spacing, a trailing '.' and a/an choice are forgiven.

    Raises ValueError naming the problem for text outside the grammar or its rules.
    """
    norm = " ".join(text.lower().replace(",", " ").split()).rstrip(".").strip()
    match = _SCENE_RE.match(norm)
    if match is None:
        raise ValueError(f"prompt {text!r} is outside the toy-world grammar; expected {_GRAMMAR}")
    parts = match["objects"].split(" and ")
    if len(parts) > 2:
        raise ValueError(f"prompt {text!r} has {len(parts)} objects; the grammar allows one or two")
    parsed = [_parse_object(part) for part in parts]
    styles = {style for _, style in parsed}
    if len(styles) > 1:
        raise ValueError(f"prompt {text!r} mixes styles; the style word goes on every object or none")
    return Scene(tuple(obj for obj, _ in parsed), match["background"], styles.pop())


def _pick(rng: np.random.Generator, items: Collection[str]) -> str:
    seq = tuple(items)
    return seq[int(rng.integers(len(seq)))]


def _random_object(rng: np.random.Generator, position: str, background: str) -> ToyObject:
    colour = _pick(rng, [c for c in COLOUR_NAMES if c != background])
    shape = _pick(rng, SHAPES)
    pose = _pick(rng, POSE_NAMES) if shape == STICK_FIGURE else None
    return ToyObject(colour, shape, position, pose)


def random_scene(
    rng: np.random.Generator,
    n_objects: int,
    exclude: Collection[Combo] | None = None,
    style: str | None = None,
) -> Scene:
    """A random scene obeying the rules; objects whose (colour, shape, position) is in ``exclude`` are avoided.

    One object: any of the five positions. Two objects: two different corners. Stick figures get a random pose.
    """
    if n_objects not in (1, 2):
        raise ValueError(f"n_objects must be 1 or 2, not {n_objects}")
    banned = frozenset(exclude or ())
    for _ in range(_MAX_TRIES):
        background = _pick(rng, COLOUR_NAMES)
        if n_objects == 1:
            positions = [_pick(rng, POSITION_NAMES)]
        else:
            positions = [CORNERS[int(i)] for i in rng.permutation(len(CORNERS))[:2]]
        objects = tuple(_random_object(rng, p, background) for p in positions)
        if not any(obj.combo in banned for obj in objects):
            return Scene(objects, background, style)
    raise ValueError("exclude leaves no possible scene")


@dataclass(frozen=True)
class Split:
    """A partition of all colour x shape x position combinations into train and held-out."""

    train: frozenset[Combo]
    heldout: frozenset[Combo]


def all_combos() -> tuple[Combo, ...]:
    """Every (colour, shape, position) combination, in vocabulary order."""
    return tuple(itertools.product(COLOUR_NAMES, SHAPES, POSITION_NAMES))


def held_out_split(fraction: float = HELD_OUT_FRACTION, seed: int = HELD_OUT_SEED) -> Split:
    """Deterministic split: round(fraction * 180) combinations, drawn with ``seed``, are held out of training."""
    combos = all_combos()
    order = np.random.default_rng(seed).permutation(len(combos))
    n_held = round(fraction * len(combos))
    heldout = frozenset(combos[int(i)] for i in order[:n_held])
    return Split(frozenset(combos) - heldout, heldout)


def is_held_out(obj: ToyObject, split: Split | None = None) -> bool:
    """Whether the object's combination is held out (by default in the standard split)."""
    return obj.combo in (split or held_out_split()).heldout


def scene_set(kind: str, n: int, seed: int = 0, split: str = "all") -> list[Scene]:
    """``n`` deterministic random scenes. kind: "one" | "two" objects; split: "train" | "heldout" | "all".

    train: no object is a held-out combination; heldout: at least one object is.
    """
    counts = {"one": 1, "two": 2}
    if kind not in counts:
        raise ValueError(f"kind must be 'one' or 'two', not {kind!r}")
    if split not in ("train", "heldout", "all"):
        raise ValueError(f"split must be 'train', 'heldout' or 'all', not {split!r}")
    rng = np.random.default_rng(seed)
    held = held_out_split().heldout
    scenes = []
    for _ in range(n):
        if split == "train":
            scene = random_scene(rng, counts[kind], exclude=held)
        else:
            scene = random_scene(rng, counts[kind])
            while split == "heldout" and not any(obj.combo in held for obj in scene.objects):
                scene = random_scene(rng, counts[kind])
        scenes.append(scene)
    return scenes


def prompt_set(kind: str, n: int, seed: int = 0, split: str = "all") -> list[str]:
    """The prompts of ``scene_set(kind, n, seed, split)``."""
    return [scene_prompt(scene) for scene in scene_set(kind, n, seed, split)]
