"""`tt-meta explain --matrix`: every model x device under the policy, run as an operator runs
it (the terminal table, --json, and the --html page rendered by a real headless Chromium)."""

from __future__ import annotations

import html.parser
import json
import os
import re
import shutil
import struct
import subprocess
import sys
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from conftest import BUILTIN_POLICY, SiteMaker, clean_env

from tt_meta_plugin.selection.model_spec import choose, load_model_spec

PolicyFile = Callable[[str], Path]

POLICY = """
    version = 1
    allowed_backends = ["metal", "forge"]

    [[rule]]
    name = "no secret models"
    model = "secret-org/*"
    deny = true

    [[rule]]
    name = "llama on p150 runs on forge"
    model = "org/llama"
    device = "p150"
    backend = "forge"

    [[rule]]
    model = ["org/llama", "org/qwen"]
    backend = "metal"

    [[rule]]
    name = "qwen on n300"
    model = "org/qwen"
    device = "n300"
    backend = "forge"

    [[rule]]
    model = "secret-org/model"
    device = "n150"
    backend = "metal"
"""
DEVICES = ["p150", "n300", "n150"]  # the devices the rules name, in their order
MODELS = ["org/llama", "org/qwen", "secret-org/model"]  # named exactly (not "secret-org/*")
DENIED = "model 'secret-org/model' is denied by rule 1 (no secret models): model = 'secret-org/*'"


def tt_meta(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "tt_meta_plugin.cli", *args],
                          env=clean_env(**env), capture_output=True, text=True, timeout=60)


def matrix_json(policy: Path, *args: str, **env: str) -> dict[str, Any]:
    proc = tt_meta("explain", "--matrix", "--json", *args, TT_META_POLICY=str(policy), **env)
    assert proc.returncode == 0, proc.stderr
    data: dict[str, Any] = json.loads(proc.stdout)
    return data


def cell(data: dict[str, Any], model: str, device: str | None) -> dict[str, Any]:
    found: list[dict[str, Any]] = [c for c in data["cells"]
                                   if c["model"] == model and c["device"] == device]
    assert len(found) == 1, (model, device)
    return found[0]


# -- The decision, per cell ---------------------------------------------------------------------


def test_json_gives_each_pair_its_backend_and_rule(policy_file: PolicyFile) -> None:
    policy = policy_file(POLICY)
    data = matrix_json(policy)
    assert data["models"] == MODELS and data["devices"] == DEVICES
    assert data["policy"]["path"] == str(policy)
    assert len(data["cells"]) == 9
    llama_p150 = cell(data, "org/llama", "p150")
    assert llama_p150 == {
        "model": "org/llama", "device": "p150", "backend": "forge", "chosen_by": "rule",
        "rule": 2, "rule_name": "llama on p150 runs on forge",
        "reason": "rule 2 (llama on p150 runs on forge): model = 'org/llama', device = 'p150'",
        "refusal": None}
    assert cell(data, "org/llama", "n150")["backend"] == "metal"
    assert cell(data, "org/llama", "n150")["rule"] == 3
    # The first rule that matches wins: rule 4 (qwen on n300) is never reached.
    assert (cell(data, "org/qwen", "n300")["backend"], cell(data, "org/qwen", "n300")["rule"]
            ) == ("metal", 3)
    for device in DEVICES:  # the deny rule comes first, whatever a later rule says
        denied = cell(data, "secret-org/model", device)
        assert denied["backend"] is None and denied["rule"] is None
        assert denied["refusal"] == {
            "code": "selection", "summary": DENIED, "where": str(policy),
            "fix": "serve another model, or change that rule if this model should be served"}
    assert data["counts"] == {"forge": 1, "metal": 5, "refused": 3}


