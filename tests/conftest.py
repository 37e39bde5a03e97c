"""Test-wide settings: one torch thread keeps the suite predictable on a 2-core machine (and avoids
oversubscription when several test processes share the cores)."""

import torch

torch.set_num_threads(1)
