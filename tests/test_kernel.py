"""In a real kernel (as JupyterLab, Notebook 7 and VS Code run it): the reply streams
as display updates, and the saved notebook keeps one clean Markdown output."""

from __future__ import annotations

import os
import time

import nbformat
import pytest
from nbclient import NotebookClient

from nbchat.mockserver import reply_pieces

from .conftest import ENV
from .kernels import collect, running_kernel

SETUP = (
    "%load_ext nbchat\n"
    "%config ChatMagics.base_url = {url!r}\n"
    "%config ChatMagics.update_interval = 0.05"
)
MODEL = "gpt-4o-mini@chunks=400,delay=0.002,reply=markdown"


@pytest.fixture(scope="module")
def kernel():
    with running_kernel(kernel_env()) as client:
        yield client


def kernel_env() -> dict[str, str]:
    """This process's environment without nbchat/OpenAI settings (display mode 'auto')."""
    return {k: v for k, v in os.environ.items() if k not in ENV}


def execute(client, code: str) -> list[dict]:
    """Run code; return the iopub messages that belong to it."""
    return collect(client, client.execute(code))


def test_reply_streams_as_display_updates_then_one_clean_output(kernel, server):
    execute(kernel, SETUP.format(url=server.url))
    started = time.perf_counter()
    messages = execute(kernel, f"%%chat -m {MODEL}\nwrite a report")
    elapsed = time.perf_counter() - started
    kinds = [m["msg_type"] for m in messages]
    assert "error" not in kinds, messages
    clear = kinds.index("clear_output")
    assert kinds[:clear].count("update_display_data") >= 3  # streamed in place
    # bounded by the update rate (at most 3 messages per 0.05 s update), not by the 400
    # chunks: the bound comes from the measured duration, at least 0.8 s of streaming
    published = sum(kind.endswith("display_data") for kind in kinds[:clear])
    assert published <= 3 * (elapsed / 0.05 + 1)
    final = [m for m in messages[clear:] if m["msg_type"] == "display_data"]
    text = reply_text(reply="markdown", chunks=400)
    assert final[0]["content"]["data"]["text/markdown"] == text
    assert "400 completion" in final[1]["content"]["data"]["text/plain"]
    # live outputs are Markdown only, and each finished block is sent once
    live = [m["content"]["data"] for m in messages[:clear] if "data" in m["content"]]
    assert all(set(data) == {"text/markdown"} for data in live)
    assert sum(len(data["text/markdown"]) for data in live) < 3 * len(text)


def test_a_long_paragraph_streams_in_pieces_that_join_up(kernel, server):
    execute(kernel, SETUP.format(url=server.url))
    model = "gpt-4o-mini@chunks=1300,delay=0.0005,reply=paragraph"
    messages = execute(kernel, f"%%chat -m {model}\nwrite a report")
    kinds = [m["msg_type"] for m in messages]
    clear = kinds.index("clear_output")
    live = [m["content"]["data"] for m in messages[:clear] if "data" in m["content"]]
    heads = [data["text/html"] for data in live if "text/html" in data]
    assert heads and all(h.startswith('<p style="margin:0">') for h in heads)
    text = reply_text(reply="paragraph", chunks=1300)
    sent = sum(len(data.get("text/markdown", data.get("text/html", ""))) for data in live)
    assert sent < 12 * len(text)  # re-sending the growing paragraph would be ~20x
    final = [m for m in messages[clear:] if m["msg_type"] == "display_data"]
    assert final[0]["content"]["data"]["text/markdown"] == text


def reply_text(**options: object) -> str:
    prompt = [{"role": "user", "content": "write a report"}]
    return "".join(reply_pieces(prompt, "gpt-4o-mini", **options))  # type: ignore[arg-type]


def test_saved_notebook_holds_exactly_one_markdown_output(server, tmp_path):
    nb = nbformat.v4.new_notebook()
    nb.cells = [
        nbformat.v4.new_code_cell(SETUP.format(url=server.url)),
        nbformat.v4.new_code_cell(f"%%chat -m {MODEL}\nwrite a report"),
    ]
    NotebookClient(nb, timeout=120, kernel_name="python3").execute(env=kernel_env())
    path = tmp_path / "saved.ipynb"
    nbformat.write(nb, path)
    outputs = nbformat.read(path, as_version=4).cells[1].outputs
    markdown = [o for o in outputs if "text/markdown" in o.get("data", {})]
    assert len(markdown) == 1
    assert markdown[0]["data"]["text/markdown"].startswith("# ")
    assert len(outputs) == 2  # the reply and its footer