def test_the_json_shape_is_the_documented_one(policy_file: PolicyFile) -> None:
    data = matrix_json(policy_file(POLICY))
    assert set(data) == {"format", "generated", "policy", "backend_override", "models",
                         "devices", "rules", "cells", "counts"}
    assert data["format"] == 1 and data["backend_override"] is None
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", data["generated"])
    assert set(data["policy"]) == {"path", "sha256", "allowed_backends", "default_backend"}
    assert data["policy"]["allowed_backends"] == ["metal", "forge"]
    assert data["rules"][0] == {"number": 1, "name": "no secret models", "backend": None,
                                "deny": True, "describe": "rule 1 (no secret models): model = "
                                "'secret-org/*'"}
    assert all(set(c) == {"model", "device", "backend", "chosen_by", "rule", "rule_name",
                          "reason", "refusal"} for c in data["cells"])
    docs = (Path(__file__).parents[1] / "docs" / "policy.md").read_text(encoding="utf-8")
    for key in (*data, *data["cells"][0], *data["policy"], *data["rules"][0]):
        assert f"`{key}`" in docs, f"{key} is not documented in docs/policy.md"


def test_allowed_backends_refuses_what_a_rule_chooses(policy_file: PolicyFile) -> None:
    policy = policy_file(POLICY.replace('["metal", "forge"]', '["metal"]'))
    data = matrix_json(policy)
    refused = cell(data, "org/llama", "p150")
    assert refused["backend"] is None
    assert refused["refusal"]["summary"] == (
        "backend 'forge', chosen by rule 2 (llama on p150 runs on forge): model = 'org/llama', "
        "device = 'p150', is not in allowed_backends ['metal']")
    assert refused["refusal"]["fix"].startswith("add 'forge' to allowed_backends")
    assert cell(data, "org/llama", "n300")["backend"] == "metal"


def test_the_terminal_table(policy_file: PolicyFile) -> None:
    policy = policy_file(POLICY)
    proc = tt_meta("explain", "--matrix", TT_META_POLICY=str(policy))
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0].startswith(f"policy:    {policy} (sha256 ")
    assert lines[1].startswith("generated: ")
    header = next(i for i, line in enumerate(lines) if line.startswith("model "))
    assert lines[header].split() == ["model", *DEVICES]
    rows = {line.split("  ")[0]: re.split(r"\s{2,}", line)[1:] for line in lines[header + 1:
                                                                                header + 4]}
    assert rows == {
        "org/llama": ["forge (rule 2)", "metal (rule 3)", "metal (rule 3)"],
        "org/qwen": ["metal (rule 3)", "metal (rule 3)", "metal (rule 3)"],
        "secret-org/model": ["REFUSED [1]", "REFUSED [1]", "REFUSED [1]"],
    }
    out = proc.stdout
    assert f"  [1] {DENIED}\n      where: {policy}\n      fix: serve another model" in out
    assert ("  rule 2 (llama on p150 runs on forge): model = 'org/llama', device = 'p150' "
            "-> forge\n") in out
    assert "rule 1 (no secret models)" not in out.split("rules:")[1].split("refused:")[0]
    assert lines[-1] == "1 forge, 5 metal, 3 refused of 9 cells"


def test_models_file_and_devices(policy_file: PolicyFile, tmp_path: Path) -> None:
    models = tmp_path / "models.txt"
    models.write_text("# models we serve\n\norg/qwen\n  nobody/x  \norg/qwen\n# the end\n",
                      encoding="utf-8")
    policy = policy_file(POLICY)
    data = matrix_json(policy, "--models", str(models), "--devices", " N300,t3k")
    assert data["models"] == ["org/qwen", "nobody/x"] and data["devices"] == ["n300", "t3k"]
    assert cell(data, "org/qwen", "t3k")["backend"] == "metal"
    assert cell(data, "nobody/x", "n300")["refusal"]["summary"] == (
        "model 'nobody/x' matches no rule and no default_backend is set")


