"""Context from the notebook (`--with`, `--error`, `--cells`, `%chat fix`), in an IPython shell
against the mock server: what each kind of value becomes, the budget, the receipt, and that
bad input sends nothing. Real kernels: test_context_kernel.py."""

from __future__ import annotations

import importlib.machinery
import json
import sys
import types

import pytest

from nbchat import tokens
from nbchat.attach import prompt_and_parts
from nbchat.contextmagics import proposed_code
from nbchat.summaries import summarise
from nbchat.tokens import Counter, estimate

from .conftest import TEST_KEY, markdown_outputs, plain_outputs, run

np = pytest.importorskip("numpy")
pd = pytest.importorskip("pandas")


def sent(ip, server, cell: str, **kwargs) -> list[dict]:
    """Run `cell`; the content parts of the user message it sent."""
    result, captured = run_cell(ip, cell, **kwargs)
    assert result.error_in_exec is None, (captured.stdout, result.error_in_exec)
    content = server.requests[-1].body["messages"][-1]["content"]
    assert isinstance(content, list) and content[0]["type"] == "text"
    return content


def run_cell(ip, cell: str, store_history: bool = False):
    from IPython.utils.capture import capture_output

    with capture_output() as captured:
        result = ip.run_cell(cell, store_history=store_history)
    return result, captured


def refused(ip, server, cell: str) -> str:
    """Run a cell that must fail before sending: its one-line message."""
    result, _ = run(ip, cell)
    error = result.error_in_exec
    assert error is not None and not server.requests
    return str(error)


def frame(rows: int) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    return pd.DataFrame(
        {
            "price": rng.lognormal(3, 1, rows),
            "qty": rng.integers(0, 50, rows),
            "city": rng.choice(["Paris", "Tokyo", "Lima"], rows),
            "label": [f"row-{i}" for i in range(rows)],
        }
    )


@pytest.fixture
def estimated(monkeypatch):
    monkeypatch.setenv("NBCHAT_TOKEN_COUNTER", "estimate")


@pytest.fixture(autouse=True)
def counted(monkeypatch):
    """tiktoken where it works (the notebooks' run sets the estimate for every process)."""
    monkeypatch.delenv("NBCHAT_TOKEN_COUNTER", raising=False)


def usable_tiktoken(model: str = "gpt-4o-mini") -> Counter | None:
    tokens._encodings.clear()
    counter = tokens.counter(model)
    return counter if counter.exact else None


# -- DataFrames -------------------------------------------------------------------------------


def test_a_dataframe_goes_as_shape_dtypes_nulls_describe_and_first_rows(ip, server):
    df = frame(10_000)
    df.loc[3, "price"] = None
    ip.user_ns["df"] = df
    content = sent(ip, server, "%%chat --with df\nWhich columns look skewed?")
    assert content[0] == {"type": "text", "text": "Which columns look skewed?"}
    text = content[1]["text"]
    assert text.startswith("[notebook context: df — DataFrame 10,000 \u00d7 4]\n")
    assert "10,000 rows \u00d7 4 columns" in text
    for column, dtype in df.dtypes.items():
        assert f"| {column} | {dtype} |" in text
    assert "| price | float64 | 1 |" in text  # the null count
    assert "describe() of the numeric columns" in text and "| qty | 10000 |" in text
    assert "row-0" in text and "row-4" in text and "row-5" not in text and "row-9999" not in text


@pytest.mark.parametrize("rows", [10, 1_000_000])
@pytest.mark.parametrize("budget", [2000, 300])
def test_frame_summaries_fit_the_budget(rows, budget):
    df = frame(rows)
    summary = summarise(df, "df", budget, estimate)
    assert summary.text is not None and estimate(summary.text) <= budget
    assert "price" in summary.text  # the columns come first, whatever is trimmed
    if rows > 100_000:
        assert "from 100,000 of the 1,000,000 rows, sampled at random" in summary.text
    counter = usable_tiktoken()
    if counter is not None:
        exact = summarise(df, "df", budget, counter)
        assert exact.text is not None and counter(exact.text) <= budget


def test_a_wide_frame_counts_the_columns_it_leaves_out():
    wide = pd.DataFrame(np.zeros((3, 400)), columns=[f"c{i}" for i in range(400)])
    text = summarise(wide, "wide", 2000, estimate).text
    assert text is not None and estimate(text) <= 2000
    assert "more columns" in text and "c0" in text and "c399" not in text


