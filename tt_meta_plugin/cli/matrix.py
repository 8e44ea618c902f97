"""`tt-meta explain --matrix`: the decision for every model x device under the current policy.

Each cell is decided by the code a server runs (selection/decide.py `gather_facts` and
`decide`, on `Inputs` built as a server builds them), under the policy a server here would
read (`load_checked_policy`), with the model's config.json read from disk or the local hub
cache as a server reads it. Nothing is verified or delegated and no backend code runs: that
is `tt-meta explain` for one model. A refused cell is data (exit 0); only bad input exits 1.
The JSON shape is documented in docs/policy.md ("The decision matrix").
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
from collections.abc import Mapping, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, NamedTuple

from .._errors import ConfigError, TTMetaError, where
from .._files import read_text
from ..activation.first_process import load_checked_policy
from ..activation.recorded_decision import ENV_DECISION
from ..selection.decide import decide, gather_facts
from ..selection.inputs import ENV_BACKEND, Input, Inputs, local_model, read_inputs
from ..selection.policy import Policy

FORMAT = 1
MAX_MODELS_BYTES = 1 << 20
# A device type as Tenstorrent names them (n150, n300, t3k, p150, p300x2, galaxy).
_DEVICE = re.compile(r"[a-z0-9][a-z0-9_.-]*")
_GLOB = re.compile(r"[*?\[]")
NOT_SET = "(not set)"  # the column of a server with no device type set


class Cell(NamedTuple):
    model: str
    device: str | None
    backend: str | None  # None: refused
    chosen_by: str | None  # rule, default_backend, TT_META_BACKEND, model_metadata
    rule: int | None
    rule_name: str | None
    reason: str | None
    refusal: dict[str, str | None] | None


class Matrix(NamedTuple):
    policy: Policy
    generated: str
    backend_override: Input | None
    models: tuple[str, ...]
    devices: tuple[str | None, ...]
    cells: tuple[Cell, ...]

    def cell(self, model: str, device: str | None) -> Cell:
        return next(c for c in self.cells if c.model == model and c.device == device)


def build(environ: Mapping[str, str], policy: Policy, models: Sequence[str],
          devices: Sequence[str | None], source: str) -> Matrix:
    """Decide every (model, device) pair as a first process would, without delegating."""
    # TT_META_BACKEND overrides rules in a server here, so it does in the matrix (shown in
    # the header); the model and device of each cell replace the environment's.
    backend = read_inputs({k: v for k, v in environ.items() if k == ENV_BACKEND}, []).backend
    cells = []
    for model in models:
        for device in devices:
            inputs = Inputs(Input(local_model(model), source), backend,
                            Input(device, "tt-meta explain --matrix") if device else None)
            cells.append(_decide(policy, inputs, environ, model, device))
    generated = datetime.now(timezone.utc).replace(microsecond=0).isoformat()
    return Matrix(policy, generated.replace("+00:00", "Z"), backend, tuple(models),
                  tuple(devices), tuple(cells))


def _decide(policy: Policy, inputs: Inputs, environ: Mapping[str, str], model: str,
            device: str | None) -> Cell:
    try:
        facts, config = gather_facts(inputs, environ)
        decision = decide(policy, inputs, facts, config)
    except TTMetaError as error:
        refusal = {"code": error.code, "summary": error.summary, "where": error.where,
                   "fix": error.fix}
        return Cell(model, device, None, None, None, None, None, refusal)
    rule = decision.rule
    if rule is not None:
        chosen_by = "rule"
    elif inputs.backend is not None:
        chosen_by = ENV_BACKEND
    elif decision.reason == "default_backend":
        chosen_by = "default_backend"
    else:
        chosen_by = "model_metadata"
    return Cell(model, device, decision.backend, chosen_by, rule.number if rule else None,
                rule.name if rule else None, decision.reason, None)


# -- What to show -----------------------------------------------------------------------------


def policy_models(policy: Policy) -> list[str]:
    """The models the policy's rules name exactly (a glob names no one model)."""
    return _unique(m for rule in policy.rules for m in rule.model if not _GLOB.search(m))


