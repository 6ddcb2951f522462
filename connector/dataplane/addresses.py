"""DataAddresses: the forms we write, and the endpoint we read from a peer's.

Two dialects meet here. Ours (and the DSP specification's example) puts the URL in
`endpoint` and the token in the `authorization` endpoint property, sent as a bearer token.
Eclipse EDC reads only `endpointType` and `endpointProperties` (DSP's `endpoint` is
ignored): the names are EDC IRIs (`https://w3id.org/edc/v0.0.1/ns/endpoint`,
`.../authorization`, sent raw in `Authorization`), and a push destination is EDC's
`HttpData` (`baseUrl`, `path`, `authKey` + `authCode` as one header). We write both, so a
stock EDC peer finds what it reads, and read both, refusing what we cannot serve.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

EDC = "https://w3id.org/edc/v0.0.1/ns/"


class EndpointType(StrEnum):
    HTTP = "https://w3id.org/idsa/v4.1/HTTP"  # DSP's example; our pull address
    HTTP_DATA = "HttpData"  # EDC's http destination (and its format's name)


class Prop(StrEnum):
    """Endpoint property names, unprefixed (ours) or under EDC (EDC's)."""

    ENDPOINT = "endpoint"
    ENDPOINT_TYPE = "endpointType"
    AUTHORIZATION = "authorization"
    AUTH_TYPE = "authType"
    BASE_URL = "baseUrl"
    PATH = "path"
    QUERY_PARAMS = "queryParams"
    METHOD = "method"
    AUTH_KEY = "authKey"
    AUTH_CODE = "authCode"
    SECRET_NAME = "secretName"

    @property
    def edc(self) -> str:
        return EDC + self.value


# what a push may be sent with (EDC's sink: POST unless `method` says otherwise)
PUSH_METHODS = frozenset({"POST", "PUT", "PATCH"})
# an `authKey` names a request header: a token, and none the request itself controls
HEADER_NAME = re.compile(r"^[A-Za-z0-9!#$%&'*+.^_`|~-]{1,64}$")
RESERVED_HEADERS = frozenset(
    {"host", "content-length", "content-type", "transfer-encoding", "connection", "range"}
)


class Unservable(Exception):
    """A DataAddress we cannot use: refused when it arrives, never after accepting it."""

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


@dataclass(frozen=True)
class Endpoint:
    """Where to send (or fetch) the data, and the headers that authorise it."""

    url: str
    headers: dict[str, str] = field(default_factory=dict)
    method: str = "POST"


def _prop(name: str, value: str) -> dict[str, str]:
    return {"@type": "EndpointProperty", "name": name, "value": value}


def pull_address(endpoint: str, token: str) -> dict[str, Any]:
    """Provider: the pull DataAddress of a TransferStartMessage, in both dialects. EDC keeps
    the EDC-named properties as its EDR (`endpoint`, `authorization`, `authType`,
    `endpointType`), which its EDR API hands its client; the unprefixed names are ours."""
    return {
        "@type": "DataAddress",
        "endpointType": EndpointType.HTTP.value,
        "endpoint": endpoint,
        "endpointProperties": [
            _prop(Prop.AUTHORIZATION, token),
            _prop(Prop.AUTH_TYPE, "bearer"),
            _prop(Prop.ENDPOINT.edc, endpoint),
            _prop(Prop.ENDPOINT_TYPE.edc, EndpointType.HTTP.value),
            _prop(Prop.AUTHORIZATION.edc, token),
            _prop(Prop.AUTH_TYPE.edc, "bearer"),
        ],
    }


def push_destination(endpoint: str, token: str) -> dict[str, Any]:
    """Consumer: the push destination of a TransferRequestMessage, in both dialects. An EDC
    provider validates and sends to `HttpData` (`baseUrl`, header `authKey: authCode`), and
    cannot handle the DSP example's HTTP type; ours reads `endpoint` and `authorization`."""
    return {
        "@type": "DataAddress",
        "endpointType": EndpointType.HTTP_DATA.value,
        "endpoint": endpoint,
        "endpointProperties": [
            _prop(Prop.AUTHORIZATION, token),
            _prop(Prop.AUTH_TYPE, "bearer"),
            _prop(Prop.BASE_URL.edc, endpoint),
            _prop(Prop.AUTH_KEY.edc, "Authorization"),
            _prop(Prop.AUTH_CODE.edc, f"Bearer {token}"),
        ],
    }


def properties(address: dict[str, Any]) -> dict[str, str]:
    """The address's string properties by name: its endpoint properties, then any other
    top-level string member (EDC-style properties sent outside `endpointProperties`)."""
    found: dict[str, str] = {}
    for key, value in address.items():
        if key not in ("@type", "endpointProperties") and isinstance(value, str):
            found[key] = value
    listed = address.get("endpointProperties")
    for prop in listed if isinstance(listed, list) else []:
        if isinstance(prop, dict):
            name, value = prop.get("name"), prop.get("value")
            if isinstance(name, str) and isinstance(value, str):
                found[name] = value
    return found


def _get(props: dict[str, str], name: Prop) -> str | None:
    value = props.get(name.value)
    return value if value is not None else props.get(name.edc)


def _join(base: str, path: str | None, query: str | None) -> str:
    """EDC's HttpData URL: `baseUrl`, then `path` (one slash between), then `queryParams`."""
    url = base
    if path:
        url = base.rstrip("/") + "/" + path.lstrip("/")
    if query:
        url += ("&" if "?" in url else "?") + query.lstrip("?&")
    return url


def _type(address: dict[str, Any], props: dict[str, str]) -> str:
    kind = address.get("endpointType") or props.get(EDC + "type") or ""
    return str(kind)


def resolve(address: dict[str, Any], *, push: bool) -> Endpoint:
    """The endpoint a peer's DataAddress names, in either dialect; Unservable if none we
    can use (an unknown type, no URL, auth kept in a vault we cannot read, a bad header or
    method). Whether the URL may be reached is the egress guard's to say, not this."""
    props = properties(address)
    kind = _type(address, props)
    if kind not in {t.value for t in EndpointType}:
        supported = ", ".join(t.value for t in EndpointType)
        raise Unservable(f"endpointType {kind or '(none)'} is not served; supported: {supported}")
    headers: dict[str, str] = {}
    ours = props.get(Prop.AUTHORIZATION.value)
    theirs = props.get(Prop.AUTHORIZATION.edc)
    if ours:
        headers["Authorization"] = f"Bearer {ours}"
    elif theirs:
        headers["Authorization"] = theirs  # EDC's data plane reads the token raw
    key, code = _get(props, Prop.AUTH_KEY), _get(props, Prop.AUTH_CODE)
    if _get(props, Prop.SECRET_NAME) and not code:
        raise Unservable("the credential is named in a vault (secretName), which we cannot read")
    if key and code and not ours:
        if not HEADER_NAME.match(key) or key.lower() in RESERVED_HEADERS:
            raise Unservable(f"authKey {key[:64]!r} is not a header we may send")
        if any(c in code for c in "\r\n\0"):
            raise Unservable("authCode holds a line break")
        headers = {k: v for k, v in headers.items() if k.lower() != key.lower()}
        headers[key] = code
    endpoint = address.get("endpoint")
    url = endpoint if isinstance(endpoint, str) and endpoint else _get(props, Prop.ENDPOINT)
    if not url:
        base = _get(props, Prop.BASE_URL)
        if not base:
            raise Unservable("the DataAddress names no endpoint (neither endpoint nor baseUrl)")
        url = _join(base, _get(props, Prop.PATH), _get(props, Prop.QUERY_PARAMS))
    if not url.lower().startswith(("https://", "http://")):
        raise Unservable("the endpoint must be an http(s) URL")
    method = (_get(props, Prop.METHOD) or "POST").upper() if push else "GET"
    if push and method not in PUSH_METHODS:
        raise Unservable(f"method {method[:16]} is not one a push is sent with")
    return Endpoint(url=url, headers=headers, method=method)
