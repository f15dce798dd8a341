"""Fixtures: a local OpenAI-compatible mock server and a fresh IPython shell.

Every chat request the server received during a test is validated against the
official `CreateChatCompletionRequest` schema when the test ends, so no test
can pass while nbchat sends something the real API would refuse.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from IPython.core.interactiveshell import InteractiveShell
from IPython.utils.capture import CapturedIO, capture_output

from nbchat.mockserver import MockServer

from .openapi import validator

TEST_KEY = "sk-test-NBCHAT-fake-key-0123456789abcdef"
ENV = (
    "OPENAI_API_KEY",
    "OPENAI_ORG_ID",
    "OPENAI_PROJECT_ID",
    "OPENAI_BASE_URL",
    "NBCHAT_DISPLAY_MODE",
)


@pytest.fixture(scope="session")
def mock_server() -> Iterator[MockServer]:
    with MockServer(delay=0, ttft=0) as server:
        yield server


@pytest.fixture
def server(mock_server: MockServer) -> Iterator[MockServer]:
    """The shared mock server with an empty request log; checks every request body."""
    mock_server.clear()
    yield mock_server
    check = validator("CreateChatCompletionRequest")
    for request in mock_server.requests:
        # A body cut short by an interrupt (None) was never sent whole: nothing to check.
        if request.path.endswith("/chat/completions") and request.body is not None:
            errors = [e.message for e in check.iter_errors(request.body)]
            assert not errors, f"request body refused by the OpenAPI schema: {errors[:3]}"


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in ENV:
        monkeypatch.delenv(name, raising=False)
    # the exchange record of each test is its own, never the user's
    monkeypatch.setenv("NBCHAT_HISTORY_PATH", str(tmp_path / "history.sqlite"))


@pytest.fixture
def bare_ip(clean_env: None) -> Iterator[InteractiveShell]:
    """The IPython shell with nbchat not loaded and no config (tests set it first)."""
    ip = InteractiveShell.instance()
    _unload(ip)
    ip.config.pop("ChatMagics", None)
    yield ip
    _unload(ip)
    ip.config.pop("ChatMagics", None)


@pytest.fixture
def ip(bare_ip: InteractiveShell, server: MockServer) -> InteractiveShell:
    """A shell with nbchat loaded and pointed at the mock server."""
    bare_ip.run_line_magic("load_ext", "nbchat")
    bare_ip.run_line_magic("config", f"ChatMagics.base_url = {server.url!r}")
    bare_ip.run_line_magic("config", f"ChatMagics.api_key = {TEST_KEY!r}")
    return bare_ip


def _unload(ip: InteractiveShell) -> None:
    if "nbchat" in ip.extension_manager.loaded:
        ip.run_line_magic("unload_ext", "nbchat")


def run(ip: InteractiveShell, cell: str) -> tuple[Any, CapturedIO]:
    """Run a cell, capturing stdout and rich outputs; returns (result, captured)."""
    with capture_output() as captured:
        result = ip.run_cell(cell)
    return result, captured


def markdown_outputs(captured: CapturedIO) -> list[str]:
    return [o.data["text/markdown"] for o in captured.outputs if "text/markdown" in o.data]


def plain_outputs(captured: CapturedIO) -> list[str]:
    return [o.data.get("text/plain", "") for o in captured.outputs]
