"""HRank with the official per-conv rate lists (lmbxmu/HRank README, research note classic_methods.md §3.2):
the per-group kept counts prunekit's plan gives on ResNet-56 and VGG-16 equal a hand computation from the list
(int(rate * F) filters removed per conv, as the official mask.py; a residual stream at the minimum of its
writers' rates), the official FLOPs count reproduces the paper's 50.0% / 65.3% (so the list is read in the
official conv order), and prunekit's measured MACs of the same plans against both (printed; `pytest -s`)."""

from __future__ import annotations

import pytest
import torch

from prunekit.channels import channel_groups, materialize
from prunekit.errors import UserError
from prunekit.measure import count_macs
from prunekit.methods.base import TrainContext
from prunekit.methods.hrank import (
    HRank,
    HRankParams,
    conv_rates,
    group_rates_from_convs,
    listed_convs,
)
from prunekit.models import create_model

RESNET56 = ([0.1] + [0.60] * 35 + [0.0] * 2 + [0.6] * 6 + [0.4] * 3 + [0.1] + [0.4] + [0.1] + [0.4] + [0.1] + [0.4]
            + [0.1] + [0.4])
VGG16 = [0.95] + [0.5] * 6 + [0.9] * 4 + [0.8] * 2
WIDTHS = (16, 32, 64)


def official_resnet56_convs() -> list[tuple[str, int, int, int]]:
    """(prunekit name, in, out, output side) of the 55 convs of the official option-A ResNet-56, in the order of
    its parameters() (mask.py's cov_id): the stem, then conv1, conv2 of each block, stage by stage."""
    convs, channels = [("conv1", 3, 16, 32)], 16
    for stage, (width, side) in enumerate(zip(WIDTHS, (32, 16, 8), strict=True), start=1):
        for block in range(9):
            convs.append((f"layer{stage}.{block}.conv1", channels, width, side))
            convs.append((f"layer{stage}.{block}.conv2", width, width, side))
            channels = width
    return convs


def removed(rate: float, filters: int) -> int:
    return int(rate * filters)  # mask.py: pruned_num = int(self.compress_rate[cov_id - 1] * f)


def decide(model, rates_per_conv, skip, policy="all", stream_rate="min"):
    torch.manual_seed(0)
    example = torch.randn(2, 3, 32, 32)
    groups = channel_groups(model, example, policy=policy)
    method = HRank(HRankParams(prune_epoch=0, rates_per_conv=rates_per_conv, skip_convs=skip, rank_batches=1,
                               schedule="oneshot", policy=policy, stream_rate=stream_rate))
    ctx = TrainContext(model=model, optimizer=None, steps_per_epoch=1, epochs=1, example_inputs=example[:1],
                       train_batches=lambda: iter([(example, torch.zeros(2, dtype=torch.long))]), supernet=model,
                       groups=groups)
    decision = method.on_train_start(ctx)
    return decision, groups, example


def test_resnet56_kept_counts_equal_the_official_list_by_hand():
    model = create_model("resnet56")
    decision, groups, example = decide(model, RESNET56, ["*.shortcut.0"])
    kept = {g.name: len(decision.plan.kept(g)) for g in groups}
    rate = {name: r for (name, *_), r in zip(official_resnet56_convs(), RESNET56, strict=True)}
    expected = {}
    for stage, width in enumerate(WIDTHS, start=1):  # a block's conv1: its own group, its own rate
        for block in range(9):
            name = f"layer{stage}.{block}.conv1"
            expected[name] = width - removed(rate[name], width)
    # the three residual streams (writers: stem or projection conv, and the stage's nine conv2s) at the minimum
    # of their listed writers' rates: stage 1 min(0.1, 0.6) = 0.1, stage 2 has the 0.0 of layer2.8.conv2,
    # stage 3 min(0.6, 0.4) = 0.4
    conv2 = {stage: [rate[f"layer{stage}.{b}.conv2"] for b in range(9)] for stage in (1, 2, 3)}
    expected["conv1"] = 16 - removed(min([rate["conv1"], *conv2[1]]), 16)
    expected["layer2.0.conv2"] = 32 - removed(min(conv2[2]), 32)
    expected["layer3.0.conv2"] = 64 - removed(min(conv2[3]), 64)
    assert (expected["conv1"], expected["layer2.0.conv2"], expected["layer3.0.conv2"]) == (15, 32, 39)
    assert kept == expected
    assert decision.info["unused_conv_rates"] == []  # every listed conv writes a prunable group


