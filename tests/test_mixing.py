"""The mix plan: majority-share distribution, class groups, partner choice, determinism."""

from __future__ import annotations

import random
from collections import Counter

import pytest

from promptmix_dspy.method.mixing import MixCall, class_groups, mix_plan, sample_majority_share

LABELS = [f"c{i}" for i in range(10)]


def test_majority_share_range_rounding_and_peak():
    rng = random.Random(0)
    shares = [sample_majority_share(rng) for _ in range(20000)]
    assert min(shares) >= 0.5 and max(shares) <= 1.0
    assert all(abs(s * 20 - round(s * 20)) < 1e-9 for s in shares)  # multiples of 0.05
    counts = Counter(shares)
    assert counts.most_common(1)[0][0] == 0.9  # 0.5 + 0.5 * mode of Beta(5, 2) = 0.9
    mean = sum(shares) / len(shares)
    assert abs(mean - (0.5 + 0.5 * 5 / 7)) < 0.005
    assert counts[0.5] + counts[0.55] < 0.01 * len(shares)


def test_groups_hold_the_class_and_three_distinct_partners():
    groups = class_groups(LABELS, random.Random(0))
    for label, group in groups.items():
        assert group[0] == label and len(group) == 4 and len(set(group)) == 4
    # early classes draw partners only from classes not yet visited
    assert all(LABELS.index(p) > 0 for p in groups["c0"][1:])
    assert all(LABELS.index(p) > 5 for p in groups["c5"][1:])


def test_small_datasets_group_everything():
    groups = class_groups(["x", "y"], random.Random(0))
    assert groups == {"x": ("x", "y"), "y": ("y", "x")}


def test_plan_partner_is_in_the_group_and_plan_is_seeded():
    plan = mix_plan(LABELS, per_class=10, seed=3)
    assert len(plan) == 4 * len(LABELS)  # ceil(10 / 3) calls per class
    for call in plan:
        assert call.majority == call.group[0]
        assert call.minority in call.group[1:] or (call.minority is None and call.majority_share == 1.0)
    assert plan == mix_plan(LABELS, per_class=10, seed=3)
    assert plan != mix_plan(LABELS, per_class=10, seed=4)
    assert len({c.call_id for c in plan}) == len(plan)


def test_partners_are_drawn_uniformly_within_the_group():
    plan = mix_plan(LABELS[:4], per_class=3000, seed=0, texts_per_call=1)
    partners = Counter(c.minority for c in plan if c.majority == "c0" and c.minority)
    assert set(partners) == {"c1", "c2", "c3"}
    assert max(partners.values()) - min(partners.values()) < 0.1 * sum(partners.values())


def test_later_rounds_extend_with_fresh_draws_and_same_groups():
    first = mix_plan(LABELS, per_class=6, seed=0)
    extra = mix_plan(LABELS, per_class=6, seed=0, start_index={"c1": 2}, calls_per_class={"c1": 2})
    assert [c.call_id for c in extra] == ["c1#2", "c1#3"]
    assert extra[0].group == next(c.group for c in first if c.majority == "c1")
    assert mix_plan(LABELS, per_class=6, seed=0, calls_per_class={}) == []


def test_fixed_share_one_is_the_no_mix_ablation():
    plan = mix_plan(LABELS, per_class=3, seed=0, fixed_share=1.0)
    assert all(c.minority is None and c.majority_share == 1.0 for c in plan)
    with pytest.raises(ValueError, match="fixed majority share"):
        mix_plan(LABELS, per_class=3, seed=0, fixed_share=0.3)


def test_call_round_trips_through_dict():
    call = mix_plan(LABELS, per_class=3, seed=0)[0]
    assert MixCall.from_dict(call.to_dict()) == call
