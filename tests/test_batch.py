"""`nbchat.map` and `%chat map`: many independent requests, in order, rate-limit aware."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator

import httpx2 as httpx
import pandas as pd
import pytest

import nbchat
from nbchat.batch import DEFAULT_CACHE
from nbchat.client import ChatClient
from nbchat.errors import OptionError
from nbchat.mockbatch import MockExtras, extras
from nbchat.mockserver import MockServer, mock_reply
from nbchat.pool import Limiter, run_requests
from nbchat.results import BatchInterrupted, BatchResults

from .conftest import ENV, TEST_KEY, run


def expected(prompt: str, model: str = "gpt-4o-mini") -> str:
    return mock_reply([{"role": "user", "content": prompt}], model)


def sent_prompts(server: MockServer) -> list[str]:
    return [
        r.body["messages"][-1]["content"]
        for r in server.requests
        if r.path == "/v1/chat/completions"
    ]


def fresh_extras(server: MockServer) -> Iterator[MockExtras]:
    """The server's rate-limit mode and counters, reset around a test; an empty cache."""
    DEFAULT_CACHE.clear()
    state = extras(server)
    state.reset()
    yield state
    state.reset()
    DEFAULT_CACHE.clear()


@pytest.fixture
def mock(server: MockServer) -> Iterator[MockExtras]:
    yield from fresh_extras(server)


def interrupt_when(ready: Callable[[], bool]) -> threading.Event:
    """SIGINT this process (as a kernel interrupt does) once `ready()`; the event says it did."""
    fired = threading.Event()

    def watch() -> None:
        deadline = time.monotonic() + 10
        while not ready() and time.monotonic() < deadline:
            time.sleep(0.002)
        fired.set()
        os.kill(os.getpid(), signal.SIGINT)

    threading.Thread(target=watch, daemon=True).start()
    return fired


def test_200_items_at_concurrency_8_survive_429s_in_order(ip, mock):
    mock.rate_limit = 20  # every 20th request answers 429 with retry-after-ms
    items = [f"item {i}" for i in range(200)]
    started = time.perf_counter()
    results = nbchat.map("Say {}", items, model="gpt-4o-mini@ttft=0.02", concurrency=8)
    print(f"200 items: {time.perf_counter() - started:.2f} s, {mock.limited} x 429")
    assert isinstance(results, BatchResults) and len(results) == 200
    assert all(r.ok for r in results)
    assert results.texts == [expected(f"Say item {i}") for i in range(200)]
    assert [r.label for r in results] == list(range(200))
    assert mock.limited >= 5  # the server did push back ...
    assert mock.chat_requests == 200 + mock.limited  # ... each 429 cost one retry, no more
    assert 2 <= mock.max_in_flight <= 8  # concurrent, and never more than 8 at once
    usage = [r.reply.usage for r in results]
    assert results.total_tokens == sum(u.total_tokens for u in usage)
    assert results.cost == pytest.approx(sum(r.reply.cost for r in results))


def test_interrupt_keeps_finished_results_and_a_rerun_sends_only_the_rest(ip, server, mock):
    mock.track = True
    items = [f"item {i}" for i in range(120)]

    def call() -> BatchResults:
        return nbchat.map("Say {}", items, model="gpt-4o-mini@ttft=0.03", concurrency=4)

    fired = interrupt_when(lambda: mock.chat_requests >= 40)
    with pytest.raises(BatchInterrupted) as info:
        call()
    assert fired.is_set()
    partial = info.value.results
    finished = [r.index for r in partial if r.ok]
    unfinished = [r.index for r in partial if not r.ok]
    assert 0 < len(finished) < 120
    assert all(partial[i].error == "interrupted" for i in unfinished)
    assert all(partial[i].text == expected(f"Say item {i}") for i in finished)
    assert "run the same call again" in str(info.value)

    server.clear()
    again = call()
    assert sorted(sent_prompts(server)) == sorted(f"Say item {i}" for i in unfinished)
    assert again.texts == [expected(f"Say item {i}") for i in range(120)]
    assert [r.cached for r in again] == [i in finished for i in range(120)]


def test_failed_items_are_reported_in_place_and_not_cached(ip, server, mock):
    results = nbchat.map("Hi {}", ["a", "b"], model="x@bogus=1")
    assert [r.error for r in results] == ["400 Unknown mock option 'bogus'."] * 2
    assert results.texts == [None, None] and results.errors == {
        0: results[0].error,
        1: results[1].error,
    }
    server.clear()
    nbchat.map("Hi {}", ["a", "b"], model="x@bogus=1")
    assert len(sent_prompts(server)) == 2  # failures are tried again, successes would not be


