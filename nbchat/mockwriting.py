"""The mock server's view of how a model writes: thinking, token probabilities, n choices.

Deterministic, so tests can compute what they expect:

- `reasoning=content|field|think` (mock option): the model first thinks
  `thought(messages)`, sent as `delta.reasoning_content`, as `delta.reasoning`,
  or inline as a leading `<think>…</think>` in the content. With `content` and
  `field` the usage reports the thinking as `reasoning_tokens`.
- `logprobs: true` (+ `top_logprobs: K`): token i of choice k has probability
  `token_p(i, k, sure)` (mock option `sure`, default 0.8, is their mean level);
  its alternatives share what is left, halving each time.
- `n: K`: K choices. Choice 0 is the usual reply; choice k > 0 swaps some words,
  more of them the higher the `temperature` (none at 0, every 6th word at 1,
  every 3rd at 2), and above temperature 0 ends k tokens earlier, on its own
  (`finish_reason` "stop" even when choice 0 was cut by a token limit).
- `prediction`: reply words found in the prediction count as accepted
  prediction tokens, the prediction's other words as rejected ones.

Standard library only, like the server.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any

__all__ = ["Writing", "thought", "token_p"]

_TOKEN = re.compile(r"\S+\s*|\s+")
_ALTERNATIVES = ["a", "one", "this", "model", "reply", "word", "answer", "maybe", "text", "some"]
_SPREAD = [0.15, 0.05, -0.3, 0.1, -0.5, 0.12, 0.02, -0.15]
_KEYS = {"content": "reasoning_content", "field": "reasoning"}


def _last_user(messages: list[dict[str, Any]]) -> str:
    for m in reversed(messages):
        if isinstance(m, dict) and m.get("role") == "user":
            content = m.get("content")
            if isinstance(content, str):
                return content
            if isinstance(content, list):
                return "\n".join(str(p.get("text", "")) for p in content if isinstance(p, dict))
    return ""


def thought(messages: list[dict[str, Any]]) -> str:
    """What the mock model thinks before it answers (it quotes the user: untrusted text)."""
    users = sum(1 for m in messages if isinstance(m, dict) and m.get("role") == "user")
    return (
        f"The user wrote: {_last_user(messages)}\n"
        f"This is turn {users}. I will echo it back as Markdown, "
        "then name the turn and the model.\n"
    )


def token_p(i: int, k: int, sure: float) -> float:
    """The probability of token `i` of choice `k` around the mean level `sure`."""
    return round(min(0.999, max(0.01, sure + _SPREAD[(i * 5 + k) % len(_SPREAD)])), 4)


def _vary(pieces: list[str], k: int, temperature: float) -> list[str]:
    if k == 0 or temperature <= 0:
        return list(pieces)
    pieces = pieces[: max(len(pieces) - k, 1)]
    every = max(1, round(6 / temperature))
    out, word = [], 0
    for piece in pieces:
        core = piece.rstrip()
        if core.isalpha():
            if word % every == k % every:
                piece = _ALTERNATIVES[(word + 3 * k) % len(_ALTERNATIVES)] + piece[len(core) :]
            word += 1
        out.append(piece)
    return out


@dataclass
class Writing:
    """How one request's reply is written (see the module docstring)."""

    choices: list[list[str]]
    thinking: list[str]
    reasoning: str | None
    logprobs: bool
    top: int
    sure: float
    prediction: str | None

    @classmethod
    def of(
        cls,
        body: dict[str, Any],
        messages: list[dict[str, Any]],
        pieces: list[str],
        reasoning: str | None,
        sure: float,
    ) -> Writing:
        n = body.get("n")
        n = n if isinstance(n, int) and 1 <= n <= 128 else 1
        temperature = body.get("temperature")
        t = float(temperature) if isinstance(temperature, (int, float)) else 1.0
        choices = [_vary(pieces, k, t) for k in range(n)]
        thinking = _TOKEN.findall(thought(messages)) if reasoning else []
        if reasoning == "think":
            choices[0] = ["<think>\n", *thinking, "</think>\n\n", *choices[0]]
        top = body.get("top_logprobs")
        prediction = body.get("prediction")
        predicted = None
        if isinstance(prediction, dict) and prediction.get("type") == "content":
            content = prediction.get("content")
            predicted = (
                content
                if isinstance(content, str)
                else _last_user([{"role": "user", "content": content}])
            )
        return cls(
            choices=choices,
            thinking=thinking,
            reasoning=reasoning,
            logprobs=body.get("logprobs") is True,
            top=top if isinstance(top, int) and 0 <= top <= 20 else 0,
            sure=sure,
            prediction=predicted,
        )

    @property
    def rich(self) -> bool:
        """Whether the stream needs more than the plain content template."""
        return len(self.choices) > 1 or bool(self.reasoning) or self.logprobs

    def bill(self, usage: dict[str, Any]) -> None:
        """Count every choice, the thinking and the prediction into `usage`."""
        completion = sum(len(c) for c in self.choices)
        details = usage["completion_tokens_details"]
        if self.reasoning in _KEYS:
            completion += len(self.thinking)
            details["reasoning_tokens"] = len(self.thinking)
        usage["completion_tokens"] = completion
        usage["total_tokens"] = usage["prompt_tokens"] + completion
        if self.prediction is not None:
            words = {p.strip() for p in self.choices[0] if p.strip()}
            predicted = [p.strip() for p in _TOKEN.findall(self.prediction) if p.strip()]
            accepted = sum(1 for p in predicted if p in words)
            details["accepted_prediction_tokens"] = accepted
            details["rejected_prediction_tokens"] = len(predicted) - accepted

    def _logprobs(self, i: int, k: int, token: str) -> dict[str, Any] | None:
        if not self.logprobs:
            return None
        p = token_p(i, k, self.sure)
        tops = [{"token": token, "logprob": math.log(p), "bytes": list(token.encode())}]
        rest, j = 1 - p, 0
        while len(tops) < self.top:
            word = _ALTERNATIVES[(i * 3 + j) % len(_ALTERNATIVES)] + " "
            j += 1
            if word == token:
                continue
            rest /= 2
            tops.append({"token": word, "logprob": math.log(rest), "bytes": list(word.encode())})
        item = {**tops[0], "top_logprobs": tops[: self.top]}
        return {"content": [item], "refusal": None}

    def steps(self) -> list[list[dict[str, Any]]]:
        """The `choices` of each streamed chunk: thinking first, then every choice's text."""
        out: list[list[dict[str, Any]]] = []
        key = _KEYS.get(self.reasoning or "")
        if key is not None:
            for piece in self.thinking:
                out.append([_choice(0, {key: piece})])
        for i in range(max(len(c) for c in self.choices)):
            for k, pieces in enumerate(self.choices):
                if i < len(pieces):
                    delta = {"content": pieces[i]}
                    out.append([_choice(k, delta, logprobs=self._logprobs(i, k, pieces[i]))])
        return out

    def _finish(self, k: int, finish: str) -> str:
        """Choice k > 0 that ended early (see `_vary`) stopped on its own."""
        return "stop" if k and len(self.choices[k]) < len(self.choices[0]) else finish

    def ends(self, finish: str) -> list[list[dict[str, Any]]]:
        return [[_choice(k, {}, self._finish(k, finish))] for k in range(len(self.choices))]

    def messages(self, finish: str) -> list[dict[str, Any]]:
        """The `choices` of a whole (not streamed) completion."""
        out = []
        key = _KEYS.get(self.reasoning or "")
        for k, pieces in enumerate(self.choices):
            message: dict[str, Any] = {
                "role": "assistant",
                "content": "".join(pieces),
                "refusal": None,
            }
            if key is not None and k == 0:
                message[key] = "".join(self.thinking)
            logprobs = None
            if self.logprobs:
                items = [self._logprobs(i, k, p) for i, p in enumerate(pieces)]
                logprobs = {"content": [x["content"][0] for x in items if x], "refusal": None}
            out.append(
                {
                    "index": k,
                    "logprobs": logprobs,
                    "finish_reason": self._finish(k, finish),
                    "message": message,
                }
            )
        return out


def _choice(
    index: int, delta: dict[str, Any], finish: str | None = None, logprobs: Any = None
) -> dict[str, Any]:
    return {"index": index, "delta": delta, "finish_reason": finish, "logprobs": logprobs}
