"""Cost estimates from a price table: USD per 1M input, cached input and output tokens.

Estimates only (published list prices change; batch and regional prices
differ). A model that is not in the table gets no cost, never a guessed one.
Users override or extend the table with `c.ChatMagics.prices`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .types import Usage

__all__ = ["DEFAULT_PRICES", "estimate_cost", "price_for"]

#: model -> (input, cached input, output) in USD per 1M tokens; list prices, late 2025.
DEFAULT_PRICES: dict[str, tuple[float, float, float]] = {
    "gpt-4o-mini": (0.15, 0.075, 0.60),
    "gpt-4o": (2.50, 1.25, 10.00),
    "gpt-4.1": (2.00, 0.50, 8.00),
    "gpt-4.1-mini": (0.40, 0.10, 1.60),
    "gpt-4.1-nano": (0.10, 0.025, 0.40),
    "gpt-5": (1.25, 0.125, 10.00),
    "gpt-5-mini": (0.25, 0.025, 2.00),
    "gpt-5-nano": (0.05, 0.005, 0.40),
    "o3": (2.00, 0.50, 8.00),
    "o3-mini": (1.10, 0.55, 4.40),
    "o4-mini": (1.10, 0.275, 4.40),
    "gpt-3.5-turbo": (0.50, 0.50, 1.50),
}

_SNAPSHOT = r"-\d{4}-\d{2}-\d{2}$"  # compiled on first use (re caches it), not at %load_ext


def price_for(
    model: str, prices: Mapping[str, Sequence[float]] = DEFAULT_PRICES
) -> tuple[float, float, float] | None:
    """The price row for `model`, also for dated snapshots like `gpt-4o-2024-08-06`."""
    for name in (model, re.sub(_SNAPSHOT, "", model)):
        row = prices.get(name)
        if row is not None:
            values = [float(v) for v in row]
            if len(values) == 2:  # (input, output): cached input costs as input
                return values[0], values[0], values[1]
            return values[0], values[1], values[2]
    return None


def estimate_cost(
    model: str, usage: Usage | None, prices: Mapping[str, Sequence[float]] = DEFAULT_PRICES
) -> float | None:
    """USD for one reply, or None when usage was not reported or the model is unknown."""
    row = price_for(model, prices)
    if row is None or usage is None:
        return None
    price_in, price_cached, price_out = row
    cached = usage.cached_tokens or 0
    fresh = max(usage.prompt_tokens - cached, 0)
    return (fresh * price_in + cached * price_cached + usage.completion_tokens * price_out) / 1e6
