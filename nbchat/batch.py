"""`nbchat.map`: one prompt template over many items, sent as independent requests.

Each item becomes its own request (no shared conversation), sent with
bounded concurrency that adapts to 429s (see `pool`), or handed to the
OpenAI Batch API with `batch="api"` (see `batch_api`). Results come back in
input order; a finished request is cached by its exact body, so re-running
the same call after an interrupt (or a crash of the notebook's patience)
sends only what is still missing. With the extension loaded the cache is the
exchange record (see `mapcache`), so this holds across kernel restarts too,
and the request fields configured as `ChatMagics.temperature` etc. apply.
"""

from __future__ import annotations

import string
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any

from .config import one_limit, with_limit_field
from .errors import OptionError
from .pricing import estimate_cost
from .progress import Progress, Tally
from .results import (
    BatchInterrupted,
    BatchResult,
    BatchResults,
    MemoryCache,
    ResultCache,
    cached,
    request_key,
)
from .types import Reply

if TYPE_CHECKING:
    from .context import Context

__all__ = ["DEFAULT_CACHE", "map"]

#: The cache `map(..., cache=True)` uses without an exchange record: this process's memory.
DEFAULT_CACHE = MemoryCache()

Template = str | Callable[[Any], "str | list[dict[str, Any]]"]


def _inputs(items: Any) -> tuple[str, list[Any], list[Any]]:
    """(kind, labels, values) for a list, dict, pandas Series or DataFrame."""
    kind = type(items).__name__ if type(items).__module__.startswith("pandas") else ""
    if kind == "DataFrame":
        return "frame", list(items.index), items.to_dict("records")
    if kind == "Series":
        return "series", list(items.index), list(items)
    if isinstance(items, Mapping):
        return "dict", list(items.keys()), list(items.values())
    if isinstance(items, (str, bytes)) or not isinstance(items, Iterable):
        raise OptionError(
            f"items must be a list, dict, pandas Series or DataFrame, not {type(items).__name__}"
        )
    values = list(items)
    return "list", list(range(len(values))), values


def _check_template(template: Template) -> None:
    if callable(template):
        return
    if not isinstance(template, str):
        raise OptionError(
            f"the template must be a string or a function, not {type(template).__name__}"
        )
    try:
        fields = [f for _, f, _, _ in string.Formatter().parse(template) if f is not None]
    except ValueError as exc:
        raise OptionError(
            f"the template is not a valid format string: {exc}",
            hint="write literal braces as {{ and }}",
        ) from None
    if not fields:
        raise OptionError(
            "the template has no {} field, so every item would get the same prompt",
            hint="use {} for the item, or {column} for a DataFrame column / dict key",
        )


def render(template: Template, item: Any, label: Any) -> str | list[dict[str, Any]]:
    """The user message for `item` (or a whole message list from a template function)."""
    if callable(template):
        out = template(item)
        if not isinstance(out, (str, list)):
            raise OptionError(
                f"the template function returned {type(out).__name__} for {label!r}",
                hint="return a string (the message) or a list of messages",
            )
        return out
    try:
        if isinstance(item, Mapping):
            return template.format_map(item)
        return template.format(item, item=item)
    except KeyError as exc:
        names = f"; it has {', '.join(str(k) for k in item)}" if isinstance(item, Mapping) else ""
        raise OptionError(
            f"template field {{{exc.args[0]}}} is not in item {label!r}{names}",
            hint=None if names else "use {} or {item} for the item itself",
        ) from None
    except (IndexError, ValueError, AttributeError) as exc:
        raise OptionError(f"cannot fill the template for item {label!r}: {exc}") from None


def _body(
    model: str, prompt: str | list[dict[str, Any]], system: str | None, params: Mapping[str, Any]
) -> dict[str, Any]:
    messages = [{"role": "system", "content": system}] if system else []
    messages += prompt if isinstance(prompt, list) else [{"role": "user", "content": prompt}]
    return {"model": model, "messages": messages, **params}


def _cache(cache: bool | ResultCache | None, ctx: Context) -> ResultCache | None:
    """`cache=True`: the exchange record when the extension keeps one, else memory."""
    if cache is not True:
        return cache or None
    from .recorder import Recorder

    recorder = ctx.session.recorder
    if isinstance(recorder, Recorder):
        found = recorder.map_cache(ctx.settings.api_key, DEFAULT_CACHE)
        if found is not None:
            return found
    return DEFAULT_CACHE


