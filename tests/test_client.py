"""ChatClient over httpx.MockTransport: headers, bodies, SSE parsing, retries, errors."""

from __future__ import annotations

import json
from collections.abc import Iterator

import httpx2 as httpx
import pytest

from nbchat.client import ChatClient, retry_delay
from nbchat.errors import (
    AuthenticationError,
    BadRequestError,
    NbChatError,
    NotFoundError,
    RateLimitError,
    StreamError,
    TransportError,
)
from nbchat.types import Secret

from .openapi import validator

KEY = "sk-unit-0123456789abcdefXYZW"
PAYLOAD = {
    "model": "gpt-4o-mini",
    "messages": [{"role": "user", "content": "hi"}],
    "stream": True,
    "stream_options": {"include_usage": True},
}


def chunk(content=None, finish=None, usage=None, choices=True):
    obj = {
        "id": "c1",
        "object": "chat.completion.chunk",
        "created": 1,
        "model": "gpt-4o-mini-2024-07-18",
        "system_fingerprint": "fp_unit",
        "choices": [],
    }
    if choices:
        delta = {"content": content} if content is not None else {}
        obj["choices"] = [{"index": 0, "delta": delta, "finish_reason": finish}]
    if usage:
        obj["usage"] = usage
    return f"data: {json.dumps(obj)}\n\n".encode()


USAGE = {"prompt_tokens": 9, "completion_tokens": 3, "total_tokens": 12}
BODY = b"".join(
    [
        chunk(""),
        chunk("Hel"),
        chunk("lo, "),
        chunk("wörld"),
        chunk(finish="stop"),
        chunk(usage=USAGE, choices=False),
        b"data: [DONE]\n\n",
    ]
)


def bytewise(body: bytes) -> Iterator[bytes]:
    for i in range(len(body)):
        yield body[i : i + 1]


def make(handler, **kwargs) -> ChatClient:
    defaults = {"base_url": "http://mock.test/v1/", "api_key": Secret(KEY), "sleep": lambda s: None}
    return ChatClient(transport=httpx.MockTransport(handler), **{**defaults, **kwargs})


def sse(body: bytes | Iterator[bytes], status: int = 200) -> httpx.Response:
    return httpx.Response(
        status,
        headers={"content-type": "text/event-stream"},
        stream=httpx.ByteStream(body) if isinstance(body, bytes) else _Iter(body),
    )


class _Iter(httpx.SyncByteStream):
    def __init__(self, chunks: Iterator[bytes]) -> None:
        self.chunks = chunks

    def __iter__(self) -> Iterator[bytes]:
        yield from self.chunks


def test_request_url_headers_and_body():
    seen = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return sse(BODY)

    client = make(handler, organization="org-1", project="proj-1")
    stream = client.stream(PAYLOAD)
    assert "".join(stream) == "Hello, wörld"
    request = seen[0]
    assert request.method == "POST"
    assert str(request.url) == "http://mock.test/v1/chat/completions"
    assert request.headers["authorization"] == f"Bearer {KEY}"
    assert request.headers["openai-organization"] == "org-1"
    assert request.headers["openai-project"] == "proj-1"
    body = json.loads(request.content)
    assert body == PAYLOAD
    assert not list(validator("CreateChatCompletionRequest").iter_errors(body))


def test_reply_fields_from_a_stream_split_at_every_byte():
    client = make(lambda request: sse(bytewise(BODY)))
    stream = client.stream(PAYLOAD)
    assert list(stream) == ["Hel", "lo, ", "wörld"]
    reply = stream.reply
    assert reply.text == "Hello, wörld"
    assert reply.model == "gpt-4o-mini-2024-07-18"
    assert reply.finish_reason == "stop"
    assert reply.system_fingerprint == "fp_unit"
    assert reply.usage is not None
    assert (reply.usage.prompt_tokens, reply.usage.completion_tokens, reply.usage.total_tokens) == (
        9,
        3,
        12,
    )
    assert reply.ttft is not None and reply.latency is not None


