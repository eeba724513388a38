"""Which API tokens a run uses: ``api_token=`` as one token, a list of tokens, or profile names.

``api_token=`` may be

- one token (a ``str``), or None: the given ``client``'s token, else ``REPLICATE_API_TOKEN``
  (what the official client does; unchanged from the single-token engine);
- a list (or tuple) of entries, each either a token or a *profile name*. A profile ``team`` is
  read from the environment variable ``REPLICATE_API_TOKEN_TEAM`` (the name upper-cased, ``-``
  turned into ``_``). An entry is a profile name when it is short (1 to 32 letters, digits,
  ``_`` or ``-``) and does not start with ``r8_`` (every Replicate token does, and is 40
  characters long); any other entry is used as the token itself.

Everything is checked before anything is sent: an empty list, an entry that is not a string, a
profile whose variable is not set, or the same token given twice (directly or through two
profiles: one account would then be paced at twice its limits) raise ConfigurationError. The
messages name the profile or the token's fingerprint (`token_fingerprint`), never the token.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from replibatch._spend.ledger import token_fingerprint
from replibatch.errors import ConfigurationError

__all__ = ["PROFILE_PREFIX", "TokenSpec", "is_profile_name", "profile_variable", "resolve_tokens"]

PROFILE_PREFIX = "REPLICATE_API_TOKEN_"
_PROFILE = re.compile(r"^[A-Za-z0-9_-]{1,32}$")


@dataclass(frozen=True)
class TokenSpec:
    """One token of a run: the token (kept out of ``repr``), its fingerprint, and the profile
    it was read from (None when given directly or taken from the client / environment)."""

    token: str = field(repr=False)
    fingerprint: str
    profile: str | None = None

    @classmethod
    def of(cls, token: str, profile: str | None = None) -> TokenSpec:
        fingerprint = token_fingerprint(token)
        assert fingerprint is not None  # a non-empty token always has one
        return cls(token, fingerprint, profile)

    @property
    def label(self) -> str:
        """How messages name this token: ``profile 'team' (tok-…)`` or ``token tok-…``."""
        if self.profile is not None:
            return f"profile {self.profile!r} ({self.fingerprint})"
        return f"token {self.fingerprint}"


def is_profile_name(entry: str) -> bool:
    """True when a list entry names a profile rather than being a token (module docstring)."""
    return bool(_PROFILE.match(entry)) and not entry.startswith("r8_")


def profile_variable(name: str) -> str:
    """The environment variable a profile is read from: ``team`` -> ``REPLICATE_API_TOKEN_TEAM``."""
    return PROFILE_PREFIX + name.upper().replace("-", "_")


def resolve_tokens(
    api_token: Any, client_token: str | None = None, environ: Mapping[str, str] | None = None
) -> list[TokenSpec]:
    """The run's tokens, in the order given; ``[]`` when none is known (the caller decides
    whether one is needed). `client_token` is the token of a ``client=`` the caller passed.

    Raises ConfigurationError for an `api_token` of another type, an empty list, an entry that
    is not a non-empty string, a profile whose variable is unset or empty, or a token given
    twice. No message contains a token.
    """
    env = os.environ if environ is None else environ
    if api_token is None or isinstance(api_token, str):
        token = api_token or client_token or env.get("REPLICATE_API_TOKEN") or None
        return [TokenSpec.of(token)] if token else []
    if not isinstance(api_token, Sequence) or isinstance(api_token, (bytes, bytearray)):
        raise ConfigurationError(
            "api_token must be a token (a str), or a list of tokens or profile names, "
            f"got {type(api_token).__name__}"
        )
    if not api_token:
        raise ConfigurationError("api_token is an empty list: give at least one token or profile name")
    specs: list[TokenSpec] = []
    for position, entry in enumerate(api_token, start=1):
        if not isinstance(entry, str) or not entry:
            kind = type(entry).__name__ if not isinstance(entry, str) else "an empty string"
            raise ConfigurationError(
                f"api_token entry {position} must be a token or a profile name, got {kind}"
            )
        if is_profile_name(entry):
            variable = profile_variable(entry)
            token = env.get(variable)
            if not token:
                raise ConfigurationError(
                    f"api_token profile {entry!r} is not set: put its token in the environment "
                    f"variable {variable} (nothing was sent)"
                )
            specs.append(TokenSpec.of(token, entry))
        else:
            specs.append(TokenSpec.of(entry))
    seen: dict[str, TokenSpec] = {}
    for spec in specs:
        if spec.fingerprint in seen:
            raise ConfigurationError(
                f"api_token names the same token twice ({seen[spec.fingerprint].label} and "
                f"{spec.label}): one account would be paced at twice its limits"
            )
        seen[spec.fingerprint] = spec
    return specs
