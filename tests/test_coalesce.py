"""Request coalescing on the embedded model: queued compatible requests share one batched denoise, and each gets
the images it would get alone, its own record, progress and cancel."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

from studio.core.errors import Cancelled, NotFound
from studio.core.request import CacheSpec, GenerationRequest, LoraSpec, RegionSpec
from studio.engine.coalesce import compatibility_key

PROMPTS = [
    "a red circle in the top left on a white background",
    "a blue square in the center on a black background",
    "a green triangle in the bottom right on a gray background",
]
REF = "sha256:" + "0" * 64


def test_key_ignores_prompts_seeds_and_batch_but_not_what_shapes_the_denoise():
    base = GenerationRequest(prompt="a", seed=1, steps=4, width=64, height=64)
    same = base.replace(prompt="b", prompt_2="c", negative_prompt="d", seed=9, batch_size=3)
    assert compatibility_key(base) == compatibility_key(same) is not None
    for changed in (
        base.replace(steps=8),
        base.replace(width=128),
        base.replace(guidance=1.0),
        base.replace(true_cfg=2.0),
        base.replace(loras=(LoraSpec("x"),)),
        base.replace(schedule={"guidance": [[0, 5], [1, 2]]}),
        base.replace(quant="int8"),
    ):
        assert compatibility_key(changed) != compatibility_key(base)
    for alone in (
        base.replace(regions=(RegionSpec(REF, "x"),)),
        base.replace(cache=CacheSpec("fbcache", 0.1)),
        base.replace(mode="img2img", init_image=REF),
    ):
        assert compatibility_key(alone) is None


@pytest.fixture
def coalescing(engine):
    """The shared engine with a 50 ms coalescing window (off again afterwards)."""
    engine.configure_coalescing(50)
    yield engine
    engine.configure_coalescing(0)


def run_queued(engine, calls: list[Callable[[], Any]]) -> list[Any]:
    """Start ``calls`` while the engine is busy with an uncoalescable generation, so they queue together; return
    their results (or exceptions) in order."""
    release, started = threading.Event(), threading.Event()

    def hold(update) -> None:
        started.set()
        release.wait(30)

    blocker = threading.Thread(
        target=engine.generate,
        args=(GenerationRequest(prompt="hold", seed=0, steps=1, cache=CacheSpec("fbcache", 0.1)), hold),
    )
    blocker.start()
    assert started.wait(60)
    results: list[Any] = [None] * len(calls)

    def worker(k: int) -> None:
        try:
            results[k] = calls[k]()
        except Exception as exc:  # noqa: BLE001 - returned for the test to inspect
            results[k] = exc

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(len(calls))]
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + 30
    while engine.coalescer.waiting < len(calls) and time.monotonic() < deadline:
        time.sleep(0.01)
    release.set()
    for thread in (blocker, *threads):
        thread.join(120)
    return results


def close(a, b) -> bool:
    """Pixels equal up to one level (batched matmuls round differently in the last float bits)."""
    diff = np.abs(np.asarray(a, dtype=np.int16) - np.asarray(b, dtype=np.int16))
    return int(diff.max()) <= 1


def test_queued_requests_run_as_one_batch_and_match_running_alone(coalescing):
    engine = coalescing
    requests = [GenerationRequest(prompt=p, seed=10 * k, batch_size=1 + (k == 1)) for k, p in enumerate(PROMPTS)]
    progress: list[list[int]] = [[] for _ in requests]
    calls = [
        lambda k=k: engine.generate(requests[k], on_step=lambda u, k=k: progress[k].append(u.step))
        for k in range(len(requests))
    ]
    results = run_queued(engine, calls)
    assert engine.coalescer.last_group_size == 3
    engine.configure_coalescing(0)
    for k, result in enumerate(results):
        assert not isinstance(result, Exception), result
        assert result.timings["coalesced"] == 3 and result.seeds == requests[k].seeds()
        assert progress[k] == [1, 2, 3, 4]
        alone = engine.generate(requests[k])
        assert len(result.images) == len(alone.images) == requests[k].batch_size
        assert all(close(a, b) for a, b in zip(result.images, alone.images))


def test_true_cfg_rows_keep_their_own_negative_prompts(coalescing):
    engine = coalescing
    requests = [
        GenerationRequest(prompt=PROMPTS[k], seed=k, true_cfg=2.5, negative_prompt=neg)
        for k, neg in enumerate(("blue", "a red circle"))
    ]
    results = run_queued(engine, [lambda r=r: engine.generate(r) for r in requests])
    assert engine.coalescer.last_group_size == 2
    engine.configure_coalescing(0)
    for request, result in zip(requests, results):
        assert close(result.images[0], engine.generate(request).images[0])


def test_each_request_gets_its_own_record_and_a_cancelled_one_leaves_early(coalescing, studio):
    cancel = threading.Event()

    def cancel_at_first_step(update) -> None:
        cancel.set()

    calls = [
        lambda: studio.generate(GenerationRequest(prompt=PROMPTS[0], seed=1)),
        lambda: studio.generate(
            GenerationRequest(prompt=PROMPTS[1], seed=2), on_step=cancel_at_first_step, cancel=cancel
        ),
        lambda: studio.generate(GenerationRequest(prompt=PROMPTS[2], seed=3)),
    ]
    done, cancelled, other = run_queued(coalescing, calls)
    assert coalescing.coalescer.last_group_size == 3
    assert len({done["id"], cancelled["id"], other["id"]}) == 3
    assert done["status"] == other["status"] == "done" and cancelled["status"] == "cancelled"
    assert cancelled["images"] == [] and cancelled["request"]["seed"] == 2
    assert [done["images"][0]["seed"], other["images"][0]["seed"]] == [1, 3]
    assert studio.store.get(other["id"])["request"]["prompt"] == PROMPTS[2]


def test_a_lone_request_runs_exactly_as_without_coalescing(coalescing):
    request = GenerationRequest(prompt=PROMPTS[0], seed=4)
    coalesced = coalescing.generate(request)
    coalescing.configure_coalescing(0)
    plain = coalescing.generate(request)
    assert np.array_equal(np.asarray(coalesced.images[0]), np.asarray(plain.images[0]))


def test_a_group_error_reaches_every_request(coalescing):
    request = GenerationRequest(prompt=PROMPTS[0], seed=1, loras=(LoraSpec("no-such-lora"),))
    results = run_queued(coalescing, [lambda: coalescing.generate(request), lambda: coalescing.generate(request)])
    assert all(isinstance(r, NotFound) for r in results)
    assert not isinstance(results[0], Cancelled)


def test_a_failing_progress_listener_ends_only_its_own_request(coalescing):
    def broken(update) -> None:
        raise RuntimeError("listener went away")

    calls = [
        lambda: coalescing.generate(GenerationRequest(prompt=PROMPTS[0], seed=1)),
        lambda: coalescing.generate(GenerationRequest(prompt=PROMPTS[1], seed=2), on_step=broken),
    ]
    done, failed = run_queued(coalescing, calls)
    assert coalescing.coalescer.last_group_size == 2
    assert isinstance(failed, RuntimeError) and "listener went away" in str(failed)
    assert len(done.images) == 1 and done.seeds == [1]


def test_a_group_holds_only_as_many_images_as_fit_in_free_memory(coalescing, monkeypatch):
    # flux-mini at 256×256: 1 image ~207 MiB, 2 ~285 MiB, 3 ~364 MiB (studio.engine.memory_estimate; the VAE decode peaks)
    engine = coalescing
    monkeypatch.setattr(engine, "settings", engine.settings.with_overrides(max_memory_mb=320.0))  # STUDIO_MAX_MEMORY_MB
    requests = [GenerationRequest(prompt=p, seed=k, width=256, height=256, steps=2) for k, p in enumerate(PROMPTS)]
    results = run_queued(engine, [lambda r=r: engine.generate(r) for r in requests])
    assert not [r for r in results if isinstance(r, Exception)], results
    sizes = sorted(r.timings.get("coalesced", 1) for r in results)  # a request run alone has no group
    assert sizes == [1, 2, 2]  # three compatible requests, memory for two at once
