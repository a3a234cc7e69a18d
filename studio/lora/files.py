"""LoRA files on disk: scan the LoRA folders, resolve names safely, hash, read header metadata. No torch here.

A LoRA's *name* is its path inside a LoRA folder without ``.safetensors`` (``outlined``, ``styles/ink``). Only
files inside ``Settings.lora_dirs`` can be resolved; pickled checkpoints are refused, never unpickled. A hostile header
(over 100 MB, nested deeper than a real one, not the safetensors layout) is a LoraFileError — the picker lists the file
as unusable with the reason — never a crash.
"""

from __future__ import annotations

import hashlib
import re
import threading
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from studio.core.errors import NotFound, StudioError
from studio.core.limits import MAX_JSON_DEPTH, loads_json
from studio.lora.detect import detect_format, detect_target, is_control_lora

SUFFIX = ".safetensors"
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl")
PREVIEW_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".preview.png", ".preview.jpg")
MAX_HEADER_BYTES = 100 * 1024 * 1024
MAX_HEADER_DEPTH = 8  # a valid header nests 3 deep: {name: {"shape": [...]}}; deeper is hostile or broken
MAX_TRIGGER_WORDS = 5
MAX_TRIGGER_CHARS = 200  # longer 'words' are junk (or hostile) metadata, not something to type
_SHA256 = re.compile(r"^[0-9a-f]{64}$")


class LoraFileError(StudioError):
    """A LoRA file that cannot be used as it is (pickle, empty, truncated, not safetensors)."""


@dataclass(frozen=True)
class LoraFile:
    """A file found in a LoRA folder; ``problem`` says why it cannot be used (None when it can)."""

    name: str
    path: Path
    size: int
    mtime_ns: int
    preview: Path | None = None
    problem: str | None = None


@dataclass(frozen=True)
class LoraMeta:
    """What a file's safetensors header tells: trigger words, base model, rank, training details."""

    trigger_words: tuple[str, ...] = ()
    base_model: str | None = None
    title: str | None = None
    rank: int | None = None
    training: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class SafetensorsHeader:
    """The parsed header: tensor name → (dtype, shape), and the free-form ``__metadata__`` strings."""

    shapes: dict[str, tuple[int, ...]]
    metadata: dict[str, str]


# ---- refusing what must not be loaded ---------------------------------------------------------------
def pickle_reason(path: Path) -> str:
    """Why a pickled checkpoint is refused, naming the fix."""
    return (
        f"{path.name} is a pickled checkpoint ({path.suffix}): loading it could run arbitrary code, so the studio "
        "never opens it — convert it to .safetensors (e.g. load it in a trusted session and save with "
        "safetensors.torch.save_file) or download the .safetensors version"
    )


def read_header(path: Path) -> SafetensorsHeader:
    """Parse a safetensors header without loading tensors; refuse empty, truncated or non-safetensors files."""
    if path.suffix.lower() in PICKLE_SUFFIXES:
        raise LoraFileError(pickle_reason(path))
    try:
        size = path.stat().st_size
        with path.open("rb") as handle:
            head = handle.read(8)
            length = int.from_bytes(head, "little") if len(head) == 8 else -1
            raw = handle.read(length) if 0 < length <= min(size - 8, MAX_HEADER_BYTES) else b""
    except OSError as exc:
        raise LoraFileError(f"cannot read {path} ({exc.strerror}) — check the file and its permissions") from None
    if size == 0:
        raise LoraFileError(f"{path.name} is empty (0 bytes) — the download or copy did not finish; get the file again")
    if not raw:
        raise LoraFileError(
            f"{path.name} is not a safetensors file or is truncated (bad header length) — download it again"
        )
    try:
        header, metadata = _header_json(raw)
        shapes = {name: tuple(int(d) for d in info["shape"]) for name, info in header.items()}
        end = max((int(info["data_offsets"][1]) for info in header.values()), default=0)
    except (ValueError, TypeError, KeyError, IndexError, AttributeError) as exc:
        raise LoraFileError(
            f"{path.name} has a corrupt safetensors header ({str(exc)[:120] or type(exc).__name__}) — it is not a "
            "usable LoRA; download the file again"
        ) from None
    if 8 + length + end > size:
        raise LoraFileError(
            f"{path.name} is truncated: its header promises {8 + length + end} bytes but the file has {size} — "
            "the download did not finish; get the file again"
        )
    return SafetensorsHeader(shapes, {str(k): str(v) for k, v in metadata.items()})


def _header_json(raw: bytes) -> tuple[dict[str, Any], dict[str, Any]]:
    """(tensor entries, ``__metadata__``) of a header's JSON; ValueError for hostile nesting or the wrong shape."""
    header = loads_json(raw, MAX_HEADER_DEPTH)
    if not isinstance(header, dict):
        raise ValueError("the header is not a JSON object")
    metadata = header.pop("__metadata__", None) or {}
    if not isinstance(metadata, dict):
        raise ValueError("__metadata__ is not a JSON object")
    return header, metadata


