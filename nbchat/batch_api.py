"""`nbchat.map(..., batch="api")`: hand the requests to the OpenAI Batch API.

For jobs too large for interactive concurrency: upload the requests as JSONL
(`POST /files`, purpose `batch`), create the batch (`POST /batches`), poll it
(`GET /batches/{id}`) with the same progress bar, then download the output and
error files (`GET /files/{id}/content`) and match lines to items by
`custom_id` (the files are in no particular order). Interrupting only stops
the polling: the batch keeps running on the server, and the same call run
again picks it up instead of submitting (and paying for) it twice, even after
a kernel restart when the ids are kept in the exchange record (`BatchIds`).
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from .client import ChatClient, parse_completion
from .errors import NbChatError, NotFoundError
from .failures import RETRY_STATUSES, retry_delay, server_text
from .progress import Tally

if TYPE_CHECKING:
    import httpx

    from .types import Reply

__all__ = ["BatchIds", "parse_output", "request_lines", "run_batch"]

ENDPOINT = "/v1/chat/completions"
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


def request_lines(jobs: list[tuple[int, dict[str, Any]]]) -> bytes:
    """The input file: one BatchRequestInput per line, `custom_id` naming the item."""
    lines = (
        json.dumps({"custom_id": f"nbchat-{i}", "method": "POST", "url": ENDPOINT, "body": body})
        for i, body in jobs
    )
    return ("\n".join(lines) + "\n").encode()


def _call(client: ChatClient, method: str, path: str, **kwargs: Any) -> httpx.Response:
    """One API call with the client's headers, retries and error mapping."""
    import httpx

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


def run_batch(
    client: ChatClient,
    jobs: list[tuple[int, dict[str, Any]]],
    on_done: Done,
    *,
    tally: Tally,
    show: Callable[[], None],
    poll_interval: float = 10.0,
    batches: BatchIds | None = None,
) -> None:
    """Submit `jobs` as one batch (or resume the same one), wait, report each item.

    A batch submitted for the same input before (in this process, or in `batches`)
    is collected rather than submitted again, unless it failed or was cancelled.
    """
    data = request_lines(jobs)
    digest = hashlib.sha256(client.base_url.encode() + b"\n" + data).hexdigest()
    batch: dict[str, Any] | None = None
    known = _submitted.get(digest) or (batches.batch_id(digest) if batches else None)
    if known:
        try:
            batch = _call(client, "GET", f"/batches/{known}").json()
        except NotFoundError:  # deleted, or another account's: submit afresh
            batch = None
        if batch is not None and batch.get("status") in GONE:
            batch = None
    if batch is None:
        batch = _submit(client, data)
        _submitted[digest] = batch["id"]
        if batches is not None:
            batches.remember_batch(digest, batch["id"])
    base_done, base_failed = tally.done, tally.failed
    while True:
        counts = batch.get("request_counts") or {}
        tally.done = base_done + counts.get("completed", 0) + counts.get("failed", 0)
        tally.failed = base_failed + counts.get("failed", 0)
        tally.note = f"batch {batch['id']} {batch.get('status')}"
        show()
        if batch.get("status") in FINAL:
            break
        time.sleep(poll_interval)
        batch = _call(client, "GET", f"/batches/{batch['id']}").json()
    if batch["status"] == "failed":
        errors = (batch.get("errors") or {}).get("data") or [{}]
        first = errors[0]
        where = f" (line {first['line']})" if first.get("line") is not None else ""
        raise NbChatError(
            f"batch {batch['id']} failed: {first.get('message', 'no reason given')}{where}"
        )
    bodies = {f"nbchat-{i}": body for i, body in jobs}
    found: dict[str, tuple[Reply | None, str | None]] = {}
    for key in ("output_file_id", "error_file_id"):
        if batch.get(key):
            text = _call(client, "GET", f"/files/{batch[key]}/content").text
            found.update(parse_output(text, bodies))
    tally.done, tally.failed, tally.note = base_done, base_failed, ""
    for index, _ in jobs:
        missing = f"no result in batch {batch['id']} ({batch['status']})"
        reply, error = found.get(f"nbchat-{index}", (None, missing))
        on_done(index, reply, error)
