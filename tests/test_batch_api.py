"""`nbchat.map(..., batch="api")` end to end against the mock server's Batch API."""

from __future__ import annotations

import json
from collections.abc import Iterator

import httpx2 as httpx
import pytest

import nbchat
import nbchat.batch_api
from nbchat.batch_api import run_batch
from nbchat.client import ChatClient
from nbchat.errors import NbChatError
from nbchat.mockbatch import MockExtras
from nbchat.mockserver import MockServer
from nbchat.pricing import estimate_cost
from nbchat.progress import Tally
from nbchat.results import BatchInterrupted

from .conftest import TEST_KEY, run
from .openapi import validator
from .test_batch import expected, fresh_extras, interrupt_when, sent_prompts
from .test_compare import magics_of


@pytest.fixture
def mock(server: MockServer) -> Iterator[MockExtras]:
    yield from fresh_extras(server)


def api_calls(server) -> list[tuple[str, str]]:
    return [(r.method, r.path) for r in server.requests if r.path != "/v1/chat/completions"]


def test_batch_api_end_to_end_with_failed_lines(ip, server, mock):
    mock.fail = {"nbchat-2": 400}  # the server refuses this line's request
    mock.expire = {"nbchat-4"}  # and never gets to this one
    items = [f"item {i}" for i in range(6)]
    results = nbchat.map("Say {}", items, batch="api", poll_interval=0.01)

    ok = [0, 1, 3, 5]
    assert [r.index for r in results if r.ok] == ok
    assert [results[i].text for i in ok] == [expected(f"Say item {i}") for i in ok]
    assert results[2].error == "400 Failed by the mock (fail list)."
    assert results[4].error.startswith("batch_expired: This request could not be executed")
    assert results[2].text is None and results[4].reply is None
    for i in ok:  # the Batch API costs half the list price
        reply = results[i].reply
        assert reply.cost == pytest.approx(estimate_cost("gpt-4o-mini", reply.usage) / 2)
        assert reply.usage.completion_tokens > 0

    calls = api_calls(server)
    assert calls[:2] == [("POST", "/v1/files"), ("POST", "/v1/batches")]
    create = next(r.body for r in server.requests if r.path == "/v1/batches")
    assert not list(validator("CreateBatchRequest").iter_errors(create))
    assert create["endpoint"] == "/v1/chat/completions" and create["completion_window"] == "24h"
    polls = [c for c in calls if c[0] == "GET" and c[1].startswith("/v1/batches/")]
    assert len(polls) >= 4  # validating -> in progress (x3) -> finalizing -> completed
    downloads = [c for c in calls if c[1].endswith("/content")]
    assert len(downloads) == 2  # the output file and the error file
    upload = next(r for r in server.requests if r.path == "/v1/files")
    assert upload.headers["content-type"].startswith("multipart/form-data")
    assert upload.headers["authorization"] == f"Bearer {TEST_KEY}"

    # what was uploaded: one BatchRequestInput per item, custom_id naming the item
    file_id = create["input_file_id"]
    headers = {"Authorization": f"Bearer {TEST_KEY}"}
    content = httpx.get(f"{server.url}/files/{file_id}/content", headers=headers).text
    lines = [json.loads(line) for line in content.splitlines()]
    assert [line["custom_id"] for line in lines] == [f"nbchat-{i}" for i in range(6)]
    assert all(line["method"] == "POST" and line["url"] == "/v1/chat/completions" for line in lines)
    assert [line["body"]["messages"][-1]["content"] for line in lines] == [
        f"Say {item}" for item in items
    ]
    # the mock answers in the official shapes
    batch_id = polls[-1][1].rsplit("/", 1)[1]
    batch = httpx.get(f"{server.url}/batches/{batch_id}", headers=headers).json()
    assert not list(validator("Batch").iter_errors(batch))
    assert batch["request_counts"] == {"total": 6, "completed": 4, "failed": 2}
    meta = httpx.get(f"{server.url}/files/{file_id}", headers=headers).json()
    assert not list(validator("OpenAIFile").iter_errors(meta))
    assert meta["purpose"] == "batch" and meta["bytes"] == len(content.encode())


def test_a_line_that_fails_on_the_server_lands_in_the_error_file(ip, server, mock):
    results = nbchat.map("Hi {}", ["a", "b"], model="gpt-4o-mini@bogus=1", batch="api",
                         poll_interval=0.01)  # fmt: skip
    assert [r.error for r in results] == ["400 Unknown mock option 'bogus'."] * 2
    downloads = [c for c in api_calls(server) if c[1].endswith("/content")]
    assert len(downloads) == 1  # no output file at all: only the error file


