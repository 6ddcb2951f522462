"""The `connector` command: set up, serve, and operate a connector from the shell."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import secrets
import signal
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, urlencode

import click

from connector import cli_output as out
from connector.config import load_settings
from connector.errors import ConfigError
from connector.files import open_private, private_dir
from connector.identity import keys as keyfile
from connector.identity.did import did_from_url
from connector.mgmt_client import ApiError, ManagementClient
from connector.policy.decision import Phase

if TYPE_CHECKING:
    from connector.usage.signed import Delivery

CONFIG_NAME = "connector.toml"


def _config_path(value: str | None) -> Path | None:
    value = value or os.environ.get("CONNECTOR_CONFIG")
    return Path(value) if value else None


def _client(ctx: click.Context) -> ManagementClient:
    obj = ctx.obj or {}
    api = obj.get("api") or os.environ.get("CONNECTOR_API_URL")
    key = obj.get("api_key") or os.environ.get("CONNECTOR_API_KEY")
    path = _config_path(obj.get("config"))
    if (not api or not key) and path is not None:
        try:
            settings = load_settings(path)
        except ConfigError as exc:
            raise click.ClickException(str(exc)) from exc
        api = api or f"http://{settings.management_host}:{settings.management_port}"
        key = key or settings.api_key.get_secret_value()
    if not api or not key:
        raise click.UsageError("give --config (or CONNECTOR_CONFIG), or --api and --api-key")
    return ManagementClient(api, key)


def _emit(data: Any) -> None:
    out.emit_json(data)


def _call(ctx: click.Context, method: str, path: str, body: Any = None) -> Any:
    try:
        return _client(ctx).call(method, path, body)
    except ApiError as exc:
        raise click.ClickException(str(exc)) from exc


@click.group(
    epilog='Shell completion: eval "$(_CONNECTOR_COMPLETE=bash_source connector)"'
    " (zsh_source, fish_source for zsh and fish)."
)
@click.version_option(package_name="tdsc-connector", prog_name="connector")
@click.option("--config", "config", help="Connector config file (or CONNECTOR_CONFIG)")
@click.option("--api", help="Management API base URL (or CONNECTOR_API_URL)")
@click.option("--api-key", help="Management API key (or CONNECTOR_API_KEY)")
@click.pass_context
def main(ctx: click.Context, config: str | None, api: str | None, api_key: str | None) -> None:
    """Trusted data space connector (Dataspace Protocol 2025-1)."""
    ctx.obj = {"config": config, "api": api, "api_key": api_key}


# set-up and serving ------------------------------------------------------------------------


@main.command()
@click.option("--dir", "directory", required=True, type=click.Path(path_type=Path))
@click.option("--name", default="connector")
@click.option("--public-host", default="127.0.0.1")
@click.option("--public-port", default=8181, type=int)
@click.option("--public-url", default=None, help="Default: http(s)://HOST:PORT")
@click.option("--management-port", default=8182, type=int)
@click.option("--tls-cert", type=click.Path(path_type=Path), default=None)
@click.option("--tls-key", type=click.Path(path_type=Path), default=None)
@click.option("--dev", is_flag=True, help="Allow plain-HTTP did:web (development only)")
@click.option(
    "--authority",
    "as_authority",
    is_flag=True,
    help="Also serve the data space authority (registry, credentials, status list)",
)
@click.option(
    "--issuer-url", default=None, help="Base URL of the authority issuing our credentials"
)
@click.option("--trusted-issuer", "trusted", multiple=True, help="DID whose credentials we accept")
@click.option("--require-membership", is_flag=True,
              help="Refuse callers without a verified membership credential")  # fmt: skip
def init(
    directory: Path,
    name: str,
    public_host: str,
    public_port: int,
    public_url: str | None,
    management_port: int,
    tls_cert: Path | None,
    tls_key: Path | None,
    dev: bool,
    as_authority: bool,
    issuer_url: str | None,
    trusted: tuple[str, ...],
    require_membership: bool,
) -> None:
    """Create a config file, an Ed25519 key pair and the DID of a new connector."""
    config = directory / CONFIG_NAME
    if config.exists():
        raise click.ClickException(f"{config} exists already; refusing to overwrite it")
    scheme = "https" if tls_cert else "http"
    if scheme == "http" and not dev:
        raise click.ClickException("without --tls-cert/--tls-key, pass --dev for plain HTTP")
    url = (public_url or f"{scheme}://{public_host}:{public_port}").rstrip("/")
    try:
        private_dir(directory)
        keyfile.save(keyfile.generate(), directory / "keys" / "private.pem")
    except OSError as exc:
        raise click.ClickException(_unwritable(directory, exc)) from exc
    lines = [
        f"name = {json.dumps(name)}",
        'data_dir = "."',
        f"public_host = {json.dumps(public_host)}",
        f"public_port = {public_port}",
        f"public_url = {json.dumps(url)}",
        'management_host = "127.0.0.1"',
        f"management_port = {management_port}",
        f"api_key = {json.dumps(secrets.token_urlsafe(24))}",
        f"dev_insecure_http = {'true' if dev else 'false'}",
    ]
    if as_authority:
        lines.append("authority = true")
    if issuer_url:
        lines.append(f"issuer_url = {json.dumps(issuer_url)}")
    if trusted:
        lines.append(f"trusted_issuers = {json.dumps(list(trusted))}")
    if require_membership:
        lines.append("require_membership = true")
    if tls_cert and tls_key:
        lines += [
            f"tls_cert = {json.dumps(str(tls_cert.resolve()))}",
            f"tls_key = {json.dumps(str(tls_key.resolve()))}",
        ]
    try:
        with open_private(config) as fh:
            fh.write(("\n".join(lines) + "\n").encode())
    except OSError as exc:
        raise click.ClickException(_unwritable(directory, exc)) from exc
    try:
        load_settings(config)
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(f"config: {config}\nDID:    {did_from_url(url)}")


def _unwritable(directory: Path, exc: OSError) -> str:
    """What an operator can do about a directory this user may not write (a bind mount
    owned by root, say), instead of a traceback."""
    where = exc.filename or directory
    detail = exc.strerror or str(exc)
    owner = ""
    for existing in (directory, *directory.parents):  # the nearest that exists is the culprit
        try:
            owner = f"; it belongs to uid {existing.stat().st_uid}"
        except FileNotFoundError:
            continue
        except OSError:
            pass
        directory = existing
        break
    return (
        f"cannot open {where}: {detail} (running as uid {os.getuid()}{owner}): "
        f"give this user the directory (chown {os.getuid()} {directory}) or choose another"
    )


def _ensure_key(path: Path) -> None:
    """First start of a container: make the key where the configuration expects it."""
    try:
        path.stat()
        return
    except FileNotFoundError:
        pass
    except OSError as exc:
        raise click.ClickException(_unwritable(path.parent, exc)) from exc
    try:
        keyfile.save(keyfile.generate(), path)
    except FileExistsError:
        return  # another replica made it first
    except OSError as exc:
        raise click.ClickException(_unwritable(path.parent, exc)) from exc
    logging.getLogger("connector").warning(
        "no private key at %s: created a new one (--create-key); this is the connector's "
        "identity, keep the volume",
        path,
    )


@main.command()
@click.option(
    "--create-key",
    is_flag=True,
    help="Create the private key if there is none at the default place (data_dir/keys/"
    "private.pem): a container's first start. A key_file named in the configuration is never "
    "created.",
)
@click.pass_context
def serve(ctx: click.Context, create_key: bool) -> None:
    """Run the connector until SIGINT or SIGTERM."""
    from connector.app import Connector

    logging.basicConfig(
        level=os.environ.get("CONNECTOR_LOG_LEVEL", "INFO"),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    try:
        settings = load_settings(_config_path(ctx.obj.get("config")))
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from exc
    from connector.observability.logs import configure_logging

    configure_logging(settings.log_format)  # JSON from the first line on, asyncio's included
    if create_key and settings.key_file is None:
        _ensure_key(settings.private_key_path)

    async def run() -> None:
        node = Connector(settings)
        try:
            await node.start()
        except ConfigError as exc:
            await node.stop()
            raise click.ClickException(str(exc)) from exc
        except OSError as exc:
            await node.stop()
            if exc.filename:  # a file or directory, not a socket
                raise click.ClickException(_unwritable(settings.data_dir, exc)) from exc
            raise click.ClickException(f"cannot listen: {exc}") from exc
        # through logging: with log_format = "json" this too is a JSON line
        logging.getLogger("connector").info("ready: %s", node.runtime.did if node.runtime else "")
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await stop.wait()
        await node.stop()

    asyncio.run(run())


# datasets ----------------------------------------------------------------------------------


@main.group()
def datasets() -> None:
    """Publish and list datasets."""


@datasets.command("add")
@click.option("--id", "dataset_id", default=None)
@click.option("--title", default="")
@click.option("--description", default="")
@click.option("--file", "file_path", type=click.Path(exists=True, path_type=Path), default=None)
@click.option("--url", default=None, help="Upstream HTTP source instead of a file")
@click.option("--media-type", default=None, help="Default: guessed from the file name")
@click.option(
    "--policy",
    type=click.File("r"),
    default=None,
    help="JSON: one ODRL offer or a list (without it, anyone may use the data)",
)
@click.option(
    "--classification", type=click.Choice(["general", "important", "core"]), default="general"
)
@click.option("--keyword", "keywords", multiple=True, help="dcat:keyword (repeatable)")
@click.option("--theme", "themes", multiple=True, help="dcat:theme (repeatable)")
@click.pass_context
def datasets_add(
    ctx: click.Context,
    dataset_id: str | None,
    title: str,
    description: str,
    file_path: Path | None,
    url: str | None,
    media_type: str | None,
    policy: Any,
    classification: str,
    keywords: tuple[str, ...],
    themes: tuple[str, ...],
) -> None:
    """Publish a dataset with its offers."""
    import mimetypes
    from urllib.parse import urlsplit

    if (file_path is None) == (url is None):
        raise click.UsageError("give exactly one of --file or --url")
    source = (
        {"type": "file", "path": str(file_path.resolve())}
        if file_path
        else {"type": "http", "url": url}
    )
    body: dict[str, Any] = {
        "title": title,
        "description": description,
        "source": source,
        "classification": classification,
        "keywords": list(keywords),
        "themes": list(themes),
    }
    if dataset_id:
        body["id"] = dataset_id
    named = file_path.name if file_path else urlsplit(url or "").path
    media_type = media_type or mimetypes.guess_type(named)[0]
    if media_type:
        body["media_type"] = media_type
    if policy is None:
        click.echo(
            "warning: no --policy: the offer is unrestricted (any consumer may use the data"
            " for any purpose, without limits)",
            err=True,
        )
    else:
        try:
            offers = json.load(policy)
        except ValueError as exc:
            raise click.ClickException(f"--policy is not valid JSON: {exc}") from exc
        body["offers"] = offers if isinstance(offers, list) else [offers]
    _emit(_call(ctx, "POST", "/api/v1/datasets", body))


@datasets.command("list")
@out.json_option
@click.pass_context
def datasets_list(ctx: click.Context, as_json: bool) -> None:
    """Published datasets."""
    out.listing(
        _call(ctx, "GET", "/api/v1/datasets"),
        as_json,
        ["id", "title", "media type", "bytes", "offers"],
        lambda d: [d["id"], d["title"], d.get("media_type"), d.get("size"), len(d["offers"])],
    )


@datasets.command("show")
@click.argument("dataset_id")
@out.json_option
@click.pass_context
def datasets_show(ctx: click.Context, dataset_id: str, as_json: bool) -> None:
    """One dataset: its source, size, hash and offers."""
    d = _call(ctx, "GET", f"/api/v1/datasets/{dataset_id}")
    if as_json:
        return _emit(d)
    out.fields(d, [("id", "id"), ("title", "title"), ("description", "description"),
                   ("media_type", "media type"), ("classification", "classification"),
                   ("source", "source"), ("size", "bytes"), ("sha256", "sha256"),
                   ("keywords", "keywords"), ("themes", "themes")])  # fmt: skip
    for offer in d.get("offers", []):
        click.echo(f"offer {offer.get('@id')}: {json.dumps(offer, ensure_ascii=False)}")


@datasets.command("update")
@click.argument("dataset_id")
@click.option("--title", default=None)
@click.option("--description", default=None)
@click.option("--media-type", default=None)
@click.option("--classification", type=click.Choice(["general", "important", "core"]), default=None)
@click.option("--keyword", "keywords", multiple=True, help="Replaces the keywords (repeatable)")
@click.option("--theme", "themes", multiple=True, help="Replaces the themes (repeatable)")
@click.pass_context
def datasets_update(
    ctx: click.Context,
    dataset_id: str,
    title: str | None,
    description: str | None,
    media_type: str | None,
    classification: str | None,
    keywords: tuple[str, ...],
    themes: tuple[str, ...],
) -> None:
    """Change how a dataset is described; its data and offers stay (publish a new dataset to
    offer other terms)."""
    body: dict[str, Any] = {
        "title": title,
        "description": description,
        "media_type": media_type,
        "classification": classification,
        "keywords": list(keywords) or None,
        "themes": list(themes) or None,
    }
    body = {k: v for k, v in body.items() if v is not None}
    if not body:
        raise click.UsageError("nothing to change: give at least one option")
    d = _call(ctx, "PATCH", f"/api/v1/datasets/{dataset_id}", body)
    click.echo(f"updated {d['id']}: " + ", ".join(sorted(body)))


@datasets.command("delete")
@click.argument("dataset_id")
@click.pass_context
def datasets_delete(ctx: click.Context, dataset_id: str) -> None:
    _call(ctx, "DELETE", f"/api/v1/datasets/{dataset_id}")
    click.echo(f"deleted {dataset_id}")


# catalog -----------------------------------------------------------------------------------


@main.group()
def catalog() -> None:
    """Browse other connectors' catalogs."""


