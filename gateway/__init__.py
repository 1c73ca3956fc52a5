"""smtp-graph-gateway: accept SMTP from devices and deliver it through Microsoft Graph sendMail."""

__version__ = "0.1.0"
