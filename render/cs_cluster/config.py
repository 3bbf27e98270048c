"""Reading and validating a worker_config: the YAML list of models C/S deployments start from.

Every rule here exists so that a mistake is reported against the file, the model and the field,
before anything is rendered or written. The accepted keys are C/S's, including its older
spellings (`single-core`, `secret`).
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any, Literal

import yaml

from .errors import ConfigError
from .names import clean, model_key, model_slug
from .quantities import QuantityError, parse_quantity

ClusterType = Literal["celery", "dask"]

KNOWN_KEYS = (
    "owner",
    "title",
    "branch",
    "repo_url",
    "cluster_type",
    "replicas",
    "resources",
    "env",
    "secrets",
    "secret",
    "sim_time_limit",
    "affinity",
)
# C/S called a Celery model "single-core".
CLUSTER_TYPES: dict[str, ClusterType] = {"single-core": "celery", "celery": "celery", "dask": "dask"}
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
# Kubernetes labels are 63 characters at most, and the slug is a label value.
MAX_SLUG_LENGTH = 63
# The gateway routes /<owner>/<title>/...: a name with / is split in two, and ?, # and % change the
# URL a webserver builds by pasting the name in (as C/S's did). The chart's schema holds the same
# rule (definitions.routableName); tests/runtime/test_names.py checks both against the gateway.
UNROUTABLE_CHARACTERS = "/?#%"
# Container resource names Kubernetes knows, hugepages-<size>, and extended resources, which carry
# a domain (nvidia.com/gpu). The chart's schema holds the same pattern (definitions.resourceName);
# tests/cli/test_worker_config_errors.py checks the two agree.
STANDARD_RESOURCES = ("cpu", "memory", "ephemeral-storage")
RESOURCE_NAME = re.compile(
    r"^(cpu|memory|ephemeral-storage|hugepages-[0-9]+([KMGTPE]i?)?"
    r"|[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)+/[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?)$"
)


@dataclass(frozen=True)
class ModelConfig:
    """One model of a worker_config, validated and normalised."""

    owner: str
    title: str
    cluster_type: ClusterType
    replicas: int
    index: int
    branch: str | None = None
    repo_url: str | None = None
    resources: dict[str, dict[str, str]] = field(default_factory=dict)
    env: dict[str, str] = field(default_factory=dict)
    secrets: dict[str, str] = field(default_factory=dict)
    sim_time_limit: int | None = None
    node_sizes: tuple[str, ...] = ()

    @property
    def slug(self) -> str:
        return model_slug(self.owner, self.title)

    @property
    def key(self) -> str:
        return model_key(self.owner, self.title)

    @property
    def name(self) -> str:
        return f"{self.owner}/{self.title}"


# libyaml's parser when PyYAML has it: 3x faster on a thousand-model config (benchmarks/).
_SafeLoader: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class _UniqueKeyLoader(_SafeLoader):  # type: ignore[valid-type,misc]
    """A safe loader that refuses a key written twice in one mapping (YAML keeps the last)."""


def _construct_unique_mapping(loader: _UniqueKeyLoader, node: yaml.MappingNode) -> dict[Any, Any]:
    seen: set[Any] = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node)
        if key in seen:
            raise yaml.constructor.ConstructorError(
                None, None, f"key {key!r} appears twice in one mapping", key_node.start_mark
            )
        seen.add(key)
    mapping: dict[Any, Any] = loader.construct_mapping(node)
    return mapping


_UniqueKeyLoader.add_constructor(
    yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_unique_mapping
)


@dataclass(frozen=True)
class Plain:
    """An unquoted scalar that YAML 1.1 reads as a number, a boolean or a date (`0755` -> 493,
    `off` -> False, `3.10` -> 3.1): the value YAML made of it and the characters as written.

    Numeric fields use `value`; text fields (owner, title, branch, repo_url, env and secret values,
    names) use `text`, so they get exactly what the user wrote.
    """

    value: Any
    text: str


class _WorkerConfigLoader(_UniqueKeyLoader):
    """The worker_config loader: keeps the written text of every unquoted non-string scalar."""


def _keeping_text(tag: str) -> Any:
    construct = yaml.SafeLoader.yaml_constructors[tag]

    def construct_plain(loader: _WorkerConfigLoader, node: yaml.ScalarNode) -> Any:
        value = construct(loader, node)
        # Plain style is None (pure Python parser) or "" (libyaml); a quoted scalar is text already.
        return Plain(value, node.value) if not node.style else value

    return construct_plain


for _tag in ("bool", "int", "float", "timestamp"):
    _WorkerConfigLoader.add_constructor(f"tag:yaml.org,2002:{_tag}", _keeping_text(f"tag:yaml.org,2002:{_tag}"))


def as_text(value: Any) -> str:
    """A scalar as text: the characters written for a Plain scalar; for plain Python data (from
    the API), booleans as YAML writes them and everything else through str()."""
    if isinstance(value, Plain):
        return value.text
    if isinstance(value, bool):
        return str(value).lower()
    return str(value)


def as_value(value: Any) -> Any:
    """What YAML made of a scalar (the number, for numeric fields)."""
    return value.value if isinstance(value, Plain) else value


def _keys_as_text(data: Any) -> Any:
    """Every mapping key as the text written: worker_config keys are names (`ON:` is not True)."""
    if isinstance(data, dict):
        return {as_text(key) if isinstance(key, Plain) else key: _keys_as_text(item) for key, item in data.items()}
    if isinstance(data, list):
        return [_keys_as_text(item) for item in data]
    return data


def load_yaml(path: Path, loader: type[yaml.SafeLoader] = _UniqueKeyLoader) -> Any:
    """Parse a YAML file, turning every failure into a ConfigError with the line."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError("file not found", path=str(path)) from None
    except (OSError, UnicodeDecodeError) as error:
        raise ConfigError(f"cannot read: {error}", path=str(path)) from None
    try:
        return yaml.load(text, Loader=loader)  # noqa: S506 - SafeLoader subclasses
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        problem = getattr(error, "problem", None) or str(error)
        line = mark.line + 1 if mark is not None else None
        raise ConfigError(f"YAML syntax error: {problem}", path=str(path), line=line) from None


