"""`--with NAME`: a value from the notebook as a text a model can read, within a token budget.

What each kind of value becomes:

- pandas / polars DataFrame and Series: shape, columns with dtypes and null
  counts, `describe()` of the numeric columns and the first rows as Markdown
  tables. Above `SAMPLE_ROWS` rows the null counts and statistics come from a
  seeded random sample of that many rows (and say so), and only the first rows
  are ever formatted, so a 10-million-row frame costs what a 100,000-row one does.
- numpy arrays: shape, dtype, min / max / mean and a small sample.
- functions, classes, modules: signature, docstring and source.
- `str`: the text; anything else: its type and a bounded `repr`.
- images (PIL, matplotlib figures and axes, RGB(A) uint8 arrays, IPython
  `Image`, image bytes) and audio (IPython `Audio`, wav/mp3 bytes): a content
  part, as `--image` / `--audio` send them (nbchat.media).

Nothing here imports pandas, numpy or polars: values are recognised by their
type's module, so those libraries are only touched when the user holds one of
their objects. The text is trimmed to the budget with "… N more characters".
"""

from __future__ import annotations

import inspect
import math
import reprlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

__all__ = ["SAMPLE_ROWS", "Summary", "fit", "summarise"]

SAMPLE_ROWS = 100_000  # rows above which null counts and describe() use a sample
MAX_COLUMNS = 50  # columns ever formatted (the rest are counted)
CELL = 32  # characters of a table cell before it is cut
BY = "\u00d7"  # the multiplication sign of "10 rows x 3 columns"
Count = Callable[[str], int]


@dataclass(frozen=True)
class Summary:
    """What `--with` sends for one value: a text, or a media content part."""

    kind: str  # e.g. "DataFrame 10,000 x 12" (with a multiplication sign)
    text: str | None = None
    part: dict[str, Any] | None = None  # an image_url / input_audio part instead of text


def _module(value: Any) -> str:
    return type(value).__module__.split(".")[0]


def _a(obj: Any) -> str:
    name = type(obj).__name__
    return f"{'an' if name[:1].lower() in 'aeiou' else 'a'} {name}"


def fit(text: str, budget: int, count: Count) -> str:
    """`text`, or its head and `… N more characters`, within `budget` tokens."""
    if len(text) <= budget and count(text) <= budget:  # a token is at least one character
        return text
    head = text[: budget * 12]  # more than any budget's worth of text: the rest is never counted
    if len(head) == len(text) and count(text) <= budget:
        return text
    low, high = 0, len(head)
    while low < high:  # the longest head that fits with its marker
        mid = (low + high + 1) // 2
        if count(_cut(text, mid)) <= budget:
            low = mid
        else:
            high = mid - 1
    return _cut(text, low)


def _cut(text: str, keep: int) -> str:
    return f"{text[:keep]}\n… {len(text) - keep:,} more characters"


def summarise(value: Any, name: str, budget: int, count: Count) -> Summary:
    """The summary of `value` (named `name` in the notebook) in at most `budget` tokens."""
    media = _media(value, name)
    if media is not None:
        return media
    module = _module(value)
    if module == "pandas" and hasattr(value, "iloc"):
        frame = _pandas(value)
        if frame is not None:
            return _frame_summary(frame, budget, count)
    if module == "polars" and hasattr(value, "schema"):
        frame = _polars(value)
        if frame is not None:
            return _frame_summary(frame, budget, count)
    if module == "numpy" and hasattr(value, "shape") and hasattr(value, "dtype"):
        return _array(value, budget, count)
    if isinstance(value, str):
        return Summary(f"str, {len(value):,} characters", fit(value, budget, count))
    code = inspect.isfunction(value) or inspect.ismethod(value) or inspect.isbuiltin(value)
    if code or inspect.ismodule(value) or inspect.isclass(value):
        return _code(value, budget, count)
    return _other(value, budget, count)


# -- media --------------------------------------------------------------------------------


