"""The mock server speaks the OpenAI wire format, checked against the official schemas."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx2 as httpx
import pytest

from nbchat.mockserver import MockServer, Received, mock_reply, prompt_tokens, reply_pieces
from tests.openapi import validator

ROOT = Path(__file__).resolve().parent.parent
MESSAGES: list[dict[str, Any]] = [
    {"role": "system", "content": "You are terse."},
    {"role": "user", "content": "Hi there"},
    {"role": "assistant", "content": "Hello!"},
    {
        "role": "user",
        "content": [
            {"type": "text", "text": "Show me a plot of sin(x)"},
            {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}},
            {"type": "text", "text": "in 'matplotlib', please"},
        ],
    },
]


@pytest.fixture(scope="module")
def server() -> Iterator[MockServer]:
    with MockServer(delay=0, ttft=0) as srv:
        yield srv


@pytest.fixture(scope="module")
def client(server: MockServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, timeout=10) as c:
        yield c


def stream(
    client: httpx.Client,
    model: str = "gpt-4o-mini",
    headers: dict[str, str] | None = None,
    **extra: Any,
) -> list[dict[str, Any]]:
    """POST a streaming request; return the chunks, checking SSE framing and schema."""
    body = {"model": model, "messages": MESSAGES, "stream": True, **extra}
    with client.stream("POST", "/chat/completions", json=body, headers=headers) as r:
        assert r.status_code == 200, r.read()
        assert r.headers["content-type"].startswith("text/event-stream")
        raw = r.read().decode()
    assert raw.endswith("\n\n")
    events = raw[:-2].split("\n\n")
    assert all(e.startswith("data: ") and "\n" not in e for e in events)
    assert events[-1] == "data: [DONE]"
    chunks = [json.loads(e[6:]) for e in events[:-1]]
    check = validator("CreateChatCompletionStreamResponse")
    for c in chunks[:3] + chunks[-3:]:
        check.validate(c)
    return chunks


def content_of(chunks: list[dict[str, Any]]) -> list[str]:
    return [
        c["choices"][0]["delta"]["content"]
        for c in chunks[1:]
        if c["choices"] and c["choices"][0]["delta"].get("content")
    ]


def test_stream_reassembles_to_mock_reply(client: httpx.Client) -> None:
    chunks = stream(client)
    for c in chunks:
        validator("CreateChatCompletionStreamResponse").validate(c)
    expected = mock_reply(MESSAGES, "gpt-4o-mini")
    assert "".join(content_of(chunks)) == expected
    assert "Show me a plot of sin(x)" in expected and "turn 2 " in expected
    assert expected.startswith("## Echo") and "```python\n" in expected
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    assert chunks[-1]["choices"][0] == {
        "index": 0,
        "delta": {},
        "finish_reason": "stop",
        "logprobs": None,
    }
    assert all(c["choices"][0]["finish_reason"] is None for c in chunks[:-1])
    assert len({(c["id"], c["created"], c["model"], c["object"]) for c in chunks}) == 1
    assert chunks[0]["model"] == "gpt-4o-mini" and chunks[0]["id"].startswith("chatcmpl-mock-")
    assert all("usage" not in c for c in chunks)


def test_usage_is_consistent(client: httpx.Client) -> None:
    chunks = stream(client, stream_options={"include_usage": True})
    last = chunks[-1]
    assert last["choices"] == []
    usage = last["usage"]
    validator("CompletionUsage").validate(usage)
    n = len(content_of(chunks))
    assert n == len(reply_pieces(MESSAGES, "gpt-4o-mini")) > 10
    assert usage["completion_tokens"] == n
    assert usage["prompt_tokens"] == prompt_tokens(MESSAGES) == 3 + 2 + 1 + 9 + 4 * 4
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]
    assert usage["prompt_tokens_details"] == {"cached_tokens": 0}
    assert usage["completion_tokens_details"] == {"reasoning_tokens": 0}
    assert all(c["usage"] is None for c in chunks[:-1])
    assert chunks[-2]["choices"][0]["finish_reason"] == "stop"


def test_usage_chunk_with_choices(client: httpx.Client) -> None:
    chunks = stream(client, "gpt-4o@choices_on_usage=1", stream_options={"include_usage": True})
    last = chunks[-1]
    assert last["usage"]["completion_tokens"] == len(content_of(chunks))
    assert len(last["choices"]) == 1 and last["choices"][0]["delta"] == {}
    assert chunks[0]["model"] == "gpt-4o"


def test_no_usage_unless_asked_or_when_disabled(client: httpx.Client) -> None:
    kws: list[dict[str, Any]] = [{}, {"stream_options": {"include_usage": False}}]
    for kw in kws:
        assert all("usage" not in c for c in stream(client, **kw))
    chunks = stream(client, "gpt-4o@usage=0", stream_options={"include_usage": True})
    assert all("usage" not in c and c["choices"] for c in chunks)


def test_non_streaming(client: httpx.Client) -> None:
    r = client.post("/chat/completions", json={"model": "mock-echo", "messages": MESSAGES})
    assert r.status_code == 200
    data = r.json()
    validator("CreateChatCompletionResponse").validate(data)
    assert data["object"] == "chat.completion" and data["model"] == "mock-echo"
    choice = data["choices"][0]
    assert choice["message"] == {
        "role": "assistant",
        "content": mock_reply(MESSAGES, "mock-echo"),
        "refusal": None,
    }
    assert choice["finish_reason"] == "stop"
    usage = data["usage"]
    assert usage["completion_tokens"] == len(reply_pieces(MESSAGES, "mock-echo"))
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]


def test_mock_reply_is_deterministic_markdown() -> None:
    text = mock_reply([{"role": "user", "content": "a\nb"}], "m")
    assert text == mock_reply([{"role": "user", "content": "a\nb"}], "m")
    assert "> a\n> b\n" in text and "- turn 1 " in text and "- model `m`" in text
    assert "print('a\\nb')" in text and text.endswith("```\n")
    assert mock_reply([], "m").startswith("## Echo")


def test_models(client: httpx.Client) -> None:
    r = client.get("/models")
    assert r.status_code == 200
    data = r.json()
    validator("ListModelsResponse").validate(data)
    owners = {m["id"]: m["owned_by"] for m in data["data"]}
    assert owners == {
        "gpt-4o-mini": "openai",
        "gpt-4o": "openai",
        "gpt-4.1-mini": "openai",
        "mock-echo": "nbchat-mock",
    }


def test_api_key() -> None:
    key = "sk-test-very-secret"
    with MockServer(api_key=key, delay=0, ttft=0) as srv, httpx.Client(base_url=srv.url) as c:
        body = {"model": "gpt-4o-mini", "messages": MESSAGES}
        for headers in ({}, {"Authorization": "Bearer sk-wrong-key"}, {"Authorization": key}):
            for r in (
                c.get("/models", headers=headers),
                c.post("/chat/completions", json=body, headers=headers),
            ):
                assert r.status_code == 401
                assert r.json() == {
                    "error": {
                        "message": "Incorrect API key provided.",
                        "type": "invalid_request_error",
                        "param": None,
                        "code": "invalid_api_key",
                    }
                }
                assert key not in r.text and "sk-wrong" not in r.text
        ok = {"Authorization": f"Bearer {key}"}
        assert c.get("/models", headers=ok).status_code == 200
        assert c.post("/chat/completions", json=body, headers=ok).status_code == 200
        assert len(srv.requests) == 8
        assert srv.requests[-1].headers["authorization"] == f"Bearer {key}"


def test_twenty_thousand_chunks_exact(client: httpx.Client) -> None:
    chunks = stream(
        client, "gpt-4o-mini@chunks=20000,delay=0,ttft=0", stream_options={"include_usage": True}
    )
    pieces = content_of(chunks)
    assert len(pieces) == 20000 == chunks[-1]["usage"]["completion_tokens"]
    assert pieces == reply_pieces(MESSAGES, "gpt-4o-mini", chunks=20000)
    assert "".join(pieces).startswith(mock_reply(MESSAGES, "gpt-4o-mini"))


@pytest.mark.parametrize("n", [1, 3, 57, 500])
@pytest.mark.parametrize("reply", ["echo", "markdown", "paragraph"])
def test_chunks_exact_for_every_reply_kind(client: httpx.Client, n: int, reply: str) -> None:
    pieces = content_of(stream(client, f"gpt-4o-mini@chunks={n},reply={reply}"))
    assert len(pieces) == n and all(pieces)
    assert pieces == reply_pieces(MESSAGES, "gpt-4o-mini", reply, n)
    text = "".join(pieces)
    if reply == "markdown":
        assert text.startswith("# ") and "\n## " in text and "```python\n" in text
        assert "|---|" in text and "\n- " in text and text.count("```") % 2 == 0
    if reply == "paragraph":
        assert "\n" not in text.rstrip("\n")


def test_header_options_override_model_suffix(client: httpx.Client) -> None:
    chunks = stream(client, "gpt-4o-mini@chunks=7", headers={"X-Mock-Options": "chunks=5"})
    assert len(content_of(chunks)) == 5


@pytest.mark.parametrize("field", ["max_completion_tokens", "max_tokens"])
def test_max_tokens_truncates(client: httpx.Client, field: str) -> None:
    extra: dict[str, Any] = {field: 5}
    chunks = stream(client, stream_options={"include_usage": True}, **extra)
    pieces = content_of(chunks)
    assert pieces == reply_pieces(MESSAGES, "gpt-4o-mini")[:5]
    assert chunks[-2]["choices"][0]["finish_reason"] == "length"
    assert chunks[-1]["usage"]["completion_tokens"] == 5
    body = {"model": "gpt-4o-mini", "messages": MESSAGES, field: 5}
    data = client.post("/chat/completions", json=body).json()
    assert data["choices"][0]["finish_reason"] == "length"
    assert data["choices"][0]["message"]["content"] == "".join(pieces)
    body[field] = 10_000  # not truncating: stays "stop"
    data = client.post("/chat/completions", json=body).json()
    assert data["choices"][0]["finish_reason"] == "stop"


def error_of(r: httpx.Response, status: int) -> dict[str, Any]:
    assert r.status_code == status, r.text
    err: dict[str, Any] = r.json()["error"]
    assert set(err) == {"message", "type", "param", "code"} and err["message"]
    return err


@pytest.mark.parametrize(
    ("model", "header", "name"),
    [
        ("gpt-4o@bogus=1", None, "bogus"),
        ("gpt-4o", "delay=0,frobnicate=2", "frobnicate"),
        ("gpt-4o@chunks=zero", None, "chunks"),
        ("gpt-4o@reply=poem", None, "reply"),
    ],
)
def test_bad_options_are_400(
    client: httpx.Client, model: str, header: str | None, name: str
) -> None:
    headers = {"X-Mock-Options": header} if header else None
    body = {"model": model, "messages": MESSAGES, "stream": True}
    err = error_of(client.post("/chat/completions", json=body, headers=headers), 400)
    assert f"'{name}'" in err["message"]


def test_bad_requests_are_400(client: httpx.Client) -> None:
    assert (
        error_of(client.post("/chat/completions", json={"messages": MESSAGES}), 400)["param"]
        == "model"
    )
    assert (
        error_of(client.post("/chat/completions", json={"model": "gpt-4o"}), 400)["param"]
        == "messages"
    )
    error_of(client.post("/chat/completions", content=b"{not json"), 400)
    error_of(
        client.post(
            "/chat/completions",
            json={"model": "gpt-4o", "messages": MESSAGES, "max_tokens": "many"},
        ),
        400,
    )


def test_unknown_path_is_404(client: httpx.Client) -> None:
    assert "/v1/embeddings" in error_of(client.post("/embeddings", json={}), 404)["message"]
    error_of(client.get("/chat/completions"), 404)
    error_of(client.get(client.base_url.join("/nope")), 404)


def test_requests_are_recorded(server: MockServer, client: httpx.Client) -> None:
    server.clear()
    client.post(
        "/chat/completions",
        json={"model": "gpt-4o", "messages": MESSAGES},
        headers={"X-Custom": "Yes"},
    )
    client.get("/models")
    reqs = list(server.requests)
    assert [(r.method, r.path) for r in reqs] == [
        ("POST", "/v1/chat/completions"),
        ("GET", "/v1/models"),
    ]
    assert isinstance(reqs[0], Received) and reqs[0].headers["x-custom"] == "Yes"
    assert reqs[0].body == {"model": "gpt-4o", "messages": MESSAGES} and reqs[1].body is None
    server.requests.clear()
    assert len(server.requests) == 0


def test_timing_ttft_and_delay() -> None:
    with MockServer(delay=0.02, ttft=0.2) as srv, httpx.Client(base_url=srv.url) as c:
        body = {"model": "gpt-4o-mini@chunks=6", "messages": MESSAGES, "stream": True}
        start = time.perf_counter()
        arrivals = []
        with c.stream("POST", "/chat/completions", json=body) as r:
            for line in r.iter_lines():
                if '"content": "' in line and '"content": ""' not in line:
                    arrivals.append(time.perf_counter() - start)
    assert len(arrivals) == 6
    assert arrivals[0] >= 0.2
    assert arrivals[-1] - arrivals[0] >= 5 * 0.02 * 0.9


def test_cli_prints_url_and_serves() -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "nbchat.mockserver", "--port", "0"],
        stdout=subprocess.PIPE,
        text=True,
        env=env,
        cwd=ROOT,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line.startswith("nbchat mock server on http://127.0.0.1:")
        url = line.split(" on ", 1)[1].strip()
        assert url.endswith("/v1")
        assert httpx.get(f"{url}/models").status_code == 200
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()
