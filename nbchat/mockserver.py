"""An OpenAI-compatible chat server for tests, notebooks and demos (stdlib only).

Replies are deterministic so tests can compute the expected text; per-request
options (model suffix ``@k=v,...`` or header ``X-Mock-Options``) let one server
show many behaviours (long streams, slow tokens, usage quirks).
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import json
import re
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from . import mockbatch, mockwriting
from .mockfaults import FailureCounter, error_body, wait_until_gone

__all__ = [
    "MockServer",
    "OptionError",
    "Options",
    "Received",
    "main",
    "mock_reply",
    "mock_tool_calls",
    "parse_options",
    "prompt_tokens",
    "reply_pieces",
    "tool_answer",
]

MODELS = [
    ("gpt-4o-mini", "openai"),
    ("gpt-4o", "openai"),
    ("gpt-4.1-mini", "openai"),
    ("mock-echo", "nbchat-mock"),
]
#: `verbatim` repeats the last user message exactly, as a model repeats what a prompt
#: injection planted: tests send hostile Markdown and HTML through it.
REPLY_KINDS = ("echo", "markdown", "paragraph", "json", "verbatim")
_TOKEN = re.compile(r"\S+\s*|\s+")
_ids = itertools.count(1)


@dataclass(frozen=True)
class Received:
    """One request as the server saw it, so tests can assert what a client sent."""

    method: str
    path: str
    headers: dict[str, str]
    body: Any


class RequestLog(Sequence[Received]):
    """A list of received requests, safe to read while handler threads append."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._items: list[Received] = []

    def append(self, item: Received) -> None:
        with self._lock:
            self._items.append(item)

    def clear(self) -> None:
        with self._lock:
            self._items.clear()

    def __getitem__(self, i: Any) -> Any:
        with self._lock:
            return self._items[i]

    def __len__(self) -> int:
        with self._lock:
            return len(self._items)

    def __iter__(self) -> Iterator[Received]:
        with self._lock:
            return iter(list(self._items))


@dataclass(frozen=True)
class Options:
    """Behaviour of one request; add fault modes here and in ``_PARSERS``."""

    chunks: int | None = None
    delay: float = 0.01
    ttft: float = 0.05
    usage: bool = True  # False: never send usage, even if asked
    choices_on_usage: bool = False  # usage chunk also carries a choice (some servers do)
    reply: str = "echo"  # echo | markdown | paragraph | json | verbatim
    # Faults (see mockfaults): an HTTP error, or a stream that breaks after K chunks.
    status: int | None = None  # answer with this HTTP error status
    retry_after: str | None = None  # Retry-After header of the error (seconds or a date)
    retry_after_ms: int | None = None  # retry-after-ms header of the error
    fail_times: int | None = None  # faults hit the first N requests with these options only
    cut: int | None = None  # close the connection after K content chunks
    malformed: int | None = None  # send a line that is not JSON after K content chunks
    stream_error: int | None = None  # send an {"error": ...} event after K content chunks
    stall: bool = False  # send the headers, then nothing until the client goes away
    echo_key: bool = False  # error messages repeat the Authorization header (a leak to redact)
    linger: bool = False  # after [DONE], hold the body open until the client goes away
    # Quirks of real local servers (llama-cpp-python's, see README "Local servers"):
    done_early: int | None = None  # after K content chunks: [DONE] without a finish_reason
    stall_after: int | None = None  # after K content chunks: no more data until the client goes
    ping: float | None = None  # while stalled: a `: ping` comment every S seconds
    empty: bool = False  # answer 200 with an empty body
    # Tools: with `tools=call` a request offering tools is answered with calls (streamed in
    # fragments), `parallel` at once, for `rounds` rounds; then the text quotes the results.
    tools: str = "off"  # off | call
    parallel: int = 1  # calls per round (tool i % number of tools offered)
    rounds: int = 1  # rounds of calls before the answer
    tool_name: str | None = None  # call this name instead (an unknown tool)
    tool_args: str = "schema"  # schema | invalid (not JSON) | wrong (JSON that does not fit)
    # How models write (see mockwriting): thinking before the answer, and token certainty.
    reasoning: str | None = None  # content (reasoning_content) | field (reasoning) | think
    sure: float = 0.8  # the mean probability of the tokens when logprobs are asked for

    @property
    def faulty(self) -> bool:
        return (
            self.status is not None
            or self.stall
            or (self.cut, self.malformed, self.stream_error) != (None, None, None)
            or (self.done_early, self.stall_after) != (None, None)
            or self.empty
        )

    def break_point(self) -> tuple[str | None, int | None]:
        """Which stream fault strikes, and after how many content chunks."""
        for name in ("cut", "malformed", "stream_error", "done_early", "stall_after"):
            at = getattr(self, name)
            if at is not None:
                return name, at
        return None, None

    def healthy(self) -> Options:
        """These options with every fault switched off (after `fail_times` ran out)."""
        return dataclasses.replace(
            self,
            status=None,
            cut=None,
            malformed=None,
            stream_error=None,
            stall=False,
            done_early=None,
            stall_after=None,
            empty=False,
        )