def test_a_series_and_an_attribute_path(ip, server):
    ip.user_ns["df"] = frame(20)
    content = sent(ip, server, "%%chat --with df.price -w df.columns\nand these?")
    assert "Series 'price' of 20 float64" in content[1]["text"]
    assert content[2]["text"].startswith("[notebook context: df.columns — pandas.Index")
    assert "'label'" in content[2]["text"]


# -- other values -----------------------------------------------------------------------------


def test_numpy_arrays_go_as_shape_dtype_stats_and_a_sample():
    a = np.arange(12_000, dtype=np.float64).reshape(4000, 3)
    a[0, 0] = np.nan
    text = summarise(a, "a", 2000, estimate).text
    assert text is not None
    assert "shape (4000, 3), dtype float64, 12,000 elements" in text
    assert "min 1, max 11999, mean 6000" in text and "1 NaN" in text
    assert "...\n" in text and "1.1999e+04]]" in text and "6.0000e+00" in text  # a sample
    assert "1.2000e+01" not in text  # row 4: not every value


def sample_function(x: int, scale: float = 2.0) -> float:
    """Scale x."""
    return x * scale


class Sample:
    """A class."""

    def method(self) -> int:
        return 1


def test_functions_classes_and_modules_go_as_signature_docstring_and_source():
    text = summarise(sample_function, "f", 2000, estimate).text
    assert text is not None
    assert text.startswith("function sample_function(x: int, scale: float = 2.0) -> float")
    assert "Scale x." in text and "return x * scale" in text
    text = summarise(Sample, "Sample", 2000, estimate).text
    assert text is not None and "class Sample" in text and "def method(self)" in text
    text = summarise(json, "json", 200, estimate).text
    assert text is not None and text.startswith("module json (") and "more characters" in text


def test_strings_are_sent_as_written_and_trimmed_with_a_count(ip, server):
    ip.user_ns["note"] = "short {braces} stay"
    ip.user_ns["book"] = "word " * 20_000
    content = sent(ip, server, "%%chat --with note,book\nsummarise")
    assert content[1]["text"] == (
        "[notebook context: note — str, 19 characters]\nshort {braces} stay"
    )
    book = content[2]["text"]
    assert "more characters" in book and len(book) < 20_000
    kept = book.split("\n", 1)[1].rsplit("\n… ", 1)
    assert kept[1] == f"{100_000 - len(kept[0]):,} more characters"


def test_anything_else_goes_as_its_type_and_a_bounded_repr():
    class Broken:
        def __repr__(self) -> str:
            raise RuntimeError("no")

    summary = summarise({"a": 1, "b": [1, 2]}, "d", 2000, estimate)
    assert summary.kind == "dict, 2 items" and "{'a': 1, 'b': [1, 2]}" in (summary.text or "")
    big = summarise(list(range(1_000_000)), "big", 2000, estimate)
    assert big.kind == "list, 1,000,000 items" and estimate(big.text or "") <= 2000
    assert "..." in (big.text or "")
    broken = summarise(Broken(), "b", 2000, estimate)
    assert "Broken" in broken.kind and "<repr failed: RuntimeError>" in (broken.text or "")


def test_an_image_array_goes_as_an_image_part(ip, server):
    ip.user_ns["picture"] = np.zeros((8, 16, 3), dtype=np.uint8)
    content = sent(ip, server, "%%chat --with picture\nwhat is it?")
    assert content[1]["type"] == "image_url"
    assert content[1]["image_url"]["url"].startswith("data:image/png;base64,")


# -- bad input: one line, nothing sent ----------------------------------------------------------


def test_a_missing_name_or_attribute_is_one_line_and_nothing_is_sent(ip, server):
    ip.user_ns["df"] = frame(5)
    message = refused(ip, server, "%%chat --with df,dff2\nhello")
    assert "--with dff2: there is no variable 'dff2'" in message
    assert "did you mean df?" in message
    message = refused(ip, server, "%%chat --with df.colums\nhello")
    assert "df (DataFrame) has no attribute 'colums'" in message
    message = refused(ip, server, "%%chat --with 'df[0]'\nhello")
    assert "not a variable name" in message
    assert len(ip.run_line_magic("chat", "list") or "") == 0  # nothing was added


