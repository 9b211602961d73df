"""Loading connector definitions: YAML files, validated before the server starts.

Each ``<id>.yaml`` is checked twice. First against ``schema.json`` (JSON Schema
2020-12; unknown fields anywhere are errors), then for what a schema cannot say:
the file is named after the connector, tool names are ``<id>.<verb>`` and unique,
every URL placeholder names a required argument or a field the connected account
has, argument schemas are themselves valid JSON Schema and closed
(``additionalProperties: false``), fields that belong to another auth type are
absent, a connector that ``sends_iss`` names its ``issuer``, patterns compile and
strategies exist. Every problem is reported with its file and path, all at once,
so a bad definition is fixed in one pass.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import jsonschema
import yaml

from control_plane.connectors.authorize import FILTERS
from control_plane.connectors.dev_loopback import SWITCH, is_loopback_http, widen_schema_pattern
from control_plane.connectors.model import (
    ApiKeyPlacement,
    AuthSpec,
    ConnectionParam,
    Connector,
    ErrorRule,
    GraphQL,
    HttpMapping,
    Output,
    Pagination,
    RefreshPolicy,
    Revocation,
    TokenHeader,
    Tool,
)
from control_plane.connectors.strategies import STRATEGIES

CATALOG_DIR = Path(__file__).with_name("catalog")
MAX_FILE_BYTES = 512 * 1024
_PLACEHOLDER = re.compile(r"\{([^{}]*)\}")
_OAUTH_ONLY = (
    "authorize_url",
    "token_url",
    "revoke_url",
    "revoke",
    "client_auth",
    "pkce",
    "scope_separator",
    "scope_param",
    "refresh_scopes",
    "authorize_params",
    "token_request_format",
    "token_response_format",
    "sends_iss",
    "issuer",
    "keep_fields",
    "token_header",
    "refresh",
)
# Headers that must never carry a credential (or that the HTTP client owns).
_NOT_CREDENTIAL_HEADERS = frozenset(
    {"cookie", "host", "content-type", "content-length", "transfer-encoding", "proxy-authorization"}
)
_KEY_TYPES = ("api_key", "developer_secret")


class ConnectorDefinitionError(ValueError):
    """One or more definitions are invalid; ``problems`` lists ``file: path: message``."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("invalid connector definitions:\n  " + "\n  ".join(problems))
        self.problems = problems


@dataclass(frozen=True, slots=True)
class Catalog:
    connectors: Mapping[str, Connector]

    def get(self, connector_id: str) -> Connector | None:
        return self.connectors.get(connector_id)

    def __iter__(self) -> Iterator[Connector]:
        return iter(self.connectors.values())

    def __len__(self) -> int:
        return len(self.connectors)


def _format_schema() -> dict[str, Any]:
    text = resources.files("control_plane.connectors").joinpath("schema.json").read_text()
    schema: dict[str, Any] = json.loads(text)
    return schema


def _dev_loopback_schema() -> dict[str, Any]:
    """The format with its two URL types also admitting plain-http loopback URLs."""
    schema = _format_schema()
    for name in ("https_url", "url_template"):
        schema["$defs"][name]["pattern"] = widen_schema_pattern(schema["$defs"][name]["pattern"])
    return schema


_VALIDATOR = jsonschema.Draft202012Validator(_format_schema())
_DEV_LOOPBACK_VALIDATOR = jsonschema.Draft202012Validator(_dev_loopback_schema())


def _path(parts: Iterable[Any]) -> str:
    out = ""
    for p in parts:
        out += f"[{p}]" if isinstance(p, int) else (f".{p}" if out else str(p))
    return out or "(top level)"


def load_catalog(directory: Path | None = None, *, dev_loopback: bool = False) -> Catalog:
    """Every ``*.yaml`` in ``directory`` (default: the shipped catalog), or raise.

    ``dev_loopback`` admits plain-http loopback URLs (:mod:`.dev_loopback`); the
    caller decides whether this is a development deployment. Parsed once per process
    for the same files (name, size, mtime): validating every tool's JSON Schema costs
    about half a second.
    """
    directory = (directory or CATALOG_DIR).resolve()
    stamp = tuple(
        (f.name, f.stat().st_size, f.stat().st_mtime_ns) for f in sorted(directory.glob("*.yaml"))
    )
    # A fresh mapping per caller: connectors are immutable, the mapping is the
    # caller's (tests point one runtime's connector at a sandbox).
    return Catalog(dict(_load(directory, stamp, dev_loopback).connectors))


