"""The SMTP front door: the only module tree that imports aiosmtpd."""
