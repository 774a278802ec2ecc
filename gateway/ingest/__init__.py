"""Ingress: SMTP (aiosmtpd) and IMAP sources; each commits raw mail before acknowledging it."""
