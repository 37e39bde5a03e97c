"""The Trainer's own cost against a bare forward/backward/step loop over the same batches (issue 15, item 4).

Same process, same model (ResNet-20, prunekit's seeded init), same optimizer (`build_optimizer` of the config),
same batches (one `BatchLoader` epoch of CIFAR-size synthetic data, batch 128), same learning rate at every step,
one thread, in lockstep: the Trainer's `on_step` callback runs one bare step after each of the Trainer's steps, so
the two alternate step by step and a change in the machine's load hits both alike (on a shared machine, whole runs
one after the other differ by 2x). Per step:

  bare     set lr; loss = cross_entropy(model(x), y); zero_grad; backward; step   (its own BatchLoader iterator)
  trainer  the time between two callbacks minus the bare step inside: the Trainer's step with its loader, the
           learning-rate schedule, the method hooks, the on-device loss/accuracy sums, the progress bar (on) and
           the after-step hooks (`Trainer(cfg).fit()`, dense method, 1 epoch)

The two train the same network on the same batches, and their final weights are checked bitwise equal. The same
pairing with a tiny MLP on 3x4x4 images (compute next to nothing) gives the Trainer's own cost per step in
microseconds (the median paired difference), put against the ResNet-20 bare step. The work
outside the steps is reported apart (whole fit() time minus its epoch time: set-up, one evaluation of TEST images,
the epoch line, one checkpoint, the final model and summary), as a fraction of a 391-step CIFAR-10 epoch of bare
steps (an upper bound of the per-epoch share: set-up and the final model happen once per run). Decisions too, since the
bare loop has none: the Trainer-side work of one channel decision on ResNet-20 (internal policy, half the channels
of each group kept at random; `state.sync()` then `state.apply`, which checks the plan against the masked
supernet, moves the optimizer state, materializes the subnet and counts its MACs and params), amortized over the
CPU-tier REPrune preset's interval (2 epochs of 391 steps).

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/trainer_overhead.py [--repeats 5] [--steps 40] [--json out.json]
"""

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")

import argparse  # noqa: E402
import json  # noqa: E402
import platform  # noqa: E402
import statistics  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from prunekit import io  # noqa: E402
from prunekit.channels import ChannelPlan  # noqa: E402
from prunekit.config import RunConfig, load_config  # noqa: E402
from prunekit.data import BatchLoader, load_data  # noqa: E402
from prunekit.methods.base import Decision  # noqa: E402
from prunekit.models import create_model  # noqa: E402
from prunekit.seeding import derived_seed  # noqa: E402
from prunekit.train.optim import build_optimizer, set_learning_rate  # noqa: E402
from prunekit.train.schedules import learning_rate  # noqa: E402
from prunekit.train.supernet import SupernetState  # noqa: E402
from prunekit.train.trainer import Trainer  # noqa: E402

BATCH, TEST = 128, 128
STEPS_PER_EPOCH, DECISION_INTERVAL = 391, 2  # CIFAR-10 at batch 128; configs/reprune-cifar10-resnet20.yaml


def run_config(steps: int, tiny: bool = False) -> RunConfig:
    """ResNet-20 on 3x32x32 images, or (tiny) an MLP on 3x4x4 images whose compute is next to nothing, so that
    the difference of the paired steps is the Trainer's own cost per step, in absolute terms."""
    model = (["model.name=mlp", "model.kwargs={input_size: 4, hidden: [8]}", "data.synthetic_shape=[3, 4, 4]"]
             if tiny else ["model.name=resnet20", "data.synthetic_shape=[3, 32, 32]"])
    return load_config(None, model + [
        "data.name=synthetic", f"data.synthetic_size={BATCH * steps}", f"data.test_subset={TEST}",
        f"train.batch_size={BATCH}", "train.epochs=1", "train.threads=1", "train.progress=always",
        "optim.nesterov=true", "schedule.warmup_epochs=1"])


class Lockstep:
    """The Trainer's `on_step`: one bare step (own model, optimizer and loader) after each Trainer step, timed."""

    def __init__(self, cfg: RunConfig) -> None:
        data = load_data(cfg.data)
        self.cfg = cfg
        self.loader = BatchLoader(data.train, cfg.train.batch_size, mean=data.mean, std=data.std, shuffle=True,
                                  augment=cfg.data.augment, crop_padding=cfg.data.crop_padding, flip=cfg.data.flip,
                                  seed=cfg.train.seed)
        torch.manual_seed(derived_seed(cfg.train.seed, 0x30DE1))  # the Trainer's initialisation
        self.model = create_model(cfg.model.name, num_classes=data.train.num_classes, in_channels=3,
                                  **cfg.model.kwargs)
        self.optimizer = build_optimizer(self.model, cfg.optim)
        self.batches = self.loader.iterate(0)
        self.step = 0
        self.bare: list[float] = []
        self.trainer: list[float] = []
        self.last: float | None = None

    def bare_step(self) -> None:
        images, labels = next(self.batches)
        lr = learning_rate(self.step, len(self.loader), self.cfg.train.epochs, self.cfg.optim.lr, self.cfg.schedule)
        set_learning_rate(self.optimizer, lr)
        loss = F.cross_entropy(self.model(images), labels)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        self.step += 1

    def __call__(self, step: int) -> None:
        now = time.perf_counter()
        if self.last is not None:  # the first Trainer step also holds the epoch's start: left out
            self.trainer.append(now - self.last)
        self.bare_step()
        self.last = time.perf_counter()
        if self.step > 1:
            self.bare.append(self.last - now)