@catalog.command("fetch")
@click.argument("address")
@click.option("--id", "peer_id", default=None, help="Provider DID (default: did:web of ADDRESS)")
@click.option("--table", "as_table", is_flag=True, help="One line per offer instead of JSON")
@click.pass_context
def catalog_fetch(ctx: click.Context, address: str, peer_id: str | None, as_table: bool) -> None:
    """Fetch the DSP catalog of the provider at ADDRESS (its DSP base URL), as JSON."""
    body = {"counterPartyAddress": address}
    if peer_id:
        body["counterPartyId"] = peer_id
    remote = _call(ctx, "POST", "/api/v1/catalog/request", body)
    if not as_table:
        return _emit(remote)
    rows = [
        [d.get("@id"), d.get("title") or d.get("dct:title"), o.get("@id")]
        for d in remote.get("dataset", [])
        for o in d.get("hasPolicy", [])
    ]
    out.table(["dataset", "title", "offer"], rows)


# federated catalog (docs/federated-catalog.md) ---------------------------------------------


@catalog.command("crawl")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def catalog_crawl(ctx: click.Context, as_json: bool) -> None:
    """Crawl every member's catalog now (federated catalog) and print the summary."""
    summary = _call(ctx, "POST", "/api/v1/federated-catalog/crawl")
    if as_json:
        return _emit(summary)
    click.echo(
        f"crawled {summary['members']} members in {summary['durationMs']:.0f} ms:"
        f" {summary['changed']} changed, {summary['unchanged']} unchanged,"
        f" {summary['failed']} failed; {summary['datasets']} datasets indexed"
    )
    for r in summary["results"]:
        if r["error"]:
            click.echo(f"  {r['name'] or r['id']}: {r['error']}")
    for error in summary["sourceErrors"]:
        click.echo(f"  member source: {error}")


