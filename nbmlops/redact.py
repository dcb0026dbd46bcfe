"""Secrets are never stored: secret-looking params/tags get their values replaced, and secret
literals written in cell sources become markers (`redact_source`, docs/secrets.md)."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from typing import Any

__all__ = [
    "REDACTED", "looks_secret", "redact_mapping", "MAX_VALUE_CHARS", "redact_source", "redact_cell",
    "secret_warning", "secrets_in", "MARKER_RE", "env_name", "environment_advice",
]

REDACTED = "***redacted***"
#: Longest param/tag value kept; longer values are cut with a marker.
MAX_VALUE_CHARS = 5000

_SECRET = re.compile(
    r"(pass(word|wd|phrase)?|secret|token|api[_-]?key|private[_-]?key|access[_-]?key|"
    r"(^|[_-])key$|^key[_-]|credential|auth|session[_-]?id|cookie|dsn|conn(ection)?[_-]?str)",
    re.IGNORECASE,
)


#: Tags nbmlops writes itself (``nbmlops.cache_key``...): never secrets, never redacted.
OWN_PREFIX = "nbmlops."


def looks_secret(name: str) -> bool:
    """True when a parameter/tag name suggests its value is a secret (nbmlops' own
    ``nbmlops.*`` names excepted)."""
    return not name.startswith(OWN_PREFIX) and bool(_SECRET.search(name))


def clip(value: str) -> str:
    if len(value) > MAX_VALUE_CHARS:
        return value[:MAX_VALUE_CHARS] + f"...[{len(value) - MAX_VALUE_CHARS} chars cut]"
    return value


def redact_mapping(values: Mapping[str, Any]) -> dict[str, str]:
    """Stringify values, redacting those whose key looks secret."""
    return {
        str(k): REDACTED if looks_secret(str(k)) else clip(v if isinstance(v, str) else repr(v))
        for k, v in values.items()
    }


# -- secrets written in cell sources ----------------------------------------------------------

#: the marker a redacted literal becomes (inside the literal's own quotes): ``<redacted:NAME>``
MARKER_RE = re.compile(r"<redacted:([A-Za-z_][\w.\-]*)>")


# One cheap search (over the lower-cased source) decides whether a cell needs the full pass:
# every detector below needs one of these (a secret-looking word, a URL, a known token prefix,
# a key block). Flat literal alternatives: the fastest shape for Python's regex engine.
_WORD_HINTS = ("pass", "pw", "secret", "token", "cred", "auth", "dsn", "conn", "bearer", "key", "session")
_PREFIX_HINTS = (r"://", "akia", "asia", "aiza", r"gh[pousr]_", "github_pat", "xox", "sk-", "eyj", "-----begin")
_PRECHECK = re.compile("|".join(_WORD_HINTS + _PREFIX_HINTS))
_WORD_HINT = re.compile("|".join(_WORD_HINTS))


def redact_source(src: str) -> tuple[str, list[str]]:
    """``src`` with secret literals replaced by ``'<redacted:NAME>'`` markers (inside the
    literal's quotes, so the code still parses), and the findings: the names or kinds of what
    was redacted, never a value. A source without a hint of a secret costs one regex search."""
    lowered = src.lower()
    first = _PRECHECK.search(lowered)
    if first is None:
        return src, []
    return _redact(src, lowered, first.start())


def redact_cell(src: str) -> tuple[str, str | None, list[str]]:
    """What capture stores of a cell: the redacted source, the SHA-256 of the original source
    when it was redacted (else None: the store hashes the source itself), and the findings."""
    redacted, findings = redact_source(src)
    if not findings:
        return src, None, []
    return redacted, hashlib.sha256(src.encode("utf-8", "surrogatepass")).hexdigest(), findings


# -- the full pass (only for sources the pre-check flagged) --------------------------------------

_WORD_SECRETS = frozenset({
    "password", "passwd", "passphrase", "pass", "pwd", "pw", "secret", "secrets", "token",
    "apikey", "credential", "credentials", "dsn", "bearer", "authorization",
})
_PAIR_SECRETS = frozenset({
    ("api", "key"), ("access", "key"), ("private", "key"), ("secret", "key"), ("auth", "key"),
    ("signing", "key"), ("encryption", "key"), ("master", "key"), ("conn", "str"),
    ("connection", "string"), ("client", "secret"), ("session", "id"),
})
#: words that make "token" mean a piece of text (NLP) or a count, not a credential
_NOT_SECRET_WITH_TOKEN = frozenset({
    "pad", "eos", "bos", "unk", "sep", "cls", "mask", "special", "start", "end", "stop", "oov",
    "type", "types", "count", "counts", "id", "ids", "idx", "index", "len", "length", "num", "n",
    "max", "min", "limit", "size", "budget", "usage", "pattern", "regex", "vocab", "prefix",
})
#: words that make "token" a credential whatever else the name says
_CREDENTIAL_TOKEN = frozenset({"auth", "access", "refresh", "api", "bearer", "secret", "github", "slack", "hf"})
_SPLIT_NAME = re.compile(r"[A-Z]?[a-z0-9]+|[A-Z]+(?![a-z])")


def _source_name_is_secret(name: str) -> bool:
    """Stricter than :func:`looks_secret` (code is full of ``sort_key`` and ``author``): a whole
    word or word pair of ``name`` must name a credential."""
    words = [w.lower() for w in _SPLIT_NAME.findall(name)]
    hit = any(w in _WORD_SECRETS for w in words) or any(
        p in _PAIR_SECRETS for p in zip(words, words[1:], strict=False))
    if hit and "token" in words and not (set(words) & _CREDENTIAL_TOKEN):
        hit = not (set(words) & _NOT_SECRET_WITH_TOKEN)
    return hit


def _is_placeholder(value: str) -> bool:
    """Values that cannot be a secret: too short, a marker or ``<your key>``, a template."""
    v = value.strip()
    return (
        len(v) < 4
        or (v[0], v[-1]) in {("<", ">"), ("[", "]"), ("{", "}")}
        or v.startswith(("${", "$(", "%("))
        or set(v) <= set("*xX.-_# ")
        or "<redacted:" in v
    )


_TRIPLE = ("'" * 3, '"' * 3)
_STR = (r"[rRuUbBfF]{0,2}(?:(?P<tq>" + "|".join(_TRIPLE) + r")(?P<tval>[\s\S]*?)(?P=tq)"
        r"|(?P<sq>['\"])(?P<sval>(?:\\.|[^\\\n])*?)(?P=sq))")
_NAMED = re.compile(
    r"(?:"
    # NAME = '...'  /  NAME: str = '...'  /  f(NAME='...')  (not ==, <=, >=, !=)
    r"(?<![\w.])(?P<name>(?:[A-Za-z_]\w*\.)*[A-Za-z_]\w*)[ \t]*(?::[ \t]*[\w\[\]., |]*?)?[ \t]*(?<![=!<>])=(?!=)"
    # d['KEY'] = '...'  (os.environ['KEY'] = too)  /  {'KEY': '...'}
    r"|(?P<kq>['\"])(?P<key>[A-Za-z_][\w.\-]*)(?P=kq)\s*(?:\]\s*=(?!=)|:)"
    # os.environ.setdefault('KEY', '...') / os.putenv('KEY', '...')
    r"|(?:setdefault|putenv)\s*\(\s*(?P<eq>['\"])(?P<ekey>[A-Za-z_][\w.\-]*)(?P=eq)\s*,"
    r")\s*(?P<lit>" + _STR + r")"
)
#: %env NAME=value / %set_env NAME value (raw sources keep the magic)
_ENV_MAGIC = re.compile(
    r"(?m)^(?P<head>[ \t]*%(?:set_)?env[ \t]+(?P<name>[A-Za-z_]\w*)(?:[ \t]*=[ \t]*|[ \t]+))(?P<val>\S[^\n]*?)[ \t]*$")
_URL_PASSWORD = re.compile(r"(?P<head>\b[A-Za-z][\w+.\-]*://[^\s:/?#@'\"<>]*:)(?P<pw>[^\s/?#@'\"]+)(?=@)")
_PRIVATE_KEY = re.compile(
    r"-----BEGIN (?:[A-Z0-9]+ )*PRIVATE KEY(?: BLOCK)?-----"
    r"(?:[\s\S]*?-----END (?:[A-Z0-9]+ )*PRIVATE KEY(?: BLOCK)?-----|[^'\"]*)"
)
#: well-known token formats: (kind, the pre-check matches that announce it, pattern)
_TOKENS: tuple[tuple[str, frozenset[str], re.Pattern[str]], ...] = (
    ("aws-access-key", frozenset({"akia", "asia"}), re.compile(r"\b(?:AKIA|ASIA)[0-9A-Z]{16}\b")),
    ("github-token", frozenset({"ghp_", "gho_", "ghu_", "ghs_", "ghr_", "github_pat"}),
     re.compile(r"\b(?:gh[pousr]_[A-Za-z0-9]{30,}|github_pat_[A-Za-z0-9_]{22,})")),
    ("slack-token", frozenset({"xox"}), re.compile(r"\bxox[abprs]-[A-Za-z0-9-]{10,}")),
    ("openai-key", frozenset({"sk-"}), re.compile(r"\bsk-(?=[A-Za-z0-9_-]*\d)[A-Za-z0-9_-]{20,}")),
    ("google-api-key", frozenset({"aiza"}), re.compile(r"\bAIza[0-9A-Za-z_-]{35}")),
    ("jwt", frozenset({"eyj"}), re.compile(r"\beyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}")),
)
_WORDS = frozenset(_WORD_HINTS)


def _hint_lines(out: str, hits: list[re.Match[str]]) -> list[tuple[int, int]]:
    """The spans of the lines holding a secret-looking word (a line opening a triple-quoted
    string reaches to the end): the named pass looks only there, so NLP code full of "token"
    stays cheap."""
    spans: list[tuple[int, int]] = []
    for m in hits:
        if m.group() not in _WORDS or (spans and m.start() < spans[-1][1]):
            continue
        start = out.rfind("\n", 0, m.start()) + 1
        end = out.find("\n", m.start())
        end = len(out) if end < 0 else end
        line = out[start:end]
        if _TRIPLE[0] in line or _TRIPLE[1] in line:
            end = len(out)
        if spans and start <= spans[-1][1]:
            spans[-1] = (spans[-1][0], end)
        else:
            spans.append((start, end))
    return spans


def _redact(src: str, lowered: str, first: int) -> tuple[str, list[str]]:
    findings: list[str] = []

    def note(label: str) -> str:
        if label not in findings:
            findings.append(label)
        return f"<redacted:{label}>"

    def named(m: re.Match[str]) -> str:
        name = m.group("name") or m.group("key") or m.group("ekey")
        label = name.rsplit(".", 1)[-1]
        quote = m.group("tq") or m.group("sq")
        value = m.group("tval") if m.group("tq") else m.group("sval")
        lit = m.group("lit")
        prefix = lit[: lit.index(quote)]
        if not _source_name_is_secret(label) or _is_placeholder(value) or ("f" in prefix.lower() and "{" in value):
            return m.group(0)  # not a secret name, a placeholder, or an f-string building the value
        return m.group(0)[: m.start("lit") - m.start(0)] + f"{prefix}{quote}{note(label)}{quote}"

    def env_magic(m: re.Match[str]) -> str:
        if not _source_name_is_secret(m.group("name")) or _is_placeholder(m.group("val")):
            return m.group(0)
        return m.group("head") + note(m.group("name"))

    def url(m: re.Match[str]) -> str:
        pw = m.group("pw")
        if _is_placeholder(pw) or pw.startswith(("%", "$")):
            return m.group(0)
        return m.group("head") + note("url-password")

    out = src
    hits = list(_PRECHECK.finditer(lowered, first))
    if any(m.group() == "-----begin" for m in hits):
        out = _PRIVATE_KEY.sub(lambda m: note("private-key"), out)
        hits = list(_PRECHECK.finditer(out.lower()))
    seen = {m.group() for m in hits}
    spans = _hint_lines(out, hits)
    if spans:
        parts, pos = [], 0
        for start, end in spans:
            parts.append(out[pos:start])
            parts.append(_ENV_MAGIC.sub(env_magic, _NAMED.sub(named, out[start:end])))
            pos = end
        parts.append(out[pos:])
        out = "".join(parts)
    if "://" in seen:
        out = _URL_PASSWORD.sub(url, out)
    for kind, announced, pattern in _TOKENS:
        if not announced.isdisjoint(seen):
            out = pattern.sub(lambda m, kind=kind: note(kind), out)  # type: ignore[misc]
    return out, findings


def secret_warning(cell: str, findings: list[str]) -> str:
    """The one-time notebook warning: which secret (names/kinds only) and how to move it out."""
    names = [f for f in findings if f.isidentifier()]
    env = names[0] if names else "API_TOKEN"
    return (
        f"cell {cell} holds a secret ({', '.join(findings)}). The cell ran unchanged, but the "
        "lineage store keeps its source redacted, so exports and reproductions need the value "
        f"from the environment. Move it out of the notebook: read it with os.environ['{env}'] and "
        f"set it outside (`export {env}=...` before starting Jupyter, a .env file loaded with "
        f"python-dotenv, or `%env {env}=...` in a cell you do not keep). Shown once per session."
    )


_ASSIGNED = re.compile(
    r"(?:([A-Za-z_]\w*)\s*(?::[^=\n]*)?=(?!=)|(['\"])(\w+)\2\s*[\]:,][\s=]*)\s*[rRuUbBfF]{0,2}['\"]{1,3}[^'\"\n]*$")


def secrets_in(stored: str) -> list[str]:
    """The secrets redacted from a stored source, as the names the values should come from:
    the marker's name, or for a token/URL marker the variable (or key) it was assigned to."""
    out: list[str] = []
    for m in MARKER_RE.finditer(stored):
        label = m.group(1)
        if not label.isidentifier():
            line = stored[stored.rfind("\n", 0, m.start()) + 1: m.start()]
            assigned = _ASSIGNED.search(line)
            if assigned:
                label = assigned.group(1) or assigned.group(3)
        if label not in out:
            out.append(label)
    return out


def env_name(label: str) -> str:
    """The environment variable a redacted secret should come from: the name upper-cased
    (``api_key`` -> ``API_KEY``); a URL's password -> ``DB_PASSWORD``."""
    if label == "url-password":
        return "DB_PASSWORD"
    return re.sub(r"\W", "_", label).upper()


def environment_advice(labels: list[str]) -> str:
    """``API_TOKEN must come from the environment (os.environ['API_TOKEN'])``, for every label."""
    parts = []
    for label in labels:
        name = env_name(label)
        what = "the password in a URL" if label == "url-password" else label
        parts.append(f"{what} must come from the environment (set {name}; read os.environ['{name}'])")
    return "; ".join(parts)
