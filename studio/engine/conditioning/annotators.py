"""Depth and pose annotators from a local folder (STUDIO_ANNOTATORS), loaded once and kept.

Depth, first found wins: a Depth-Anything model folder ``depth-anything/`` (transformers format, e.g.
LiheYoung/depth-anything-small-hf) run through transformers' depth-estimation pipeline; ``ZoeD_M12_N.pt`` (Zoe);
``dpt_hybrid-midas-501f0c75.pt`` (MiDaS) — the last two from lllyasviel/Annotators via controlnet-aux. Pose:
``body_pose_model.pth`` + ``hand_pose_model.pth`` + ``facenet.pth`` (OpenPose via controlnet-aux). The folder is the
server admin's, never a user upload.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import lru_cache
from pathlib import Path
from typing import Any

from PIL import Image

from studio.core.errors import StudioError

DEPTH_ANYTHING_DIR = "depth-anything"
ZOE_FILE = "ZoeD_M12_N.pt"
MIDAS_FILE = "dpt_hybrid-midas-501f0c75.pt"
POSE_FILES = ("body_pose_model.pth", "hand_pose_model.pth", "facenet.pth")
WHAT_TO_GET = {
    "depth": f"a Depth-Anything model folder `{DEPTH_ANYTHING_DIR}/` (e.g. LiheYoung/depth-anything-small-hf), or "
    f"{ZOE_FILE} or {MIDAS_FILE} from lllyasviel/Annotators",
    "pose": " + ".join(POSE_FILES) + " from lllyasviel/Annotators",
}


def depth_detector_name(folder: Path) -> str | None:
    """Which depth annotator the folder holds: ``depth-anything``, ``zoe``, ``midas`` or None."""
    if (folder / DEPTH_ANYTHING_DIR / "config.json").is_file():
        return "depth-anything"
    if (folder / ZOE_FILE).is_file():
        return "zoe"
    if (folder / MIDAS_FILE).is_file():
        return "midas"
    return None


def annotate_with_weights(kind: str, image: Image.Image, folder: Path | None) -> Image.Image:
    """The ``kind`` (depth / pose) map of ``image`` at its size, by the annotator found in ``folder``."""
    name = None
    if folder is not None and folder.is_dir():
        name = (
            depth_detector_name(folder)
            if kind == "depth"
            else ("openpose" if all((folder / f).is_file() for f in POSE_FILES) else None)
        )
    if name is None:
        raise StudioError(
            f"{kind} preprocessing needs annotator weights — put {WHAT_TO_GET[kind]} into a folder and set "
            f"STUDIO_ANNOTATORS to it, or upload a ready {kind} map as kind '{kind}-map'"
        )
    assert folder is not None
    detector = _detector(name, str(folder.resolve()))
    return detector(image.convert("RGB")).convert("RGB").resize(image.size)


@lru_cache(maxsize=4)
def _detector(name: str, folder: str) -> Callable[[Image.Image], Image.Image]:
    """The loaded annotator (kept: loading is the slow part)."""
    try:
        if name == "depth-anything":
            from transformers import pipeline

            estimator = pipeline("depth-estimation", model=str(Path(folder) / DEPTH_ANYTHING_DIR), device="cpu")
            return lambda image: _depth_image(estimator(image))
        if name == "zoe":
            from controlnet_aux import ZoeDetector

            return ZoeDetector.from_pretrained(folder)
        if name == "midas":
            from controlnet_aux import MidasDetector

            return MidasDetector.from_pretrained(folder)
        from controlnet_aux import OpenposeDetector

        return OpenposeDetector.from_pretrained(folder)
    except Exception as exc:  # noqa: BLE001 - a broken weight file gets a message naming it
        raise StudioError(
            f"the {name} annotator in {folder} could not be loaded ({str(exc).splitlines()[0][:160]}) "
            "— download its weights again"
        ) from None


def _depth_image(output: Any) -> Image.Image:
    return output["depth"]