def test_a_batch_the_server_refuses_is_one_clear_error(ip, server, mock):
    magics = magics_of(ip)
    client = magics.session.client(magics.settings())
    body = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}
    refused = r"failed: The custom_id 'nbchat-0' is used more than once. \(line 2\)"
    with pytest.raises(NbChatError, match=refused):
        run_batch(client, [(0, body), (0, body)], lambda *a: None, tally=Tally(2),
                  show=lambda: None, poll_interval=0.01)  # fmt: skip


def test_a_server_without_a_batch_api_says_so():
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(404, json={"error": {"message": "Not Found"}})

    client = ChatClient(base_url="http://local.test/v1", transport=httpx.MockTransport(handler))
    with pytest.raises(NbChatError, match=r"http://local.test/v1 has no Batch API"):
        run_batch(client, [(0, {"model": "m", "messages": []})], lambda *a: None,
                  tally=Tally(1), show=lambda: None)  # fmt: skip


def test_interrupted_polling_resumes_the_same_batch(ip, server, mock):
    items = ["a", "b", "c"]
    polled = lambda: any(r.path.startswith("/v1/batches/") for r in server.requests)  # noqa: E731
    fired = interrupt_when(polled)
    with pytest.raises(BatchInterrupted) as info:
        nbchat.map("Hi {}", items, batch="api", poll_interval=0.5)
    assert fired.is_set()
    assert "keeps running on the server" in str(info.value)
    assert all(r.error == "interrupted" for r in info.value.results)

    server.clear()
    results = nbchat.map("Hi {}", items, batch="api", poll_interval=0.01)
    assert results.texts == [expected(f"Hi {i}") for i in items]
    calls = api_calls(server)
    assert ("POST", "/v1/files") not in calls and ("POST", "/v1/batches") not in calls
    assert sent_prompts(server) == [f"Hi {i}" for i in items]  # each line ran once


def test_percent_chat_map_with_batch_api(ip, server, mock):
    ip.user_ns["names"] = ["ann", "bob"]
    result, captured = run(ip, "%chat map names Hi {} --batch api --poll-interval 0.01 -o out")
    assert result.error_in_exec is None
    assert ip.user_ns["out"].texts == [expected("Hi ann"), expected("Hi bob")]
    assert "gpt-4o-mini (Batch API): 2/2 done" in captured.stdout


# -- jobs over one input file's limits: split into as few batches as fit ---------------------


def uploaded_files(server) -> list[list[dict]]:
    """The lines of each input file a batch was created from, in creation order."""
    headers = {"Authorization": f"Bearer {TEST_KEY}"}
    files = []
    for r in server.requests:
        if (r.method, r.path) == ("POST", "/v1/batches"):
            url = f"{server.url}/files/{r.body['input_file_id']}/content"
            files.append([json.loads(x) for x in httpx.get(url, headers=headers).text.splitlines()])
    return files


def test_a_job_over_the_line_limit_runs_as_several_batches_in_order(ip, server, mock, monkeypatch):
    monkeypatch.setattr(nbchat.batch_api, "MAX_REQUESTS", 10)
    mock.max_batch_lines = 10  # the mock refuses a bigger file, as OpenAI does
    mock.fail = {"nbchat-3": 400, "nbchat-17": 400}
    mock.expire = {"nbchat-22"}
    items = [f"item {i}" for i in range(25)]
    ip.user_ns.update(items=items, nbchat=nbchat)
    result, captured = run(ip, "r = nbchat.map('Say {}', items, batch='api', poll_interval=0.01)")
    assert result.error_in_exec is None
    results = ip.user_ns["r"]

    files = uploaded_files(server)
    assert [len(f) for f in files] == [10, 10, 5]  # 3 batches, each file filled before the next
    ids = [line["custom_id"] for f in files for line in f]
    assert ids == [f"nbchat-{i}" for i in range(25)]
    assert [r.index for r in results] == list(range(25))
    failed = {3, 17, 22}
    assert [r.index for r in results if not r.ok] == sorted(failed)
    assert [r.text for r in results if r.ok] == [
        expected(f"Say item {i}") for i in range(25) if i not in failed
    ]
    assert results[17].error == "400 Failed by the mock (fail list)."
    assert results[22].error.startswith("batch_expired: ")
    ran = sorted(sent_prompts(server), key=lambda p: int(p.split()[-1]))  # batches interleave
    assert ran == [f"Say item {i}" for i in range(25) if i not in failed]  # each once
    assert "25/25 done · 3 failed" in captured.stdout  # one bar over all the batches


