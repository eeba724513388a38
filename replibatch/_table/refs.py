"""Model references: the text users write in ``model=`` turned into a checked, canonical value.

Accepted forms (whitespace around the text is ignored):

- ``owner/name``                 a model; run as its latest version (or as an official model)
- ``owner/name:VERSION``         a model pinned to a version (64 hex digits)
- ``VERSION``                    a bare version id (64 hex digits)
- ``deployments/owner/name``     a deployment

Owner and name use Replicate's charset: lowercase letters, digits, ``-``, ``_`` and ``.``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from typing import Literal

from replibatch.errors import ConfigurationError

__all__ = ["ModelRef", "parse_model_ref"]

RefKind = Literal["model", "version", "deployment"]

_SLUG = r"[a-z0-9][a-z0-9._-]*"
_VERSION = r"[0-9a-fA-F]{64}"
_VERSION_RE = re.compile(rf"^{_VERSION}$")
_MODEL_RE = re.compile(rf"^(?P<owner>{_SLUG})/(?P<name>{_SLUG})(?::(?P<version>{_VERSION}))?$")
_DEPLOYMENT_RE = re.compile(rf"^deployments/(?P<owner>{_SLUG})/(?P<name>{_SLUG})$")

_ACCEPTED_FORMS = (
    "'owner/name', 'owner/name:<64-hex version>', '<64-hex version>', "
    "'deployments/owner/name' (owner and name: lowercase letters, digits, '-', '_', '.')"
)


@dataclass(frozen=True)
class ModelRef:
    """A parsed model reference; ``str()`` gives its canonical text.

    ``version`` is the lowercase 64-hex version id, or None for ``model`` and ``deployment`` kinds.
    ``owner``/``name`` are None only for a bare version id.
    """

    kind: RefKind
    owner: str | None
    name: str | None
    version: str | None = None

    @property
    def model(self) -> str | None:
        """``owner/name``, or None for a bare version id."""
        return f"{self.owner}/{self.name}" if self.owner and self.name else None

    def with_version(self, version: str) -> ModelRef:
        """The same model pinned to `version` (used once ``owner/name`` is resolved).

        Raises ConfigurationError when `version` is not 64 hex digits or this is a deployment.
        """
        if self.kind == "deployment":
            raise ConfigurationError(f"a deployment cannot be pinned to a version: {self}")
        if not isinstance(version, str) or not _VERSION_RE.match(version):
            raise ConfigurationError(f"not a 64-hex version id: {version!r}")
        return replace(self, kind="version", version=version.lower())

    def __str__(self) -> str:
        if self.kind == "deployment":
            return f"deployments/{self.owner}/{self.name}"
        if self.kind == "version":
            return f"{self.model}:{self.version}" if self.model else str(self.version)
        return f"{self.owner}/{self.name}"


def parse_model_ref(text: str) -> ModelRef:
    """Parse a model reference in one of the accepted forms (see the module docstring).

    Raises ConfigurationError (a ValueError) naming the reference and the accepted forms when
    `text` is not a string or matches none of them.
    """
    if not isinstance(text, str):
        raise ConfigurationError(
            f"model reference must be a string, got {type(text).__name__} {text!r}; "
            f"accepted forms: {_ACCEPTED_FORMS}"
        )
    stripped = text.strip()
    if _VERSION_RE.match(stripped):
        return ModelRef("version", None, None, stripped.lower())
    match = _DEPLOYMENT_RE.match(stripped)
    if match:
        return ModelRef("deployment", match["owner"], match["name"])
    match = _MODEL_RE.match(stripped)
    # 'deployments/x' is a deployment missing its name, not a model owned by 'deployments'.
    if match and match["owner"] != "deployments":
        version = match["version"]
        if version is not None:
            return ModelRef("version", match["owner"], match["name"], version.lower())
        return ModelRef("model", match["owner"], match["name"])
    raise ConfigurationError(
        f"cannot parse model reference {text!r}; accepted forms: {_ACCEPTED_FORMS}"
    )