def policy_devices(policy: Policy) -> list[str]:
    return _unique(d.lower() for rule in policy.rules for d in rule.device)


def read_models_file(path: Path) -> list[str]:
    """One model per line; blank lines and lines starting with '#' are skipped."""
    text = read_text(path, MAX_MODELS_BYTES, "models file",
                     fix="pass a readable text file with one model per line to --models",
                     large_fix="list fewer models, one per line",
                     utf8_fix="save it as UTF-8, one model per line")
    models = []
    for number, line in enumerate(text.splitlines(), start=1):
        name = line.strip()
        if not name or name.startswith("#"):
            continue
        if any(ch.isspace() or not ch.isprintable() for ch in name):
            raise ConfigError(
                f"line {number} of the models file is not one model name: {name!r}",
                where=f"{path}, line {number}",
                fix="write one model (a hub id or a local path) per line; comments start "
                "with '#' at the beginning of a line")
        models.append(name)
    if not models:
        raise ConfigError("the models file lists no models", where=where(path),
                          fix="write one model (a hub id or a local path) per line")
    return _unique(models)


def parse_devices(text: str) -> list[str]:
    items = [item.strip().lower() for item in text.split(",")]
    for item in items:
        if not _DEVICE.fullmatch(item):
            raise ConfigError(
                f"--devices must be a comma-separated list of device types, not {text!r}",
                where="option --devices",
                fix="name device types as TT_META_DEVICE takes them, e.g. --devices "
                "n150,n300,t3k")
    return _unique(items)


def _unique(items: Any) -> list[Any]:
    return list(dict.fromkeys(items))


# -- The command ------------------------------------------------------------------------------


def run(args: argparse.Namespace) -> int:
    try:
        matrix = _matrix(args)
        if args.html is not None:
            from .matrix_html import render_html

            _write(args.html, render_html(to_json(matrix)))
    except TTMetaError as error:
        print(f"tt-meta explain --matrix: {error.render()}", file=sys.stderr)
        return 1
    print(json.dumps(to_json(matrix), indent=2) if args.json else render_text(matrix))
    if args.html is not None and not args.json:
        print(f"HTML page:  {args.html}")
    return 0


def _matrix(args: argparse.Namespace) -> Matrix:
    if not args.matrix:
        raise ConfigError("--models, --from-model-spec, --devices and --html need --matrix",
                          where="tt-meta explain", fix="add --matrix, or leave them out")
    if args.model or args.device or args.command_line:
        raise ConfigError(
            "--matrix decides every model and device: --model, --device and a vLLM command "
            "line are for one decision", where="tt-meta explain",
            fix="list models with --models FILE and devices with --devices, or drop --matrix")
    if args.models is not None and args.from_model_spec is not None:
        raise ConfigError("--models and --from-model-spec cannot be given together",
                          where="tt-meta explain --matrix", fix="give one list of models")
    env = dict(os.environ)
    env.pop(ENV_DECISION, None)  # a fresh decision, as a first process makes
    policy = load_checked_policy(env)
    spec_devices: list[str] = []
    if args.models is not None:
        models, source = read_models_file(args.models), f"--models {args.models}"
    elif args.from_model_spec is not None:
        from ..selection.model_spec import load_model_spec

        spec = load_model_spec(args.from_model_spec)
        models, source = list(spec.models), f"--from-model-spec {args.from_model_spec}"
        spec_devices = list(spec.devices)
    else:
        models, source = policy_models(policy), f"the policy {policy.source}"
    if not models:
        raise ConfigError(
            "no models to show: the policy's rules name no model exactly (only patterns)",
            where=policy.source,
            fix="list the models with --models FILE (one per line) or --from-model-spec SPEC")
    if args.devices is not None:
        devices: list[str | None] = list(parse_devices(args.devices))
    else:
        # No device named anywhere: the one column of a server with no device type set.
        devices = list(_unique([*policy_devices(policy), *spec_devices])) or [None]
    return build(env, policy, models, devices, source)


