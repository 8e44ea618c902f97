"""`tt-meta policy`: write policy rules.

`from-model-spec SPEC.json` writes the `[[rule]]` tables that send each (model, device) of
Tenstorrent's release_model_spec.json to the backend Tenstorrent's own selection chooses
(selection/model_spec.py), to stdout, to a file (`--out`), or in place of the generated rules
at the end of a policy (`--update`, how the built-in default policy is regenerated).
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys
import tempfile
from pathlib import Path

from .._errors import ConfigError, InternalError, where
from .._files import read_text
from ..selection.inputs import MAX_POLICY_BYTES
from ..selection.model_spec import (
    END_MARK,
    GENERATED_MARK,
    STATUSES,
    Generated,
    generate_rules,
    load_model_spec,
)
from ..selection.policy import parse_policy

# A policy with nothing but the generated rules: they must parse on their own.
_STUB_POLICY = 'version = 1\nallowed_backends = ["metal", "forge"]\n\n'


def run(args: argparse.Namespace) -> int:
    if args.policy_command == "from-model-spec":
        return from_model_spec(args)
    raise AssertionError(args.policy_command)  # argparse rejects unknown commands


def from_model_spec(args: argparse.Namespace) -> int:
    spec = load_model_spec(args.spec)
    statuses = [s for s in STATUSES if s in args.status] if args.status else list(STATUSES)
    generated = generate_rules(spec, statuses, shlex.join(_command(args, statuses)))
    try:
        parse_policy((_STUB_POLICY + generated.text).encode(), "the generated rules")
    except ConfigError as error:  # a bug here, never the operator's input
        raise InternalError(f"the generated rules do not parse: {error.summary}",
                            fix="report this with the model spec file") from None
    if args.update is not None:
        target = _updated(args.update, generated.text)
        _write(args.update, target, keep_mode=True)
    elif args.out is not None:
        _write(args.out, generated.text.encode(), keep_mode=False)
    else:
        sys.stdout.write(generated.text)
        sys.stdout.flush()
    print(_summary(spec.release, generated, args.update or args.out), file=sys.stderr)
    return 0


def _command(args: argparse.Namespace, statuses: list[str]) -> list[str]:
    """The command line that regenerates these rules (recorded in their header)."""
    command = ["tt-meta", "policy", "from-model-spec", str(args.spec)]
    if args.status:
        for status in statuses:
            command += ["--status", status]
    if args.update is not None:
        command += ["--update", str(args.update)]
    elif args.out is not None:
        command += ["--out", str(args.out)]
    return command


def _updated(path: Path, rules: str) -> bytes:
    """The policy at `path` with its generated rules (from GENERATED_MARK to END_MARK)
    replaced by `rules`, or `rules` appended; what is before and after them is kept, and the
    result is checked by the policy parser."""
    text = read_text(path, MAX_POLICY_BYTES, "policy to update",
                     fix="name an existing policy file, or write the rules to a new file "
                         "with --out",
                     large_fix="shorten it", utf8_fix="save it as UTF-8")
    lines = text.splitlines(keepends=True)
    start = next((i for i, line in enumerate(lines) if line.startswith(GENERATED_MARK)), None)
    if start is None:
        before, after = text.rstrip(), ""
    else:
        end = next((i for i in range(start, len(lines)) if lines[i].startswith(END_MARK)),
                   None)
        if end is None:
            raise ConfigError(
                "the policy has generated rules but not the line that ends them, so what "
                "follows them cannot be told from them",
                where=where(path),
                fix=f"add the line '{END_MARK}' after the last generated rule (what follows "
                    "it is kept), then run the command again")
        before, after = "".join(lines[:start]).rstrip(), "".join(lines[end + 1:]).strip()
    new = ((before + "\n\n") if before else "") + rules + (("\n" + after + "\n") if after else "")
    # The policy as it will be: an error names the file (the part kept is the operator's).
    parse_policy(new.encode(), str(path))
    return new.encode()


def _write(path: Path, data: bytes, keep_mode: bool) -> None:
    """Replace `path` at once (a reader never sees half a policy); a symlink's target."""
    target = path.resolve()
    try:
        mode = target.stat().st_mode & 0o7777 if keep_mode else None
    except OSError:
        mode = None
    if mode is None:
        umask = os.umask(0)
        os.umask(umask)
        mode = 0o666 & ~umask
    try:
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.")
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
            os.chmod(tmp, mode)
            os.replace(tmp, target)
        except BaseException:
            os.unlink(tmp)
            raise
    except OSError as exc:
        raise ConfigError(f"cannot write the rules: {exc.strerror}", where=where(path),
                          fix="name a file in a directory you can write") from None


def _summary(release: str, generated: Generated, written: Path | None) -> str:
    backends: dict[str, int] = {}
    for choice in generated.ruled:
        backends[str(choice.backend)] = backends.get(str(choice.backend), 0) + 1
    per_backend = ", ".join(f"{name} {count}" for name, count in sorted(backends.items()))
    lines = [
        f"tt-meta policy: release {release}: {generated.rules} rules for "
        f"{len(generated.ruled)} (model, device) pairs ({per_backend or 'none'})"
        + (f", written to {written}" if written is not None else ""),
        f"  no rule for {len(generated.outside)} pairs Tenstorrent runs outside vLLM "
        f"(media engine, forge without forge_vllm_plugin)",
    ]
    if generated.foreign:
        lines.append(f"  no rule for {len(generated.foreign)} pairs on devices that are not "
                     "Tenstorrent hardware (GPU reference specs)")
    if generated.dropped:
        lines.append(f"  no rule for {len(generated.dropped)} pairs whose status --status "
                     "leaves out")
    if generated.undecided:
        lines.append(f"  no rule for {len(generated.undecided)} pairs where Tenstorrent "
                     "chooses no implementation (see the comments in the output):")
        lines += [f"    {c.model} on {c.device}: {c.reason}" for c in generated.undecided]
    return "\n".join(lines)
