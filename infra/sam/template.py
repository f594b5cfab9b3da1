"""Reads template.yaml as plain data: CloudFormation's short-form tags (`!Ref X`, `!GetAtt A.B`,
`!Sub ...`) become their long form (`{"Ref": "X"}`, `{"Fn::GetAtt": ["A", "B"]}`, ...), so tests
and the local stack can walk the template without the SAM CLI."""

from __future__ import annotations

import re
from collections.abc import Hashable, Mapping
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
TEMPLATE = ROOT / "template.yaml"

# Short tag -> long form key. `!Ref` and `!Condition` are not `Fn::` functions.
SHORT_TAGS: dict[str, str] = {
    "!Ref": "Ref",
    "!Condition": "Condition",
    "!GetAtt": "Fn::GetAtt",
    "!Sub": "Fn::Sub",
    "!If": "Fn::If",
    "!Equals": "Fn::Equals",
    "!Not": "Fn::Not",
    "!And": "Fn::And",
    "!Or": "Fn::Or",
    "!Select": "Fn::Select",
    "!Join": "Fn::Join",
    "!Split": "Fn::Split",
    "!FindInMap": "Fn::FindInMap",
    "!ImportValue": "Fn::ImportValue",
    "!Base64": "Fn::Base64",
    "!Cidr": "Fn::Cidr",
    "!GetAZs": "Fn::GetAZs",
    "!Transform": "Fn::Transform",
    "!Length": "Fn::Length",
    "!ToJsonString": "Fn::ToJsonString",
}

_TIMESTAMP = "tag:yaml.org,2002:timestamp"


class TemplateError(ValueError):
    """The template is not valid YAML for CloudFormation (e.g. a duplicated key)."""


class CloudFormationLoader(yaml.SafeLoader):
    """SafeLoader plus the short tags. Dates stay strings (`AWSTemplateFormatVersion:
    2010-09-09` unquoted is a string to CloudFormation) and duplicated keys are an error,
    as they are to CloudFormation, instead of the last one silently winning."""

    yaml_implicit_resolvers = {  # noqa: RUF012 - replaces SafeLoader's table, never mutated
        first: [(tag, regexp) for tag, regexp in resolvers if tag != _TIMESTAMP]
        for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
    }

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[Hashable] = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise TemplateError(f"duplicated key {key!r} {key_node.start_mark}")
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


def _construct_short_tag(loader: yaml.SafeLoader, node: yaml.Node) -> dict[str, Any]:
    name = SHORT_TAGS[node.tag]
    value: Any
    if isinstance(node, yaml.ScalarNode):
        value = loader.construct_scalar(node)
        if name == "Fn::GetAtt":
            # `!GetAtt Resource.Attribute` is `["Resource", "Attribute"]`; the attribute may
            # itself contain dots (`Endpoint.Address`).
            value = str(value).split(".", 1)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    elif isinstance(node, yaml.MappingNode):
        value = loader.construct_mapping(node, deep=True)
    else:  # pragma: no cover - yaml has no other node kinds
        raise TemplateError(f"unexpected node for {node.tag}")
    return {name: value}


for _tag in SHORT_TAGS:
    CloudFormationLoader.add_constructor(_tag, _construct_short_tag)


def loads(text: str) -> dict[str, Any]:
    """Parses a template's text; the top level must be a mapping."""
    data = yaml.load(text, Loader=CloudFormationLoader)  # noqa: S506 - a SafeLoader subclass
    if not isinstance(data, dict):
        raise TemplateError("a template must be a mapping at the top level")
    return data


def load_template(path: Path = TEMPLATE) -> dict[str, Any]:
    return loads(path.read_text(encoding="utf-8"))


def resources_of_type(template: dict[str, Any], resource_type: str) -> dict[str, dict[str, Any]]:
    """The template's resources of one type, by logical ID."""
    return {
        logical_id: resource
        for logical_id, resource in template.get("Resources", {}).items()
        if resource.get("Type") == resource_type
    }


def properties(template: dict[str, Any], logical_id: str) -> dict[str, Any]:
    """A resource's Properties (empty when it has none); KeyError for an unknown resource."""
    resource = template["Resources"][logical_id]
    props = resource.get("Properties", {})
    return props if isinstance(props, dict) else {}


# -- resolving intrinsic functions --------------------------------------------------------------

PSEUDO_PARAMETERS: dict[str, str] = {
    "AWS::AccountId": "123456789012",
    "AWS::Region": "us-east-1",
    "AWS::Partition": "aws",
    "AWS::URLSuffix": "amazonaws.com",
    "AWS::StackName": "batch-canceller",
    "AWS::StackId": "arn:aws:cloudformation:us-east-1:123456789012:stack/batch-canceller/local",
}

_SUB_VARIABLE = re.compile(r"\$\{(?!!)([^}]+)\}")


class UnresolvedReference(LookupError):
    """A value refers to something the resolver was not given (a resource, an attribute)."""


class _NoValue:
    """`AWS::NoValue`: the surrounding key or list item disappears."""

    def __repr__(self) -> str:
        return "AWS::NoValue"


NO_VALUE = _NoValue()


