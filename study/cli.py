"""The `camstudy` command line: one subcommand per module in `study.commands`.

Each command module defines `add_arguments(parser)` and `run(args) -> int`. Modules are
imported only when their command runs, so `camstudy --help` stays fast and a command's heavy
imports (torch, streamlit) are paid only by that command.
"""
from __future__ import annotations

import argparse
import importlib
import sys

COMMANDS = {
    "explain": "write saliency maps (.npy) and overlays for images and methods",
    "score": "compute faithfulness, localization and sanity metrics into faithfulness.csv",
    "build": "render the stimuli, trial plans and database of a study from its config",
    "serve": "run the survey (Streamlit) for a study folder, on one process or several",
    "deploy": "write an nginx configuration (HTTPS, sticky websockets, static stimuli) and a compose.yaml for a study",
    "export": "write the tidy CSVs, codebook and statistics of a study",
    "report": "write a self-contained HTML report of a study",
    "links": "print signed participant links for a study (signed_links = true), or pilot links",
    "reset-pilot": "remove every pilot participant's data from a study before its launch",
    "erase": "delete everything about one participant of a study, on their request",
    "release": "let another browser continue one participant's link (a lost cookie and resume code)",
    "admin-unlock": "lift the admin page's sign-in lockout",
    "simulate": "fill a built study with seeded simulated participants (ids SIM-...)",
    "power": "power of a planned study's accuracy analysis, by simulation",
    "demo": "everything above on the embedded default model and bundled photos",
    "train-abn": "train an Attention Branch Network on digits or a folder of class folders",
}


class UsageError(ValueError):
    """A problem with what the user asked for; printed as one line, exit status 2.

    Library code raises ValueError / FileNotFoundError / LookupError with messages that name the
    problem; the CLI prints those the same way instead of a traceback.
    """


def _parser(argv: list[str]) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="camstudy", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    # Only the chosen command's module is imported; the others are listed by name.
    chosen = next((a for a in argv if a in COMMANDS), None)
    for name, help_text in COMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        if name == chosen:
            module = importlib.import_module(f"study.commands.{name.replace('-', '_')}")
            module.add_arguments(p)
            p.set_defaults(_run=module.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    command = next((a for a in argv if a in COMMANDS), "")
    try:
        args = _parser(argv).parse_args(argv)
        return int(args._run(args) or 0)
    except ImportError as err:   # a broken installation, or an optional extra that is not installed
        print(f"camstudy {command}: error: cannot import {err.name or err} ({err}); reinstall camstudy, or install "
              "the extra that provides it (pip install 'camstudy[compare,postgres,timm,hf]')", file=sys.stderr)
        return 2
    except (ValueError, LookupError, FileNotFoundError) as err:
        message = str(err).strip().strip("'\"") or type(err).__name__
        print(f"camstudy {command}: error: {message}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
