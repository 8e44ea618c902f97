"""The child-path budget, enforced: what a child process (engine core, worker, Ray actor) may
import. Every vLLM server starts several children and each pays for every module it imports,
so the list is short and deliberate; docs/architecture.md ("The child path") explains it,
with the rule for the types on this path (plain classes with __slots__, no dataclasses)."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

from conftest import METAL, Scene, assert_delegated, clean_env

# The package modules a child may load: the vLLM glue, the child path of activation, what
# it shares with the selection inputs, and the trust modules that inherit and guard. Not the
# policy parser, the decision, the catalog, the verifier, manifests, signatures, keys,
# signing, nor (unless the policy waives signatures) the waiver.
CHILD_BUDGET = frozenset({
    "tt_meta_plugin", "tt_meta_plugin._errors", "tt_meta_plugin._log",
    "tt_meta_plugin._metadata", "tt_meta_plugin.vllm_entry",
    "tt_meta_plugin.activation", "tt_meta_plugin.activation.audit",
    "tt_meta_plugin.activation.backend", "tt_meta_plugin.activation.child_process",
    "tt_meta_plugin.activation.recorded_decision",
    "tt_meta_plugin.selection", "tt_meta_plugin.selection.inputs",
    # How a vLLM command line is read (a child compares its model with the decision's); its
    # option table, vllm_options, loads only for a vLLM command line, not this worker's.
    "tt_meta_plugin.selection.command_line",
    "tt_meta_plugin.trust", "tt_meta_plugin.trust.import_guard",
    "tt_meta_plugin.trust.permissions", "tt_meta_plugin.trust.roles",
    "tt_meta_plugin.trust.settings_seal",
    "tt_meta_plugin.trust.trusted_set", "tt_meta_plugin.trust.verification_record",
})
# The simulated backend's own packages, which the child loads by delegating.
BACKEND_PACKAGES = {"tt_vllm_plugin", "tt_sim_record"}

CHILD = textwrap.dedent(
    """
    import json, sys
    before = set(sys.modules)
    sys.argv = ["/venv/bin/worker.py", "--rank", "1"]
    from tt_meta_plugin import vllm_entry
    vllm_entry.platform_plugin()
    print("LOADED " + json.dumps(sorted(set(sys.modules) - before)))
    """
)


def test_a_child_imports_only_its_budget(scene: Scene) -> None:
    parent = scene.run()
    assert_delegated(parent, METAL)
    # A child of a server whose front end serves tt_meta's metrics: it reports its activation
    # time to the front end's file without metric code (activation/audit.py).
    metrics_file = scene.root / "tt-meta-activations-test.txt"
    metrics_file.write_text("")
    metrics_file.chmod(0o600)  # as its front end makes it
    proc = subprocess.run(
        [sys.executable, "-c", CHILD], capture_output=True, text=True, timeout=120,
        env=clean_env(PYTHONPATH=str(scene.site), VLLM_PLUGINS="tt_meta",
                      TT_META_POLICY=str(scene.policy), TT_META_DECISION=parent.decision,
                      TT_META_METRICS_FILE=str(metrics_file)))
    assert proc.returncode == 0, proc.stderr[-3000:]
    (reported,) = metrics_file.read_text().splitlines()
    assert 0 < float(reported) < 30, reported
    (line,) = [x for x in proc.stdout.splitlines() if x.startswith("LOADED ")]
    loaded = json.loads(line[len("LOADED "):])
    ours = {m for m in loaded if m.split(".")[0] == "tt_meta_plugin"}
    assert ours == CHILD_BUDGET, (sorted(ours - CHILD_BUDGET), sorted(CHILD_BUDGET - ours))
    others = sorted(m for m in loaded if m.split(".")[0] not in sys.stdlib_module_names
                    and m.split(".")[0] not in {"tt_meta_plugin", *BACKEND_PACKAGES}
                    and not m.startswith("_"))
    assert others == [], f"third-party packages on the child path: {others}"
