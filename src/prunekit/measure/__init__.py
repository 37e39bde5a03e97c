"""Measures: parameters, MACs/FLOPs (FLOPs = 2 x MACs, per sample), latency, and the training-cost ledger; and the
context managers that switch a model to eval/train mode for a block and restore every module's own mode."""

from prunekit.measure._modes import eval_mode, restored_modes, train_mode
from prunekit.measure.latency import LatencyResult, measure_latency, measure_train_step
from prunekit.measure.ledger import TrainingCostLedger
from prunekit.measure.macs import count_flops, count_macs
from prunekit.measure.params import count_nonzero_params, count_params

__all__ = [
    "LatencyResult",
    "TrainingCostLedger",
    "count_flops",
    "count_macs",
    "count_nonzero_params",
    "count_params",
    "eval_mode",
    "measure_latency",
    "measure_train_step",
    "restored_modes",
    "train_mode",
]