class OptionError(ValueError):
    """A bad mock option; reported to the client as a 400."""


def _checked(conv: Callable[[str], Any], ok: Callable[[Any], bool]) -> Callable[[str], Any]:
    """A value parser that also range-checks, so bad values become a 400, not a crash."""

    def parse(v: str) -> Any:
        x = conv(v)
        if not ok(x):
            raise ValueError(v)
        return x

    return parse


_FLAGS = {"0": False, "1": True, "false": False, "true": True}
_PARSERS: dict[str, Callable[[str], Any]] = {
    "chunks": _checked(int, lambda x: x >= 1),
    "delay": _checked(float, lambda x: x >= 0),  # also rejects nan
    "ttft": _checked(float, lambda x: x >= 0),
    "usage": lambda v: _FLAGS[v.lower()],
    "choices_on_usage": lambda v: _FLAGS[v.lower()],
    "reply": _checked(str, lambda x: x in REPLY_KINDS),
    "status": _checked(int, lambda x: 400 <= x <= 599),
    "retry_after": _checked(str, bool),
    "retry_after_ms": _checked(int, lambda x: x >= 0),
    "fail_times": _checked(int, lambda x: x >= 1),
    "cut": _checked(int, lambda x: x >= 0),
    "malformed": _checked(int, lambda x: x >= 0),
    "stream_error": _checked(int, lambda x: x >= 0),
    "stall": lambda v: _FLAGS[v.lower()],
    "echo_key": lambda v: _FLAGS[v.lower()],
    "linger": lambda v: _FLAGS[v.lower()],
    "done_early": _checked(int, lambda x: x >= 0),
    "stall_after": _checked(int, lambda x: x >= 0),
    "ping": _checked(float, lambda x: x > 0),
    "empty": lambda v: _FLAGS[v.lower()],
    "tools": _checked(str, lambda x: x in ("off", "call")),
    "parallel": _checked(int, lambda x: 1 <= x <= 16),
    "rounds": _checked(int, lambda x: 0 <= x <= 1000),
    "tool_name": _checked(str, bool),
    "tool_args": _checked(str, lambda x: x in ("schema", "invalid", "wrong")),
    "reasoning": _checked(str, lambda x: x in ("content", "field", "think")),
    "sure": _checked(float, lambda x: 0 < x < 1),
}


def parse_options(spec: str, base: Options) -> Options:
    """Apply ``k=v,k=v`` onto ``base``; unknown names or bad values raise OptionError."""
    changes: dict[str, Any] = {}
    for item in filter(None, (s.strip() for s in spec.split(","))):
        name, _, value = item.partition("=")
        name = name.strip()
        if name not in _PARSERS:
            raise OptionError(f"Unknown mock option '{name}'.")
        try:
            changes[name] = _PARSERS[name](value.strip())
        except (ValueError, KeyError):
            raise OptionError(f"Invalid value for mock option '{name}': {value!r}.") from None
    return dataclasses.replace(base, **changes)