class _ModelReader:
    """Validates one entry; holds the context every error message needs."""

    def __init__(self, path: str, index: int, entry: Any, default_resources: dict[str, Any]):
        self.path = path
        self.index = index
        self.entry = entry
        self.default_resources = default_resources
        self.label = f"#{index + 1}"

    def fail(self, message: str, field_name: str | None = None, hint: str | None = None) -> ConfigError:
        return ConfigError(message, path=self.path, model=self.label, field=field_name, hint=hint)

    def read(self) -> ModelConfig:
        if not isinstance(self.entry, dict):
            raise self.fail(f"must be a mapping of settings, got {_type_name(self.entry)}")
        for key in self.entry:
            if key not in KNOWN_KEYS:
                close = difflib.get_close_matches(str(key), KNOWN_KEYS, n=1)
                hint = f"did you mean '{close[0]}'?" if close else "known keys: " + ", ".join(KNOWN_KEYS)
                raise self.fail("unknown key", str(key), hint)
        owner = self._name("owner")
        title = self._name("title")
        self.label = f"{owner}/{title}"
        if "secret" in self.entry and "secrets" in self.entry:
            raise self.fail("give 'secrets' or its old spelling 'secret', not both", "secret")
        secrets_key = "secret" if "secret" in self.entry else "secrets"
        return ModelConfig(
            owner=owner,
            title=title,
            index=self.index,
            cluster_type=self._cluster_type(),
            replicas=self._whole_number("replicas", default=1, minimum=0),
            branch=self._optional_string("branch"),
            repo_url=self._optional_string("repo_url"),
            resources=self._resources(),
            env=self._flat_map("env", env_names=True),
            secrets=self._secrets(secrets_key),
            sim_time_limit=self._optional_whole_number("sim_time_limit", minimum=1),
            node_sizes=self._node_sizes(),
        )

    def _name(self, key: str) -> str:
        if key not in self.entry or self.entry[key] in (None, ""):
            raise self.fail("is required", key)
        value = self.entry[key]
        if not isinstance(value, (str, int, Plain)) or isinstance(value, bool):
            raise self.fail(f"must be a string, got {_type_name(value)}", key)
        value = as_text(value)
        if not value.isprintable():
            raise self.fail(f"{value!r} has control characters", key, "names are one line of printable text")
        unroutable = sorted({character for character in value if character in UNROUTABLE_CHARACTERS})
        if unroutable:
            raise self.fail(
                f"{value!r} holds {' and '.join(repr(c) for c in unroutable)}, so the gateway could never route to it",
                key, f"the webserver calls /<owner>/<title>/...; names cannot hold {' '.join(UNROUTABLE_CHARACTERS)}",
            )
        if not clean(value):
            raise self.fail(
                f"{value!r} has no letters or digits, so it cleans to nothing", key,
                "names are lowercased and kept to a-z and 0-9",
            )
        return value

    def _cluster_type(self) -> ClusterType:
        value = self.entry.get("cluster_type", "single-core")
        value = as_text(value) if isinstance(value, Plain) else value
        if value not in CLUSTER_TYPES:
            raise self.fail(
                f"unknown cluster_type {value!r}", "cluster_type", "use one of: " + ", ".join(CLUSTER_TYPES)
            )
        return CLUSTER_TYPES[value]

    def _whole_number(self, key: str, *, default: int, minimum: int) -> int:
        value = as_value(self.entry.get(key, default))
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.fail(f"must be a whole number, got {value!r}", key)
        if value < minimum:
            raise self.fail(f"must be at least {minimum}, got {value}", key)
        return value

    def _optional_whole_number(self, key: str, *, minimum: int) -> int | None:
        if self.entry.get(key) is None:
            return None
        return self._whole_number(key, default=minimum, minimum=minimum)

    def _optional_string(self, key: str) -> str | None:
        value = self.entry.get(key)
        if value is None:
            return None
        if not isinstance(value, (str, int, float, Plain)) or isinstance(value, bool):
            raise self.fail(f"must be a string, got {_type_name(value)}", key)
        return as_text(value)

    def _flat_map(self, key: str, *, env_names: bool) -> dict[str, str]:
        value = self.entry.get(key)
        if value is None:
            return {}
        if not isinstance(value, dict):
            raise self.fail(f"must be a mapping of NAME: value, got {_type_name(value)}", key)
        result: dict[str, str] = {}
        for name, item in value.items():
            if not isinstance(name, str) or (env_names and not _ENV_NAME.match(name)):
                raise self.fail(
                    f"{name!r} is not a valid variable name", f"{key}.{name}",
                    "use letters, digits and _ and do not start with a digit",
                )
            if isinstance(item, (dict, list)):
                raise self.fail(f"must be a plain value, got {_type_name(item)}", f"{key}.{name}",
                                "this map must be flat: NAME: value")
            if item is None:
                raise self.fail("has no value", f"{key}.{name}",
                                "write the value, in quotes if it is text such as 'null' or '~'")
            # The characters written: `0755` stays "0755", `off` stays "off", `3.10` stays "3.10".
            result[name] = as_text(item)
        return result

    def _secrets(self, key: str) -> dict[str, str]:
        """The model's secrets under the names C/S 0.16 gave the model: upper-cased
        (`some_secret` -> SOME_SECRET), for `secret` and `secrets` alike. Two names that differ only
        by case would be one variable, so they are refused."""
        secrets: dict[str, str] = {}
        written_as: dict[str, str] = {}
        for name, value in self._flat_map(key, env_names=True).items():
            upper = name.upper()
            if upper in written_as:
                raise self.fail(f"{written_as[upper]!r} and {name!r} differ only by case", f"{key}.{name}",
                                f"the model gets secrets upper-cased, as on C/S, so both would be {upper}")
            written_as[upper] = name
            secrets[upper] = value
        return secrets

    def _node_sizes(self) -> tuple[str, ...]:
        affinity = self.entry.get("affinity")
        if affinity is None:
            return ()
        if not isinstance(affinity, dict):
            raise self.fail(f"must be a mapping like {{size: small}}, got {_type_name(affinity)}", "affinity")
        for key in affinity:
            if key != "size":
                raise self.fail("unknown key", f"affinity.{key}", "the only affinity key is 'size'")
        sizes = affinity.get("size")
        if isinstance(sizes, (str, Plain)):
            sizes = [sizes]
        if isinstance(sizes, list):
            sizes = [as_text(size) if isinstance(size, Plain) else size for size in sizes]
        if not isinstance(sizes, list) or not sizes or not all(isinstance(s, str) and s for s in sizes):
            raise self.fail("must be a size or a list of sizes, like small or [small, medium]", "affinity.size")
        return tuple(sizes)

    def _resources(self) -> dict[str, dict[str, str]]:
        value = self.entry.get("resources")
        if value is None:
            return {}
        if not isinstance(value, dict):
            raise self.fail(f"must be a mapping with requests and limits, got {_type_name(value)}", "resources")
        parsed: dict[str, dict[str, Decimal]] = {}
        result: dict[str, dict[str, str]] = {}
        for section, items in value.items():
            if section not in ("requests", "limits"):
                close = difflib.get_close_matches(str(section), ["requests", "limits"], n=1)
                raise self.fail("unknown key", f"resources.{section}",
                                f"did you mean '{close[0]}'?" if close else "use requests and limits")
            if items is None:
                continue
            if not isinstance(items, dict):
                raise self.fail(f"must be a mapping like {{cpu: 1, memory: 1G}}, got {_type_name(items)}",
                                f"resources.{section}")
            parsed[section] = {}
            result[section] = {}
            for resource, quantity in items.items():
                quantity = as_value(quantity)
                where = f"resources.{section}.{resource}"
                if not isinstance(resource, str) or not RESOURCE_NAME.match(resource):
                    close = difflib.get_close_matches(str(resource).lower(), STANDARD_RESOURCES, n=1, cutoff=0.5)
                    raise self.fail(
                        "is not a resource Kubernetes knows", where,
                        (f"did you mean '{close[0]}'? " if close else "")
                        + "extended resources carry a domain, like nvidia.com/gpu",
                    )
                try:
                    parsed[section][resource] = parse_quantity(quantity)
                except QuantityError as error:
                    raise self.fail(str(error), where) from None
                if resource == "memory" and str(quantity).endswith("m"):
                    raise self.fail(f"{quantity!r} means thousandths of a byte", where,
                                    "write M (megabytes) or Mi (mebibytes)")
                result[section][resource] = str(quantity)
        self._check_requests_within_limits(parsed)
        return result

    def _check_requests_within_limits(self, parsed: dict[str, dict[str, Decimal]]) -> None:
        """Kubernetes rejects a pod whose request exceeds its limit; so do we, defaults included."""
        merged: dict[str, dict[str, tuple[Decimal, str]]] = {"requests": {}, "limits": {}}
        for section in merged:
            for resource, quantity in (self.default_resources.get(section) or {}).items():
                merged[section][resource] = (parse_quantity(quantity), "the chart's default")
            for resource, number in parsed.get(section, {}).items():
                merged[section][resource] = (number, "")
        for resource, (request, request_origin) in merged["requests"].items():
            if resource not in merged["limits"]:
                continue
            limit, limit_origin = merged["limits"][resource]
            if request > limit:
                origin = f" ({request_origin or limit_origin})" if request_origin or limit_origin else ""
                raise self.fail(
                    f"requests.{resource} is above limits.{resource}{origin}",
                    f"resources.requests.{resource}",
                    "a request must not exceed its limit",
                )