# ---- metadata ----------------------------------------------------------------------------------------
def parse_meta(header: SafetensorsHeader) -> LoraMeta:
    """Trigger words, base model, rank and training info from ours, kohya ``ss_*``, modelspec and diffusers keys."""
    meta = header.metadata
    training = {
        k: v
        for k, v in meta.items()
        if len(v) < 2000
        and k != "ss_tag_frequency"
        and (k.startswith(("ss_", "modelspec.")) or k in ("lora_adapter_metadata", "training_info", "software"))
    }
    base = (
        meta.get("flux_studio.base_model")
        or meta.get("modelspec.architecture")
        or meta.get("ss_base_model_version")
        or meta.get("ss_sd_model_name")
    )
    title = (
        meta.get("flux_studio.name") or meta.get("modelspec.title") or meta.get("ss_output_name") or meta.get("name")
    )
    return LoraMeta(trigger_words(meta), base or None, title or None, rank_from_shapes(header.shapes), training)


def trigger_words(meta: dict[str, str]) -> tuple[str, ...]:
    """The file's trigger words: ours, then modelspec's trigger phrase, then kohya's most frequent caption tags."""
    for key in ("flux_studio.trigger_words", "trigger_words", "trigger_word", "modelspec.trigger_phrase"):
        if meta.get(key):
            return _split_words(meta[key])
    if meta.get("ss_tag_frequency"):
        return _top_tags(meta["ss_tag_frequency"])
    return ()


def _split_words(value: str) -> tuple[str, ...]:
    try:
        parsed = loads_json(value, MAX_JSON_DEPTH)
    except ValueError:
        parsed = value
    items = parsed if isinstance(parsed, list) else str(parsed).split(",")
    return tuple(dict.fromkeys(w for w in (str(w).strip() for w in items) if w and len(w) <= MAX_TRIGGER_CHARS))


def _top_tags(raw: str) -> tuple[str, ...]:
    try:
        datasets = loads_json(raw, MAX_JSON_DEPTH)
        counts: Counter[str] = Counter()
        for tags in datasets.values():
            for tag, count in tags.items():
                counts[tag.strip()] += int(count)
    except (ValueError, AttributeError, TypeError):
        return ()
    return tuple(tag for tag, _ in counts.most_common(MAX_TRIGGER_WORDS) if tag)


def rank_from_shapes(shapes: dict[str, tuple[int, ...]]) -> int | None:
    """The LoRA rank: the largest first dimension of the down/A matrices (LoHa: ``hada_w1_b``; LoKr: a low-rank
    factor's ``_b``; a LoKr of full Kronecker factors has no rank)."""
    ranks = [
        shape[0]
        for key, shape in shapes.items()
        if shape
        and (
            ".lora_A." in key
            or ".lora_down." in key
            or key.endswith((".down.weight", ".hada_w1_b", ".lokr_w1_b", ".lokr_w2_b"))
        )
    ]
    return max(ranks) if ranks else None


def find_preview(path: Path) -> Path | None:
    """An image next to the file with the same stem (``name.png``, ``name.preview.jpg`` …)."""
    stem = path.name[: -len(SUFFIX)] if path.name.endswith(SUFFIX) else path.stem
    for suffix in PREVIEW_SUFFIXES:
        candidate = path.with_name(stem + suffix)
        if candidate.is_file():
            return candidate
    return None