def _media(value: Any, name: str) -> Summary | None:
    from .errors import OptionError
    from .media import _audio_format, _image_type, audio_part, image_url
    from .tokens import png_size

    module, kind = _module(value), type(value).__name__
    image = (
        (module == "PIL" and hasattr(value, "save"))
        or (module == "matplotlib" and (hasattr(value, "savefig") or hasattr(value, "figure")))
        or (kind == "Image" and module == "IPython")
        or (isinstance(value, (bytes, bytearray)) and _image_type(bytes(value)) is not None)
        or (
            module == "numpy"
            and getattr(value, "dtype", None) == "uint8"
            and len(getattr(value, "shape", ())) == 3
            and value.shape[2] in (3, 4)
        )
    )
    try:
        if image:
            url = image_url(value, name)
            size = png_size(url)
            what = f"image {size[0]} {BY} {size[1]}" if size else "image"
            return Summary(what, part={"type": "image_url", "image_url": {"url": url}})
        audio = (kind == "Audio" and module == "IPython") or (
            isinstance(value, (bytes, bytearray)) and _audio_format(bytes(value)) is not None
        )
        if audio:
            part = audio_part(name, {name: value})
            return Summary(f"audio ({part['input_audio']['format']})", part=part)
    except OptionError as error:
        raise OptionError(
            error.message.replace("--image ", "--with ").replace("--audio ", "--with "),
            hint=error.hint,
        ) from None
    return None


# -- tables -------------------------------------------------------------------------------


def _cell(value: Any) -> str:
    text = str(value)
    if isinstance(value, float):
        text = "" if math.isnan(value) else f"{value:.6g}"
    text = " ".join(text.split()).replace("|", "\\|")
    return text if len(text) <= CELL else text[: CELL - 1] + "…"


