"""5. `nbchat.map` at scale: client CPU per request and requests per second against the
official SDK's `AsyncOpenAI` + a semaphore and raw `httpx2.AsyncClient` + a semaphore,
on the same mock server (its own process), at the same concurrency.

Every contender sends REQUESTS non-streamed requests with distinct prompts (so no
cache answers for nbchat), CONCURRENCY at a time; rounds are interleaved so drift
hits everyone alike. CPU time is this process's (all threads: nbchat's pool runs
its event loop in a thread of its own). nbchat runs as in a notebook: the extension
loaded, each finished reply written to the exchange record (its cache by exact
request, in a temporary file here), no progress display; and once more with the
cache in memory (as without the extension or with recording off).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from .common import NO_SDK, has_openai, median, timed

REQUESTS = 600
CONCURRENCY = 32
ROUNDS = 5
MODEL = "gpt-4o-mini"

Run = Callable[[list[str]], list[str]]


def _prompts(tag: str) -> list[str]:
    return [f"{tag} item {i}" for i in range(REQUESTS)]


def raw_httpx2(url: str) -> Run:
    """The floor: one AsyncClient, a semaphore, post, `.json()`, pick the content."""
    import httpx2

    def run(prompts: list[str]) -> list[str]:
        async def main() -> list[str]:
            limits = httpx2.Limits(max_connections=CONCURRENCY)
            async with httpx2.AsyncClient(
                timeout=60, limits=limits, headers={"Authorization": "Bearer sk-bench"}
            ) as client:
                gate = asyncio.Semaphore(CONCURRENCY)

                async def one(prompt: str) -> str:
                    body = {"model": MODEL, "messages": [{"role": "user", "content": prompt}]}
                    async with gate:
                        response = await client.post(f"{url}/chat/completions", json=body)
                    return str(response.json()["choices"][0]["message"]["content"])

                return list(await asyncio.gather(*(one(p) for p in prompts)))

        return asyncio.run(main())

    return run


def openai_sdk(url: str) -> Run:
    """The official SDK's AsyncOpenAI (on httpx2) with a semaphore: the usual recipe."""
    from openai import AsyncOpenAI

    def run(prompts: list[str]) -> list[str]:
        async def main() -> list[str]:
            async with AsyncOpenAI(base_url=url, api_key="sk-bench") as client:
                gate = asyncio.Semaphore(CONCURRENCY)

                async def one(prompt: str) -> str:
                    async with gate:
                        done = await client.chat.completions.create(
                            model=MODEL, messages=[{"role": "user", "content": prompt}]
                        )
                    return done.choices[0].message.content or ""

                return list(await asyncio.gather(*(one(p) for p in prompts)))

        return asyncio.run(main())

    return run


def nbchat_map(url: str, history: str, *, record: bool) -> Run:
    """`nbchat.map` in a shell with the extension loaded (as in a notebook), its cache the
    exchange record at `history` (`record=True`) or this process's memory."""
    import nbchat
    from nbchat.results import MemoryCache

    from .common import nbchat_shell

    ip, _ = nbchat_shell(url, live=False)
    ip.run_line_magic("config", f"ChatMagics.history_path = {history!r}")

    def run(prompts: list[str]) -> list[str]:
        cache: Any = True if record else MemoryCache()
        results = nbchat.map(
            "{}", prompts, model=MODEL, concurrency=CONCURRENCY, progress=False, cache=cache
        )
        if results.errors:
            raise RuntimeError(f"nbchat.map failed: {next(iter(results.errors.values()))}")
        return [t or "" for t in results.texts]

    return run


def measure(url: str, rounds: int = ROUNDS) -> dict[str, Any]:
    import tempfile

    from .common import nbchat_shell

    magics = nbchat_shell(url, live=False)[0].find_cell_magic("chat").__self__
    before = magics.history_path
    try:
        with tempfile.TemporaryDirectory() as tmp:
            return _measure(url, f"{tmp}/history.sqlite", rounds)
    finally:
        magics.history_path = before


def _measure(url: str, history: str, rounds: int) -> dict[str, Any]:
    contenders: dict[str, Run] = {
        "nbchat.map": nbchat_map(url, history, record=True),
        "nbchat.map, cache in memory": nbchat_map(url, history, record=False),
    }
    if has_openai():
        contenders["openai SDK"] = openai_sdk(url)
    contenders["raw httpx2"] = raw_httpx2(url)
    for name, run in contenders.items():  # warm up, and check they get the same replies
        texts = run(_prompts(f"warm {name}")[:64])
        if len(texts) != 64 or not all(f"item {i}" in t for i, t in enumerate(texts)):
            raise RuntimeError(f"{name} did not receive the expected replies")
    wall: dict[str, list[float]] = {name: [] for name in contenders}
    cpu: dict[str, list[float]] = {name: [] for name in contenders}
    for k in range(rounds):
        for name, run in contenders.items():
            prompts = _prompts(f"round {k} {name}")
            w, c = timed(lambda run=run, prompts=prompts: run(prompts))  # type: ignore[misc]
            wall[name].append(w)
            cpu[name].append(c)
    return {
        "requests": REQUESTS,
        "concurrency": CONCURRENCY,
        "rounds": rounds,
        "wall": {name: median(v) for name, v in wall.items()},
        "cpu": {name: median(v) for name, v in cpu.items()},
    }


def report(r: dict[str, Any]) -> list[str]:
    n, cpu, wall = r["requests"], r["cpu"], r["wall"]
    lines = [
        f"### 5. nbchat.map: {n} non-streamed requests at concurrency {r['concurrency']}, "
        f"median of {r['rounds']} interleaved rounds",
        "",
        "| | client CPU per request | requests/s (wall) | nbchat.map ÷ this (CPU) |",
        "|---|---|---|---|",
    ]
    for name in ("nbchat.map", "nbchat.map, cache in memory", "openai SDK", "raw httpx2"):
        if name not in cpu:
            lines.append(f"| {name} | {NO_SDK} | | |")
            continue
        lines.append(
            f"| {name} | {cpu[name] / n * 1e6:,.0f} µs | {n / wall[name]:,.0f} "
            f"| {cpu['nbchat.map'] / cpu[name]:.2f} |"
        )
    sdk = f"{cpu['nbchat.map'] / cpu['openai SDK']:.2f}" if "openai SDK" in cpu else "not measured"
    lines += ["", f"Target: nbchat.map CPU per request ≤ 1.0 x the SDK's (now {sdk})."]
    return lines
