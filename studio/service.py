"""Studio: the Engine and the history Store together — run a request, keep its record."""

from __future__ import annotations

import dataclasses
import errno
import hashlib
import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path
from typing import Any

from studio.core.errors import Cancelled, StorageError, StudioError
from studio.core.limits import check_image
from studio.core.request import GenerationRequest
from studio.core.settings import Settings
from studio.engine import memory_estimate
from studio.engine.engine import Engine, StepUpdate
from studio.engine.memory import model_bytes
from studio.lora.files import LoraLibrary
from studio.models.catalog import defaults_for
from studio.outputs import check_disk_space
from studio.spaces_support import gpu_generate, prepare_settings, refuse_on_zero_gpu
from studio.store.records import Record
from studio.store.store import Store

log = logging.getLogger(__name__)
CONTROL_PREVIEWS_KEPT = 16  # control-map previews kept (least recently used dropped first) …
CONTROL_PREVIEW_BYTES = 256 * 2**20  # … and at most this many pixel bytes in all


class Studio:
    """What the UI, CLI and API call: one Engine (the model) and one Store (the history)."""

    def __init__(self, settings: Settings, engine: Engine | None = None, store: Store | None = None) -> None:
        self.settings = settings = prepare_settings(settings)  # ZeroGPU: spaces imported before the model loads
        self.engine = engine or Engine(settings)
        self.store = store or _open_store(settings)
        self.loras = LoraLibrary(settings.lora_dirs)
        self._run = gpu_generate(self.engine.generate)  # ZeroGPU: in spaces' GPU worker; elsewhere the method
        self._maps: OrderedDict[tuple, Any] = OrderedDict()  # control previews by (kind, input content), LRU
        self._maps_lock = threading.Lock()

    def generate(
        self,
        request: GenerationRequest,
        on_step: Callable[[StepUpdate], None] | None = None,
        cancel: threading.Event | None = None,
        replay_of: str | None = None,
        owner: str | None = None,
        on_phase: Callable[[str], None] | None = None,
    ) -> dict[str, Any]:
        """Run a request and store its record: ``done``, ``cancelled`` (no images) or ``failed`` (then re-raised).

        Refused before anything is allocated (StudioError) when the size does not fit in free memory or the data
        disk is nearly full. A cancel at any phase — encode, denoise, decode, save — ends as a ``cancelled`` record
        without images. ``owner`` is the visitor in multi-user mode (None in single-user mode). ``on_phase`` hears
        the phase names ``check``, ``generate`` and ``save`` as each starts. Returns the record's JSON shape
        (``Record.to_dict()``, docs/cli.md).
        """
        return self._generate(request, on_step, cancel, replay_of, owner, on_phase).to_dict()

    def _generate(
        self,
        request: GenerationRequest,
        on_step: Callable[[StepUpdate], None] | None,
        cancel: threading.Event | None,
        replay_of: str | None,
        owner: str | None,
        on_phase: Callable[[str], None] | None,
    ) -> Record:
        """``generate``, returning the stored Record."""
        cancel = cancel or threading.Event()
        phase = on_phase or _no_phase
        phase("check")
        self.check_resources(request)
        started = time.perf_counter()
        phase("generate")
        try:
            result = self._run(request, on_step=on_step, cancel=cancel, assets=self.store.assets, loras=self.loras)
        except Cancelled as exc:
            resolved = getattr(exc, "request", None) or request
            return self._cancelled(resolved, str(exc), started, replay_of, owner)
        except StudioError:
            raise
        except Exception as exc:
            log.exception("generation failed")
            self._failed(request, f"{type(exc).__name__}: {exc}", started, replay_of, owner)
            raise
        if cancel.is_set():  # cancelled while decoding: the images are dropped before anything is written
            return self._cancelled(result.request, "generation cancelled while decoding", started, replay_of, owner)
        phase("save")
        timings = dict(result.timings)
        save_started = time.perf_counter()
        record = self._save(result, timings, started, replay_of, owner)
        if cancel.is_set():  # cancelled while saving: undo the save, keep the request as a cancelled record
            try:
                self.store.delete(record.id, owner=owner)
            except StudioError:
                log.warning("cancel after saving %s: the record could not be removed, kept as done", record.id)
                return record
            return self._cancelled(result.request, "generation cancelled while saving", started, replay_of, owner)
        save_s = round(time.perf_counter() - save_started, 4)
        return dataclasses.replace(record, timings={**record.timings, "save_s": save_s})

    def check_resources(self, request: GenerationRequest, disk: bool = True) -> None:
        """Refuse a request before generating: too little room on the data disk (when ``disk``), or a size whose
        estimated peak memory (``studio.engine.memory_estimate``) exceeds free memory — naming the largest size that fits.

        ``request`` is validated where it entered (the UI adapters, the CLI, the API) and again by ``Engine.generate``;
        this check does not repeat it.
        """
        if disk:
            check_disk_space(self.store.data_dir, int(self.settings.min_free_mb * 2**20))
        pipe, device = self.engine.pipe, self.engine.device
        location = self.engine.locate_model(request.model)  # a model the operator has not allowed is refused here
        if pipe is None or self.engine.model_name != location.name:
            defaults = self.engine.defaults(request.model)  # loads the model, as generating would
            pipe = self.engine.pipe
        else:  # without the engine's lock: a request may queue behind a running generation
            defaults = defaults_for(location, bool(pipe.transformer.config.guidance_embeds))
        try:
            shape = memory_estimate.shape_of(pipe, defaults.max_sequence_length)
            budget = memory_estimate.available_bytes(device, pipe, self.settings.max_memory_mb)
        except StudioError:
            raise
        except Exception:  # noqa: BLE001 - e.g. no CUDA outside a ZeroGPU call: generate without the check
            log.warning("memory estimate skipped", exc_info=True)
            return
        memory_estimate.check_fits(
            shape,
            budget,
            request.width or defaults.width,
            request.height or defaults.height,
            request.batch_size,
            len(request.regions),
            len(request.controls),
            hint=self._memory_hint(pipe, device),
            references=len(request.references),
        )

    def _memory_hint(self, pipe: Any, device: Any) -> str:
        hints = []
        if self.settings.max_memory_mb is not None:
            hints.append(f"raise {memory_estimate.CAP_ENV}")
        if device.type == "cuda" and memory_estimate.resident_weight_bytes(pipe, device) >= 0.9 * model_bytes(pipe):
            hints.append("use STUDIO_MEMORY=model")
        return f" (or {' or '.join(hints)})" if hints else ""

    def _save(
        self, result: Any, timings: dict[str, Any], started: float, replay_of: str | None, owner: str | None
    ) -> Record:
        """Store the images and the record; a failed write leaves neither (the Store removes written PNGs), is
        kept as a ``failed`` record when the database still takes one, and becomes a message naming the fix."""
        try:
            return self.store.add(
                request=result.request,
                images=result.images,
                seeds=result.seeds,
                timings=timings,
                replay_of=replay_of,
                owner=owner,
            )
        except StudioError as exc:
            message = f"the images were not saved: {exc}"
            self._failed(result.request, message, started, replay_of, owner)
            raise StorageError(message) from exc
        except OSError as exc:
            log.warning("saving the images failed: %s", exc)
            message = (
                f"the images were not saved: cannot write into {self.store.images_dir} ({_reason(exc)}) — "
                "make it a writable folder or choose another STUDIO_DATA_DIR"
            )
            self._failed(result.request, message, started, replay_of, owner)
            raise StorageError(message) from exc

    def _cancelled(
        self, request: GenerationRequest, why: str, started: float, replay_of: str | None, owner: str | None
    ) -> Record:
        timings = {"total_s": round(time.perf_counter() - started, 4)}
        return self.store.add(
            request=request, timings=timings, status="cancelled", error=why, replay_of=replay_of, owner=owner
        )

    def _failed(
        self, request: GenerationRequest, why: str, started: float, replay_of: str | None, owner: str | None
    ) -> None:
        """Keep the request as a ``failed`` record (so it can be replayed later) when the database takes it."""
        timings = {"total_s": round(time.perf_counter() - started, 4)}
        try:
            self.store.add(
                request=request, timings=timings, status="failed", error=why, replay_of=replay_of, owner=owner
            )
        except (StudioError, OSError):
            log.warning("could not store the failed record either")

    def replay(
        self,
        record_id: str,
        on_step: Callable[[StepUpdate], None] | None = None,
        cancel: threading.Event | None = None,
        owner: str | None = None,
    ) -> dict[str, Any]:
        """Regenerate a stored record exactly (same request, same seed)."""
        request = self.store.get(record_id, owner=owner).generation_request()
        return self.generate(request, on_step=on_step, cancel=cancel, replay_of=record_id, owner=owner)

    def preview(self, request: GenerationRequest, cancel: threading.Event | None = None) -> Any | None:
        """Generate without keeping a record (live mode); None when cancelled by a newer request."""
        self.check_resources(request, disk=False)
        try:
            return self._run(request, cancel=cancel, assets=self.store.assets, loras=self.loras)
        except Cancelled:
            return None

    def train_lora(
        self,
        name: str,
        trigger_word: str,
        images: list[Any],
        captions: list[str],
        rank: int,
        steps: int,
        learning_rate: float,
        on_progress: Callable[[int, int, float], None] | None = None,
        cancel: threading.Event | None = None,
    ) -> Path:
        """Train a LoRA on the resident model from PIL images + captions into ``$STUDIO_DATA_DIR/loras``."""
        from studio.lora.training import train_lora
        from studio.lora.training_inputs import TrainingConfig, TrainingExample

        refuse_on_zero_gpu("LoRA training")
        self.engine.ensure()
        config = TrainingConfig(
            name=name, trigger_word=trigger_word, rank=rank, steps=steps, learning_rate=learning_rate
        )
        examples = [TrainingExample(image, caption) for image, caption in zip(images, captions, strict=True)]
        return train_lora(self.engine, config, examples, self.settings.data_dir / "loras", on_progress, cancel)

    def control_map(self, kind: str, image: Any) -> Any:
        """The map a control input turns into (shown before generating): canny/depth/pose, or the map itself.

        Inputs over ``MAX_PIXELS`` are refused; previews are kept by input content, bounded in count and bytes.
        """
        from studio.engine.conditioning.control import annotate

        check_image(image, "the control image")
        key = (kind, image.mode, image.size, hashlib.sha256(image.tobytes()).hexdigest())
        with self._maps_lock:
            if key in self._maps:
                self._maps.move_to_end(key)
                return self._maps[key]
        mapped = annotate(kind, image, not kind.endswith("-map"), self.settings.annotators)
        with self._maps_lock:
            self._maps[key] = mapped
            _trim_previews(self._maps)
        return mapped

    # ---- history: what the studio page's strip and record actions call (owner-checked by the Store) ----------
    # Records leave the façade in their JSON shape (``Record.to_dict()``): what the Gradio UI and the API hand on.
    def record(self, record_id: str, owner: str | None = None) -> dict[str, Any]:
        """The visitor's record ``record_id`` (NotFound for anyone else's)."""
        return self.store.get(record_id, owner=owner).to_dict()

    def recent(self, owner: str | None = None, limit: int = 24) -> list[dict[str, Any]]:
        """The visitor's newest finished records with images, newest first (at most ``limit``)."""
        records, _ = self.store.list(limit=limit * 2, owner=owner)
        return [r.to_dict() for r in records if r.has_images][:limit]

    def favourite(self, record_id: str, owner: str | None = None) -> dict[str, Any]:
        """Toggle the record's favourite mark; return the record."""
        current = self.store.get(record_id, owner=owner)
        return self.store.set_favourite(record_id, not current.favourite, owner=owner).to_dict()

    def share(self, record_id: str, owner: str | None = None) -> str:
        """The record's public share token (its active one if it has one)."""
        return self.store.share(record_id, owner=owner)

    def delete(self, record_id: str, owner: str | None = None) -> None:
        """Remove the record, its share links and its image files."""
        self.store.delete(record_id, owner=owner)

    def shared(self, token: str) -> dict[str, Any]:
        """The record behind an active share token (NotFound when unknown or revoked)."""
        return self.store.resolve_share(token).to_dict()

    def close(self) -> None:
        """Release the database."""
        self.store.close()

    # ---- the model picker (studio.models.choices: configs and headers only, no weights loaded) -------------------
    def models(self) -> list[Any]:
        """The models this studio serves (``ModelChoice``s), the resident one first; unloadable ones with the reason."""
        from studio.models.choices import model_choices

        return model_choices(self.settings, self.engine.model_name)

    def model_defaults(self, name: str) -> Any:
        """A served model's ``ModelDefaults`` (size, steps, guidance) without loading it; InvalidRequest for others."""
        from studio.models.choices import model_defaults

        return model_defaults(name, self.settings)


