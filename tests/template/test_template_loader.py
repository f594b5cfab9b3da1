"""The CloudFormation-aware YAML loader and the intrinsic-function resolver."""

from __future__ import annotations

from typing import Any

import pytest

from infra.sam.template import (
    NO_VALUE,
    Resolver,
    TemplateError,
    UnresolvedReference,
    function_environment,
    loads,
)


def test_short_tags_become_their_long_form() -> None:
    # GIVEN every short tag CloudFormation knows
    text = """
    A: !Ref Thing
    B: !GetAtt Queue.Arn
    C: !GetAtt Db.Endpoint.Address
    D: !Sub "arn:${AWS::Partition}:x"
    E: !Sub ["${X}-y", {X: !Ref Thing}]
    F: !If [Cond, !Ref A, !Ref AWS::NoValue]
    G: !Equals [!Ref P, ""]
    H: !Not [!Condition Cond]
    I: !And [!Condition A, !Condition B]
    J: !Or [!Condition A, !Condition B]
    K: !Select [0, !GetAZs ""]
    L: !Join [",", [a, b]]
    M: !Split [",", "a,b"]
    N: !FindInMap [Map, Key, Value]
    O: !ImportValue Shared
    P: !Base64 text
    Q: !Cidr [10.0.0.0/16, 2, 8]
    """
    # WHEN it is loaded
    data = loads(text)
    # THEN each is the long form CloudFormation documents
    assert data == {
        "A": {"Ref": "Thing"},
        "B": {"Fn::GetAtt": ["Queue", "Arn"]},
        "C": {"Fn::GetAtt": ["Db", "Endpoint.Address"]},
        "D": {"Fn::Sub": "arn:${AWS::Partition}:x"},
        "E": {"Fn::Sub": ["${X}-y", {"X": {"Ref": "Thing"}}]},
        "F": {"Fn::If": ["Cond", {"Ref": "A"}, {"Ref": "AWS::NoValue"}]},
        "G": {"Fn::Equals": [{"Ref": "P"}, ""]},
        "H": {"Fn::Not": [{"Condition": "Cond"}]},
        "I": {"Fn::And": [{"Condition": "A"}, {"Condition": "B"}]},
        "J": {"Fn::Or": [{"Condition": "A"}, {"Condition": "B"}]},
        "K": {"Fn::Select": [0, {"Fn::GetAZs": ""}]},
        "L": {"Fn::Join": [",", ["a", "b"]]},
        "M": {"Fn::Split": [",", "a,b"]},
        "N": {"Fn::FindInMap": ["Map", "Key", "Value"]},
        "O": {"Fn::ImportValue": "Shared"},
        "P": {"Fn::Base64": "text"},
        "Q": {"Fn::Cidr": ["10.0.0.0/16", 2, 8]},
    }


def test_dates_stay_strings() -> None:
    assert loads("AWSTemplateFormatVersion: 2010-09-09")["AWSTemplateFormatVersion"] == "2010-09-09"


def test_a_duplicated_key_is_an_error() -> None:
    # CloudFormation rejects it; plain YAML would silently keep the last one.
    with pytest.raises(TemplateError, match="duplicated key 'Timeout'"):
        loads("Properties:\n  Timeout: 1\n  Timeout: 2\n")


def test_the_top_level_must_be_a_mapping() -> None:
    with pytest.raises(TemplateError):
        loads("- a\n- b\n")


TEMPLATE: dict[str, Any] = loads(
    """
Parameters:
  Name: {Type: String, Default: ""}
  Size: {Type: Number, Default: 3}
  Secret: {Type: String}
Conditions:
  HasName: !Not [!Equals [!Ref Name, ""]]
  Big: !Equals [!Ref Size, 10]
  Either: !Or [!Condition HasName, !Condition Big]
Resources:
  Fn:
    Type: AWS::Serverless::Function
    Properties:
      Environment:
        Variables:
          NAME: !If [HasName, !Ref Name, !Ref AWS::NoValue]
          SIZE: !Ref Size
          QUEUE: !Ref Queue
          ROLE: !GetAtt Role.Arn
          ARN: !Sub "arn:${AWS::Partition}:x:${AWS::Region}:${AWS::AccountId}:${Queue}/${Role.Arn}"
          SUBVARS: !Sub ["${A}-${!Literal}", {A: !Ref Size}]
          JOINED: !Join ["-", [!Select [1, !Split [",", "a,b,c"]], z]]
          FLAG: !If [Either, "yes", "no"]
"""
)


def resolver(**parameters: str) -> Resolver:
    return Resolver(
        TEMPLATE,
        parameters=parameters,
        refs={"Queue": "https://sqs/q"},
        attributes={("Role", "Arn"): "arn:role"},
    )


def test_the_resolver_evaluates_a_functions_environment() -> None:
    # GIVEN parameters left at their defaults
    # WHEN the function's environment is resolved
    env = function_environment(TEMPLATE, "Fn", resolver())
    # THEN refs, attributes, Sub, Join/Select/Split and conditions are evaluated, NoValue drops
    assert env == {
        "SIZE": "3",
        "QUEUE": "https://sqs/q",
        "ROLE": "arn:role",
        "ARN": "arn:aws:x:us-east-1:123456789012:https://sqs/q/arn:role",
        "SUBVARS": "3-${Literal}",
        "JOINED": "b-z",
        "FLAG": "no",
    }


def test_given_parameters_override_defaults_and_flip_conditions() -> None:
    env = function_environment(TEMPLATE, "Fn", resolver(Name="n", Size="10"))
    assert env["NAME"] == "n"
    assert env["SIZE"] == "10"
    assert env["FLAG"] == "yes"


def test_something_not_given_is_an_error_not_a_guess() -> None:
    r = Resolver(TEMPLATE)
    with pytest.raises(UnresolvedReference, match="Queue"):
        r.resolve({"Ref": "Queue"})
    with pytest.raises(UnresolvedReference, match=r"Role\.Arn"):
        r.resolve({"Fn::GetAtt": ["Role", "Arn"]})
    with pytest.raises(UnresolvedReference, match="Secret"):
        r.resolve({"Ref": "Secret"})
    assert r.resolve({"Ref": "AWS::NoValue"}) is NO_VALUE
