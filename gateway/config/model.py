"""The typed, frozen configuration model.

Everything the daemon can be told lives here as plain frozen dataclasses. `loader.py` builds
them from YAML and validates them; nothing else constructs them from untrusted input.
"""

from __future__ import annotations

import datetime
import ipaddress
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path

from gateway.config.secrets import Secret
from gateway.errors import ConfigIssue

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

# Graph's request limit is 4 MB (4,194,304 bytes); base64 makes 3 bytes into 4. Keep 64 KiB for
# the Bcc and From headers the gateway may add. Larger messages need the draft + upload path.
GRAPH_REQUEST_LIMIT = 4 * 1024 * 1024
MIME_SUBMISSION_LIMIT = GRAPH_REQUEST_LIMIT * 3 // 4 - 64 * 1024


LARGE_MESSAGE_LIMIT = 150 * 1024 * 1024  # the most Graph's upload sessions take per message
EXCHANGE_DEFAULT_MAX_SEND = 35 * 1024 * 1024  # Exchange Online's default MaxSendSize


class SubmissionMode(StrEnum):
    """How a message goes to Graph."""

    AUTO = "auto"  # MIME when it fits one request, else the large-message path (if enabled)
    MIME = "mime"  # always the raw MIME, never converted (too big: refused at DATA)
    JSON = "json"  # always converted to Graph's message JSON


class AuthKind(StrEnum):
    """How the gateway signs in to a tenant."""

    APP = "app"  # application permissions: client secret or certificate
    DELEGATED = "delegated"  # a mailbox user signed in once (`login`); the token cache is kept


class CredentialKind(StrEnum):
    """What an app proves itself with (or, for `managed_identity`, who the sender is)."""

    CLIENT_SECRET = "client secret"  # noqa: S105 - a kind of credential, not a secret
    CERTIFICATE = "certificate"
    # workload identity federation (Kubernetes)
    FEDERATED_TOKEN_FILE = "federated token file"  # noqa: S105 - a kind, not a token
    MANAGED_IDENTITY_ASSERTION = "managed identity as a federated credential"  # for an app
    MANAGED_IDENTITY = "managed identity"  # the managed identity itself holds Mail.Send
    DELEGATED = "delegated sign-in"


class Transport(StrEnum):
    """Where a tenant's mail is submitted."""

    GRAPH = "graph"
    SMTP_OAUTH = "smtp-oauth"  # smtp.office365.com:587, STARTTLS + SASL XOAUTH2


# Exchange Online's SMTP submission endpoint per cloud (None: give smtp_endpoint explicitly).
SMTP_ENDPOINTS: dict[str, tuple[str, int] | None] = {
    "global": ("smtp.office365.com", 587),
    "usgov": ("smtp.office365.us", 587),
    "usgov-dod": ("smtp.office365.us", 587),
    "china": ("smtp.partner.outlook.cn", 587),
}
# Microsoft's High Volume Email endpoint (`smtp_endpoint: hve`): HVE accounts, internal mail.
HVE_ENDPOINT = ("smtp-hve.office365.com", 587)


class TlsMode(StrEnum):
    """How a listener uses TLS."""

    NONE = "none"
    STARTTLS = "starttls"
    IMPLICIT = "implicit"


class Cloud(StrEnum):
    """Microsoft cloud instances; each has its own login and Graph hosts."""

    GLOBAL = "global"
    USGOV = "usgov"
    USGOV_DOD = "usgov-dod"
    CHINA = "china"


# (login endpoint, Graph root) per cloud; see reference/graph.md A9.
CLOUD_ENDPOINTS: dict[Cloud, tuple[str, str]] = {
    Cloud.GLOBAL: ("https://login.microsoftonline.com", "https://graph.microsoft.com"),
    Cloud.USGOV: ("https://login.microsoftonline.us", "https://graph.microsoft.us"),
    Cloud.USGOV_DOD: ("https://login.microsoftonline.us", "https://dod-graph.microsoft.us"),
    Cloud.CHINA: ("https://login.chinacloudapi.cn", "https://microsoftgraph.chinacloudapi.cn"),
}


# The audience Entra ID expects in a federated credential's token (the `aud` of a Kubernetes
# service-account token, the resource a managed identity's token is asked for), per cloud.
FEDERATION_AUDIENCES: dict[Cloud, str] = {
    Cloud.GLOBAL: "api://AzureADTokenExchange",
    Cloud.USGOV: "api://AzureADTokenExchangeUSGov",
    Cloud.USGOV_DOD: "api://AzureADTokenExchangeUSGov",
    Cloud.CHINA: "api://AzureADTokenExchangeChina",
}


