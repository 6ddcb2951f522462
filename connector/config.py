"""Settings: a TOML file, overridden by CONNECTOR_* environment variables, validated once."""

from __future__ import annotations

import difflib
import ipaddress
import os
import shutil
import tomllib
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    SettingsError,
)

from connector.errors import ConfigError

DSP_PATH = "/dsp/2025-1"
MIN_API_KEY_LENGTH = 16


class FederatedMember(BaseModel):
    """One data space member the federated catalog crawls (static list in the settings)."""

    model_config = ConfigDict(extra="forbid")
    dsp: str = Field(description="The member's DSP base URL, e.g. https://host:port/dsp/2025-1")
    did: str | None = Field(None, description="The member's DID; default: did:web of dsp's host")
    name: str = ""

    @field_validator("dsp")
    @classmethod
    def _dsp(cls, value: str) -> str:
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("must be an absolute http(s) URL")
        return value.rstrip("/")


class Settings(BaseSettings):
    """Everything a connector needs to run; see README 'Configuration'."""

    model_config = SettingsConfigDict(env_prefix="CONNECTOR_", extra="forbid")

    name: str = Field("connector", description="Human-readable participant name")
    data_dir: Path = Field(description="Holds the SQLite file, keys and received data")
    key_file: Path | None = Field(
        None, description="Ed25519 private key (PEM); default data_dir/keys/"
    )
    public_host: str = "127.0.0.1"
    public_port: int = Field(8181, ge=0, le=65535)
    public_url: str | None = Field(None, description="Base URL peers use to reach this connector")
    management_host: str = "127.0.0.1"
    management_port: int = Field(8182, ge=0, le=65535)
    api_key: SecretStr = Field(description="Key required in X-Api-Key on the management API")
    tls_cert: Path | None = None
    tls_key: Path | None = None
    ca_file: Path | None = Field(None, description="Extra CA bundle trusted for outgoing HTTPS")
    dev_insecure_http: bool = Field(
        False, description="Development only: resolve did:web over plain HTTP"
    )
    egress_allow: list[str] | None = Field(
        None,
        description="Networks (CIDR), addresses, hosts or host:port that outbound requests may"
        " reach although they are loopback, private or link-local; default: loopback in"
        " development mode (dev_insecure_http), nothing otherwise",
    )
    auto_accept_offers: bool = Field(
        False,
        description="Consumer: accept a provider's counter-offer in a negotiation this connector"
        " started, without an operator; an unsolicited offer always waits for the operator",
    )
    accept_unsigned_agreements: bool = Field(
        False,
        description="Finalize agreements without the peer's signature (providerSignature /"
        " consumerSignature of docs/profile.md), for peers that lack this signature profile;"
        " off: an agreement needs a valid signature of the counterparty. TCK mode implies it",
    )
    max_open_processes_per_peer: int = Field(
        100,
        ge=1,
        description="Negotiations one peer may have open at once that it started (requests to"
        " this provider, offers to this consumer); more are refused with 429",
    )
    retry_base_seconds: float = Field(0.5, gt=0)
    retry_max_seconds: float = Field(30.0, gt=0)
    retry_max_attempts: int = Field(12, ge=1)
    token_ttl_seconds: int = Field(120, ge=5, le=300)
    transfer_token_ttl_seconds: int = Field(900, ge=10)
    chunk_size: int = Field(256 * 1024, ge=1024)
    metering_window_bytes: int = Field(
        64 * 1024 * 1024, ge=1024, description="bytes per signed metering window"
    )
    metering_window_seconds: float = Field(
        10.0, gt=0, description="a window closes after this long even if not full"
    )
    metering_receipt_seconds: float = Field(
        30.0, ge=0, description="push: how long to wait for the consumer's receipts"
    )
    metering_max_disputed_windows: int = Field(
        0,
        ge=0,
        description="provider: how many metering windows of an agreement may be refused, or"
        " left without a receipt longer than metering_receipt_seconds after their stream's last"
        " record, before the policy refuses the consumer new transfers under it",
    )
    deletion_grace_seconds: float = Field(
        60.0,
        ge=0,
        description="provider: how long after a deletion deadline a receipt may arrive before"
        " the deletion is overdue",
    )
    deletion_overdue_blocks_transfers: bool = Field(
        True,
        description="provider: tell the policy about a consumer's overdue deletions (which"
        " transfers they refuse is the policy's overdue_scope, docs/usage-control.md)",
    )
    did_cache_seconds: int = Field(300, ge=0)
    stream_idle_seconds: float = Field(
        60.0,
        gt=0,
        description="provider: a push whose destination takes nothing for this long is cut"
        " (and retried)",
    )
    transfer_idle_seconds: float = Field(
        86400.0,
        ge=1,
        description="a transfer no party has touched for this long (no message, no state"
        " change, no data moving, nothing in the outbox) is ended TERMINATED on both sides with"
        " the reason 'no activity for N s' (connector/dsp/watchdog.py)",
    )
    negotiation_idle_seconds: float = Field(
        86400.0,
        ge=1,
        description="a negotiation no party has touched for this long (no message, no state"
        " change, nothing in the outbox; e.g. an offer no operator answered) is ended"
        " TERMINATED on both sides with the reason 'no activity for N s'",
    )
    receive_free_disk_bytes: int = Field(
        256 * 1024 * 1024,
        ge=0,
        description="consumer: free disk space kept when receiving data; a push that would leave"
        " less is refused (413), a pull is cut and retried like a full disk"
        " (receive_retry_attempts); below it /readyz answers 503 (disk)",
    )
    receive_retry_attempts: int = Field(
        5,
        ge=1,
        description="consumer: attempts of a pull whose data cannot be written (no space left on"
        " the disk, or less than receive_free_disk_bytes) before the transfer is terminated"
        " with the reason; retried with backoff (retry_base_seconds), resuming from what the"
        " file holds (at most retry_max_attempts)",
    )
    did_cache_entries: int = Field(
        1000, ge=0, description="How many resolved DIDs (and recent failures) are kept, LRU"
    )
    did_negative_cache_seconds: float = Field(
        30.0,
        ge=0,
        description="How long a DID that could not be resolved is not tried again",
    )
    did_resolutions_per_host: int = Field(
        4, ge=1, le=64, description="Concurrent did:web resolutions per DID host (host:port)"
    )
    # both listeners: slow or greedy clients (docs/security.md) ----------------------------------
    http_header_timeout_seconds: float = Field(
        30.0,
        gt=0,
        description="A connection must deliver a request's headers within this long of opening"
        " (or of the previous answer, for keep-alive); otherwise it is closed",
    )
    http_body_timeout_seconds: float = Field(
        30.0,
        gt=0,
        description="A request body that sends nothing for this long while the connector waits"
        " for it is cut (408)",
    )
    max_connections_per_client: int = Field(
        256,
        ge=0,
        description="Open connections one client address may hold on each listener; more are"
        " answered 503 and closed. 0: no cap (e.g. behind a proxy that enforces its own)",
    )
    policy_engine: Literal["embedded", "opa", "permit-all"] = Field(
        "embedded",
        description=(
            "Rego engine: embedded (OPA-compiled Wasm in process), opa (an OPA server at"
            " opa_url), permit-all (no policy decisions: development only)"
        ),
    )
    policies_dir: Path | None = Field(None, description="Rego library; default: the shipped one")
    opa_url: str | None = Field(None, description="OPA server for policy_engine = opa")
    opa_bin: str | None = Field(
        None,
        description=(
            "opa binary: compiles the policies for the embedded engine and runs their unit"
            " tests before a reload takes effect; default: $OPA_BIN, .tools/bin/opa, PATH"
        ),
    )
    database_url: SecretStr | None = Field(
        None,
        description="PostgreSQL store (postgresql://user:pass@host/db), shared by replicas;"
        " default: SQLite in data_dir",
    )
    job_lease_seconds: float = Field(
        30.0,
        ge=1,
        description="an outbox job's lease: renewed while it runs; another replica takes the"
        " job over once it expires",
    )
    shutdown_grace_seconds: float = Field(
        10.0,
        ge=0,
        description="SIGTERM: how long running jobs and requests (a pull being served) may"
        " finish before they are handed over or cut",
    )
    policy_reload_seconds: float = Field(1.0, gt=0)
    decision_log_input_days: float = Field(
        7.0,
        ge=0,
        description="How long the decision log keeps each decision's input (to replay it with"
        " `connector policy log --replay`); afterwards only its digest. 0: keep none",
    )
    tck_mode: bool = Field(
        False,
        description="Conformance testing only: seed and script the DSP TCK's cases (loopback only)",
    )
    tck_authorization: SecretStr | None = Field(
        None, description="TCK mode: the TCK's Authorization value, accepted as TCK_PARTICIPANT"
    )
    # data space membership (docs/city-dataspace.md) ---------------------------------------------
    trusted_issuers: list[str] = Field(
        default_factory=list,
        description="DIDs whose credentials this connector accepts; empty: credentials unchecked",
    )
    require_membership: bool = Field(
        False,
        description="Refuse catalog, negotiation and transfer requests from callers without a"
        " verified membership credential of a trusted issuer",
    )
    credential_cache_seconds: float = Field(
        30.0, ge=0, description="How long a caller's verified claims and a status list are reused"
    )
    issuer_url: str | None = Field(
        None, description="Base URL of the authority that issues this connector's credentials"
    )
    authority: bool = Field(
        False,
        description="Also act as the data space authority: registry, credentials, status list",
    )
    authority_credential_days: float = Field(
        365.0, gt=0, description="Authority: validity of the credentials it issues"
    )
    log_format: Literal["text", "json"] = Field(
        "text", description="json: one JSON object per log line, with the process id"
    )
    # federated catalog (docs/federated-catalog.md) -------------------------------------------
    federated_catalog: bool = Field(
        False, description="Crawl the members' DSP catalogs and serve search over them"
    )
    federated_members: list[FederatedMember] = Field(
        default_factory=list, description="Static member list: [{dsp, did?, name?}]"
    )
    registry_url: str | None = Field(
        None, description="The data space authority's participant registry (GET, JSON)"
    )
    registry_did: str | None = Field(
        None, description="The authority's DID (token audience); default: did:web of its host"
    )
    federated_crawl_seconds: float = Field(
        300.0, ge=0, description="Crawl period; 0 crawls only on demand"
    )
    federated_crawl_concurrency: int = Field(16, ge=1, le=256)

    @field_validator("api_key")
    @classmethod
    def _api_key(cls, value: SecretStr) -> SecretStr:
        # An empty or short key would open (or nearly open) the management API to anyone
        # who can reach its port; refuse to start rather than run unprotected.
        if len(value.get_secret_value().strip()) < MIN_API_KEY_LENGTH:
            raise ValueError(
                f"api_key (CONNECTOR_API_KEY) must be at least {MIN_API_KEY_LENGTH} characters;"
                " generate one with: openssl rand -base64 24"
            )
        return value

    @field_validator("public_url", "issuer_url")
    @classmethod
    def _url(cls, value: str | None) -> str | None:
        if value is None:
            return None
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("must be an absolute http(s) URL")
        return value.rstrip("/")

    @model_validator(mode="after")
    def _pairs(self) -> Settings:
        if self.database_url is not None:
            scheme = urlsplit(self.database_url.get_secret_value()).scheme
            if scheme not in ("postgresql", "postgres"):
                raise ValueError("database_url must be a postgresql:// URL")
        if self.authority and self.database_url is not None:
            # the registry is one SQLite file: replicas would each keep their own
            raise ValueError(
                "authority = true runs as one instance on its own registry file: unset"
                " database_url for the authority (members may use PostgreSQL replicas)"
            )
        if self.policy_engine == "opa" and not self.opa_url:
            raise ValueError("policy_engine = opa needs opa_url (the OPA server's URL)")
        if (self.tls_cert is None) != (self.tls_key is None):
            raise ValueError("tls_cert and tls_key must be set together")
        plain = self.public_url and urlsplit(self.public_url).scheme == "http"
        if plain and not self.dev_insecure_http:
            raise ValueError(
                "public_url uses plain http: set dev_insecure_http = true (development only)"
                " or configure tls_cert/tls_key and an https public_url"
            )
        return self

    @model_validator(mode="after")
    def _federated(self) -> Settings:
        if self.registry_url is not None:
            parts = urlsplit(self.registry_url)
            if parts.scheme not in ("http", "https") or not parts.hostname:
                raise ValueError("registry_url must be an absolute http(s) URL")
        if self.federated_catalog and not (self.federated_members or self.registry_url):
            raise ValueError("federated_catalog needs federated_members or registry_url")
        return self

    @model_validator(mode="after")
    def _tck_loopback_only(self) -> Settings:
        if not self.tck_mode:
            return self
        if not self.tck_authorization or not self.tck_authorization.get_secret_value():
            raise ValueError("tck_mode needs tck_authorization (the TCK's Authorization value)")
        hosts = {"public_host": self.public_host, "management_host": self.management_host}
        if self.public_url:
            hosts["public_url"] = urlsplit(self.public_url).hostname or ""
        for name, host in hosts.items():
            if not is_loopback(host):
                raise ValueError(f"tck_mode binds loopback only, but {name} is {host!r}")
        return self

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # The environment wins over the file, which arrives as init arguments.
        return (env_settings, init_settings)

    @property
    def base_url(self) -> str:
        if self.public_url:
            return self.public_url
        scheme = "https" if self.tls_cert else "http"
        return f"{scheme}://{self.public_host}:{self.public_port}"

    @property
    def dsp_url(self) -> str:
        return self.base_url + DSP_PATH

    @property
    def policy_folder(self) -> Path:
        return self.policies_dir or Path(__file__).resolve().parent.parent / "policies"

    @property
    def opa_binary(self) -> str | None:
        return self.opa_bin or find_opa()

    @property
    def db_path(self) -> Path:
        return self.data_dir / "connector.db"

    @property
    def wallet_path(self) -> Path:
        return self.data_dir / "credentials.json"

    @property
    def registry_path(self) -> Path:
        return self.data_dir / "authority.db"

    @property
    def federated_db_path(self) -> Path:
        return self.data_dir / "federated-catalog.db"

    @property
    def private_key_path(self) -> Path:
        return self.key_file or self.data_dir / "keys" / "private.pem"


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def load_settings(path: Path | None = None, **overrides: Any) -> Settings:
    """Read the file (if any), apply environment overrides, and fail with a readable message."""
    values: dict[str, Any] = {}
    if path is not None:
        try:
            values = tomllib.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError as exc:
            raise ConfigError(f"configuration file not found: {path}") from exc
        except IsADirectoryError as exc:  # what a bind mount of a missing file leaves
            raise ConfigError(f"configuration file {path} is a directory") from exc
        except OSError as exc:
            raise ConfigError(
                f"cannot read the configuration file {path}: {exc.strerror or exc} (running"
                f" as uid {os.getuid()}; the file must be readable by it)"
            ) from exc
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{path}: not valid TOML: {exc}") from exc
        base = path.parent
        for key in ("data_dir", "key_file", "tls_cert", "tls_key", "ca_file", "policies_dir"):
            if isinstance(values.get(key), str) and not Path(values[key]).is_absolute():
                values[key] = str(base / values[key])
    values.update(overrides)
    try:
        return Settings(**values)
    except SettingsError as exc:  # an environment value that does not parse (a list, say)
        name = next(
            (n for n in _env_names() if f'"{n[len(ENV_PREFIX) :].lower()}"' in str(exc)), None
        )
        where = name or "a CONNECTOR_* environment variable"
        raise ConfigError(f"invalid configuration: {where}: {exc}") from exc
    except ValidationError as exc:
        lines = [_problem(err, path) for err in exc.errors()]
        raise ConfigError("invalid configuration:\n" + "\n".join(lines)) from exc