def sha256_file(path: Path) -> str:
    """The file's SHA-256 (hex)."""
    with path.open("rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


# ---- the library -------------------------------------------------------------------------------------
class LoraLibrary:
    """The LoRA folders: scanning, safe name/path resolution and hashes cached by (path, size, mtime)."""

    def __init__(self, dirs: tuple[Path, ...] | list[Path]) -> None:
        self.dirs = tuple(Path(d).expanduser().resolve() for d in dirs)
        self._hashes: dict[tuple[str, int, int], str] = {}
        self._lock = threading.Lock()

    def scan(self) -> list[LoraFile]:
        """Every ``.safetensors`` (and, with a problem noted, every pickle) under the folders, sorted by name."""
        found: dict[Path, LoraFile] = {}
        for root in self.dirs:
            if not root.is_dir():
                continue
            for path in sorted(root.rglob("*")):
                suffix = path.suffix.lower()
                if suffix not in (SUFFIX, *PICKLE_SUFFIXES) or not path.is_file() or path in found:
                    continue
                found[path] = self._file(root, path)
        return sorted(found.values(), key=lambda f: (f.name.lower(), str(f.path)))

    def _file(self, root: Path, path: Path) -> LoraFile:
        stat = path.stat()
        relative = path.relative_to(root).as_posix()
        is_pickle = path.suffix.lower() in PICKLE_SUFFIXES
        name = relative if is_pickle else relative[: -len(SUFFIX)]
        problem = pickle_reason(path) if is_pickle else None
        return LoraFile(name, path, stat.st_size, stat.st_mtime_ns, find_preview(path), problem)

    def sha256(self, file: LoraFile | Path) -> str:
        """The file's SHA-256, computed once per (path, size, mtime)."""
        path = file.path if isinstance(file, LoraFile) else Path(file)
        stat = path.stat()
        key = (str(path), stat.st_size, stat.st_mtime_ns)
        with self._lock:
            cached = self._hashes.get(key)
        if cached is None:
            cached = sha256_file(path)
            with self._lock:
                self._hashes[key] = cached
        return cached

    def resolve(self, name_or_path: str) -> LoraFile:
        """The usable file a name or path means — only inside the LoRA folders."""
        text = (name_or_path or "").strip()
        if not text:
            raise StudioError("a LoRA needs a name or path — pick one from the LoRA list")
        if Path(text).suffix.lower() in PICKLE_SUFFIXES:
            raise LoraFileError(pickle_reason(Path(text)))
        if text.endswith(SUFFIX) or Path(text).is_absolute() or text.startswith(("~", ".")):
            return self._resolve_path(text)
        return self._resolve_name(text)

    def _resolve_path(self, text: str) -> LoraFile:
        raw = Path(text).expanduser()
        candidates = [raw] if raw.is_absolute() else [Path.cwd() / raw, *(root / raw for root in self.dirs)]
        for candidate in candidates:
            path = candidate.resolve()
            root = self._root_of(path)
            if root is not None and path.is_file():
                return self._usable(self._file(root, path))
        if any(self._root_of(c.resolve()) for c in candidates):
            raise NotFound(f"no LoRA file {text!r} in the LoRA folders ({self._dirs_text()}) — check the name")
        raise StudioError(
            f"{text} is outside the LoRA folders ({self._dirs_text()}) — copy it into one of them or add its "
            "folder to STUDIO_LORA_DIRS"
        )

    def _root_of(self, path: Path) -> Path | None:
        return next((root for root in self.dirs if path.is_relative_to(root)), None)

    def _resolve_name(self, name: str) -> LoraFile:
        if ".." in Path(name).parts or "\\" in name:
            raise StudioError(f"LoRA name {name!r} must not leave the LoRA folders — use a name from the LoRA list")
        files = self.scan()
        matches = [f for f in files if f.name == name] or [f for f in files if f.name.rsplit("/", 1)[-1] == name]
        if not matches:
            known = ", ".join(f.name for f in files[:10]) or "none"
            raise NotFound(
                f"no LoRA named {name!r} in {self._dirs_text()} (found: {known}) — copy the .safetensors file "
                "into a LoRA folder or check the name"
            )
        usable = [f for f in matches if f.problem is None] or matches
        if len({self.sha256(f) for f in usable if f.problem is None}) > 1:
            paths = ", ".join(str(f.path) for f in usable)
            raise StudioError(f"LoRA name {name!r} matches different files ({paths}) — give the path or rename one")
        return self._usable(usable[0])

    def _usable(self, file: LoraFile) -> LoraFile:
        if file.problem:
            raise LoraFileError(file.problem)
        return file

    def find_sha256(self, sha256: str) -> LoraFile | None:
        """The first usable file with this content hash, or None."""
        digest = sha256.lower().removeprefix("sha256:")
        if not _SHA256.match(digest):
            return None
        for file in self.scan():
            if file.problem is None and self.sha256(file) == digest:
                return file
        return None

    def locate(self, name: str, sha256: str = "") -> LoraFile:
        """The file a request's LoRA means: by content hash when given (replay), else by name."""
        if not sha256:
            return self.resolve(name)
        try:
            by_name = self.resolve(name) if name else None
        except StudioError:
            by_name = None
        if by_name is not None and self.sha256(by_name) == sha256.lower():
            return by_name
        found = self.find_sha256(sha256)
        if found is None:
            raise NotFound(
                f"LoRA {name or '?'!r} (sha256 {sha256[:12]}…) is missing: no file in {self._dirs_text()} has that "
                "content — put the file back into a LoRA folder, or remove this LoRA from the request"
            )
        return found

    def describe(self, file: LoraFile) -> dict[str, Any]:
        """The picker's and ``lora list``'s view of one file (header only; no tensors are loaded)."""
        entry: dict[str, Any] = {
            "name": file.name,
            "path": str(file.path),
            "size": file.size,
            "preview": str(file.preview) if file.preview else None,
        }
        if file.problem:
            return {**entry, "sha256": None, "trigger_words": [], "rank": None, "error": file.problem}
        try:
            header = read_header(file.path)
        except StudioError as exc:
            return {**entry, "sha256": None, "trigger_words": [], "rank": None, "error": str(exc)}
        meta = parse_meta(header)
        return {
            **entry,
            "sha256": self.sha256(file),
            "trigger_words": list(meta.trigger_words),
            "rank": meta.rank,
            "base_model": meta.base_model,
            "title": meta.title,
            "format": detect_format(header.shapes, header.metadata),
            "target": detect_target(header.shapes, header.shapes),
            "control": is_control_lora(header.shapes),
            "error": None,
        }

    def _dirs_text(self) -> str:
        return ", ".join(str(d) for d in self.dirs) or "(none: set STUDIO_LORA_DIRS)"
