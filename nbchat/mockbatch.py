"""The mock server's Batch API (`/v1/files`, `/v1/batches`) and its rate-limit mode.

Kept out of mockserver.py, which only routes here (`route`). State is in
memory, per server. A batch advances one step per `GET /v1/batches/{id}`
(validating -> in_progress, a third of the lines per poll -> finalizing ->
completed), so tests see real progress without waiting on a clock. Each line
is run by calling the server's own `/v1/chat/completions`, so every mock
option works per line: a line whose model is `gpt-4o-mini@bogus=1` fails
with the 400 the server gives that request, and lands in the error file.

Like OpenAI, a batch input file holds at most `max_batch_lines` requests and
`max_batch_bytes` bytes (`extras(server)` may lower both); an upload over
either is refused with a 400 in the OpenAI error shape.

Lines listed in `extras(server).fail` (custom_id -> status) get that error
response; lines in `extras(server).expire` get a `batch_expired` line error.

Rate-limit mode (`extras(server).rate_limit = N`): every Nth chat request
gets a 429 with `retry-after-ms`; chat requests in flight are counted
(`in_flight`, `max_in_flight`) whenever `rate_limit` or `track` is set.
"""

from __future__ import annotations

import itertools
import json
import math
import re
import threading
import time
import urllib.error
import urllib.request
import weakref
from dataclasses import dataclass, field
from email.parser import BytesParser
from email.policy import HTTP
from typing import Any

__all__ = ["MockExtras", "extras", "route"]

ENDPOINT = "/v1/chat/completions"
PURPOSES = ("assistants", "batch", "fine-tune", "vision", "user_data", "evals")
#: OpenAI's limits for one batch input file.
MAX_BATCH_LINES = 50_000
MAX_BATCH_BYTES = 200_000_000
_ids = itertools.count(1)


@dataclass
class _Batch:
    obj: dict[str, Any]
    lines: list[dict[str, Any]]
    problems: list[dict[str, Any]]
    auth: str | None
    outputs: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    cursor: int = 0


@dataclass
class MockExtras:
    """One server's files, batches and rate-limit settings and counters."""

    rate_limit: int = 0  # every Nth chat request answers 429 (0: never)
    retry_after_ms: int = 30
    track: bool = False  # count chat requests in flight even without rate limiting
    in_flight: int = 0
    max_in_flight: int = 0
    chat_requests: int = 0
    limited: int = 0
    fail: dict[str, int] = field(default_factory=dict)  # batch custom_id -> HTTP status
    expire: set[str] = field(default_factory=set)  # batch custom_ids left undone (line error)
    max_batch_lines: int = MAX_BATCH_LINES  # requests in one batch input file
    max_batch_bytes: int = MAX_BATCH_BYTES  # bytes of one batch input file
    files: dict[str, tuple[dict[str, Any], bytes]] = field(default_factory=dict)
    batches: dict[str, _Batch] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def reset(self) -> None:
        self.rate_limit = self.in_flight = self.max_in_flight = 0
        self.chat_requests = self.limited = 0
        self.track = False
        self.fail.clear()
        self.expire.clear()
        self.max_batch_lines, self.max_batch_bytes = MAX_BATCH_LINES, MAX_BATCH_BYTES


_extras: weakref.WeakKeyDictionary[Any, MockExtras] = weakref.WeakKeyDictionary()


def extras(mock: Any) -> MockExtras:
    """The extras of a MockServer (created on first use)."""
    if mock not in _extras:
        _extras[mock] = MockExtras()
    return _extras[mock]


def _error(message: str, code: str | None = None, param: str | None = None) -> dict[str, Any]:
    return {
        "error": {"message": message, "type": "invalid_request_error", "param": param, "code": code}
    }


def _send(handler: Any, status: int, data: bytes, ctype: str, headers: dict[str, str]) -> None:
    handler.send_response(status)
    handler.send_header("Content-Type", ctype)
    handler.send_header("Content-Length", str(len(data)))
    for name, value in headers.items():
        handler.send_header(name, value)
    handler.end_headers()
    handler.wfile.write(data)


def _json(handler: Any, status: int, obj: Any, headers: dict[str, str] | None = None) -> bool:
    _send(handler, status, json.dumps(obj).encode(), "application/json", headers or {})
    return True


