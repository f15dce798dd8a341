"""Settings from an ipython_config.py profile, from %config and from the environment."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

from nbchat.config import DEFAULT_BASE_URL
from nbchat.types import Secret

from .conftest import TEST_KEY, run


def magics_of(ip):
    return ip.find_cell_magic("chat").__self__


def test_profile_config_is_read_when_the_extension_loads(bare_ip, server):
    bare_ip.config.ChatMagics.base_url = server.url
    bare_ip.config.ChatMagics.api_key = TEST_KEY
    bare_ip.config.ChatMagics.model = "gpt-4.1-mini"
    bare_ip.config.ChatMagics.organization = "org-profile"
    bare_ip.config.ChatMagics.project = "proj-profile"
    bare_ip.run_line_magic("load_ext", "nbchat")
    result, _ = run(bare_ip, "%%chat\nhi")
    assert result.error_in_exec is None
    request = server.requests[-1]
    assert request.body["model"] == "gpt-4.1-mini"
    assert request.headers["authorization"] == f"Bearer {TEST_KEY}"
    assert request.headers["openai-organization"] == "org-profile"
    assert request.headers["openai-project"] == "proj-profile"


def test_environment_is_the_fallback(bare_ip, server, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", TEST_KEY)
    monkeypatch.setenv("OPENAI_ORG_ID", "org-env")
    monkeypatch.setenv("OPENAI_PROJECT_ID", "proj-env")
    monkeypatch.setenv("OPENAI_BASE_URL", server.url)
    bare_ip.run_line_magic("load_ext", "nbchat")
    result, _ = run(bare_ip, "%%chat\nhi")
    assert result.error_in_exec is None
    headers = server.requests[-1].headers
    assert headers["authorization"] == f"Bearer {TEST_KEY}"
    assert headers["openai-organization"] == "org-env"
    assert headers["openai-project"] == "proj-env"


def test_no_org_or_project_headers_unless_set(ip, server):
    run(ip, "%%chat\nhi")
    headers = server.requests[-1].headers
    assert "openai-organization" not in headers and "openai-project" not in headers


def test_config_at_run_time_changes_the_next_request(ip, server):
    run(ip, "%%chat\nhi")
    ip.run_line_magic("config", "ChatMagics.model = 'gpt-4o'")
    ip.run_line_magic("config", "ChatMagics.organization = 'org-later'")
    run(ip, "%%chat\nhi again")
    assert server.requests[-1].body["model"] == "gpt-4o"
    assert server.requests[-1].headers["openai-organization"] == "org-later"


def test_env_config_wins_over_env(bare_ip, server, monkeypatch):
    monkeypatch.setenv("OPENAI_BASE_URL", "http://127.0.0.1:9/v1")
    bare_ip.config.ChatMagics.base_url = server.url
    bare_ip.run_line_magic("load_ext", "nbchat")
    assert magics_of(bare_ip).base_url == server.url


def test_defaults(bare_ip):
    bare_ip.run_line_magic("load_ext", "nbchat")
    magics = magics_of(bare_ip)
    assert magics.base_url == DEFAULT_BASE_URL
    assert magics.model == "gpt-4o-mini"
    assert magics.api_key is None
    assert magics.max_retries == 2 and magics.timeout == 60 and magics.show_usage is True


def test_every_setting_has_help(bare_ip):
    bare_ip.run_line_magic("load_ext", "nbchat")
    traits = type(magics_of(bare_ip)).class_traits(config=True)
    assert {
        "api_key",
        "organization",
        "project",
        "base_url",
        "model",
        "system_prompt",
        "timeout",
        "max_retries",
        "show_usage",
        "update_interval",
    } <= set(traits)
    for name, trait in traits.items():
        assert trait.help and len(trait.help) > 15, name


def test_key_is_masked_in_config_listing_and_reprs(ip, capsys):
    ip.run_line_magic("config", "ChatMagics")
    listing = capsys.readouterr().out
    assert "ChatMagics.api_key" in listing
    assert TEST_KEY not in listing
    assert "sk-...cdef" in listing
    value = ip.run_line_magic("config", "ChatMagics.api_key")
    assert TEST_KEY not in repr(value) and TEST_KEY not in str(value)
    magics = magics_of(ip)
    assert TEST_KEY not in repr(magics.settings())
    assert TEST_KEY not in repr(magics.api_key)


def test_secret_is_not_picklable():
    import pickle

    with pytest.raises(TypeError):
        pickle.dumps(Secret(TEST_KEY))


@pytest.mark.parametrize(
    ("statement", "fragment"),
    [
        ("ChatMagics.base_url = 'api.openai.com'", "http"),
        ("ChatMagics.timeout = -1", "positive"),
        ("ChatMagics.max_retries = 99", "between 0 and 10"),
        ("ChatMagics.prices = {'m': 'cheap'}", "USD per 1M"),
    ],
)
def test_invalid_settings_are_refused_with_a_readable_message(ip, caplog, statement, fragment):
    before = magics_of(ip).settings()
    ip.run_line_magic("config", statement)  # %config logs the error in one line
    assert fragment in caplog.text
    assert magics_of(ip).settings() == before


def test_ipython_config_profile_in_a_real_process(tmp_path, server):
    """c.ChatMagics.* in an ipython_config.py of a real profile directory."""
    profile = tmp_path / "profile_nbchat"
    profile.mkdir()
    (profile / "ipython_config.py").write_text(
        textwrap.dedent(f"""
        c.InteractiveShellApp.extensions = ["nbchat"]
        c.ChatMagics.base_url = {server.url!r}
        c.ChatMagics.model = "gpt-4.1-nano"
        c.ChatMagics.project = "proj-file"
        """)
    )
    script = tmp_path / "turn.ipy"
    script.write_text("%%chat\nhello from a profile\n")
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "IPYTHONDIR": str(tmp_path)}
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "IPython",
            "--profile-dir",
            str(profile),
            "--no-banner",
            "--colors=nocolor",
            str(script),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )
    assert done.returncode == 0, done.stderr
    assert "## Echo" in done.stdout
    assert server.requests[-1].body["model"] == "gpt-4.1-nano"
    assert server.requests[-1].headers["openai-project"] == "proj-file"
