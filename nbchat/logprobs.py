"""Token probabilities (`--logprobs [K]`): the records, and the shaded view of a reply.

The server sends, per token, its log probability and the K likeliest tokens at
that place (`choices[].logprobs.content[]`). `Logprobs` keeps them as records
(`reply.logprobs`, `.to_pandas()` with pandas imported only then); `logprobs_html`
shows the reply with each token on a background whose strength grows as its
probability falls, and its alternatives with percentages in a `title` tooltip.

Token text is model text, hence untrusted: it is `html.escape`d inside nbchat's
own markup and never interpolated raw. The background is an rgba colour over
the theme's own background, with the theme's own text colour, so the view reads
in light and dark themes alike.
"""

from __future__ import annotations

import html
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any, overload

__all__ = ["Logprobs", "TokenLogprob", "logprobs_bundle", "logprobs_html"]

LOW = 0.5  # a token below this probability counts as unsure in the summary


@dataclass(frozen=True)
class TokenLogprob:
    """One token of the reply: its text, log probability and the alternatives at its place."""

    token: str
    logprob: float
    #: (token, logprob) of the likeliest tokens at this place, the chosen one included.
    alternatives: tuple[tuple[str, float], ...] = ()

    @property
    def p(self) -> float:
        return math.exp(self.logprob)

    @classmethod
    def from_api(cls, item: dict[str, Any]) -> TokenLogprob:
        tops = item.get("top_logprobs") or ()
        return cls(
            token=str(item.get("token", "")),
            logprob=float(item.get("logprob", 0.0)),
            alternatives=tuple(
                (str(t.get("token", "")), float(t.get("logprob", 0.0))) for t in tops
            ),
        )


class Logprobs(Sequence[TokenLogprob]):
    """The reply's tokens with their probabilities; `records()` / `to_pandas()` for analysis."""

    def __init__(self, tokens: Sequence[TokenLogprob]) -> None:
        self.tokens = list(tokens)

    @classmethod
    def from_api(cls, items: Sequence[dict[str, Any]]) -> Logprobs:
        return cls([TokenLogprob.from_api(item) for item in items])

    @overload
    def __getitem__(self, index: int) -> TokenLogprob: ...
    @overload
    def __getitem__(self, index: slice) -> Sequence[TokenLogprob]: ...
    def __getitem__(self, index: Any) -> Any:
        return self.tokens[index]

    def __len__(self) -> int:
        return len(self.tokens)

    def __iter__(self) -> Iterator[TokenLogprob]:
        return iter(self.tokens)

    def __repr__(self) -> str:
        return f"<Logprobs of {len(self)} tokens: {self.summary()}>"

    @property
    def mean_p(self) -> float | None:
        return sum(t.p for t in self.tokens) / len(self.tokens) if self.tokens else None

    def below(self, p: float = LOW) -> int:
        """How many tokens had a probability below `p`."""
        return sum(1 for t in self.tokens if t.p < p)

    def summary(self) -> str:
        """e.g. `mean p 0.83 · 14 tokens below 50 %`."""
        mean = self.mean_p
        if mean is None:
            return "no token probabilities"
        low = self.below()
        return f"mean p {mean:.2f} · {low} token{'s' * (low != 1)} below {LOW:.0%}".replace(
            "%", " %"
        )

    def records(self) -> list[dict[str, Any]]:
        """One dict per token: position, token, p, logprob, alternatives [(token, p), ...]."""
        return [
            {
                "position": i,
                "token": t.token,
                "p": t.p,
                "logprob": t.logprob,
                "alternatives": [(a, math.exp(lp)) for a, lp in t.alternatives],
            }
            for i, t in enumerate(self.tokens)
        ]

    def to_pandas(self) -> Any:
        """The records as a pandas DataFrame (pandas is imported here, not before)."""
        import pandas as pd

        return pd.DataFrame.from_records(
            self.records(), columns=["position", "token", "p", "logprob", "alternatives"]
        )

    def _repr_html_(self) -> str:
        return logprobs_html(self)


def _percent(p: float) -> str:
    return f"{p * 100:.1f} %" if p >= 0.001 else "<0.1 %"


def _shown(token: str) -> str:
    """A token as a tooltip shows it: line breaks and tabs visible, no quotes."""
    return token.replace("\n", "↵").replace("\t", "⇥") or "∅"


def _title(token: TokenLogprob) -> str:
    """`p 0.80 · also: some 10.0 %, a 5.0 %` (the chosen token is not repeated)."""
    others = [(a, lp) for a, lp in token.alternatives if a != token.token]
    title = f"p {token.p:.2f}"
    if others:
        title += " · also: " + ", ".join(
            f"{_shown(a)} {_percent(math.exp(lp))}" for a, lp in others
        )
    return title


def shade(p: float) -> str:
    """The background of a token of probability `p`: clear when sure, orange-red when not."""
    alpha = round(0.65 * (1 - min(max(p, 0.0), 1.0)), 2)
    return f"rgba(255,99,71,{alpha:g})"


def _span(token: TokenLogprob) -> str:
    background = shade(token.p)
    style = "" if background.endswith(",0)") else f' style="background:{background}"'
    title = html.escape(_title(token), quote=True)
    return f'<span{style} title="{title}">{html.escape(token.token, quote=False)}</span>'


def logprobs_html(logprobs: Logprobs) -> str:
    """The tokens, shaded by probability, each with its alternatives on hover; a summary line.

    About 130 bytes per token with five alternatives (tooltip included), sent once, at the end.
    """
    summary = html.escape(logprobs.summary())
    return (
        '<div class="nbchat-logprobs">'
        '<div style="white-space:pre-wrap;font-family:var(--jp-code-font-family,monospace);'
        f'font-size:0.9em;line-height:1.6">{"".join(_span(t) for t in logprobs)}</div>'
        f'<div style="font-size:0.85em;opacity:0.7">{summary} · hover a token for the '
        "alternatives; the redder, the less sure</div></div>"
    )


def logprobs_bundle(logprobs: Logprobs) -> dict[str, str]:
    """The shaded view (text/html) with its summary line as text/plain."""
    return {"text/html": logprobs_html(logprobs), "text/plain": f"[{logprobs.summary()}]"}