@functools.lru_cache(maxsize=8)
def _load(directory: Path, stamp: tuple[tuple[str, int, int], ...], dev_loopback: bool) -> Catalog:
    problems: list[str] = []
    connectors: dict[str, Connector] = {}
    files = sorted(directory.glob("*.yaml"))
    if not files:
        raise ConnectorDefinitionError([f"{directory}: no connector definitions (*.yaml)"])
    for file in files:
        found: list[str] = []
        connector = parse_definition(file.name, file.read_bytes(), found, dev_loopback=dev_loopback)
        problems.extend(found)
        if connector is not None:
            connectors[connector.id] = connector
    if problems:
        raise ConnectorDefinitionError(problems)
    return Catalog(connectors)


def parse_definition(
    filename: str, raw: bytes, problems: list[str], *, dev_loopback: bool = False
) -> Connector | None:
    """The connector in ``raw``; problems are appended (None when there are any)."""
    before = len(problems)

    def bad(where: str, message: str) -> None:
        problems.append(f"{filename}: {where}: {message}")

    if len(raw) > MAX_FILE_BYTES:
        bad("(file)", f"larger than {MAX_FILE_BYTES} bytes")
        return None
    try:
        doc = yaml.safe_load(raw)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}" if mark is not None else "(file)"
        bad(where, f"not valid YAML ({getattr(exc, 'problem', None) or type(exc).__name__})")
        return None
    validator = _DEV_LOOPBACK_VALIDATOR if dev_loopback else _VALIDATOR
    for err in sorted(validator.iter_errors(doc), key=lambda e: list(e.absolute_path)):
        message = err.message
        if not dev_loopback and isinstance(err.instance, str) and is_loopback_http(err.instance):
            message += f" (loopback http URLs need {SWITCH}=1, development only)"
        bad(_path(err.absolute_path), message)
    if len(problems) > before:
        return None
    assert isinstance(doc, dict)
    if Path(filename).stem != doc["id"]:
        bad("id", f"must equal the file name ({Path(filename).stem!r})")
    _check_auth(doc, bad)
    _check_tools(doc, bad)
    _check_errors(doc, bad)
    if len(problems) > before:
        return None
    return _build(doc)


def _compiles(pattern: str) -> bool:
    try:
        re.compile(pattern)
    except re.error:
        return False
    return True


def _placeholders(template: str) -> list[str]:
    return _PLACEHOLDER.findall(template)


def _connection_ok(
    where: str, template: str, ph: str, names: set[str], bad: Any, what: str
) -> None:
    """``{connection.<field>}`` or ``{connection.<field>|host}`` names a known field; a
    ``|host`` filter stands for the URL's whole host (``https://{...|host}/...``)."""
    field, _, filter_ = ph.removeprefix("connection.").partition("|")
    if field not in names:
        bad(where, f"{{{ph}}} must name {what}")
    elif filter_ and filter_ not in FILTERS:
        bad(where, f"{{{ph}}}: unknown filter {filter_!r} (known: {', '.join(FILTERS)})")
    elif filter_ and not re.match(rf"https://\{{{re.escape(ph)}\}}(/|$)", template):
        bad(where, f"{{{ph}}} must be the whole host: https://{{{ph}}}/...")


