"""A built wheel installs into a fresh venv (no editable install) and runs the quickstart;
auto-loading is switched on and off with one command; the example config is valid."""

from __future__ import annotations

import os
import subprocess
import sys
import tarfile
import venv
import zipfile
from pathlib import Path

import pytest
from traitlets.config.loader import PyFileConfigLoader

from nbchat import autoload
from nbchat.magics import ChatMagics

ROOT = Path(__file__).resolve().parent.parent


def clean_env(**extra: str) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("OPENAI_", "NBCHAT_", "PYTHON", "VIRTUAL_ENV"))
    }
    return {**env, **extra}


def test_wheel_installs_in_a_fresh_venv_and_runs_the_quickstart(tmp_path):
    dist = tmp_path / "dist"
    subprocess.run(
        [sys.executable, "-m", "build", "--no-isolation", "--outdir", str(dist), str(ROOT)],
        check=True,
        capture_output=True,
        timeout=300,
    )
    wheels = list(dist.glob("nbchat-*.whl"))
    (sdist,) = dist.glob("nbchat-*.tar.gz")
    assert len(wheels) == 1
    with tarfile.open(sdist) as archive:  # the sdist can run the tests (MANIFEST.in)
        names = {name.partition("/")[2] for name in archive.getnames()}
    needed = {
        "conftest.py",
        ".ci/run",
        "tests/conftest.py",
        "tests/__init__.py",
        "tests/kernels.py",
    }
    needed |= {"tests/openapi.py", "tests/data/openai.json", "tests/e2e/test_panel_browser.py"}
    needed |= {"benchmarks/startup.py", "notebooks/quickstart.ipynb", "LICENSE"}
    assert needed <= names, needed - names
    assert not [name for name in names if "__pycache__" in name or name.endswith(".pyc")]
    with zipfile.ZipFile(wheels[0]) as wheel:  # the wheel: the package only
        assert not [name for name in wheel.namelist() if name.startswith(("tests/", "bench"))]
    env_dir = tmp_path / "venv"
    venv.create(env_dir, with_pip=True)
    python = env_dir / "bin" / "python"
    install = subprocess.run(
        [str(python), "-m", "pip", "install", "-q", f"nbchat[demo] @ {wheels[0].as_uri()}"],
        capture_output=True,
        text=True,
        timeout=600,
        env=clean_env(),
    )
    assert install.returncode == 0, install.stderr[-2000:]
    where = subprocess.run(
        [str(python), "-c", "import nbchat, sys; print(nbchat.__file__); print(sys.prefix)"],
        capture_output=True,
        text=True,
        check=True,
        cwd=tmp_path,
        env=clean_env(),
    ).stdout
    assert str(env_dir) in where.splitlines()[0]  # the wheel's copy, not this checkout
    out = tmp_path / "out"
    demo = subprocess.run(
        [str(python), "-m", "nbchat", "demo", "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,
        env=clean_env(PATH=f"{env_dir / 'bin'}:{os.environ['PATH']}"),
    )
    assert demo.returncode == 0, demo.stdout[-2000:] + demo.stderr[-2000:]
    assert "using nbchat's local mock server" in demo.stdout
    html = (out / "quickstart.html").read_text()
    assert "Echo" in html and "completion" in html and "tokens" in html
    assert (env_dir / "share" / "nbchat" / "jupyter-config" / "ipython_config_nbchat.py").is_file()


def test_autoload_on_and_off(tmp_path):
    env = clean_env(IPYTHONDIR=str(tmp_path))

    def ipython(code: str) -> str:
        done = subprocess.run(
            [sys.executable, "-m", "IPython", "--no-banner", "--colors=nocolor", "-c", code],
            capture_output=True,
            text=True,
            timeout=120,
            env=env,
            cwd=tmp_path,
        )
        return done.stdout + done.stderr

    def cli(action: str) -> str:
        return subprocess.run(
            [sys.executable, "-m", "nbchat", "autoload", action],
            capture_output=True,
            text=True,
            timeout=60,
            env=env,
            check=True,
        ).stdout

    assert "is off" in cli("status")
    assert "UsageError" in ipython("%chat help")  # not loaded
    assert "now loads" in cli("on")
    assert "is on" in cli("status")
    assert autoload.startup_file(ipython_dir=str(tmp_path)).is_file()
    assert "%chat reset" in ipython("%chat help")
    assert "turned off" in cli("off")
    assert "UsageError" in ipython("%chat help")
    assert "was not on" in cli("off")


def test_example_config_names_only_real_settings(tmp_path):
    """Uncomment every `c.ChatMagics.x = ...` line of the example: each must be a real
    trait, and every setting of ChatMagics must have its line."""
    source = (ROOT / "jupyter-config" / "ipython_config_nbchat.py").read_text()
    lines = [line[2:] if line.startswith("# c.") else line for line in source.splitlines()]
    lines = [line for line in lines if "MY_OPENAI_KEY" not in line]
    (tmp_path / "ipython_config.py").write_text("\n".join(lines))
    config = PyFileConfigLoader("ipython_config.py", path=str(tmp_path)).load_config()
    names = set(config.ChatMagics) | {"api_key"}  # the key's line reads a variable
    traits = set(ChatMagics.class_traits(config=True))
    assert names <= traits, f"not settings: {names - traits}"
    assert traits <= names, f"missing from the example: {traits - names}"
    magics = ChatMagics(config=config)  # every value validates
    assert magics.model == "gpt-4o-mini" and magics.record is True


@pytest.mark.parametrize("name", ["quickstart.ipynb"])
def test_demo_finds_its_notebook(name):
    from nbchat.demo import find_notebook

    assert find_notebook(name).is_file()
