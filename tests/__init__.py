"""Test suite for the mail gateway."""