def _pixel_bytes(image: Any) -> int:
    """Memory an image's pixels take (PIL: width × height × bands; anything else: 0)."""
    size, bands = getattr(image, "size", (0, 0)), getattr(image, "getbands", lambda: ())()
    return int(size[0]) * int(size[1]) * max(1, len(bands)) if isinstance(size, tuple) else 0


def _trim_previews(maps: OrderedDict[tuple, Any]) -> None:
    """Drop the least recently used previews past ``CONTROL_PREVIEWS_KEPT`` or ``CONTROL_PREVIEW_BYTES``."""
    while len(maps) > CONTROL_PREVIEWS_KEPT or (
        len(maps) > 1 and sum(_pixel_bytes(m) for m in maps.values()) > CONTROL_PREVIEW_BYTES
    ):
        maps.popitem(last=False)


def _open_store(settings: Settings) -> Store:
    """The history Store; a data folder that cannot be a folder (a file is in the way) is a message naming the fix."""
    try:
        return Store(settings.db_url, settings.data_dir)
    except OSError as exc:
        raise StorageError(
            f"cannot use {exc.filename or settings.data_dir} as the data folder ({_reason(exc)}) — "
            "set STUDIO_DATA_DIR to a writable folder"
        ) from exc


def _reason(exc: OSError) -> str:
    """An OSError in words a user can act on."""
    if exc.errno in (errno.EEXIST, errno.ENOTDIR):
        return "a file is in the way of the folder"
    return exc.strerror or str(exc)


def _no_phase(_name: str) -> None:
    """The default phase listener."""
