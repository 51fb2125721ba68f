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

The resolved config carries secrets (API keys in headers, tokens in `env`, a password inside `${DB_URL}`). It must
never be logged or saved: `redact` makes the copy that may be. Every value a template resolved to counts as a secret,
whatever the variable's name (`secret_values`), and so does every credential written into a URL (the password of
`scheme://user:password@host`, the value of each query parameter): `redact_text` hides both in any message.
`install_log_redaction` does the same for the log records of our own loggers and of mcp, httpx and httpcore,
whose INFO and DEBUG lines quote request URLs (`?api_key=...`).
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Iterable, Mapping
from typing import Any

__all__ = [
    "REDACTED",
    "has_template",
    "install_log_redaction",
    "is_secret_name",
    "redact",
    "redact_text",
    "redact_urls",
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
    Cookie, `Env-*`, ...; case-insensitive) becomes `***`, and every occurrence of one of `secrets`, and every
    credential in a URL (password, query values), in any other string becomes `***`.
    """
    return _redact(value, _usable_secrets(secrets))


def _redact(value: Any, secrets: list[str]) -> Any:
    """Redact `value` with `secrets` already filtered and sorted longest first."""
    if isinstance(value, str):
        return redact_urls(_replace_secrets(value, secrets))
    if isinstance(value, Mapping):
        return {key: REDACTED if _is_secret_entry(key, item) else _redact(item, secrets) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(_redact(item, secrets) for item in value)
    return value


def redact_text(text: str, secrets: Iterable[str]) -> str:
    """Return `text` with every occurrence of one of `secrets`, and every credential in a URL, replaced by `***`."""
    return redact_urls(_replace_secrets(text, _usable_secrets(secrets)))


def secret_values(unresolved: Any, resolved: Any, environ: Mapping[str, str]) -> frozenset[str]:
    """Return the credentials that resolving `unresolved` into `resolved` brought in, for `redact` to hide.

    They are the value of every variable a template refers to, whatever its name (`${DB_URL}` may hold a password as
    well as `${HUD_API_KEY}` does), the resolved values under secret-looking keys (an `Authorization` header, and
    the token after its `Bearer`), and the credentials written into resolved URLs (a password, a query `api_key`).
    """
    found = {environ.get(name, "") for name in template_variables(unresolved)}
    found.update(_values_under_secret_keys(resolved))
    found.update(_url_credentials(resolved))
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


# A URL in free text: a scheme, then everything up to white space or a quote/bracket that ends it in prose.
_URL = re.compile(r"\b[a-z][a-z0-9+.-]*://[^\s'\"<>`]+", re.IGNORECASE)
_USERINFO_PASSWORD = re.compile(r"^(?P<head>[a-z][a-z0-9+.-]*://[^/@:?#]*:)(?P<password>[^/@?#]*)@", re.IGNORECASE)
_QUERY_VALUE = re.compile(r"(?P<head>[?&;](?P<name>[^=&#;]+)=)(?P<value>[^&#;]+)")


def redact_urls(text: str) -> str:
    """Return `text` with the credentials of every URL in it replaced by `***`: the password, each query value."""
    return _URL.sub(lambda match: _redact_url(match.group()), text)


def _redact_url(url: str) -> str:
    url = _USERINFO_PASSWORD.sub(lambda match: f"{match['head']}{REDACTED}@", url)
    base, question, rest = url.partition("?")
    if not question:
        return url
    return base + question + _QUERY_VALUE.sub(lambda match: f"{match['head']}{REDACTED}", "&" + rest)[1:]


def _url_credentials(value: Any) -> set[str]:
    """The passwords, and the query values under secret-looking names, of the URLs in `value`'s strings.

    Every query value is hidden wherever its URL is quoted (`redact_urls`); only the secret-looking ones are hidden
    on their own too, because hiding `main` or `1234` everywhere would garble every message.
    """
    if isinstance(value, Mapping):
        return set().union(*(_url_credentials(item) for item in value.values()))
    if isinstance(value, list | tuple):
        return set().union(*(_url_credentials(item) for item in value))
    if not isinstance(value, str):
        return set()
    found: set[str] = set()
    for url in _URL.findall(value):
        password = _USERINFO_PASSWORD.match(url)
        if password:
            found.add(password["password"])
        query = "&" + url.partition("?")[2]
        found.update(match["value"] for match in _QUERY_VALUE.finditer(query) if is_secret_name(match["name"]))
    return found


# ---------------------------------------------------------------------------------------------------------------------
# Log records

# Loggers whose records may quote a resolved config: ours, the MCP SDK's, and httpx/httpcore (request URLs).
_REDACTED_LOGGER_PREFIXES = ("hud_vf_gym", "mcp", "httpx", "httpcore")


class _RedactingFilter(logging.Filter):
    """Rewrites a record's message with every known secret and URL credential hidden (it never drops a record)."""

    def __init__(self) -> None:
        super().__init__()
        self._lock = threading.Lock()
        self._secrets: list[str] = []

    def add_secrets(self, secrets: Iterable[str]) -> None:
        with self._lock:
            self._secrets = _usable_secrets([*self._secrets, *secrets])

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except (TypeError, ValueError):  # a malformed record: logging reports it itself, unchanged
            return True
        redacted = redact_urls(_replace_secrets(message, self._secrets))
        if redacted != message:
            record.msg, record.args = redacted, None
        return True


_FILTER = _RedactingFilter()
_install_lock = threading.Lock()
_installed = False


def install_log_redaction(secrets: Iterable[str] = ()) -> None:
    """Hide `secrets` (and URL credentials) in every record of our loggers and of mcp, httpx and httpcore.

    A filter on a logger sees only the records logged to that very logger, not its children's (`mcp.client.sse`),
    and a module may create its logger after this runs; so the redaction sits in the log record factory instead
    (chained to the one installed before), where every record of those loggers passes once it is enabled. An
    `MCPSession` calls this with its secrets each time it opens; later calls only add secrets.
    """
    global _installed
    _FILTER.add_secrets(secrets)
    with _install_lock:
        if _installed:
            return
        previous = logging.getLogRecordFactory()

        def redacting_factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
            record = previous(*args, **kwargs)
            if record.name.split(".", 1)[0] in _REDACTED_LOGGER_PREFIXES:
                _FILTER.filter(record)
            return record

        logging.setLogRecordFactory(redacting_factory)
        _installed = True