def test_the_api_key_never_leaves_in_context(ip, server):
    ip.user_ns["secret_note"] = f"my key is {TEST_KEY}"
    content = sent(ip, server, "%%chat --with secret_note\nhello")
    assert TEST_KEY not in json.dumps(server.requests[-1].body)
    assert "sk-...cdef" in content[1]["text"]


# -- the receipt --------------------------------------------------------------------------------


def test_the_receipt_comes_before_the_reply_labelled_as_an_estimate(ip, server, estimated):
    ip.user_ns["df"] = frame(10)
    result, captured = run(ip, "%%chat --with df\nWhich columns look skewed?")
    assert result.error_in_exec is None
    first = captured.outputs[0].data
    line = first["text/plain"]
    part = server.requests[-1].body["messages"][-1]["content"][1]["text"]
    tokens = estimate(part)
    assert line.startswith(f"context: df — DataFrame 10 \u00d7 4 (≈ {tokens:,} tokens) · ≈ ")
    assert "tokens in all, ≈ $0.0000" in line and line.endswith(" for the prompt")
    assert first["text/html"].startswith('<details class="nbchat-context"')
    assert "token counts: estimate" in first["text/html"]
    assert "| price | float64 |" in first["text/html"]  # the full part, escaped
    assert "Echo" in markdown_outputs(captured)[0]  # the reply follows


def test_a_comparison_keeps_its_receipt_above_the_columns(ip, server, estimated):
    """The live columns are cleared at the end; the receipt is shown again above the table."""
    from .test_render import Recorder

    ip.user_ns["df"] = frame(10)
    ip.run_line_magic("config", "ChatMagics.display_mode = 'live'")
    recorder, saved = Recorder(), ip.display_pub
    ip.display_pub = recorder
    try:
        result = ip.run_cell("%%chat -m gpt-4o-mini,gpt-4o --with df\nWhich columns look skewed?")
    finally:
        ip.display_pub = saved
    assert result.error_in_exec is None
    kinds = [m["kind"] for m in recorder.messages]
    after = recorder.messages[kinds.index("clear_output") + 1 :]
    assert after[0]["data"]["text/plain"].startswith("context: df — DataFrame 10 \u00d7 4")
    assert any("<table>" in m["data"].get("text/markdown", "") for m in after[1:])


def test_receipt_html_escapes_every_value(ip, server):
    ip.user_ns["evil"] = "<img src=x onerror=alert(1)>"
    result, captured = run(ip, "%%chat --with evil\nhi")
    assert result.error_in_exec is None
    markup = captured.outputs[0].data["text/html"]
    assert "<img" not in markup and "&lt;img src=x onerror=alert(1)&gt;" in markup


def test_receipt_counts_come_from_tiktoken_when_it_loads(ip, server, monkeypatch):
    """A stand-in tiktoken (one token per word): the receipt then shows its counts, unlabelled."""

    class Encoding:
        name = "fake_base"

        def encode(self, text: str, disallowed_special: object = ()) -> list[str]:
            return text.split()

    fake = types.ModuleType("tiktoken")
    fake.__spec__ = importlib.machinery.ModuleSpec("tiktoken", None)
    fake.get_encoding = lambda name: Encoding()  # type: ignore[attr-defined]
    fake.encoding_name_for_model = lambda model: "fake_base"  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "tiktoken", fake)
    monkeypatch.setattr(tokens, "_encodings", {})
    monkeypatch.setattr(tokens, "_loading", {})
    ip.user_ns["note"] = "one two three four"
    result, captured = run(ip, "%%chat --with note\nhi")
    assert result.error_in_exec is None
    part = server.requests[-1].body["messages"][-1]["content"][1]["text"]
    line = captured.outputs[0].data["text/plain"]
    assert f"note — str, 18 characters ({len(part.split())} tokens)" in line
    messages = server.requests[-1].body["messages"]
    words = sum(len(p["text"].split()) for p in messages[-1]["content"])
    assert f"· {3 + 3 + 1 + words} tokens in all" in line  # the cookbook's message overhead
    assert "token counts: tiktoken fake_base" in captured.outputs[0].data["text/html"]


