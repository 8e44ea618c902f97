"""`tt-meta explain`: the decision a vLLM process would make here, and every reason for it."""

from __future__ import annotations

import json
from collections.abc import MutableMapping, Sequence
from typing import Any

from .._errors import TTMetaError
from ..activation.first_process import (
    call_backend,
    catalog_for,
    load_checked_policy,
    plan,
    trusted_set_for,
    trusted_target,
)
from ..activation.recorded_decision import ENV_DECISION
from ..selection.command_line import read_command_line


def explain(environ: MutableMapping[str, str], argv: Sequence[str]) -> tuple[int, dict[str, Any]]:
    """Return (exit code, report). Exit 0 when a vLLM process would delegate or the command
    loads no model, 1 when it would be refused."""
    env = dict(environ)
    env.pop(ENV_DECISION, None)  # explain makes a fresh decision, as a first process would
    report: dict[str, Any] = {"delegate": False}
    try:
        # The command line as vLLM would read it in that process (`python -m ...` too).
        command = read_command_line(argv)
    except TTMetaError as error:
        report["refusal"] = _error(error)
        return 1, report
    if command.loads is False:
        report["loads_no_model"] = command.command
        return 0, report
    try:
        policy = load_checked_policy(env)
        trusted = trusted_set_for(policy)
        catalog = catalog_for(trusted)
        chosen = plan(env, argv, catalog, policy)
    except TTMetaError as error:
        report["refusal"] = _error(error)
        return 1, report
    inputs, decision, dist = chosen.inputs, chosen.decision, chosen.dist
    report.update(
        policy=chosen.policy.source,
        inputs={
            "model": _input(inputs.model),
            "backend": _input(inputs.backend),
            "device": _input(inputs.device),
            # why no device: TT_META_DEVICE is not set and tt-smi -s did not tell
            "device_unknown": inputs.device_unknown,
            "shadowed": [_input(i) for i in inputs.shadowed],
        },
        model_config={
            "path": str(decision.model_config.path) if decision.model_config.path else None,
            "architectures": list(decision.model_config.architectures),
            "model_type": decision.model_config.model_type,
        },
        backend=decision.backend,
        reason=decision.reason,
        rule=decision.rule.number if decision.rule else None,
        distribution=dist.name,
        version=str(dist.version),
        vllm_warning=chosen.vllm_warning,
    )
    try:
        target = trusted_target(trusted, chosen)
        report.update(
            platform_entry_point=f"{target.platform_ep.name} = {target.platform_ep.value}",
            general_entry_points=[f"{ep.name} = {ep.value}" for ep in target.general_eps],
        )
        verified = trusted.verified(dist)
        if verified is not None:
            report["manifest"] = {"path": str(verified.manifest_path),
                                  "serial": verified.serial,
                                  "signers": list(verified.signers),
                                  "files": len(verified.files)}
        else:
            report["manifest"] = None
        report["platform"] = call_backend(catalog, chosen.backend, target)
    except TTMetaError as error:
        report["refusal"] = _error(error)
        return 1, report
    report["delegate"] = True
    return 0, report


def _input(value: Any) -> dict[str, str] | None:
    return {"value": value.value, "source": value.source} if value is not None else None


def _error(error: TTMetaError) -> dict[str, str | None]:
    return {
        "kind": type(error).__name__,
        "summary": error.summary,
        "where": error.where,
        "fix": error.fix,
    }


def render(report: dict[str, Any], as_json: bool) -> str:
    if as_json:
        return json.dumps(report, indent=2, sort_keys=True)
    lines: list[str] = []
    if "loads_no_model" in report:
        return (f"command:       `{report['loads_no_model']}` loads no model\n"
                "verdict:       tt_meta chooses no backend (vLLM uses its built-in platform)")
    if "policy" in report:
        inputs = report["inputs"]
        lines.append(f"policy:        {report['policy']}")
        for key in ("model", "device", "backend"):
            item = inputs[key]
            text = f"{item['value']!r} (from {item['source']})" if item else "(not set)"
            if key == "device" and inputs.get("device_unknown"):
                text = f"unknown (TT_META_DEVICE is not set, and {inputs['device_unknown']})"
            lines.append(f"{key + ':':<14} {text}")
        for item in inputs["shadowed"]:
            lines.append(f"  also found {item['value']!r} in {item['source']} (lower precedence)")
        config = report["model_config"]
        if config["path"]:
            lines.append(f"model config:  {config['path']}")
            lines.append(f"  architectures {config['architectures']}, model_type "
                         f"{config['model_type']!r}")
        else:
            lines.append("model config:  not found on local disk (rules on architecture and "
                         "model_type cannot match)")
        lines.append(f"decision:      backend '{report['backend']}' by {report['reason']}")
        lines.append(f"distribution:  {report['distribution']} {report['version']}")
        lines.append(f"entry point:   {report['platform_entry_point']}")
        if report["general_entry_points"]:
            lines.append(f"general:       {', '.join(report['general_entry_points'])}")
        if report["vllm_warning"]:
            lines.append(f"warning:       {report['vllm_warning']}")
        manifest = report.get("manifest")
        if manifest:
            lines.append(f"verified:      {manifest['path']} serial {manifest['serial']}, "
                         f"{manifest['files']} files, signed by "
                         f"{', '.join(k[:16] for k in manifest['signers'])}")
        elif "manifest" in report:
            lines.append("verified:      NO (require_signatures = false)")
        if "platform" in report:
            lines.append(f"platform:      {report['platform']}")
    if "refusal" in report:
        refusal = report["refusal"]
        lines.append(f"REFUSED: {refusal['summary']}")
        if refusal["where"]:
            lines.append(f"  where: {refusal['where']}")
        if refusal["fix"]:
            lines.append(f"  fix: {refusal['fix']}")
    else:
        lines.append("verdict:       would delegate")
    return "\n".join(lines)