def _check_auth(doc: dict[str, Any], bad: Any) -> None:
    auth = doc["auth"]
    kind = auth["type"]
    params = {p["name"] for p in auth.get("connection_params", [])}
    kept = set(auth.get("keep_fields", []))
    for p in auth.get("connection_params", []):
        if not _compiles(p["pattern"]):
            bad(f"auth.connection_params.{p['name']}.pattern", "is not a valid regex")
    if kind == "oauth2":
        for name in ("authorize_url", "token_url", "client_auth"):
            if name not in auth:
                bad(f"auth.{name}", "is required for oauth2")
        for name in ("authorize_url",):
            for ph in _placeholders(auth.get(name, "")):
                if not ph.startswith("connection.") or ph.split(".", 1)[1] not in params:
                    bad(f"auth.{name}", f"{{{ph}}} must name a connection param")
        for name in ("token_url", "revoke_url"):
            for ph in _placeholders(auth.get(name, "")):
                what = "a connection param or kept field"
                if not ph.startswith("connection."):
                    bad(f"auth.{name}", f"{{{ph}}} must name {what}")
                else:
                    _connection_ok(f"auth.{name}", auth[name], ph, params | kept, bad, what)
        if "revoke" in auth:
            _check_revoke(auth, params | kept, bad)
        if auth.get("sends_iss") and not auth.get("issuer"):
            # RFC 9207 §2.4: the callback compares iss with this value; without it
            # the mix-up defence would be off without a word.
            bad("auth.issuer", "is required when sends_iss is true (RFC 9207)")
        if "api_key" in auth:
            bad("auth.api_key", "is for api_key and developer_secret connectors")
        header = auth.get("token_header", {}).get("name", "")
        if header.lower() in _NOT_CREDENTIAL_HEADERS:
            bad("auth.token_header.name", f"{header!r} cannot carry an access token")
    else:
        for name in _OAUTH_ONLY:
            if name in auth:
                bad(f"auth.{name}", f"is for oauth2 connectors, not {kind}")
        if kind in _KEY_TYPES and "api_key" not in auth:
            bad("auth.api_key", f"is required for {kind}")
        pattern = auth.get("api_key", {}).get("pattern")
        if pattern is not None and not _compiles(pattern):
            bad("auth.api_key.pattern", "is not a valid regex")


def _check_revoke(auth: dict[str, Any], names: set[str], bad: Any) -> None:
    revoke = auth["revoke"]
    if "revoke_url" in auth:
        bad("auth.revoke", "give revoke or revoke_url (RFC 7009), not both")
    for ph in _placeholders(revoke["url"]):
        if ph != "client_id":
            what = "a connection param or kept field, or be {client_id}"
            if not ph.startswith("connection."):
                bad("auth.revoke.url", f"{{{ph}}} must name {what}")
            else:
                _connection_ok("auth.revoke.url", revoke["url"], ph, names, bad, what)
    bearer = revoke.get("auth") == "bearer"
    if bearer and revoke.get("token", "refresh_first") != "access":
        bad("auth.revoke.token", "must be access: with auth bearer the access token is presented")
    if bearer != (revoke.get("body", "form") == "none"):
        bad("auth.revoke.body", "is none exactly when auth is bearer (the token is the bearer)")
    client = revoke.get("auth", "client")
    client = auth.get("client_auth", "client_secret_post") if client == "client" else client
    if client == "client_secret_post" and revoke.get("body", "form") not in ("form", "json"):
        bad("auth.revoke.body", "a client secret goes in a form or json body, never the URL")


