"""Delivery: the outbox worker and its targets (Maildir, SMTP relay, IMAP folder)."""
