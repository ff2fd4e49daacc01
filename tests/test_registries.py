"""Contract sweep over every registered component of every kind: declared options that can be read,
checked, described and set from the command line."""
from __future__ import annotations

import pytest

from labelmeta.cli import build_parser, config_from_args
from labelmeta.checks import NAMED_FIELDS
from labelmeta.config import COMPONENTS
from labelmeta.registry import Registry

ENTRIES = [(c, name) for c in COMPONENTS for name in c.registry.names()]


@pytest.mark.parametrize("component, name", ENTRIES, ids=[f"{c.name_field}:{n}" for c, n in ENTRIES])
def test_every_component_declares_options_of_their_own_types(component, name):
    schema = component.registry.schema(name)
    for option in schema.options.values():
        assert option.check(option.default, schema.what) == option.default  # the default has the declared type
    assert schema.resolve({}) == {o: schema.options[o].default for o in schema.options}
    text = component.registry.describe(name)
    assert all(f"  {o} (" in text for o in schema.options)


@pytest.mark.parametrize("component, name", ENTRIES, ids=[f"{c.name_field}:{n}" for c, n in ENTRIES])
def test_every_option_is_a_flag_that_reaches_the_config(component, name):
    schema = component.registry.schema(name)
    for option in schema.options.values():
        if option.default is None:
            continue
        text = ",".join(map(str, option.default)) if isinstance(option.default, tuple) else str(option.default)
        flags = [f"--{component.name_field.replace('_', '-')}", name,
                 f"--{component.flag_prefix}-{option.name.replace('_', '-')}", text]
        config = config_from_args(build_parser().parse_args(["train", *flags]))
        assert getattr(config, component.options_field) == {option.name: option.default}


def test_an_option_without_a_type_or_default_is_refused_at_registration():
    registry = Registry("thing")
    with pytest.raises(TypeError, match="thing 'x': option 'a' needs a type annotation and a default"):
        registry.register("x")(lambda *, a: None)


def test_every_registry_is_a_component_of_the_config():
    import labelmeta

    registries = {id(getattr(labelmeta, n)) for n in ("DATASETS", "MODELS", "LABELS", "LOSSES", "STRATEGIES",
                                                      "LABEL_OPTIMIZERS", "NOISE")}
    assert registries == {id(c.registry) for c in COMPONENTS}
    # the registries whose entries declare no options: a Config field names one entry, no options field
    assert NAMED_FIELDS == {"optimizer": labelmeta.MODEL_OPTIMIZERS}
    assert labelmeta.NOISE.names() == ["asymmetric", "confidence", "file", "instance", "matrix", "none", "symmetric"]
    assert labelmeta.MODEL_OPTIMIZERS.names() == ["adam", "adamw", "sgd"]
    for registry in NAMED_FIELDS.values():
        assert all(not registry.schema(name).options for name in registry.names())


def test_named_fields_are_checked_by_their_registry_and_a_new_entry_is_built():
    """``Config.optimizer`` is a name in a registry: an unknown one is the registry's
    error, a model optimiser registered for a while is checked, flagged and built from the Config's fields."""
    import torch

    from labelmeta import MODEL_OPTIMIZERS, Config
    from labelmeta.build import build_learner, splits_for
    from labelmeta.checks import check_config

    with pytest.raises(ValueError, match="unknown model optimiser 'nesterov'; available: adam, adamw, sgd"):
        check_config(Config(optimizer="nesterov"))

    @MODEL_OPTIMIZERS.register("nesterov")
    def nesterov(params, config):
        """SGD with Nesterov momentum (a test's)."""
        return torch.optim.SGD(params, lr=config.lr, momentum=config.momentum, nesterov=True)

    try:
        config = config_from_args(build_parser().parse_args(["train", "--optimizer", "nesterov", "--momentum", "0.5"]))
        config = config.replace(dataset="digits", model="mlp", strategy="none", labels="one-hot", epochs=1)
        check_config(config)
        optimizer = build_learner(config, splits_for(config)).optimizer
        assert type(optimizer) is torch.optim.SGD
        assert (optimizer.defaults["nesterov"], optimizer.defaults["momentum"], optimizer.defaults["lr"]) == \
            (True, 0.5, config.lr)
    finally:
        MODEL_OPTIMIZERS.unregister("nesterov")
    # the built-in ones read lr, momentum and weight_decay as the dict before them did
    params = [torch.nn.Parameter(torch.zeros(2))]
    config = Config(lr=0.3, momentum=0.7, weight_decay=0.01)
    for name, cls, expected in [("sgd", torch.optim.SGD, dict(lr=0.3, momentum=0.7, weight_decay=0.01)),
                                ("adam", torch.optim.Adam, dict(lr=0.3, weight_decay=0.01)),
                                ("adamw", torch.optim.AdamW, dict(lr=0.3, weight_decay=0.01))]:
        optimizer = MODEL_OPTIMIZERS.build(name, params, config)
        assert type(optimizer) is cls and optimizer.defaults == cls(params, **expected).defaults


def test_every_stored_result_config_still_loads_and_names_registered_entries():
    """The configs stored with the benchmark results (``dataclasses.asdict(Config)``, of earlier versions
    too: ``Config.from_dict``) build a Config whose noise kind, model optimiser, labels and loss (with their
    options) are registered as they were."""
    import dataclasses
    import json
    from pathlib import Path

    from labelmeta import Config
    from labelmeta.config import component_options, upgrade

    def configs(node):
        if isinstance(node, dict):
            if isinstance(node.get("config"), dict) and "optimizer" in node["config"]:
                yield node["config"]
            for value in node.values():
                yield from configs(value)
        elif isinstance(node, list):
            for value in node:
                yield from configs(value)

    seen = set()
    for path in sorted((Path(__file__).resolve().parents[1] / "benchmarks" / "results").glob("*.json")):
        for stored in configs(json.loads(path.read_text())):
            config = Config.from_dict(stored)
            written = dataclasses.asdict(config)
            upgraded = upgrade(stored)
            assert {k: written[k] for k in upgraded} == upgraded  # loads, and writes back what it read
            for name, registry in NAMED_FIELDS.items():
                assert getattr(config, name) in registry, (path.name, name)
            for component in COMPONENTS:
                if component.name_field in ("labels", "loss", "noise"):
                    component_options(config, component)  # class-temperature's stored options among them
            seen.add((config.noise, config.optimizer, config.labels))
    assert {"symmetric", "asymmetric", "none"} <= {s[0] for s in seen} and ("none", "sgd", "class-temperature") in seen
