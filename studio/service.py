"""Studio: the Engine and the history Store together — run a request, keep its record."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from studio import pngmeta
from studio.engine import Engine, StepUpdate
from studio.errors import Cancelled, StudioError
from studio.history import Store
from studio.lora_files import LoraLibrary
from studio.request import GenerationRequest
from studio.settings import Settings
from studio.spaces_support import gpu

log = logging.getLogger(__name__)


class Studio:
    """What the UI, CLI and API call: one Engine (the model) and one Store (the history)."""

    def __init__(self, settings: Settings, engine: Engine | None = None, store: Store | None = None) -> None:
        self.settings = settings
        self.engine = engine or Engine(settings)
        self.store = store or Store(settings.db_url, settings.data_dir)
        self.loras = LoraLibrary(settings.lora_dirs)
        self._run = gpu(self.engine.generate)
        self._maps: dict[tuple, Any] = {}  # control previews by (kind, input content)  # ZeroGPU on Spaces; the plain method elsewhere

    def generate(
        self,
        request: GenerationRequest,
        on_step: Callable[[StepUpdate], None] | None = None,
        cancel: threading.Event | None = None,
        replay_of: str | None = None,
        owner: str | None = None,
    ) -> dict[str, Any]:
        """Run a request and store its record: ``done``, ``cancelled`` (no images) or ``failed`` (then re-raised).

        ``owner`` is the visitor in multi-user mode (None in single-user mode).
        """
        started = time.perf_counter()
        try:
            result = self._run(request, on_step=on_step, cancel=cancel, assets=self.store.assets, loras=self.loras)
        except Cancelled as exc:
            resolved = getattr(exc, "request", None) or request
            timings = {"total_s": round(time.perf_counter() - started, 4)}
            return self.store.add(resolved.to_dict(), [], [], timings, "cancelled", str(exc), replay_of, owner)
        except StudioError:
            raise
        except Exception as exc:
            log.exception("generation failed")
            timings = {"total_s": round(time.perf_counter() - started, 4)}
            self.store.add(request.to_dict(), [], [], timings, "failed", f"{type(exc).__name__}: {exc}", replay_of, owner)
            raise
        timings = dict(result.timings)
        save_started = time.perf_counter()
        record = self.store.add(
            result.request.to_dict(), result.images, result.seeds, timings, replay_of=replay_of, owner=owner
        )
        record["timings"]["save_s"] = round(time.perf_counter() - save_started, 4)
        return record

    def replay(
        self,
        record_id: str,
        on_step: Callable[[StepUpdate], None] | None = None,
        cancel: threading.Event | None = None,
        owner: str | None = None,
    ) -> dict[str, Any]:
        """Regenerate a stored record exactly (same request, same seed)."""
        record = self.store.get(record_id, owner)
        request = GenerationRequest.from_dict(record["request"])
        return self.generate(request, on_step=on_step, cancel=cancel, replay_of=record_id, owner=owner)

    def preview(self, request: GenerationRequest, cancel: threading.Event | None = None) -> Any | None:
        """Generate without keeping a record (live mode); None when cancelled by a newer request."""
        try:
            return self._run(request, cancel=cancel, assets=self.store.assets, loras=self.loras)
        except Cancelled:
            return None

    def train_lora(
        self, name: str, trigger_word: str, images: list[Any], captions: list[str], rank: int, steps: int,
        learning_rate: float, on_progress: Callable[[int, int, float], None] | None = None,
        cancel: threading.Event | None = None,
    ) -> Path:
        """Train a LoRA on the resident model from PIL images + captions into ``$STUDIO_DATA_DIR/loras``."""
        from studio.lora_training import TrainingConfig, TrainingExample, train_lora

        self.engine.ensure()
        config = TrainingConfig(name=name, trigger_word=trigger_word, rank=rank, steps=steps,
                                learning_rate=learning_rate)
        examples = [TrainingExample(image, caption) for image, caption in zip(images, captions, strict=True)]
        return train_lora(self.engine, config, examples, self.settings.data_dir / "loras", on_progress, cancel)

    def control_map(self, kind: str, image: Any) -> Any:
        """The map a control input turns into (shown before generating): canny/depth/pose, or the map itself."""
        from studio.conditioning.control import annotate

        key = (kind, hash(image.tobytes()), image.size)
        if key not in self._maps:
            self._maps[key] = annotate(kind, image, not kind.endswith("-map"), self.settings.annotators)
            while len(self._maps) > 32:
                self._maps.pop(next(iter(self._maps)))
        return self._maps[key]

    def import_png(self, source: Path | bytes) -> dict[str, Any]:
        """The request stored in a PNG's metadata (ours or A1111-style)."""
        return pngmeta.read_png_request(source)

    def close(self) -> None:
        """Release the database."""
        self.store.close()
