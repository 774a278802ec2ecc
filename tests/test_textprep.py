"""The stripper on real messages (tests/mails/textprep/, sources in tests/mails/SOURCES.md) and the corpus."""
from __future__ import annotations

from pathlib import Path

import pytest

from classifier.corpus import load_corpus
from classifier.textprep import clean_subject, customer_text, strip_quoted, strip_signature
from gateway.parsing import parse

MAILS = Path(__file__).parent / "mails" / "textprep"


def prepared(name: str) -> str:
    mail = parse((MAILS / name).read_bytes())
    return customer_text(mail.subject, mail.text)


# (file, words of the customer's own new text that must stay, words of quotes/signatures/notices that must go)
REAL_MAILS = [
    ("en-outlook-original-message.eml", ["Try that on a Sun", "disect the keyboard"],
     ["Original Message", "Graham.Smith", "ususally disconnect", "Irish Linux Users"]),
    ("en-outlook-header-block.eml", ["3rd degree burn scars", "hold that match"],
     ["Looney", "Sent: 31 July", "dislike being forced", "burn yourself often"]),
    ("nl-op-schreef.eml", ["Most spammers don't check reply codes", "accept it the second time"],
     ["schreef Ellen Clary", "third possibility", "I can guarantee that"]),
    ("de-schrieben-sie.eml", ["Now I found out that there is a noewsgroup"],
     ["schrieben Sie", "[Question about require tag]", "RPM-List mailing list"]),
    ("en-inline-reply.eml", ["Did you want this on the list?", "Automatically marking something as ham",
                             "I view IMAP as a stop-gap measure"],
     ["Guido van Rossum wrote", "What's an auto-ham?", "IMAP has a bright future"]),
    ("en-on-wrote-signature.eml", ["#linux on irc.linux.ie"],
     ["Ryan, Shane wrote", "what irc server", "Pigeon of Love", "listinfo/ilug"]),
    ("en-disclaimer-box.eml", ["disabling the infrared port", "can anyone help ?"],
     ["intended solely", "MIMEsweeper", "Gianni", "postmaster@epa.ie"]),
    ("en-disclaimer-after-footer.eml", ["I vote usb 1.1", "keep any standards going"],
     ["Paul Kelly", "Tell them how long", "DISCLAIMER", "legally privileged"]),
    ("en-forwarded.eml", ["We should not include these files or vcards as attachments."],
     ["Forwarded message", "Test attachments oddly encoded", "May 8, 2005"]),
]


@pytest.mark.parametrize(("name", "kept", "dropped"), REAL_MAILS, ids=[m[0] for m in REAL_MAILS])
def test_real_mail_keeps_only_the_customers_new_text(name: str, kept: list[str], dropped: list[str]) -> None:
    text = prepared(name)
    for words in kept:
        assert words in text
    for words in dropped:
        assert words not in text


def test_the_word_confidential_in_the_text_is_no_disclaimer() -> None:
    text = prepared("en-confidential-in-text.eml")
    assert "confidential internal memo" in text
    assert "Kazaa, Music City and Grokster" in text


def test_html_only_mail_becomes_plain_text() -> None:
    text = prepared("en-html-only.eml")
    assert "The towering pine and the hemlock." in text
    assert "<" not in text and "&nbsp;" not in text


def test_quoted_history_in_the_corpus_never_reaches_the_classifier() -> None:
    """Our corpus' replies quote earlier mails in all three languages (Am … schrieb, Op … schreef, Von:/Gesendet:)."""
    corpus = load_corpus()
    quoting = [e for e in corpus if "Gesendet:" in e.body or "Verzonden:" in e.body or "Sent:" in e.body]
    assert len(quoting) > 30
    for example in quoting:
        assert "Gesendet:" not in example.text and "Verzonden:" not in example.text and "Sent:" not in example.text
    attributed = [e for e in corpus if "schrieb" in e.body or "schreef" in e.body or "wrote:" in e.body]
    assert {e.lang for e in attributed} == {"de", "en", "nl"}
    for example in attributed:
        assert "\n>" not in example.text


def test_a_sentence_that_starts_with_thanks_is_kept_but_a_closing_goes() -> None:
    body = "Hello,\n\nThanks, but the export still fails with error 500.\n\nThanks in advance!\nAnna Meyer\nACME"
    assert strip_signature(body) == "Hello,\n\nThanks, but the export still fails with error 500."


def test_an_attribution_without_quotes_below_cuts_the_rest() -> None:
    body = "Das geht jetzt.\n\nAm 3. März 2026 um 10:12 schrieb Support <support@example.org>:\nHallo, bitte testen."
    assert strip_quoted(body) == "Das geht jetzt."


def test_subject_prefixes_go() -> None:
    assert clean_subject("AW: WG: Re[2]: Rechnung 4711") == "Rechnung 4711"
    assert clean_subject("Antw: Factuur") == "Factuur"


def test_many_quoted_replies_lose_every_attribution_in_one_pass() -> None:
    """Each attribution line is looked at once (the text is not rebuilt per attribution), with the same result."""
    answer = "On Mon, 2 Mar 2026 at 10:12, Support <s@example.org> wrote:\n> Does it work now?\nNo, still error 500.\n"
    body = "Hello,\n\n" + answer * 800 + "On Tue, 3 Mar 2026, Anna wrote:\nan earlier mail, not quoted\n"
    text = strip_quoted(body)
    assert text.count("No, still error 500.") == 800 and "wrote" not in text and ">" not in text
    assert "an earlier mail" not in text  # a dated attribution without quotes below: the rest is history
    stacked = "Fine now.\n\nOn Mon, 2 Mar 2026, Anna wrote:\nOn Sun, 1 Mar 2026, Support wrote:\n> Try again?\n"
    assert strip_quoted(stacked) == "Fine now."  # an attribution above another one is judged by the quote below both


def test_a_longer_closing_counts_only_among_the_last_lines() -> None:
    early = "Thanks and best regards\n"
    body = "Hello,\n\nThe export fails.\n" + early + "".join(f"log line {i}\n" for i in range(12))
    assert "log line 11" in strip_signature(body)  # twelve lines follow it: part of the text
    assert strip_signature("Hello,\n\nThe export fails.\n" + early + "Anna\nACME\n") == "Hello,\n\nThe export fails."
