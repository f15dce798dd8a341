"""`nbchat.map(..., batch="api")`: hand the requests to the OpenAI Batch API.

For jobs too large for interactive concurrency: upload the requests as JSONL
(`POST /files`, purpose `batch`), create the batch (`POST /batches`), poll it
(`GET /batches/{id}`) with the same progress bar, then download the output and
error files (`GET /files/{id}/content`) and match lines to items by
`custom_id` (the files are in no particular order). Interrupting only stops
the polling: the batch keeps running on the server, and the same call run
again picks it up instead of submitting (and paying for) it twice, even after
a kernel restart when the ids are kept in the exchange record (`BatchIds`).

One input file holds at most `MAX_REQUESTS` lines and `MAX_BYTES` bytes, so a
larger job is split, in input order, into as few files as fit; the batches
are submitted together, polled together under one progress bar, and each is
remembered by the digest of its own file. No result is handed back until every
batch is final, so an interrupted job re-runs with the same items, the same
split and the same digests: each part is collected, none is paid for twice.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections import Counter
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from .client import ChatClient, parse_completion
from .errors import NbChatError, NotFoundError
from .failures import RETRY_STATUSES, retry_delay, server_text
from .progress import Tally

if TYPE_CHECKING:
    import httpx2 as httpx

    from .types import Reply

__all__ = [
    "MAX_BYTES",
    "MAX_REQUESTS",
    "BatchIds",
    "parse_output",
    "request_lines",
    "run_batch",
    "split",
]

ENDPOINT = "/v1/chat/completions"
#: OpenAI's limits for one batch input file (read at call time, so tests can lower them).
MAX_REQUESTS = 50_000
MAX_BYTES = 200_000_000  # "200 MB", read as the smaller (decimal) megabyte
#: Statuses after which a batch changes no more.
FINAL = frozenset({"completed", "failed", "expired", "cancelled"})
#: Statuses of a batch that will not deliver: the same call submits a new one.
GONE = frozenset({"failed", "expired", "cancelled", "cancelling"})
#: digest of (server, input JSONL) -> batch id, so a re-run resumes a submitted batch.
_submitted: dict[str, str] = {}


@runtime_checkable
class BatchIds(Protocol):
    """Where submitted batch ids outlive the kernel (`mapcache.RecordCache`)."""

    def batch_id(self, digest: str) -> str | None: ...
    def remember_batch(self, digest: str, batch_id: str) -> None: ...


Done = Callable[[int, "Reply | None", "str | None"], None]
Job = tuple[int, dict[str, Any]]


def _line(index: int, body: dict[str, Any]) -> bytes:
    """One BatchRequestInput, `custom_id` naming the item."""
    line = {"custom_id": f"nbchat-{index}", "method": "POST", "url": ENDPOINT, "body": body}
    return (json.dumps(line) + "\n").encode()


def request_lines(jobs: list[Job]) -> bytes:
    """The input file: one BatchRequestInput per line."""
    return b"".join(_line(i, body) for i, body in jobs)


def split(jobs: list[Job]) -> tuple[list[tuple[list[Job], bytes]], list[tuple[int, int]]]:
    """(part jobs, part file) within the limits, in input order; (index, bytes) of lines
    too big for any file.

    Filling each file before starting the next gives the fewest files a split in
    input order can have, and the same split for the same jobs on a re-run.
    """
    parts: list[tuple[list[Job], bytes]] = []
    too_big: list[tuple[int, int]] = []
    chunk: list[Job] = []
    lines: list[bytes] = []
    size = 0
    for index, body in jobs:
        line = _line(index, body)
        if len(line) > MAX_BYTES:
            too_big.append((index, len(line)))
            continue
        if chunk and (len(chunk) >= MAX_REQUESTS or size + len(line) > MAX_BYTES):
            parts.append((chunk, b"".join(lines)))
            chunk, lines, size = [], [], 0
        chunk.append((index, body))
        lines.append(line)
        size += len(line)
    if chunk:
        parts.append((chunk, b"".join(lines)))
    return parts, too_big


def _call(client: ChatClient, method: str, path: str, **kwargs: Any) -> httpx.Response:
    """One API call with the client's headers, retries and error mapping."""
    import httpx2 as httpx

    attempts = client.max_retries + 1
    for attempt in range(1, attempts + 1):
        failed: httpx.HTTPError | None = None
        try:
            response = client.http.request(method, f"{client.base_url}{path}", **kwargs)
        except httpx.HTTPError as exc:
            failed = exc
        if failed is not None:
            if attempt < attempts:
                time.sleep(retry_delay(None, attempt))
                continue
            # Raised outside the except block: the httpx error (whose request holds
            # the key) must not become the error's __context__.
            raise client._transport_error(failed)
        if response.status_code < 400:
            return response
        if response.status_code in RETRY_STATUSES and attempt < attempts:
            time.sleep(retry_delay(response, attempt))
            continue
        raise client._status_error(response, None)
    raise AssertionError("unreachable")  # pragma: no cover


def _submit(client: ChatClient, data: bytes) -> dict[str, Any]:
    try:
        upload = _call(
            client,
            "POST",
            "/files",
            files={"file": ("nbchat-batch.jsonl", data, "application/jsonl")},
            data={"purpose": "batch"},
        ).json()
    except NotFoundError:
        raise NbChatError(
            f"{client.base_url} has no Batch API (POST /files answered 404)",
            hint="leave out batch='api' to send the requests concurrently instead",
        ) from None
    create = {
        "input_file_id": upload["id"],
        "endpoint": ENDPOINT,
        "completion_window": "24h",
        "metadata": {"created_by": "nbchat"},
    }
    batch: dict[str, Any] = _call(client, "POST", "/batches", json=create).json()
    return batch