def _check_tools(doc: dict[str, Any], bad: Any) -> None:
    auth = doc["auth"]
    params = {p["name"] for p in auth.get("connection_params", [])}
    kept = set(auth.get("keep_fields", []))
    seen: set[str] = set()
    for i, tool in enumerate(doc["tools"]):
        where = f"tools[{i}]"
        name = tool["name"]
        if name in seen:
            bad(f"{where}.name", f"{name!r} is defined twice")
        seen.add(name)
        if name.split(".", 1)[0] != doc["id"]:
            bad(f"{where}.name", f"must start with '{doc['id']}.'")
        schema = tool["input_schema"]
        try:
            jsonschema.Draft202012Validator.check_schema(schema)
        except jsonschema.SchemaError as exc:
            bad(f"{where}.input_schema", f"is not valid JSON Schema: {exc.message}")
            continue
        if schema.get("type") != "object" or schema.get("additionalProperties") is not False:
            bad(f"{where}.input_schema", "must be type object with additionalProperties: false")
        props = schema.get("properties", {})
        required = set(schema.get("required", []))
        if not isinstance(props, dict):
            continue
        url = tool["http"]["url"]
        for ph in _placeholders(url):
            if ph.startswith("connection."):
                what = "a connection param or kept field"
                _connection_ok(f"{where}.http.url", url, ph, params | kept, bad, what)
            elif ph not in props or ph not in required:
                bad(f"{where}.http.url", f"{{{ph}}} must be a required argument")
        for q in tool["http"].get("query", []):
            if q not in props:
                bad(f"{where}.http.query", f"{q!r} is not an argument")
        strategy = tool["http"].get("strategy")
        if strategy is not None and strategy not in STRATEGIES:
            bad(f"{where}.http.strategy", f"unknown strategy {strategy!r}")
        if "graphql" in tool["http"]:
            _check_graphql(where, tool, props, required, bad)
        if "pagination" in tool:
            _check_pagination(where, tool["pagination"], props, bad)
        fields = tool.get("output", {}).get("fields", [])
        for f in fields:
            if any(f.startswith(other + ".") for other in fields):
                bad(f"{where}.output.fields", f"{f!r} is inside another kept field")
        if auth["type"] != "oauth2" and tool["scopes"]:
            bad(f"{where}.scopes", "only oauth2 connectors have provider scopes")


_GRAPHQL_OPERATION = re.compile(r"\s*(query|mutation)\b[^{]*\{", re.S)
_GRAPHQL_VARIABLE = re.compile(r"\$([A-Za-z_][A-Za-z0-9_]*)\s*:\s*([A-Za-z_][A-Za-z0-9_\[\]!\s]*)")


def _check_graphql(
    where: str, tool: dict[str, Any], props: dict[str, Any], required: set[str], bad: Any
) -> None:
    """One query or mutation whose variables are exactly the body arguments: each
    argument is a declared ``$variable``, each non-null (``Type!``) one is required."""
    http = tool["http"]
    if http["method"] != "POST":
        bad(f"{where}.http.method", "must be POST for a graphql tool")
    if http.get("body", "json") != "json" or "strategy" in http:
        bad(f"{where}.http.graphql", "is the body: no body other than json, no strategy")
    document = http["graphql"]["query"]
    head = _GRAPHQL_OPERATION.match(document)
    if head is None:
        bad(f"{where}.http.graphql.query", "must be one query or mutation operation")
        return
    declared = {name: kind.strip() for name, kind in _GRAPHQL_VARIABLE.findall(head.group(0))}
    in_url = set(_placeholders(http["url"])) | set(http.get("query", []))
    for name in props:
        if name not in in_url and name not in declared:
            bad(f"{where}.input_schema.properties.{name}", "is not a variable of the operation")
    for name, kind in declared.items():
        if kind.endswith("!") and name not in required:
            bad(f"{where}.input_schema.required", f"${name} is {kind} in the operation")


def _check_pagination(where: str, paging: dict[str, Any], props: dict[str, Any], bad: Any) -> None:
    """A continuation tool (Dropbox list_folder/continue) may require its cursor."""
    name = paging["cursor_argument"]
    if name not in props:
        bad(f"{where}.pagination.cursor_argument", f"{name!r} is not an argument")
    elif props[name].get("type", "string") != "string":
        bad(f"{where}.pagination.cursor_argument", f"{name!r} must take a string (the cursor)")
    if ("next_cursor" in paging) == ("link_param" in paging):
        bad(f"{where}.pagination", "needs exactly one of next_cursor and link_param")
    if "has_more" in paging and "next_cursor" not in paging:
        bad(f"{where}.pagination.has_more", "goes with next_cursor")


def _check_errors(doc: dict[str, Any], bad: Any) -> None:
    for i, rule in enumerate(doc.get("errors", [])):
        when = rule["when"]
        if set(when) <= {"phase", "status"}:
            bad(f"errors[{i}].when", "must look at the body or headers, not the status alone")
        if any(200 <= s < 300 for s in when.get("status", ())) and "body" not in when:
            # a success body can hold anyone's text (an email, a page): only a
            # structural match on the provider's envelope may turn it into a failure
            bad(f"errors[{i}].when", "a rule for a 2xx answer must match body paths")
        for header, pattern in when.get("header", {}).items():
            if not _compiles(pattern):
                bad(f"errors[{i}].when.header.{header}", "is not a valid regex")
        if rule.get("retry_after") and rule["class"] not in ("rate_limited", "transient"):
            bad(f"errors[{i}].retry_after", "only for rate_limited or transient")