def test_usage_on_a_chunk_that_also_has_choices():
    body = chunk("a") + chunk(finish="stop", usage=USAGE) + b"data: [DONE]\n\n"
    stream = make(lambda r: sse(body)).stream(PAYLOAD)
    list(stream)
    assert stream.reply.usage is not None and stream.reply.usage.total_tokens == 12


def test_no_usage_stays_none_and_the_deltas_are_counted_as_an_estimate():
    body = chunk("a") + chunk("b") + chunk("c") + chunk(finish="stop") + b"data: [DONE]\n\n"
    stream = make(lambda r: sse(body)).stream(PAYLOAD)
    list(stream)
    reply = stream.reply
    assert reply.usage is None and reply.estimated_tokens == 3
    assert reply.tokens_per_second is not None  # from the estimate


def test_reported_usage_is_never_replaced_by_an_estimate():
    stream = make(lambda r: sse(BODY)).stream(PAYLOAD)
    list(stream)
    assert stream.reply.usage is not None and stream.reply.estimated_tokens is None


def test_a_whole_reply_without_usage_is_counted_by_tiktoken_when_installed(monkeypatch):
    import sys
    import types
    from importlib.machinery import ModuleSpec

    import nbchat.tokens

    fake = types.ModuleType("tiktoken")
    fake.__spec__ = ModuleSpec("tiktoken", None)
    encoding = types.SimpleNamespace(
        name="fake", encode=lambda text, disallowed_special=(): text.split()
    )
    fake.get_encoding = lambda name: encoding  # type: ignore[attr-defined]
    completion = {
        "choices": [{"index": 0, "message": {"content": "one two three four"}}],
        "model": "local",
    }

    def handler(request):
        return httpx.Response(200, json=completion)

    monkeypatch.delenv("NBCHAT_TOKEN_COUNTER", raising=False)
    monkeypatch.setattr(nbchat.tokens, "_encodings", {})
    monkeypatch.setattr(nbchat.tokens, "_loading", {})
    monkeypatch.setitem(sys.modules, "tiktoken", None)  # not installed
    assert make(handler).complete(PAYLOAD).estimated_tokens is None
    monkeypatch.setitem(sys.modules, "tiktoken", fake)
    assert make(handler).complete(PAYLOAD).estimated_tokens == 4


def test_no_key_no_authorization_header():
    seen = []
    client = make(lambda r: seen.append(r) or sse(BODY), api_key=None)
    list(client.stream(PAYLOAD))
    assert "authorization" not in seen[0].headers


def test_retries_429_honouring_retry_after_ms_then_succeeds():
    calls, notices, sleeps = [], [], []

    def handler(request):
        calls.append(request)
        if len(calls) < 3:
            return httpx.Response(
                429, headers={"retry-after-ms": "250"}, json={"error": {"message": "slow down"}}
            )
        return sse(BODY)

    client = make(handler, sleep=sleeps.append)
    stream = client.stream(PAYLOAD, on_retry=lambda *a: notices.append(a))
    assert "".join(stream) == "Hello, wörld"
    assert len(calls) == 3
    assert sleeps == [0.25, 0.25]
    assert notices[0] == ("rate limited", 0.25, 2, 3)


def test_retries_run_out():
    client = make(
        lambda r: httpx.Response(429, json={"error": {"message": "quota"}}), max_retries=1
    )
    with pytest.raises(RateLimitError, match="quota"):
        list(client.stream(PAYLOAD))


def test_connect_error_is_retried_then_reported():
    calls = []

    def handler(request):
        calls.append(request)
        raise httpx.ConnectError("refused")

    with pytest.raises(TransportError, match=r"cannot reach http://mock\.test/v1"):
        list(make(handler, max_retries=2).stream(PAYLOAD))
    assert len(calls) == 3


