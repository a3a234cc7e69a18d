"""Performance switches on flux-mini, measured as ratios in one run (issue: performance).

    python -m benchmarks.perf [--n 16] [--steps 12] [--json out.json]

Rows: prompt cache hit vs miss; each step cache at 2-3 thresholds (speedup and ToyGenEval change); int8 vs fp32
transformer (size, speed, ToyGenEval change); 8 concurrent compatible requests coalesced vs serial
(``benchmarks.coalesce``); LoRA switch vs pipeline reload; cold start to first image.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from benchmarks import coalesce as coalesce_bench
from studio.core import settings as settings_mod
from studio.core.request import CacheSpec, GenerationRequest
from studio.engine.engine import Engine
from studio.toyworld.evaluate import evaluate_many
from studio.toyworld.grammar import prompt_set


def timed(fn, repeats: int = 5) -> float:
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def toy_eval(engine: Engine, prompts: list[str], steps: int, **fields) -> tuple[float, float]:
    """(joint accuracy, seconds) over the prompts, seeds 0..n-1."""
    started = time.perf_counter()
    images = [
        engine.generate(GenerationRequest(prompt=p, steps=steps, seed=k, **fields)).images[0]
        for k, p in enumerate(prompts)
    ]
    elapsed = time.perf_counter() - started
    return evaluate_many(list(zip(images, prompts)))["joint"], elapsed


def transformer_bytes(transformer) -> int:
    total = 0
    for tensor in transformer.state_dict().values():
        inner = [getattr(tensor, name) for name in ("qdata", "int_data", "data") if hasattr(tensor, name)]
        t = inner[0] if inner and isinstance(inner[0], torch.Tensor) and inner[0] is not tensor else tensor
        total += t.numel() * t.element_size()
        if hasattr(tensor, "scale"):
            total += tensor.scale.numel() * tensor.scale.element_size()
    return total


def lora_rows(settings, reload_s: float) -> list[dict]:
    """First LoRA load and switching between two loaded LoRAs, against reloading the pipeline."""
    from safetensors.torch import save_file

    from studio.core.request import LoraSpec

    with tempfile.TemporaryDirectory() as tmp:
        engine = Engine(settings.with_overrides(lora_dirs=(Path(tmp),)))
        engine.ensure()
        transformer = engine.pipe.transformer
        for k, name in enumerate(("style-a", "style-b")):
            gen = torch.Generator().manual_seed(k)
            tensors = {}
            for module_name in ("transformer_blocks.0.attn.to_q", "transformer_blocks.0.attn.to_v", "proj_out"):
                module = transformer.get_submodule(module_name)
                tensors[f"transformer.{module_name}.lora_A.weight"] = torch.randn(4, module.in_features, generator=gen)
                tensors[f"transformer.{module_name}.lora_B.weight"] = torch.randn(module.out_features, 4, generator=gen)
            save_file(tensors, str(Path(tmp) / f"{name}.safetensors"))
        base = GenerationRequest(prompt="a red circle in the top left on a white background", seed=1, steps=1)
        started = time.perf_counter()
        engine.generate(base.replace(loras=(LoraSpec("style-a"),)))
        first_s = time.perf_counter() - started
        engine.generate(base.replace(loras=(LoraSpec("style-b"),)))
        switches = []
        for name in ("style-a", "style-b") * 5:
            engine.generate(base.replace(loras=(LoraSpec(name),)))
            switches.append(engine.lora_adapters.last_switch_s)
        switch_s = statistics.median(switches)
    return [
        {
            "row": "LoRA switch (loaded) vs pipeline reload",
            "ratio": reload_s / switch_s,
            "detail": f"switch {switch_s * 1e3:.1f} ms vs reload {reload_s:.2f} s",
        },
        {"row": "LoRA first load (1-step generation incl.)", "ratio": 1.0, "detail": f"{first_s:.2f} s"},
    ]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=16)
    parser.add_argument("--steps", type=int, default=12)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    settings = settings_mod.from_env(threads=args.threads)
    rows: list[dict] = []
    engine = Engine(settings)
    engine.ensure()
    prompts = prompt_set("one", args.n, seed=0, split="heldout")

    # prompt cache: encode from cache vs fresh
    def miss() -> None:
        engine._text_cache.clear()
        engine.encode(prompts[0], None)

    hit_s, miss_s = timed(lambda: engine.encode(prompts[0], None), 20), timed(miss, 20)
    rows.append(
        {
            "row": "prompt cache hit vs miss (encode)",
            "ratio": miss_s / hit_s,
            "detail": f"miss {miss_s * 1e3:.2f} ms, hit {hit_s * 1e3:.3f} ms",
        }
    )

    base_joint, base_s = toy_eval(engine, prompts, args.steps)
    for kind, thresholds in (
        ("fbcache", (0.05, 0.1, 0.2)),
        ("magcache", (0.06, 0.12, 0.24)),
        ("taylorseer", (2, 3, 4)),
    ):
        for threshold in thresholds:
            joint, seconds = toy_eval(engine, prompts, args.steps, cache=CacheSpec(kind, float(threshold)))
            rows.append(
                {
                    "row": f"{kind} {threshold}",
                    "ratio": base_s / seconds,
                    "detail": f"speedup x{base_s / seconds:.2f}, joint {joint:.3f} vs {base_joint:.3f} "
                    f"({(joint - base_joint) * 100:+.1f} pts)",
                }
            )

    fp32_bytes = transformer_bytes(engine.pipe.transformer)
    int8 = Engine(settings)
    int8.ensure(quant="int8")
    int8_bytes = transformer_bytes(int8.pipe.transformer)
    int8_joint, int8_s = toy_eval(int8, prompts, args.steps, quant="int8")
    rows.append(
        {
            "row": "int8 vs fp32 transformer size",
            "ratio": fp32_bytes / int8_bytes,
            "detail": f"{fp32_bytes / 2**20:.1f} MiB → {int8_bytes / 2**20:.1f} MiB",
        }
    )
    rows.append(
        {
            "row": "int8 vs fp32 speed",
            "ratio": base_s / int8_s,
            "detail": f"joint {int8_joint:.3f} vs {base_joint:.3f} ({(int8_joint - base_joint) * 100:+.1f} pts)",
        }
    )
    del int8

    rows += coalesce_bench.rows(settings, n=8, steps=(args.steps,), repeats=3)
    reload_s = timed(lambda: Engine(settings).ensure(), 3)
    rows.append({"row": "pipeline load (warm disk)", "ratio": 1.0, "detail": f"{reload_s:.2f} s"})
    rows += lora_rows(settings, reload_s)
    with tempfile.TemporaryDirectory() as tmp:
        code = (
            "import time; t=time.perf_counter(); from studio.core import settings as s; from studio.engine.engine import Engine;"
            "from studio.core.request import GenerationRequest as R; e=Engine(s.from_env(threads=1));"
            "e.generate(R(prompt='a red circle in the top left on a white background', seed=1));"
            "print(time.perf_counter()-t)"
        )
        started = time.perf_counter()
        out = subprocess.run(
            [sys.executable, "-c", code],
            capture_output=True,
            text=True,
            cwd=Path(__file__).parent.parent,
            env={"STUDIO_DATA_DIR": tmp, "PATH": "/usr/bin:/bin"},
        )
        wall = time.perf_counter() - started
        inner = out.stdout.strip().splitlines()[-1] if out.stdout.strip() else "?"
        rows.append(
            {
                "row": "cold start to first image (new process)",
                "ratio": 1.0,
                "detail": f"{wall:.1f} s wall incl. interpreter and imports; {inner} s after start of script",
            }
        )

    print(f"{'measurement':<42} {'ratio':>7}  detail")
    for r in rows:
        print(f"{r['row']:<42} {r['ratio']:>7.2f}  {r['detail']}")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
