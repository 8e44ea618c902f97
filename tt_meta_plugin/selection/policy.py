"""The policy file: which backends are allowed and which rules send a model to which backend.

A policy is TOML. It is found at `TT_META_POLICY`, else `/etc/tt-meta/policy.toml`, else the
built-in `default_policy.toml` shipped in this package. Parsing is strict: an unknown key or a
wrong type is an error that names the file, the key and the fix, because a typo in a security
policy must never silently mean "no restriction".
"""

from __future__ import annotations

import re
import sys
from collections.abc import Mapping, Sequence
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Any, Literal, NamedTuple

from .._errors import ConfigError, where
from .inputs import MAX_POLICY_BYTES, policy_digest, read_policy

POLICY_VERSION = 1

MATCH_KEYS = ("model", "architecture", "model_type", "device")


class Facts(NamedTuple):
    """What a rule can match on. Empty values never match a rule that names them."""

    model: str | None = None
    model_path: str | None = None
    architectures: tuple[str, ...] = ()
    model_type: str | None = None
    device: str | None = None


class Rule(NamedTuple):
    """One `[[rule]]` table: every key it names must match; a key with a list matches any."""

    number: int
    backend: str | None
    deny: bool = False
    name: str | None = None
    model: tuple[str, ...] = ()
    architecture: tuple[str, ...] = ()
    model_type: tuple[str, ...] = ()
    device: tuple[str, ...] = ()

    def matches(self, facts: Facts) -> bool:
        if self.model:
            names = [n for n in (facts.model, facts.model_path) if n]
            if not any(fnmatchcase(n, g) for n in names for g in self.model):
                return False
        if self.architecture and not set(self.architecture) & set(facts.architectures):
            return False
        if self.model_type and facts.model_type not in self.model_type:
            return False
        return not (self.device and facts.device not in self.device)

    def describe(self) -> str:
        conditions = [
            f"{key} = {list(values) if len(values) > 1 else repr(values[0])}"
            for key in MATCH_KEYS
            if (values := getattr(self, key))
        ]
        label = f"rule {self.number}" + (f" ({self.name})" if self.name else "")
        return f"{label}: {', '.join(conditions)}"


# A key of more than 32 dotted parts (`a.b.c...`, in a header, a key/value or an inline
# table), bare or quoted: tomllib's time and memory grow with the square of a key's parts
# (100k parts: minutes and gigabytes), so it is refused before parsing. No policy key has
# more than 3 parts, nor any value such a run of dots (it would be refused too). A match
# starts only where a bare key cannot continue, so the search is linear in the file.
_DOTTED_KEY = re.compile(
    r"""(?<![A-Za-z0-9_-])(?:(?:[A-Za-z0-9_-]+|"(?:[^"\\\n]|\\.)*"|'[^'\n]*')"""
    r"""[ \t]*\.[ \t]*){32}""")

DEFAULT_MANIFEST_DIR = "/etc/tt-meta/manifests"
DEFAULT_STATE_DIR = "/var/lib/tt-meta"
# Seconds a first process waits for `tt-smi -s` when TT_META_DEVICE is not set (device.py).
DEFAULT_TT_SMI_TIMEOUT = 5.0
MAX_TT_SMI_TIMEOUT = 600


class TrustSettings(NamedTuple):
    """The `[trust]` table: who may sign what, and where manifests and state live."""

    require_signatures: bool = True
    key_dirs: tuple[str, ...] = ()
    manifest_dirs: tuple[str, ...] = (DEFAULT_MANIFEST_DIR,)
    state_dir: str = DEFAULT_STATE_DIR
    threshold: int = 1
    revoked_keys: tuple[str, ...] = ()
    # backend name -> key ids allowed to sign its manifests
    signers: tuple[tuple[str, tuple[str, ...]], ...] = ()
    strict_permissions: bool = True
    audit_log: str | None = None
    # false: a backend's installed runtimes (ttnn, pjrt-plugin-tt) run unverified, with a
    # WARNING in every process (trust/waiver.py)
    require_runtime_signatures: bool = True
    # a WARNING in every first process when a manifest in use expires within this many
    # days (0: never)
    warn_expiry_days: int = 14

    def signers_for(self, backend: str) -> tuple[str, ...]:
        return dict(self.signers).get(backend, ())


class Policy(NamedTuple):
    source: str
    digest: str  # SHA-256 of the policy file's bytes: children compare theirs with it
    version: int
    allowed_backends: tuple[str, ...]
    default_backend: str | None = None
    rules: tuple[Rule, ...] = ()
    trust_model_metadata: bool = False
    vllm_version_mismatch: Literal["refuse", "warn"] = "refuse"
    extra_general_plugins: tuple[str, ...] = ()
    trust: TrustSettings = TrustSettings()
    # seconds to wait for `tt-smi -s` (selection/device.py); 0: never run it
    tt_smi_timeout: float = DEFAULT_TT_SMI_TIMEOUT

    def first_match(self, facts: Facts) -> Rule | None:
        return next((rule for rule in self.rules if rule.matches(facts)), None)


