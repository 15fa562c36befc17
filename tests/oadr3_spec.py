"""The OpenADR 3.1.0 specification as a judge of what passes between a VEN and the tests' VTN: every
request and every answer is validated against the released OpenAPI definition
(tests/specs/openadr3-3.1.0/openadr3.yaml, the OpenADR Alliance's, Apache 2.0) by openapi-core,
which no one here wrote. A request the specification does not allow is refused with 400 and
recorded; an answer it does not allow is recorded (and still sent: the VEN's handling of it is a
test of its own)."""

from __future__ import annotations

import copy
from functools import cache
from pathlib import Path
from typing import Any

import yaml
from aiohttp import web
from openapi_core import OpenAPI
from openapi_core.contrib.aiohttp import AIOHTTPOpenAPIWebRequest, AIOHTTPOpenAPIWebResponse

SPEC = Path(__file__).resolve().parent / "specs" / "openadr3-3.1.0" / "openadr3.yaml"


@cache
def openapi() -> OpenAPI:
    return OpenAPI.from_dict(document())


@cache
def document() -> dict[str, Any]:
    """The definition, its server made relative (its only one is a mocking service's URL), and its three
    slips mended, each where it is, or this fails:
    - the `targets` of a VEN read `default: null          -`, a string as an array's default, which
      openapi-core's check of the definition refuses;
    - a `ven` is all of `objectMetadata` (objectType one of PROGRAM … VEN) and `BlVenRequest`
      (objectType BL_VEN_REQUEST): no object is both, so no VTN's answer could pass; here the server's
      `ven` has the metadata's objectType (VEN) and the business logic's other fields;
    - a notification's `object` is told apart by its objectType (EVENT …) with no mapping, so by
      OpenAPI's rule it names a schema `EVENT`, which does not exist (they are `event` …): the mapping
      the specification's text means is added."""
    definition: dict[str, Any] = yaml.safe_load(SPEC.read_text())
    definition["servers"] = [{"url": "/"}]
    assert mend_defaults(definition) == 1, "the definition's typo is not where it was: look again"
    schemas = definition["components"]["schemas"]
    assert schemas["ven"]["allOf"][1] == {"$ref": "#/components/schemas/BlVenRequest"}
    assert schemas["BlVenRequest"]["properties"]["objectType"]["enum"] == ["BL_VEN_REQUEST"]
    server_ven = copy.deepcopy(schemas["BlVenRequest"])
    del server_ven["properties"]["objectType"]
    schemas["ven"]["allOf"][1] = server_ven
    discriminator = schemas["notification"]["properties"]["object"]["discriminator"]
    assert discriminator == {"propertyName": "objectType"}
    discriminator["mapping"] = {name.upper(): f"#/components/schemas/{name}"
                                for name in ("program", "report", "event", "subscription", "ven", "resource")}
    return definition


def mend_defaults(node: Any) -> int:
    """Text defaults of arrays made null; how many."""
    mended = 0
    if isinstance(node, dict):
        if node.get("type") == "array" and isinstance(node.get("default"), str):
            node["default"], mended = None, 1
        mended += sum(mend_defaults(value) for value in node.values())
    elif isinstance(node, list):
        mended += sum(mend_defaults(value) for value in node)
    return mended


def errors(error: Exception) -> str:
    """openapi-core's error and the schema errors under it, on one line."""
    causes = [str(e.message) for e in getattr(error.__cause__, "schema_errors", ()) or ()]
    return f"{error}" + (f" ({'; '.join(causes)})" if causes else "")


def notification_violation(body: dict[str, Any]) -> str | None:
    """What a VTN posts to a subscription's callbackUrl, against the specification's `notification`
    (a callback's body, which openapi-core does not check)."""
    from openapi_schema_validator import OAS30Validator

    schema = {"$ref": "#/components/schemas/notification", "components": document()["components"]}
    found = [e.message for e in OAS30Validator(schema).iter_errors(body)]
    return "; ".join(found) or None


def request_violation(request: web.Request, body: bytes) -> str | None:
    try:
        openapi().validate_request(AIOHTTPOpenAPIWebRequest(request, body=body))
    except Exception as error:  # noqa: BLE001 - any of openapi-core's validation errors is a finding
        return errors(error)
    return None


def response_violation(request: web.Request, body: bytes, response: web.StreamResponse) -> str | None:
    if not isinstance(response, web.Response):
        return None
    try:
        openapi().validate_response(AIOHTTPOpenAPIWebRequest(request, body=body), AIOHTTPOpenAPIWebResponse(response))
    except Exception as error:  # noqa: BLE001 - as above
        return errors(error)
    return None
