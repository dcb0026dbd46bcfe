"""What ``nbmlops serve`` was asked to serve: the target, the arms (split/shadow) and the
service's bounds. Plain data (JSON round-trip), so ``--workers N`` processes get the same."""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass

from ..errors import InvalidArgumentError
from ..registry.service import check_alias, check_name

__all__ = ["Arm", "ServeOptions", "parse_target", "parse_split"]

#: how ``NAME`` alone is served: the champion when it exists, else the newest version
DEFAULT_ALIAS = "champion"


@dataclass(frozen=True)
class Arm:
    """One way requests are answered: by an alias (followed) or a fixed version.

    ``alias`` None and ``version`` None: the newest version (followed). ``role`` is
    ``primary`` (answers a share ``weight`` of requests) or ``shadow`` (scores every request,
    never answers)."""

    alias: str | None
    version: int | None
    role: str = "primary"
    weight: int = 100

    @property
    def label(self) -> str:
        if self.alias is not None:
            return f"@{self.alias}"
        return f"/{self.version}" if self.version is not None else "/latest"


@dataclass
class ServeOptions:
    model: str
    arms: list[Arm]
    host: str = "127.0.0.1"
    port: int = 8765
    workers: int = 1
    log: bool = True
    log_sample: float = 1.0
    poll: float = 2.0
    max_body: int = 10 * 1024 * 1024
    max_rows: int = 10_000
    max_batch_rows: int = 20_000
    store_url: str | None = None
    artifact_root: str | None = None
    store_dir: str | None = None
    predictions_dir: str | None = None

    @property
    def primaries(self) -> list[Arm]:
        return [a for a in self.arms if a.role == "primary"]

    @property
    def shadow(self) -> Arm | None:
        return next((a for a in self.arms if a.role == "shadow"), None)

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> ServeOptions:
        data = json.loads(text)
        data["arms"] = [Arm(**a) for a in data["arms"]]
        return cls(**data)


def parse_target(target: str) -> tuple[str, int | None, str | None]:
    """``NAME@ALIAS`` -> (name, None, alias); ``NAME/VERSION`` -> (name, version, None);
    ``NAME`` -> (name, None, None)."""
    text = target.strip()
    if text.startswith("models:/"):
        text = text[len("models:/"):]
    if "@" in text:
        name, _, alias = text.partition("@")
        return check_name(name), None, check_alias(alias)
    if "/" in text:
        name, _, ver = text.partition("/")
        if ver == "latest":
            return check_name(name), None, None
        if not ver.isdigit() or int(ver) < 1:
            raise InvalidArgumentError(
                f"cannot read {target!r}: expected NAME@ALIAS, NAME/VERSION (a number from 1) "
                "or NAME")
        return check_name(name), int(ver), None
    return check_name(text), None, None


_SPLIT_ITEM = re.compile(r"^\s*([A-Za-z][A-Za-z0-9_-]{0,63})\s*=\s*(\d{1,6})\s*$")


def parse_split(text: str) -> list[Arm]:
    """``champion=90,challenger=10`` -> primary arms with integer weights (any positive total)."""
    arms: list[Arm] = []
    for item in text.split(","):
        m = _SPLIT_ITEM.match(item)
        if not m:
            raise InvalidArgumentError(
                f"cannot read --split {text!r}: expected ALIAS=WEIGHT[,ALIAS=WEIGHT...], e.g. "
                "champion=90,challenger=10")
        alias, weight = check_alias(m.group(1)), int(m.group(2))
        if any(a.alias == alias for a in arms):
            raise InvalidArgumentError(f"--split names {alias!r} twice")
        arms.append(Arm(alias=alias, version=None, role="primary", weight=weight))
    if len(arms) < 2:
        raise InvalidArgumentError("--split needs at least two aliases, e.g. champion=90,challenger=10")
    if sum(a.weight for a in arms) <= 0 or any(a.weight < 0 for a in arms):
        raise InvalidArgumentError("--split weights must add up to more than 0")
    return arms
