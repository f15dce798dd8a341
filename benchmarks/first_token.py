"""3. Time to the first rendered token: from running the `%%chat` cell to the first
display message with reply text, against raw httpx2's time from sending the
request to parsing the first content delta. The server answers at once (ttft=0)
and then waits between chunks, so the first token arrives alone."""

from __future__ import annotations

import json
import time
from typing import Any

from .common import forget, median, nbchat_shell

MODEL = "gpt-4o-mini@chunks=20,delay=0.005,reply=paragraph"
ROUNDS = 15


def raw_httpx_first_token(client: Any, url: str) -> float:
    body = {"model": MODEL, "messages": [{"role": "user", "content": "hi"}], "stream": True}
    started = time.perf_counter()
    first = 0.0
    with client.stream("POST", f"{url}/chat/completions", json=body) as response:
        for line in response.iter_lines():
            if not first and line.startswith("data: ") and line != "data: [DONE]":
                choices = json.loads(line[6:]).get("choices")
                if choices and choices[0]["delta"].get("content"):
                    first = time.perf_counter() - started
    return first


def nbchat_first_token(ip: Any, publisher: Any) -> float:
    publisher.reset()
    forget(ip)
    started = time.perf_counter()
    ip.run_cell(f"%%chat -m {MODEL}\nhi")
    shown = [m for m in publisher.messages if "text/markdown" in m.mimetypes and m.nbytes]
    return shown[0].time - started


def measure(url: str) -> dict[str, Any]:
    import httpx2 as httpx

    client = httpx.Client(timeout=60)
    ip, publisher = nbchat_shell(url, live=True)
    nbchat_first_token(ip, publisher)  # warm: the client and imports exist from here on
    raw_httpx_first_token(client, url)
    nbchat: list[float] = []
    raw: list[float] = []
    for _ in range(ROUNDS):
        nbchat.append(nbchat_first_token(ip, publisher))
        raw.append(raw_httpx_first_token(client, url))
    return {"nbchat": median(nbchat), "raw httpx2": median(raw)}


def report(r: dict[str, Any]) -> list[str]:
    added = (r["nbchat"] - r["raw httpx2"]) * 1000
    return [
        f"### 3. Time to first token (server answers at once), median of {ROUNDS}",
        "",
        "| | first token |",
        "|---|---|",
        f"| `%%chat`: cell run → first Markdown on screen | {r['nbchat'] * 1000:.2f} ms |",
        f"| raw httpx2: request → first content parsed | {r['raw httpx2'] * 1000:.2f} ms |",
        f"| added by nbchat (target ≤ 2 ms) | {added:.2f} ms |",
    ]
