"""benchmarks/gpu.py in its scaled-down CPU mode: the harness runs end to end and writes the documented JSON."""

from __future__ import annotations

import json

from benchmarks import gpu


def test_flop_floor_of_the_full_geometry_is_flux_dev_at_1024():
    assert abs(gpu.flops_per_step(gpu.FULL) / 1e12 - 74.4) < 0.5
    assert gpu.FULL.width == 3072 and gpu.FULL.image_tokens + gpu.FULL.text_tokens == 4608


def test_full_geometry_is_flux_dev_and_a_pass_has_the_right_shapes_on_the_meta_device():
    import torch

    model = gpu.construct(gpu.FULL, torch.bfloat16)
    assert abs(sum(p.numel() for p in model.parameters()) / 1e9 - 11.9) < 0.05
    tensors = {k: v.to("meta") for k, v in gpu.inputs(gpu.FULL, torch.device("cpu"), torch.bfloat16).items()}
    one = torch.ones(1, device="meta")
    out = model(timestep=one, guidance=one, return_dict=False, **tensors)[0]
    assert tuple(out.shape) == (1, 4096, 64)


def test_scaled_down_run_writes_rows_for_every_mode(tmp_path):
    out = tmp_path / "gpu.json"
    gpu.main(["--scaled-down", "--steps", "3", "--peak-tflops", "1", "--json", str(out)])
    result = json.loads(out.read_text())
    assert result["scaled_down"] is True and result["device"] == "cpu" and result["steps"] == 3
    assert result["geometry"]["double"] == gpu.SCALED.double and result["params"] > 0
    assert result["tflop_per_step"] > 0 and result["floor_s_per_step"] > 0
    rows = {row["mode"]: row for row in result["rows"]}
    assert list(rows) == list(gpu.MODES)
    for mode in ("base", "fbcache", "magcache", "taylorseer"):
        row = rows[mode]
        assert row["status"] == "ok", row
        assert row["per_step_s"] > 0 and row["ratio_to_floor"] > 0 and row["speedup_vs_base"] > 0
        assert row["peak_mem_gib"] is None  # CPU: no device memory counter
    for mode in ("compile", "fp8", "fp8-dynamic", "offload-model", "offload-group", "offload-sequential"):
        assert rows[mode]["status"] == "skipped" and rows[mode]["reason"]