@dataclass(frozen=True, slots=True)
class ManagedIdentity:
    """The Azure managed identity of the machine the gateway runs on (VM, Arc server, App
    Service): the system-assigned one, or a user-assigned one named by its client ID."""

    client_id: str = ""  # "" = system-assigned

    @property
    def system_assigned(self) -> bool:
        return not self.client_id

    def describe(self) -> str:
        """As the portal names it: "system-assigned" or "user-assigned (client ID …)"."""
        return (
            "system-assigned"
            if self.system_assigned
            else f"user-assigned (client ID {self.client_id})"
        )


@dataclass(frozen=True, slots=True)
class TlsFiles:
    """A PEM certificate chain and its private key, and the oldest TLS version accepted."""

    cert_file: Path
    key_file: Path
    min_version: str = "TLSv1.2"


@dataclass(frozen=True, slots=True)
class Listener:
    """One SMTP socket."""

    name: str
    address: str
    port: int
    tls: TlsMode = TlsMode.NONE
    tls_files: TlsFiles | None = None
    require_tls: bool = False
    auth: str = "off"  # off | optional | required (SMTP AUTH PLAIN and LOGIN)
    allow_cleartext_auth: bool = False  # offer AUTH without TLS (old devices; passwords in clear)
    proxy_networks: tuple[IPNetwork, ...] = ()  # PROXY protocol v1/v2 from these balancers only


@dataclass(frozen=True, slots=True)
class SmtpSettings:
    """The SMTP front door."""

    hostname: str  # "" = this host's fully qualified name
    listeners: tuple[Listener, ...]
    max_message_size: int = 35 * 1024 * 1024
    max_recipients: int = 500
    command_timeout: float = 300.0
    max_connections: int = 200
    max_connections_per_ip: int = 20
    refuse_unknown_at: str = "connect"  # connect (554 5.7.1) | mail (550 5.7.1 at MAIL FROM)
    max_header_size: int = 256 * 1024  # Exchange Online's total header limit
    max_multipart_parts: int = 100  # multipart containers per message (Postfix's nesting limit)
    idle_timeout: float = 60.0  # to begin the first message, and the next after each one
    login_timeout: float = 30.0  # hosts outside `clients` on an AUTH listener: to log in
    max_messages_per_connection: int = 1000  # Exim's smtp_accept_max_per_connection
    max_junk_commands: int = 20  # NOOP, VRFY, EXPN, HELP per connection
    reserved_connections: int = 50  # slots hosts outside `clients` cannot take


@dataclass(frozen=True, slots=True)
class Client:
    """Hosts identified by network, and the envelope senders they may use."""

    name: str
    networks: tuple[IPNetwork, ...]
    senders: tuple[str, ...]
    send_as: str = ""  # deliver as this mailbox instead of the sender (a shared scanner mailbox)
    recipients: tuple[str, ...] = ()  # allowed recipients (address, *@domain); () = anyone
    reply_to_sender: bool = True  # with send_as: put the device's own From in Reply-To
    save_to_sent_items: bool | None = None  # None: the tenant's (or the sender's) setting


@dataclass(frozen=True, slots=True)
class User:
    """An SMTP AUTH identity. The password is only ever stored as a hash."""

    username: str
    password_hash: Secret
    senders: tuple[str, ...]
    send_as: str = ""
    recipients: tuple[str, ...] = ()
    reply_to_sender: bool = True
    save_to_sent_items: bool | None = None


@dataclass(frozen=True)
class CertificateCredential:
    """The certificate an app authenticates with: PEM certificate and key, or one PFX file."""

    cert_file: Path | None  # PEM certificate (chain allowed; the first one is the app's)
    key_file: Path | None  # PEM private key, maybe encrypted
    pfx_file: Path | None  # or PKCS#12 holding both
    password: Secret | None  # for the encrypted key or the PFX
    send_x5c: bool = False  # subject name + issuer auth: send the certificate (x5c)


