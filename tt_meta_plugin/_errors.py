"""Errors that carry a diagnostic for the operator: what failed, where, and the fix.

Every refusal tt_meta makes is one of these. They are rendered, never shown as a traceback:
the operator reads `render()` in vLLM's log at ERROR level or on the `tt-meta` command line.
"""

from __future__ import annotations


class TTMetaError(Exception):
    """Base class: a refusal with a one-line summary, an optional location and a fix."""

    def __init__(self, summary: str, *, where: str | None = None, fix: str | None = None) -> None:
        super().__init__(summary)
        self.summary = summary
        self.where = where
        self.fix = fix

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


class SelectionError(TTMetaError):
    """The policy refuses the model, or no backend can be chosen for it."""


class DelegationError(TTMetaError):
    """The chosen backend is missing, unusable here, or misbehaved when called."""


class HandoffError(TTMetaError):
    """A child process disagrees with the decision its parent recorded."""


class TrustError(TTMetaError):
    """The backend's installed files could not be proven to be what a trusted signer published."""


def where(path: object, field: str | None = None) -> str:
    """Format a location: the file, and the key inside it when there is one."""
    return f"{path}, key '{field}'" if field else str(path)