@pytest.mark.parametrize(
    ("status", "error", "text"),
    [
        (401, AuthenticationError, "OPENAI_API_KEY"),
        (404, NotFoundError, "ChatMagics.base_url ends in /v1"),
        (400, BadRequestError, "context_length_exceeded happened"),
    ],
)
def test_http_errors_map_to_one_line_with_hint(status, error, text):
    body = {"error": {"message": f"context_length_exceeded happened; key {KEY} is wrong"}}
    client = make(lambda r: httpx.Response(status, json=body))
    with pytest.raises(error) as info:
        list(client.stream(PAYLOAD))
    shown = "\n".join(info.value._render_traceback_())
    assert text in shown
    assert KEY not in shown and KEY not in str(info.value)  # redacted even when echoed
    assert len(shown.splitlines()) <= 2


def test_stream_cut_after_tokens_keeps_the_partial_reply():
    body = chunk("partial ") + chunk("text")  # no finish, no [DONE]
    stream = make(lambda r: sse(body)).stream(PAYLOAD)
    with pytest.raises(StreamError, match="reply incomplete") as info:
        list(stream)
    assert info.value.partial.text == "partial text"
    assert info.value.partial.finish_reason == "error"


def test_malformed_event_mid_stream():
    body = chunk("ok ") + b"data: {not json\n\n"
    with pytest.raises(StreamError, match="malformed") as info:
        list(make(lambda r: sse(body)).stream(PAYLOAD))
    assert info.value.partial.text == "ok "


def test_error_object_mid_stream():
    body = chunk("ok ") + b'data: {"error": {"message": "overloaded"}}\n\n'
    with pytest.raises(StreamError, match="overloaded"):
        list(make(lambda r: sse(body)).stream(PAYLOAD))


def test_non_streaming_complete():
    def handler(request):
        assert json.loads(request.content)["stream"] is False
        return httpx.Response(
            200,
            json={
                "id": "x",
                "object": "chat.completion",
                "created": 1,
                "model": "gpt-4o-mini",
                "choices": [
                    {
                        "index": 0,
                        "finish_reason": "stop",
                        "message": {"role": "assistant", "content": "done"},
                    }
                ],
                "usage": USAGE,
            },
        )

    reply = make(handler).complete(PAYLOAD)
    assert reply.text == "done" and reply.usage is not None and reply.usage.total_tokens == 12


def test_list_models():
    client = make(lambda r: httpx.Response(200, json={"object": "list", "data": [{"id": "m1"}]}))
    assert client.list_models() == [{"id": "m1"}]


def test_one_http_client_is_reused():
    client = make(lambda r: sse(BODY))
    list(client.stream(PAYLOAD))
    first = client.http
    list(client.stream(PAYLOAD))
    assert client.http is first


def test_retry_delay_rules():
    def response(**headers):
        return httpx.Response(429, headers=headers)

    assert retry_delay(response(**{"retry-after-ms": "1500"}), 1) == 1.5
    assert retry_delay(response(**{"retry-after": "3"}), 1) == 3.0
    assert 0.375 <= retry_delay(response(**{"retry-after": "999"}), 1) <= 0.5  # too long: backoff
    assert 3.0 <= retry_delay(None, 4) <= 4.0
    assert 6.0 <= retry_delay(None, 10) <= 8.0


def test_retry_after_as_an_http_date():
    import email.utils
    import time

    def response(value):
        return httpx.Response(503, headers={"retry-after": value})

    soon = email.utils.formatdate(time.time() + 2, usegmt=True)
    assert 0.5 < retry_delay(response(soon), 1) <= 2.0
    zoneless = soon.replace(" GMT", "")  # HTTP dates are GMT even when they do not say so
    assert 0.5 < retry_delay(response(zoneless), 1) <= 2.0
    past = email.utils.formatdate(time.time() - 3600, usegmt=True)
    assert 0.375 <= retry_delay(response(past), 1) <= 0.5  # nonsense: our backoff
    for garbage in ("soon", "", "1.5.3", "inf", "nan"):
        assert 0.375 <= retry_delay(response(garbage), 1) <= 0.5, garbage
    ms = httpx.Response(503, headers={"retry-after-ms": "x", "retry-after": "2"})
    assert retry_delay(ms, 1) == 2.0  # a bad retry-after-ms falls through to retry-after


