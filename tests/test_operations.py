"""What an operator sees of tt_meta when everything goes right: the audit line in the log, the
manifests' expiry (a WARNING before the cliff; `tt-meta verify` and `doctor` show the days
left), and tt_meta's metrics in vLLM's `/metrics` (docs/operations.md, "Observing").

Processes here are fresh interpreters on a signed simulated site (the `scene`), run as vLLM
runs tt_meta; the real `vllm serve` test at the end scrapes a real server's `/metrics`."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import textwrap
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from conftest import MODEL, VLLM_ARGV0, Scene, clean_env

FORGE_MODEL = [VLLM_ARGV0, "serve", "forge-org/qwen"]
DAY = 86400

# A first process (or, with TT_META_DECISION, a child) as vLLM runs tt_meta, with logging
# configured as an application would (a handler on the root logger), then what
# prometheus_client's process-wide registry (the one vLLM serves) holds, and which modules
# the process loaded.
PROCESS = textwrap.dedent(
    """
    import json, logging, os, sys
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s %(message)s")
    sys.argv = json.loads(os.environ.pop("TEST_ARGV"))
    from tt_meta_plugin import vllm_entry
    vllm_entry.platform_plugin(); vllm_entry.general_plugin()
    out = {"decision": os.environ.get("TT_META_DECISION"),
           "metrics_file": os.environ.get("TT_META_METRICS_FILE"),
           "modules": sorted(m for m in sys.modules if m.startswith(
               ("prometheus_client", "tt_meta_plugin.activation")))}
    child = os.environ.get("TEST_CHILD")
    if child:  # a child vLLM would start from here: it inherits this environment
        import subprocess
        env = dict(os.environ, TEST_ARGV=json.dumps([child]))
        env.pop("TEST_CHILD")
        done = subprocess.run([sys.executable, "-c", os.environ["TEST_SCRIPT"]], env=env,
                              capture_output=True, text=True)
        out["child"] = [done.returncode, done.stdout, done.stderr]
    if "prometheus_client" in sys.modules:
        import prometheus_client
        out["metrics"] = prometheus_client.generate_latest().decode()
    print("OUT " + json.dumps(out))
    """
)


def run(scene: Scene, argv: list[str], policy: Path | None = None, **env: str
        ) -> tuple[dict[str, Any], str]:
    proc = subprocess.run(
        [sys.executable, "-c", PROCESS], capture_output=True, text=True, timeout=180,
        env=clean_env(PYTHONPATH=str(scene.site), VLLM_PLUGINS="tt_meta",
                      TT_META_POLICY=str(policy or scene.policy), TEST_ARGV=json.dumps(argv),
                      TEST_SCRIPT=PROCESS, **env))
    assert proc.returncode == 0, proc.stderr[-3000:]
    (line,) = [x for x in proc.stdout.splitlines() if x.startswith("OUT ")]
    out: dict[str, Any] = json.loads(line[4:])
    return out, proc.stderr


def audit_line(stderr: str) -> dict[str, str]:
    """The INFO audit line's fields (quoted values unquoted)."""
    (line,) = [x for x in stderr.splitlines()
               if x.startswith("INFO vllm.tt_meta tt_meta audit: ")]
    fields = re.findall(r'(\w+)=("(?:[^"\\]|\\.)*"|\S+)', line.split("audit: ", 1)[1])
    return {k: json.loads(v) if v.startswith('"') else v for k, v in fields}


