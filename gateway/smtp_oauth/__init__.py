"""SMTP OAuth as a transport: submission to Exchange Online (smtp.office365.com:587, or High
Volume Email) with STARTTLS and SASL XOAUTH2 — the alternative to Graph sendMail."""
