"""ChatMagics glue for several models and many prompts: compare, `%chat pick`, `%chat map`.

A mixin so magics.py only routes: `%%chat -m a,b` (or `--compare a,b`) goes
to `_compare`; `%chat pick N` and `%chat map ...` are `_cmd_<name>` line
commands. The work is done in `compare`, `columns` and `batch`, imported on
first use so `%load_ext nbchat` stays cheap.
"""

from __future__ import annotations

import argparse
import shlex
from typing import TYPE_CHECKING, Any, NoReturn

from .errors import OptionError
from .magicargs import check_out

if TYPE_CHECKING:
    from .comparison import Comparison
    from .config import Settings
    from .request import CellRequest
    from .session import ChatSession

__all__ = ["MultiModelCommands"]


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
        def _cell_id(self) -> str | None: ...
        def request_defaults(self) -> dict[str, Any]: ...

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

    def _compare(
        self,
        request: CellRequest,
        models: list[str],
        args: Any,
        settings: Settings,
        header: dict[str, str] | None = None,
    ) -> None:
        """Stream the cell to every model side by side; nothing joins the conversation yet.

        With the cell's id, as for a `%%chat` cell: run again, the models see the
        conversation before its earlier turn, and a pick replaces that turn.
        """
        from .columns import ColumnsView
        from .comparison import CompareError, run_compare

        view = ColumnsView(
            live=self._live(),
            interval=settings.update_interval,
            footers=settings.show_usage,
            remote_images=settings.load_remote_images,
            header=header,
        )
        try:
            comparison = run_compare(
                self.session,
                settings,
                request.message,
                models,
                view,
                conversation=request.conversation,
                params=request.params,
                system=request.system,
                cell_id=self._cell_id(),
            )
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
        self._last_comparison.pick(int(rest[0]))
        print(self._last_comparison.picked_note())

    # -- map -----------------------------------------------------------------------

    def _cmd_map(self, rest: list[str]) -> Any:
        """`%chat map ITEMS TEMPLATE [-m MODEL] [-o NAME] [--concurrency N] [--batch api]`."""
        from .batch import map as map_items
        from .results import BatchInterrupted

        try:
            words = shlex.split(" ".join(rest))
        except ValueError as exc:
            raise OptionError(f"cannot read %chat map: {exc}", hint="check the quotes") from None
        opts = _MapParser().parse_intermixed_args(words)
        before = self._line_args  # flags given before `map`: %chat -o x map ...
        model = opts.model or getattr(before, "model", None)
        if model and "," in model:
            raise OptionError("%chat map runs one model; compare models with %%chat -m a,b")
        out = check_out(opts.out or getattr(before, "out", None))
        system = opts.system or getattr(before, "system", None)
        params = None  # map applies the configured fields itself; flags first add to them
        if before is not None:
            from .params import cell_params

            params = cell_params(before, self._user_ns, self.request_defaults())
        try:
            results = map_items(
                self._text(" ".join(opts.template)),
                self._evaluate(opts.items),
                model=model,
                system=self._text(system) if system else None,
                params=params,
                concurrency=opts.concurrency,
                batch=opts.batch,
                poll_interval=opts.poll_interval,
            )
        except BatchInterrupted as error:
            if out:
                self._user_ns[out] = error.results
            raise
        if out:
            self._user_ns[out] = results
            return None
        return results

    def _text(self, value: str) -> str:
        """A variable's value when `value` names a string in the namespace, else itself."""
        found = self._user_ns.get(value) if value.isidentifier() else None
        return found if isinstance(found, str) else value

    def _evaluate(self, expression: str) -> Any:
        try:
            return self.shell.ev(expression)
        except Exception as exc:
            raise OptionError(f"cannot evaluate {expression!r}: {exc}") from None


class _MapParser(argparse.ArgumentParser):
    """The words after `%chat map`; mistakes become one-line OptionErrors."""

    def __init__(self) -> None:
        super().__init__(prog="%chat map", add_help=False)
        self.add_argument("items")
        self.add_argument("template", nargs="+")
        self.add_argument("-m", "--model")
        self.add_argument("-o", "--out")
        self.add_argument("-s", "--system")
        self.add_argument("--concurrency", type=int, default=8)
        self.add_argument("--batch", choices=["api"])
        self.add_argument("--poll-interval", type=float, default=10.0)

    def error(self, message: str) -> NoReturn:
        raise OptionError(
            f"%chat map: {message}",
            hint="usage: %chat map ITEMS TEMPLATE [-m MODEL] [-o NAME] [--concurrency N] "
            "[--batch api]; ITEMS is a list, dict, Series or DataFrame, TEMPLATE uses {} or "
            "{column} (or names a string variable)",
        )
