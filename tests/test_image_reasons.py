"""An image that is no screenshot is named with its reason: in the stored decision (found in the worker) and in
the reply, in the customer's language."""
from __future__ import annotations

from email.message import EmailMessage
from email.policy import SMTP

import pytest
from sqlalchemy import select

from gateway.parsing import parse
from gateway.replies.completeness import check_completeness, gather_evidence, steps_model
from gateway.replies.reply import render_missing_info
from gateway.replies.screenshots import check_images
from gateway.storage.models import Decision
from tests.test_completeness import picture
from tests.test_loopguard import strict_config
from tests.test_replies import TEMPLATES, reply_of

BODIES = {
    "de": ("Kontakt speichern geht nicht", "Guten Tag, seit heute Morgen kann ich keinen Kontakt mehr speichern, es "
                                           "erscheint immer eine Fehlermeldung. Können Sie sich das bitte ansehen?"),
    "en": ("Cannot save a contact", "Hello, since this morning I cannot save any contact, an error message appears "
                                    "every time. Could you please have a look at it?"),
    "nl": ("Contact opslaan lukt niet", "Goedemorgen, sinds vanochtend kan ik geen contact meer opslaan, er "
                                        "verschijnt steeds een foutmelding. Kunnen jullie daar even naar kijken?"),
}
SENTENCES = {
    "de": "Das Bild fehler.png (20 × 20 Pixel), das Sie gesendet haben, ist zu klein, um einen Bildschirm zu zeigen.",
    "en": "The image you sent, fehler.png (20 × 20 pixels), is too small to show a screen.",
    "nl": "De afbeelding fehler.png (20 × 20 pixels) die u stuurde, is te klein om een scherm te tonen.",
}
TINY_REASON = "image fehler.png 20×20 px: below the screenshot size of 300×150"


def mail_with_image(lang: str, image: bytes, name: str = "fehler.png") -> bytes:
    subject, body = BODIES[lang]
    message = EmailMessage()
    message["From"], message["To"] = "Anna Berg <anna@example.org>", "support@tessaro.example"
    message["Subject"] = subject
    message["Message-ID"] = f"<tiny-{lang}@example.org>"
    message.set_content(body)
    message.add_attachment(image, maintype="image", subtype="png", filename=name)
    return message.as_bytes(policy=SMTP)


@pytest.mark.parametrize("lang", ["de", "en", "nl"])
def test_a_20_px_image_is_no_screenshot_and_the_reply_and_the_decision_say_why(config_data, database, shipped_model,
                                                                               lang: str) -> None:
    reply = reply_of(database, strict_config(config_data), shipped_model, mail_with_image(lang, picture(20, 20)))
    text = reply.get_content()
    assert SENTENCES[lang] in " ".join(text.split())  # the sentence, however the lines are wrapped
    with database.reading() as session:
        decision = session.scalars(select(Decision)).one()
    assert "screenshot" in decision.missing
    assert decision.trace["completeness"]["missing"] == decision.missing
    assert TINY_REASON in decision.trace["completeness"]["evidence"]
    assert any(reason.startswith("steps: ") for reason in decision.trace["completeness"]["evidence"])


@pytest.mark.parametrize(("width", "height", "verdict", "reason"), [
    (20, 20, "small", TINY_REASON),
    (1400, 300, "strip", "image fehler.png 1400×300 px: a strip (sides more than 4:1), not a screen"),
    (1280, 800, "screenshot", "image fehler.png 1280×800 px: a screenshot"),
])
def test_each_image_gets_a_verdict_and_a_reason(width: int, height: int, verdict: str, reason: str) -> None:
    [check] = check_images(parse(mail_with_image("en", picture(width, height))))
    assert (check.verdict, check.reason, check.width, check.height) == (verdict, reason, width, height)
    assert bool(check.digest) is (verdict == "screenshot")


def test_bytes_that_are_no_picture_are_named_unreadable() -> None:
    [check] = check_images(parse(mail_with_image("en", b"%PDF-1.7\n" + bytes(range(256)) * 8, "scan.png")))
    assert check.verdict == "unreadable" and check.reason == "image scan.png: its bytes are not a picture we can read"


def test_a_recurring_screenshot_is_named_a_logo_and_explained(config) -> None:
    mail = parse(mail_with_image("en", picture(800, 600)))
    evidence = gather_evidence([(mail, "It fails.")], steps_model(config.classifier.models_dir))[0]
    result = check_completeness(config, evidence, "incident", recurring=lambda digests: frozenset(digests))
    [image] = result.images
    assert image.verdict == "recurring" and "screenshot" in result.missing
    assert image.reason == "image fehler.png 800×600 px: the sender sent it before (a signature logo)"
    text = render_missing_info(TEMPLATES, "en", name="", subject="Export", role="support", missing=result.missing,
                               reference="abc", images=result.images)
    assert "was in your earlier e-mails too, so we took it for a signature logo." in " ".join(text.split())


def test_a_reply_that_asks_for_no_screenshot_names_no_image(config) -> None:
    mail = parse(mail_with_image("en", picture(20, 20)))
    evidence = gather_evidence([(mail, "It fails.")], steps_model(config.classifier.models_dir))[0]
    images = check_completeness(config, evidence, "incident").images
    text = render_missing_info(TEMPLATES, "en", name="", subject="Export", role="support", missing=("steps",),
                               reference="abc", images=images)
    assert "fehler.png" not in text
