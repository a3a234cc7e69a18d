"""Deterministic toy-world training data for flux-mini.

Scenes come from ``studio.toyworld.scene_set(kind, n, seed, split="train")``: one- and two-object scenes over all
shapes, none of whose objects is a held-out (colour, shape, position) combination of ``held_out_split``. Each
scene ``i`` is rendered at the native size with render seed ``seed * 1_000_003 + i``. The rendered set is cached
as ``.npy`` + ``.json`` under ``runs/`` so every training stage (VAE, base) sees exactly the same data.

    python -m training.data --seed 0          # builds (or reuses) runs/data/toy_s0_128px_10000x1_10000x2.npy
"""

from __future__ import annotations

import argparse
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from studio.toyworld import render_scene, scene_prompt, scene_set
from studio.toyworld.grammar import STICK_FIGURE, Scene

DEFAULT_DIR = Path("runs/data")


@dataclass(frozen=True)
class ToyData:
    """Rendered training scenes: uint8 images (N, H, W, 3), their prompts, and object counts (1 or 2)."""

    images: np.ndarray
    prompts: list[str]
    n_objects: np.ndarray

    def __len__(self) -> int:
        return len(self.prompts)

    def tensor(self, index: np.ndarray | slice) -> torch.Tensor:
        """Images ``index`` as float (B, 3, H, W) in [-1, 1], the VAE's input range."""
        x = torch.from_numpy(np.ascontiguousarray(self.images[index])).permute(0, 3, 1, 2).float()
        return x / 127.5 - 1.0


def size_suffix(size: int) -> str:
    """Cache-name suffix of a scene size (latent and control caches are per size)."""
    return f"_{size}px"


def _cache_paths(root: Path, seed: int, size: int, n_one: int, n_two: int) -> tuple[Path, Path]:
    stem = f"toy_s{seed}_{size}px_{n_one}x1_{n_two}x2"
    return root / f"{stem}.npy", root / f"{stem}.json"


def build_dataset(seed: int = 0, size: int = 128, n_one: int = 10_000, n_two: int = 10_000) -> ToyData:
    """Render ``n_one`` one-object and ``n_two`` two-object training-split scenes (deterministic in ``seed``)."""
    scenes = scene_set("one", n_one, seed=seed * 2 + 1, split="train")
    scenes += scene_set("two", n_two, seed=seed * 2 + 2, split="train")
    images = np.empty((len(scenes), size, size, 3), dtype=np.uint8)
    for i, scene in enumerate(scenes):
        images[i] = render_scene(scene, size, seed * 1_000_003 + i).image
    prompts = [scene_prompt(s) for s in scenes]
    counts = np.array([len(s.objects) for s in scenes], dtype=np.int8)
    return ToyData(images, prompts, counts)


def load_dataset(
    seed: int = 0, size: int = 128, n_one: int = 10_000, n_two: int = 10_000, root: Path | None = None
) -> ToyData:
    """The cached dataset (in ``root``, default ``runs/data``), building and caching it on first use."""
    root = DEFAULT_DIR if root is None else root
    npy, meta = _cache_paths(root, seed, size, n_one, n_two)
    if npy.exists() and meta.exists():
        info = json.loads(meta.read_text())
        return ToyData(np.load(npy), info["prompts"], np.array(info["n_objects"], dtype=np.int8))
    data = build_dataset(seed, size, n_one, n_two)
    root.mkdir(parents=True, exist_ok=True)
    np.save(npy, data.images)
    meta.write_text(json.dumps({"prompts": data.prompts, "n_objects": data.n_objects.tolist()}))
    return data


def outlined_scenes(n: int, seed: int, split: str) -> list[Scene]:
    """``n`` one-object scenes of ``split`` in the outlined style (TOYWORLD.md), without stick figures (strokes
    already)."""
    scenes: list[Scene] = []
    batch = 0
    while len(scenes) < n:
        for scene in scene_set("one", 4 * n, seed=seed + batch, split=split):
            if scene.objects[0].shape != STICK_FIGURE and len(scenes) < n:
                scenes.append(Scene(scene.objects, scene.background, "outlined"))
        batch += 1
    return scenes


OUTLINED_RENDER_SEED = 50_000  # render seed of the outlined training scene i: OUTLINED_RENDER_SEED + i


def render_images(scenes: list[Scene], size: int, first_seed: int) -> np.ndarray:
    """uint8 (N, size, size, 3) renders of ``scenes``, scene i with render seed ``first_seed + i``."""
    return np.stack([render_scene(s, size, first_seed + i).image for i, s in enumerate(scenes)])


def outlined_images(n: int, seed: int, size: int = 128) -> torch.Tensor:
    """``n`` outlined training-split scenes (``outlined_scenes(n, 1000 + seed, "train")``, render seeds
    OUTLINED_RENDER_SEED + i, as the outlined LoRA's training data) as float (n, 3, size, size) in [-1, 1]."""
    images = render_images(outlined_scenes(n, 1000 + seed, "train"), size, OUTLINED_RENDER_SEED)
    return ToyData(images, [""] * n, np.ones(n, dtype=np.int8)).tensor(slice(None))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--n-one", type=int, default=10_000)
    parser.add_argument("--n-two", type=int, default=10_000)
    parser.add_argument("--data-dir", type=Path, default=DEFAULT_DIR, help="where the rendered set is cached")
    args = parser.parse_args()
    data = load_dataset(args.seed, args.size, args.n_one, args.n_two, args.data_dir)
    print(f"{len(data)} scenes, images {data.images.shape}, e.g. {data.prompts[0]!r} / {data.prompts[-1]!r}")


if __name__ == "__main__":
    main()