def _type_name(value: Any) -> str:
    value = as_value(value)
    if value is None:
        return "nothing"
    return {dict: "a mapping", list: "a list", str: "a string", bool: "true/false"}.get(
        type(value), type(value).__name__
    )


def parse_worker_config(
    data: Any, path: str, default_resources: dict[str, Any] | None = None, *, allow_empty: bool = False
) -> list[ModelConfig]:
    """Validate parsed worker_config data; `path` is only for messages.

    An empty list is refused unless `allow_empty`: its values hold no models, and applying them
    removes every model's workers.
    """
    if data is None:
        raise ConfigError("is empty: expected a list of models", path=path)
    if not isinstance(data, list):
        raise ConfigError(
            f"must be a list of models, got {_type_name(data)}", path=path,
            hint="each model starts with '- owner: ...'",
        )
    if not data and not allow_empty:
        raise ConfigError(
            "lists no models: its values would remove every model's workers from the cluster", path=path,
            hint="if that is what you want, pass --allow-empty (Cluster(..., allow_empty=True))",
        )
    data = _keys_as_text(data)
    models = [
        _ModelReader(path, index, entry, default_resources or {}).read() for index, entry in enumerate(data)
    ]
    seen_names: dict[tuple[str, str], ModelConfig] = {}
    seen_slugs: dict[str, ModelConfig] = {}
    for model in models:
        name = (model.owner, model.title)
        if name in seen_names:
            raise ConfigError(
                f"is listed twice (entries #{seen_names[name].index + 1} and #{model.index + 1})",
                path=path, model=model.name,
            )
        if model.slug in seen_slugs:
            other = seen_slugs[model.slug]
            raise ConfigError(
                f"collides with {other.name}: both clean to '{model.slug}', so they would share queues and objects",
                path=path, model=model.name, hint="rename one of them",
            )
        if len(model.slug) > MAX_SLUG_LENGTH:
            raise ConfigError(
                f"its cleaned name '{model.slug}' is {len(model.slug)} characters; Kubernetes labels allow "
                f"{MAX_SLUG_LENGTH}", path=path, model=model.name, field="title",
            )
        seen_names[name] = model
        seen_slugs[model.slug] = model
    return models


def load_worker_config(
    path: str | Path, default_resources: dict[str, Any] | None = None, *, allow_empty: bool = False
) -> list[ModelConfig]:
    """Read and validate a worker_config file.

    `default_resources` are the chart's default sim resources, so that a model whose limits fall
    below a default request is caught here rather than by the API server. An empty list of models
    is a ConfigError unless `allow_empty`.
    """
    path = Path(path)
    return parse_worker_config(load_yaml(path, _WorkerConfigLoader), str(path), default_resources,
                               allow_empty=allow_empty)
