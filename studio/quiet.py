"""Quiet command-line tools: the CLI's stderr carries only the studio's own messages.

``quiet()`` is called once by ``python -m studio`` before anything heavy is imported. It turns off the progress bars
of tqdm, huggingface_hub, diffusers and transformers, lowers the libraries' loggers (torch, torchao, diffusers,
transformers, huggingface_hub, accelerate, peft, timm, controlnet_aux …) to errors, and ignores Python's
Future/User/Deprecation warnings (e.g. timm's "Overwriting tiny_vit…" via controlnet_aux). Environment variables a
user set are kept (``setdefault``), so ``TQDM_DISABLE=0`` or ``TORCH_LOGS`` still win. ``--verbose`` skips all this.
"""

from __future__ import annotations

import logging
import os
import warnings
from collections.abc import MutableMapping

QUIET_ENV = {
    "TQDM_DISABLE": "1",  # tqdm reads TQDM_* defaults when it is imported
    "HF_HUB_DISABLE_PROGRESS_BARS": "1",
    "HF_HUB_VERBOSITY": "error",
    "DIFFUSERS_VERBOSITY": "error",
    "TRANSFORMERS_VERBOSITY": "error",
    "TRANSFORMERS_NO_ADVISORY_WARNINGS": "1",
    "TORCH_LOGS": "-all",  # torch resets its own loggers when imported: this sets the "torch" logger to ERROR
    "TORCH_CPP_LOG_LEVEL": "ERROR",
    "TF_CPP_MIN_LOG_LEVEL": "3",
}
LIBRARY_LOGGERS = ("torch", "torchao", "diffusers", "transformers", "huggingface_hub", "accelerate", "peft", "timm",
                   "controlnet_aux", "bitsandbytes", "safetensors", "PIL", "urllib3", "httpx")  # fmt: skip
WARNING_CATEGORIES = (FutureWarning, UserWarning, DeprecationWarning, PendingDeprecationWarning, RuntimeWarning)


def strip_verbose(argv: list[str]) -> tuple[list[str], bool]:
    """(``argv`` without ``--verbose``, whether it was there)."""
    kept = [arg for arg in argv if arg != "--verbose"]
    return kept, len(kept) != len(argv)


def quiet(verbose: bool = False, env: MutableMapping[str, str] | None = None) -> None:
    """Silence library warnings, logs and progress bars for this process (nothing when ``verbose``)."""
    if verbose:
        return
    env = os.environ if env is None else env
    for key, value in QUIET_ENV.items():
        env.setdefault(key, value)
    for category in WARNING_CATEGORIES:
        warnings.filterwarnings("ignore", category=category)
    for name in LIBRARY_LOGGERS:
        logging.getLogger(name).setLevel(logging.ERROR)