@catalog.command("search")
@click.argument("words", nargs=-1)
@click.option("--theme", default=None)
@click.option("--publisher", default=None, help="Member DID or name")
@click.option("--classification", default=None, help="general, important or core")
@click.option("--limit", default=None, type=int)
@click.option("--offset", default=None, type=int)
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def catalog_search(
    ctx: click.Context,
    words: tuple[str, ...],
    theme: str | None,
    publisher: str | None,
    classification: str | None,
    limit: int | None,
    offset: int | None,
    as_json: bool,
) -> None:
    """Search the federated catalog: WORDS in titles, descriptions, keywords and themes."""
    params = {
        "q": " ".join(words) or None,
        "theme": theme,
        "publisher": publisher,
        "classification": classification,
        "limit": limit,
        "offset": offset,
    }
    query = urlencode({k: v for k, v in params.items() if v is not None})
    result = _call(ctx, "GET", "/api/v1/federated-catalog/datasets?" + query)
    if as_json:
        return _emit(result)
    for hit in result["hits"]:
        member = hit["member"]
        click.echo(
            f"{hit['datasetId']}\t{hit['title']}\t{member['name'] or member['id']}"
            f"\t{member['dspEndpoint']}"
        )
    shown = result["offset"] + len(result["hits"])
    click.echo(f"{shown} of {result['total']}, {result['order']} order", err=True)


# negotiations ------------------------------------------------------------------------------


def _timeline(record: dict[str, Any]) -> None:
    click.echo(f"{record['id']}  {record['role']}  {record['state']}")
    if record.get("reason"):
        click.echo("reason: " + "; ".join(record["reason"]))
    if record.get("pending"):
        click.echo("waiting to send: " + ", ".join(record["pending"]))
    for e in record.get("timeline", []):
        status = f" [{e['status']}]" if e.get("status") else ""
        detail = f" - {e['detail']}" if e.get("detail") else ""
        click.echo(f"  {e['at']}  {e['direction']:<8} {e['message_type']}{status}{detail}")


@main.group()
def negotiations() -> None:
    """Negotiate contracts and follow them."""


@negotiations.command("start")
@click.argument("address")
@click.argument("dataset_id")
@click.option("--offer-id", default=None, help="Which offer of the dataset (default: the first)")
@click.option("--id", "peer_id", default=None, help="Provider DID (default: did:web of ADDRESS)")
@click.option("--purpose", default=None, help="The purpose we declare to the provider")
@click.option(
    "--wait", is_flag=True, help="Wait until agreed and print the agreement id, or the reason"
)
@click.option("--timeout", default=60.0, show_default=True, help="Seconds --wait waits")
@click.pass_context
def negotiations_start(
    ctx: click.Context,
    address: str,
    dataset_id: str,
    offer_id: str | None,
    peer_id: str | None,
    purpose: str | None,
    wait: bool,
    timeout: float,
) -> None:
    """Negotiate DATASET_ID with the provider at ADDRESS, using its catalog offer; print the
    negotiation id (with --wait: the agreement id, once agreed)."""
    query = {"counterPartyAddress": address, **({"counterPartyId": peer_id} if peer_id else {})}
    remote = _call(ctx, "POST", "/api/v1/catalog/request", query)
    ds = next((d for d in remote.get("dataset", []) if d.get("@id") == dataset_id), None)
    if ds is None:
        raise click.ClickException(f"dataset {dataset_id} is not in the provider's catalog")
    offers = ds.get("hasPolicy", [])
    offer = next((o for o in offers if offer_id in (None, o.get("@id"))), None)
    if offer is None:
        raise click.ClickException(f"offer {offer_id} not found for {dataset_id}")
    body = {**query, "datasetId": dataset_id, "offer": offer}
    if purpose:
        body["purpose"] = purpose
    record = _call(ctx, "POST", "/api/v1/negotiations", body)
    if not wait:
        return click.echo(record["id"])
    done = _wait(ctx, "negotiations", record["id"], "FINALIZED", timeout)
    click.echo(done.get("agreement_id"))


@negotiations.command("list")
@out.json_option
@click.pass_context
def negotiations_list(ctx: click.Context, as_json: bool) -> None:
    """Negotiations, newest first."""
    out.listing(
        _call(ctx, "GET", "/api/v1/negotiations"),
        as_json,
        ["id", "role", "state", "dataset", "agreement"],
        lambda n: [n["id"], n["role"], n["state"], n["dataset_id"], n.get("agreement_id")],
    )


@negotiations.command("show")
@click.argument("pid")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def negotiations_show(ctx: click.Context, pid: str, as_json: bool) -> None:
    """State, reason, pending messages and the timeline of every message."""
    record = _call(ctx, "GET", f"/api/v1/negotiations/{pid}")
    _emit(record) if as_json else _timeline(record)


def _negotiation_action(name: str, help_text: str) -> None:
    @negotiations.command(name, help=help_text)
    @click.argument("pid")
    @click.pass_context
    def action(ctx: click.Context, pid: str) -> None:
        record = _call(ctx, "POST", f"/api/v1/negotiations/{pid}/{name}")
        click.echo(f"{record['id']}  {record['state']}")


