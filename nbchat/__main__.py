"""Command line: `python -m nbchat demo` and `python -m nbchat mockserver`."""

from __future__ import annotations

import argparse
import sys


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="nbchat", description="nbchat command line")
    commands = parser.add_subparsers(dest="command", required=True)
    demo = commands.add_parser("demo", help="run the quickstart notebook and write an HTML copy")
    demo.add_argument("--out", default="demo-output", help="folder for the executed notebook")
    demo.add_argument("--notebook", default="quickstart.ipynb", help="which notebook to run")
    commands.add_parser(
        "mockserver", help="run the local OpenAI-compatible mock server", add_help=False
    )
    args, rest = parser.parse_known_args(argv)
    if args.command == "mockserver":
        from .mockserver import main as serve

        return serve(rest)
    from .demo import run_demo

    run_demo(args.out, args.notebook)
    return 0


if __name__ == "__main__":
    sys.exit(main())
