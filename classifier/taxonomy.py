"""The fixed label sets: categories and languages (exact strings used in config, CLI and headers)."""
from enum import StrEnum


class Category(StrEnum):
    OUTAGE = "outage"
    INCIDENT = "incident"
    HOW_TO = "how_to"
    CONFIGURATION = "configuration"
    FEATURE_REQUEST = "feature_request"
    LICENCE = "licence"
    BILLING = "billing"
    TRAINING = "training"
    COMPLAINT = "complaint"
    OTHER = "other"


CATEGORIES: tuple[str, ...] = tuple(c.value for c in Category)

#: Languages with own templates and training data; anything else is answered in English.
LANGUAGES: tuple[str, ...] = ("de", "en", "nl")
FALLBACK_LANGUAGE = "en"
