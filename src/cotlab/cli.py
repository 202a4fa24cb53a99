"""`cotlab <command> ...`: one subcommand per pipeline stage; the Snakemake rules call exactly these.

Each command lives in its own module with ``add_arguments(parser)`` and ``main(args) -> int``.
Modules are imported only when their command runs, so `cotlab generate` never imports torch.
A bad value (ConfigError) or an OS error (no space, no permission, a file in the way) is one line
on stderr, `cotlab <command>: error: ...`, and exit status 2; argparse's own errors exit 2 as well.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys

from cotlab import __version__
from cotlab.config import ConfigError, clip

# name -> (module, one-line description)
COMMANDS: dict[str, tuple[str, str]] = {
    "generate": ("cotlab.data.generate_cli", "generate one split of a data point as Parquet shards"),
    "coverage": ("cotlab.data.coverage", "TokenCoverage, answer entropy and majority baselines of a dataset"),
    "train": ("cotlab.train", "train a model on a dataset (DDP via torchrun), evaluating as it goes"),
    "evaluate": ("cotlab.evaluate", "score a trained model with and without CoT"),
    "aggregate": ("cotlab.aggregate", "join an experiment's runs into its table and figure"),
    "plan": ("cotlab.plan", "jobs, training tokens and estimated GPU hours of a workflow config"),
}


def top_parser() -> argparse.ArgumentParser:
    lines = "\n".join(f"  {name:<10} {desc}" for name, (_, desc) in COMMANDS.items())
    parser = argparse.ArgumentParser(
        prog="cotlab", formatter_class=argparse.RawDescriptionHelpFormatter,
        description="CoT-ICL Lab pipeline: generate -> train -> evaluate -> aggregate.",
        epilog=f"commands:\n{lines}\n\nRun `cotlab <command> --help` for a command's options.")
    parser.add_argument("--version", action="version", version=f"cotlab {__version__}")
    parser.add_argument("command", choices=list(COMMANDS), metavar="command")
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] not in COMMANDS:
        top_parser().parse_args(argv)  # prints help / version / a clear error and exits
        return 2
    name, rest = argv[0], argv[1:]
    module = importlib.import_module(COMMANDS[name][0])
    parser = argparse.ArgumentParser(prog=f"cotlab {name}", description=COMMANDS[name][1])
    module.add_arguments(parser)
    args = parser.parse_args(rest)
    try:
        return int(module.main(args) or 0)
    except ConfigError as exc:
        print(f"cotlab {name}: error: {exc}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # `cotlab coverage DIR | head`: the reader left; not an error of ours
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except OSError as exc:  # no space, no permission, a file in the way: one line naming the path
        reason = exc.strerror or (str(exc).splitlines() or [type(exc).__name__])[0]
        where = "" if exc.filename is None else f"{clip(str(exc.filename))}: "
        print(f"cotlab {name}: error: {where}{clip(reason)}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