for _name, _help in [
    ("accept", "Accept the provider's offer (consumer)."),
    ("verify", "Countersign and verify the agreement (consumer)."),
    ("agree", "Agree to the current offer (provider)."),
    ("finalize", "Finalize a verified agreement (provider)."),
]:
    _negotiation_action(_name, _help)


@negotiations.command("terminate")
@click.argument("pid")
@click.option("--reason", default="terminated by the operator")
@click.pass_context
def negotiations_terminate(ctx: click.Context, pid: str, reason: str) -> None:
    record = _call(ctx, "POST", f"/api/v1/negotiations/{pid}/terminate", {"reason": reason})
    click.echo(f"{record['id']}  {record['state']}")


def _wait(
    ctx: click.Context, kind: str, pid: str, state: str, timeout: float, show: bool = False
) -> dict[str, Any]:
    """Poll until STATE; a ClickException with the reason if it ends otherwise or times out.
    With `show` on a terminal, a progress bar of the bytes moved (transfers)."""
    client = _client(ctx)
    try:
        if show and out.is_terminal():
            return _wait_with_progress(client, pid, state, timeout)
        return client.wait_state(kind, pid, {state}, timeout)
    except ApiError as exc:
        raise click.ClickException(str(exc)) from exc


def _wait_with_progress(
    client: ManagementClient, pid: str, state: str, timeout: float
) -> dict[str, Any]:
    import time

    from rich.progress import (
        BarColumn,
        DownloadColumn,
        Progress,
        TimeRemainingColumn,
        TransferSpeedColumn,
    )

    columns = (BarColumn(), DownloadColumn(), TransferSpeedColumn(), TimeRemainingColumn())
    with Progress(*columns, transient=True) as bar:
        task = bar.add_task(pid, total=None)
        deadline = time.monotonic() + timeout
        while True:
            record: dict[str, Any] = client.get(f"/api/v1/transfers/{pid}")
            bar.update(task, completed=record["bytes"], total=record.get("bytes_expected"))
            if record["state"] == state:
                return record
            if record["state"] == "TERMINATED":
                return client.wait_state("transfers", pid, {state}, timeout)  # the reason
            left = min(deadline - time.monotonic(), 0.2)
            if left <= 0:
                raise ApiError(
                    0,
                    f"timed out after {timeout:g} s: transfer {pid} is still {record['state']}"
                    f" (wanted {state}); {_moved(record)} moved",
                )
            time.sleep(left)


@negotiations.command("wait")
@click.argument("pid")
@click.option("--state", "state", default="FINALIZED", show_default=True)
@click.option("--timeout", default=60.0, show_default=True, help="Seconds")
@click.pass_context
def negotiations_wait(ctx: click.Context, pid: str, state: str, timeout: float) -> None:
    """Wait until the negotiation reaches STATE; fail with the reason if it ends otherwise."""
    record = _wait(ctx, "negotiations", pid, state, timeout)
    click.echo(f"{pid}  {record['state']}  agreement {record.get('agreement_id')}")


# agreements --------------------------------------------------------------------------------


@main.group()
def agreements() -> None:
    """Signed agreements: what was agreed, provably."""


@agreements.command("list")
@out.json_option
@click.pass_context
def agreements_list(ctx: click.Context, as_json: bool) -> None:
    """Agreements, as provider and as consumer."""
    out.listing(
        _call(ctx, "GET", "/api/v1/agreements"),
        as_json,
        ["id", "dataset", "provider", "consumer"],
        lambda a: [a["id"], a["dataset_id"], a["provider_id"], a["consumer_id"]],
    )


@agreements.command("show")
@click.argument("agreement_id")
@click.pass_context
def agreements_show(ctx: click.Context, agreement_id: str) -> None:
    """The agreement, verified, and what is left of it in one line (on stderr, so the JSON
    on stdout stays machine-readable)."""
    shown = _call(ctx, "GET", f"/api/v1/agreements/{agreement_id}")
    _emit(shown)
    if shown.get("summary"):
        click.echo(shown["summary"], err=True)


# transfers ---------------------------------------------------------------------------------


@main.group()
def transfers() -> None:
    """Move data under an agreement."""


@transfers.command("start")
@click.argument("agreement_id")
@click.option("--push", is_flag=True, help="Provider pushes to us (default: we pull)")
@click.option("--purpose", default=None, help="Default: the purpose declared at negotiation")
@click.pass_context
def transfers_start(ctx: click.Context, agreement_id: str, push: bool, purpose: str | None) -> None:
    body = {"agreementId": agreement_id, "format": "HttpData-PUSH" if push else "HttpData-PULL"}
    if purpose:
        body["purpose"] = purpose
    click.echo(_call(ctx, "POST", "/api/v1/transfers", body)["id"])


@transfers.command("list")
@out.json_option
@click.pass_context
def transfers_list(ctx: click.Context, as_json: bool) -> None:
    """Transfers, as provider and as consumer."""
    out.listing(
        _call(ctx, "GET", "/api/v1/transfers"),
        as_json,
        ["id", "role", "state", "bytes", "agreement"],
        lambda t: [t["id"], t["role"], t["state"], t["bytes"], t["agreement_id"]],
    )


def _moved(record: dict[str, Any]) -> str:
    expected = record.get("bytes_expected")
    if expected:
        share = 100 * record["bytes"] / expected
        return f"{record['bytes']} of {expected} bytes ({share:.0f} %)"
    return f"{record['bytes']} bytes"


@transfers.command("show")
@click.argument("pid")
@out.json_option
@click.pass_context
def transfers_show(ctx: click.Context, pid: str, as_json: bool) -> None:
    """State, bytes moved so far, reason and the timeline of every message."""
    record = _call(ctx, "GET", f"/api/v1/transfers/{pid}")
    if as_json:
        return _emit(record)
    _timeline(record)
    click.echo(f"moved: {_moved(record)}")


def _transfer_action(name: str, help_text: str) -> None:
    @transfers.command(name, help=help_text)
    @click.argument("pid")
    @click.pass_context
    def action(ctx: click.Context, pid: str) -> None:
        record = _call(ctx, "POST", f"/api/v1/transfers/{pid}/{name}")
        click.echo(f"{record['id']}  {record['state']}")


for _name, _help in [
    ("suspend", "Suspend a started transfer."),
    ("resume", "Resume a suspended transfer."),
    ("complete", "Complete a started transfer."),
    ("terminate", "Terminate a transfer."),
]:
    _transfer_action(_name, _help)