def test_the_model_config_on_disk_is_read_as_a_server_reads_it(
        policy_file: PolicyFile, tmp_path: Path) -> None:
    """A rule on architecture matches a local model through its config.json, and a default
    backend and TT_META_BACKEND choose as they do in a server."""
    model = tmp_path / "mixtral"
    model.mkdir()
    (model / "config.json").write_text(
        '{"architectures": ["MixtralForCausalLM"], "model_type": "mixtral"}', encoding="utf-8")
    models = tmp_path / "models.txt"
    models.write_text(f"{model}\nsecret-org/model\norg/other\n", encoding="utf-8")
    policy = policy_file(POLICY + '\n[[rule]]\narchitecture = "MixtralForCausalLM"\n'
                         'backend = "forge"\n').read_text(encoding="utf-8")
    path = tmp_path / "with-default.toml"
    path.write_text(policy.replace("version = 1", 'version = 1\ndefault_backend = "metal"'),
                    encoding="utf-8")
    data = matrix_json(path, "--models", str(models), "--devices", "n150")
    assert (cell(data, str(model), "n150")["backend"], cell(data, str(model), "n150")["rule"]
            ) == ("forge", 6)
    other = cell(data, "org/other", "n150")
    assert (other["backend"], other["chosen_by"], other["reason"]) == (
        "metal", "default_backend", "default_backend")
    data = matrix_json(path, "--models", str(models), "--devices", "n150",
                       TT_META_BACKEND="forge")
    assert data["backend_override"] == {"value": "forge",
                                        "source": "environment variable TT_META_BACKEND"}
    other = cell(data, "org/other", "n150")
    assert (other["backend"], other["chosen_by"]) == ("forge", "TT_META_BACKEND")
    assert cell(data, "secret-org/model", "n150")["refusal"]["summary"] == DENIED
    proc = tt_meta("explain", "--matrix", "--models", str(models), TT_META_POLICY=str(path),
                   TT_META_BACKEND="forge")
    assert ("\nbackend:   'forge' (from environment variable TT_META_BACKEND) chooses for every "
            "model the policy does not deny\n") in proc.stdout
    assert re.search(r"\norg/other +forge \(TT_META_BACKEND\)", proc.stdout), proc.stdout


def test_every_cell_agrees_with_tt_meta_explain(make_site: SiteMaker,
                                                policy_file: PolicyFile) -> None:
    """The matrix is what a server decides: `tt-meta explain` for each pair, which goes on to
    verify and delegate, chose the same backend by the same rule, or refused the same way."""
    site = make_site("tt-vllm-plugin", "vllm-tt", "pjrt-plugin-tt")
    policy = policy_file(POLICY)
    data = matrix_json(policy)
    for entry in data["cells"]:
        proc = tt_meta("explain", "--json", "--model", entry["model"], "--device",
                       entry["device"], PYTHONPATH=str(site), TT_META_POLICY=str(policy))
        report = json.loads(proc.stdout)
        if entry["refusal"] is None:
            assert proc.returncode == 0, report
            assert (report["backend"], report["rule"], report["reason"]) == (
                entry["backend"], entry["rule"], entry["reason"])
        else:
            assert proc.returncode == 1
            assert report["refusal"]["summary"] == entry["refusal"]["summary"]


def test_from_model_spec(policy_file: PolicyFile, tmp_path: Path) -> None:
    """The models of a release_model_spec.json, and its devices beside the policy's."""
    def spec(model: str, device: str) -> dict[str, Any]:
        return {"hf_model_repo": model, "device_type": device, "inference_engine": "vLLM",
                "impl": {"impl_id": "tt_transformers"}, "status": "COMPLETE",
                "device_model_spec": {"default_impl": True}}

    specs = {model: {device: {"vLLM": {"tt_transformers": spec(model, device)}}
                     for device in ("N150", "T3K")} for model in ("org/qwen", "zeta/unknown")}
    path = tmp_path / "release_model_spec.json"
    path.write_text(json.dumps({"schema_version": "0.1.0", "release_version": "0.20.0",
                                "model_specs": specs}), encoding="utf-8")
    data = matrix_json(policy_file(POLICY), "--from-model-spec", str(path))
    assert data["models"] == ["org/qwen", "zeta/unknown"]
    assert data["devices"] == [*DEVICES, "t3k"]
    assert cell(data, "org/qwen", "t3k")["backend"] == "metal"
    assert cell(data, "zeta/unknown", "n150")["refusal"]["code"] == "selection"


