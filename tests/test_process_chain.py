"""One decision per server: a parent decides, children with other command lines reuse it."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path
from typing import Any

from conftest import PROCESS_SCRIPT, TWO_BACKENDS_POLICY, SiteMaker, clean_env, read_events

PARENT = textwrap.dedent(
    """
    import json, os, subprocess, sys
    sys.argv = ["/venv/bin/vllm", "serve", "metal-org/llama"]
    from tt_meta_plugin import vllm_entry
    parent = vllm_entry.platform_plugin()
    children = []
    for extra in json.loads(os.environ["CHILD_ENVS"]):
        env = dict(os.environ, TEST_ARGV=json.dumps(["/venv/bin/worker.py", "--rank", "1"]))
        env.update(extra)
        proc = subprocess.run([sys.executable, "-c", os.environ["CHILD_SCRIPT"]], env=env,
                              capture_output=True, text=True)
        line = [x for x in proc.stdout.splitlines() if x.startswith("RESULT ")][-1]
        children.append({"result": json.loads(line[7:]), "stderr": proc.stderr,
                         "returncode": proc.returncode})
    print("PARENT " + json.dumps({"platform": parent, "children": children}))
    """
)


def run_chain(site: Path, policy: Path, record: Path, child_envs: list[dict[str, str]]
              ) -> dict[str, Any]:
    env = clean_env(
        PYTHONPATH=str(site), VLLM_PLUGINS="tt_meta", TT_META_POLICY=str(policy),
        TT_SIM_RECORD_DIR=str(record), CHILD_ENVS=json.dumps(child_envs),
        CHILD_SCRIPT=PROCESS_SCRIPT,
    )
    proc = subprocess.run([sys.executable, "-c", PARENT], env=env, capture_output=True,
                          text=True, timeout=120)
    line = [x for x in proc.stdout.splitlines() if x.startswith("PARENT ")]
    assert line, proc.stderr
    result: dict[str, Any] = json.loads(line[-1][7:])
    return result


def test_child_with_other_command_line_reuses_the_decision(
    tmp_path: Path, make_site: SiteMaker, policy_file: Callable[[str], Path]
) -> None:
    site = make_site("tt-vllm-plugin", "vllm-tt", "pjrt-plugin-tt")
    out = run_chain(site, policy_file(TWO_BACKENDS_POLICY), tmp_path, [{}])
    assert out["platform"] == "tt_vllm_plugin.platform.TTPlatform"
    (child,) = out["children"]
    assert child["returncode"] == 0 and "exit" not in child["result"], child["stderr"]
    assert child["result"]["inherited"] is True, child["stderr"]
    assert child["result"]["platform"] == ["tt_vllm_plugin.platform.TTPlatform"] * 2
    assert child["result"]["general_plugins_ran"] is True
    events = read_events(tmp_path)
    assert {e["dist"] for e in events} == {"tt-vllm-plugin"}
    assert len({e["pid"] for e in events}) == 2  # parent and child each loaded Metal


def test_child_with_conflicting_reading_fails(
    tmp_path: Path, make_site: SiteMaker, policy_file: Callable[[str], Path]
) -> None:
    site = make_site("tt-vllm-plugin", "vllm-tt", "pjrt-plugin-tt")
    conflicts = [{"TT_META_MODEL": "forge-org/qwen"}, {"TT_META_BACKEND": "forge"},
                 {"TT_META_POLICY": str(policy_file(TWO_BACKENDS_POLICY))}]
    out = run_chain(site, policy_file(TWO_BACKENDS_POLICY), tmp_path, conflicts)
    model, backend, policy = out["children"]
    for child in (model, backend, policy):
        assert child["returncode"] == 1 and child["result"]["exit"] == 1, child["stderr"]
        assert "ERROR" in child["stderr"] and "Traceback" not in child["stderr"]
    assert [c["result"]["code"] for c in (model, backend, policy)] == ["handoff"] * 3
    assert "model 'forge-org/qwen'" in model["stderr"]
    assert "the decision is for 'metal-org/llama'" in model["stderr"]
    assert backend["result"]["exit"] == 1
    assert "backend 'forge'" in backend["stderr"] and "chose 'metal'" in backend["stderr"]
    assert policy["result"]["exit"] == 1 and "same TT_META_POLICY" in policy["stderr"]
    # None of the refusing children switched to Forge.
    events = read_events(tmp_path)
    assert {e["dist"] for e in events} == {"tt-vllm-plugin"}


def test_malformed_recorded_decision(
    tmp_path: Path, make_site: SiteMaker, policy_file: Callable[[str], Path]
) -> None:
    site = make_site("tt-vllm-plugin")
    env = clean_env(PYTHONPATH=str(site), VLLM_PLUGINS="tt_meta", TT_META_DECISION="{garbage",
                    TT_META_POLICY=str(policy_file(TWO_BACKENDS_POLICY)))
    proc = subprocess.run([sys.executable, "-c", PROCESS_SCRIPT], env=env, capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 1 and '"exit": 1' in proc.stdout, proc.stderr
    assert "Traceback" not in proc.stderr
    assert "TT_META_DECISION is not a decision recorded by tt_meta" in proc.stderr
    assert "unset TT_META_DECISION" in proc.stderr