def sample(metrics: str, name: str) -> list[tuple[dict[str, str], float]]:
    """The samples of `name` in a Prometheus text exposition: (labels, value) each."""
    found = []
    for line in metrics.splitlines():
        match = re.fullmatch(rf"{re.escape(name)}(?:{{(.*)}})? (\S+)", line)
        if match:
            labels = dict(re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', match.group(1) or ""))
            found.append((labels, float(match.group(2))))
    return found


def test_the_audit_line_and_the_metrics_of_a_serving_first_process(scene: Scene) -> None:
    out, stderr = run(scene, FORGE_MODEL, TEST_CHILD="/venv/bin/worker.py")
    fields = audit_line(stderr)
    assert fields["verdict"] == "delegated" and fields["backend"] == "forge", fields
    assert fields["distribution"] == "vllm_tt" and fields["version"] == "0.1.0", fields
    assert fields["reason"] == "rule 1: model = 'forge-org/*'", fields
    assert fields["serial"] == "1" and fields["signers"] == scene.keyid, fields
    assert fields["verified"] == "files" and fields["runtimes"] == "pjrt-plugin-tt 0.1.0"
    assert float(fields["ms"]) > 0 and "time" not in fields, fields
    # The metrics vLLM's /metrics serves from this process's registry.
    metrics = str(out["metrics"])
    ((info, value),) = sample(metrics, "tt_meta_backend_info")
    assert value == 1 and info == {
        "backend": "forge", "distribution": "vllm-tt", "version": "0.1.0", "serial": "1",
        "signers": scene.keyid, "rule": "rule 1: model = 'forge-org/*'"}, info
    expiry = {labels["distribution"]: v for labels, v in
              sample(metrics, "tt_meta_manifest_expiry_timestamp_seconds")}
    assert set(expiry) == {"vllm-tt", "pjrt-plugin-tt"}, expiry
    for when in expiry.values():  # signed with 30 days to go, moments ago
        assert 29.9 * DAY < when - time.time() <= 30 * DAY, expiry
    first = {labels["kind"]: v for labels, v in
             sample(metrics, "tt_meta_activation_seconds_sum")}
    counts = {labels["kind"]: v for labels, v in
              sample(metrics, "tt_meta_activation_seconds_count")}
    assert counts == {"first": 1, "child": 1}, metrics
    assert abs(first["first"] - float(fields["ms"]) / 1e3) <= 5e-6, (first, fields)
    # The child the process started inherited, reported its time, and loaded no metric code.
    code, child_out, child_err = out["child"]
    assert code == 0, child_err[-3000:]
    child = json.loads(child_out.split("OUT ", 1)[1])
    assert audit_line(child_err)["verdict"] == "inherited"
    assert 0 < first["child"] == pytest.approx(float(audit_line(child_err)["ms"]) / 1e3, abs=1e-5)
    assert not [m for m in child["modules"] if m.startswith("prometheus_client")
                or m.endswith((".metrics", ".operations"))], child["modules"]
    assert "expires in" not in stderr + child_err  # 30 days left: no warning (default 14)


def test_no_metric_code_where_no_metrics_are_served(scene: Scene) -> None:
    """A first process that serves no API (`vllm.LLM`, a script) imports no metric code and
    names no metrics file for its children."""
    out, stderr = run(scene, ["/srv/offline.py"], TT_META_MODEL="forge-org/qwen")
    assert audit_line(stderr)["verdict"] == "delegated"
    assert out["metrics_file"] is None
    assert not [m for m in out["modules"] if m.startswith("prometheus_client")
                or m.endswith((".metrics",))], out["modules"]


def test_the_metrics_in_prometheus_multiprocess_mode(scene: Scene, tmp_path: Path) -> None:
    """With PROMETHEUS_MULTIPROC_DIR set, vLLM serves the metric files of that directory:
    the front end writes its values there, read here as vLLM reads them."""
    from prometheus_client import CollectorRegistry, generate_latest, multiprocess

    files = tmp_path / "prometheus"
    files.mkdir()
    out, _ = run(scene, FORGE_MODEL, PROMETHEUS_MULTIPROC_DIR=str(files))
    assert out["metrics_file"] is None  # children cannot be reported in this mode
    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry, path=str(files))  # type: ignore[no-untyped-call]
    metrics = generate_latest(registry).decode()
    ((info, value),) = sample(metrics, "tt_meta_backend_info")
    assert value == 1 and info["backend"] == "forge" and info["serial"] == "1", info
    expiry = dict((labels["distribution"], v) for labels, v in
                  sample(metrics, "tt_meta_manifest_expiry_timestamp_seconds"))
    assert set(expiry) == {"vllm-tt", "pjrt-plugin-tt"}, metrics
    assert all(29.9 * DAY < when - time.time() <= 30 * DAY for when in expiry.values())
    ((labels, count),) = sample(metrics, "tt_meta_activation_seconds_count")
    assert labels == {"kind": "first"} and count == 1, metrics