@dataclass(frozen=True, slots=True)
class Tenant:
    """An Entra ID tenant and the app registration that sends for its domains."""

    name: str
    tenant_id: str
    client_id: str
    client_secret: Secret | None = field(repr=False)
    domains: tuple[str, ...]
    cloud: Cloud = Cloud.GLOBAL
    login_endpoint: str = CLOUD_ENDPOINTS[Cloud.GLOBAL][0]
    graph_endpoint: str = CLOUD_ENDPOINTS[Cloud.GLOBAL][1] + "/v1.0"
    ca_file: Path | None = None
    client_secret_expires: datetime.date | None = None
    priority: int = 0  # lower first; tenants sharing a domain are tried in this order
    send_as: str = ""  # mailbox to send as for every sender of this tenant ("" = the sender)
    keep_from: bool = False  # with send_as: keep the original From (needs Send As rights)
    certificate: CertificateCredential | None = field(default=None, repr=False)
    mode: SubmissionMode = SubmissionMode.AUTO
    large_messages: bool = False  # drafts + upload sessions (needs Mail.ReadWrite)
    max_message_size: int = EXCHANGE_DEFAULT_MAX_SEND  # the mailboxes' MaxSendSize
    auth: AuthKind = AuthKind.APP
    account: str = ""  # delegated: the mailbox user who signs in (`login`)
    senders: tuple[str, ...] = ()  # delegated: addresses the account may send as (besides itself)
    token_cache: Path | None = None  # delegated: msal's token cache (mode 0600)
    transport: Transport = Transport.GRAPH
    smtp_endpoint: tuple[str, int] = ("smtp.office365.com", 587)
    federated_token_file: Path | None = None  # a JWT the app presents (workload identity)
    managed_identity: ManagedIdentity | None = None  # with client_id: the app's credential
    save_to_sent_items: bool = True  # False: sendMail JSON with "saveToSentItems": false
    hve: bool = False  # smtp_endpoint is High Volume Email: its refusals are explained as such

    @property
    def delegated(self) -> bool:
        return self.auth is AuthKind.DELEGATED

    @property
    def credential_kind(self) -> CredentialKind:
        """Which credential gets this tenant's tokens (the loader allows exactly one)."""
        if self.delegated:
            return CredentialKind.DELEGATED
        if self.managed_identity is not None:
            return (
                CredentialKind.MANAGED_IDENTITY_ASSERTION
                if self.client_id
                else CredentialKind.MANAGED_IDENTITY
            )
        if self.federated_token_file is not None:
            return CredentialKind.FEDERATED_TOKEN_FILE
        if self.certificate is not None:
            return CredentialKind.CERTIFICATE
        return CredentialKind.CLIENT_SECRET

    @property
    def federation_audience(self) -> str:
        """The `aud` Entra ID expects in this tenant's federated credentials."""
        return FEDERATION_AUDIENCES[self.cloud]

    @property
    def authority(self) -> str:
        """The msal authority URL for this tenant."""
        return f"{self.login_endpoint.rstrip('/')}/{self.tenant_id}"

    @property
    def graph_root(self) -> str:
        """The Graph resource (the endpoint without its version)."""
        base = self.graph_endpoint.rstrip("/")
        last = base.rsplit("/", 1)[-1]
        return base.rsplit("/", 1)[0] if last.startswith(("v1", "beta")) else base

    @property
    def scope(self) -> str:
        """The app-only scope for Graph in this tenant's cloud."""
        return f"{self.graph_root}/.default"

    @property
    def scopes(self) -> list[str]:
        """What this tenant's tokens must allow: Graph or SMTP submission, app or delegated."""
        if self.transport is Transport.SMTP_OAUTH:
            host = "outlook.office.com" if self.delegated else "outlook.office365.com"
            return [f"https://{host}/SMTP.Send" if self.delegated else f"https://{host}/.default"]
        return [f"{self.graph_root}/Mail.Send"] if self.delegated else [self.scope]


@dataclass(frozen=True, slots=True)
class PostgresSettings:
    """The shared queue of a cluster of gateways (`spool.backend: postgresql`)."""

    dsn: Secret  # a libpq connection string; it may hold a password, so it is never shown
    password: Secret | None = None  # given apart from the DSN (${ENV}, a file, credentials)
    lease: float = 30.0  # a delivery's claim; renewed while it runs, taken over when it lapses
    upgrade_schema: bool = False  # apply the database's migrations at start
    node: str = ""  # this gateway's name in the cluster ("" = the host name)
    connections: int = 10  # most connections to the database at once


@dataclass(frozen=True, slots=True)
class SpoolSettings:
    """Where accepted messages are kept until a transport has taken them."""

    directory: Path  # the file spool; with postgresql, where large bodies are read back to
    min_free_space: int = 55 * 1024 * 1024  # below this, new mail gets 452 4.3.1
    max_messages: int = 100_000  # queued + held messages; beyond, new mail gets 452 4.3.1
    backend: str = "files"  # files | postgresql
    postgresql: PostgresSettings | None = None


