"""ToyGenEval on the resident model: generate each prompt, score it (TOYWORLD.md). Nothing goes into history."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from studio.core.errors import InvalidRequest
from studio.core.request import GenerationRequest


def load_prompts(prompts_file: Path | None, n: int, kind: str, seed: int) -> list[str]:
    """Prompts from a file (one a line) or the held-out toy-world set."""
    from studio.core.limits import read_text_file
    from studio.toyworld.grammar import parse_prompt, prompt_set

    if prompts_file is None:
        return prompt_set(kind, n, seed=seed, split="heldout")
    try:
        text = read_text_file(prompts_file, "--prompts")
        prompts = [line.strip() for line in text.splitlines() if line.strip()]
    except (OSError, UnicodeDecodeError) as exc:
        raise InvalidRequest(
            f"cannot read --prompts {prompts_file} ({exc}) — give a UTF-8 file, one prompt a line"
        ) from None
    for prompt in prompts:
        try:
            parse_prompt(prompt)
        except ValueError as exc:
            raise InvalidRequest(f"{prompt!r} is outside the toy-world grammar ({exc}) — see TOYWORLD.md") from None
    if not prompts:
        raise InvalidRequest(f"--prompts {prompts_file} has no prompts")
    return prompts


def run_eval(
    studio: Any,
    prompts_file: Path | None = None,
    steps: int | None = None,
    seed: int = 0,
    n: int = 40,
    kind: str = "one",
    true_cfg: float = 1.0,
    **request_fields: Any,
) -> dict[str, Any]:
    """Accuracies over the prompt set: ``{"n", "color", "shape", "position", "joint"}`` (0..1)."""
    from studio.toyworld.evaluate import evaluate_many

    prompts = load_prompts(prompts_file, n, kind, seed)
    pairs = []
    for k, prompt in enumerate(prompts):
        request = GenerationRequest(prompt=prompt, steps=steps, seed=seed + k, true_cfg=true_cfg, **request_fields)
        result = studio.engine.generate(request)
        pairs.append((result.images[0], prompt))
    scores = evaluate_many(pairs)
    return {key: scores[key] for key in ("n", "color", "shape", "position", "joint")} | {
        "background": scores.get("background"),
        "steps": result.request.steps,
        "model": result.request.model,
    }