@pytest.mark.parametrize(("trust", "top", "warned"), [
    ("warn_expiry_days = 40", "", {"vllm-tt", "pjrt-plugin-tt"}),  # 30 days left: inside
    ("warn_expiry_days = 29", "", set()),  # outside
    ("warn_expiry_days = 0", "", set()),  # never
    ("warn_expiry_days = 40\nrequire_runtime_signatures = false", "", {"vllm-tt"}),
    # Nothing verified: nothing to warn of. (Metal: the scene installs no runtime for it, and
    # with Forge's runtime installed the waiver currently refuses its import.)
    ("warn_expiry_days = 40", "require_signatures = false\n", set()),
])
def test_the_expiry_warning_threshold(scene: Scene, trust: str, top: str,
                                      warned: set[str]) -> None:
    policy = scene.policy_with(trust=trust, top=top)
    result = scene.run(policy, MODEL if top else FORGE_MODEL)
    assert result.returncode == 0, result.stderr[-3000:]
    found = re.findall(r"WARNING .* tt_meta: the manifest of (\S+) 0\.1\.0 expires in "
                       r"(\d+\.\d) days \(\d{4}-\d\d-\d\d \d\d:\d\d UTC\): from then on every "
                       r"vLLM server refuses to start with it \(warn_expiry_days = 40 in "
                       + re.escape(str(policy)) + r"\)", result.stderr)
    assert {d.replace("_", "-") for d, _ in found} == warned, result.stderr[-3000:]
    assert all(29.9 < float(days) <= 30 for _, days in found), found
    if warned:  # a child inherits: its first process warned, it does not
        child = scene.child(result.decision, policy)
        assert child.returncode == 0, child.stderr[-3000:]
        assert "expires in" not in child.stderr, child.stderr[-3000:]


def test_a_negative_warn_expiry_days_is_refused(scene: Scene) -> None:
    result = scene.run(scene.policy_with(trust="warn_expiry_days = -1"), FORGE_MODEL)
    assert result.refused and "trust.warn_expiry_days must not be negative" in result.stderr


def tt_meta(scene: Scene, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "tt_meta_plugin.cli", *args],
                          env=clean_env(PYTHONPATH=str(scene.site), VLLM_PLUGINS="tt_meta",
                                        TT_META_POLICY=str(scene.policy)),
                          capture_output=True, text=True, timeout=120)


