"""The `tt-meta` command line: explain a decision, check an environment."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from .._errors import TTMetaError
from ..selection.inputs import ENV_DEVICE, ENV_MODEL
from ..selection.model_spec import STATUSES


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
    # The decision matrix (cli/matrix.py): every model x device under the current policy.
    explain.add_argument("--matrix", action="store_true",
                         help="the decision for every model x device under the current policy")
    explain.add_argument("--models", type=Path, metavar="FILE",
                         help="with --matrix: the models, one per line")
    explain.add_argument("--from-model-spec", type=Path, metavar="SPEC",
                         help="with --matrix: the models (and devices) of a "
                         "release_model_spec.json")
    explain.add_argument("--devices", metavar="LIST",
                         help="with --matrix: comma-separated device types, e.g. n150,n300,t3k")
    explain.add_argument("--html", type=Path, metavar="FILE",
                         help="with --matrix: also write a self-contained HTML page")
    explain.add_argument("command_line", nargs=argparse.REMAINDER,
                         help="a vLLM command line after '--'")
    sub.add_parser("doctor", help="check this environment and print what to fix")
    # Policy tools (cli/policy_commands.py).
    policy = sub.add_parser("policy", help="write policy rules")
    policy_sub = policy.add_subparsers(dest="policy_command", required=True)
    from_spec = policy_sub.add_parser(
        "from-model-spec",
        help="print [[rule]] tables from Tenstorrent's release_model_spec.json",
    )
    from_spec.add_argument("spec", type=Path, metavar="SPEC.json")
    from_spec.add_argument("--status", action="append", type=str.upper, choices=STATUSES,
                           help="keep only pairs whose chosen implementation has this status; "
                           "repeat for several (default: all)")
    spec_out = from_spec.add_mutually_exclusive_group()
    spec_out.add_argument("--out", type=Path, metavar="FILE",
                          help="write the rules to FILE instead of stdout")
    spec_out.add_argument("--update", type=Path, metavar="POLICY",
                          help="replace the generated rules at the end of POLICY (or append "
                          "them), keeping everything before them")
    keygen = sub.add_parser("keygen", help="make an Ed25519 signing key pair")
    keygen.add_argument("--out", required=True, type=Path,
                        help="write OUT.key (mode 0600) and OUT.pub")
    sign = sub.add_parser("sign", help="write the signed manifest of an installed backend")
    sign.add_argument("--dist", required=True, help="the installed distribution, e.g. vllm-tt")
    sign.add_argument("--backend", required=True, help="the backend it provides, e.g. forge")
    sign.add_argument("--key", required=True, action="append", type=Path,
                      help="a PREFIX.key file; repeat for several signatures (threshold)")
    sign.add_argument("--expires", type=float, default=90.0, metavar="DAYS",
                      help="days until the manifest expires (default 90)")
    sign.add_argument("--serial", type=int, default=None,
                      help="the manifest serial; must grow with every new manifest "
                      "(default: the current Unix time)")
    sign.add_argument("--out", type=Path, default=None,
                      help="where to write it: a file (or directory) of the policy's [trust] "
                      "manifest_dirs, named as verification reads it (default: inside the "
                      "distribution's .dist-info)")
    sign.add_argument("--staging", action="store_true",
                      help="--out is a staging directory, copied into a manifest directory "
                      "later: write there although verification does not read it (the file "
                      "name is still checked)")
    verify = sub.add_parser("verify", help="verify installed backends against their manifests")
    verify.add_argument("--dist", help="only this distribution")
    verify.add_argument("--json", action="store_true", help="print JSON")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(message)s")
    if args.command == "explain" and (args.matrix or args.models or args.from_model_spec
                                      or args.devices is not None or args.html):
        from . import matrix

        return matrix.run(args)
    if args.command == "policy":
        from . import policy_commands

        try:
            return int(policy_commands.run(args))
        except TTMetaError as error:
            print(f"tt-meta policy: {error.render()}", file=sys.stderr)
            return 1
    if args.command == "explain":
        from . import explain

        env = dict(os.environ)
        if args.model:
            env[ENV_MODEL] = args.model
        if args.device:
            env[ENV_DEVICE] = args.device
        command = list(args.command_line)
        if command[:1] == ["--"]:
            command = command[1:]
        code, report = explain.explain(env, command)
        print(explain.render(report, args.json))
        return code
    if args.command in ("keygen", "sign", "verify"):
        from . import trust_commands

        try:
            return int(getattr(trust_commands, args.command)(args))
        except TTMetaError as error:
            print(f"tt-meta {args.command}: {error.render()}", file=sys.stderr)
            return 1
    if args.command == "doctor":
        from . import doctor

        checks = doctor.run_checks(os.environ)
        print(doctor.render(checks))
        return 1 if any(c.status == doctor.FAIL for c in checks) else 0
    raise AssertionError(args.command)  # argparse rejects unknown commands


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
