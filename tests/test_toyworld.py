"""The toy world (shared/TOYWORLD.md): grammar, scene rules, renderer and ToyGenEval, as a specification."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from PIL import Image
from scipy import ndimage

from studio.toyworld import figure
from studio.toyworld.evaluate import (
    classify_shape,
    control_obeyed,
    control_silhouette,
    evaluate_image,
    evaluate_many,
    is_hollow,
    mask_iou,
)
from studio.toyworld.grammar import (
    Scene,
    ToyObject,
    all_combos,
    held_out_split,
    is_held_out,
    object_prompt,
    parse_prompt,
    prompt_set,
    random_scene,
    scene_prompt,
)
from studio.toyworld.render import figure_keypoints, render_scene
from studio.toyworld.vocab import COLOURS, CORNERS, POSE_NAMES, POSITIONS, SHAPES

FIGURE = "stick figure"


def one(colour: str, shape: str, position: str, background: str, style: str | None = None) -> Scene:
    return Scene((ToyObject(colour, shape, position),), background, style)


def scenes(n: int, seed: int, style: str | None = None) -> list[Scene]:
    """n random scenes, alternating one and two objects."""
    rng = np.random.default_rng(seed)
    return [random_scene(rng, 1 + i % 2, style=style) for i in range(n)]


# --- vocabulary ---------------------------------------------------------------------------------------------------


def test_vocabulary_matches_toyworld_md() -> None:
    assert COLOURS["red"] == (220, 40, 40) and COLOURS["orange"] == (245, 140, 30) and COLOURS["gray"] == (128,) * 3
    assert len(COLOURS) == 9
    assert SHAPES == ("circle", "square", "triangle", FIGURE)
    assert POSITIONS["top left"] == (0.25, 0.25) and POSITIONS["bottom right"] == (0.75, 0.75)
    assert POSITIONS["center"] == (0.5, 0.5)


# --- grammar ------------------------------------------------------------------------------------------------------


def test_one_object_prompt() -> None:
    prompt = scene_prompt(one("red", "circle", "top left", "white"))
    assert prompt == "a red circle in the top left on a white background"


def test_an_before_a_vowel() -> None:
    prompt = scene_prompt(one("orange", "square", "center", "blue"))
    assert prompt == "an orange square in the center on a blue background"
    assert scene_prompt(one("blue", FIGURE, "center", "orange")) == (
        "a blue stick figure in the center on an orange background"
    )


def test_two_object_prompt() -> None:
    scene = Scene((ToyObject("red", "circle", "top left"), ToyObject("orange", FIGURE, "bottom right")), "white")
    assert scene_prompt(scene) == (
        "a red circle in the top left and an orange stick figure in the bottom right on a white background"
    )


def test_style_trigger_word_goes_in_front_of_the_shape() -> None:
    prompt = scene_prompt(one("red", "circle", "top left", "white", style="outlined"))
    assert prompt == "a red outlined circle in the top left on a white background"
    assert parse_prompt(prompt).style == "outlined"


def test_object_prompt_is_the_regional_prompt() -> None:
    obj = ToyObject("red", "circle", "top left")
    assert object_prompt(obj, "white") == "a red circle in the top left on a white background"


def test_round_trip_prompt_parse_prompt() -> None:
    for scene in scenes(200, seed=1) + scenes(50, seed=2, style="outlined"):
        prompt = scene_prompt(scene)
        parsed = parse_prompt(prompt)
        assert scene_prompt(parsed) == prompt
        assert parsed.objects == tuple(dataclasses.replace(o, pose=None) for o in scene.objects)  # poses are unspoken


def test_parse_forgives_case_spacing_and_full_stop() -> None:
    parsed = parse_prompt("  An Orange circle in the  top left on a WHITE background. ")
    assert parsed == one("orange", "circle", "top left", "white")


THREE_OBJECTS = (
    "a red circle in the top left and a blue square in the top right and a green circle in the bottom left"
    " on a white background"
)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("a cat on a mat", "outside the toy-world grammar"),
        ("a cat in the top left on a white background", "cannot read object"),
        ("hello world", "outside the toy-world grammar"),
        ("a pink circle in the top left on a white background", "unknown colour 'pink'"),
        ("a red hexagon in the top left on a white background", "unknown shape 'hexagon'"),
        ("a red circle in the middle on a white background", "unknown position 'middle'"),
        ("a red circle in the top left on a pink background", "unknown background colour 'pink'"),
        ("a red circle in the top left on a red background", "must differ"),
        ("a red circle in the top left and a blue square in the top left on a white background", "different corner"),
        ("a red circle in the center and a blue square in the top left on a white background", "different corner"),
        (THREE_OBJECTS, "one or two"),
        (
            "a red outlined circle in the top left and a blue square in the top right on a white background",
            "mixes styles",
        ),
    ],
)
def test_parse_rejects_text_outside_the_grammar(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_prompt(text)


def test_random_scenes_obey_the_rules() -> None:
    for scene in scenes(400, seed=3):
        assert all(obj.colour != scene.background for obj in scene.objects)
        assert all((obj.pose in POSE_NAMES) == (obj.shape == FIGURE) for obj in scene.objects)
        if len(scene.objects) == 2:
            first, second = (obj.position for obj in scene.objects)
            assert first in CORNERS and second in CORNERS and first != second


def test_random_scene_avoids_excluded_combinations() -> None:
    banned = {c for c in all_combos() if c[1] == "circle"}
    rng = np.random.default_rng(4)
    for _ in range(100):
        assert all(obj.shape != "circle" for obj in random_scene(rng, 2, exclude=banned).objects)


def test_held_out_split_is_a_fixed_partition() -> None:
    split = held_out_split()
    assert split == held_out_split()
    assert split.train | split.heldout == set(all_combos()) and not split.train & split.heldout
    assert 0.12 <= len(split.heldout) / len(all_combos()) <= 0.18
    for i, vocabulary in enumerate((COLOURS, SHAPES, POSITIONS)):  # every word is still trained
        assert {combo[i] for combo in split.train} == set(vocabulary)
    colour, shape, position = min(split.heldout)
    assert is_held_out(ToyObject(colour, shape, position))


def test_prompt_sets_are_deterministic_and_respect_the_split() -> None:
    assert prompt_set("two", 20, seed=7) == prompt_set("two", 20, seed=7)
    assert prompt_set("two", 20, seed=7) != prompt_set("two", 20, seed=8)
    for prompt in prompt_set("one", 40, seed=1, split="train") + prompt_set("two", 40, seed=1, split="train"):
        assert not any(is_held_out(obj) for obj in parse_prompt(prompt).objects)
    for prompt in prompt_set("one", 40, seed=1, split="heldout"):
        assert is_held_out(parse_prompt(prompt).objects[0])
    for prompt in prompt_set("two", 40, seed=1, split="heldout"):
        scene = parse_prompt(prompt)
        assert len(scene.objects) == 2 and any(is_held_out(obj) for obj in scene.objects)
    with pytest.raises(ValueError, match="kind"):
        prompt_set("three", 1, seed=0)


# --- rendering ----------------------------------------------------------------------------------------------------


def test_rendering_is_deterministic_given_the_seed() -> None:
    for scene in scenes(10, seed=5):
        a, b = render_scene(scene, 64, seed=11), render_scene(scene, 64, seed=11)
        for name in ("image", "canny", "depth", "pose"):
            assert np.array_equal(getattr(a, name), getattr(b, name))
    scene = one("red", "circle", "center", "white")
    assert not np.array_equal(render_scene(scene, 64, 1).image, render_scene(scene, 64, 2).image)


def test_images_use_pure_palette_colours_painted_by_the_masks() -> None:
    for i, scene in enumerate(scenes(20, seed=6)):
        r = render_scene(scene, 64, seed=i)
        assert r.image.dtype == np.uint8 and r.image.shape == (64, 64, 3)
        colours = {tuple(int(v) for v in pixel) for pixel in r.image.reshape(-1, 3)}
        assert colours == {COLOURS[scene.background]} | {COLOURS[obj.colour] for obj in scene.objects}
        for obj, mask in zip(scene.objects, r.masks, strict=True):
            assert mask.any() and (r.image[mask] == COLOURS[obj.colour]).all()


def _box(mask: np.ndarray) -> tuple[int, int, int, int]:
    ys, xs = np.nonzero(mask)
    return ys.min(), ys.max() + 1, xs.min(), xs.max() + 1


# (two objects?, stick figure?) -> bounding-box side as a fraction of the image side
BOX_SIDE = {
    (False, False): (0.30, 0.40),
    (False, True): (0.42, 0.48),
    (True, False): (0.25, 0.30),
    (True, True): (0.33, 0.37),
}


def test_sizes_and_positions_follow_the_layout_rules() -> None:
    size = 128
    for i, scene in enumerate(scenes(100, seed=7)):
        r = render_scene(scene, size, seed=i)
        two = len(scene.objects) == 2
        for obj, mask in zip(scene.objects, r.masks, strict=True):
            top, bottom, left, right = _box(mask)
            extent = max(bottom - top, right - left) / size
            low, high = BOX_SIDE[(two, obj.shape == FIGURE)]
            assert low - 0.03 <= extent <= high + 0.02, (obj, extent)
            anchor = POSITIONS[obj.position]
            jitter = 1 / 32 if two else 1 / 16
            assert abs((right + left) / 2 / size - anchor[0]) <= jitter + 0.04
            assert abs((bottom + top) / 2 / size - anchor[1]) <= jitter + 0.04
        if two:  # the two objects never touch
            assert not (ndimage.binary_dilation(r.masks[0], iterations=3) & r.masks[1]).any()


def test_control_maps_are_drawn_on_black() -> None:
    scene = Scene((ToyObject("red", "circle", "top left"), ToyObject("blue", FIGURE, "bottom right")), "white")
    r = render_scene(scene, 64, 0)
    assert set(np.unique(r.canny)) == {0, 255}
    assert np.array_equal(
        ndimage.binary_fill_holes(r.canny[..., 0] > 0), ndimage.binary_fill_holes(r.masks[0] | r.masks[1])
    )
    assert np.array_equal(r.depth[..., 0] > 0, r.masks[0] | r.masks[1])
    levels = {int(r.depth[..., 0][m].max()) for m in r.masks}
    assert len(levels) == 2  # two objects, two depths
    assert r.pose.any() and not r.pose[r.masks[0]].any()  # skeleton only where the figure is
    limb = tuple(int(c * 0.6) for c in figure.OPENPOSE_COLOURS[0])  # neck -> right shoulder, OpenPose colours
    assert (r.pose.reshape(-1, 3) == limb).all(axis=1).any()
    no_figure = render_scene(one("red", "circle", "top left", "white"), 64, 0)
    assert not no_figure.pose.any()


def test_figure_keypoints_drive_both_the_figure_and_the_pose_map() -> None:
    scene = one("red", FIGURE, "center", "white")
    for pose in POSE_NAMES:
        r = render_scene(Scene((ToyObject("red", FIGURE, "center", pose),), "white"), 128, 3)
        keypoints = figure_keypoints(r.placements[0])
        assert keypoints.shape == (18, 2) and np.array_equal(keypoints, r.keypoints[0])
        assert (keypoints >= 0).all() and (keypoints < 128).all()
        assert np.array_equal(figure.figure_mask(keypoints, r.placements[0].side, 128), r.masks[0])
    assert not np.array_equal(figure.pose_keypoints("standing"), figure.pose_keypoints("arms up"))
    assert render_scene(scene, 64, 0).placements[0].pose in POSE_NAMES  # unspoken poses are drawn from the seed


def test_outlined_objects_are_hollow_and_filled_ones_are_not() -> None:
    for size in (64, 128):
        pairs = zip(scenes(40, seed=8), scenes(40, seed=8, style="outlined"), strict=True)
        for i, (plain, outlined) in enumerate(pairs):
            for obj, filled_mask, outline_mask in zip(
                plain.objects, render_scene(plain, size, i).masks, render_scene(outlined, size, i).masks, strict=True
            ):
                if obj.shape != FIGURE:  # stick figures are strokes already; the style leaves them as they are
                    assert is_hollow(outline_mask) and not is_hollow(filled_mask), obj


# --- ToyGenEval ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("size", [64, 128])
def test_ground_truth_renders_score_at_least_99_percent(size: int) -> None:
    batch = scenes(200, seed=size)
    assert sum(obj.shape == FIGURE for s in batch for obj in s.objects) >= 50
    result = evaluate_many((render_scene(s, size, seed=i).image, scene_prompt(s)) for i, s in enumerate(batch))
    assert result["n"] == 200
    assert result["joint"] >= 0.99, result
    assert min(result["color"], result["shape"], result["position"], result["background"]) >= 0.99


def test_outlined_ground_truth_keeps_its_shape() -> None:
    batch = scenes(60, seed=9, style="outlined")
    result = evaluate_many((render_scene(s, 64, seed=i).image, s) for i, s in enumerate(batch))
    assert result["joint"] >= 0.99, result


def _other_colour(scene: Scene, obj: ToyObject) -> str:
    return next(c for c in COLOURS if c not in (scene.background, obj.colour))


def test_recolouring_an_object_makes_its_colour_wrong() -> None:
    for i, scene in enumerate(scenes(30, seed=10)):
        r = render_scene(scene, 64, seed=i)
        image = r.image.copy()
        image[r.masks[0]] = COLOURS[_other_colour(scene, scene.objects[0])]
        score = evaluate_image(image, scene_prompt(scene))
        assert not score.objects[0].colour_ok and score.objects[0].shape_ok and score.objects[0].position_ok
        assert not score.joint


def test_moving_an_object_makes_its_position_wrong() -> None:
    for i, scene in enumerate(scenes(30, seed=11)):
        taken = {obj.position for obj in scene.objects}
        elsewhere = next(p for p in CORNERS if p not in taken)
        moved_object = dataclasses.replace(scene.objects[0], position=elsewhere)
        moved = Scene((moved_object, *scene.objects[1:]), scene.background)
        score = evaluate_image(render_scene(moved, 64, seed=i).image, scene_prompt(scene))
        assert score.objects[0].found and not score.objects[0].position_ok
        assert score.objects[0].colour_ok and score.objects[0].shape_ok
        assert all(obj.correct for obj in score.objects[1:])


def test_replacing_a_shape_makes_it_wrong() -> None:
    for size in (64, 128):
        for i, scene in enumerate(scenes(40, seed=12)):
            obj = scene.objects[0]
            for shape in SHAPES:
                if shape != obj.shape:
                    swapped = dataclasses.replace(obj, shape=shape, pose=None)
                    changed = Scene((swapped,) + scene.objects[1:], scene.background)
                    score = evaluate_image(render_scene(changed, size, seed=i).image, scene)
                    assert not score.objects[0].shape_ok and score.objects[0].colour_ok, (obj, shape)


def test_an_empty_image_finds_nothing() -> None:
    scene = Scene((ToyObject("red", "circle", "top left"), ToyObject("blue", "square", "bottom right")), "white")
    empty = np.zeros((64, 64, 3), dtype=np.uint8)
    empty[:] = COLOURS["white"]
    score = evaluate_image(empty, scene_prompt(scene))
    assert score.background_ok and not any(obj.found for obj in score.objects) and not score.joint
    assert evaluate_many([(empty, scene)]) == {
        "n": 1, "color": 0.0, "shape": 0.0, "position": 0.0, "joint": 0.0, "background": 1.0
    }  # fmt: skip


def test_small_specks_are_not_objects() -> None:
    r = render_scene(one("red", "circle", "top left", "white"), 64, 0)
    image = r.image.copy()
    image[50:53, 50:53] = COLOURS["red"]  # 9 px < 1 % of the image
    score = evaluate_image(image, "a red circle in the bottom right on a white background")
    assert not score.objects[0].position_ok  # the speck is ignored; the real circle is matched and is misplaced


def test_evaluate_many_counts_images_and_averages_objects() -> None:
    right = one("red", "circle", "top left", "white")
    two = Scene((ToyObject("red", "circle", "top left"), ToyObject("blue", "square", "bottom right")), "white")
    half_wrong = Scene((ToyObject("red", "circle", "top left"), ToyObject("blue", "square", "top right")), "white")
    pairs = [(render_scene(right, 64, 0).image, right), (render_scene(two, 64, 0).image, half_wrong)]
    assert evaluate_many(pairs) == {
        "n": 2, "color": 1.0, "shape": 1.0, "position": 2 / 3, "joint": 0.5, "background": 1.0
    }  # fmt: skip


def test_accepts_pil_images_of_any_square_size() -> None:
    scene = one("green", "triangle", "bottom left", "black")
    for size in (48, 64, 96, 128):
        image = Image.fromarray(render_scene(scene, size, 0).image).convert("RGBA")
        assert evaluate_image(image, scene_prompt(scene)).joint


def test_shape_rules_on_masks() -> None:
    grid = np.zeros((64, 64), dtype=bool)
    square = grid.copy()
    square[10:30, 10:30] = True
    assert classify_shape(square) == "square"
    yy, xx = np.mgrid[:64, :64]
    assert classify_shape((yy - 32) ** 2 + (xx - 32) ** 2 <= 100) == "circle"
    assert classify_shape((yy >= 10) & (yy < 30) & (np.abs(xx - 32) <= (yy - 10) / 2)) == "triangle"
    assert classify_shape((yy >= 10) & (yy < 30) & (np.abs(xx - 32) <= (30 - yy) / 2)) == "other"  # apex down
    lines = grid.copy()
    lines[10:40, 31:33] = True
    lines[20:22, 20:44] = True
    assert classify_shape(lines) == FIGURE


# --- controls and LoRA --------------------------------------------------------------------------------------------


def test_mask_iou() -> None:
    a = np.zeros((8, 8), dtype=bool)
    b = a.copy()
    a[:4] = True
    b[2:6] = True
    assert mask_iou(a, b) == pytest.approx(1 / 3) and mask_iou(a, a) == 1.0
    assert mask_iou(a, ~a) == 0.0


def _elsewhere(scene: Scene) -> Scene:
    """The same objects moved to positions the scene does not use."""
    free = [p for p in reversed(CORNERS) if p not in {o.position for o in scene.objects}]
    moved = tuple(dataclasses.replace(o, position=p) for o, p in zip(scene.objects, free, strict=False))
    return Scene(moved, scene.background, scene.style)


@pytest.mark.parametrize("size", [64, 128])
@pytest.mark.parametrize("kind", ["canny", "depth", "pose"])
def test_control_maps_are_obeyed_by_their_own_scene_only(size: int, kind: str) -> None:
    rng = np.random.default_rng(13)
    for i in range(12):
        scene = random_scene(rng, 1 + i % 2, style="outlined" if i % 3 == 0 else None)
        if kind == "pose":  # the pose map needs a figure
            scene = Scene((dataclasses.replace(scene.objects[0], shape=FIGURE),) + scene.objects[1:], scene.background)
        r = render_scene(scene, size, seed=i)
        silhouette = control_silhouette(r.control(kind), kind)
        iou, obeyed = control_obeyed(r.image, silhouette, kind)
        assert obeyed and iou >= 0.8, (scene, iou)
        other_iou, other_obeyed = control_obeyed(render_scene(_elsewhere(scene), size, seed=i).image, silhouette, kind)
        assert other_iou < 0.3 and not other_obeyed


def test_pose_control_tells_poses_apart() -> None:
    def figure_at(pose: str) -> Scene:
        return Scene((ToyObject("red", FIGURE, "center", pose),), "white")

    for size in (64, 128):
        silhouette = control_silhouette(render_scene(figure_at("arms out"), size, 0).pose, "pose")
        assert control_obeyed(render_scene(figure_at("arms out"), size, 0).image, silhouette, "pose")[1]
        for pose in ("standing", "arms up", "walking"):
            assert not control_obeyed(render_scene(figure_at(pose), size, 0).image, silhouette, "pose")[1]
