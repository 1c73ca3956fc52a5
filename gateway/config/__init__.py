"""Configuration: the frozen model, the YAML loader with full validation, and units."""

from gateway.config.loader import LOOPBACK_CLIENT, load_config, parse_config
from gateway.config.model import (
    CLOUD_ENDPOINTS,
    MIME_SUBMISSION_LIMIT,
    CertificateCredential,
    Client,
    Cloud,
    Config,
    DeliverySettings,
    HttpSettings,
    Listener,
    LoggingSettings,
    RoutingSettings,
    SmtpSettings,
    SpoolSettings,
    Tenant,
    TlsFiles,
    TlsMode,
    User,
)
from gateway.config.secrets import Secret
from gateway.config.units import format_size, parse_duration, parse_size

__all__ = [
    "CLOUD_ENDPOINTS",
    "LOOPBACK_CLIENT",
    "MIME_SUBMISSION_LIMIT",
    "CertificateCredential",
    "Client",
    "Cloud",
    "Config",
    "DeliverySettings",
    "HttpSettings",
    "Listener",
    "LoggingSettings",
    "RoutingSettings",
    "Secret",
    "SmtpSettings",
    "SpoolSettings",
    "Tenant",
    "TlsFiles",
    "TlsMode",
    "User",
    "format_size",
    "load_config",
    "parse_config",
    "parse_duration",
    "parse_size",
]