def test_retry_statuses_and_not_others():
    for status, retried in (
        (408, True),
        (409, True),
        (500, True),
        (502, True),
        (503, True),
        (504, True),
        (507, True),
        (511, True),
        (524, True),
        (599, True),
        (501, False),  # Not Implemented: the same answer every time
        (505, False),  # HTTP Version Not Supported: likewise
        (401, False),
        (400, False),
        (404, False),
        (422, False),
    ):
        calls = []

        def handler(request, status=status, calls=calls):
            calls.append(request)
            return httpx.Response(status, json={"error": {"message": "no"}})

        with pytest.raises(NbChatError):
            list(make(handler, max_retries=1).stream(PAYLOAD))
        assert len(calls) == (2 if retried else 1), status


def test_stream_closed_before_any_text_is_retried():
    calls, notices = [], []

    def handler(request):
        calls.append(request)
        return sse(chunk("") if len(calls) == 1 else BODY)  # first: headers, role, then EOF

    stream = make(handler).stream(PAYLOAD, on_retry=lambda *a: notices.append(a))
    assert "".join(stream) == "Hello, wörld" and stream.reply.usage is not None
    assert len(calls) == 2 and notices[0][0] == "connection closed" and notices[0][2:] == (2, 3)


def test_stream_closed_before_any_text_every_time():
    calls = []
    client = make(lambda r: calls.append(r) or sse(chunk("")), max_retries=2)
    with pytest.raises(TransportError, match="no reply: connection closed before any text"):
        list(client.stream(PAYLOAD))
    assert len(calls) == 3


def test_timeout_before_any_text_names_the_setting():
    def handler(request):
        raise httpx.ReadTimeout("slow", request=request)

    with pytest.raises(TransportError, match=r"no response in 7 s \(ChatMagics.timeout\)"):
        list(make(handler, timeout=7.0, max_retries=0).stream(PAYLOAD))


def test_timeout_after_text_is_an_incomplete_reply():
    def body():
        yield chunk("partial")
        raise httpx.ReadTimeout("slow")

    with pytest.raises(StreamError) as info:
        list(make(lambda r: sse(body()), timeout=5.0).stream(PAYLOAD))
    assert str(info.value).startswith(
        "reply incomplete: no data for 5 s after 1 token (ChatMagics.timeout)"
    )
    assert info.value.partial.text == "partial"


def test_incomplete_counts_tokens_from_usage_when_the_server_sent_it():
    usage = {"prompt_tokens": 9, "completion_tokens": 812, "total_tokens": 821}
    body = chunk("a") + chunk("b", usage=usage)  # then the connection drops
    with pytest.raises(StreamError, match="connection closed after 812 tokens"):
        list(make(lambda r: sse(body)).stream(PAYLOAD))


def test_cr_only_line_endings_up_to_the_last_byte():
    body = BODY.replace(b"\n", b"\r")  # the final CR is only known to end a line at EOF
    stream = make(lambda r: sse(body)).stream(PAYLOAD)
    assert "".join(stream) == "Hello, wörld"
    assert stream.reply.usage is not None and stream.reply.usage.total_tokens == 12


def test_redaction_covers_message_hint_and_body():
    body = {"error": {"message": f"bad key {KEY}", "param": [KEY], "code": None}}
    with pytest.raises(AuthenticationError) as info:
        list(make(lambda r: httpx.Response(401, json=body)).stream(PAYLOAD))
    error = info.value
    assert KEY not in repr(error.body) + str(error) + repr(error) + str(error.hint)
    assert error.body["error"]["message"] == "bad key sk-...XYZW"