def parse_output(
    text: str, bodies: dict[str, dict[str, Any]]
) -> dict[str, tuple[Reply | None, str | None]]:
    """custom_id -> (reply, error) from an output or error file (BatchRequestOutput lines)."""
    found: dict[str, tuple[Reply | None, str | None]] = {}
    for line in text.splitlines():
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
            custom_id = obj["custom_id"]
            response = obj.get("response") or {}
            error = obj.get("error")
            status = response.get("status_code")
            if error:
                found[custom_id] = (None, f"{error.get('code')}: {error.get('message')}")
            elif status is not None and 200 <= status < 300:
                body = bodies.get(custom_id, {})
                found[custom_id] = (parse_completion(response["body"], body, None), None)
            else:
                found[custom_id] = (None, f"{status} {server_text(response.get('body'))}")
        except (ValueError, KeyError, TypeError, AttributeError, IndexError) as exc:
            raise NbChatError(
                f"unreadable line in a batch result file ({exc}): {line[:80]!r}"
            ) from None
    return found


def _resume_or_submit(client: ChatClient, data: bytes, batches: BatchIds | None) -> dict[str, Any]:
    """The batch submitted before for this very file (unless it will not deliver), or a new one."""
    digest = hashlib.sha256(client.base_url.encode() + b"\n" + data).hexdigest()
    known = _submitted.get(digest) or (batches.batch_id(digest) if batches else None)
    if known:
        try:
            batch: dict[str, Any] = _call(client, "GET", f"/batches/{known}").json()
        except NotFoundError:  # deleted, or another account's: submit afresh
            pass
        else:
            if batch.get("status") not in GONE:
                return batch
    batch = _submit(client, data)
    _submitted[digest] = batch["id"]
    if batches is not None:
        batches.remember_batch(digest, batch["id"])
    return batch


def _failure(batch: dict[str, Any]) -> str:
    errors = (batch.get("errors") or {}).get("data") or [{}]
    first = errors[0]
    where = f" (line {first['line']})" if first.get("line") is not None else ""
    return f"batch {batch['id']} failed: {first.get('message', 'no reason given')}{where}"


def _note(running: list[dict[str, Any]]) -> str:
    if len(running) == 1:
        return f"batch {running[0]['id']} {running[0].get('status')}"
    statuses = Counter(str(b.get("status")) for b in running)
    return f"{len(running)} batches: " + ", ".join(f"{n} {s}" for s, n in statuses.items())


def _results(
    client: ChatClient, jobs: list[Job], batch: dict[str, Any]
) -> list[tuple[int, Reply | None, str | None]]:
    """(index, reply, error) for each job of one final batch."""
    if batch["status"] == "failed":
        return [(index, None, _failure(batch)) for index, _ in jobs]
    bodies = {f"nbchat-{i}": body for i, body in jobs}
    found: dict[str, tuple[Reply | None, str | None]] = {}
    for key in ("output_file_id", "error_file_id"):
        if batch.get(key):
            text = _call(client, "GET", f"/files/{batch[key]}/content").text
            found.update(parse_output(text, bodies))
    missing = f"no result in batch {batch['id']} ({batch['status']})"
    return [(index, *found.get(f"nbchat-{index}", (None, missing))) for index, _ in jobs]


def run_batch(
    client: ChatClient,
    jobs: list[Job],
    on_done: Done,
    *,
    tally: Tally,
    show: Callable[[], None],
    poll_interval: float = 10.0,
    batches: BatchIds | None = None,
) -> None:
    """Submit `jobs` as batches within the input-file limits (or resume them), wait, report
    each item.

    A batch submitted for the same input file before (in this process, or in
    `batches`) is collected rather than submitted again, unless it failed or was
    cancelled. A batch the server failed fails its items; when all of them failed
    that is one error.
    """
    parts, too_big = split(jobs)
    for index, size in too_big:
        on_done(
            index,
            None,
            f"the request is {size:,} bytes as a batch line, over the Batch API's "
            f"{MAX_BYTES:,}-byte limit for one input file",
        )
    running = [_resume_or_submit(client, data, batches) for _, data in parts]
    base_done, base_failed = tally.done, tally.failed
    while running:
        counts = [b.get("request_counts") or {} for b in running]
        failed = sum(c.get("failed", 0) for c in counts)
        tally.done = base_done + sum(c.get("completed", 0) for c in counts) + failed
        tally.failed = base_failed + failed
        tally.note = _note(running)
        show()
        pending = [k for k, b in enumerate(running) if b.get("status") not in FINAL]
        if not pending:
            break
        time.sleep(poll_interval)
        for k in pending:
            running[k] = _call(client, "GET", f"/batches/{running[k]['id']}").json()
    if running and all(b["status"] == "failed" for b in running):
        first = _failure(running[0])
        raise NbChatError(
            first if len(running) == 1 else f"all {len(running)} batches failed; {first}"
        )
    # Every file is read before any result is handed on (and cached): see the module doc.
    results = [
        r for (part, _), b in zip(parts, running, strict=True) for r in _results(client, part, b)
    ]
    tally.done, tally.failed, tally.note = base_done, base_failed, ""
    for index, reply, error in results:
        on_done(index, reply, error)