class Resolver:
    """Evaluates intrinsic functions against given values, the way CloudFormation would at
    deploy time: parameters (given, else their Default), pseudo parameters, conditions, and
    what `Ref` / `Fn::GetAtt` of each resource should stand for (the local stack passes the
    names and ARNs of what it provisioned; tests pass placeholders)."""

    def __init__(
        self,
        template: Mapping[str, Any],
        *,
        parameters: Mapping[str, str] | None = None,
        refs: Mapping[str, str] | None = None,
        attributes: Mapping[tuple[str, str], str] | None = None,
        pseudo: Mapping[str, str] | None = None,
    ) -> None:
        self.template = template
        self.parameters = dict(parameters or {})
        self.refs = dict(refs or {})
        self.attributes = dict(attributes or {})
        self.pseudo = {**PSEUDO_PARAMETERS, **(pseudo or {})}

    def resolve(self, value: Any) -> Any:
        """`value` with every intrinsic function evaluated; NO_VALUE items and keys removed."""
        if isinstance(value, list):
            items = [self.resolve(item) for item in value]
            return [item for item in items if item is not NO_VALUE]
        if not isinstance(value, dict):
            return value
        if len(value) == 1:
            ((key, argument),) = value.items()
            if key in {"Ref", "Condition"} or key.startswith("Fn::"):
                return self._function(key, argument)
        resolved = {key: self.resolve(item) for key, item in value.items()}
        return {key: item for key, item in resolved.items() if item is not NO_VALUE}

    def condition(self, name: str) -> bool:
        try:
            expression = self.template["Conditions"][name]
        except KeyError:
            raise UnresolvedReference(f"no condition {name!r}") from None
        return bool(self.resolve(expression))

    def ref(self, name: str) -> Any:
        if name == "AWS::NoValue":
            return NO_VALUE
        if name in self.pseudo:
            return self.pseudo[name]
        declared = self.template.get("Parameters", {})
        if name in self.parameters:
            return self.parameters[name]
        if name in declared:
            if "Default" not in declared[name]:
                raise UnresolvedReference(f"parameter {name!r} has no value and no Default")
            return scalar_string(declared[name]["Default"])
        if name in self.refs:
            return self.refs[name]
        raise UnresolvedReference(f"no value for Ref {name!r}")

    def get_att(self, resource: str, attribute: str) -> str:
        try:
            return self.attributes[(resource, attribute)]
        except KeyError:
            raise UnresolvedReference(f"no value for Fn::GetAtt {resource}.{attribute}") from None

    def _function(self, name: str, argument: Any) -> Any:
        if name == "Ref":
            return self.ref(str(argument))
        if name == "Condition":
            return self.condition(str(argument))
        if name == "Fn::GetAtt":
            resource, attribute = argument if isinstance(argument, list) else argument.split(".", 1)
            return self.get_att(str(resource), str(self.resolve(attribute)))
        if name == "Fn::If":
            condition, when_true, when_false = argument
            return self.resolve(when_true if self.condition(condition) else when_false)
        if name == "Fn::Equals":
            left, right = (scalar_string(self.resolve(item)) for item in argument)
            return left == right
        if name == "Fn::Not":
            return not self.resolve(argument[0])
        if name == "Fn::And":
            return all(self.resolve(item) for item in argument)
        if name == "Fn::Or":
            return any(self.resolve(item) for item in argument)
        if name == "Fn::Sub":
            return self._sub(argument)
        if name == "Fn::Join":
            delimiter, items = argument
            return str(delimiter).join(scalar_string(item) for item in self.resolve(items))
        if name == "Fn::Select":
            index, items = argument
            return self.resolve(items)[int(self.resolve(index))]
        if name == "Fn::Split":
            delimiter, text = argument
            return str(self.resolve(text)).split(str(delimiter))
        raise UnresolvedReference(f"{name} is not supported by this resolver")

    def _sub(self, argument: Any) -> str:
        if isinstance(argument, list):
            text, variables = argument[0], {k: self.resolve(v) for k, v in argument[1].items()}
        else:
            text, variables = argument, {}

        def replace(match: re.Match[str]) -> str:
            name = match.group(1).strip()
            if name in variables:
                return scalar_string(variables[name])
            if "." in name and not name.startswith("AWS::"):
                resource, attribute = name.split(".", 1)
                return self.get_att(resource, attribute)
            return scalar_string(self.ref(name))

        # `${!Literal}` stands for the text `${Literal}`.
        return _SUB_VARIABLE.sub(replace, str(text)).replace("${!", "${")


def scalar_string(value: Any) -> str:
    """A scalar as CloudFormation passes it on: booleans lower case, numbers as written."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def function_environment(
    template: Mapping[str, Any], logical_id: str, resolver: Resolver
) -> dict[str, str]:
    """The environment variables a function would get, resolved (Globals merged in)."""
    global_env = (
        template.get("Globals", {}).get("Function", {}).get("Environment", {}).get("Variables", {})
    )
    props = template["Resources"][logical_id].get("Properties", {})
    own_env = props.get("Environment", {}).get("Variables", {})
    variables = resolver.resolve({**global_env, **own_env})
    return {name: scalar_string(value) for name, value in variables.items()}
