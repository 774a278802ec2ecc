"""The key-user reply: rendered per language, naming every key user."""
from __future__ import annotations

import pytest

from gateway.replies.reply import render_key_user
from tests.test_replies import TEMPLATES

KEY_USER = "it-coordinatie@vandijkzorg.example"
PHRASES = {  # (greeting, the request was delivered all the same, asks to go through the key user)
    "de": ("Guten Tag", "wie gewohnt an unser Team", "zuerst an diese Person"),
    "en": ("Hello", "forwarded it to our", "contact them first"),
    "nl": ("Beste", "zoals gebruikelijk doorgestuurd", "eerst contact opnemen met deze persoon"),
}


@pytest.mark.parametrize("lang", ["de", "en", "nl", "fr"])
def test_the_reply_names_every_key_user_in_the_customer_s_language(lang: str) -> None:
    users = [KEY_USER, "planning@vandijkzorg.example"]
    text = render_key_user(TEMPLATES, lang, name="", subject="Rooster", role="support", customer="Van Dijk Zorggroep",
                           key_users=users, reference="abc123")
    greeting, delivered, _ = PHRASES.get(lang, PHRASES["en"])  # no French template: English
    assert text.startswith(greeting) and delivered in text and "abc123" in text and "Van Dijk Zorggroep" in text
    assert all(f"  * {user}" in text.splitlines() for user in users)
