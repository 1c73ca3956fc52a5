"""Server-side TLS contexts for the SMTP listeners, built from PEM files."""

from __future__ import annotations

import ssl
import warnings

from gateway.config import TlsFiles
from gateway.errors import ConfigError, ConfigIssue

_VERSIONS = {
    "tlsv1": ssl.TLSVersion.TLSv1,
    "tlsv1.1": ssl.TLSVersion.TLSv1_1,
    "tlsv1.2": ssl.TLSVersion.TLSv1_2,
    "tlsv1.3": ssl.TLSVersion.TLSv1_3,
}


def server_context(files: TlsFiles, where: str) -> ssl.SSLContext:
    """A TLS server context; `ConfigError` naming `where` if the files cannot be used."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    if files.min_version in ("tlsv1", "tlsv1.1"):
        # Old printers, opted in per listener (and logged at start): Python deprecates these
        # versions and OpenSSL's default security level refuses their ciphersuites.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            context.minimum_version = _VERSIONS[files.min_version]
        context.set_ciphers("DEFAULT:@SECLEVEL=0")
    else:
        context.minimum_version = _VERSIONS[files.min_version]
    try:
        context.load_cert_chain(str(files.cert_file), str(files.key_file))
    except (OSError, ssl.SSLError) as error:
        reason = getattr(error, "strerror", None) or getattr(error, "reason", None) or "unusable"
        raise ConfigError(
            [
                ConfigIssue(
                    where,
                    f"cannot load certificate and key: {reason}",
                    "check that cert_file and key_file are a matching PEM pair",
                )
            ]
        ) from None
    return context