def test_vgg16_kept_counts_equal_the_official_list_by_hand():
    model = create_model("vgg16")
    decision, groups, _ = decide(model, VGG16, [])
    assert [g.name for g in groups] == listed_convs(model, [])  # 13 convs, one group each, in order
    # 64 - int(0.95 * 64), 64 - 32, 128 - 64 (x2), 256 - 128 (x3), 512 - int(0.9 * 512) (x4), 512 - int(0.8 * 512)
    assert [len(decision.plan.kept(g)) for g in groups] == [4, 32, 64, 64, 128, 128, 128, 52, 52, 52, 52, 103, 103]


def official_flops(convs: list[tuple[int, int, int]], rates: list[float], linear: int) -> int:
    """The official get_flops.py count: a conv's MACs scaled by its kept output filters only (the README's "we
    do not count the next-layer channel removal"), linears in full."""
    return linear + sum(c_in * (c_out - removed(r, c_out)) * 9 * side * side
                        for (c_in, c_out, side), r in zip(convs, rates, strict=True))


def test_the_official_count_gives_the_papers_reductions():
    """Reading the list in the official conv order reproduces the paper: ResNet-56 62.72M FLOPs (50.0% less),
    VGG-16 65.3% less (the official VGG's 512-512-10 classifier)."""
    resnet = [(c_in, c_out, side) for _, c_in, c_out, side in official_resnet56_convs()]
    dense, pruned = official_flops(resnet, [0.0] * 55, 640), official_flops(resnet, RESNET56, 640)
    assert round(pruned / 1e6, 2) == 62.72 and round(100 * (1 - pruned / dense), 1) == 50.0
    vgg = [(3, 64, 32), (64, 64, 32), (64, 128, 16), (128, 128, 16), (128, 256, 8), (256, 256, 8), (256, 256, 8),
           (256, 512, 4), (512, 512, 4), (512, 512, 4), (512, 512, 2), (512, 512, 2), (512, 512, 2)]
    classifier = 512 * 512 + 512 * 10
    dense, pruned = official_flops(vgg, [0.0] * 13, classifier), official_flops(vgg, VGG16, classifier)
    assert abs(100 * (1 - pruned / dense) - 65.3) < 0.2  # 65.2 here: the paper's 108.61M is 0.5M lower


def resnet56_hand_macs(kept: dict[str, int]) -> int:
    """MACs of prunekit's option-B ResNet-56 at the kept widths of its groups (named by their first producer):
    each conv costs its kept inputs x kept outputs x k^2 x output side^2; the classifier reads the last stream."""
    streams = ["conv1", "layer2.0.conv2", "layer3.0.conv2"]  # the stream group each stage writes
    total = 3 * kept["conv1"] * 9 * 32 * 32
    for stage, side in zip((1, 2, 3), (32, 16, 8), strict=True):
        for block in range(9):
            reads = streams[stage - 2] if block == 0 and stage > 1 else streams[stage - 1]
            inner = kept[f"layer{stage}.{block}.conv1"]
            total += kept[reads] * inner * 9 * side * side + inner * kept[streams[stage - 1]] * 9 * side * side
            if block == 0 and stage > 1:  # the 1x1 projection shortcut
                total += kept[reads] * kept[streams[stage - 1]] * side * side
    return total + kept[streams[2]] * 10


def test_prunekit_macs_of_the_official_plans(capsys):
    """prunekit removes each channel physically, so a conv also loses the inputs its feeding group lost: the
    measured MACs equal that hand count, and fall further than the official count, which leaves inputs whole."""
    model = create_model("resnet56")
    decision, groups, example = decide(model, RESNET56, ["*.shortcut.0"])
    kept = {g.name: len(decision.plan.kept(g)) for g in groups}
    dense = count_macs(model, example[:1])
    measured = count_macs(materialize(model, decision.plan, groups), example[:1])
    assert dense == resnet56_hand_macs({g.name: g.size for g in groups})
    assert measured == resnet56_hand_macs(kept)
    vgg = create_model("vgg16")
    vgg_decision, vgg_groups, _ = decide(vgg, VGG16, [])
    vgg_dense = count_macs(vgg, example[:1])
    vgg_measured = count_macs(materialize(vgg, vgg_decision.plan, vgg_groups), example[:1])
    with capsys.disabled():
        print(f"\nResNet-56 (option B) official list, streams at min: {measured / 1e6:.2f}M of {dense / 1e6:.2f}M "
              f"MACs ({100 * (1 - measured / dense):.1f}% less; paper 50.0%)")
        print(f"VGG-16 official list: {vgg_measured / 1e6:.2f}M of {vgg_dense / 1e6:.2f}M MACs "
              f"({100 * (1 - vgg_measured / vgg_dense):.1f}% less; paper 65.3%)")
    assert 1 - vgg_measured / vgg_dense > 0.653  # inputs fall with the previous layer's outputs


