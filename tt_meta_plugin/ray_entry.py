"""The function Ray calls: `RAY_RUNTIME_ENV_HOOK` in a vLLM process that starts Ray workers.

A Ray worker (vLLM's `RayWorkerProc`, possibly on another node) resolves vLLM's platform when
it imports vLLM's Ray executor, before vLLM hands it the driver's environment (vLLM applies
that later, and only with `setdefault`). Its `sys.argv` is Ray's worker script: it has no model
and no decision of its own. What it does have at that moment is its node's environment and its
job's runtime environment, whose `env_vars` Ray sets before the worker imports anything.

So a first process that records a decision also names this hook in `RAY_RUNTIME_ENV_HOOK`
(`recorded_decision.record`): when the engine core, its child, calls `ray.init`, Ray passes
the job's runtime environment through `runtime_env_hook`, which adds the decision and the
variables that make the worker run tt_meta with the same policy. Every Ray worker of the job
then takes the child path, on any node. A hook that was set before ours is kept and runs
first (`ENV_NEXT_HOOK`).
"""

from __future__ import annotations

import importlib
import os
from collections.abc import MutableMapping, Sequence
from typing import Any

#: Ray reads this variable in `ray.init` (ray/_private/worker.py `_maybe_modify_runtime_env`).
ENV_RAY_HOOK = "RAY_RUNTIME_ENV_HOOK"
#: A hook the operator had set before tt_meta named its own; ours calls it first.
ENV_NEXT_HOOK = "TT_META_NEXT_RAY_RUNTIME_ENV_HOOK"
#: This function, as Ray loads it (`module.attribute`).
HOOK = f"{__name__}.runtime_env_hook"
#: What a Ray worker needs before it imports vLLM: the decision, and the variables that make
#: vLLM load tt_meta (and only it) and tt_meta read the same policy file.
CARRIED = ("TT_META_DECISION", "VLLM_PLUGINS", "TT_META_POLICY")


def is_ray_worker(argv: Sequence[str]) -> bool:
    """True in a process Ray started to run tasks and actors (its `default_worker.py`)."""
    return bool(argv) and argv[0].replace("\\", "/").endswith(
        "/ray/_private/workers/default_worker.py")


def install(environ: MutableMapping[str, str]) -> None:
    """Name the hook for the Ray drivers this process starts (keeping an operator's hook)."""
    current = environ.get(ENV_RAY_HOOK)
    if current != HOOK:  # a hook of the operator's, or none: ours runs it, or nothing, first
        if current:
            environ[ENV_NEXT_HOOK] = current
        else:
            environ.pop(ENV_NEXT_HOOK, None)
    environ[ENV_RAY_HOOK] = HOOK


def runtime_env_hook(runtime_env: dict[str, Any] | None) -> dict[str, Any]:
    """Ray's hook: the job's runtime environment, carrying the decision to every worker."""
    following = os.environ.get(ENV_NEXT_HOOK)
    if following:
        module, _, name = following.rpartition(".")
        runtime_env = getattr(importlib.import_module(module), name)(runtime_env)
    env = dict(runtime_env or {})
    env_vars = dict(env.get("env_vars") or {})
    for name in CARRIED:
        value = os.environ.get(name)
        if value is not None:
            # The driver's value wins over one given in the job's runtime environment: a
            # worker must reach the decision its driver made.
            env_vars[name] = value
    env["env_vars"] = env_vars
    return env
