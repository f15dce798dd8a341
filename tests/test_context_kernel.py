"""Context from the notebook in a real kernel, as JupyterLab runs it: a DataFrame's summary,
the last error with its traceback and cell, `--cells`, `%chat fix`'s new cell (the
execute reply's `set_next_input` payload), and re-running a cell replacing its context."""

from __future__ import annotations

import uuid

import pytest

from .kernels import running_kernel
from .test_kernel import SETUP, kernel_env
from .test_kernel_memory import iopub, send

pytest.importorskip("pandas")


@pytest.fixture(scope="module")
def kernel():
    with running_kernel(kernel_env()) as client:
        yield client


def execute(client, code: str, cell_id: str | None = None) -> tuple[list[dict], dict]:
    """Run `code` as a notebook cell: (its iopub messages, its execute reply)."""
    msg_id = send(client, code, cell_id or uuid.uuid4().hex)
    messages = list(iopub(client, msg_id))
    while True:
        reply = client.get_shell_msg(timeout=60)
        if reply["parent_header"].get("msg_id") == msg_id:
            return messages, reply["content"]


def ok(client, code: str, cell_id: str | None = None) -> tuple[list[dict], dict]:
    messages, reply = execute(client, code, cell_id)
    assert reply["status"] == "ok", [m["content"] for m in messages]
    return messages, reply


def user_parts(server) -> list[dict]:
    content = server.requests[-1].body["messages"][-1]["content"]
    assert isinstance(content, list)
    return content


def test_error_before_any_exception_is_one_line_and_sends_nothing(kernel, server):
    ok(kernel, SETUP.format(url=server.url))
    messages, reply = execute(kernel, "%%chat --error\nwhy?")
    assert reply["status"] == "error" and not server.requests
    (error,) = [m["content"] for m in messages if m["msg_type"] == "error"]
    assert error["traceback"][0].endswith(
        "nbchat: --error: no cell has raised an exception in this kernel yet\x1b[0m"
    )


def test_a_dataframe_summary_holds_columns_dtypes_shape_and_first_rows_only(kernel, server):
    ok(kernel, SETUP.format(url=server.url))
    ok(
        kernel,
        "import numpy as np, pandas as pd\n"
        "rng = np.random.default_rng(1)\n"
        "df = pd.DataFrame({'amount': rng.lognormal(2, 1, 10_000),\n"
        "                   'shop': [f'shop-{i}' for i in range(10_000)],\n"
        "                   'day': pd.date_range('2024-01-01', periods=10_000, freq='h')})",
    )
    messages, _ = ok(kernel, "%%chat --with df\nWhich columns look skewed?")
    text = user_parts(server)[1]["text"]
    assert "10,000 rows \u00d7 3 columns" in text
    for column, dtype in (("amount", "float64"), ("shop", "str"), ("day", "datetime64")):
        assert f"| {column} | {dtype}" in text
    assert "| 0 | " in text and "shop-0" in text and "shop-4" in text
    assert "shop-9999" not in text and "shop-5 " not in text
    # The receipt comes before the reply, and stays above it after the cell is cleared.
    shown = [m["content"]["data"] for m in messages if m["msg_type"] == "display_data"]
    kinds = ["receipt" if "text/html" in d and "nbchat-context" in d["text/html"] else
             "reply" if "text/markdown" in d else "other" for d in shown]  # fmt: skip
    clear = [m["msg_type"] for m in messages].index("clear_output")
    after = [m for m in messages[clear:] if m["msg_type"] == "display_data"]
    assert kinds[0] == "receipt"
    assert "nbchat-context" in after[0]["content"]["data"]["text/html"]
    assert "text/markdown" in after[1]["content"]["data"]
    assert after[0]["content"]["data"]["text/plain"].startswith(
        "context: df — DataFrame 10,000 \u00d7 3 (≈ "
    )


def test_error_sends_the_traceback_and_the_failing_cell(kernel, server):
    ok(kernel, SETUP.format(url=server.url))
    ok(kernel, "def total(rows):\n    return sum(r['price'] for r in rows)")
    failing = "orders = [{'price': 3}, {'cost': 4}]\ntotal(orders)"
    _, reply = execute(kernel, failing)
    assert reply["status"] == "error"
    execute(kernel, "%%chat --no-such-flag\noops")  # nbchat's own error: not the last error
    ok(kernel, "%%chat --error\nWhat went wrong?")
    text = user_parts(server)[1]["text"]
    assert text.startswith("[notebook context: the last error — KeyError in In [")
    assert "KeyError: 'price'" in text
    assert "Traceback (most recent call last" in text
    assert "return sum(r['price'] for r in rows)" in text and "total(orders)" in text
    assert "ipykernel" not in text  # cells are named `Cell In[n]`, not by their temp files
    assert f"```python\n{failing}\n```" in text


def test_fix_puts_the_proposed_cell_in_a_set_next_input_payload(kernel, server):
    ok(kernel, SETUP.format(url=server.url))
    execute(kernel, "import math\nmath.sqrt(-1)")
    messages, reply = ok(kernel, "%chat fix")
    content = user_parts(server)
    assert "ValueError: math domain error" in content[1]["text"]
    (payload,) = [p for p in reply["payload"] if p["source"] == "set_next_input"]
    assert payload["text"] == "print('Explain in a few sentences what caused t')"
    assert payload["replace"] is False
    shown = [m["content"]["data"] for m in messages if m["msg_type"] == "display_data"]
    markdown = [data["text/markdown"] for data in shown if "text/markdown" in data]
    assert f"```python\n{payload['text']}\n```" in markdown[-1]  # the code block it came from


def test_cells_sends_the_two_previous_cells(kernel, server):
    ok(kernel, SETUP.format(url=server.url))
    for code in ("x = 10", "y = x * 2", "z = y - 3"):
        ok(kernel, code)
    ok(kernel, "%%chat --cells 2\nWhat do these cells do?")
    text = user_parts(server)[1]["text"]
    assert "y = x * 2" in text and "z = y - 3" in text
    assert "x = 10" not in text and "What do these cells do?" not in text


def test_rerunning_a_cell_replaces_its_turn_and_its_context(kernel, server):
    ok(kernel, SETUP.format(url=server.url))
    ok(kernel, "%chat reset")
    ok(kernel, "value = 'first version'")
    ok(kernel, "%%chat --with value\nlook", cell_id="cell-A")
    ok(kernel, "value = 'second version'")
    ok(kernel, "%%chat --with value\nlook", cell_id="cell-A")
    messages = server.requests[-1].body["messages"]
    assert len(messages) == 1  # the first run's turn, context and all, was replaced
    assert "second version" in messages[0]["content"][1]["text"]
    ok(kernel, "%%chat\nand?")
    texts = str(server.requests[-1].body["messages"])
    assert "second version" in texts and "first version" not in texts
