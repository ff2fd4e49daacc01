"""Contract sweep over every registered component of every kind: declared options that can be read,
checked, described and set from the command line."""
from __future__ import annotations

import pytest

from labelmeta.cli import build_parser, config_from_args
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
                                                      "LABEL_OPTIMIZERS")}
    assert registries == {id(c.registry) for c in COMPONENTS}
