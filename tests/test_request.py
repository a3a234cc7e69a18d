"""GenerationRequest: validation at the boundary with messages naming the fix; JSON round trip."""

import math

import pytest

from studio.core.errors import InvalidRequest
from studio.core.request import CacheSpec, ControlSpec, GenerationRequest, LoraSpec, RegionSpec

REF = "sha256:" + "a" * 64


def full_request() -> GenerationRequest:
    return GenerationRequest(
        prompt="a red circle",
        model="m",
        width=64,
        height=64,
        steps=4,
        seed=7,
        batch_size=2,
        guidance=3.5,
        true_cfg=2.0,
        negative_prompt="blurry",
        schedule={"guidance": [[0.0, 4.0], [1.0, 2.0]]},
        controls=(ControlSpec("canny", REF, True, 0.8, 0.0, 0.5),),
        regions=(RegionSpec(REF, "a blue square"),),
        loras=(LoraSpec("outlined", "b" * 64, 0.7),),
        cache=CacheSpec("fbcache", 0.1),
    )


def test_json_round_trip_is_lossless():
    request = full_request()
    data = request.to_dict()
    assert data["schema_version"] == 1
    assert GenerationRequest.from_dict(data) == request


def test_record_keys_match_the_contract():
    keys = set(full_request().to_dict())
    contract = {
        "model",
        "mode",
        "prompt",
        "prompt_2",
        "negative_prompt",
        "width",
        "height",
        "steps",
        "seed",
        "batch_size",
        "guidance",
        "true_cfg",
        "schedule",
        "controls",
        "regions",
        "loras",
        "init_image",
        "mask",
        "strength",
        "cache",
        "quant",
    }
    assert contract <= keys


def test_batch_seeds_are_seed_plus_k():
    assert full_request().seeds() == [7, 8]


@pytest.mark.parametrize(
    "changes, fragment",
    [
        ({"prompt": "  "}, "prompt is empty"),
        ({"prompt": "x" * 5000}, "shorten it"),
        ({"prompt": "a\x00b"}, "control characters"),
        ({"width": 100}, "multiple of 16 .* try 96"),
        ({"height": 0}, "from 16"),
        ({"width": 100000}, "from 16 to 4096"),
        ({"steps": 0}, "steps must be from 1 to 200"),
        ({"steps": 10000}, "steps must be from 1 to 200"),
        ({"guidance": math.nan}, "finite"),
        ({"guidance": math.inf}, "finite"),
        ({"guidance": -1.0}, "from 0 to 30"),
        ({"true_cfg": 1e9}, "from 0 to 30"),
        ({"seed": -5}, "seed must be from 0"),
        ({"seed": 2**40}, "seed must be from 0"),
        ({"batch_size": 0}, "batch_size"),
        ({"mode": "video"}, "mode"),
        ({"mode": "img2img"}, "needs an init image"),
        ({"init_image": "../../etc/passwd", "mode": "img2img"}, "sha256"),
        ({"schedule": {"guidance": [[2, 1]]}}, "between 0 and 1"),
        ({"schedule": "fast"}, "JSON object"),
        ({"loras": (LoraSpec("x", "", 9.0),)}, "from -4 to 4"),
        ({"controls": (ControlSpec("canny", REF),) * 4}, "at most 3"),
        ({"controls": (ControlSpec("sketch", REF),)}, "unknown"),
        ({"controls": (ControlSpec("canny", REF, True, 1.0, 0.8, 0.2),)}, "start must be before"),
        ({"cache": CacheSpec("turbo")}, "cache"),
        ({"quant": "int3"}, "quant"),
    ],
)
def test_bad_input_is_refused_with_a_fix(changes, fragment):
    with pytest.raises(InvalidRequest, match=fragment):
        full_request().replace(**changes).validate()


def test_unresolved_request_is_valid_and_not_resolved():
    request = GenerationRequest(prompt="a cat").validate()
    assert not request.is_resolved
