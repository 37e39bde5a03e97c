"""Channel-level DST: the lowest-UMM channels leave through a channel plan (checked against a direct
computation), the trained network gets narrower while per-layer nonzeros inside the kept channels follow the
masks, masked weights stay zero, and a killed run resumes bitwise."""

import torch

from prunekit import io
from prunekit.methods.channel_dst import channels_to_keep, unmasked_mean_magnitude
from prunekit.train.trainer import Trainer

PARAMS = "{sparsity: 0.8, update_every: 5, channel_every: 1, channel_rate: 0.25, channel_target: 0.5}"


def test_channels_to_keep_by_hand():
    scores = torch.tensor([0.5, 0.1, 0.1, 0.9, 0.0, 0.3, 0.2, 0.8])
    # size 8, rate 0.25: two of the kept go, the lowest scores (ties: lower index first)
    assert channels_to_keep(scores, [0, 1, 2, 3, 5, 6, 7], 8, 0.25, 0.5, 1) == [0, 3, 5, 6, 7]
    # the target caps the total: 8 - floor(0.5 * 8) = 4 stay at least
    assert channels_to_keep(scores, [0, 3, 5, 6, 7], 8, 0.25, 0.5, 1) == [0, 3, 5, 7]
    assert channels_to_keep(scores, [0, 3, 5, 7], 8, 0.25, 0.5, 1) == [0, 3, 5, 7]
    filters = torch.tensor([[[1.0, 0.0], [0.0, 3.0]], [[0.0, 0.0], [0.0, 2.0]]])
    assert unmasked_mean_magnitude(filters).tolist() == [1.0, 0.5]


def test_channel_dst_narrows_the_network_and_keeps_masks_consistent(digits_config, tmp_path):
    trainer = Trainer(digits_config(3, "channel_dst", PARAMS), tmp_path / "run", quiet=True)
    summary = trainer.fit()
    records = io.read_jsonl(tmp_path / "run" / "metrics.jsonl")
    plans = [r for r in records if r["kind"] == "decision" and r["at"] == "epoch"]
    assert plans and plans[0]["macs_after"] < plans[0]["macs_before"]
    assert summary["macs"] < summary["dense_macs"]
    model, masks = trainer.state.model, trainer.state.model_masks
    assert model.features.conv2.out_channels < 32
    for name, param in model.named_parameters():
        if name in masks:
            assert param.shape == masks[name].shape and torch.all(param.detach()[~masks[name]] == 0)
    # unstructured updates went on in the subnet, and kept the subnet's per-layer nonzero counts between plans
    updates = [r for r in records if r["kind"] == "update"]
    assert updates and all(0 < r["density"] < 1 for r in updates)
    segment = None
    for record in records:
        if record["kind"] == "decision" and record["at"] == "epoch":
            segment = None
        elif record["kind"] == "update":
            segment = segment or record["layer_density"]
            assert record["layer_density"] == segment
    assert updates[-1]["train_flops_vs_dense"] < updates[0]["train_flops_vs_dense"]


def test_channel_dst_resumes_bitwise(digits_config, check_exact_resume):
    cfg = digits_config(3, "channel_dst", PARAMS, "train.checkpoint_every_steps=4")
    cut = check_exact_resume(cfg, lambda spe: spe + 6)
    a = io.load_tensors(cut.parent / "full" / "model" / "masks.safetensors")
    b = io.load_tensors(cut / "model" / "masks.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