@transfers.command("wait")
@click.argument("pid")
@click.option("--state", "state", default="COMPLETED", show_default=True)
@click.option("--timeout", default=120.0, show_default=True, help="Seconds")
@click.pass_context
def transfers_wait(ctx: click.Context, pid: str, state: str, timeout: float) -> None:
    """Wait until the transfer reaches STATE (a progress bar with rate and ETA on a
    terminal); fail with the reason if it ends otherwise, or after --timeout seconds."""
    record = _wait(ctx, "transfers", pid, state, timeout, show=True)
    click.echo(f"{pid}  {record['state']}  {record['bytes']} bytes  sha256 {record.get('sha256')}")


# policies ----------------------------------------------------------------------------------


def _policy_dir(directory: Path | None) -> Path:
    if directory is not None:
        return directory
    return Path(__file__).resolve().parent.parent / "policies"


def _opa_binary() -> str:
    from connector.config import find_opa

    found = find_opa()
    if found is None:
        raise click.ClickException("no opa binary: set OPA_BIN or run `make opa`")
    return found


@main.group()
def policy() -> None:
    """Test, evaluate and follow the Rego usage policies."""


@policy.command("test")
@click.option("--dir", "directory", type=click.Path(path_type=Path), default=None)
@click.option("-v", "--verbose", is_flag=True,
              help="Each test; for a failing one, what it expected and got")  # fmt: skip
def policy_test(directory: Path | None, verbose: bool) -> None:
    """Run the policy library's Rego unit tests (also policies/local/) with the real opa."""
    from connector.policy.point import run_opa_tests
    from connector.policy.testing import run_verbose

    if not verbose:
        passed, output = run_opa_tests(_opa_binary(), _policy_dir(directory))
        click.echo(output)
    else:
        passed, output, failed = run_verbose(_opa_binary(), _policy_dir(directory))
        click.echo(output)
        if failed:
            click.echo("\nfailing tests: expected (the expression) and actual (its values)")
        for failure in failed:
            click.echo(f"  {failure.line()}")
    if not passed:
        raise click.ClickException("policy tests failed")


def _pairs(option: str, items: tuple[str, ...]) -> dict[str, Any]:
    """NAME=VALUE options as a dict; a VALUE that is JSON (true, 3, ["a"]) is read as JSON."""
    out: dict[str, Any] = {}
    for item in items:
        name, sep, value = item.partition("=")
        if not sep or not name.strip():
            raise click.ClickException(f"{option} {item!r}: expected NAME=VALUE")
        try:
            out[name.strip()] = json.loads(value)
        except ValueError:
            out[name.strip()] = value
    return out


@policy.command("eval")
@click.option("--input", "input_file", type=click.File("r"), default=None,
              help="A decision input (JSON), decided locally with the embedded engine")  # fmt: skip
@click.option("--dir", "directory", type=click.Path(path_type=Path), default=None)
@click.option("--dataset", "dataset_id", default=None,
              help="What-if on the running connector: a published dataset")  # fmt: skip
@click.option("--offer-id", default=None, help="Which offer of the dataset (default: the first)")
@click.option("--consumer", default=None, help="The hypothetical consumer's DID")
@click.option("--purpose", default=None, help="The purpose it declares")
@click.option("--phase", type=click.Choice([p.value for p in Phase]), default="transfer",
              show_default=True)  # fmt: skip
@click.option("--credential", "credentials", multiple=True, metavar="CLAIM=VALUE",
              help="A verified claim, e.g. membership=true, region=EU (repeatable)")  # fmt: skip
@click.option("--request", "request_items", multiple=True, metavar="NAME=VALUE",
              help="More of the request, e.g. jurisdiction=EU (repeatable)")  # fmt: skip
@click.option("--usage", "usage_items", multiple=True, metavar="NAME=VALUE",
              help="Usage so far, e.g. transfers=2 bytes=80000000 (repeatable)")  # fmt: skip
@click.option("--json", "as_json", is_flag=True, help="The whole answer, with the input")
@click.pass_context
def policy_eval(
    ctx: click.Context,
    input_file: Any,
    directory: Path | None,
    dataset_id: str | None,
    offer_id: str | None,
    consumer: str | None,
    purpose: str | None,
    phase: str,
    credentials: tuple[str, ...],
    request_items: tuple[str, ...],
    usage_items: tuple[str, ...],
    as_json: bool,
) -> None:
    """Decide one input locally (--input), or ask the running connector what its policy would
    answer a consumer for a published dataset (--dataset, --consumer): not logged."""
    if (input_file is None) == (dataset_id is None):
        raise click.ClickException("give --input FILE, or --dataset ID with --consumer DID")
    if dataset_id is not None:
        if not consumer:
            raise click.ClickException("--dataset needs --consumer DID")
        body: dict[str, Any] = {
            "dataset": dataset_id,
            "consumer": consumer,
            "phase": phase,
            "purpose": purpose,
            "credentials": _pairs("--credential", credentials),
            "request": _pairs("--request", request_items),
            "usage": _pairs("--usage", usage_items),
        }
        if offer_id:
            body["offer_id"] = offer_id
        answer = _call(ctx, "POST", "/api/v1/policy/eval", body)
        if as_json:
            _emit(answer)
            return
        verdict = "ALLOW" if answer["allow"] else "DENY"
        click.echo(
            f"{verdict}  {phase} of {dataset_id} (offer {answer.get('offer_id')}) for {consumer}"
            f"  policy {str(answer.get('policy_version', ''))[:8]}"
        )
        for reason in answer.get("reasons") or []:
            click.echo(f"  reason: {reason}")
        for duty in answer.get("obligations") or []:
            click.echo(f"  obligation: {json.dumps(duty, sort_keys=True)}")
        limits = {k: v for k, v in (answer.get("limits") or {}).items() if v is not None}
        if limits:
            click.echo("  limits: " + ", ".join(f"{k} {v}" for k, v in sorted(limits.items())))
        return
    _policy_eval_local(input_file, directory)


def _policy_eval_local(input_file: Any, directory: Path | None) -> None:
    from pydantic import ValidationError

    from connector.policy.decision import DecisionInput
    from connector.policy.engines import EmbeddedEngine, PolicyError
    from connector.policy.odrl import UndecidablePolicy
    from connector.policy.point import RegoDecisionPoint

    try:
        data = DecisionInput.model_validate(json.load(input_file))
    except (ValueError, ValidationError) as exc:
        raise click.ClickException(f"--input is not a decision input: {exc}") from exc

    async def run() -> dict[str, Any]:
        point = RegoDecisionPoint(EmbeddedEngine(_opa_binary()), _policy_dir(directory))
        await point.load()
        try:
            built = point.build_input(data)
        except UndecidablePolicy as exc:
            raise click.ClickException(str(exc)) from exc
        decision = await point.decide(data)
        out = decision.model_dump()
        out["policy_version"] = point.version
        out["normalised_input"] = built
        return out

    try:
        result = asyncio.run(run())
    except PolicyError as exc:
        raise click.ClickException(exc.detail) from exc
    _emit(result)


@policy.command("status")
@click.pass_context
def policy_status(ctx: click.Context) -> None:
    """The running connector's engine, policy version and last reload error."""
    _emit(_call(ctx, "GET", "/api/v1/policy"))