def _text(content: Any) -> str:
    """Text of a message content: a string, or the text parts of a part list."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "\n".join(
            str(p.get("text", ""))
            for p in content
            if isinstance(p, dict) and p.get("type") == "text"
        )
    return ""


def mock_reply(messages: list[dict[str, Any]], model: str) -> str:
    """The deterministic Markdown echo of the last user message."""
    users = [m for m in messages if isinstance(m, dict) and m.get("role") == "user"]
    msg = _text(users[-1].get("content")) if users else ""
    quote = "\n".join(f"> {line}".rstrip() for line in msg.splitlines() or [""])
    return (
        f"## Echo\n\nYou said:\n\n{quote}\n\n- turn {len(users)} of the conversation\n"
        f"- model `{model}`\n\n```python\nprint({msg[:40]!r})\n```\n"
    )


def prompt_tokens(messages: list[dict[str, Any]]) -> int:
    """Deterministic prompt size: words of all text content plus 4 per message."""
    return sum(len(_text(m.get("content")).split()) + 4 for m in messages if isinstance(m, dict))


_WORDS = [
    "the",
    "mock",
    "server",
    "streams",
    "deterministic",
    "text",
    "so",
    "that",
    "tests",
    "can",
    "check",
    "every",
    "token",
    "while",
    "notebooks",
    "still",
    "render",
    "something",
    "that",
    "looks",
    "like",
    "a",
    "real",
    "answer",
]


def _paragraph(k: int, words: int = 48) -> str:
    return " ".join(_WORDS[(k + i) % len(_WORDS)] for i in range(words)).capitalize() + "."


def _section(k: int) -> str:
    return (
        f"## Section {k}\n\n{_paragraph(k)}\n\n- point {k}.1: {_paragraph(k, 6)}\n"
        f"- point {k}.2: **bold** and `code`\n\n```python\ndef section_{k}(x: int) -> int:\n"
        f"    return x * {k}\n```\n\n| n | square |\n|---|---|\n| {k} | {k * k} |\n\n"
    )


def reply_pieces(
    messages: list[dict[str, Any]], model: str, reply: str = "echo", chunks: int | None = None
) -> list[str]:
    """The reply split into content chunks (exactly ``chunks`` of them when given)."""
    if reply == "paragraph":
        n = max(chunks or 200, 1)
        text = " ".join(_WORDS[i % len(_WORDS)] for i in range(n)).capitalize() + ".\n"
    elif reply == "json":  # {"echo": str, "turn": int, "model": str}, for --json/--schema
        users = [m for m in messages if isinstance(m, dict) and m.get("role") == "user"]
        echo = _text(users[-1].get("content")) if users else ""
        text = json.dumps({"echo": echo, "turn": len(users), "model": model}, indent=2)
    elif reply == "verbatim":
        users = [m for m in messages if isinstance(m, dict) and m.get("role") == "user"]
        text = _text(users[-1].get("content")) if users else ""
    elif reply == "markdown":
        text, k = "# Mock answer\n\n", 1
        while k <= 3 or len(_TOKEN.findall(text)) < (chunks or 0):
            text, k = text + _section(k), k + 1
    else:
        text, k = mock_reply(messages, model), 1
        while len(_TOKEN.findall(text)) < (chunks or 0):
            text, k = text + f"\n{_paragraph(k)}\n", k + 1
    tokens = _TOKEN.findall(text)
    if chunks is None or chunks == len(tokens):
        return tokens
    # Too many tokens: merge neighbours evenly, so the Markdown stays whole.
    q, r = divmod(len(tokens), chunks)
    bounds = [i * q + min(i, r) for i in range(chunks + 1)]
    return ["".join(tokens[a:b]) for a, b in itertools.pairwise(bounds)]


def _since_user(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The messages after the last user message (a turn's tool rounds so far)."""
    last = max((i for i, m in enumerate(messages) if m.get("role") == "user"), default=-1)
    return [m for m in messages[last + 1 :] if isinstance(m, dict)]


def _argument(name: str, schema: Any, i: int) -> Any:
    """A value fitting `schema`, derived from the parameter's name and the call's number."""
    if not isinstance(schema, dict):
        return None
    if schema.get("enum"):
        return schema["enum"][i % len(schema["enum"])]
    kind = schema.get("type")
    if kind is None and schema.get("anyOf"):
        return _argument(name, schema["anyOf"][0], i)
    return {
        "string": f"{name}-{i + 1}",
        "integer": i + 1,
        "number": i + 1.5,
        "boolean": True,
        "array": [],
        "object": {},
        "null": None,
    }.get(str(kind), f"{name}-{i + 1}")


