"""Every key of sparkgate's config file, read from the sparkgate binary itself.

Each section of the config is a serde struct with `deny_unknown_fields`, so `sparkgate
--check-config` on a file with an unknown key there names every key allowed in its place
("unknown field `__probe__`, expected one of `bind`, `transport`, ..."). An internally tagged enum
(auth methods) first names its tag ("missing field `type`"), then, given an unknown tag, its
variants ("unknown variant `__probe__`, expected one of `none`, ..."). Probing each key in turn,
with a table where a value belongs, walks the whole tree: a key whose value is no struct is a leaf
(a unit enum's error names its choices). The truth is the binary's own `Deserialize` code: no second
list of keys, no Rust code kept for it. Values that are a whole foreign object (Kubernetes
`resources`, `tolerations`) and maps (`spark_conf`) are leaves.

Key paths: `server.bind`, `tenants[].scaling.min_drivers` (an element of an array),
`auth.methods[].type` (the tag) and `auth.methods[ldap].url` (a field of one variant).

    python integration/config_keys.py [SPARKGATE_BIN]    # one key a line, with its choices
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

PROBE = "__probe__"
_FIELDS = re.compile(r"^unknown field `__probe__`, (?:expected (.*)|there are no fields)$", re.MULTILINE)
_VARIANTS = re.compile(r"^unknown variant `__probe__`, (?:expected (.*)|there are no variants)$", re.MULTILINE)
_MISSING = re.compile(r"^missing field `([^`]+)`$", re.MULTILINE)
_SEQUENCE = re.compile(r"^invalid type: map, expected a sequence$", re.MULTILINE)


@dataclass(frozen=True)
class Step:
    """One step of a key path: a field, an array element (`name` None) or a variant of a tagged
    enum (`tag` set)."""

    name: str | None
    tag: str | None = None


@dataclass(frozen=True)
class Key:
    steps: tuple[Step, ...]
    # The accepted strings of a unit enum (or the variants of a tag), else None.
    choices: tuple[str, ...] | None = None
    # The tag of an internally tagged enum (`auth.methods[].type`).
    tag: bool = False

    @property
    def path(self) -> str:
        return format_path(self.steps)


def format_path(steps: tuple[Step, ...]) -> str:
    out = ""
    for i, step in enumerate(steps):
        if step.tag is not None:
            out += f"[{step.name}]"
        elif step.name is None:
            # An element that is a variant is written as the variant only.
            if i + 1 < len(steps) and steps[i + 1].tag is not None:
                continue
            out += "[]"
        else:
            out += ("." if out else "") + step.name
    return out


def _toml(value) -> str:
    if isinstance(value, dict):
        return "{" + ", ".join(f"{_toml_key(k)} = {_toml(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    return json.dumps(value)  # JSON string escapes are valid TOML basic strings


def _toml_key(key: str) -> str:
    return key if re.fullmatch(r"[A-Za-z0-9_-]+", key) else json.dumps(key)


def _document(steps: tuple[Step, ...], inner: dict) -> dict:
    """A config document with `inner` as the value at `steps`."""
    value = inner
    for step in reversed(steps):
        if step.tag is not None:
            value = {step.tag: step.name, **value}
        elif step.name is None:
            value = [value]
        else:
            value = {step.name: value}
    return value


def _names(listed: str | None) -> list[str]:
    return re.findall(r"`([^`]*)`", listed or "")


class _Prober:
    def __init__(self, binary: Path, workdir: Path):
        self.binary, self.file = binary, workdir / "probe.toml"

    def error(self, steps: tuple[Step, ...], inner: dict) -> str:
        """sparkgate's complaint about the document, "" if it accepts it."""
        doc = _document(steps, inner)
        self.file.write_text("".join(f"{_toml_key(k)} = {_toml(v)}\n" for k, v in doc.items()))
        env = {**os.environ, "RUST_BACKTRACE": "0", "RUST_LIB_BACKTRACE": "0", "SPARKGATE_LOG": "error"}
        run = subprocess.run(
            [self.binary, "--config", self.file, "--check-config"],
            check=False, capture_output=True, text=True, timeout=60, env=env,
        )
        return "" if run.returncode == 0 else run.stderr + run.stdout

    def walk(self, steps: tuple[Step, ...], keys: list[Key]) -> None:
        """Adds the keys at and under `steps` (a place where a table is a struct or a tagged enum)."""
        error = self.error(steps, {PROBE: 1})
        if m := _FIELDS.search(error):
            for name in _names(m[1]):
                self.visit(steps + (Step(name),), keys)
            return
        if m := _MISSING.search(error):
            tag = m[1]
            variants = _VARIANTS.search(self.error(steps, {tag: PROBE}))
            if variants is None:
                raise RuntimeError(f"{format_path(steps)}: {tag!r} is required but names no variants")
            names = tuple(_names(variants[1]))
            keys.append(Key(steps + (Step(tag),), names, tag=True))
            for name in names:
                self.walk(steps + (Step(name, tag),), keys)
            return
        raise RuntimeError(f"{format_path(steps) or 'the top level'}: not a struct? sparkgate said:\n{error}")

    def is_table(self, steps: tuple[Step, ...]) -> tuple[bool, str]:
        error = self.error(steps, {PROBE: 1})
        return bool(_FIELDS.search(error) or _MISSING.search(error)), error

    def visit(self, steps: tuple[Step, ...], keys: list[Key]) -> None:
        table, error = self.is_table(steps)
        if table:
            return self.walk(steps, keys)
        if _SEQUENCE.search(error):
            item = steps + (Step(None),)
            item_is_table, error = self.is_table(item)
            if item_is_table:
                return self.walk(item, keys)
        choices = _VARIANTS.search(error)
        keys.append(Key(steps, tuple(_names(choices[1])) if choices else None))


def config_keys(binary: Path) -> list[Key]:
    """Every key path of sparkgate's config, in the order sparkgate declares them."""
    keys: list[Key] = []
    with tempfile.TemporaryDirectory(prefix="sparkgate-keys-") as tmp:
        _Prober(Path(binary), Path(tmp)).walk((), keys)
    return keys


if __name__ == "__main__":
    repo = Path(__file__).resolve().parents[1]
    binary = sys.argv[1] if len(sys.argv) > 1 else os.environ.get("SPARKGATE_BIN") or repo / "target/release/sparkgate"
    for key in config_keys(Path(binary)):
        print(key.path + (f"  ({' | '.join(key.choices)})" if key.choices else ""))