@dataclass(frozen=True, slots=True)
class DeliverySettings:
    """How hard and how often the gateway calls Graph."""

    concurrency: int = 8
    request_timeout: float = 60.0
    token_timeout: float = 30.0
    retry_initial: float = 60.0
    retry_max: float = 3600.0
    max_queue_lifetime: float = 5 * 86400.0
    max_per_mailbox: int = 4
    mailbox_rate: int = 30  # messages per minute per sending mailbox; 0 = unpaced
    postmaster: str = ""  # mailbox that sends delivery status notifications; "" = none
    max_bytes_in_flight: int = 100 * 1000**2  # sizes of the messages in delivery at once


@dataclass(frozen=True, slots=True)
class HttpSettings:
    """The health endpoint. `None` in `Config.http` means it is switched off."""

    address: str
    port: int


@dataclass(frozen=True, slots=True)
class ConsoleUser:
    """Someone who may sign in to the operator console, and what they may do there."""

    username: str
    password_hash: Secret  # scrypt, from `smtp-graph-gateway hash-password`
    role: str = "viewer"  # viewer (read) | operator (also retry, hold, release, delete)


@dataclass(frozen=True, slots=True)
class ConsoleToken:
    """A bearer token for scripts using the console's JSON API."""

    name: str  # who uses it (named in the audit log)
    token: Secret
    role: str = "viewer"


@dataclass(frozen=True, slots=True)
class ConsoleMicrosoft:
    """ "Sign in with Microsoft" for the console, through a configured tenant's app."""

    tenant: str  # the name of a tenant in `tenants` (app registration with a secret/certificate)
    operators: tuple[str, ...] = ()  # app role values or group object IDs that make an operator
    viewers: tuple[str, ...] = ()  # … or a viewer (anyone else is refused)
    redirect_uri: str = ""  # "" = this console's own URL + /signin/microsoft/callback


@dataclass(frozen=True, slots=True)
class ConsoleSettings:
    """The operator console. `None` in `Config.console` means it is switched off."""

    address: str
    port: int
    tls: TlsFiles | None = None
    users: tuple[ConsoleUser, ...] = ()
    api_tokens: tuple[ConsoleToken, ...] = ()
    session_idle_timeout: float = 1800.0
    lockout_failures: int = 5  # failed sign-ins from one address within the lockout time …
    lockout_duration: float = 300.0  # … lock it out for this long (as SMTP AUTH does)
    silent_after: float = 86400.0  # a device that sent regularly and then nothing this long
    microsoft: ConsoleMicrosoft | None = None


@dataclass(frozen=True, slots=True)
class LoggingSettings:
    """Log level and format (`auto` = readable on a terminal, JSON otherwise)."""

    level: str = "info"
    format: str = "auto"


@dataclass(frozen=True, slots=True)
class RoutingSettings:
    """Routing beyond tenants' domain lists."""

    default_tenant: str = ""  # tenant for sender domains no tenant lists ("" = refuse them)
    addresses: tuple[tuple[str, str], ...] = ()  # (sender address, tenant name) overrides
    modes: tuple[tuple[str, SubmissionMode], ...] = ()  # (sender address, mode) overrides
    send_as: tuple[tuple[str, str], ...] = ()  # (sender domain, mailbox to send as)
    sent_items: tuple[tuple[str, bool], ...] = ()  # (sender address, save_to_sent_items)


@dataclass(frozen=True, slots=True)
class Config:
    """The whole, validated configuration."""

    smtp: SmtpSettings
    clients: tuple[Client, ...]
    users: tuple[User, ...]
    tenants: tuple[Tenant, ...]
    spool: SpoolSettings
    delivery: DeliverySettings = DeliverySettings()
    http: HttpSettings | None = None
    console: ConsoleSettings | None = None
    logging: LoggingSettings = LoggingSettings()
    drain_timeout: float = 30.0
    routing: RoutingSettings = RoutingSettings()
    proxy: str = ""  # outbound HTTPS proxy for Entra ID and Graph ("" = HTTPS_PROXY, if set)
    source: Path | None = None
    # Loaded, but probably not meant (see config/lint.py): logged at start and by `check`.
    warnings: tuple[ConfigIssue, ...] = field(default=(), compare=False)