@pytest.mark.parametrize("model", ["gpt-4o-mini", "gpt-4"])  # o200k_base, cl100k_base
def test_receipt_matches_real_tiktoken_when_usable(ip, server, model):
    counter = usable_tiktoken(model)
    if counter is None:
        pytest.skip(f"tiktoken is not installed, or cannot load {model}'s BPE file (offline)")
    ip.user_ns["df"] = frame(10)
    result, captured = run(ip, f"%%chat -m {model} --with df\nhi")
    assert result.error_in_exec is None
    part = server.requests[-1].body["messages"][-1]["content"][1]["text"]
    assert f"({counter(part):,} tokens)" in captured.outputs[0].data["text/plain"]


def test_dry_run_prints_every_part_in_full_and_sends_nothing(ip, server):
    ip.user_ns["df"] = frame(10)
    result, captured = run(ip, "%%chat --with df --dry-run -o body\nhi")
    assert result.error_in_exec is None and not server.requests
    out = captured.stdout
    assert out.startswith("context: df — DataFrame 10 \u00d7 4")
    assert "--- df — DataFrame 10 \u00d7 4 (" in out and "| 4 | " in out and "First 5 rows:" in out
    assert "POST http" in out
    assert ip.user_ns["body"]["messages"][-1]["content"][1]["text"].startswith("[notebook")


# -- the last error, earlier cells, %chat fix ---------------------------------------------------


@pytest.fixture
def no_last_error(monkeypatch):
    for name in ("last_exc", "last_value", "last_type", "last_traceback"):
        monkeypatch.delattr(sys, name, raising=False)


def test_error_with_no_exception_yet_is_one_line(ip, server, no_last_error):
    message = refused(ip, server, "%%chat --error\nwhy?")
    assert "--error: no cell has raised an exception in this kernel yet" in message
    message = refused(ip, server, "%chat fix")
    assert "no cell has raised an exception" in message


def test_error_attaches_type_message_user_frames_and_the_cell(ip, server, no_last_error):
    run_cell(ip, "import json\ndef load(text):\n    return json.loads(text)\n", True)
    result, _ = run_cell(ip, "data = load('{not json')", True)
    assert result.error_in_exec is not None
    refused(ip, server, "%%chat --temperatur 3\noops")  # nbchat's own error is not remembered
    content = sent(ip, server, "%%chat --error\nwhy?", store_history=True)
    text = content[1]["text"]
    assert text.startswith("[notebook context: the last error — JSONDecodeError in In [")
    assert "JSONDecodeError: Expecting property name enclosed in double quotes" in text
    assert "Cell In[" in text and "return json.loads(text)" in text  # the user's frames
    assert "library frames left out" in text and "json/decoder.py" in text  # where it raised
    assert "json/__init__.py" not in text  # library frames in between are left out
    assert "```python\ndata = load('{not json')\n```" in text


def test_cells_sends_the_code_of_the_previous_cells(ip, server):
    for code in ("a = 1", "b = a + 1", "c = b * 2"):
        run_cell(ip, code, True)
    content = sent(ip, server, "%%chat --cells 2\nexplain", store_history=True)
    text = content[1]["text"]
    assert text.startswith("[notebook context: the last 2 cells — In [")
    assert "b = a + 1" in text and "c = b * 2" in text
    assert "a = 1\n" not in text and "--cells" not in text
    assert "refused" not in text
    message = refused_cells(ip, server)
    assert "--cells takes a number from 1 to 50, not 0" in message


def refused_cells(ip, server) -> str:
    server.clear()
    return refused(ip, server, "%%chat --cells 0\nexplain")


def test_fix_proposes_the_fenced_code_as_the_next_input(ip, server, no_last_error):
    run_cell(ip, "1 / 0", True)
    ip.rl_next_input = None
    result, captured = run_cell(ip, "%chat fix", True)
    assert result.error_in_exec is None
    content = server.requests[-1].body["messages"][-1]["content"]
    assert content[0]["text"].startswith("Explain in a few sentences what caused the error")
    assert "ZeroDivisionError: division by zero" in content[1]["text"]
    reply = markdown_outputs(captured)[0]
    expected = "print('Explain in a few sentences what caused t')"
    assert ip.rl_next_input == proposed_code(reply) == expected
    assert "proposed cell is in a new cell below, not run" in captured.stdout


