"""Where the training data lies: our own labelled files in the package, real third-party data beside the checkout.

Kept apart from the modules that use them, so a command's ``--help`` can show these defaults without importing
scikit-learn.
"""
from pathlib import Path

#: our own labelled support mails (``*.jsonl``) and has-steps examples, shipped in the package
CORPUS_DIR = Path(__file__).parent / "data" / "corpus"
STEPS_DATA_DIR = Path(__file__).parent / "data" / "steps"
#: real third-party data sets (``../shared/data/``, see its README for sources and licences)
SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
S2R_FILE = SHARED_DATA / "bug-reports-s2r" / "train.jsonl.gz"