def map(
    template: Template,
    items: Any,
    *,
    model: str | None = None,
    system: str | None = None,
    params: Mapping[str, Any] | None = None,
    concurrency: int = 8,
    batch: str | None = None,
    cache: bool | ResultCache | None = True,
    progress: bool = True,
    poll_interval: float = 10.0,
    prefix: str = "",
) -> Any:
    """Run `template` over `items`; results in input order (a DataFrame for pandas input).

    `template` is a format string (`{}` / `{item}` for the item, `{name}` for a
    dict key or DataFrame column) or a function item -> message(s). Each item is
    sent on its own; at most `concurrency` at once (fewer while rate limited).
    `batch="api"` uses the OpenAI Batch API instead (half price, done within 24 h).
    Finished replies are cached by exact request: re-running resumes. With
    `%load_ext nbchat` the configured request fields (`ChatMagics.temperature`,
    `max_tokens`, `params`, ...) apply under `params`, and the cache is the
    exchange record, which outlives the kernel.
    """
    from .context import current

    if batch not in (None, "api"):
        raise OptionError(f"batch must be None or 'api', not {batch!r}")
    if not 1 <= concurrency <= 256:
        raise OptionError(f"concurrency must be between 1 and 256, not {concurrency}")
    if params and "stream" in params:
        raise OptionError("map sends whole replies; leave 'stream' out of params")
    _check_template(template)
    kind, labels, values = _inputs(items)
    ctx = current()
    settings = ctx.settings
    settings.require_key()
    model = model or settings.model
    system = system if system is not None else settings.system_prompt
    defaults = ctx.magics.request_defaults() if ctx.magics is not None else {}
    fields = {**one_limit(defaults), **one_limit(dict(params or {}))}  # configured < given
    fields = with_limit_field(fields, settings.limit_field)  # max_tokens for most servers
    prompts = [render(template, v, label) for v, label in zip(values, labels, strict=True)]
    bodies = [_body(model, p, system, fields) for p in prompts]
    keys = [request_key(settings.base_url, b) for b in bodies]
    store = _cache(cache, ctx)
    discount = 0.5 if batch == "api" else 1.0  # the Batch API's published price cut

    results: list[BatchResult | None] = [None] * len(bodies)
    tally = Tally(total=len(bodies))
    todo: dict[str, list[int]] = {}  # key -> the items sharing that exact request
    hits = cached(store, keys) if store is not None else {}
    for i, key in enumerate(keys):
        hit = hits.get(key)
        if hit is not None:
            results[i] = BatchResult(i, labels[i], values[i], prompts[i], hit, cached=True)
            tally.add(cached=True)
        else:
            todo.setdefault(key, []).append(i)

    def on_done(index: int, reply: Reply | None, error: str | None) -> None:
        if reply is not None:
            cost = estimate_cost(reply.model, reply.usage, settings.prices)
            reply = reply.with_(cost=cost * discount if cost is not None else None)
            if store is not None:
                store.put(keys[index], reply)
        for i in todo[keys[index]]:  # the same request asked twice is paid once
            again = i != index
            results[i] = BatchResult(i, labels[i], values[i], prompts[i], reply, error, again)
            tally.add(
                failed=error is not None,
                cached=again,
                tokens=reply.usage.total_tokens if reply and reply.usage and not again else 0,
                cost=reply.cost if reply and not again else None,
            )

    title = f"{model}: " if batch is None else f"{model} (Batch API): "
    bar = Progress(tally, live=ctx.live, enabled=progress, title=title)
    jobs = [(indices[0], bodies[indices[0]]) for indices in todo.values()]
    client = ctx.session.client(settings)
    try:
        if not jobs:
            pass
        elif batch == "api":
            from .batch_api import BatchIds, run_batch

            run_batch(
                client,
                jobs,
                on_done,
                tally=tally,
                show=bar.show,
                poll_interval=poll_interval,
                batches=store if isinstance(store, BatchIds) else None,
            )
        else:
            _run_pool(client, jobs, on_done, tally, bar, concurrency)
    except KeyboardInterrupt:
        unfinished = [i for i, r in enumerate(results) if r is None]
        for i in unfinished:
            results[i] = BatchResult(i, labels[i], values[i], prompts[i], error="interrupted")
        bar.close(f" · interrupted, {len(unfinished)} not finished")
        shaped = _shape(kind, items, results, prefix)
        if batch == "api":
            hint = "the batch keeps running on the server: run the same call again to collect it"
        elif store is not None:
            hint = "run the same call again to send only the rest (finished replies are cached)"
        else:
            hint = "the finished results are in this error's .results"
        raise BatchInterrupted(
            f"interrupted: {len(results) - len(unfinished)} of {len(results)} finished",
            results=shaped,
            hint=hint,
        ) from None
    bar.close()
    return _shape(kind, items, results, prefix)


def _run_pool(
    client: Any,
    jobs: list[tuple[int, dict[str, Any]]],
    on_done: Any,
    tally: Tally,
    bar: Progress,
    concurrency: int,
) -> None:
    import time

    from .pool import Limiter, Outcome, run_in_thread, run_requests

    limiter = Limiter(concurrency)

    def done(index: int, outcome: Outcome) -> None:
        on_done(index, outcome.reply, outcome.error.message if outcome.error else None)

    def tick() -> None:
        tally.in_flight = limiter.in_flight
        waiting = limiter.paused_until - time.monotonic()
        tally.note = f"rate limited, waiting {waiting:.1f} s" if waiting > 0 else ""
        bar.show()

    run_in_thread(
        lambda: run_requests(client, jobs, done, concurrency=concurrency, limiter=limiter),
        tick=tick,
    )


def _shape(kind: str, items: Any, results: list[BatchResult | None], prefix: str) -> Any:
    out = BatchResults([r for r in results if r is not None])
    if kind == "frame":
        return out.to_pandas(items, prefix=prefix)
    if kind == "series":
        return out.to_pandas(prefix=prefix)
    return out
