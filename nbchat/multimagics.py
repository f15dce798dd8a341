"""ChatMagics glue for several models and many prompts: compare, `%chat pick`, `%chat map`.

A mixin so magics.py only routes: `%%chat -m a,b` (or `--compare a,b`) goes
to `_compare`; `%chat pick N` and `%chat map ...` are `_cmd_<name>` line
commands. The work is done in `compare`, `columns` and `batch`, imported on
first use so `%load_ext nbchat` stays cheap.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .errors import OptionError

if TYPE_CHECKING:
    from .comparison import Comparison
    from .config import Settings
    from .session import ChatSession

__all__ = ["MAP_OPTIONS", "MultiModelCommands"]

#: `key=value` words `%chat map` takes besides ITEMS and TEMPLATE.
MAP_OPTIONS = ("concurrency", "batch", "poll_interval")


class MultiModelCommands:
    """Mixin for ChatMagics: side-by-side comparisons and batches over data."""

    _last_comparison: Comparison | None = None
    _line_args: Any = None  # the parsed %chat line (set by ChatMagics before a command)

    if TYPE_CHECKING:
        shell: Any

        @property
        def session(self) -> ChatSession: ...
        @property
        def _user_ns(self) -> dict[str, Any]: ...
        def settings(self) -> Settings: ...
        def _live(self) -> bool: ...
        def _resolve_text(self, value: str) -> str: ...

    # -- compare -------------------------------------------------------------------

    def _compare_models(self, args: Any) -> list[str]:
        """The models of a comparison (`--compare a,b` or `-m a,b`); [] for one model."""
        from .comparison import parse_models

        spec = getattr(args, "compare", None)
        if spec:
            models = parse_models(spec)
            if len(models) < 2:
                raise OptionError(
                    f"--compare needs two or more models, not {spec!r}",
                    hint="e.g. %%chat --compare gpt-4o-mini,gpt-4.1-mini",
                )
            return models
        models = parse_models(args.model) if args.model else []
        return models if len(models) > 1 else []

    def _compare(self, prompt: str, models: list[str], args: Any, settings: Settings) -> None:
        """Stream `prompt` to every model side by side; nothing joins the conversation yet."""
        from .columns import ColumnsView
        from .comparison import CompareError, run_compare

        view = ColumnsView(
            live=self._live(), interval=settings.update_interval, footers=settings.show_usage
        )
        try:
            comparison = run_compare(self.session, settings, prompt, models, view)
        except CompareError as error:
            self._keep(error.comparison, args)
            raise
        self._keep(comparison, args)

    def _keep(self, comparison: Comparison, args: Any) -> None:
        self._last_comparison = comparison
        if args.out:
            self._user_ns[args.out] = comparison

    def _cmd_pick(self, rest: list[str]) -> None:
        """`%chat pick N`: reply N of the last comparison continues the conversation."""
        if len(rest) != 1 or not rest[0].isdigit():
            raise OptionError(
                "usage: %chat pick N", hint="N is the number above the reply's column"
            )
        if self._last_comparison is None:
            raise OptionError(
                "nothing to pick yet", hint="compare first, e.g. %%chat -m gpt-4o-mini,gpt-4.1-mini"
            )
        number = int(rest[0])
        reply = self._last_comparison.pick(number)
        print(f"picked reply {number} ({reply.model}); the next %%chat continues from it")

    # -- map -----------------------------------------------------------------------

    def _cmd_map(self, rest: list[str]) -> Any:
        """`%chat map ITEMS TEMPLATE [concurrency=N] [batch=api]`: one request per item."""
        from .batch import map as map_items
        from .results import BatchInterrupted

        options: dict[str, str] = {}
        words: list[str] = []
        for word in rest:
            key, eq, value = word.partition("=")
            if eq and key in MAP_OPTIONS:
                options[key] = value
            else:
                words.append(word)
        if len(words) < 2:
            raise OptionError(
                "usage: %chat map ITEMS TEMPLATE [concurrency=N] [batch=api]",
                hint="ITEMS is a list, dict, Series or DataFrame; TEMPLATE uses {} or {column}",
            )
        args = self._line_args
        model = getattr(args, "model", None)
        if model and "," in model:
            raise OptionError("%chat map runs one model; compare models with %%chat -m a,b")
        system = getattr(args, "system", None)
        out = getattr(args, "out", None)
        try:
            results = map_items(
                self._resolve_text(" ".join(words[1:])),
                self._evaluate(words[0]),
                model=model,
                system=self._resolve_text(system) if system else None,
                concurrency=_number(options, "concurrency", int, 8),
                batch=options.get("batch"),
                poll_interval=_number(options, "poll_interval", float, 10.0),
            )
        except BatchInterrupted as error:
            if out:
                self._user_ns[out] = error.results
            raise
        if out:
            self._user_ns[out] = results
            return None
        return results

    def _evaluate(self, expression: str) -> Any:
        try:
            return self.shell.ev(expression)
        except Exception as exc:
            raise OptionError(f"cannot evaluate {expression!r}: {exc}") from None


def _number(options: dict[str, str], key: str, kind: type, default: Any) -> Any:
    if key not in options:
        return default
    try:
        return kind(options[key])
    except ValueError:
        raise OptionError(f"{key} must be a number, not {options[key]!r}") from None