def test_stream_rules_and_list_errors():
    model = create_model("resnet20")
    groups = channel_groups(model, torch.zeros(1, 3, 32, 32), policy="all")
    per_conv = [0.5] + [0.25, 0.75] * 9  # 19 convs without the two shortcuts
    by_conv = conv_rates(per_conv, model, ["*.shortcut.0"])
    stream = next(g for g in groups if g.name == "conv1")  # stem + layer1.*.conv2: 0.5, 0.75, 0.75, 0.75
    for rule, expected in {"min": 0.5, "first": 0.5, "max": 0.75, "mean": (0.5 + 3 * 0.75) / 4}.items():
        rates = group_rates_from_convs(by_conv, groups, rule)
        assert rates[stream.name] == pytest.approx(expected)
        assert rates["layer1.0.conv1"] == 0.25  # one writer: its own rate under every rule
    shortcut_only = group_rates_from_convs({"layer2.0.shortcut.0": 0.5}, groups, "min")
    assert shortcut_only["layer2.0.conv2"] == 0.5 and shortcut_only["layer1.0.conv1"] == 0.0
    with pytest.raises(UserError, match="lists 19 rates but the model has 21 convs"):
        conv_rates(per_conv, model, [])
    with pytest.raises(UserError, match="'layer9.conv1', which is not a conv"):
        conv_rates({"layer9.conv1": 0.5}, model, [])
    with pytest.raises(UserError, match="rates or rates_per_conv, not both"):
        HRankParams(prune_epoch=0, rates=0.5, rates_per_conv=[0.5])
    with pytest.raises(UserError, match="skip_convs applies to a rates_per_conv list"):
        HRankParams(prune_epoch=0, skip_convs=["*.shortcut.0"])
    assert HRankParams(prune_epoch=0).rates == 0.5  # the default when neither is given


@pytest.mark.parametrize(("preset", "model_name", "official", "decisions"), [
    ("hrank-cifar10-resnet56.yaml", "resnet56", RESNET56, 28),  # 26 conv1s (layer3.0.conv1: 0.0) + streams 1, 3
    ("hrank-cifar10-vgg16.yaml", "vgg16", VGG16, 13),
])
def test_paper_presets_hold_the_official_lists(preset, model_name, official, decisions):
    from pathlib import Path

    from prunekit.config import load_config
    from prunekit.methods import build_method

    cfg = load_config(Path(__file__).resolve().parents[2] / "configs" / "paper" / preset)
    method = build_method(cfg.method)
    assert method.params.rates_per_conv == official and cfg.model.name == model_name
    model = create_model(model_name)
    example = torch.zeros(1, 3, 32, 32)
    ctx = TrainContext(model=model, optimizer=None, steps_per_epoch=1, epochs=cfg.train.epochs,
                       example_inputs=example, supernet=model,
                       groups=channel_groups(model, example, policy=method.params.policy))
    batches = method.batches_of_groups(ctx.groups, method.group_rates(ctx))
    assert len(batches) == decisions
    assert method.decision_epoch(len(batches) - 1) <= cfg.train.epochs
    assert method.on_train_start(ctx) is None  # prune_epoch > 0: nothing yet, and the schedule fits


def test_short_digits_run_with_a_per_conv_list(tmp_path, digits_config):
    """The config path end to end: a per-conv mapping by conv name, layerwise, on the digits CNN (16/32/64)."""
    from prunekit import io
    from prunekit.train.trainer import Trainer

    cfg = digits_config(3, "hrank", "{prune_epoch: 1, rank_batches: 2, rates_per_conv: {features.conv1: 0.25, "
                                    "features.conv3: 0.5}}")
    Trainer(cfg, tmp_path / "run", quiet=True).fit()
    decisions = [r for r in io.read_jsonl(tmp_path / "run" / "metrics.jsonl") if r["kind"] == "decision"]
    # by hand: conv2 is not named (rate 0, never cut); 16 - int(0.25 * 16) = 12 after epoch 1, 64 - 32 after 2
    assert [d["groups"] for d in decisions] == [["features.conv1"], ["features.conv3"]]
    assert decisions[-1]["kept"] == {"features.conv1": 12, "features.conv3": 32}  # the plan names cut groups