@policy.command("log")
@click.option("--limit", default=20)
@click.option("--replay", "replay", type=int, default=None, metavar="SEQ",
              help="Decide logged decision SEQ again with today's policies; show both")  # fmt: skip
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def policy_log(ctx: click.Context, limit: int, replay: int | None, as_json: bool) -> None:
    """The decision log: every decision (#SEQ) with its input digest, result, reasons and
    version; the input itself is kept for decision_log_input_days, to --replay it."""
    if replay is not None:
        both = _call(ctx, "POST", f"/api/v1/decisions/{replay}/replay")
        if as_json:
            _emit(both)
            return
        for label, d in (("logged  ", both["logged"]), ("replayed", both["replayed"])):
            verdict = "ALLOW" if d["allow"] else "DENY "
            click.echo(
                f"{label} {verdict} policy {str(d['policy_version'])[:8]}"
                f"  {'; '.join(d['reasons'])}"
            )
        click.echo("the answer changed" if both["changed"] else "the same answer")
        return
    rows = _call(ctx, "GET", f"/api/v1/decisions?limit={limit}")
    if as_json:
        _emit(rows)
        return
    for d in rows:
        verdict = "ALLOW" if d["allow"] else "DENY "
        why = "; ".join(d["reasons"])
        click.echo(
            f"#{d.get('seq')}  {d['at']}  {verdict} {d['phase']:<11}"
            f" {d['engine']}@{d['policy_version'][:8]}"
            f"  in:{d['input_sha256'][:12]}  {d.get('dataset_id') or ''}  {why}"
        )


# offers: templates and plain language ------------------------------------------------------


@main.group()
def offers() -> None:
    """Write offers from templates (policies/templates/) and read them in plain language."""


@offers.command("templates")
def offers_templates() -> None:
    """The offer templates, their values (with defaults) and what each offers."""
    from connector.policy import templates

    try:
        found = templates.available()
    except templates.TemplateError as exc:
        raise click.ClickException(exc.detail) from exc
    for t in found:
        values = " ".join(
            f"--set {p.name}={p.default!r}"
            if p.default is not None
            else f"--set {p.name}=<{p.kind}>"
            for p in t.params
        )
        click.echo(f"{t.name:<22} {t.description}")
        if values:
            click.echo(f"{'':<22} {values}")


@offers.command("new")
@click.option("--template", "template_name", required=True,
              help="A template name (`connector offers templates`) or a template file")  # fmt: skip
@click.option("--set", "assignments", multiple=True, metavar="NAME=VALUE",
              help="A template value, e.g. --set volume='100 MB'")  # fmt: skip
@click.option("--out", type=click.File("w"), default="-", help="Offer file (default stdout)")
def offers_new(template_name: str, assignments: tuple[str, ...], out: Any) -> None:
    """Fill a template into an ODRL offer for `datasets add --policy FILE`."""
    from connector.errors import BadRequest
    from connector.policy import templates
    from connector.policy.explain import explain

    values: dict[str, str] = {}
    for item in assignments:
        name, sep, value = item.partition("=")
        if not sep or not name.strip():
            raise click.ClickException(f"--set {item!r}: expected NAME=VALUE")
        values[name.strip()] = value
    try:
        offer = templates.fill(templates.find(template_name), values)
        summary = explain(offer)
    except BadRequest as exc:
        raise click.ClickException(exc.detail) from exc
    out.write(json.dumps(offer, indent=2) + "\n")
    click.echo(summary, err=True)


@offers.command("explain")
@click.argument("offer_file", type=click.File("r"), required=False)
@click.option("--dataset", "dataset_id", default=None,
              help="Instead of a file: a published dataset's offers")  # fmt: skip
@click.pass_context
def offers_explain(ctx: click.Context, offer_file: Any, dataset_id: str | None) -> None:
    """An offer file (one ODRL offer or a list), or a published dataset's offers, in plain
    language."""
    from connector.errors import BadRequest
    from connector.policy.explain import explain

    if (offer_file is None) == (dataset_id is None):
        raise click.ClickException("give an offer FILE or --dataset ID")
    if dataset_id is not None:
        data = _call(ctx, "GET", "/api/v1/datasets/" + quote(dataset_id, safe=""))["offers"]
    else:
        try:
            data = json.load(offer_file)
        except ValueError as exc:
            raise click.ClickException(f"{offer_file.name} is not valid JSON: {exc}") from exc
    items = data if isinstance(data, list) else [data]
    for i, offer in enumerate(items):
        if not isinstance(offer, dict):
            raise click.ClickException(f"offer {i + 1} is not a JSON object")
        try:
            text = explain(offer)
        except BadRequest as exc:
            raise click.ClickException(exc.detail) from exc
        label = offer.get("@id") or (f"offer {i + 1}" if len(items) > 1 else "")
        click.echo(f"{label}: {text}" if label else text)


# metering and billing ----------------------------------------------------------------------


@main.group()
def metering() -> None:
    """Signed metering chains: export them, verify them offline."""


@metering.command("export")
@click.option("--agreement", "agreement_id", required=True)
@click.option("--out", type=click.File("w"), default="-", help="JSON Lines file (default stdout)")
@click.pass_context
def metering_export(ctx: click.Context, agreement_id: str, out: Any) -> None:
    """Write the agreement's chain: a header line, then one signed record per line."""
    data = _call(ctx, "GET", f"/api/v1/agreements/{agreement_id}/metering")
    out.write(json.dumps(data["header"], sort_keys=True) + "\n")
    for line in data["chain"]:
        out.write(json.dumps(line, sort_keys=True) + "\n")


@metering.command("verify")
@click.argument("chain_file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--provider-key", type=click.Path(exists=True, path_type=Path), required=True,
              help="the provider's DID document or public JWK (JSON)")  # fmt: skip
@click.option("--consumer-key", type=click.Path(exists=True, path_type=Path), required=True,
              help="the consumer's DID document or public JWK (JSON)")  # fmt: skip
@click.option("--head", "head_files", multiple=True,
              type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="a chain head signed by both parties, or the other party's export holding"
                   " one: the chain must be at least that long (repeatable)")  # fmt: skip
