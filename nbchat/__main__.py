"""Command line: `python -m nbchat demo | autoload on|off|status | mockserver`."""

from __future__ import annotations

import argparse
import sys


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="nbchat", description="nbchat command line")
    commands = parser.add_subparsers(dest="command", required=True)
    demo = commands.add_parser("demo", help="run the quickstart notebook and write an HTML copy")
    demo.add_argument("--out", default="demo-output", help="folder for the executed notebook")
    demo.add_argument("--notebook", default="quickstart.ipynb", help="which notebook to run")
    autoload = commands.add_parser("autoload", help="load nbchat in every IPython kernel (opt-in)")
    autoload.add_argument("action", choices=["on", "off", "status"])
    autoload.add_argument("--profile", default="default", help="IPython profile (default: default)")
    commands.add_parser(
        "mockserver", help="run the local OpenAI-compatible mock server", add_help=False
    )
    args, rest = parser.parse_known_args(argv)
    if args.command == "mockserver":
        from .mockserver import main as serve

        return serve(rest)
    if rest:
        parser.error(f"unrecognized arguments: {' '.join(rest)}")
    if args.command == "autoload":
        return _autoload(args.action, args.profile)
    from .demo import run_demo

    run_demo(args.out, args.notebook)
    return 0


def _autoload(action: str, profile: str) -> int:
    from . import autoload

    path = autoload.startup_file(profile)
    if action == "on":
        autoload.enable(profile)
        print(f"nbchat now loads in every kernel of profile {profile!r} ({path})")
    elif action == "off":
        removed = autoload.disable(profile)
        print(f"nbchat auto-loading {'turned off' if removed else 'was not on'} ({path})")
    else:
        print(f"nbchat auto-loading is {'on' if autoload.status(profile) else 'off'} ({path})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