def mock_tool_calls(body: dict[str, Any], opts: Options) -> list[dict[str, Any]] | None:
    """The calls to answer with (None: answer with text): the first tool(s), deterministic."""
    tools = [t for t in body.get("tools") or () if isinstance(t, dict) and t.get("function")]
    if opts.tools != "call" or not tools:
        return None
    done = [m for m in _since_user(body["messages"]) if m.get("tool_calls")]
    if len(done) >= opts.rounds:
        return None
    calls = []
    for i in range(opts.parallel):
        function = tools[i % len(tools)]["function"]
        params = function.get("parameters") or {}
        props = params.get("properties") or {}
        names = params.get("required") or list(props)
        if opts.tool_args == "invalid":
            arguments = '{"' + (names[0] if names else "x") + '": '
        elif opts.tool_args == "wrong":
            arguments = json.dumps({"bogus": i + 1})
        else:
            args = {n: _argument(n, props.get(n), i + len(done)) for n in names}
            arguments = json.dumps(args)
        calls.append(
            {
                "id": f"call_mock_{len(done) + 1}_{i + 1}",
                "type": "function",
                "function": {"name": opts.tool_name or function["name"], "arguments": arguments},
            }
        )
    return calls


def tool_answer(messages: list[dict[str, Any]]) -> str | None:
    """The text answering a turn's tool results: each result quoted (None without any)."""
    results = [m for m in _since_user(messages) if m.get("role") == "tool"]
    if not results:
        return None
    names = {
        c.get("id"): (c.get("function") or {}).get("name")
        for m in _since_user(messages)
        for c in m.get("tool_calls") or ()
    }
    lines = [f"Tool results ({len(results)}):", ""]
    for m in results:
        name = names.get(m.get("tool_call_id"), "?")
        lines.append(f"- `{name}` ({m.get('tool_call_id')}): {_text(m.get('content'))}")
    return "\n".join(lines) + "\n"


