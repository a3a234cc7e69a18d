"""Reference-editing (Kontext-style) data from the toy world: (reference scene, instruction, edited scene) triples.

The four instruction kinds of TOYWORLD.md, "Reference editing":

- recolour:   ``make the {shape} {colour}``            (a colour other than the object's and the background's)
- move:       ``move the {shape} to the {position}``
- background: ``make the background {colour}``         (a colour other than the object's)
- reshape:    ``turn the {shape} into a {shape}``       (colour and position kept)

Training data come in *families*: one random one-object scene (``family_scenes``) and every variant of it along
each of the four axes (all object colours, all positions, all backgrounds, all shapes), each rendered with the
family's render seed. ``render_scene`` draws size, jitter and pose from that seed in the same order whatever the
attributes are, so two members of a family differ in exactly the edited attribute (a move keeps the jitter, a
reshape keeps the size quantile and a stick figure's pose is the seed's). Any ordered pair of members on one
axis is an edit (the reverse pair included), so F families of ~22 rendered images give ~140 F edits; each image
is VAE-encoded once. Training edits use only objects whose (colour, shape, position) combination is in the
training split of ``held_out_split`` — both the reference's and the result's.

Evaluation edits (``eval_edits``) are held out: the edited scene's object is a held-out combination (for a
background edit, the object itself). Reference ``i`` of kind ``k`` is rendered with seed
``EVAL_RENDER_SEED + 1000 * k + i`` (training families use ``FAMILY_RENDER_SEED + f``).

    python -m training.kontext_data --families 8     # prints a few triples and the counts per kind
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass

import numpy as np

from studio.toyworld import Scene, ToyObject, held_out_split, render_scene, scene_prompt, scene_set
from studio.toyworld.vocab import COLOUR_NAMES, POSITION_NAMES, SHAPES, article

KINDS = ("recolour", "move", "background", "reshape")
FAMILY_RENDER_SEED = 3_000_000
EVAL_RENDER_SEED = 7_000_000
EVAL_SEED = 4242


def instruction(kind: str, ref: Scene, target: Scene) -> str:
    """The instruction that turns one-object scene ``ref`` into ``target`` (TOYWORLD.md wording)."""
    a, b = ref.objects[0], target.objects[0]
    if kind == "recolour":
        return f"make the {a.shape} {b.colour}"
    if kind == "move":
        return f"move the {a.shape} to the {b.position}"
    if kind == "background":
        return f"make the background {target.background}"
    if kind == "reshape":
        return f"turn the {a.shape} into {article(b.shape)} {b.shape}"
    raise ValueError(f"unknown edit kind {kind!r}; expected one of {KINDS}")


def edit_kind(ref: Scene, target: Scene) -> str | None:
    """Which single edit turns ``ref`` into ``target`` (None when they differ in zero or several attributes, or the
    result breaks a rule, e.g. a recolour into the background's colour)."""
    a, b = ref.objects[0], target.objects[0]
    diff = [a.colour != b.colour, a.position != b.position, ref.background != target.background, a.shape != b.shape]
    if sum(diff) != 1:
        return None
    return KINDS[diff.index(True)]


def _plain(obj: ToyObject, **changes: str) -> ToyObject:
    """``obj`` with ``changes`` and no fixed pose (a stick figure's pose then comes from the render seed)."""
    fields = {"colour": obj.colour, "shape": obj.shape, "position": obj.position, **changes}
    return ToyObject(fields["colour"], fields["shape"], fields["position"])


def family_members(base: Scene) -> tuple[list[Scene], dict[str, list[int]]]:
    """The distinct scenes of ``base``'s family and, per kind, the indices of the members on that kind's axis."""
    obj = base.objects[0]
    scenes: list[Scene] = []
    index: dict[Scene, int] = {}

    def add(scene: Scene) -> int:
        if scene not in index:
            index[scene] = len(scenes)
            scenes.append(scene)
        return index[scene]

    axes = {
        "recolour": [Scene((_plain(obj, colour=c),), base.background) for c in COLOUR_NAMES if c != base.background],
        "move": [Scene((_plain(obj, position=p),), base.background) for p in POSITION_NAMES],
        "background": [Scene((_plain(obj),), bg) for bg in COLOUR_NAMES if bg != obj.colour],
        "reshape": [Scene((_plain(obj, shape=s),), base.background) for s in SHAPES],
    }
    members = {kind: [add(s) for s in axis] for kind, axis in axes.items()}
    return scenes, members


def family_scenes(n: int, seed: int = 0) -> list[Scene]:
    """The ``n`` base scenes of the training families (any combination; pairs are filtered, not scenes)."""
    return scene_set("one", n, seed=10_000 + seed, split="all")


@dataclass(frozen=True)
class Families:
    """Rendered families: uint8 images (N, H, W, 3), their scenes, and the training edits.

    ``edits[kind]`` is an int array (M, 2) of (reference index, result index) into ``images``.
    """

    images: np.ndarray
    scenes: list[Scene]
    edits: dict[str, np.ndarray]

    def prompt(self, kind: str, pair: np.ndarray) -> str:
        return instruction(kind, self.scenes[int(pair[0])], self.scenes[int(pair[1])])

    def figure_edits(self) -> dict[str, np.ndarray]:
        """The edits of each kind whose reference or result holds a stick figure (in ``edits`` order)."""
        figure = np.array([s.objects[0].shape == "stick figure" for s in self.scenes])
        return {kind: pairs[figure[pairs].any(axis=1)] for kind, pairs in self.edits.items()}


def build_families(n: int, size: int, seed: int = 0) -> Families:
    """Render ``n`` families at ``size`` px and list their training edits (train-split objects only)."""
    train = held_out_split().train
    images, scenes = [], []
    edits: dict[str, list[tuple[int, int]]] = {kind: [] for kind in KINDS}
    for f, base in enumerate(family_scenes(n, seed)):
        members, axes = family_members(base)
        offset = len(scenes)
        for scene in members:
            images.append(render_scene(scene, size, FAMILY_RENDER_SEED + 1_000 * seed + f).image)
            scenes.append(scene)
        for kind, idx in axes.items():
            for i in idx:
                for j in idx:
                    if i != j and members[i].objects[0].combo in train and members[j].objects[0].combo in train:
                        edits[kind].append((offset + i, offset + j))
    return Families(np.stack(images), scenes, {k: np.array(v, dtype=np.int64) for k, v in edits.items()})


@dataclass(frozen=True)
class Edit:
    """One evaluation edit: kind, reference scene and its render seed, instruction, expected scene."""

    kind: str
    reference: Scene
    prompt: str
    target: Scene
    render_seed: int

    def reference_image(self, size: int) -> np.ndarray:
        return render_scene(self.reference, size, self.render_seed).image

    def target_image(self, size: int) -> np.ndarray:
        return render_scene(self.target, size, self.render_seed).image


def eval_edits(n_per_kind: int = 10, seed: int = EVAL_SEED) -> list[Edit]:
    """``n_per_kind`` held-out edits of each kind (kind-major order): the result's object is a held-out
    combination. Deterministic in ``seed``."""
    held = held_out_split().heldout
    rng = np.random.default_rng(seed)
    out: list[Edit] = []
    for k, kind in enumerate(KINDS):
        made = 0
        while made < n_per_kind:
            base = scene_set("one", 1, seed=int(rng.integers(1 << 31)), split="all")[0]
            members, axes = family_members(base)
            ref = Scene((_plain(base.objects[0]),), base.background)
            choices = [members[j] for j in axes[kind] if members[j] != ref and members[j].objects[0].combo in held]
            if not choices:
                continue
            target = choices[int(rng.integers(len(choices)))]
            out.append(Edit(kind, ref, instruction(kind, ref, target), target, EVAL_RENDER_SEED + 1000 * k + made))
            made += 1
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--families", type=int, default=8)
    parser.add_argument("--size", type=int, default=128)
    args = parser.parse_args()
    fam = build_families(args.families, args.size)
    print(f"{len(fam.scenes)} images {fam.images.shape}")
    for kind in KINDS:
        pair = fam.edits[kind][0]
        print(
            f"{kind}: {len(fam.edits[kind])} edits, e.g. {scene_prompt(fam.scenes[pair[0]])!r} + "
            f"{fam.prompt(kind, pair)!r} -> {scene_prompt(fam.scenes[pair[1]])!r}"
        )
    for edit in eval_edits(2):
        print(f"eval {edit.kind}: {scene_prompt(edit.reference)!r} + {edit.prompt!r} -> {scene_prompt(edit.target)!r}")


if __name__ == "__main__":
    main()
