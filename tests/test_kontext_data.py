"""The Kontext training data: families of one-object scenes whose members differ in one attribute, edits between
them on training-split objects only, the stick-figure subset a figure-heavy run draws from, and the batch order."""

from __future__ import annotations

import numpy as np
import pytest

from studio.toyworld import held_out_split
from training.kontext_data import KINDS, build_families, edit_kind, eval_edits
from training.train_kontext import kind_cycle


@pytest.fixture(scope="module")
def families():
    return build_families(6, 32, seed=3)


def test_every_training_edit_changes_one_attribute_of_training_split_objects(families) -> None:
    train = held_out_split().train
    for kind in KINDS:
        assert len(families.edits[kind]), kind
        for ref, result in families.edits[kind]:
            a, b = families.scenes[ref], families.scenes[result]
            assert edit_kind(a, b) == kind
            assert a.objects[0].combo in train and b.objects[0].combo in train


def test_figure_edits_are_exactly_the_edits_with_a_stick_figure(families) -> None:
    figure = families.figure_edits()
    shapes = [s.objects[0].shape for s in families.scenes]
    for kind in KINDS:
        rows = {tuple(p) for p in families.edits[kind].tolist()}
        with_figure = {p for p in rows if "stick figure" in (shapes[p[0]], shapes[p[1]])}
        assert {tuple(p) for p in figure[kind].tolist()} == with_figure
    # reshaping into or out of a stick figure is an edit of the subset (so the subset is not empty)
    assert any(shapes[a] != shapes[b] for a, b in figure["reshape"])


def test_held_out_edits_never_appear_in_training(families) -> None:
    held = held_out_split().heldout
    trained = {families.scenes[i].objects[0].combo for pairs in families.edits.values() for i in pairs.ravel()}
    for edit in eval_edits(3):
        assert edit.target.objects[0].combo in held and edit.target.objects[0].combo not in trained
        assert edit_kind(edit.reference, edit.target) == edit.kind


def test_kind_weights_repeat_kinds_in_the_batch_order() -> None:
    assert kind_cycle("") == KINDS
    cycle = kind_cycle("background=3,move=2")
    assert cycle.count("background") == 3 and cycle.count("move") == 2 and cycle.count("recolour") == 1
    with pytest.raises(SystemExit, match="KIND=N"):
        kind_cycle("colour=2")
    assert np.array_equal(np.unique(cycle), np.unique(KINDS))
