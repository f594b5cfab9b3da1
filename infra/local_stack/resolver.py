"""Evaluates CloudFormation intrinsics in template.yaml against the local stack's resources.

Only what this project's template uses: Ref, Fn::GetAtt, Fn::Sub, Fn::If, Fn::Equals, Fn::Not,
Fn::And, Fn::Or, Fn::Join, Fn::Select and conditions. An unknown reference is an error, so the
local stack cannot quietly drift from the template.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

NO_VALUE = object()
_SUB_VARIABLE = re.compile(r"\$\{([^}!][^}]*)\}")


class ResolveError(ValueError):
    pass


@dataclass
class PhysicalResource:
    """What `!Ref` and `!GetAtt` give for one resource of the local stack."""

    ref: str
    attributes: dict[str, str] = field(default_factory=dict)


@dataclass
class Resolver:
    template: dict[str, Any]
    parameters: dict[str, str]
    pseudo: dict[str, str]
    resources: dict[str, PhysicalResource] = field(default_factory=dict)

    def condition(self, name: str) -> bool:
        conditions = self.template.get("Conditions", {})
        if name not in conditions:
            raise ResolveError(f"unknown condition {name!r}")
        return bool(self.resolve(conditions[name]))

    def resolve(self, value: Any) -> Any:
        if isinstance(value, list):
            resolved = [self.resolve(item) for item in value]
            return [item for item in resolved if item is not NO_VALUE]
        if not isinstance(value, dict):
            return value
        if len(value) == 1:
            ((key, argument),) = value.items()
            handler = _INTRINSICS.get(key)
            if handler is not None:
                return handler(self, argument)
        resolved_map = {key: self.resolve(item) for key, item in value.items()}
        return {key: item for key, item in resolved_map.items() if item is not NO_VALUE}

    def ref(self, name: str) -> Any:
        if name == "AWS::NoValue":
            return NO_VALUE
        if name in self.pseudo:
            return self.pseudo[name]
        if name in self.parameters:
            return self.parameters[name]
        if name in self.resources:
            return self.resources[name].ref
        raise ResolveError(f"!Ref {name}: no such parameter or (locally created) resource")

    def get_att(self, logical_id: str, attribute: str) -> str:
        resource = self.resources.get(logical_id)
        if resource is None or attribute not in resource.attributes:
            raise ResolveError(f"!GetAtt {logical_id}.{attribute}: not available locally")
        return resource.attributes[attribute]

    def sub(self, argument: Any) -> str:
        if isinstance(argument, list):
            text, variables = argument[0], {k: self.resolve(v) for k, v in argument[1].items()}
        else:
            text, variables = argument, {}

        def replace(match: re.Match[str]) -> str:
            name = match.group(1)
            if name in variables:
                return str(variables[name])
            if "." in name and not name.startswith("AWS::"):
                logical_id, attribute = name.split(".", 1)
                return self.get_att(logical_id, attribute)
            return str(self.ref(name))

        return _SUB_VARIABLE.sub(replace, text)


def _if(resolver: Resolver, argument: Any) -> Any:
    name, when_true, when_false = argument
    return resolver.resolve(when_true if resolver.condition(name) else when_false)


def _get_att(resolver: Resolver, argument: Any) -> str:
    if isinstance(argument, str):
        argument = argument.split(".", 1)
    return resolver.get_att(argument[0], argument[1])


_INTRINSICS: dict[str, Any] = {
    "Ref": lambda r, a: r.ref(a),
    "Condition": lambda r, a: r.condition(a),
    "Fn::GetAtt": _get_att,
    "Fn::Sub": lambda r, a: r.sub(a),
    "Fn::If": _if,
    "Fn::Equals": lambda r, a: r.resolve(a[0]) == r.resolve(a[1]),
    "Fn::Not": lambda r, a: not r.resolve(a[0]),
    "Fn::And": lambda r, a: all(r.resolve(item) for item in a),
    "Fn::Or": lambda r, a: any(r.resolve(item) for item in a),
    "Fn::Join": lambda r, a: str(a[0]).join(str(x) for x in r.resolve(a[1])),
    "Fn::Select": lambda r, a: r.resolve(a[1])[int(r.resolve(a[0]))],
}