def test_verify_and_doctor_show_the_days_left(scene: Scene) -> None:
    proc = tt_meta(scene, "verify", "--json")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    results = {r["distribution"]: r for r in json.loads(proc.stdout)}
    for r in results.values():
        assert 29.9 * DAY < r["expires_at"] - time.time() <= 30 * DAY, r
        assert r["expires"] == time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(r["expires_at"]))
        assert 29.9 <= r["days_left"] <= 30, r
    text = tt_meta(scene, "verify", "--dist", "vllm-tt").stdout
    assert re.search(r"OK     vllm_tt 0\.1\.0 \(forge\): .*, expires "
                     r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ \((29\.9|30\.0) days left\)", text), text
    doctor = tt_meta(scene, "doctor")
    assert re.search(r"\[  ok\] manifest vllm_tt 0\.1\.0: verified; expires in (29\.9|30\.0) "
                     r"days", doctor.stdout), doctor.stdout
    assert re.search(r"\[  ok\] manifest pjrt-plugin-tt 0\.1\.0: verified; expires in",
                     doctor.stdout), doctor.stdout
    scene.policy = scene.policy_with(trust="warn_expiry_days = 31")
    doctor = tt_meta(scene, "doctor")
    assert re.search(r"\[warn\] manifest vllm_tt 0\.1\.0: expires in (29\.9|30\.0) days "
                     r"\(.*\), within warn_expiry_days = 31", doctor.stdout), doctor.stdout
    assert "fix: sign it again: tt-meta sign --dist vllm_tt --backend forge" in doctor.stdout


def test_the_info_line_waits_for_vllms_logging_configuration(scene: Scene) -> None:
    """vLLM 0.32 configures its logging after the platform plugins ran: the audit line is
    logged once it has, through vLLM's handler and format, not lost before it."""
    script = textwrap.dedent(
        """
        import json, logging, os, sys
        sys.argv = json.loads(os.environ.pop("TEST_ARGV"))
        if os.environ.get("VLLM_CONFIGURE_LOGGING") == "0":  # the application's own logging
            logging.basicConfig(level=logging.INFO, stream=sys.stdout, format="APP %(message)s")
        import vllm.logger  # vLLM 0.32: imported, logging not configured yet
        from tt_meta_plugin import vllm_entry
        vllm_entry.platform_plugin(); vllm_entry.general_plugin()
        if os.environ.get("TEST_WARN"):  # a WARNING before configuration: a handler of its own
            from tt_meta_plugin._log import log
            log(logging.WARNING, "tt_meta: a warning before vLLM configured logging")
        print("CONFIGURING", flush=True)
        from vllm.config.logging import LoggingConfig
        vllm.logger.configure_logging(LoggingConfig())
        vllm.logger.init_logger("vllm.test").info("first line after configuration")
        """)
    # vLLM logs to stdout (VLLM_LOGGING_STREAM), warnings to stderr
    for warn in ("", "1"):  # the line is kept, also when a WARNING was logged before
        proc = subprocess.run(
            [sys.executable, "-c", script], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            text=True, timeout=180,
            env=clean_env(PYTHONPATH=str(scene.site), VLLM_PLUGINS="tt_meta",
                          TT_META_POLICY=str(scene.policy), TEST_ARGV=json.dumps(FORGE_MODEL),
                          TEST_WARN=warn))
        assert proc.returncode == 0, proc.stdout[-3000:]
        before, _, after = proc.stdout.partition("CONFIGURING")
        assert "tt_meta audit:" not in before, before
        assert ("a warning before vLLM configured logging" in before) == bool(warn), before
        lines = after.splitlines()
        (ours,) = [i for i, x in enumerate(lines) if "tt_meta audit: " in x]
        # vLLM 0.32's format: "(PROCESS pid=N) INFO MM-DD HH:MM:SS [file.py:N] message"
        assert re.match(r"\(\S+ pid=\d+\) INFO \d\d-\d\d \d\d:\d\d:\d\d \[audit\.py:\d+\] "
                        r"tt_meta audit: pid=\d+ verdict=delegated backend=forge",
                        lines[ours]), lines
        assert "first line after configuration" in lines[ours + 1], lines
    # With VLLM_CONFIGURE_LOGGING=0, the application's logging has it, at once.
    proc = subprocess.run(
        [sys.executable, "-c", script], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        text=True, timeout=180,
        env=clean_env(PYTHONPATH=str(scene.site), VLLM_PLUGINS="tt_meta",
                      TT_META_POLICY=str(scene.policy), TEST_ARGV=json.dumps(FORGE_MODEL),
                      VLLM_CONFIGURE_LOGGING="0"))
    assert proc.returncode == 0, proc.stdout[-3000:]
    before, _, after = proc.stdout.partition("CONFIGURING")
    assert re.search(r"^APP tt_meta audit: pid=\d+ verdict=delegated", before, re.M), before
    assert "tt_meta audit" not in after and "Logging error" not in proc.stdout, after


# -- A real `vllm serve` ---------------------------------------------------------------------

EXPIRES_DAYS = 10  # inside the default warn_expiry_days (14): the server warns


@pytest.fixture(scope="module")
def signed_server_site(tmp_path_factory: pytest.TempPathFactory, sim_wheels: dict[str, Path]
                       ) -> tuple[Path, Path, Path, str]:
    """Forge and its runtime installed and signed by the operator with `tt-meta sign
    --expires 10`; a tiny Forge model; the e2e policy trusting the key. (site, model, policy,
    key id)"""
    from operator_flow import tt_meta as operator
    from sim import install
    from tiny_model import make_tiny_model

    root = tmp_path_factory.mktemp("ops-e2e")
    site = install([sim_wheels[p] for p in ("sim-record", "vllm-tt", "pjrt-plugin-tt")],
                   root / "site")
    model = make_tiny_model(root / "models" / "forge-model", "LlamaForCausalLM")
    keys = root / "keys"
    keys.mkdir()
    keyid = operator("keygen", "--out", str(keys / "release"), site=site).split()[2]
    (keys / "release.key").rename(root / "release.key")  # the private key stays off the host
    for dist in ("vllm-tt", "pjrt-plugin-tt"):  # into each .dist-info: always read
        operator("sign", "--dist", dist, "--backend", "forge", "--key",
                 str(root / "release.key"), "--expires", str(EXPIRES_DAYS), site=site)
    policy = root / "policy.toml"
    policy.write_text((Path(__file__).parent / "support" / "two_models_policy.toml").read_text()
                      + f'\n[trust]\nkey_dirs = ["{keys}"]\nstate_dir = "{root / "state"}"\n'
                      f'\n[trust.signers]\nforge = ["{keyid}"]\n')
    return site, model, policy, keyid


@pytest.mark.e2e
def test_a_real_vllm_serve_shows_the_audit_line_and_the_metrics(
        signed_server_site: tuple[Path, Path, Path, str], tmp_path: Path) -> None:
    from server import complete, vllm_server

    site, model, policy, keyid = signed_server_site
    record = tmp_path / "record"
    record.mkdir()
    env = clean_env(PYTHONPATH=str(site), VLLM_PLUGINS="tt_meta", TT_META_POLICY=str(policy),
                    TT_SIM_RECORD_DIR=str(record), VLLM_CPU_KVCACHE_SPACE="1")
    log = tmp_path / "serve.log"
    with vllm_server(model, env, log) as server:
        complete(server.port, model)  # a served request, so the engine core has run
        with urllib.request.urlopen(f"http://127.0.0.1:{server.port}/metrics",
                                    timeout=30) as response:
            metrics = response.read().decode()
    output = log.read_text()
    rule = "rule 2 (Forge models): model = '*/forge-model'"
    ((info, value),) = sample(metrics, "tt_meta_backend_info")
    assert value == 1 and info == {
        "backend": "forge", "distribution": "vllm-tt", "version": "0.1.0",
        "serial": info["serial"], "signers": keyid, "rule": rule}, info
    assert int(info["serial"]) > 1_700_000_000, info  # tt-meta sign's default: the time
    expiry = {labels["distribution"]: v for labels, v in
              sample(metrics, "tt_meta_manifest_expiry_timestamp_seconds")}
    assert set(expiry) == {"vllm-tt", "pjrt-plugin-tt"}, metrics
    for when in expiry.values():  # signed moments before the server started
        assert (EXPIRES_DAYS - 0.1) * DAY < when - time.time() <= EXPIRES_DAYS * DAY, expiry
    counts = {labels["kind"]: v for labels, v in
              sample(metrics, "tt_meta_activation_seconds_count")}
    sums = {labels["kind"]: v for labels, v in sample(metrics, "tt_meta_activation_seconds_sum")}
    # The front end, and its children: the engine core and its worker (at least).
    assert counts["first"] == 1 and counts["child"] >= 2, metrics
    assert 0 < sums["first"] < 30 and 0 < sums["child"] < 30 * counts["child"], metrics
    # The audit lines, in vLLM 0.32's format: "(NAME pid=N) INFO MM-DD HH:MM:SS [FILE:N] ...".
    lines = re.findall(r"^\((\S+) pid=(\d+)\) INFO \d\d-\d\d \d\d:\d\d:\d\d \[audit\.py:\d+\] "
                       r"tt_meta audit: pid=\d+ verdict=(\w+) backend=forge distribution=vllm_tt "
                       r"version=0\.1\.0 reason=(\"[^\"]*\") .*serial=(\d+) signers=(\S+) "
                       r"runtimes=(\".*?\"|\S+) verified=(\S+) ms=([\d.]+)$", output, re.M)
    front = [x for x in lines if int(x[1]) == server.pid]
    assert [x[2] for x in front] == ["delegated"], output[-4000:]
    assert json.loads(front[0][3]) == rule and front[0][4] == info["serial"], front
    assert front[0][5] == keyid and front[0][7] == "files", front
    assert abs(float(front[0][8]) / 1e3 - sums["first"]) <= 5e-6, (front, sums)
    # Every audit line the server printed is in vLLM's format: the engine core's and its
    # worker's too (each configures vLLM's logging). A child that never configures it (vLLM's
    # model inspection subprocess) prints no INFO line, vLLM's own included, yet reports its
    # activation to the metrics.
    assert output.count("tt_meta audit: ") == len(lines), output[-4000:]
    assert 2 <= len([x for x in lines if x[2] == "inherited"]) <= counts["child"], lines
    # The expiry warning: once per manifest in use, from the front end only.
    warned = re.findall(r"tt_meta: the manifest of (\S+) 0\.1\.0 expires in (\d+\.\d) days",
                        output)
    assert sorted(d.replace("-", "_") for d, _ in warned) == ["pjrt_plugin_tt", "vllm_tt"]
    assert all(EXPIRES_DAYS - 0.1 <= float(days) <= EXPIRES_DAYS for _, days in warned)


def test_a_child_reports_only_to_a_private_file_of_its_user(scene: Scene) -> None:
    parent = scene.run(argv=FORGE_MODEL)
    assert parent.returncode == 0, parent.stderr[-3000:]
    # Another private file of the user (a seal, a record): never appended to.
    other = scene.root / "private.json"
    other.write_text("{}")
    other.chmod(0o600)
    child = scene.run(None, ["/venv/bin/worker.py"], TT_META_DECISION=parent.decision,
                      TT_META_METRICS_FILE=str(other))
    assert child.returncode == 0, child.stderr[-3000:]
    assert other.read_text() == "{}" and "not a metrics file tt_meta made" in child.stderr
    report = scene.root / "tt-meta-activations-test.txt"
    report.write_text("")
    for mode, reported in ((0o600, 1), (0o644, 0)):
        report.chmod(mode)
        child = scene.run(None, ["/venv/bin/worker.py"], TT_META_DECISION=parent.decision,
                          TT_META_METRICS_FILE=str(report))
        assert child.returncode == 0, child.stderr[-3000:]
        lines = report.read_text().splitlines()
        assert len(lines) == 1 and 0 < float(lines[0]) < 30, (mode, lines)  # the 0600 one
        refused = "not reporting this process's activation time" in child.stderr
        assert refused == (not reported), (mode, child.stderr[-2000:])