def test_proposed_code_takes_the_last_python_fence():
    text = "Because.\n\n```text\nnot code\n```\n\n```python\nx = 1\nprint(x)\n```\nDone."
    assert proposed_code(text) == "x = 1\nprint(x)"
    assert proposed_code("~~~\nplain\n~~~\n") == "plain"
    assert proposed_code("no code here") is None


# -- the conversation, the record, export ---------------------------------------------------------


def test_context_stays_in_the_conversation_and_the_export_as_sent(ip, server, tmp_path):
    ip.user_ns["df"] = frame(10)
    content = sent(ip, server, "%%chat --with df\nfirst")
    assert run(ip, "%%chat\nsecond")[0].error_in_exec is None
    assert server.requests[-1].body["messages"][0]["content"] == content  # kept as sent
    path = tmp_path / "talk.json"
    result, _ = run(ip, f"%chat export {path}")
    assert result.error_in_exec is None
    exchanges = json.loads(path.read_text())["exchanges"]
    assert exchanges[0]["request"]["messages"][-1]["content"] == content
    user = ip.find_magic("chat").__self__.session.conversation().turns[0].user
    assert prompt_and_parts(user) == ("first", [("df", "DataFrame 10 \u00d7 4")])


def test_the_record_keeps_the_request_with_its_context(ip, server):
    ip.user_ns["x"] = 42
    content = sent(ip, server, "%%chat -w x\nwhat is x?")
    assert content[1]["text"] == "[notebook context: x — int]\nint:\n42"
    magics = ip.find_magic("chat").__self__
    record = magics._recorder.open()
    (row,) = record.query("SELECT request FROM exchanges ORDER BY id DESC LIMIT 1")
    assert json.loads(row[0])["messages"][-1]["content"] == content


def test_without_flags_nothing_from_the_namespace_is_sent(ip, server):
    ip.user_ns["df"] = frame(10)
    result, _ = run(ip, "%%chat\nWhat about df?")
    assert result.error_in_exec is None
    assert server.requests[-1].body["messages"][-1]["content"] == "What about df?"
    assert plain_outputs(_)[0].startswith("## Echo")


# -- the panel -------------------------------------------------------------------------------


def test_the_panel_attaches_names_and_shows_the_receipt(ip, server, estimated):
    import nbchat

    from .test_widget import html_in, last_chat

    ip.user_ns["df"] = frame(10)
    panel = nbchat.panel(ip)
    try:
        panel.attach.value = "df, dff"
        panel.prompt.value = "Which columns look skewed?"
        panel.send.click()
        assert "--with dff: there is no variable &#x27;dff&#x27;" in panel.status.value
        assert not [r for r in server.requests if r.path.endswith("/chat/completions")]
        assert panel.prompt.value == "Which columns look skewed?"  # nothing was sent or lost
        panel.attach.value = "df"
        panel.send.click()
        assert panel.wait(30)
        content = last_chat(server)["messages"][-1]["content"]
        assert content[0]["text"] == "Which columns look skewed?"
        assert content[1]["text"].startswith("[notebook context: df — DataFrame 10 \u00d7 4]")
        assert html_in(panel.transcript, "nbchat-you") == ["Which columns look skewed?"]
        (receipt,) = html_in(panel.transcript, "nbchat-context")
        assert receipt.startswith("context: df — DataFrame 10 \u00d7 4 (≈ ")
        assert panel.attach.value == "" and not panel.attach_error.value  # one turn only
        panel.conversations.value = panel.new_conversation()
        panel.name = "default"
        panel.refresh()  # rebuilt from the conversation: the receipt is still there
        assert html_in(panel.transcript, "nbchat-context") == [receipt]
    finally:
        panel.close()
        panel.wait(30)


def test_the_panel_attaches_the_last_error(ip, server, no_last_error):
    import nbchat

    from .test_widget import html_in, last_chat

    run_cell(ip, "{}['missing']", True)
    panel = nbchat.panel(ip)
    try:
        panel.attach_error.value = True
        panel.prompt.value = "why?"
        panel.send.click()
        assert panel.wait(30)
        content = last_chat(server)["messages"][-1]["content"]
        assert "KeyError: 'missing'" in content[1]["text"]
        (receipt,) = html_in(panel.transcript, "nbchat-context")
        assert "the last error — KeyError in In [" in receipt
    finally:
        panel.close()
        panel.wait(30)