@click.option(
    "--json",
    "as_json",
    is_flag=True,
    help="one JSON document: findings and each transfer's receipted byte ranges",
)
def metering_verify(
    chain_file: Path,
    provider_key: Path,
    consumer_key: Path,
    head_files: tuple[Path, ...],
    as_json: bool,
) -> None:
    """Check a chain offline; exit 1 and list every altered, dropped, reordered, inserted or
    unreceipted record, and a chain shorter than a head both parties signed. Also shows which
    bytes of each transfer receipted records cover (what may be billed)."""
    from connector.metering.verify import (
        ChainFileError,
        check_distinct,
        key_document,
        read_chain,
        read_head,
        verify_chain,
    )

    try:
        header, lines = read_chain(chain_file)
        provider_doc = key_document(provider_key, str(header.get("provider")))
        consumer_doc = key_document(consumer_key, str(header.get("consumer")))
        check_distinct(provider_doc, consumer_doc)
        given = [(f"the head in {path}", read_head(path)) for path in head_files]
        result = verify_chain(header, lines, provider_doc, consumer_doc, given)
    except ChainFileError as exc:
        raise click.ClickException(exc.detail) from exc
    report = result.report()
    if as_json:
        _emit(report)
        sys.exit(0 if result.ok else 1)
    for finding in result.findings:
        click.echo(finding.text())
    for transfer, cover in report["transfers"].items():
        ranges = ", ".join(f"[{a}, {b})" for a, b in cover["receipted"]) or "none"
        line = f"transfer {transfer}: {cover['receipted_bytes']} bytes receipted: {ranges}"
        if cover["unreceipted"]:
            line += "; unreceipted: " + ", ".join(f"[{a}, {b})" for a, b in cover["unreceipted"])
        click.echo(line)
    if not result.ok:
        click.echo(f"chain of {header.get('agreement')}: {len(result.findings)} problem(s)")
        sys.exit(1)
    click.echo(
        f"chain of {header.get('agreement')} verifies: {len(result.records)} records,"
        f" {report['bytes_metered']} bytes metered, every record signed by the provider and"
        f" receipted by the consumer; head {header.get('head')}"
    )


@main.group()
def billing() -> None:
    """Invoices computed from the countersigned metering chain."""


@billing.command("invoice")
@click.option("--agreement", "agreement_id", required=True)
@click.option("--period", required=True, help="YYYY-MM")
@click.option("--format", "fmt", type=click.Choice(["json", "csv"]), default="json")
@click.pass_context
def billing_invoice(ctx: click.Context, agreement_id: str, period: str, fmt: str) -> None:
    """The invoice for one month: line items, disputed windows, the chain head it relies on."""
    from connector.billing.invoice import to_csv

    bill = _call(ctx, "GET", f"/api/v1/agreements/{agreement_id}/invoice?period={period}")
    if fmt == "csv":
        click.echo(to_csv(bill), nl=False)
    else:
        _emit(bill)


# usage control -----------------------------------------------------------------------------


@agreements.command("terminate")
@click.argument("agreement_id")
@click.option("--reason", required=True, help="Why: sent to the consumer, shown in its refusals")
@click.pass_context
def agreements_terminate(ctx: click.Context, agreement_id: str, reason: str) -> None:
    """End an agreement (provider): transfers stop, the consumer stops using and deletes."""
    record = _call(ctx, "POST", f"/api/v1/agreements/{agreement_id}/terminate", {"reason": reason})
    click.echo(f"{record['id']}  terminated at {record['terminated_at']}: {reason}")


@main.command("use")
@click.argument("agreement_id")
@click.option("--purpose", required=True, help="What the data is used for (decided by policy)")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Write the data here (default: stdout)")  # fmt: skip
@click.pass_context
def use(ctx: click.Context, agreement_id: str, purpose: str, out: Path | None) -> None:
    """Use data received under an agreement (consumer): the policy decides, a signed use
    record is written, and the data is written to --out."""
    from urllib.parse import quote

    path = f"/api/v1/agreements/{agreement_id}/data?purpose={quote(purpose)}"
    try:
        if out is None:
            headers = _client(ctx).download(path, sys.stdout.buffer)
        else:
            part = out.with_name(out.name + ".part")  # --out appears only when complete
            try:
                with part.open("wb") as fh:
                    headers = _client(ctx).download(path, fh)
                part.replace(out)
            finally:
                part.unlink(missing_ok=True)
    except ApiError as exc:
        raise click.ClickException(str(exc)) from exc
    except OSError as exc:
        raise click.ClickException(f"cannot write {out}: {exc}") from exc
    deadline = headers.get("X-Delete-By")
    click.echo(
        f"use {headers.get('X-Use-Number')} of {agreement_id} for {purpose!r}"
        + (f"; the data will be deleted by {deadline}" if deadline else ""),
        err=True,
    )


@main.group()
def uses() -> None:
    """Signed records of every use of received data."""


@uses.command("list")
@click.argument("agreement_id")
@out.json_option
@click.pass_context
def uses_list(ctx: click.Context, agreement_id: str, as_json: bool) -> None:
    """Every use of the data received under AGREEMENT_ID, and whether it was reported."""
    data = _call(ctx, "GET", f"/api/v1/agreements/{agreement_id}/uses")
    if as_json:
        return _emit(data)
    out.table(
        ["use", "at", "purpose", "reported"],
        [
            [
                line["record"]["seq"] + 1,
                line["record"]["at"],
                line["record"]["purpose"],
                line.get("reported_at") or "not reported",
            ]
            for line in data["uses"]
        ],
    )


@main.group()
def deletions() -> None:
    """Deletion duties: pending, fulfilled (with a signed receipt) or overdue."""


@deletions.command("list")
@click.option("--state", type=click.Choice(["pending", "fulfilled", "overdue"]), default=None)
@click.option("--agreement", "agreement_id", default=None)
@out.json_option
@click.pass_context
def deletions_list(
    ctx: click.Context, state: str | None, agreement_id: str | None, as_json: bool
) -> None:
    """Deletion duties; WHEN is the deadline, or the time it was fulfilled."""
    query = {k: v for k, v in {"state": state, "agreement": agreement_id}.items() if v}
    out.listing(
        _call(ctx, "GET", "/api/v1/deletions" + (f"?{urlencode(query)}" if query else "")),
        as_json,
        ["id", "role", "state", "when", "agreement"],
        lambda d: [
            d["id"],
            d["role"],
            d["state"],
            d["fulfilled_at"] or d["deadline"],
            d["agreement_id"],
        ],
    )


@deletions.command("show")
@click.argument("duty_id")
@click.pass_context
def deletions_show(ctx: click.Context, duty_id: str) -> None:
    """The duty, its history and its receipt, with the receipt verified again."""
    _emit(_call(ctx, "GET", f"/api/v1/deletions/{duty_id}"))


@deletions.command("export")
@click.argument("duty_id")
@click.option("--out", type=click.File("w"), default="-", help="JSON file (default stdout)")
@click.pass_context
def deletions_export(ctx: click.Context, duty_id: str, out: Any) -> None:
    """The signed receipt ({record, signature}), for `deletions verify` elsewhere."""
    duty = _call(ctx, "GET", f"/api/v1/deletions/{duty_id}")
    if not duty.get("receipt"):
        raise click.ClickException(f"deletion {duty_id} has no receipt yet ({duty['state']})")
    doc = {"record": duty["receipt"], "signature": duty["signature"]}
    if duty.get("delivered_at"):
        # the provider's own record of the copy: `deletions verify` checks the receipt names it
        doc["delivered"] = {
            "bytes": duty.get("delivered_bytes") or 0,
            "sha256": duty.get("delivered_sha256"),
            "at": duty["delivered_at"],
        }
    out.write(json.dumps(doc) + "\n")