def _write(path: Path, text: str) -> None:
    try:
        path.write_text(text, encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot write the HTML page: {exc.strerror}", where=where(path),
                          fix="give --html a file in a directory you can write") from None


# -- Rendering --------------------------------------------------------------------------------


def to_json(matrix: Matrix) -> dict[str, Any]:
    """The documented JSON shape (docs/policy.md); keys are only ever added."""
    counts: dict[str, int] = {}
    for cell in matrix.cells:
        key = cell.backend or "refused"
        counts[key] = counts.get(key, 0) + 1
    policy = matrix.policy
    override = matrix.backend_override
    return {
        "format": FORMAT,
        "generated": matrix.generated,
        "policy": {"path": policy.source, "sha256": policy.digest,
                   "allowed_backends": list(policy.allowed_backends),
                   "default_backend": policy.default_backend},
        "backend_override": ({"value": override.value, "source": override.source}
                             if override else None),
        "models": list(matrix.models),
        "devices": list(matrix.devices),
        "rules": [{"number": r.number, "name": r.name, "backend": r.backend, "deny": r.deny,
                   "describe": r.describe()} for r in policy.rules],
        "cells": [cell._asdict() for cell in matrix.cells],
        "counts": counts,
    }


def label(cell: Cell) -> str:
    """A cell's text in the terminal and the page: the backend and what chose it."""
    if cell.backend is None:
        return "REFUSED"
    chosen = {"rule": f"rule {cell.rule}", "default_backend": "default",
              "model_metadata": "metadata"}.get(cell.chosen_by or "", cell.chosen_by)
    return f"{cell.backend} ({chosen})"


def _shown(name: str) -> str:
    """A name as the terminal shows it: a policy may name a model with a newline or an escape
    sequence in it, which would break the table or drive the terminal."""
    return name if name.isprintable() else repr(name)


def render_text(matrix: Matrix) -> str:
    notes: dict[tuple[str | None, ...], int] = {}  # one note per distinct refusal
    rows = [["model", *(_shown(d) if d else NOT_SET for d in matrix.devices)]]
    for model in matrix.models:
        row = [_shown(model)]
        for device in matrix.devices:
            cell = matrix.cell(model, device)
            if cell.refusal is not None:
                key = (cell.refusal["summary"], cell.refusal["where"], cell.refusal["fix"])
                number = notes.setdefault(key, len(notes) + 1)
                row.append(f"REFUSED [{number}]")
            else:
                row.append(label(cell))
        rows.append(row)
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = [f"policy:    {matrix.policy.source} (sha256 {matrix.policy.digest[:16]})",
             f"generated: {matrix.generated}"]
    if matrix.backend_override is not None:
        lines.append(f"backend:   {matrix.backend_override} chooses for every model the "
                     "policy does not deny")
    lines.append("")
    lines += ["  ".join(text.ljust(w) for text, w in zip(row, widths, strict=True)).rstrip()
              for row in rows]
    used = sorted({c.rule for c in matrix.cells if c.rule is not None})
    if used:
        lines += ["", "rules:"]
        lines += [f"  {r.describe()} -> {r.backend}" for r in matrix.policy.rules
                  if r.number in used]
    if notes:
        lines += ["", "refused:"]
        for (summary, where_, fix), number in notes.items():
            lines.append(f"  [{number}] {summary}")
            if where_:
                lines.append(f"      where: {where_}")
            if fix:
                lines.append(f"      fix: {fix}")
    counts = to_json(matrix)["counts"]
    lines += ["", ", ".join(f"{n} {k}" for k, n in sorted(counts.items()))
              + f" of {len(matrix.cells)} cells"]
    return "\n".join(lines)