def _error(
    message: str,
    param: str | None = None,
    code: str | None = None,
    kind: str = "invalid_request_error",
) -> dict[str, Any]:
    return {"error": {"message": message, "type": kind, "param": param, "code": code}}


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    mock: MockServer

    def process_request(self, request: Any, client_address: Any) -> None:
        self.mock.connections += 1  # one accepted connection (called from one thread)
        super().process_request(request, client_address)

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client hanging up (a stopped reply, a killed kernel) is normal here."""
        import sys

        if not isinstance(sys.exc_info()[1], (ConnectionError, TimeoutError)):
            super().handle_error(request, client_address)


class _Handler(BaseHTTPRequestHandler):
    """Routes /v1 requests; HTTP/1.1 with chunked streams, like real servers."""

    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # as real servers do: small writes go out at once

    def log_message(self, format: str, *args: Any) -> None:
        """Silent: test output should not fill with access logs."""

    def _handle(self) -> None:
        assert isinstance(self.server, _Server)
        mock = self.server.mock
        raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        try:
            body: Any = json.loads(raw) if raw else None
        except ValueError:
            body = None
        path = self.path.split("?", 1)[0].rstrip("/")
        headers = {k.lower(): v for k, v in self.headers.items()}
        mock.requests.append(Received(self.command, path, headers, body))
        if mock.api_key is not None and headers.get("authorization") != f"Bearer {mock.api_key}":
            return self._json(401, error_body(401, echo=_echo(body, headers)))
        # Batch API (/v1/files, /v1/batches) and rate-limit mode live in nbchat.mockbatch.
        if mockbatch.route(self, mock, path, raw, headers):
            return
        if (self.command, path) == ("GET", "/v1/models"):
            data = [
                {"id": m, "object": "model", "created": 1700000000, "owned_by": o}
                for m, o in MODELS
            ]
            return self._json(200, {"object": "list", "data": data})
        if (self.command, path) == ("POST", "/v1/chat/completions"):
            return self._chat(mock, body, headers)
        self._json(404, _error(f"Invalid URL ({self.command} {path})"))

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _handle

    def _json(self, status: int, obj: Any, headers: dict[str, str] | None = None) -> None:
        data = json.dumps(obj).encode()
        self.send_response(status)
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _chat(self, mock: MockServer, body: Any, headers: dict[str, str]) -> None:
        if not isinstance(body, dict):
            return self._json(400, _error("We could not parse the JSON body of your request."))
        for field, kind in (("model", str), ("messages", list)):
            if not isinstance(body.get(field), kind):
                msg = f"Missing or invalid required parameter: '{field}'."
                return self._json(400, _error(msg, field, "missing_required_parameter"))
        model, _, spec = str(body["model"]).partition("@")
        limit = body.get("max_completion_tokens", body.get("max_tokens"))
        try:
            opts = parse_options(spec, mock.defaults)
            opts = parse_options(headers.get("x-mock-options", ""), opts)
            if limit is not None and (not isinstance(limit, int) or limit < 1):
                raise OptionError("Invalid 'max_completion_tokens': expected a positive integer.")
        except OptionError as e:
            return self._json(400, _error(str(e), "model"))
        fault_key = f"{body['model']}|{headers.get('x-mock-options', '')}"
        if opts.faulty and not mock.failures.should_fail(fault_key, opts.fail_times):
            opts = opts.healthy()
        echo = _echo(body, headers)
        if opts.status is not None:
            retry = {"retry-after": opts.retry_after, "retry-after-ms": opts.retry_after_ms}
            extra = {k: str(v) for k, v in retry.items() if v is not None}
            return self._json(opts.status, error_body(opts.status, model=model, echo=echo), extra)
        messages = body["messages"]
        calls = mock_tool_calls(body, opts)
        answer = tool_answer(messages) if opts.tools == "call" else None
        if answer is not None and calls is None:
            pieces = _TOKEN.findall(answer)
        else:
            pieces = reply_pieces(messages, model, opts.reply, opts.chunks)
        finish = "length" if limit is not None and limit < len(pieces) else "stop"
        pieces = pieces[:limit]
        n_prompt = prompt_tokens(messages)
        writing = mockwriting.Writing.of(body, messages, pieces, opts.reasoning, opts.sure)
        usage = {
            "prompt_tokens": n_prompt,
            "completion_tokens": len(pieces),
            "total_tokens": n_prompt + len(pieces),
            "prompt_tokens_details": {"cached_tokens": 0},
            "completion_tokens_details": {"reasoning_tokens": 0},
        }
        writing.bill(usage)
        head = {
            "id": f"chatcmpl-mock-{next(_ids)}",
            "created": int(time.time()),
            "model": model,
            "system_fingerprint": "fp_mock",
        }
        if opts.empty:  # 200 and nothing: llama-cpp-python streaming to a text-only model
            if body.get("stream"):
                self._start_event_stream()
                self.wfile.write(b"0\r\n\r\n")
                return
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        if opts.stall:  # streaming or not, the answer never comes
            if body.get("stream"):
                self._start_event_stream()
                if opts.ping:
                    return self._keep_alive(mock, opts.ping)
            wait_until_gone(self.connection, mock.stopping)
            self.close_connection = True
            return
        if calls is not None:
            return self._calls(head, calls, body, opts, n_prompt)
        if not body.get("stream"):
            time.sleep(opts.ttft + opts.delay * len(pieces))
            return self._json(
                200,
                {
                    **head,
                    "object": "chat.completion",
                    "choices": writing.messages(finish),
                    **({"usage": usage} if opts.usage else {}),
                },
            )
        stream_opts = body.get("stream_options")
        want_usage = (
            opts.usage and isinstance(stream_opts, dict) and bool(stream_opts.get("include_usage"))
        )
        self._start_event_stream()
        self._stream(head, pieces, finish, usage if want_usage else None, opts, echo, writing)

    def _calls(
        self,
        head: dict[str, Any],
        calls: list[dict[str, Any]],
        body: dict[str, Any],
        opts: Options,
        n_prompt: int,
    ) -> None:
        """Answer with function calls: one message, or deltas whose arguments come in
        4-character fragments, the calls' fragments interleaved (parallel calls)."""
        fragments = [
            [
                c["function"]["arguments"][k : k + 4]
                for k in range(0, len(c["function"]["arguments"]), 4)
            ]
            for c in calls
        ]
        n = sum(len(f) for f in fragments) + len(calls)
        usage = {"prompt_tokens": n_prompt, "completion_tokens": n, "total_tokens": n_prompt + n}
        time.sleep(opts.ttft)
        if not body.get("stream"):
            message = {"role": "assistant", "content": None, "tool_calls": calls, "refusal": None}
            choice = {
                "index": 0,
                "logprobs": None,
                "finish_reason": "tool_calls",
                "message": message,
            }
            obj = {**head, "object": "chat.completion", "choices": [choice]}
            return self._json(200, {**obj, **({"usage": usage} if opts.usage else {})})
        stream_opts = body.get("stream_options")
        want_usage = (
            opts.usage and isinstance(stream_opts, dict) and stream_opts.get("include_usage")
        )

        def event(delta: dict[str, Any], reason: str | None = None) -> bytes:
            choice = {"index": 0, "delta": delta, "finish_reason": reason, "logprobs": None}
            obj = {**head, "object": "chat.completion.chunk", "choices": [choice]}
            data = f"data: {json.dumps(obj)}\n\n".encode()
            return b"%x\r\n%s\r\n" % (len(data), data)

        out = [event({"role": "assistant", "content": None})]
        for i, call in enumerate(calls):
            first = {"index": i, "id": call["id"], "type": "function"}
            first["function"] = {"name": call["function"]["name"], "arguments": ""}
            out.append(event({"tool_calls": [first]}))
        for k in range(max((len(f) for f in fragments), default=0)):
            for i, parts in enumerate(fragments):
                if k < len(parts):
                    piece = {"index": i, "function": {"arguments": parts[k]}}
                    out.append(event({"tool_calls": [piece]}))
        out.append(event({}, "tool_calls"))
        if want_usage:
            obj = {**head, "object": "chat.completion.chunk", "choices": [], "usage": usage}
            data = f"data: {json.dumps(obj)}\n\n".encode()
            out.append(b"%x\r\n%s\r\n" % (len(data), data))
        done = b"data: [DONE]\n\n"
        out.append(b"%x\r\n%s\r\n" % (len(done), done))
        self._start_event_stream()
        try:
            for chunk in out:
                self.wfile.write(chunk)
                if opts.delay > 0:
                    self.wfile.flush()
                    time.sleep(opts.delay / 4)
            self.wfile.write(b"0\r\n\r\n")
            self.wfile.flush()
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True

    def _start_event_stream(self) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream; charset=utf-8")
        self.send_header("Cache-Control", "no-cache")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()

    def _stream(
        self,
        head: dict[str, Any],
        pieces: list[str],
        finish: str,
        usage: dict[str, Any] | None,
        opts: Options,
        echo: str | None = None,
        writing: mockwriting.Writing | None = None,
    ) -> None:
        """Send SSE events; per-event flushes when slow, batched writes when delay is 0.

        A `cut`, `malformed` or `stream_error` fault strikes after that many content chunks.
        """

        def chunk(delta: dict[str, Any], reason: str | None) -> dict[str, Any]:
            choice = {"index": 0, "delta": delta, "finish_reason": reason, "logprobs": None}
            extra = {"usage": None} if usage is not None else {}
            return {**head, "object": "chat.completion.chunk", "choices": [choice], **extra}

        def event(obj: Any) -> str:
            return f"data: {json.dumps(obj)}\n\n"

        # Content chunks share everything but the text: format a template once.
        mark = "\x00MOCK\x00"
        pre, post = event(chunk({"content": mark}, None)).split(json.dumps(mark))
        buf: list[str] = []
        steps: Sequence[str] = [pre + json.dumps(piece) + post for piece in pieces]
        ends = [event(chunk({}, finish))]
        if writing is not None and writing.rich:  # thinking, logprobs or n choices
            steps = [event({**chunk({}, None), "choices": c}) for c in writing.steps()]
            ends = [event({**chunk({}, None), "choices": c}) for c in writing.ends(finish)]

        def flush(end: bool = False) -> None:
            """Send what is buffered; `end` adds the last chunk, in the same write."""
            data = "".join(buf).encode()
            buf.clear()
            out = b"%x\r\n%s\r\n" % (len(data), data) if data else b""  # b"0..." would end
            if out or end:
                self.wfile.write(out + b"0\r\n\r\n" if end else out)
                self.wfile.flush()

        def send(text: str, force: bool = False) -> None:
            buf.append(text)
            if force or opts.delay > 0 or len(buf) >= 512:
                flush()

        fault, at = opts.break_point()
        at = len(steps) if at is None else min(at, len(steps))
        try:
            time.sleep(opts.ttft)
            send(event(chunk({"role": "assistant", "content": ""}, None)))
            for i, step in enumerate(steps[:at]):
                if i and opts.delay > 0:
                    time.sleep(opts.delay)
                send(step)
            if fault == "cut":
                flush()
                self.close_connection = True  # no final chunk: the body is incomplete
                return
            if fault == "stream_error":
                send(event(error_body(500, echo=echo)))
                flush(end=True)
                return
            if fault == "malformed":
                send('data: {"id": "chatcmpl-broken", "choices": [{"delta": {"content": "\n\n')
            if fault == "done_early":  # no finish_reason, no usage: a stream cut short
                send("data: [DONE]\n\n")
                flush(end=True)
                return
            if fault == "stall_after":
                flush()
                assert isinstance(self.server, _Server)
                self._keep_alive(self.server.mock, opts.ping)
                return
            for step in steps[at:]:
                send(step)
            for end in ends:
                send(end)
            if usage is not None:
                last = chunk({}, finish)
                last.update(usage=usage, choices=last["choices"] if opts.choices_on_usage else [])
                send(event(last))
            send("data: [DONE]\n\n")
            flush(end=not opts.linger)
            if opts.linger:  # a server that never ends the body
                assert isinstance(self.server, _Server)
                wait_until_gone(self.connection, self.server.mock.stopping)
                self.close_connection = True
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True  # the client went away mid-stream

    def _keep_alive(self, mock: MockServer, every: float | None) -> None:
        """Send no data until the client goes away; a `: ping` comment every `every` s
        (at most 200 of them: then the connection closes, so a client that counts
        comments as progress fails instead of waiting forever)."""
        import select
        import socket

        self.close_connection = True
        if every is None:
            return wait_until_gone(self.connection, mock.stopping)
        for _ in range(200):
            if mock.stopping.is_set():
                return
            try:
                readable, _, _ = select.select([self.connection], [], [], every)
                if readable and not self.connection.recv(1, socket.MSG_PEEK):
                    return  # the client closed its end
                ping = b": ping\n\n"
                self.wfile.write(b"%x\r\n%s\r\n" % (len(ping), ping))
                self.wfile.flush()
            except OSError:
                return