def test_close_cancels_a_retry_wait():
    import threading

    notices = []
    client = ChatClient(  # the real wait, not an injected sleep
        base_url="http://mock.test/v1",
        transport=httpx.MockTransport(
            lambda r: httpx.Response(429, headers={"retry-after-ms": "100000"}, json={})
        ),
    )

    def on_retry(*notice):  # a Stop button pressed while the cell waits 100 s
        notices.append(notice)
        threading.Thread(target=stream.close).start()

    stream = client.stream(PAYLOAD, on_retry=on_retry)
    with pytest.raises(RateLimitError):  # the session turns this into Interrupted
        list(stream)
    assert len(notices) == 1 and notices[0][1] == 100.0


# -- 404: the model or the path ------------------------------------------------------------


@pytest.mark.parametrize(
    ("response", "shown"),
    [
        (  # OpenAI, and the mock server's status=404
            httpx.Response(
                404,
                json={
                    "error": {
                        "message": "The model `gpt-4o-mini` does not exist",
                        "code": "model_not_found",
                    }
                },
            ),
            "404 model 'gpt-4o-mini' not found at http://mock.test/v1: The model",
        ),
        (  # Ollama, for a model it has not pulled
            httpx.Response(404, json={"error": {"message": 'model "llama9" not found'}}),
            "404 model 'gpt-4o-mini' not found",
        ),
        (  # Ollama without /v1 in base_url
            httpx.Response(404, text="404 page not found\n"),
            "404 not found at http://mock.test/v1/chat/completions: 404 page not found",
        ),
        (  # vLLM (FastAPI) without /v1
            httpx.Response(404, json={"detail": "Not Found"}),
            "404 not found at http://mock.test/v1/chat/completions: Not Found",
        ),
    ],
)
def test_404_blames_the_model_only_when_the_server_says_so(response, shown):
    with pytest.raises(NotFoundError) as info:
        list(make(lambda r: response).stream(PAYLOAD))
    message, hint = info.value.message, info.value.hint or ""
    assert message.startswith(shown)
    if "model '" in shown:
        assert "%chat models" in hint
    else:
        assert "model" not in message and "ChatMagics.base_url ends in /v1" in hint


# -- error pages ---------------------------------------------------------------------------

NGINX_502 = (
    "<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body>\r\n"
    "<center><h1>502 Bad Gateway</h1></center>\r\n<hr><center>nginx</center>\r\n"
    "</body>\r\n</html>\r\n"
)
UNTITLED = (
    "<!DOCTYPE html><html><head><style>body { color: red }</style></head><body>\n"
    "<h1>Upstream   timed out</h1>\n<p>Try again &amp; again.</p>\n"
    "<script>var x = 1;</script></body></html>"
)


@pytest.mark.parametrize(
    ("body", "headers", "shown"),
    [
        (NGINX_502, {"content-type": "text/html"}, "502 server error: 502 Bad Gateway"),
        (UNTITLED, {}, "502 server error: Upstream timed out Try again & again."),
        ("<html><body>" + "word " * 100 + "</body></html>", {}, "502 server error: word word"),
        ("", {}, "502 server error: Bad Gateway"),  # the reason phrase
    ],
)
def test_an_html_error_page_is_one_line(body, headers, shown):
    client = make(lambda r: httpx.Response(502, text=body, headers=headers), max_retries=0)
    with pytest.raises(NbChatError) as info:
        list(client.stream(PAYLOAD))
    message = info.value.message
    assert message.startswith(shown) and "\n" not in message and "<" not in message
    assert len(message) <= 230


# -- servers that stream differently ---------------------------------------------------------


def test_a_json_reply_to_a_streaming_request_is_shown_whole():
    completion = {
        "id": "x",
        "object": "chat.completion",
        "created": 1,
        "model": "gpt-4o-mini-2024-07-18",
        "system_fingerprint": "fp_json",
        "choices": [
            {
                "index": 0,
                "finish_reason": "stop",
                "message": {"role": "assistant", "content": "all"},
            }
        ],
        "usage": USAGE,
    }
    calls = []

    def handler(request):
        calls.append(request)
        return httpx.Response(200, json=completion)  # the server ignored "stream": true

    stream = make(handler).stream(PAYLOAD)
    assert list(stream) == ["all"]
    reply = stream.reply
    assert len(calls) == 1 and reply.text == "all" and reply.finish_reason == "stop"
    assert reply.model == "gpt-4o-mini-2024-07-18" and reply.system_fingerprint == "fp_json"
    assert reply.usage is not None and reply.usage.total_tokens == 12