def test_the_same_request_twice_is_paid_once(ip, server, mock):
    results = nbchat.map("Hi {}", ["a", "a", "b"])
    assert sorted(sent_prompts(server)) == ["Hi a", "Hi b"]
    assert results.texts == [expected("Hi a"), expected("Hi a"), expected("Hi b")]
    assert [r.cached for r in results] == [False, True, False]


def test_dict_series_and_dataframe_keep_their_labels(ip, server, mock):
    by_key = nbchat.map("Hi {}", {"x": "ann", "y": "bob"})
    assert [r.label for r in by_key] == ["x", "y"]
    assert by_key.texts == [expected("Hi ann"), expected("Hi bob")]

    series = pd.Series(["ann", "bob", "cy"], index=[30, 10, 20])
    out = nbchat.map("Hi {item}", series)
    assert list(out.index) == [30, 10, 20] and list(out["input"]) == ["ann", "bob", "cy"]
    assert list(out["reply"]) == [expected(f"Hi {n}") for n in ["ann", "bob", "cy"]]

    frame = pd.DataFrame({"name": ["ann", "bob"], "city": ["Oslo", "Rome"]}, index=["r1", "r2"])
    out = nbchat.map("{name} from {city}", frame)
    assert list(out.index) == ["r1", "r2"] and list(out["name"]) == ["ann", "bob"]
    assert list(out["reply"]) == [expected("ann from Oslo"), expected("bob from Rome")]
    assert list(out["error"]) == [None, None] and all(out["completion_tokens"] > 0)
    assert list(out["cached"]) == [False, False]

    frame["reply"] = ["mine", "too"]
    with pytest.raises(OptionError, match="already has column"):
        nbchat.map("{name} from {city}", frame)
    out = nbchat.map("{name} from {city}", frame, prefix="chat_")
    assert list(out["reply"]) == ["mine", "too"] and list(out["chat_cached"]) == [True, True]


@pytest.mark.parametrize(
    ("template", "items", "message"),
    [
        ("{town}", [{"city": "Oslo"}], r"template field \{town\} is not in item 0; it has city"),
        ("a constant", [1, 2], r"the template has no \{\} field"),
        ("{", [1], "not a valid format string"),
        ("Hi {}", "a string", "items must be a list"),
    ],
)
def test_bad_templates_and_items_send_nothing(ip, server, mock, template, items, message):
    with pytest.raises(OptionError, match=message):
        nbchat.map(template, items)
    assert sent_prompts(server) == []


def test_percent_chat_map_from_a_cell(ip, server, mock):
    ip.user_ns["cities"] = ["Oslo", "Rome"]
    ip.user_ns["tpl"] = "Tell me about {}"
    result, captured = run(ip, "%chat map cities tpl --concurrency 2 -m gpt-4.1-mini -o out")
    assert result.error_in_exec is None
    assert ip.user_ns["out"].texts == [
        expected(f"Tell me about {c}", "gpt-4.1-mini") for c in ["Oslo", "Rome"]
    ]
    assert {r.body["model"] for r in server.requests} == {"gpt-4.1-mini"}
    assert "gpt-4.1-mini: 2/2 done ·" in captured.stdout  # the summary line
    run(ip, "%chat -o again map cities tpl")  # flags may also come first
    assert ip.user_ns["again"].texts == [expected(f"Tell me about {c}") for c in ["Oslo", "Rome"]]

    result, captured = run(ip, "%chat map cities")
    assert isinstance(result.error_in_exec, OptionError)
    assert "nbchat: %chat map: the following arguments are required: template" in captured.stdout
    result, captured = run(ip, "%chat map nothing_here Hi {}")
    assert "nbchat: cannot evaluate 'nothing_here'" in captured.stdout
    result, captured = run(ip, "%chat map cities 'Hi {}' --concurrency many")
    assert "nbchat: %chat map: argument --concurrency: invalid int value: 'many'" in captured.stdout


def test_live_progress_bar_ends_as_a_summary_line(ip, server, mock):
    run(ip, "%config ChatMagics.display_mode = 'live'")
    result, captured = run(ip, "import nbchat\nr = nbchat.map('Hi {}', ['a', 'b', 'c'])")
    assert result.error_in_exec is None
    first, last = captured.outputs[0], captured.outputs[-1]
    assert "application/vnd.jupyter.widget-view+json" in first.data  # the bar while running
    assert last.update and "3/3 done" in last.data["text/plain"]  # replaced by the summary
    assert "nbchat-progress" in last.data["text/html"]