def route(handler: Any, mock: Any, path: str, raw: bytes, headers: dict[str, str]) -> bool:
    """Answer the request if it is ours; False lets mockserver route it as usual."""
    ex = extras(mock)
    method = handler.command
    if (method, path) == ("POST", ENDPOINT) and (ex.rate_limit or ex.track):
        return _chat(handler, mock, ex, raw, headers)
    if (method, path) == ("POST", "/v1/files"):
        return _upload(handler, ex, raw, headers)
    if (method, path) == ("POST", "/v1/batches"):
        return _create(handler, ex, raw, headers)
    match = re.fullmatch(r"/v1/files/([^/]+)(/content)?", path)
    if match and method == "GET":
        stored = ex.files.get(match[1])
        if stored is None:
            return _json(handler, 404, _error(f"No such File object: {match[1]}", param="id"))
        if match[2]:
            _send(handler, 200, stored[1], "application/octet-stream", {})
            return True
        return _json(handler, 200, stored[0])
    match = re.fullmatch(r"/v1/batches/([^/]+)", path)
    if match and method == "GET":
        batch = ex.batches.get(match[1])
        if batch is None:
            return _json(handler, 404, _error(f"No batch found with id '{match[1]}'."))
        _advance(mock, ex, batch)
        return _json(handler, 200, _shown(batch.obj))
    return False


def _chat(handler: Any, mock: Any, ex: MockExtras, raw: bytes, headers: dict[str, str]) -> bool:
    with ex.lock:
        ex.chat_requests += 1
        refuse = ex.rate_limit > 0 and ex.chat_requests % ex.rate_limit == 0
        if refuse:
            ex.limited += 1
        else:
            ex.in_flight += 1
            ex.max_in_flight = max(ex.max_in_flight, ex.in_flight)
    if refuse:
        limited = _error("Rate limit reached for requests (mock).", code="rate_limit_exceeded")
        return _json(handler, 429, limited, {"retry-after-ms": str(ex.retry_after_ms)})
    try:
        try:
            body: Any = json.loads(raw) if raw else None
        except ValueError:
            body = None
        handler._chat(mock, body, headers)
    finally:
        with ex.lock:
            ex.in_flight -= 1
    return True


def _upload(handler: Any, ex: MockExtras, raw: bytes, headers: dict[str, str]) -> bool:
    ctype = headers.get("content-type", "")
    if not ctype.startswith("multipart/form-data"):
        return _json(handler, 400, _error("Expected a multipart/form-data upload."))
    form = BytesParser(policy=HTTP).parsebytes(
        b"Content-Type: " + ctype.encode() + b"\r\n\r\n" + raw
    )
    fields: dict[str, tuple[str | None, bytes]] = {}
    for part in form.iter_parts():  # type: ignore[attr-defined]
        name = part.get_param("name", header="content-disposition")
        payload = part.get_payload(decode=True)
        fields[str(name)] = (part.get_filename(), payload if isinstance(payload, bytes) else b"")
    if "file" not in fields:
        return _json(handler, 400, _error("Missing required parameter: 'file'.", param="file"))
    purpose = fields.get("purpose", (None, b""))[1].decode()
    if purpose not in PURPOSES:
        return _json(handler, 400, _error(f"Invalid purpose: {purpose!r}.", param="purpose"))
    filename, data = fields["file"]
    if purpose == "batch":
        if len(data) > ex.max_batch_bytes:  # the message OpenAI gives
            return _json(handler, 400, _error("File is too large.", param="file"))
        requests = sum(1 for line in data.splitlines() if line.strip())
        if requests > ex.max_batch_lines:
            too_many = (
                f"The batch input file has {requests} requests; "
                f"a batch may have at most {ex.max_batch_lines}."
            )
            return _json(handler, 400, _error(too_many, param="file"))
    return _json(handler, 200, _store(ex, filename or "upload", purpose, data))


def _store(ex: MockExtras, filename: str, purpose: str, data: bytes) -> dict[str, Any]:
    meta: dict[str, Any] = {
        "id": f"file-mock{next(_ids)}",
        "object": "file",
        "bytes": len(data),
        "created_at": int(time.time()),
        "filename": filename,
        "purpose": purpose,
        "status": "processed",
    }
    ex.files[meta["id"]] = (meta, data)
    return meta


def _create(handler: Any, ex: MockExtras, raw: bytes, headers: dict[str, str]) -> bool:
    try:
        req = json.loads(raw)
    except ValueError:
        return _json(handler, 400, _error("We could not parse the JSON body of your request."))
    stored = ex.files.get(str(req.get("input_file_id"))) if isinstance(req, dict) else None
    if stored is None or stored[0]["purpose"] != "batch":
        return _json(handler, 400, _error("Invalid 'input_file_id'.", param="input_file_id"))
    if req.get("endpoint") != ENDPOINT:
        return _json(
            handler,
            400,
            _error("The mock runs only /v1/chat/completions batches.", param="endpoint"),
        )
    if req.get("completion_window") != "24h":
        return _json(
            handler, 400, _error("completion_window must be '24h'.", param="completion_window")
        )
    lines, problems = _parse_lines(stored[1])
    now = int(time.time())
    obj: dict[str, Any] = {
        "id": f"batch_mock{next(_ids)}", "object": "batch", "endpoint": ENDPOINT,
        "errors": None, "input_file_id": req["input_file_id"], "completion_window": "24h",
        "status": "validating", "output_file_id": None, "error_file_id": None,
        "created_at": now, "in_progress_at": None, "expires_at": now + 86400,
        "finalizing_at": None, "completed_at": None, "failed_at": None, "expired_at": None,
        "cancelling_at": None, "cancelled_at": None,
        "request_counts": {"total": len(lines), "completed": 0, "failed": 0},
        "metadata": req.get("metadata"),
    }  # fmt: skip
    ex.batches[obj["id"]] = _Batch(obj, lines, problems, headers.get("authorization"))
    return _json(handler, 200, _shown(obj))


