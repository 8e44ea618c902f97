"""`tt-meta policy`: write policy rules (from-model-spec: Tenstorrent's catalog as rules)."""

from __future__ import annotations

import argparse
import sys

from ..selection.model_spec import choose, load_model_spec


def run(args: argparse.Namespace) -> int:
    if args.policy_command == "from-model-spec":
        return from_model_spec(args)
    raise AssertionError(args.policy_command)  # argparse rejects unknown commands


def from_model_spec(args: argparse.Namespace) -> int:
    spec = load_model_spec(args.spec)
    choices = choose(spec)
    print(f"# {len(choices)} (model, device) pairs in release {spec.release}", file=sys.stderr)
    return 0