def test_a_long_live_map_sends_no_display_message_per_item(ip, server, mock, monkeypatch):
    """300 items: the bar and its summary are the only outputs, and the bar is redrawn
    only by the caller's thread on its timer (`run_in_thread`'s tick), never per reply."""
    import threading

    from nbchat.progress import Progress

    shown: list[str] = []
    real = Progress.show

    def show(self, *, force=False):
        shown.append(threading.current_thread().name)
        real(self, force=force)

    monkeypatch.setattr(Progress, "show", show)
    run(ip, "%config ChatMagics.display_mode = 'live'")
    items = [f"n{i}" for i in range(300)]
    result, captured = run(ip, f"import nbchat\nr = nbchat.map('Hi {{}}', {items!r})")
    assert result.error_in_exec is None
    assert len(ip.user_ns["r"]) == 300 and not ip.user_ns["r"].errors
    assert len(captured.outputs) == 2  # the bar, then its summary line
    assert set(shown) == {threading.current_thread().name}


def test_a_429_pauses_the_whole_pool_for_its_retry_after():
    """Unit level, with a counting transport: Retry-After is honoured by every worker."""
    sent: list[float] = []
    in_flight = [0, 0]  # now, most

    async def handler(request: httpx.Request) -> httpx.Response:
        sent.append(time.monotonic())
        number = len(sent)
        in_flight[0] += 1
        in_flight[1] = max(in_flight)
        await asyncio.sleep(0.01)
        in_flight[0] -= 1
        if number == 10:
            return httpx.Response(429, headers={"retry-after-ms": "200"}, json={"error": {}})
        reply = {"model": "m", "choices": [{"message": {"content": "ok"}, "finish_reason": "stop"}]}
        return httpx.Response(200, json=reply)

    done: dict[int, object] = {}
    limiter = Limiter(4)
    jobs = [(i, {"model": "m", "messages": []}) for i in range(30)]
    asyncio.run(
        run_requests(
            ChatClient(base_url="http://pool.test/v1"),
            jobs,
            done.__setitem__,
            concurrency=4,
            limiter=limiter,
            transport=httpx.MockTransport(handler),
        )
    )
    assert sorted(done) == list(range(30)) and all(o.reply for o in done.values())
    assert len(sent) == 31 and in_flight[1] == 4
    assert limiter.rate_limited == 1
    paused = limiter.paused_until - 0.2  # when the 429 came back and the pool stopped
    assert sent[9] < paused
    assert not [t for t in sent if paused < t < limiter.paused_until - 0.005]  # nobody sent


def test_map_and_compare_in_a_plain_script_need_no_ipython(server, mock):
    code = (
        "import sys, nbchat\n"
        "assert 'nbchat.batch' not in sys.modules  # nothing heavy at import\n"
        "nbchat.compare('Hi', 'gpt-4o-mini,gpt-4.1-mini')\n"
        "r = nbchat.map('Hi {}', ['a', 'b'], model='gpt-4.1-mini')\n"
        "print(r.texts)\n"
        "print('IPython' in sys.modules, 'ipywidgets' in sys.modules)\n"
    )
    env = {k: v for k, v in os.environ.items() if k not in ENV}
    env.update(OPENAI_BASE_URL=server.url, OPENAI_API_KEY=TEST_KEY)
    done = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    *_, texts, imported = done.stdout.splitlines()
    assert texts == repr([expected("Hi a", "gpt-4.1-mini"), expected("Hi b", "gpt-4.1-mini")])
    assert imported == "False False"
    assert "gpt-4.1-mini: 2/2 done" in done.stdout
    assert done.stdout.startswith(f"[1] gpt-4o-mini\n{expected('Hi')}")  # compare, as text


def test_an_interrupt_returns_only_once_the_pool_has_stopped():
    """Python 3.11's Thread.join, interrupted, marks a running thread stopped: don't trust it."""
    from nbchat.pool import run_in_thread

    running = threading.Event()
    stopped: list[str] = []

    async def work() -> None:
        running.set()
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            await asyncio.sleep(0.3)  # replies still being reported after the cancel
            stopped.append("after the cancel")
            raise

    interrupt_when(running.is_set)
    with pytest.raises(KeyboardInterrupt):
        run_in_thread(work, tick=lambda: None, interval=0.05)
    assert stopped == ["after the cancel"]
