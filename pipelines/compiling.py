"""Compile a pipeline function to its KFP IR YAML: the one helper behind ``make compile``."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path

from kfp import compiler


def compile_pipeline(pipeline: Callable, output: str | Path) -> Path:
    """Write the pipeline's IR YAML.

    Args:
        pipeline: a @dsl.pipeline function.
        output: where to write the YAML.

    Returns:
        The path written.
    """
    compiler.Compiler().compile(pipeline, str(output))
    return Path(output)


def main(pipeline: Callable, name: str, default_output: Path, argv: list[str] | None = None) -> int:
    """``python -m pipelines.<module> [--output PATH]``: compile, then say where the YAML went.

    Args:
        pipeline: the @dsl.pipeline function.
        name: the pipeline's name, for the message and the help.
        default_output: the committed YAML beside the module.
        argv: the command line (default: sys.argv[1:]).

    Returns:
        The exit status (0).
    """
    parser = argparse.ArgumentParser(description=f"Compile the {name} pipeline to KFP IR YAML.")
    parser.add_argument("--output", default=str(default_output), help="where to write the YAML (default: %(default)s)")
    args = parser.parse_args(argv)
    path = compile_pipeline(pipeline, args.output)
    print(f"compiled {name} -> {path}")
    return 0