def _shown(obj: dict[str, Any]) -> dict[str, Any]:
    """The Batch as the OpenAPI schema allows it: fields not set yet are left out, not null."""
    return {k: v for k, v in obj.items() if v is not None}


def _parse_lines(data: bytes) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    lines: list[dict[str, Any]] = []
    problems: list[dict[str, Any]] = []
    seen: set[str] = set()
    for number, text in enumerate(data.decode("utf-8", "replace").splitlines(), 1):
        if not text.strip():
            continue
        try:
            line = json.loads(text)
            if not isinstance(line, dict):
                raise ValueError
        except ValueError:
            problems.append(
                {
                    "code": "invalid_json_line",
                    "line": number,
                    "param": None,
                    "message": "This line is not parseable as valid JSON.",
                }
            )
            continue
        custom_id = line.get("custom_id")
        if not isinstance(custom_id, str) or not isinstance(line.get("body"), dict):
            message, code = "Each line needs a string custom_id and an object body.", "missing"
        elif custom_id in seen:
            message, code = f"The custom_id {custom_id!r} is used more than once.", "duplicate"
        elif line.get("url") != ENDPOINT or line.get("method") != "POST":
            message, code = f"Each line must be a POST to {ENDPOINT}.", "mismatched_endpoint"
        else:
            seen.add(custom_id)
            lines.append(line)
            continue
        problems.append({"code": code, "line": number, "param": None, "message": message})
    return lines, problems


def _advance(mock: Any, ex: MockExtras, batch: _Batch) -> None:
    """One step of the batch's life per poll."""
    obj, now = batch.obj, int(time.time())
    status = obj["status"]
    if status == "validating":
        if batch.problems or not batch.lines:
            problems = batch.problems or [
                {
                    "code": "empty_file",
                    "line": None,
                    "param": None,
                    "message": "The input file has no requests.",
                }
            ]
            obj.update(status="failed", failed_at=now, errors={"object": "list", "data": problems})
        else:
            obj.update(status="in_progress", in_progress_at=now)
    elif status == "in_progress":
        step = max(1, math.ceil(len(batch.lines) / 3))
        for line in batch.lines[batch.cursor : batch.cursor + step]:
            _run_line(mock, ex, batch, line)
        batch.cursor = min(batch.cursor + step, len(batch.lines))
        if batch.cursor >= len(batch.lines):
            obj.update(status="finalizing", finalizing_at=now)
    elif status == "finalizing":
        for key, rows in (("output_file_id", batch.outputs), ("error_file_id", batch.errors)):
            if rows:
                data = ("\n".join(rows) + "\n").encode()
                obj[key] = _store(ex, f"{obj['id']}_{key[:-8]}.jsonl", "batch_output", data)["id"]
        obj.update(status="completed", completed_at=now)


def _run_line(mock: Any, ex: MockExtras, batch: _Batch, line: dict[str, Any]) -> None:
    """Send one line to the server's own chat endpoint; file the answer as output or error."""
    number, custom_id = next(_ids), line["custom_id"]
    if custom_id in ex.expire:  # not run in time: a line error, no response
        message = "This request could not be executed before the completion window expired."
        error = {"code": "batch_expired", "message": message}
        out = {"id": f"batch_req_mock{number}", "custom_id": custom_id, "response": None}
        batch.errors.append(json.dumps({**out, "error": error}))
        batch.obj["request_counts"]["failed"] += 1
        return
    headers = {"Content-Type": "application/json"}
    if batch.auth:
        headers["Authorization"] = batch.auth
    body = {**line["body"], "stream": False}
    request = urllib.request.Request(
        f"{mock.url}/chat/completions", json.dumps(body).encode(), headers, method="POST"
    )
    status, answer = ex.fail.get(custom_id, 0), _error("Failed by the mock (fail list).")
    if not status:
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                status, answer = response.status, json.loads(response.read())
        except urllib.error.HTTPError as error:
            status, answer = error.code, json.loads(error.read() or b"{}")
    out = {
        "id": f"batch_req_mock{number}",
        "custom_id": custom_id,
        "response": {"status_code": status, "request_id": f"req_mock{number}", "body": answer},
        "error": None,
    }
    ok = 200 <= status < 300
    (batch.outputs if ok else batch.errors).append(json.dumps(out))
    batch.obj["request_counts"]["completed" if ok else "failed"] += 1
