"""`${VAR}` resolution for `mcp_config`, and redaction of the secrets it brings in.

HUD resolves templates only in `mcp_config`, recursively through dicts and lists, with `string.Template` semantics
and a mapping that turns a missing variable into "". We keep those semantics and fix the two places where HUD
crashes: `${VAR:default}` (documented by HUD, refused by `string.Template`) and a stray `$` such as `$5`.

Supported forms:

| form               | result                                                      |
|--------------------|-------------------------------------------------------------|
| `${VAR}`, `$VAR`   | the variable's value, "" when it is not set                 |
| `${VAR:-default}`  | the value, or `default` when the variable is unset or empty |
| `${VAR:default}`   | the same (HUD's documented spelling)                        |
| `$$`               | a literal `$`                                               |
| any other `$`      | kept as it is (`$5`, `${`, a trailing `$`)                  |

The resolved config carries secrets (API keys in headers, tokens in `env`). It must never be logged or saved:
`redact` makes the copy that may be.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any

__all__ = [
    "REDACTED",
    "has_template",
    "is_secret_name",
    "redact",
    "redact_text",
    "resolve_templates",
    "secret_values",
    "template_variables",
]

REDACTED = "***"
"""What `redact` and `redact_text` put in place of a secret."""

_TEMPLATE = re.compile(
    r"""
    \$(?:
        (?P<escaped>\$)                                                    # $$ -> $
      | \{(?P<braced>[_a-z][_a-z0-9]*)(?:(?P<separator>:-?)(?P<default>[^}]*))?\}  # ${VAR}, ${VAR:-d}, ${VAR:d}
      | (?P<named>[_a-z][_a-z0-9]*)                                        # $VAR
    )
    """,
    re.IGNORECASE | re.VERBOSE | re.ASCII,
)

# Names of headers, env entries and variables whose values are credentials. `Env-*` is how newer HUD clients
# forward secrets to hub containers (`OPENAI_API_KEY` travels as `Env-Openai-Api-Key`).
_SECRET_NAME = re.compile(r"authorization|token|secret|passw(?:or)?d|key|cookie|credential|^env-", re.IGNORECASE)


def is_secret_name(name: str) -> bool:
    """Whether a header, env entry or variable of this name holds a credential (`Authorization`, `HUD_API_KEY`)."""
    return bool(_SECRET_NAME.search(name))


def has_template(text: str) -> bool:
    """Whether a string refers to an environment variable (`${VAR}` or `$VAR`), so it holds no literal secret."""
    return any(not match["escaped"] for match in _TEMPLATE.finditer(text))


# Shorter values are not treated as secrets: replacing every "1" or "on" in a message would garble it, and a
# credential that short protects nothing anyway.
_MIN_SECRET_LENGTH = 4


def resolve_templates(value: Any, environ: Mapping[str, str]) -> Any:
    """Return a copy of `value` with every `${VAR}`-style template in its strings resolved from `environ`.

    Dicts and lists are walked recursively (dict keys are left alone, as HUD does); other values are returned
    unchanged. The input is never mutated.
    """
    if isinstance(value, str):
        return _resolve_string(value, environ)
    if isinstance(value, Mapping):
        return {key: resolve_templates(item, environ) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(resolve_templates(item, environ) for item in value)
    return value


def template_variables(value: Any) -> set[str]:
    """Return the names of all variables that templates in `value` (walked like `resolve_templates`) refer to."""
    if isinstance(value, str):
        return {match["braced"] or match["named"] for match in _TEMPLATE.finditer(value) if not match["escaped"]}
    if isinstance(value, Mapping):
        return set().union(*(template_variables(item) for item in value.values()))
    if isinstance(value, list | tuple):
        return set().union(*(template_variables(item) for item in value))
    return set()


def _resolve_string(text: str, environ: Mapping[str, str]) -> str:
    """Resolve the templates of one string."""

    def replace(match: re.Match[str]) -> str:
        if match["escaped"]:
            return "$"
        value = environ.get(match["braced"] or match["named"], "")
        if match["separator"] is not None and not value:
            return match["default"]
        return value

    return _TEMPLATE.sub(replace, text)


def redact(value: Any, secrets: Iterable[str] = ()) -> Any:
    """Return a copy of `value` that is safe to log or save.

    Every string under a key whose name looks secret (Authorization, X-Api-Key, `*token*`, `*secret*`, `*key*`,
    Cookie, `Env-*`, ...; case-insensitive) becomes `***`, and every occurrence of one of `secrets` in any other
    string becomes `***`.
    """
    return _redact(value, _usable_secrets(secrets))


def _redact(value: Any, secrets: list[str]) -> Any:
    """Redact `value` with `secrets` already filtered and sorted longest first."""
    if isinstance(value, str):
        return _replace_secrets(value, secrets)
    if isinstance(value, Mapping):
        return {key: REDACTED if _is_secret_entry(key, item) else _redact(item, secrets) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(_redact(item, secrets) for item in value)
    return value


def redact_text(text: str, secrets: Iterable[str]) -> str:
    """Return `text` with every occurrence of one of `secrets` replaced by `***`."""
    return _replace_secrets(text, _usable_secrets(secrets))


def secret_values(unresolved: Any, resolved: Any, environ: Mapping[str, str]) -> frozenset[str]:
    """Return the credentials that resolving `unresolved` into `resolved` brought in, for `redact` to hide.

    They are the values of referenced variables whose names look secret (`HUD_API_KEY`, `GITHUB_TOKEN`), and the
    resolved values under secret-looking keys (an `Authorization` header, and the token after its `Bearer`).
    """
    found = {environ.get(name, "") for name in template_variables(unresolved) if is_secret_name(name)}
    found.update(_values_under_secret_keys(resolved))
    return frozenset(value for value in found if len(value) >= _MIN_SECRET_LENGTH)


def _values_under_secret_keys(value: Any) -> set[str]:
    """Collect the strings stored under secret-looking keys, and their last word (the token of `Bearer <token>`)."""
    found: set[str] = set()
    if isinstance(value, Mapping):
        for key, item in value.items():
            if _is_secret_entry(key, item):
                found.add(item)
                found.update(item.split()[-1:])
            else:
                found.update(_values_under_secret_keys(item))
    elif isinstance(value, list | tuple):
        for item in value:
            found.update(_values_under_secret_keys(item))
    return found


def _is_secret_entry(key: Any, item: Any) -> bool:
    """Whether a mapping entry holds a credential: a string under a secret-looking name."""
    return isinstance(key, str) and isinstance(item, str) and is_secret_name(key)


def _usable_secrets(secrets: Iterable[str]) -> list[str]:
    """Drop empty and too-short secrets and sort the rest longest first, so a secret containing another goes first."""
    return sorted({secret for secret in secrets if len(secret) >= _MIN_SECRET_LENGTH}, key=len, reverse=True)


def _replace_secrets(text: str, secrets: list[str]) -> str:
    """Replace every occurrence of each secret in `text`."""
    for secret in secrets:
        text = text.replace(secret, REDACTED)
    return text
