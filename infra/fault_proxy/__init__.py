"""Fault-injecting, call-counting HTTP reverse proxy for moto server (stdlib only).

Point boto3's ``endpoint_url`` at :attr:`FaultProxy.url`; every request is forwarded
byte-for-byte (headers untouched) to the upstream moto server, counted per AWS operation
("DynamoDB.UpdateItem", "Events.PutEvents", ...) and optionally faulted by :class:`Rule`\\s::

    with FaultProxy(upstream=moto_url) as proxy:
        proxy.add_rule(Rule(operation="Events.PutEvents", action="http_error", times=1))
        ...
        assert proxy.calls["Events.PutEvents"] == 2
"""

from .faults import ACTIONS, Action, Rule
from .operations import Protocol, Request, operation_of, service_of
from .server import FaultProxy

__all__ = [
    "ACTIONS",
    "Action",
    "FaultProxy",
    "Protocol",
    "Request",
    "Rule",
    "operation_of",
    "service_of",
]