def lockstep_run(cfg: RunConfig, run_dir: Path) -> tuple[Lockstep, float, float]:
    """(per-step times, fit() seconds outside the epoch's steps, whether the two nets ended bitwise equal)."""
    lock = Lockstep(cfg)
    lock.model.train()
    start = time.perf_counter()
    summary = Trainer(cfg, run_dir, quiet=True, on_step=lock).fit()
    fit = time.perf_counter() - start
    trained = io.load_tensors(run_dir / "model" / "model.safetensors")
    bare = lock.model.state_dict()
    equal = all(torch.equal(trained[k], bare[k]) for k in trained)
    # the Trainer's epoch time holds its own steps and the bare steps run inside its callback
    return lock, fit - summary["train_time_s"], equal


def decision_seconds(repeats: int) -> float:
    """Median seconds of the Trainer-side work of one channel decision on ResNet-20 (sync + apply)."""
    torch.manual_seed(0)
    model = create_model("resnet20", num_classes=10, in_channels=3)
    cfg = RunConfig()
    state = SupernetState(model, torch.zeros(2, 3, 32, 32), "internal", lambda m: build_optimizer(m, cfg.optim))
    generator = torch.Generator().manual_seed(0)
    times = []
    for _ in range(repeats):
        plan = ChannelPlan({g.name: sorted(torch.randperm(g.size, generator=generator)[: g.size // 2].tolist())
                            for g in state.groups})
        start = time.perf_counter()
        state.sync()
        state.apply(Decision(plan=plan))
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def spread(values: list[float]) -> str:
    low, high = 100 * min(values), 100 * max(values)
    return f"median {100 * statistics.median(values):+.2f}% (min {low:+.2f}%, max {high:+.2f}%)"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--steps", type=int, default=40, help="training steps per run (batch 128)")
    parser.add_argument("--tiny-steps", type=int, default=400, help="steps per run of the tiny-MLP pairing")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    torch.set_num_threads(1)
    cfg = run_config(args.steps)
    bare, trainer, step_overhead, per_epoch, equal = [], [], [], [], []
    with tempfile.TemporaryDirectory() as tmp:
        lockstep_run(run_config(3), Path(tmp) / "warm-up")  # imports, allocator, tqdm
        for r in range(args.repeats):
            lock, fixed, same = lockstep_run(cfg, Path(tmp) / f"run{r}")
            bare += lock.bare
            trainer += lock.trainer
            step_overhead.append(sum(lock.trainer) / sum(lock.bare) - 1)
            per_epoch.append(fixed)
            equal.append(same)
            print(f"repeat {r + 1}: bare {sum(lock.bare):.2f}s  trainer {sum(lock.trainer):.2f}s over "
                  f"{len(lock.bare)} steps  ({100 * step_overhead[-1]:+.2f}%); outside the steps {fixed:.2f}s; "
                  f"weights equal: {same}", flush=True)
    paired = [t / b - 1 for t, b in zip(trainer, bare, strict=True)]
    tiny_bare, tiny_diff = [], []
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(args.repeats):
            lock, _, _ = lockstep_run(run_config(args.tiny_steps, tiny=True), Path(tmp) / f"tiny{r}")
            tiny_bare += lock.bare
            tiny_diff += [t - b for t, b in zip(lock.trainer, lock.bare, strict=True)]
    own_cost = statistics.median(tiny_diff)
    bare_step = statistics.median(bare)
    decision = decision_seconds(5)
    epoch_fixed = statistics.median(per_epoch) / (STEPS_PER_EPOCH * bare_step)
    per_interval = decision / (DECISION_INTERVAL * STEPS_PER_EPOCH * bare_step)
    result = {
        "date": time.strftime("%Y-%m-%d"), "machine": platform.platform(), "torch": torch.__version__,
        "threads": torch.get_num_threads(), "steps": args.steps, "repeats": args.repeats, "batch": BATCH,
        "bare_step_s": bare, "trainer_step_s": trainer, "repeat_overhead": step_overhead,
        "per_epoch_work_s": per_epoch, "weights_equal": equal, "decision_s": decision,
        "epoch_work_fraction": epoch_fixed, "decision_fraction_per_interval": per_interval,
        "tiny_bare_step_s": statistics.median(tiny_bare), "tiny_step_difference_s": tiny_diff,
        "own_cost_s": own_cost, "own_cost_fraction": own_cost / bare_step,
    }
    print(f"bare step median {1000 * bare_step:.0f} ms; Trainer step vs bare step, per repeat (sum of steps): "
          f"{spread(step_overhead)}; paired steps: {spread(paired)}")
    print(f"the Trainer's own cost per step (tiny MLP, bare step {1e6 * statistics.median(tiny_bare):.0f} us): "
          f"median {1e6 * own_cost:.0f} us (quartiles {1e6 * statistics.quantiles(tiny_diff)[0]:.0f}, "
          f"{1e6 * statistics.quantiles(tiny_diff)[2]:.0f} us) = {100 * own_cost / bare_step:.3f}% of a ResNet-20 step")
    print(f"work outside the steps (set-up, evaluation of {TEST} images, epoch line, checkpoint, final model) "
          f"{statistics.median(per_epoch):.2f}s "
          f"= {100 * epoch_fixed:.2f}% of a {STEPS_PER_EPOCH}-step epoch of bare steps")
    print(f"one decision's Trainer-side work {1000 * decision:.0f} ms = {100 * per_interval:.2f}% of a "
          f"{DECISION_INTERVAL}-epoch interval of {STEPS_PER_EPOCH} bare steps; weights equal in every repeat: "
          f"{all(equal)}")
    if args.json is not None:
        args.json.write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