def test_the_builtin_policy_over_its_spec_is_tenstorrents_choice(real_spec: Path) -> None:
    """The built-in policy is generated from release_model_spec 0.20.0: its matrix over that
    spec's models and devices sends each pair where Tenstorrent's own selection runs it in
    vLLM to that backend, and refuses every other pair (outside vLLM, no default, no spec)."""
    spec_file = real_spec
    spec = load_model_spec(spec_file)
    data = matrix_json(BUILTIN_POLICY, "--from-model-spec", str(spec_file))
    assert data["models"] == list(spec.models)
    assert sorted(data["devices"]) == sorted(spec.devices)
    expected = {(c.model, c.device): c.backend for c in choose(spec)}
    got = {(c["model"], c["device"]): c["backend"] for c in data["cells"]}
    assert len(got) == len(spec.models) * len(spec.devices) > 500
    assert {k: v for k, v in got.items() if v} == {k: v for k, v in expected.items() if v}
    assert data["counts"]["metal"] > 100 and data["counts"]["forge"] >= 10


# -- Bad input: exit 1, one clean message, no traceback -------------------------------------------


@pytest.mark.parametrize(("args", "message"), [
    (["--models", "{tmp}/missing.txt"],
     "cannot read the models file: No such file or directory\n  where: {tmp}/missing.txt"),
    (["--models", "{tmp}/empty.txt"], "the models file lists no models"),
    (["--models", "{tmp}/spaces.txt"],
     "line 2 of the models file is not one model name: 'org/a org/b'\n"
     "  where: {tmp}/spaces.txt, line 2"),
    (["--models", "{tmp}/latin1.txt"], "the models file is not UTF-8 text"),
    (["--devices", "n150,,t3k"], "--devices must be a comma-separated list of device types, "
                                 "not 'n150,,t3k'"),
    (["--devices", "n150;rm"], "--devices must be a comma-separated list"),
    (["--models", "{tmp}/empty.txt", "--from-model-spec", "{tmp}/x.json"],
     "--models and --from-model-spec cannot be given together"),
    (["--from-model-spec", "{tmp}/missing.json"], "cannot read the model spec file"),
    (["--model", "org/qwen"], "--matrix decides every model and device"),
    (["--html", "{tmp}/no/such/dir/m.html"],
     "cannot write the HTML page: No such file or directory"),
])
def test_bad_input_exits_1(policy_file: PolicyFile, tmp_path: Path, args: list[str],
                           message: str) -> None:
    (tmp_path / "empty.txt").write_text("# nothing yet\n\n", encoding="utf-8")
    (tmp_path / "spaces.txt").write_text("org/qwen\norg/a org/b\n", encoding="utf-8")
    (tmp_path / "latin1.txt").write_bytes(b"org/caf\xe9\n")
    args = [a.replace("{tmp}", str(tmp_path)) for a in args]
    proc = tt_meta("explain", "--matrix", *args, TT_META_POLICY=str(policy_file(POLICY)))
    assert proc.returncode == 1
    assert proc.stderr.startswith("tt-meta explain --matrix: " + message.replace(
        "{tmp}", str(tmp_path))), proc.stderr
    assert "Traceback" not in proc.stderr and "fix: " in proc.stderr and not proc.stdout


def test_bad_policy_and_options_without_matrix(tmp_path: Path) -> None:
    policy = tmp_path / "policy.toml"
    policy.write_text("version = 1\nallowed_backends = []\n", encoding="utf-8")
    proc = tt_meta("explain", "--matrix", TT_META_POLICY=str(policy))
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert "allowed_backends is empty, so every model would be refused" in proc.stderr
    policy.write_text('version = 1\nallowed_backends = ["metal"]\n[[rule]]\nmodel = "org/*"\n'
                      'backend = "metal"\n', encoding="utf-8")
    proc = tt_meta("explain", "--matrix", TT_META_POLICY=str(policy))
    assert proc.returncode == 1
    assert "no models to show: the policy's rules name no model exactly" in proc.stderr
    proc = tt_meta("explain", "--devices", "n150", "--model", "org/x",
                   TT_META_POLICY=str(policy))
    assert proc.returncode == 1
    assert proc.stderr.startswith("tt-meta explain --matrix: --models, --from-model-spec, "
                                  "--devices and --html need --matrix")


def test_no_device_named_is_one_column_of_an_unset_device(tmp_path: Path,
                                                          policy_file: PolicyFile) -> None:
    data = matrix_json(policy_file('version = 1\nallowed_backends = ["metal"]\n[[rule]]\n'
                                   'model = "org/a"\nbackend = "metal"\n'))
    assert data["devices"] == [None] and cell(data, "org/a", None)["backend"] == "metal"


