"""Real servers (Dovecot) run as throwaway processes for tests."""