def _table(header: Sequence[Any], rows: Sequence[Sequence[Any]]) -> str:
    lines = ["| " + " | ".join(_cell(h) for h in header) + " |"]
    lines.append("|" + "---|" * len(header))
    lines += ["| " + " | ".join(_cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


@dataclass(frozen=True)
class _Frame:
    """What a frame summary shows, gathered once; rendered at several sizes until it fits."""

    kind: str
    shape: str
    columns: Sequence[tuple[Any, str, int | None]]  # name, dtype, nulls (first MAX_COLUMNS)
    more_columns: int
    stats: list[str]  # describe() statistic names
    described: list[tuple[Any, list[Any]]]  # numeric column -> its statistics
    head_header: list[Any]  # index label first
    head: list[list[Any]]
    note: str = ""

    def render(self, columns: int, rows: int, describe: bool) -> str:
        out = [self.shape]
        if self.note:
            out.append(self.note)
        shown = self.columns[:columns]
        nulls = any(n is not None for _, _, n in shown)
        header = ["column", "dtype", *(["nulls"] if nulls else [])]
        table = [[c, t, *([n] if nulls else [])] for c, t, n in shown]
        out += ["", "Columns:", _table(header, table)]
        more = self.more_columns + len(self.columns) - len(shown)
        if more:
            out.append(f"… {more:,} more columns")
        if describe and self.described:
            names = {c for c, _, _ in shown}
            rows_ = [[c, *v] for c, v in self.described if c in names]
            if rows_:
                out += ["", "describe() of the numeric columns:", _table(["", *self.stats], rows_)]
        if rows and self.head:
            header = self.head_header[: columns + 1]
            body = [row[: columns + 1] for row in self.head[:rows]]
            out += ["", f"First {len(body)} row{'s' * (len(body) != 1)}:", _table(header, body)]
        return "\n".join(out)


def _frame_summary(frame: _Frame, budget: int, count: Count) -> Summary:
    sizes = [(c, r, True) for c in (MAX_COLUMNS, 20, 10, 5) for r in (5, 3, 1)]
    sizes += [(c, 0, d) for c in (5, 3, 1) for d in (True, False)]
    for columns, rows, describe in sizes:
        text = frame.render(columns, rows, describe)
        if count(text) <= budget:
            return Summary(frame.kind, text)
    return Summary(frame.kind, fit(text, budget, count))


def _sample_note(n: int) -> str:
    return (
        f"Null counts and statistics are from {SAMPLE_ROWS:,} of the {n:,} rows, "
        "sampled at random (seed 0)."
    )


def _pandas(value: Any) -> _Frame | None:
    import numpy as np

    series = hasattr(value, "to_frame") and not hasattr(value, "columns")
    if not (series or hasattr(value, "columns")):
        return None  # an Index, a GroupBy...: shown by repr
    df = value.to_frame(name=value.name if value.name is not None else "value") if series else value
    n, m = df.shape
    sample, note = df, ""
    if n > SAMPLE_ROWS:
        rows = np.sort(np.random.default_rng(0).choice(n, SAMPLE_ROWS, replace=False))
        sample, note = df.iloc[rows], _sample_note(n)
    cols = df.iloc[:, :MAX_COLUMNS]
    nulls = sample.iloc[:, :MAX_COLUMNS].isna().sum().tolist()
    columns = [(c, str(t), int(k)) for (c, t), k in zip(cols.dtypes.items(), nulls, strict=True)]
    numeric = sample.iloc[:, :MAX_COLUMNS].select_dtypes(include="number")
    described, stats = [], []
    if numeric.shape[1]:
        table = numeric.describe().T
        stats = [str(s) for s in table.columns]
        described = [(c, row.tolist()) for c, row in table.iterrows()]
    head = df.iloc[:5, :MAX_COLUMNS]
    rows_ = head.itertuples(index=False)
    body = [[i, *row] for i, row in zip(head.index.tolist(), rows_, strict=True)]
    index = type(df.index).__name__
    if series:
        kind = f"Series {value.name!r} of {n:,} {value.dtype}"
        shape = f"pandas Series {value.name!r}: {n:,} values, dtype {value.dtype}, index {index}"
    else:
        kind = f"DataFrame {n:,} {BY} {m:,}"
        shape = f"pandas DataFrame: {n:,} rows {BY} {m:,} columns, index {index}"
    return _Frame(
        kind, shape, columns, max(m - MAX_COLUMNS, 0), stats, described,
        ["", *cols.columns.tolist()], [list(r) for r in body], note,
    )  # fmt: skip


def _polars(value: Any) -> _Frame | None:
    kind = type(value).__name__
    if kind == "LazyFrame":  # never collected: only its schema is known
        schema = value.collect_schema()
        names: list[tuple[Any, str, int | None]]
        names = [(c, str(t), None) for c, t in list(schema.items())[:MAX_COLUMNS]]
        return _Frame(
            f"polars LazyFrame, {len(schema):,} columns",
            f"polars LazyFrame (not collected): {len(schema):,} columns",
            names, max(len(schema) - MAX_COLUMNS, 0), [], [], [], [],
        )  # fmt: skip
    if kind == "Series":
        value = value.to_frame()
    elif kind != "DataFrame":
        return None
    df = value.select(value.columns[:MAX_COLUMNS])
    n, m = value.shape
    sample, note = df, ""
    if n > SAMPLE_ROWS:
        sample, note = df.sample(n=SAMPLE_ROWS, seed=0), _sample_note(n)
    nulls = sample.null_count().row(0)
    columns: list[tuple[Any, str, int | None]] = [
        (c, str(t), int(k)) for (c, t), k in zip(df.schema.items(), nulls, strict=True)
    ]
    numeric = [c for c, t in df.schema.items() if t.is_numeric()]
    described, stats = [], []
    if numeric:
        table = sample.select(numeric).describe()
        stats = [str(s) for s in table.get_column(table.columns[0]).to_list()]
        described = [(c, table.get_column(c).to_list()) for c in numeric]
    head = df.head(5)
    what = "Series" if kind == "Series" else "DataFrame"
    return _Frame(
        f"polars {what} {n:,} {BY} {m:,}",
        f"polars {what}: {n:,} rows {BY} {m:,} columns",
        columns, max(m - MAX_COLUMNS, 0), stats, described,
        ["#", *head.columns], [[i, *row] for i, row in enumerate(head.rows())], note,
    )  # fmt: skip


# -- arrays, code, text, the rest ---------------------------------------------------------


def _array(a: Any, budget: int, count: Count) -> Summary:
    import numpy as np

    shape = BY.join(f"{d:,}" for d in a.shape) or "scalar"
    lines = [f"numpy {type(a).__name__}: shape ({', '.join(map(str, a.shape))}), dtype {a.dtype}"]
    lines[0] += f", {a.size:,} elements"
    if a.size and a.dtype.kind in "biuf":
        data = a.astype(np.float64) if a.dtype.kind == "b" else a
        nans = int(np.isnan(data).sum()) if a.dtype.kind == "f" else 0
        finite = data[np.isfinite(data)] if nans or a.dtype.kind == "f" else data
        if finite.size:
            stats = f"min {_cell(float(finite.min()))}, max {_cell(float(finite.max()))}"
            stats += f", mean {_cell(float(finite.mean()))}"
            lines.append(stats + (f"; {nans:,} NaN" if nans else ""))
    elif a.size and a.dtype.kind in "mM":
        lines.append(f"min {a.min()}, max {a.max()}")
    sample = np.array2string(a, threshold=24, edgeitems=3, precision=4, max_line_width=100)
    lines += ["", "Sample:", sample]
    return Summary(f"ndarray {shape} {a.dtype}", fit("\n".join(lines), budget, count))


def _code(value: Any, budget: int, count: Count) -> Summary:
    name = getattr(value, "__qualname__", None) or getattr(value, "__name__", repr(value))
    if inspect.ismodule(value):
        kind, head = f"module {value.__name__}", f"module {value.__name__}"
        path = getattr(value, "__file__", None)
        head += f" ({path})" if path else " (built in)"
    else:
        what = "class" if inspect.isclass(value) else "function"
        signature = _signature(value)
        kind, head = f"{what} {name}", f"{what} {name}{signature}"
    lines = [head]
    doc = inspect.getdoc(value)
    if doc:
        lines += ["", "Docstring:", doc]
    if inspect.ismodule(value):
        public = [n for n in dir(value) if not n.startswith("_")]
        lines += ["", f"Public names ({len(public):,}): " + ", ".join(public[:200])]
    try:
        source = inspect.getsource(value)
    except (OSError, TypeError):
        source = None
    if source:
        lines += ["", "Source:", "```python", source.rstrip(), "```"]
    return Summary(kind, fit("\n".join(lines), budget, count))


def _signature(value: Any) -> str:
    """`(x: int, y=2) -> float`, with string annotations (`from __future__`) unquoted."""
    for evaluate in (True, False):
        try:
            return str(inspect.signature(value, eval_str=evaluate))
        except Exception:  # an annotation that names what only a type checker imports
            continue
    return "(...)"


_repr = reprlib.Repr()
_repr.maxlevel, _repr.maxdict, _repr.maxlist, _repr.maxtuple = 4, 50, 100, 100
_repr.maxset, _repr.maxfrozenset, _repr.maxdeque, _repr.maxarray = 100, 100, 100, 100
_repr.maxstring, _repr.maxlong, _repr.maxother = 2000, 200, 2000


def _other(value: Any, budget: int, count: Count) -> Summary:
    kind = type(value).__qualname__
    module = type(value).__module__
    if module != "builtins":
        kind = f"{module}.{kind}"
    try:
        size = f", {len(value):,} items" if isinstance(value, (dict, list, tuple, set)) else ""
    except TypeError:
        size = ""
    builtin = isinstance(value, (dict, list, tuple, set, frozenset, bytes, int, float))
    try:
        text = _repr.repr(value) if builtin else repr(value)
    except Exception as exc:  # a broken __repr__ is the value's, not the cell's, problem
        text = f"<repr failed: {type(exc).__name__}>"
    return Summary(kind + size, fit(f"{kind}{size}:\n{text}", budget, count))