ENV_PREFIX = "CONNECTOR_"


def _env_names() -> list[str]:
    """The CONNECTOR_* variables set that name a setting (they override the file)."""
    fields = {name.upper() for name in Settings.model_fields}
    return [
        key.upper()
        for key in os.environ
        if key.upper().startswith(ENV_PREFIX) and key.upper()[len(ENV_PREFIX) :] in fields
    ]


def _problem(err: Any, path: Path | None) -> str:
    """One validation error, naming where the value came from: the environment variable
    (which wins over the file) or the file; an unknown setting with the nearest known one."""
    loc = [str(p) for p in err["loc"]]
    field = loc[0] if loc else ""
    if err["type"] == "extra_forbidden":
        near = difflib.get_close_matches(field, list(Settings.model_fields), n=1)
        hint = f" (did you mean {near[0]}?)" if near else ""
        source = f" in {path}" if path else ""
        return f"  unknown setting {field!r}{source}{hint}"
    env = ENV_PREFIX + field.upper()
    if field and env in _env_names():
        where = f"{env} (environment)"
    else:
        where = ".".join(loc) or "settings"
        where += f" in {path}" if path else ""
    return f"  {where}: {err['msg']}"


def find_opa() -> str | None:
    """The opa binary: $OPA_BIN, the one `make opa` builds, or one on PATH."""
    here = Path(__file__).resolve().parent.parent / ".tools" / "bin" / "opa"
    for candidate in (os.environ.get("OPA_BIN"), str(here), shutil.which("opa")):
        if candidate and Path(candidate).exists():
            return candidate
    return None
