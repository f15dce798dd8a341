"""1. Streaming throughput: `%%chat` (parse + live render in an InteractiveShell) against
the official openai SDK iterating the same stream and raw httpx2 `iter_lines` +
`json.loads`, on a 20,000-chunk reply with no server delay.

The client's CPU time is what is compared: with no delay the mock server (in its
own process) is the slowest party, so every client's wall time is close to the
server's, whatever the client costs."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from .common import NO_SDK, has_openai, median, nbchat_shell, run_chat, timed

CHUNKS = 20_000
MODEL = f"gpt-4o-mini@chunks={CHUNKS},reply=markdown"
MESSAGES = [{"role": "user", "content": "benchmark"}]
ROUNDS = 11  # this machine is noisy: the ratio of medians of 5 varied 1.0-1.9


def raw_httpx(url: str) -> Callable[[], str]:
    """The floor: one reused httpx2.Client, iter_lines, json.loads, pick the content."""
    import httpx2 as httpx

    client = httpx.Client(timeout=60)
    body = {"model": MODEL, "messages": MESSAGES, "stream": True}

    def run() -> str:
        parts = []
        with client.stream("POST", f"{url}/chat/completions", json=body) as response:
            for line in response.iter_lines():
                if not line.startswith("data: "):
                    continue
                data = line[6:]
                if data == "[DONE]":
                    break
                choices = json.loads(data).get("choices")
                if choices:
                    content = choices[0]["delta"].get("content")
                    if content:
                        parts.append(content)
        return "".join(parts)

    return run


def openai_sdk(url: str) -> Callable[[], str]:
    """The official SDK merely iterating the stream (no display at all)."""
    from openai import OpenAI

    client = OpenAI(base_url=url, api_key="sk-bench", max_retries=0)

    def run() -> str:
        stream = client.chat.completions.create(
            model=MODEL, messages=MESSAGES, stream=True, stream_options={"include_usage": True}
        )
        parts = [c.choices[0].delta.content or "" for c in stream if c.choices]
        return "".join(parts)

    return run


def nbchat(url: str) -> Callable[[], str]:
    ip, publisher = nbchat_shell(url, live=True)

    def run() -> str:
        publisher.reset()
        run_chat(ip, MODEL)
        return str(ip.find_cell_magic("chat").__self__.session.last_reply.text)

    return run


def measure(url: str) -> dict[str, Any]:
    contenders = {"nbchat": nbchat(url)}
    if has_openai():  # a baseline only: without it its row says how to install it
        contenders["openai SDK"] = openai_sdk(url)
    contenders["raw httpx2"] = raw_httpx(url)
    texts = {name: run() for name, run in contenders.items()}  # warm up, and check
    if len(set(texts.values())) != 1:
        raise RuntimeError("the contenders did not receive the same reply")
    wall: dict[str, list[float]] = {name: [] for name in contenders}
    cpu: dict[str, list[float]] = {name: [] for name in contenders}
    for _ in range(ROUNDS):  # interleaved, so drift hits everyone alike
        for name, run in contenders.items():
            w, c = timed(run)
            wall[name].append(w)
            cpu[name].append(c)
    return {
        "chunks": CHUNKS,
        "reply_bytes": len(texts["nbchat"].encode()),
        "wall": {name: median(v) for name, v in wall.items()},
        "cpu": {name: median(v) for name, v in cpu.items()},
    }


def report(r: dict[str, Any]) -> list[str]:
    wall, cpu = r["wall"], r["cpu"]
    per_chunk = {name: cpu[name] / r["chunks"] * 1e6 for name in cpu}
    lines = [
        f"### 1. Throughput: {r['chunks']:,}-chunk reply ({r['reply_bytes'] / 1000:.0f} KB), "
        f"median of {ROUNDS}",
        "",
        "| | client CPU | µs per chunk | nbchat ÷ this (CPU) | wall |",
        "|---|---|---|---|---|",
    ]
    for name in ("nbchat", "openai SDK", "raw httpx2"):
        if name not in cpu:
            lines.append(f"| {name} | {NO_SDK} | | | |")
            continue
        lines.append(
            f"| {name} | {cpu[name] * 1000:.0f} ms | {per_chunk[name]:.1f} "
            f"| {cpu['nbchat'] / cpu[name]:.2f} | {wall[name] * 1000:.0f} ms |"
        )
    sdk = f"{cpu['nbchat'] / cpu['openai SDK']:.3f}" if "openai SDK" in cpu else "not measured"
    lines += [
        "",
        f"Targets: nbchat ≤ 0.1 x the SDK (now {sdk}) and "
        f"≤ 1.3 x raw httpx2 (now {cpu['nbchat'] / cpu['raw httpx2']:.2f}). CPU time of this "
        "process is the measure: wall time is bounded by how fast the mock server writes.",
    ]
    return lines