def _build(doc: dict[str, Any]) -> Connector:
    a = doc["auth"]
    refresh = RefreshPolicy(**a["refresh"]) if "refresh" in a else RefreshPolicy()
    key = a.get("api_key")
    auth = AuthSpec(
        type=a["type"],
        authorize_url=a.get("authorize_url", ""),
        token_url=a.get("token_url", ""),
        revoke_url=a["revoke"]["url"] if "revoke" in a else a.get("revoke_url", ""),
        revocation=(
            Revocation(
                method=a["revoke"].get("method", "POST"),
                auth=a["revoke"].get("auth", "client"),
                body=a["revoke"].get("body", "form"),
                token_field=a["revoke"].get("token_field", "token"),
                token=a["revoke"].get("token", "refresh_first"),
                token_type_hint=a["revoke"].get("token_type_hint", True),
                headers=dict(a["revoke"].get("headers", {})),
                explicit=True,
            )
            if "revoke" in a
            else Revocation()
        ),
        client_auth=a.get("client_auth", "client_secret_post"),
        pkce=a.get("pkce", False),
        scope_separator=a.get("scope_separator", " "),
        scope_param=a.get("scope_param", "scope"),
        refresh_scopes=tuple(a.get("refresh_scopes", ())),
        authorize_params=dict(a.get("authorize_params", {})),
        token_request_format=a.get("token_request_format", "form"),
        token_response_format=a.get("token_response_format", "json"),
        sends_iss=a.get("sends_iss", False),
        issuer=a.get("issuer", ""),
        keep_fields=tuple(a.get("keep_fields", ())),
        connection_params=tuple(ConnectionParam(**p) for p in a.get("connection_params", ())),
        api_key=(
            ApiKeyPlacement(key["in"], key["name"], key.get("prefix", ""), key.get("pattern", ""))
            if key
            else None
        ),
        token_header=(
            TokenHeader(a["token_header"]["name"], a["token_header"].get("prefix", ""))
            if "token_header" in a
            else TokenHeader()
        ),
        refresh=refresh,
    )
    tools = tuple(
        Tool(
            name=t["name"],
            description=t["description"],
            input_schema=t["input_schema"],
            scopes=tuple(t["scopes"]),
            destructive=t["destructive"],
            output_trust=t["output_trust"],
            http=HttpMapping(
                method=t["http"]["method"],
                url=t["http"]["url"],
                query=tuple(t["http"].get("query", ())),
                body=t["http"].get("body", "none"),
                headers=dict(t["http"].get("headers", {})),
                strategy=t["http"].get("strategy"),
                graphql=(
                    GraphQL(t["http"]["graphql"]["query"]) if "graphql" in t["http"] else None
                ),
            ),
            pagination=Pagination(**t["pagination"]) if "pagination" in t else None,
            output=Output(
                fields=tuple(t.get("output", {}).get("fields", ())),
                max_bytes=t.get("output", {}).get("max_bytes"),
            ),
        )
        for t in doc["tools"]
    )
    errors = tuple(
        ErrorRule(
            reason=r["reason"],
            error_class=r["class"],
            phase=r["when"].get("phase"),
            status=tuple(r["when"].get("status", ())),
            body=dict(r["when"].get("body", {})),
            body_contains=r["when"].get("body_contains", ""),
            header=dict(r["when"].get("header", {})),
            retry_after=r.get("retry_after"),
            retry_after_header=r.get("retry_after_header", "Retry-After"),
        )
        for r in doc.get("errors", ())
    )
    return Connector(
        id=doc["id"],
        display_name=doc["display_name"],
        auth=auth,
        tools=tools,
        errors=errors,
        description=doc.get("description", ""),
        docs_url=doc.get("docs_url", ""),
        api_base_url=doc.get("api_base_url", ""),
    )
