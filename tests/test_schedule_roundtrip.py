"""A schedule survives record → PNG metadata → import → replay, and reaches the loop as per-step values."""

from __future__ import annotations

import json

from studio.cli.requests import parse_schedule
from studio.core.request import GenerationRequest
from studio.store import pngmeta

PROMPT = "a red circle in the top left on a white background"
SCHEDULE = {"guidance": [[0.0, 6.0], [1.0, 1.0]], "true_cfg": [[0.0, 3.0], [0.33, 3.0], [0.34, 1.0], [1.0, 1.0]]}


def test_schedule_round_trips_through_record_png_import_and_replay(studio, tmp_path):
    schedule_file = tmp_path / "schedule.json"
    schedule_file.write_text(json.dumps(SCHEDULE))
    schedule = parse_schedule(f"@{schedule_file}")
    record = studio.generate(GenerationRequest(prompt=PROMPT, seed=4, steps=6, negative_prompt="", schedule=schedule))
    assert record["request"]["schedule"] == SCHEDULE
    imported = pngmeta.read_png_request(record["images"][0]["path"])
    assert imported["schedule"] == SCHEDULE
    again = studio.generate(GenerationRequest.from_dict(imported))
    assert again["images"][0]["sha256"] == record["images"][0]["sha256"]
    replay = studio.replay(record["id"])
    assert replay["images"][0]["sha256"] == record["images"][0]["sha256"]


def test_the_loop_gets_one_value_per_step():
    from studio.engine.sampling import plan_for

    plan = plan_for(GenerationRequest(prompt=PROMPT, steps=6, guidance=3.5, true_cfg=1.0, schedule=SCHEDULE))
    assert plan.guidance == [6.0, 5.0, 4.0, 3.0, 2.0, 1.0]
    assert plan.true_cfg == [3.0, 3.0, 1.0, 1.0, 1.0, 1.0]


def test_cfg_first_third_runs_fewer_transformer_passes(studio):
    calls = []
    handle = studio.engine.pipe.transformer.register_forward_hook(lambda *_: calls.append(1))
    try:
        studio.generate(GenerationRequest(prompt=PROMPT, seed=1, steps=6, true_cfg=3.0, negative_prompt=""))
        constant = len(calls)
        calls.clear()
        studio.generate(
            GenerationRequest(
                prompt=PROMPT,
                seed=1,
                steps=6,
                true_cfg=3.0,
                negative_prompt="",
                schedule={"true_cfg": SCHEDULE["true_cfg"]},
            )
        )
    finally:
        handle.remove()
    assert constant == 12 and len(calls) == 6 + 2