def load_policy(environ: Mapping[str, str]) -> Policy:
    path, raw = read_policy(environ)
    return parse_policy(raw, str(path))


def parse_policy(raw: bytes, source: str) -> Policy:
    """Parse and validate policy bytes; every problem is a ConfigError naming `source`."""
    try:
        return _parse_policy(raw, source)
    except RecursionError:  # nested too deeply to parse, or to show in an error (its repr)
        raise _too_deep(source) from None


def _too_deep(source: str) -> ConfigError:
    return ConfigError("the policy file is nested too deeply", where=source,
                       fix="correct the TOML syntax")


def _parse_policy(raw: bytes, source: str) -> Policy:
    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover - exercised on Python 3.10 only
        import tomli as tomllib

    if len(raw) > MAX_POLICY_BYTES:
        raise ConfigError("the policy file is larger than 1 MiB", where=source, fix="shorten it")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise ConfigError("the policy is not UTF-8", where=source, fix="save it as UTF-8") from None
    if _DOTTED_KEY.search(text):
        raise _too_deep(source)
    try:
        data = tomllib.loads(text)
    except ValueError as exc:  # TOMLDecodeError, or an integer past int()'s digit limit
        raise ConfigError(
            f"the policy file is not valid TOML: {exc}", where=source, fix="correct the TOML syntax"
        ) from None
    table = _Table(data, source, "")
    version = table.integer("version", required=True)
    if version != POLICY_VERSION:
        raise ConfigError(
            f"unsupported policy version {version}",
            where=where(source, "version"),
            fix=f"set version = {POLICY_VERSION}",
        )
    allowed = table.strings("allowed_backends", required=True)
    if not allowed:
        raise ConfigError(
            "allowed_backends is empty, so every model would be refused",
            where=where(source, "allowed_backends"),
            fix='list the backends this host may run, e.g. allowed_backends = ["metal", "forge"]',
        )
    default = table.string("default_backend")
    mismatch = table.string("vllm_version_mismatch") or "refuse"
    if mismatch not in ("refuse", "warn"):
        raise ConfigError(
            f"vllm_version_mismatch must be \"refuse\" or \"warn\", not {mismatch!r}",
            where=where(source, "vllm_version_mismatch"),
            fix='set vllm_version_mismatch = "refuse" (or "warn")',
        )
    policy = Policy(
        source=source,
        digest=policy_digest(raw),
        version=version,
        allowed_backends=allowed,
        default_backend=default,
        rules=tuple(
            _parse_rule(rule_table, number)
            for number, rule_table in enumerate(table.tables("rule"), start=1)
        ),
        trust_model_metadata=table.boolean("trust_model_metadata"),
        vllm_version_mismatch="warn" if mismatch == "warn" else "refuse",
        extra_general_plugins=table.strings("extra_general_plugins"),
        trust=_parse_trust(table, source),
        tt_smi_timeout=table.seconds("tt_smi_timeout", DEFAULT_TT_SMI_TIMEOUT),
    )
    table.reject_unknown()
    return policy


def _parse_trust(top: _Table, source: str) -> TrustSettings:
    require = top.boolean("require_signatures", default=True)
    (table,) = top.tables("trust", single=True) or [_Table({}, source, "trust.")]
    base = Path(source).parent

    def paths(values: tuple[str, ...]) -> tuple[str, ...]:
        # Relative directories are relative to the policy file, not to the working directory.
        return tuple(str(base / v) for v in values)

    threshold = table.integer("threshold", default=1)
    if threshold < 1:
        raise ConfigError("trust.threshold must be at least 1",
                          where=where(source, "trust.threshold"), fix="set threshold = 1 or more")
    (signer_table,) = table.tables("signers", single=True) or [_Table({}, source, "trust.signers.")]
    signers = tuple((name, signer_table.strings(name)) for name in sorted(signer_table.data))
    def no_nul(key: str, values: tuple[str | None, ...]) -> None:
        for value in values:
            if value is not None and "\x00" in value:  # TOML allows "\u0000"; paths do not
                raise table._wrong(key, "a path without NUL characters", value)

    def path_strings(key: str) -> tuple[str, ...]:
        values = table.strings(key)
        no_nul(key, values)
        return values

    manifest_dirs = path_strings("manifest_dirs")
    state_dir = table.string("state_dir")
    audit_log = table.string("audit_log")
    no_nul("state_dir", (state_dir,))
    no_nul("audit_log", (audit_log,))
    warn_expiry_days = table.integer("warn_expiry_days", default=14)
    if warn_expiry_days < 0:
        raise ConfigError("trust.warn_expiry_days must not be negative",
                          where=where(source, "trust.warn_expiry_days"),
                          fix="set warn_expiry_days = 14 (or 0 for no warning)")
    settings = TrustSettings(
        require_signatures=require,
        key_dirs=paths(path_strings("key_dirs")),
        manifest_dirs=paths(manifest_dirs) if manifest_dirs else (DEFAULT_MANIFEST_DIR,),
        state_dir=str(base / state_dir) if state_dir else DEFAULT_STATE_DIR,
        threshold=threshold,
        revoked_keys=tuple(k.lower() for k in table.strings("revoked_keys")),
        signers=signers,
        strict_permissions=table.boolean("strict_permissions", default=True),
        audit_log=str(base / audit_log) if audit_log else None,
        require_runtime_signatures=table.boolean("require_runtime_signatures", default=True),
        warn_expiry_days=warn_expiry_days,
    )
    table.reject_unknown()
    return settings


