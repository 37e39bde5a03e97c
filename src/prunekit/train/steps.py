"""Points in training named by the user: "500it" (optimizer steps), "2ep" (epochs), "0.1" (a fraction of
training). Used for kept checkpoints (`train.keep_checkpoints`) and rewinding (lottery tickets)."""

from __future__ import annotations

import math


def parse_step(spec: str | int | float, steps_per_epoch: int, epochs: int) -> int:
    """The global step a spec names; ValueError for a malformed spec or one outside [0, steps_per_epoch * epochs].

    "Nit" is N steps, "Nep" is N epochs (N may be fractional; rounded down to a step), a number with a decimal
    point in [0, 1] a fraction of the whole run (rounded down), a bare integer a step count."""
    total = steps_per_epoch * epochs
    text = str(spec).strip().lower()
    try:
        if text.endswith("it"):
            step = int(text[:-2])
        elif text.endswith("ep"):
            step = math.floor(float(text[:-2]) * steps_per_epoch)
        elif "." in text:  # a fraction of the run
            fraction = float(text)
            if not 0.0 <= fraction <= 1.0:
                raise ValueError
            step = math.floor(fraction * total)
        else:
            step = int(text)
    except ValueError:
        raise ValueError(f"{spec!r} is not a point in training; use e.g. '500it', '2ep' or a fraction like "
                         f"'0.1'") from None
    if not 0 <= step <= total:
        raise ValueError(f"{spec!r} is step {step}, outside the run's {total} steps")
    return step