def test_the_progress_of_several_batches_is_summed(ip, server, mock, monkeypatch):
    monkeypatch.setattr(nbchat.batch_api, "MAX_REQUESTS", 4)
    mock.fail = {"nbchat-1": 400, "nbchat-9": 400}
    magics = magics_of(ip)
    client = magics.session.client(magics.settings())
    jobs = [(i, {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": f"{i}"}]})
            for i in range(10)]  # fmt: skip
    tally, seen, done = Tally(10), [], []
    show = lambda: seen.append((tally.done, tally.failed, tally.note))  # noqa: E731
    run_batch(client, jobs, lambda *a: done.append(a), tally=tally, show=show, poll_interval=0)
    assert seen[0] == (0, 0, "3 batches: 3 validating")
    assert seen[-1] == (10, 2, "3 batches: 3 completed")
    assert [d for d, _, _ in seen] == sorted(d for d, _, _ in seen)  # never goes back
    assert any(0 < d < 10 for d, _, _ in seen)
    assert [d[0] for d in done] == list(range(10))
    assert [d[0] for d in done if d[2]] == [1, 9]


def test_a_job_over_the_byte_limit_is_split_and_a_line_too_big_alone_fails_alone(
    ip, server, mock, monkeypatch
):
    items = [("x" * (40 * (i % 4))) + f" {i}" for i in range(12)]

    def body(item: str) -> dict:
        return {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": f"Say {item}"}]}

    sizes = [len(nbchat.batch_api._line(i, body(item))) for i, item in enumerate(items)]
    limit = max(sizes) * 3
    items[5] = "y" * limit  # this request alone is over one file's limit
    monkeypatch.setattr(nbchat.batch_api, "MAX_BYTES", limit)
    mock.max_batch_bytes = limit
    results = nbchat.map("Say {}", items, batch="api", poll_interval=0.01)

    assert (
        results[5].error.startswith("the request is ")
        and " bytes as a batch line" in results[5].error
    )
    assert f"over the Batch API's {limit:,}-byte limit for one input file" in results[5].error
    assert [r.index for r in results if r.ok] == [i for i in range(12) if i != 5]
    assert [r.text for r in results if r.ok] == [
        expected(f"Say {item}") for i, item in enumerate(items) if i != 5
    ]
    files = uploaded_files(server)
    raw = [sum(len(nbchat.batch_api._line(int(x["custom_id"][7:]), x["body"])) for x in f)
           for f in files]  # fmt: skip
    assert all(size <= limit for size in raw) and len(files) >= 4
    for nxt, size in zip(files[1:], raw, strict=False):  # no file could take one more
        first = nxt[0]
        assert (
            size + len(nbchat.batch_api._line(int(first["custom_id"][7:]), first["body"])) > limit
        )
    assert [x["custom_id"] for f in files for x in f] == [
        f"nbchat-{i}" for i in range(12) if i != 5
    ]


def test_the_mock_refuses_an_input_file_over_its_limits(server, mock):
    mock.max_batch_lines, mock.max_batch_bytes = 2, 100
    headers = {"Authorization": f"Bearer {TEST_KEY}"}

    def upload(data: bytes) -> httpx.Response:
        files = {"file": ("in.jsonl", data, "application/jsonl")}
        return httpx.post(f"{server.url}/files", headers=headers, files=files,
                          data={"purpose": "batch"})  # fmt: skip

    lines = upload(b'{"a": 1}\n{"a": 2}\n{"a": 3}\n')
    assert lines.status_code == 400
    assert lines.json()["error"]["message"] == (
        "The batch input file has 3 requests; a batch may have at most 2."
    )
    assert lines.json()["error"]["type"] == "invalid_request_error"
    big = upload(b"x" * 101)
    assert big.status_code == 400 and big.json()["error"]["message"] == "File is too large."
    assert upload(b'{"a": 1}\n{"a": 2}\n').status_code == 200


def test_a_part_the_server_fails_fails_its_items_only(ip, server, mock, monkeypatch):
    monkeypatch.setattr(nbchat.batch_api, "MAX_REQUESTS", 2)
    magics = magics_of(ip)
    client = magics.session.client(magics.settings())
    body = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}
    done: list[tuple] = []
    jobs = [(0, body), (1, body), (2, body), (2, body)]  # the second file repeats a custom_id
    run_batch(client, jobs, lambda *a: done.append(a), tally=Tally(4), show=lambda: None,
              poll_interval=0)  # fmt: skip
    assert [(i, reply is not None) for i, reply, _ in done] == [(0, True), (1, True), (2, False),
                                                                (2, False)]  # fmt: skip
    assert done[2][2].endswith("failed: The custom_id 'nbchat-2' is used more than once. (line 2)")
