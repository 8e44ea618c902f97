"""The decision: which backend serves this model, and why.

Precedence, highest first:
1. a matching `deny` rule refuses the model, whatever else says otherwise;
2. `TT_META_BACKEND`, an explicit choice by the operator;
3. the model directory's own `tt_meta_backend` key, only if the policy trusts model metadata;
4. the first rule that matches;
5. `default_backend`.
Whatever is chosen must be in `allowed_backends`. Nothing matching means a refusal.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import NamedTuple

from .._errors import SelectionError
from .inputs import ENV_BACKEND, ENV_MODEL, Inputs
from .model_config import METADATA_BACKEND_KEY, ModelConfig, read_model_config
from .policy import Facts, Policy, Rule


class Decision(NamedTuple):
    backend: str
    reason: str
    rule: Rule | None
    facts: Facts
    model_config: ModelConfig


def gather_facts(inputs: Inputs, environ: Mapping[str, str]) -> tuple[Facts, ModelConfig]:
    """Turn the inputs into what rules match on, reading the model's config from disk."""
    model = inputs.model.value if inputs.model else None
    command = inputs.command if inputs.command and inputs.command.loads else None
    config = read_model_config(model, environ, command) if model else ModelConfig()
    # A local model is matched by its real path, the files vLLM loads (inputs.local_model).
    model_path = os.path.realpath(os.path.expanduser(model)) if model and os.path.isdir(
        os.path.expanduser(model)
    ) else None
    facts = Facts(
        model=model,
        model_path=model_path,
        architectures=config.architectures,
        model_type=config.model_type,
        device=inputs.device.value if inputs.device else None,
    )
    return facts, config


def decide(policy: Policy, inputs: Inputs, facts: Facts, config: ModelConfig) -> Decision:
    if config.unread:
        _refuse_if_config_matters(policy, facts, config.unread)
    rule = policy.first_match(facts)
    if rule is not None and rule.deny:
        raise SelectionError(
            f"model {facts.model!r} is denied by {rule.describe()}",
            where=policy.source,
            fix="serve another model, or change that rule if this model should be served",
        )
    if inputs.backend is not None:
        chosen, reason, used_rule = inputs.backend.value, inputs.backend.source, None
    elif policy.trust_model_metadata and config.metadata_backend:
        chosen = config.metadata_backend
        reason = f"model metadata ({config.path}, key '{METADATA_BACKEND_KEY}')"
        used_rule = None
    elif rule is not None and rule.backend is not None:
        chosen, reason, used_rule = rule.backend, rule.describe(), rule
    elif policy.default_backend is not None:
        chosen, reason, used_rule = policy.default_backend, "default_backend", None
    elif facts.model is None:
        raise SelectionError(
            "no model found to choose a backend for, and the policy sets no default_backend",
            where=policy.source,
            fix=(
                f"pass the model on the vLLM command line (vllm serve MODEL or --model MODEL), "
                f"or set {ENV_MODEL}=MODEL, or {ENV_BACKEND}=metal|forge"
            ),
        )
    else:
        raise SelectionError(
            f"model {facts.model!r} matches no rule and no default_backend is set",
            where=policy.source,
            fix=(
                f"add a [[rule]] for this model (see docs/policy.md), set default_backend, "
                f"or set {ENV_BACKEND}=metal|forge"
            ),
        )
    if chosen not in policy.allowed_backends:
        raise SelectionError(
            f"backend '{chosen}', chosen by {reason}, is not in allowed_backends "
            f"{list(policy.allowed_backends)}",
            where=policy.source,
            fix=f"add '{chosen}' to allowed_backends if this host may run it, or choose another",
        )
    return Decision(chosen, reason, used_rule, facts, config)


def _refuse_if_config_matters(policy: Policy, facts: Facts, unread: str) -> None:
    """The config vLLM reads is not on disk: refuse if a rule on architecture or model type,
    before the rule that matches without it, could match once the config is known."""
    for rule in policy.rules:
        if rule.matches(facts):
            return
        if (rule.architecture or rule.model_type) and rule._replace(
                architecture=(), model_type=()).matches(facts):
            raise SelectionError(
                f"tt_meta cannot read the model config vLLM will use ({unread}), and "
                f"{rule.describe()} could match it",
                where=policy.source,
                fix="download that revision or config first (huggingface-cli download MODEL "
                    "--revision REV), or serve without --revision/--hf-config-path",
            )
