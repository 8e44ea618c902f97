"""The two functions vLLM calls: `tt_meta` in `vllm.platform_plugins` and in `vllm.general_plugins`.

vLLM calls the platform function at least twice per process, and swallows its exceptions at
DEBUG level, treating a failing plugin as "not available" and going on with another platform.
So the work is done once per process and remembered, and a refusal is logged at ERROR and then
raised as `FailClosed`, a `SystemExit`: vLLM's `except Exception` cannot turn it into a silent
fallback to the CPU or any other platform, and the process exits non-zero.
"""

from __future__ import annotations

import logging
import os
import sys
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, NoReturn

from ._errors import ConfigError, InternalError, TTMetaError
from ._log import log
from .activation import audit, recorded_decision

if TYPE_CHECKING:
    from .activation.backend import Activation


class FailClosed(SystemExit):
    """Raised after a refusal was logged: stops the process, past vLLM's exception handlers."""

    def __init__(self, error: TTMetaError) -> None:
        super().__init__(1)
        self.error = error


_activation: Activation | None = None
_failure: TTMetaError | None = None
_general_done = False


def _fail(error: TTMetaError) -> NoReturn:
    log(logging.ERROR, "tt_meta refused to start this vLLM process (pid %d):\n%s",
        os.getpid(), error.render())
    if _activation is None or not _activation.inherited:
        # A decision this process published (a failure may come after it: in the backend's
        # platform function or general plugins) must not reach a process started from here.
        os.environ.pop(recorded_decision.ENV_DECISION, None)
    raise FailClosed(error)


# vLLM's own platforms. VLLM_TARGET_DEVICE=cpu makes vLLM return its CPU platform without
# calling any platform plugin (vllm/platforms/__init__.py of 0.32; 0.26 ignores it), yet runs
# the general plugins; the others name a platform that is not Tenstorrent's. Tenstorrent's
# images set "tt"; "empty" is what its source builds of vLLM use.
BUILTIN_TARGETS = frozenset({"cpu", "cuda", "rocm", "tpu", "xpu"})


def check_target_device(environ: Mapping[str, str]) -> None:
    """Refuse to serve when VLLM_TARGET_DEVICE names one of vLLM's own platforms."""
    value = environ.get("VLLM_TARGET_DEVICE")
    if value is not None and value.strip().lower() in BUILTIN_TARGETS:
        raise ConfigError(
            f"VLLM_TARGET_DEVICE={value} asks vLLM for its own {value.strip().lower()} "
            "platform, not a Tenstorrent backend"
            + (" (with cpu, vLLM does not even call tt_meta's platform plugin)"
               if value.strip().lower() == "cpu" else ""),
            where="environment variable VLLM_TARGET_DEVICE",
            fix="unset VLLM_TARGET_DEVICE (Tenstorrent's images set it to 'tt'), or unset "
            "VLLM_PLUGINS to serve without tt_meta",
        )


def current() -> Activation:
    """This process's activation, made on first use; a refusal repeats on every call."""
    global _activation, _failure
    if _activation is not None:
        return _activation
    if _failure is not None:
        raise FailClosed(_failure)
    started = time.perf_counter()
    try:
        check_target_device(os.environ)
        # A child takes the short path: its first process decided and verified already.
        recorded = recorded_decision.read(os.environ)
        if recorded is not None:
            from .activation import child_process

            _activation = child_process.activate(os.environ, sys.argv, recorded)
        else:
            from .activation import first_process

            _activation = first_process.activate(os.environ, sys.argv)
    except Exception as exc:  # nothing but a refusal may reach vLLM
        _failure = _as_refusal(exc)  # remembered first: vLLM calls again, and gets it again
        _refuse(_failure, _audit_log(), started)
    act = _activation
    verified = act.verified
    audit.record(
        act.settings.audit_log,
        verdict="inherited" if act.inherited else "delegated",
        backend=act.handoff.backend, distribution=act.handoff.distribution,
        version=act.handoff.version, reason=act.handoff.reason, platform=act.platform,
        serial=act.handoff.serial,
        signers=list(act.handoff.signers) if act.handoff.signers is not None else None,
        runtimes=list(act.runtimes),
        verified="signature" if verified and not verified.files_checked
        else "files" if verified else "no (require_signatures = false)",
        ms=round(act.seconds * 1e3, 2),
    )
    return act


def _refuse(error: TTMetaError, audit_log: str | None, started: float) -> NoReturn:
    """Audit the refusal, log it, and stop the process."""
    audit.record(audit_log, verdict="refused", code=error.code, reason=error.summary,
                 ms=round((time.perf_counter() - started) * 1e3, 2))
    _fail(error)


def _as_refusal(exc: Exception) -> TTMetaError:
    """`exc` as a refusal. An exception tt_meta did not turn into one itself would be
    swallowed by vLLM, which goes on with another platform (the CPU): it is one too."""
    if isinstance(exc, TTMetaError):
        return exc
    return InternalError(
        f"tt_meta failed unexpectedly: {exc!r}",
        where=f"{type(exc).__module__}.{type(exc).__qualname__}",
        fix="report this with the log above; the vLLM process stops instead of running "
        "without the chosen backend",
    )


def _audit_log() -> str | None:
    """The policy's audit log, if the policy can still be read after a refusal."""
    from .selection.policy import load_policy

    try:
        return load_policy(os.environ).trust.audit_log
    except Exception:  # whatever stopped this process may stop this too
        return None


_model_less: bool | None = None


def _serves_no_model() -> bool:
    """True for a vLLM command that loads no model (`vllm --version`, `--help`, `chat`,
    `complete`, `bench serve`, `collect-env`, plain `vllm`), in a process no vLLM server
    started: tt_meta stays out of its way, and vLLM picks its built-in platform. A command
    line tt_meta cannot read is left to current(), which refuses it."""
    global _model_less
    if _model_less is None:
        _model_less = False
        if recorded_decision.ENV_DECISION not in os.environ:  # a child keeps its path
            from .selection.command_line import read_command_line

            try:
                command = read_command_line(sys.argv)
            except Exception:
                return False
            _model_less = command.loads is False
            if _model_less:
                log(logging.DEBUG, "tt_meta: `%s` loads no model; no backend chosen",
                    command.command)
    return _model_less


def platform_plugin() -> str | None:
    """vLLM platform plugin: the chosen backend's platform class path (None: no model)."""
    if _serves_no_model():
        return None
    return current().platform


def general_plugin() -> None:
    """vLLM general plugin: run the chosen backend's general plugins, once per process."""
    global _general_done
    if _general_done:
        return
    _general_done = True
    if _serves_no_model():
        return
    activation = current()
    from .activation.backend import run_general_plugins

    started = time.perf_counter()
    try:
        ran = run_general_plugins(
            activation.target,
            activation.settings.extra_general_plugins,
            activation.settings.backend_distributions,
        )
    except Exception as exc:  # nothing but a refusal may reach vLLM
        # The audit said "delegated" or "inherited" already; it must also say this ended it.
        _refuse(_as_refusal(exc), activation.settings.audit_log, started)
    log(logging.DEBUG, "tt_meta: ran general plugins %s", ", ".join(ran) or "(none)")
    if not activation.inherited:
        from .activation import operations  # first processes only (metrics where served)

        operations.general_plugins_ran()
