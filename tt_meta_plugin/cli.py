"""The `tt-meta` command line: explain a decision, check an environment."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence

from ._inputs import ENV_DEVICE, ENV_MODEL


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tt-meta",
        description="Choose, verify and delegate to a Tenstorrent vLLM backend.",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    explain = sub.add_parser(
        "explain",
        help="print the backend a vLLM process would choose here, and why",
        description=(
            "Print the decision and every input behind it. Exit 0 if vLLM would delegate, "
            "1 if it would refuse. Put a vLLM command line after '--' to read the model "
            "from it, e.g. tt-meta explain -- vllm serve Qwen/Qwen3-8B"
        ),
    )
    explain.add_argument("--model", help=f"the model (as {ENV_MODEL} would)")
    explain.add_argument("--device", help=f"the device type (as {ENV_DEVICE} would)")
    explain.add_argument("--json", action="store_true", help="print JSON")
    explain.add_argument("command_line", nargs=argparse.REMAINDER,
                         help="a vLLM command line after '--'")
    sub.add_parser("doctor", help="check this environment and print what to fix")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(message)s")
    if args.command == "explain":
        from . import _explain

        env = dict(os.environ)
        if args.model:
            env[ENV_MODEL] = args.model
        if args.device:
            env[ENV_DEVICE] = args.device
        command = list(args.command_line)
        if command[:1] == ["--"]:
            command = command[1:]
        code, report = _explain.explain(env, command)
        print(_explain.render(report, args.json))
        return code
    if args.command == "doctor":
        from . import _doctor

        checks = _doctor.run_checks(os.environ)
        print(_doctor.render(checks))
        return 1 if any(c.status == _doctor.FAIL for c in checks) else 0
    raise AssertionError(args.command)  # argparse rejects unknown commands


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