def _delivery(recorded: Any, sha256: str | None, size: int | None) -> Delivery | None:
    """The delivered copy a receipt must name: the export's record, or the options."""
    from connector.model.usage import parse_time
    from connector.usage.signed import Delivery

    known = recorded if isinstance(recorded, dict) else {}
    if size is None and not isinstance(known.get("bytes"), int):
        return None
    at = known.get("at")
    try:
        when = parse_time(at) if isinstance(at, str) else None
    except ValueError as exc:
        raise click.ClickException(
            f"the delivery record's time is not a time stamp: {at!r}"
        ) from exc
    return Delivery(
        size if size is not None else int(known["bytes"]),
        sha256 if sha256 is not None else known.get("sha256"),
        when,
    )


@deletions.command("verify")
@click.argument("receipt_file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--consumer-key", type=click.Path(exists=True, path_type=Path), required=True,
              help="the consumer's DID document or public JWK (JSON)")  # fmt: skip
@click.option(
    "--sha256",
    "delivered_sha256",
    default=None,
    help="SHA-256 of the copy delivered (default: the export's delivery record)",
)
@click.option(
    "--bytes",
    "delivered_bytes",
    type=int,
    default=None,
    help="size in bytes of the copy delivered (default: the export's delivery record)",
)
def deletions_verify(
    receipt_file: Path,
    consumer_key: Path,
    delivered_sha256: str | None,
    delivered_bytes: int | None,
) -> None:
    """Check a deletion receipt offline; exit 1 if it is altered, not the consumer's, or does
    not name the delivered copy (its bytes and SHA-256) with a date after the delivery."""
    import time

    from connector.metering.verify import ChainFileError, key_document
    from connector.model.usage import RECEIPT_TYPE
    from connector.usage.signed import RecordRefused, check, check_deleted_copy

    try:
        doc = json.loads(receipt_file.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise click.ClickException(f"cannot read {receipt_file}: {exc}") from exc
    record = doc.get("record") if isinstance(doc, dict) else None
    if not isinstance(record, dict):
        raise click.ClickException(f"{receipt_file} holds no receipt ({{record, signature}})")
    consumer = str(record.get("consumer"))
    try:
        key = key_document(consumer_key, consumer)
        check(RECEIPT_TYPE, record, doc.get("signature"), consumer, key, {})
        check_deleted_copy(
            record, _delivery(doc.get("delivered"), delivered_sha256, delivered_bytes), time.time()
        )
    except ChainFileError as exc:
        raise click.ClickException(exc.detail) from exc
    except RecordRefused as exc:
        click.echo(f"receipt does not verify: {exc.detail}")
        sys.exit(1)
    what = "; ".join(
        f"{d.get('file')} ({d.get('bytes')} bytes, sha256 {d.get('sha256')})"
        for d in record.get("deleted") or []
    )
    click.echo(
        f"receipt verifies: {consumer} deleted {what or 'no copy (none was left)'} of"
        f" {record.get('dataset')} under agreement {record.get('agreement')} at"
        f" {record.get('deleted_at')} (deadline {record.get('deadline')}): {record.get('reason')}"
    )


# data space membership -----------------------------------------------------------------------


def _participant_path(did: str) -> str:
    from urllib.parse import quote

    return f"/api/v1/authority/participants/{quote(did, safe='')}"


@main.group()
def authority() -> None:
    """Data space authority: onboard participants, revoke them, show the registry."""


@authority.command("onboard")
@click.argument("did")
@click.option("--name", required=True)
@click.option("--organisation", required=True)
@click.option("--role", "roles", multiple=True, help="A role claim (repeatable)")
@click.option("--region", default=None)
@click.option("--dsp-endpoint", default=None, help="Default: from the participant's DID document")
@click.option("--valid-seconds", type=float, default=None, help="Credential validity")
@click.pass_context
def authority_onboard(
    ctx: click.Context,
    did: str,
    name: str,
    organisation: str,
    roles: tuple[str, ...],
    region: str | None,
    dsp_endpoint: str | None,
    valid_seconds: float | None,
) -> None:
    """Register participant DID; it can then request its membership credentials."""
    body: dict[str, Any] = {"id": did, "name": name, "organisation": organisation}
    body |= {"roles": list(roles), "region": region, "dspEndpoint": dsp_endpoint}
    body |= {"validSeconds": valid_seconds}
    _emit(_call(ctx, "POST", "/api/v1/authority/participants", body))


@authority.command("participants")
@out.json_option
@click.pass_context
def authority_participants(ctx: click.Context, as_json: bool) -> None:
    """The registry: every participant with its status, organisation, roles and region."""
    out.listing(
        _call(ctx, "GET", "/api/v1/authority/participants"),
        as_json,
        ["id", "status", "organisation", "roles", "region"],
        lambda p: [
            p["id"],
            p["status"],
            p["organisation"],
            ",".join(p["roles"]) or "-",
            p["region"],
        ],
    )


@authority.command("show")
@click.argument("did")
@click.pass_context
def authority_show(ctx: click.Context, did: str) -> None:
    _emit(_call(ctx, "GET", _participant_path(did)))


@authority.command("revoke")
@click.argument("did")
@click.option("--reason", default="revoked by the data space authority")
@click.pass_context
def authority_revoke(ctx: click.Context, did: str, reason: str) -> None:
    """Revoke DID's credentials: its status list bit is set, verifiers refuse it."""
    _emit(_call(ctx, "POST", _participant_path(did) + "/revoke", {"reason": reason}))


@authority.command("reinstate")
@click.argument("did")
@click.pass_context
def authority_reinstate(ctx: click.Context, did: str) -> None:
    _emit(_call(ctx, "POST", _participant_path(did) + "/reinstate"))


@main.group()
def credentials() -> None:
    """This connector's verifiable credentials (from the authority at issuer_url)."""


def _credential_state(c: dict[str, Any]) -> str:
    status = c.get("status", "valid")
    if status == "revoked":
        return "revoked"
    if c["expired"]:
        return "expired"
    if status != "valid":
        return f"status {status}; until {c['expiresAt']}"
    return f"valid until {c['expiresAt']}"


@credentials.command("list")
@out.json_option
@click.pass_context
def credentials_list(ctx: click.Context, as_json: bool) -> None:
    """Our credentials: valid, expired, or revoked by the issuer (its status list, asked now)."""
    out.listing(
        _call(ctx, "GET", "/api/v1/credentials"),
        as_json,
        ["type", "issuer", "state", "claims"],
        lambda c: [c["type"], c["issuer"], _credential_state(c), c["claims"]],
    )


@credentials.command("request")
@click.pass_context
def credentials_request(ctx: click.Context) -> None:
    """Ask the authority for our credentials now (they are also renewed automatically)."""
    for c in _call(ctx, "POST", "/api/v1/credentials/request"):
        click.echo(f"{c['type']}\t{c['issuer']}\tvalid until {c['expiresAt']}")
