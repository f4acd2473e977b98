"""The audit's review page in a real headless Chromium: mark, download, apply, rerun."""

from __future__ import annotations

import shutil
from contextlib import contextmanager
from pathlib import Path

import pandas as pd
import pytest
import yaml
from conftest import TINY_CONFIG, job_stats, planned_jobs, snakemake, write_config
from PIL import Image
from tlflow import corrections, review

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
CLASSES = ["cats", "dogs", "01"]
ODD = 'cats/caf\u00e9, "odd" <b>name</b>.jpg'  # comma, quotes, markup, accents


@contextmanager
def browser_page():
    if not shutil.which("chromium") and not Path(CHROMIUM).exists():
        pytest.fail("chromium is missing: apt-get install -y chromium chromium-driver")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield browser.new_context(accept_downloads=True).new_page()
        finally:
            browser.close()


def downloaded(page, tmp_path, name="corrections.csv") -> Path:
    with page.expect_download() as info:
        page.click("#download")
    assert info.value.suggested_filename == "corrections.csv"
    target = tmp_path / name
    info.value.save_as(target)
    return target


def test_the_page_from_disk_exports_what_was_marked_with_the_earlier_corrections(tmp_path):
    data = tmp_path / "data"
    files = [ODD, "dogs/d1.jpg", "dogs/d2.jpg", "01/x.jpg", "cats/gone.jpg"]
    for n, file in enumerate(files):
        (data / file).parent.mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (40, 30), (40 * n, 0, 0)).save(data / file)
    (data / "cats/gone.jpg").unlink()  # moved since: shown as unreadable, still reviewable
    suspects = pd.DataFrame(
        {
            "file": [ODD, "dogs/d1.jpg", "cats/gone.jpg"],
            "split": ["train", "train", "validation"],
            "given_class": ["cats", "dogs", "cats"],
            "likely_class": ["dogs", "01", "dogs"],
            "given_probability": [0.1, 0.2, 0.3],
            "likely_probability": [0.9, 0.7, 0.6],
        }
    )
    pairs = pd.DataFrame(
        {
            "file_a": ["dogs/d1.jpg"],
            "split_a": ["train"],
            "file_b": ["dogs/d2.jpg"],
            "split_b": ["test"],
            "similarity": [0.99],
            "kind": ["near"],
        }
    )
    embedding = pd.DataFrame({"file": files, "class": ["cats", "dogs", "dogs", "01", "cats"]})
    for name, frame in (("s.csv", suspects), ("d.csv", pairs), ("e.csv", embedding)):
        frame.to_csv(tmp_path / name, index=False)
    earlier = tmp_path / "earlier.csv"
    earlier.write_text("file,action,class\n01/x.jpg,relabel,dogs\ndogs/d2.jpg,exclude,\n")
    out = tmp_path / "copied elsewhere" / "review.html"
    shown = review.review_page(
        tmp_path / "s.csv",
        tmp_path / "d.csv",
        tmp_path / "e.csv",
        data,
        CLASSES,
        out,
        "review",
        corrections_csv=earlier,
    )
    assert shown == {"suspects": 3, "of_suspects": 3, "pairs": 1, "of_pairs": 1, "earlier": 2}
    assert "<b>name</b>" not in out.read_text()  # file names are text, not markup
    shutil.rmtree(data)  # the page needs no image file: thumbnails are embedded
    with browser_page() as page:
        page.goto(out.as_uri())
        cells = page.locator(".cell")
        assert cells.count() == 5
        assert page.locator(".cell img").first.evaluate("i => i.naturalWidth") > 0
        assert "cannot be read" in cells.nth(2).locator("img").get_attribute("alt")
        page.keyboard.press("r")  # the odd name: relabel as its likely class, dogs
        page.keyboard.press("3")  # dogs/d1.jpg: relabel as class 3, '01'
        page.keyboard.press("x")  # cats/gone.jpg: exclude
        page.keyboard.press("0")  # dogs/d1.jpg again, in the pair: keep after all
        pair_b = cells.nth(4)
        pair_b.locator("button[data-action=keep]").click()  # d2: keeps its earlier exclusion
        assert "relabel as dogs" in cells.nth(0).inner_text()
        assert "keep" in cells.nth(1).inner_text()  # the same image as cell 3
        table = downloaded(page, tmp_path)
    rows = corrections.read(table)
    assert sorted(rows) == sorted(
        [
            ("01/x.jpg", "relabel", "dogs"),
            ("dogs/d2.jpg", "exclude", ""),
            (ODD, "relabel", "dogs"),
            ("cats/gone.jpg", "exclude", ""),
        ]
    )


@pytest.mark.workflow
def test_corrections_downloaded_from_the_page_rerun_the_head_and_compute_no_feature(finished_copy, tmp_path):
    workdir = finished_copy
    page_html = workdir / "results/vgg16/audit/review.html"
    assert page_html.exists()
    with browser_page() as page:
        page.goto(page_html.as_uri())
        cells = page.locator(".cell")
        assert cells.count() >= 2  # random features: near pairs (and suspects, if any)
        first, second = (cells.nth(i).get_attribute("data-file") for i in (0, 1))
        assert first != second
        other = cells.nth(0).locator("select option").nth(1).get_attribute("value")
        cells.nth(0).locator("select").select_option(other)
        cells.nth(1).locator("button[data-action=exclude]").click()
        table = downloaded(page, tmp_path)
    rows = corrections.read(table)
    assert rows == [(first, "relabel", other), (second, "exclude", "")]
    shutil.copy(table, workdir / "corrections.csv")
    write_config(workdir, {**TINY_CONFIG, "corrections": "corrections.csv"})
    planned = planned_jobs(workdir)
    for rule in ("join_split", "train_head", "evaluate", "audit", "review_page", "summarise_run"):
        assert planned[rule] >= 1, (rule, planned)
    assert not [rule for rule in planned if rule.startswith("extract")], planned
    run = snakemake(workdir)
    ran = job_stats(run.stdout + run.stderr)
    assert ran["train_head"] == 1 and not [rule for rule in ran if rule.startswith("extract")]
    summary = (workdir / "results/vgg16/evaluation/summary.html").read_text()
    assert "1 relabelled, 1 excluded by corrections.csv" in summary
    ignored = pd.read_csv(workdir / "logs/ignored_files.csv", dtype=str)
    assert (ignored.reason == "excluded by corrections.csv").sum() == 1
    with browser_page() as page:  # the next round's page: the earlier corrections are in it
        page.goto(page_html.as_uri())
        assert corrections.read(downloaded(page, tmp_path, "again.csv")) == rows
    assert yaml.safe_load((workdir / "config.yaml").read_text())["corrections"] == "corrections.csv"
