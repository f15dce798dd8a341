"""Independent chat requests with bounded, rate-limit-adaptive concurrency (async httpx).

`concurrency` workers share one `httpx.AsyncClient` built from the sync
`ChatClient` (same headers, error mapping and `retry_delay` rules). A 429 is
not one request's problem but the whole account's: it pauses every worker
until its Retry-After has passed and halves the number allowed in flight,
which then grows back by about one per round of successes (AIMD, as TCP does).

The event loop runs in a thread of its own, so this works the same in a
script, in terminal IPython and inside a Jupyter kernel (whose main thread
already runs a loop); the caller's thread keeps the display and receives
kernel interrupts (see `run_in_thread`).
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .client import ChatClient, parse_completion, ssl_context
from .errors import NbChatError
from .failures import RETRY_STATUSES, retry_delay

if TYPE_CHECKING:
    import httpx2 as httpx

    from .types import Reply

__all__ = ["Limiter", "Outcome", "run_in_thread", "run_requests"]

#: 429s one request may meet before it is reported as failed.
MAX_RATE_LIMITED = 12


@dataclass(frozen=True)
class Outcome:
    """What one request ended with: a reply, or an error (never both)."""

    reply: Reply | None = None
    error: NbChatError | None = None


class Limiter:
    """At most `limit` in flight (never above `concurrency`); 429s pause everyone."""

    def __init__(self, concurrency: int, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.concurrency = concurrency
        self.limit = float(concurrency)
        self.in_flight = 0
        self.max_in_flight = 0
        self.paused_until = 0.0
        self.rate_limited = 0
        self._clock = clock
        self._freed = asyncio.Event()

    async def acquire(self) -> None:
        while True:
            wait = self.paused_until - self._clock()
            if wait > 0:
                await asyncio.sleep(wait)
                continue
            if self.in_flight < max(int(self.limit), 1):
                self.in_flight += 1
                self.max_in_flight = max(self.max_in_flight, self.in_flight)
                return
            self._freed.clear()
            await self._freed.wait()

    def release(self) -> None:
        self.in_flight -= 1
        self._freed.set()

    def succeeded(self) -> None:
        self.limit = min(self.concurrency, self.limit + 1 / self.limit)

    def back_off(self, delay: float) -> None:
        """A 429: pause the pool for `delay` s; halve the limit once per pause."""
        self.rate_limited += 1
        now = self._clock()
        if self.paused_until <= now:
            self.limit = max(1.0, self.limit / 2)
        self.paused_until = max(self.paused_until, now + delay)


async def _one(
    http: httpx.AsyncClient, client: ChatClient, limiter: Limiter, body: dict[str, Any]
) -> Outcome:
    """Send one request until it succeeds, fails for good, or runs out of retries."""
    import httpx2 as httpx

    url = f"{client.base_url}/chat/completions"
    failures = limited = 0
    while True:
        await limiter.acquire()
        started = time.perf_counter()
        try:
            response = await http.post(url, json=body)
        except httpx.HTTPError as exc:
            limiter.release()
            failures += 1
            if failures > client.max_retries:
                return Outcome(error=client._transport_error(exc))
            await asyncio.sleep(retry_delay(None, failures))
            continue
        except BaseException:  # cancelled by an interrupt
            limiter.release()
            raise
        limiter.release()
        status = response.status_code
        if status < 400:
            limiter.succeeded()
            try:
                return Outcome(
                    parse_completion(response.json(), body, time.perf_counter() - started)
                )
            except (ValueError, AttributeError, TypeError, IndexError) as exc:
                return Outcome(error=NbChatError(f"the server sent a malformed reply ({exc})"))
        if status == 429 and limited < MAX_RATE_LIMITED:
            limited += 1
            limiter.back_off(retry_delay(response, limited))
            continue
        if status in RETRY_STATUSES and failures < client.max_retries:
            failures += 1
            await asyncio.sleep(retry_delay(response, failures))
            continue
        return Outcome(error=client._status_error(response, body.get("model")))


async def run_requests(
    client: ChatClient,
    jobs: Iterable[tuple[int, dict[str, Any]]],
    on_done: Callable[[int, Outcome], None],
    *,
    concurrency: int = 8,
    limiter: Limiter | None = None,
    transport: httpx.AsyncBaseTransport | None = None,
) -> None:
    """Send every (index, body) job; `on_done(index, outcome)` as each one finishes."""
    import httpx2 as httpx

    limiter = limiter or Limiter(concurrency)
    queue = iter(jobs)
    async with httpx.AsyncClient(
        headers=client.headers(),
        timeout=httpx.Timeout(client.timeout, connect=min(client.timeout, 10.0)),
        limits=httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency),
        transport=transport,
        verify=ssl_context(),
    ) as http:

        async def worker() -> None:
            for index, body in queue:  # a shared iterator: each job is taken once
                on_done(index, await _one(http, client, limiter, body))

        await asyncio.gather(*(worker() for _ in range(concurrency)))


def run_in_thread(
    make: Callable[[], Any], *, tick: Callable[[], None], interval: float = 0.2
) -> None:
    """Run the coroutine `make()` on an event loop in another thread; call `tick()` meanwhile.

    A KeyboardInterrupt in the calling thread cancels the coroutine (finished
    work stays wherever `on_done` put it) and is re-raised once it has stopped.
    The wait is on an Event, not `Thread.join`: on Python 3.11 an interrupt that
    lands inside `join(timeout)` marks the still-running thread as stopped, so a
    later `join()` returned at once while replies were still being reported.
    """
    state: dict[str, Any] = {}
    started = threading.Event()
    finished = threading.Event()

    async def main() -> None:
        state["loop"] = asyncio.get_running_loop()
        state["task"] = asyncio.current_task()
        started.set()
        await make()

    def target() -> None:
        try:
            asyncio.run(main())
        except asyncio.CancelledError:
            pass
        except BaseException as exc:  # handed to the caller's thread
            state["error"] = exc
        finally:
            started.set()
            finished.set()

    thread = threading.Thread(target=target, name="nbchat-pool", daemon=True)
    thread.start()
    try:
        while not finished.wait(interval):
            tick()
        tick()
    except KeyboardInterrupt:
        started.wait()
        loop, task = state.get("loop"), state.get("task")
        if loop is not None and task is not None:
            with contextlib.suppress(RuntimeError):  # unless the loop just finished by itself
                loop.call_soon_threadsafe(task.cancel)
        finished.wait()
        raise
    if "error" in state:
        raise state["error"]
