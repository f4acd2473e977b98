"""tlflow.serve: its page in a real headless Chromium, its JSON endpoint with an HTTP
client (bad uploads, a concurrent burst), on an exported model.onnx."""

from __future__ import annotations

import io
import shutil
import socket
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np
import pytest
from PIL import Image
from test_export import small_model

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
MAX_BYTES, MAX_FILES = 200_000, 4


def png(seed: int, size=(40, 30)) -> bytes:
    pixels = np.random.default_rng(seed).integers(0, 256, (*size, 3), dtype=np.uint8)
    out = io.BytesIO()
    Image.fromarray(pixels).save(out, "PNG")
    return out.getvalue()


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(scope="module")
def onnx_model(tmp_path_factory) -> Path:
    from tlflow import export

    folder = tmp_path_factory.mktemp("serve")
    export.export_model(small_model(folder, ["cat", "dog"]), folder / "export", ["onnx"])
    return folder / "export/model.onnx"


@pytest.fixture(scope="module")
def server(onnx_model):
    """``python -m tlflow.serve`` on a free port of 127.0.0.1; its base URL."""
    port = free_port()
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tlflow.serve",
            str(onnx_model),
            "--port",
            str(port),
            "--max-bytes",
            str(MAX_BYTES),
            "--max-files",
            str(MAX_FILES),
            "--threads",
            "1",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        try:
            httpx.get(url, timeout=2)
            break
        except httpx.TransportError:
            if process.poll() is not None or time.monotonic() > deadline:
                process.kill()
                raise AssertionError(f"the server did not start:\n{process.stdout.read()}")
            time.sleep(0.2)
    yield url
    process.terminate()
    process.wait(10)


def post(url, *files, **options):
    return httpx.post(f"{url}/predict", files=[("images", f) for f in files], timeout=30, **options)


def expected(onnx_model, data: bytes) -> np.ndarray:
    """What the predictor computes for one image (decode, then ONNX Runtime)."""
    from tlflow import serve
    from tlflow.onnx_model import OnnxModel

    return OnnxModel(onnx_model)(serve.decode(data, (32, 32))[None])[0]


def test_api_predicts_each_image_with_the_class_names(server, onnx_model):
    answer = post(server, ("a.png", png(1), "image/png"), ("b b.png", png(2), "image/png"))
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["classes"] == ["cat", "dog"]
    assert [r["file"] for r in body["results"]] == ["a.png", "b b.png"]
    for result, seed in zip(body["results"], (1, 2)):
        p = expected(onnx_model, png(seed))
        np.testing.assert_allclose(list(result["probabilities"].values()), p, atol=1e-6)
        assert result["predicted_class"] == ["cat", "dog"][int(np.argmax(p))]


def test_bad_uploads_get_clear_errors_and_the_good_ones_are_still_predicted(server):
    answer = post(
        server,
        ("ok.png", png(3), "image/png"),
        ("notes.txt", b"hello", "text/plain"),
        ("empty.jpg", b"", "image/jpeg"),
        ("big.png", png(4, (400, 400)), "image/png"),
    )
    assert answer.status_code == 422
    results = {r["file"]: r for r in answer.json()["results"]}
    assert "predicted_class" in results["ok.png"] and "error" not in results["ok.png"]
    assert "not an image" in results["notes.txt"]["error"]
    assert results["empty.jpg"]["error"] == "the file is empty"
    assert f"over the limit of {MAX_BYTES}" in results["big.png"]["error"]


def test_request_level_errors(server):
    too_many = post(server, *[(f"{i}.png", png(i), "image/png") for i in range(MAX_FILES + 1)])
    assert too_many.status_code == 413 and "Too many files" in too_many.json()["error"]
    none = httpx.post(f"{server}/predict", data={"other": "x"}, files=[("other", ("x.png", png(1)))])
    assert none.status_code == 400 and "field 'images'" in none.json()["error"]
    not_multipart = httpx.post(
        f"{server}/predict", content=b"{}", headers={"content-type": "application/json"}
    )
    assert not_multipart.status_code == 415
    huge = httpx.post(
        f"{server}/predict",
        content=b"x" * (MAX_FILES * (MAX_BYTES + 70_000)),
        headers={"content-type": "multipart/form-data; boundary=zz"},
    )
    assert huge.status_code == 413 and "over" in huge.json()["error"]
    assert httpx.get(server).status_code == 200  # still serving


def test_concurrent_burst_is_answered_right(server, onnx_model):
    images = {seed: png(seed) for seed in range(5)}
    truth = {seed: expected(onnx_model, data) for seed, data in images.items()}

    def one(i: int):
        seed = i % 5
        answer = post(server, (f"{seed}.png", images[seed], "image/png"))
        return seed, answer.status_code, answer.json()

    with ThreadPoolExecutor(10) as pool:
        answers = list(pool.map(one, range(50)))
    assert len(answers) == 50
    for seed, status, body in answers:
        assert status == 200
        np.testing.assert_allclose(list(body["results"][0]["probabilities"].values()), truth[seed], atol=1e-6)


def test_page_in_headless_chromium_shows_the_class(server, onnx_model, tmp_path):
    if not shutil.which("chromium") and not Path(CHROMIUM).exists():
        pytest.fail("chromium is missing: apt-get install -y chromium chromium-driver")
    from playwright.sync_api import sync_playwright

    image = tmp_path / "photo.png"
    image.write_bytes(png(7))
    p = expected(onnx_model, png(7))
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page()
            page.goto(server)
            page.set_input_files("#pick", str(image))
            page.wait_for_selector(".result .predicted", timeout=30_000)
            assert page.inner_text(".result .predicted") == ["cat", "dog"][int(np.argmax(p))]
            assert f"{100 * max(p):.1f}%" in page.inner_text(".result")
        finally:
            browser.close()
