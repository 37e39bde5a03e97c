"""Lottery tickets: iterative magnitude pruning with reset / weight rewinding / LR rewinding / fine-tuning and
its controls (driver.py), linear mode connectivity (lmc.py). Every level is an ordinary run directory."""

from prunekit.lottery.config import LotteryConfig, load_lottery_config
from prunekit.lottery.driver import LotteryDriver, level_name

__all__ = ["LotteryConfig", "LotteryDriver", "level_name", "load_lottery_config"]