def _echo(body: Any, headers: dict[str, str]) -> str | None:
    """The Authorization header to echo in error messages, if options ask (``echo_key=1``)."""
    model = body.get("model") if isinstance(body, dict) else None
    try:
        opts = parse_options(str(model or "").partition("@")[2], Options())
        opts = parse_options(headers.get("x-mock-options", ""), opts)
    except OptionError:
        return None
    return headers.get("authorization", "(no Authorization header)") if opts.echo_key else None


class MockServer:
    """An OpenAI-compatible server on loopback, served from a daemon thread."""

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        api_key: str | None = None,
        chunks: int | None = None,
        delay: float = 0.01,
        ttft: float = 0.05,
    ) -> None:
        self.api_key = api_key
        self.defaults = Options(chunks=chunks, delay=delay, ttft=ttft)
        self.requests = RequestLog()
        self.connections = 0  # TCP connections accepted (kept-alive ones count once)
        self.failures = FailureCounter()
        self.stopping = threading.Event()  # ends stalled streams when the server stops
        self._httpd = _Server((host, port), _Handler)  # bind now: .url is known at once
        self._httpd.mock = self
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        """Base URL for an OpenAI client, e.g. ``http://127.0.0.1:PORT/v1``."""
        host, port = self._httpd.server_address[:2]
        return f"http://{host!s}:{port}/v1"

    def start(self) -> MockServer:
        """Serve in a daemon thread; returns self for chaining."""
        if self._thread is None:
            self._thread = threading.Thread(
                target=self._httpd.serve_forever, name="nbchat-mockserver", daemon=True
            )
            self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and close the listening socket."""
        self.stopping.set()
        if self._thread is not None:
            self._httpd.shutdown()
            self._thread.join()
            self._thread = None
        self._httpd.server_close()

    def clear(self) -> None:
        """Forget the recorded requests, connections and how often each fault already struck."""
        self.requests.clear()
        self.connections = 0
        self.failures.clear()

    def __enter__(self) -> MockServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def main(argv: list[str] | None = None) -> int:
    """Run in the foreground and print the URL, so a parent process can read it."""
    p = argparse.ArgumentParser(prog="python -m nbchat.mockserver", description=__doc__)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=0)
    p.add_argument("--api-key", default=None)
    p.add_argument("--chunks", type=int, default=None)
    p.add_argument("--delay", type=float, default=0.01)
    p.add_argument("--ttft", type=float, default=0.05)
    a = p.parse_args(argv)
    server = MockServer(
        a.host, a.port, api_key=a.api_key, chunks=a.chunks, delay=a.delay, ttft=a.ttft
    ).start()
    print(f"nbchat mock server on {server.url}", flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