def _parse_rule(table: _Table, number: int) -> Rule:
    backend = table.string("backend")
    deny = table.boolean("deny")
    if deny == (backend is not None):
        raise ConfigError(
            f"rule {number} must give exactly one of 'backend' and 'deny = true'",
            where=where(table.source, f"rule[{number}]"),
            fix='add backend = "metal" (or "forge"), or deny = true, to the rule',
        )
    rule = Rule(
        number=number,
        backend=backend,
        deny=deny,
        name=table.string("name"),
        **{key: table.strings(key) for key in MATCH_KEYS},
    )
    table.reject_unknown()  # before "matches nothing": a misspelt key is the likelier cause
    if not any(getattr(rule, key) for key in MATCH_KEYS):
        raise ConfigError(
            f"rule {number} matches nothing: it names none of {', '.join(MATCH_KEYS)}",
            where=where(table.source, f"rule[{number}]"),
            fix="add a condition such as model = \"org/name-*\", or use default_backend instead",
        )
    return rule


class _Table:
    """Typed, strict access to one TOML table; remembers which keys were read."""

    def __init__(self, data: Mapping[str, Any], source: str, prefix: str) -> None:
        self.data, self.source, self.prefix, self.seen = data, source, prefix, set[str]()

    def _get(self, key: str, required: bool) -> Any:
        self.seen.add(key)
        if key not in self.data and required:
            raise ConfigError(
                f"required key '{key}' is missing",
                where=where(self.source, self.prefix + key),
                fix=f"add '{key}' to the policy (see docs/policy.md)",
            )
        return self.data.get(key)

    def _wrong(self, key: str, expected: str, value: Any) -> ConfigError:
        return ConfigError(
            f"'{self.prefix}{key}' must be {expected}, not {type(value).__name__} {value!r}",
            where=where(self.source, self.prefix + key),
            fix=f"write '{key}' as {expected}",
        )

    def integer(self, key: str, required: bool = False, default: int = 0) -> int:
        value = self._get(key, required)
        if value is None and not required:
            return default
        if not isinstance(value, int) or isinstance(value, bool):
            raise self._wrong(key, "an integer", value)
        return value

    def string(self, key: str) -> str | None:
        value = self._get(key, False)
        if value is not None and (not isinstance(value, str) or not value):
            raise self._wrong(key, "a non-empty string", value)
        return value

    def seconds(self, key: str, default: float) -> float:
        value = self._get(key, False)
        if value is None:
            return default
        if (not isinstance(value, (int, float)) or isinstance(value, bool)
                or not 0 <= value <= MAX_TT_SMI_TIMEOUT):  # NaN fails this too
            raise self._wrong(key, f"a number of seconds from 0 to {MAX_TT_SMI_TIMEOUT}", value)
        return float(value)

    def boolean(self, key: str, default: bool = False) -> bool:
        value = self._get(key, False)
        if value is None:
            return default
        if not isinstance(value, bool):
            raise self._wrong(key, "true or false", value)
        return value

    def strings(self, key: str, required: bool = False) -> tuple[str, ...]:
        value = self._get(key, required)
        if value is None:
            return ()
        if isinstance(value, str) and value:
            return (value,)
        if isinstance(value, list) and all(isinstance(v, str) and v for v in value):
            return tuple(value)
        raise self._wrong(key, "a string or a list of non-empty strings", value)

    def tables(self, key: str, single: bool = False) -> list[_Table]:
        """An array of tables ([[key]]), or with `single` one table ([key])."""
        value = self._get(key, False)
        if value is None:
            return []
        if single:
            if not isinstance(value, dict):
                raise self._wrong(key, f"a table ([{self.prefix}{key}])", value)
            return [_Table(value, self.source, f"{self.prefix}{key}.")]
        if not isinstance(value, list) or not all(isinstance(v, dict) for v in value):
            raise self._wrong(key, f"an array of tables ([[{key}]])", value)
        return [
            _Table(v, self.source, f"{self.prefix}{key}[{i}].") for i, v in enumerate(value, 1)
        ]

    def reject_unknown(self, known: Sequence[str] = ()) -> None:
        unknown = sorted(set(self.data) - self.seen - set(known))
        if unknown:
            expected = ", ".join(sorted(self.seen))
            raise ConfigError(
                f"unknown key '{self.prefix}{unknown[0]}'",
                where=where(self.source, self.prefix + unknown[0]),
                fix=f"remove it or correct its spelling (known keys here: {expected})",
            )