# -- The HTML page, in a real browser -------------------------------------------------------------

HOSTILE = 'org/<script>alert("x")</script>&amp;'
QUOTED = 'org/a"onmouseover="alert(1)'


def _chromium() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found is None:
        reason = ("Chromium is not installed: `make browser` installs it (as root, from "
                  "Debian's packages: apt-get install chromium)")
        if os.environ.get("CI") == "true":
            pytest.fail(reason)  # never skipped in CI: the page would go untested
        pytest.skip(reason)
    return found


def _browser(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[bytes]:
    profile = tmp_path / f"chromium-profile-{len(list(tmp_path.glob('chromium-profile-*')))}"
    profile.mkdir()
    # --no-sandbox: as root Chromium refuses to start without it, and containers often lack
    # the user namespaces its sandbox needs. The page has no script to contain. Without the
    # background-networking flags it tries to reach Google's services and fails on a closed
    # network.
    return subprocess.run(
        [_chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
         "--no-first-run", "--disable-background-networking", "--disable-component-update",
         "--disable-sync", f"--user-data-dir={profile}", *args],
        capture_output=True, timeout=120, env={**os.environ, "HOME": str(tmp_path)})


def _page(policy_file: PolicyFile, tmp_path: Path) -> Path:
    models = tmp_path / "models.txt"
    models.write_text("\n".join([*MODELS, HOSTILE, QUOTED]) + "\n", encoding="utf-8")
    page = tmp_path / "matrix.html"
    proc = tt_meta("explain", "--matrix", "--models", str(models), "--html", str(page),
                   TT_META_POLICY=str(policy_file(POLICY)))
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.endswith(f"HTML page:  {page}\n")
    return page


class _Cells(html.parser.HTMLParser):
    """The rendered DOM's cells (by their data attributes), row headers and script tags."""

    def __init__(self) -> None:
        super().__init__()
        self.cells: dict[tuple[str, str], dict[str, str]] = {}
        self.row_headers: list[str] = []
        self.scripts = 0
        self._open: dict[str, str] | None = None
        self._row_header: list[str] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = {k: v or "" for k, v in attrs}
        self.scripts += tag == "script"
        if tag == "td" and "data-model" in values:
            self._open = {**values, "text": ""}
            self.cells[(values["data-model"], values["data-device"])] = self._open
        if tag == "th" and values.get("scope") == "row":
            self._row_header = []

    def handle_endtag(self, tag: str) -> None:
        if tag == "td":
            self._open = None
        if tag == "th" and self._row_header is not None:
            self.row_headers.append("".join(self._row_header))
            self._row_header = None

    def handle_data(self, data: str) -> None:
        if self._open is not None:
            self._open["text"] += data
        if self._row_header is not None:
            self._row_header.append(data)


def test_the_page_is_self_contained(policy_file: PolicyFile, tmp_path: Path) -> None:
    text = _page(policy_file, tmp_path).read_text(encoding="utf-8")
    assert not re.search(r"(?i)https?:|//[a-z]|<script|<link|<img|@import|url\(|src=", text)
    assert "<style>" in text and HOSTILE not in text and QUOTED not in text


def test_the_page_in_a_browser(policy_file: PolicyFile, tmp_path: Path) -> None:
    page = _page(policy_file, tmp_path)
    proc = _browser(tmp_path, "--dump-dom", page.as_uri())
    assert proc.returncode == 0, proc.stderr.decode(errors="replace")[-2000:]
    dom = _Cells()
    dom.feed(proc.stdout.decode("utf-8"))
    assert dom.scripts == 0  # the hostile model name stayed text
    assert dom.row_headers == [*MODELS, HOSTILE, QUOTED]
    assert len(dom.cells) == 5 * 3
    forge = dom.cells[("org/llama", "p150")]
    assert (forge["data-outcome"], forge["data-backend"], forge["data-rule"]) == (
        "backend", "forge", "2")
    assert forge["title"] == ("forge by rule 2 (llama on p150 runs on forge): model = "
                              "'org/llama', device = 'p150'")
    assert forge["text"] == "forgerule 2"
    refused = dom.cells[("secret-org/model", "n300")]
    assert (refused["data-outcome"], refused["data-backend"]) == ("refused", "")
    assert refused["data-reason"] == DENIED
    assert refused["title"].startswith(f"REFUSED: {DENIED}\nfix: serve another model")
    assert refused["text"].startswith("\u2715 REFUSED")  # a symbol and the word, not colour
    hostile = dom.cells[(HOSTILE, "n150")]
    assert hostile["data-outcome"] == "refused"
    assert hostile["data-reason"] == f"model {HOSTILE!r} matches no rule and no default_backend " \
                                     "is set"
    assert dom.cells[(QUOTED, "p150")]["data-outcome"] == "refused"


def png_pixels(path: Path) -> tuple[int, int, list[bytes]]:
    """(width, height, rows of RGB(A) bytes) of an 8-bit RGB or RGBA PNG, unfiltered."""
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    at, idat, header = 8, b"", b""
    while at < len(data):
        (length,) = struct.unpack(">I", data[at:at + 4])
        kind, body = data[at + 4:at + 8], data[at + 8:at + 8 + length]
        header = body if kind == b"IHDR" else header
        idat += body if kind == b"IDAT" else b""
        at += 12 + length
    width, height, depth, colour = struct.unpack(">IIBB", header[:10])
    assert depth == 8 and colour in (2, 6), (depth, colour)
    size = 3 if colour == 2 else 4
    raw, stride, rows = zlib.decompress(idat), width * size, []
    previous = bytearray(stride)
    for y in range(height):
        kind, line = raw[y * (stride + 1)], bytearray(raw[y * (stride + 1) + 1:(y + 1) *
                                                          (stride + 1)])
        for x in range(stride):
            left = line[x - size] if x >= size else 0
            up, corner = previous[x], previous[x - size] if x >= size else 0
            if kind == 1:
                line[x] = (line[x] + left) & 0xFF
            elif kind == 2:
                line[x] = (line[x] + up) & 0xFF
            elif kind == 3:
                line[x] = (line[x] + (left + up) // 2) & 0xFF
            elif kind == 4:
                p = left + up - corner
                pa, pb, pc = abs(p - left), abs(p - up), abs(p - corner)
                line[x] = (line[x] + (left if pa <= pb and pa <= pc else up if pb <= pc
                                      else corner)) & 0xFF
        rows.append(bytes(line))
        previous = line
    return width, height, rows


def test_the_page_renders(policy_file: PolicyFile, tmp_path: Path) -> None:
    page = _page(policy_file, tmp_path)
    shot = tmp_path / "matrix.png"
    proc = _browser(tmp_path, f"--screenshot={shot}", "--window-size=900,700", page.as_uri())
    assert proc.returncode == 0, proc.stderr.decode(errors="replace")[-2000:]
    width, height, rows = png_pixels(shot)
    assert (width, height) == (900, 700)
    size = len(rows[0]) // width
    pixels = {row[x:x + 3] for row in rows for x in range(0, len(row), size)}
    white = sum(row[x:x + 3] == b"\xff\xff\xff" for row in rows
                for x in range(0, len(row), size))
    assert len(pixels) > 50, "the screenshot is (nearly) one colour"
    assert white < 0.95 * width * height
    # Each backend's fill colour (matrix_html._PALETTE) and the refusal hatch are on screen.
    for rgb in ("dbe9ff", "ffe3c7", "fde8e8"):
        assert bytes.fromhex(rgb) in pixels, rgb


def test_a_name_with_control_characters_cannot_drive_the_terminal(
        policy_file: PolicyFile) -> None:
    policy = policy_file('version = 1\nallowed_backends = ["metal"]\n[[rule]]\n'
                         'model = "org/\\u001bcwipe"\nbackend = "metal"\n')
    proc = tt_meta("explain", "--matrix", TT_META_POLICY=str(policy))
    assert proc.returncode == 0, proc.stderr
    assert "\x1b" not in proc.stdout
    assert "'org/\\x1bcwipe'  metal (rule 1)" in proc.stdout
