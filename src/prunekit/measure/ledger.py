"""Training cost ledger: training FLOPs and wall-clock time, epoch by epoch, of the architecture actually trained.

Training FLOPs of one sample = 3 x forward FLOPs = 6 x forward MACs: the backward pass costs about twice the
forward pass (gradients with respect to activations and to weights), the usual convention (e.g. PruneTrain,
Lym et al. 2019, which reports training FLOPs this way, and RigL's cost model).
"""

from __future__ import annotations

from typing import Any

from prunekit.errors import UserError

TRAIN_FLOPS_PER_FORWARD_FLOP = 3
FLOPS_PER_MAC = 2


def train_flops(macs_per_sample: int, samples: int) -> int:
    """Training FLOPs of `samples` samples through an architecture of `macs_per_sample` forward MACs."""
    return TRAIN_FLOPS_PER_FORWARD_FLOP * FLOPS_PER_MAC * macs_per_sample * samples


class TrainingCostLedger:
    """Per epoch: training FLOPs of the architecture actually trained in that epoch (forward + backward counted as
    3 x forward FLOPs) and wall-clock seconds.

    When the architecture changes in the middle of an epoch, call `record_segment(epoch, macs, samples)` for the
    samples seen under each earlier architecture; `record_epoch` then adds its own (last) segment and closes the
    epoch with the sum. With no change mid-epoch, `record_epoch` alone is enough.
    """

    def __init__(self) -> None:
        self.epochs: list[dict[str, Any]] = []
        self._pending_epoch: int | None = None
        self._pending_segments: list[dict[str, int]] = []

    def _check_epoch(self, epoch: int) -> None:
        if self.epochs and epoch <= self.epochs[-1]["epoch"]:
            raise ValueError(f"epoch {epoch} recorded after epoch {self.epochs[-1]['epoch']}")
        if self._pending_epoch is not None and epoch != self._pending_epoch:
            raise ValueError(f"epoch {epoch} recorded while epoch {self._pending_epoch} has open segments")

    def record_segment(self, epoch: int, macs_per_sample: int, samples: int) -> None:
        """`samples` samples of `epoch` were trained by an architecture of `macs_per_sample` forward MACs."""
        if macs_per_sample < 0 or samples < 0:
            raise ValueError(f"macs_per_sample and samples must be >= 0, got {macs_per_sample}, {samples}")
        self._check_epoch(epoch)
        self._pending_epoch = epoch
        self._pending_segments.append({"macs_per_sample": int(macs_per_sample), "samples": int(samples)})

    def record_epoch(self, epoch: int, macs_per_sample: int, samples: int, wall_s: float) -> dict[str, Any]:
        """Close `epoch`: its last `samples` samples ran at `macs_per_sample` MACs; the epoch took `wall_s` s.

        Returns the epoch's record: epoch, segments, samples, train_flops, wall_s and the cumulative totals.
        """
        if wall_s < 0:
            raise ValueError(f"wall_s must be >= 0, got {wall_s}")
        self.record_segment(epoch, macs_per_sample, samples)
        segments = self._pending_segments
        epoch_flops = sum(train_flops(s["macs_per_sample"], s["samples"]) for s in segments)
        previous = self.totals()
        record = {
            "epoch": epoch,
            "segments": segments,
            "samples": sum(s["samples"] for s in segments),
            "train_flops": epoch_flops,
            "wall_s": float(wall_s),
            "cumulative_train_flops": previous["train_flops"] + epoch_flops,
            "cumulative_train_time_s": previous["train_time_s"] + float(wall_s),
        }
        self.epochs.append(record)
        self._pending_epoch, self._pending_segments = None, []
        return record

    def totals(self) -> dict[str, Any]:
        """Sums over the closed epochs: train_flops (FLOPs) and train_time_s (seconds)."""
        return {
            "train_flops": sum(r["train_flops"] for r in self.epochs),
            "train_time_s": sum(r["wall_s"] for r in self.epochs),
        }

    def to_json(self) -> dict[str, Any]:
        """Everything needed to resume, open segments included."""
        return {
            "epochs": [dict(r, segments=[dict(s) for s in r["segments"]]) for r in self.epochs],
            "pending_epoch": self._pending_epoch,
            "pending_segments": [dict(s) for s in self._pending_segments],
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> TrainingCostLedger:
        """Rebuild a ledger written by `to_json` (e.g. from a checkpoint's JSON)."""
        ledger = cls()
        try:
            for record in data["epochs"]:
                segments = [
                    {"macs_per_sample": int(s["macs_per_sample"]), "samples": int(s["samples"])}
                    for s in record["segments"]
                ]
                ledger.epochs.append(
                    {
                        "epoch": int(record["epoch"]),
                        "segments": segments,
                        "samples": int(record["samples"]),
                        "train_flops": int(record["train_flops"]),
                        "wall_s": float(record["wall_s"]),
                        "cumulative_train_flops": int(record["cumulative_train_flops"]),
                        "cumulative_train_time_s": float(record["cumulative_train_time_s"]),
                    }
                )
            pending = data.get("pending_epoch")
            ledger._pending_epoch = None if pending is None else int(pending)
            ledger._pending_segments = [
                {"macs_per_sample": int(s["macs_per_sample"]), "samples": int(s["samples"])}
                for s in data.get("pending_segments", [])
            ]
        except (KeyError, TypeError, ValueError) as error:
            raise UserError(f"training cost ledger JSON is malformed: {type(error).__name__}: {error}") from error
        return ledger
