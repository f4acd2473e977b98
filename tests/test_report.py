"""`snakemake --report` builds one self-contained HTML page with every result in it."""

from __future__ import annotations

import base64
import re

import pytest
from conftest import snakemake

# Every test here runs Snakemake (`make unit` leaves them out).
pytestmark = pytest.mark.workflow

EMBEDDED = {
    "loss.png": "plots/loss.png",
    "accuracy.png": "plots/accuracy.png",
    "confusion_matrix.png": "evaluation/confusion_matrix.png",
    "mistakes.png": "evaluation/mistakes.png",
    "metrics.json": "evaluation/metrics.json",
    "predictions.csv": "evaluation/predictions.csv",
    "summary.html": "evaluation/summary.html",
    "label_suspects.png": "audit/label_suspects.png",
    "duplicates.csv": "audit/duplicates.csv",
}


def test_report_embeds_curves_evaluation_and_run_summary(finished_run, tmp_path):
    out = tmp_path / "report.html"
    snakemake(finished_run, "--report", str(out))
    page = out.read_text()
    for filename, path in EMBEDDED.items():
        match = re.search(rf"filename={re.escape(filename)};base64,([A-Za-z0-9+/=]+)", page)
        assert match, f"{filename} is not embedded in the report"
        embedded = base64.b64decode(match.group(1))
        assert embedded == (finished_run / "results/vgg16" / path).read_bytes()
    for text in (
        "Transfer learning on image folders",  # the workflow description
        "1. Run",
        "2. Training",
        "3. Evaluation",
        "4. Data audit",  # categories
        "most confident mistakes on the test split",  # captions, rendered per job
        "Confusion matrix on the test split",
        "Loss of the head per epoch",
    ):
        assert text in page, text
    assert not re.search(r"""(src|href)=["']https?://""", page)  # nothing fetched
