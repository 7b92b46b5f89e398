"""Load the catalog from the package data (models.yaml, gpus.yaml) and look names up."""

import functools
from collections.abc import Mapping
from importlib import resources
from types import MappingProxyType
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ValidationError

from .errors import UnknownNameError
from .facts import GPUFacts, ModelFacts


class CatalogDataError(RuntimeError):
    """The packaged catalog YAML is malformed (a packaging bug, not user input)."""


def _read(filename: str, section: str) -> dict[str, Any]:
    text = resources.files(__package__).joinpath(filename).read_text(encoding="utf-8")
    data = yaml.safe_load(text)
    if not isinstance(data, dict) or not isinstance(data.get(section), dict):
        raise CatalogDataError(f"{filename}: expected a mapping under {section!r}")
    entries: dict[str, Any] = data[section]
    return entries


_M = TypeVar("_M", bound=BaseModel)


def _build(model: type[_M], filename: str, key: str, entry: dict[str, Any]) -> _M:
    try:
        return model.model_validate({"name": key, **entry})
    except ValidationError as error:
        raise CatalogDataError(f"{filename}: {key}: {error}") from error


@functools.cache
def model_catalog() -> Mapping[str, ModelFacts]:
    """Every catalog model by id, in file order. An entry with `same_as: OTHER` takes the
    facts of OTHER that it does not set itself.

    Raises CatalogDataError if models.yaml is malformed.
    """
    entries = _read("models.yaml", "models")
    models: dict[str, ModelFacts] = {}
    for key, raw in entries.items():
        entry = dict(raw)
        base_key = entry.pop("same_as", None)
        if base_key is not None:
            base = entries.get(base_key)
            if base is None or "same_as" in base:
                raise CatalogDataError(
                    f"models.yaml: {key}: same_as {base_key!r} must name a model without same_as"
                )
            entry = {**base, **entry}
        models[key] = _build(ModelFacts, "models.yaml", key, entry)
    return MappingProxyType(models)


@functools.cache
def gpu_catalog() -> Mapping[str, GPUFacts]:
    """Every catalog GPU by id, in file order. Raises CatalogDataError if gpus.yaml is malformed."""
    entries = _read("gpus.yaml", "gpus")
    return MappingProxyType(
        {key: _build(GPUFacts, "gpus.yaml", key, entry) for key, entry in entries.items()}
    )


def get_model(name: str) -> ModelFacts:
    """The catalog model `name`.

    Raises UnknownNameError (field spec.model.name) listing the catalog's models.
    """
    models = model_catalog()
    if name not in models:
        raise UnknownNameError(
            "spec.model.name",
            "model",
            name,
            models,
            "or describe a custom model in spec.model.facts",
        )
    return models[name]


def get_gpu(name: str) -> GPUFacts:
    """The catalog GPU `name`. Raises UnknownNameError (field spec.gpu.type) listing the GPUs."""
    gpus = gpu_catalog()
    if name not in gpus:
        raise UnknownNameError(
            "spec.gpu.type",
            "GPU type",
            name,
            gpus,
            "or leave it empty for any GPU with enough memory",
        )
    return gpus[name]