def test_a_json_error_to_a_streaming_request_is_the_servers_words():
    body = {"error": {"message": "overloaded"}}
    client = make(lambda r: httpx.Response(200, json=body), max_retries=0)
    with pytest.raises(TransportError, match="no reply: server error before any text arrived: "):
        list(client.stream(PAYLOAD))


def test_the_model_comes_from_the_chunks_without_a_fingerprint():
    body = BODY.replace(b'"system_fingerprint": "fp_unit", ', b"")
    assert b"fp_unit" not in body
    stream = make(lambda r: sse(body)).stream(PAYLOAD)
    list(stream)
    assert stream.reply.model == "gpt-4o-mini-2024-07-18"
    assert stream.reply.system_fingerprint is None


def test_a_server_refusing_stream_options_is_asked_again_without_them():
    calls = []
    refusal = {"error": {"message": "Unrecognized request argument supplied: stream_options"}}

    def handler(request):
        calls.append(json.loads(request.content))
        if "stream_options" in calls[-1]:
            return httpx.Response(400, json=refusal)
        return sse(chunk("Hi") + chunk(finish="stop") + b"data: [DONE]\n\n")

    client, notices = make(handler), []
    stream = client.stream(PAYLOAD, on_retry=lambda *a: notices.append(a))
    assert "".join(stream) == "Hi" and stream.reply.usage is None  # "usage not reported"
    assert len(calls) == 2 and "stream_options" not in calls[1] and not notices
    assert "stream_options" not in stream.reply.request  # the request as sent
    assert "stream_options" in PAYLOAD  # the caller's payload is untouched
    list(client.stream(PAYLOAD))  # remembered: sent without them at once
    assert len(calls) == 3 and "stream_options" not in calls[2]


def test_other_400s_are_not_retried_without_stream_options():
    calls = []
    body = {"error": {"message": "messages: too long"}}
    client = make(lambda r: calls.append(r) or httpx.Response(400, json=body))
    with pytest.raises(BadRequestError, match="too long"):
        list(client.stream(PAYLOAD))
    assert len(calls) == 1 and client.stream_options


# -- connections over real HTTP ------------------------------------------------------------


def test_streamed_replies_keep_their_connection(server):
    client = ChatClient(base_url=server.url, api_key=Secret(KEY))
    try:
        for _ in range(3):
            stream = client.stream(PAYLOAD)
            assert "".join(stream) and stream.reply.usage is not None
        client.complete(PAYLOAD)
        assert len(server.requests) == 4
        assert server.connections == 1  # one TCP (and TLS) handshake for all of them
    finally:
        client.close()


def test_streamed_cells_keep_their_connection(ip, server):
    from .conftest import run

    for n in range(3):
        result, _ = run(ip, f"%%chat\ncell {n}")
        assert result.error_in_exec is None
    assert len(server.requests) == 3 and server.connections == 1


def test_a_body_held_open_after_done_costs_its_connection_not_the_reply(server):
    import threading

    client = ChatClient(base_url=server.url, timeout=600.0)  # a read would wait 10 minutes
    replies = []
    payload = {**PAYLOAD, "model": "gpt-4o-mini@linger=1"}
    thread = threading.Thread(target=lambda: replies.append("".join(client.stream(payload))))
    try:
        thread.start()
        thread.join(timeout=60)
        assert not thread.is_alive(), "waited for the end of a body that never ends"
        assert replies and replies[0].startswith("## Echo")
        "".join(client.stream(PAYLOAD))
        assert server.connections == 2  # the held-open one was given up
    finally:
        client.close()
