"""Errors that carry a diagnostic for the operator: what failed, where, and the fix.

Every refusal tt_meta makes is one of these. They are rendered, never shown as a traceback:
the operator reads `render()` in vLLM's log at ERROR level or on the `tt-meta` command line.
Each class has a stable `code`: the audit log records it, docs/errors.md is keyed by it, and
tests assert on it rather than on wording.
"""

from __future__ import annotations


class TTMetaError(Exception):
    """Base class: a refusal with a one-line summary, an optional location and a fix."""

    code = "error"

    def __init__(self, summary: str, *, where: str | None = None, fix: str | None = None,
                 code: str | None = None) -> None:
        super().__init__(summary)
        self.summary = summary
        self.where = where
        self.fix = fix
        if code is not None:  # a summary of other refusals carries the code of the first
            self.code = code

    def render(self) -> str:
        lines = [self.summary]
        if self.where:
            lines.append(f"  where: {self.where}")
        if self.fix:
            lines.append(f"  fix: {self.fix}")
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.render()


class ConfigError(TTMetaError):
    """A file or variable the operator wrote is malformed (policy, model config, environment)."""

    code = "config"


class SelectionError(TTMetaError):
    """The policy refuses the model, or no backend can be chosen for it."""

    code = "selection"


class DelegationError(TTMetaError):
    """The chosen backend is missing, unusable here, or misbehaved when called."""

    code = "delegation"


class HandoffError(TTMetaError):
    """A child process disagrees with the decision its parent recorded."""

    code = "handoff"


class TrustError(TTMetaError):
    """The backend's installed files could not be proven to be what a trusted signer published."""

    code = "trust"


class FormatError(TrustError):
    """A signed envelope, manifest or its file cannot be read, or is not well formed."""

    code = "format"


class SignatureError(TrustError):
    """Too few valid signatures from distinct trusted keys bound to the backend."""

    code = "signature"


class KeyFileError(TrustError):
    """A trusted key directory or public key file is missing or malformed."""

    code = "key"


class MismatchError(TrustError):
    """A valid manifest, but not for this backend, distribution, version or entry points."""

    code = "mismatch"


class ExpiredError(TrustError):
    """The manifest has expired."""

    code = "expired"


class RollbackError(TrustError):
    """An older manifest than one already seen, or a serial reused with other content."""

    code = "rollback"


class TamperedError(TrustError):
    """The installed files differ from the signed ones: changed, missing, added, shadowed."""

    code = "tampered"


class EditableInstallError(TrustError):
    """An editable install, whose code is outside the installed files."""

    code = "editable"


class PermissionsError(TrustError):
    """A file that decides what is trusted can be written by another user."""

    code = "permissions"


class NoManifestError(TrustError):
    """No signed manifest was found for the distribution."""

    code = "no-manifest"


class StateError(TrustError):
    """The state directory (rollback marks, records, sealed settings) cannot be used."""

    code = "state"


class InheritanceError(TrustError):
    """A child cannot take over what its first process verified and sealed."""

    code = "inheritance"


class InternalError(TTMetaError):
    """Something tt_meta did not foresee failed: still a refusal, never a fallback."""

    code = "internal"


#: Every error class, for docs and tests: code -> class.
ALL = {c.code: c for c in (
    TTMetaError, ConfigError, SelectionError, DelegationError, HandoffError, TrustError,
    FormatError, SignatureError, KeyFileError, MismatchError, ExpiredError, RollbackError,
    TamperedError, EditableInstallError, PermissionsError, NoManifestError, StateError,
    InheritanceError, InternalError)}


def where(path: object, field: str | None = None) -> str:
    """Format a location: the file, and the key inside it when there is one."""
    return f"{path}, key '{field}'" if field else str(path)
