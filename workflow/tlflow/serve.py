"""A local web page to try an exported model, and a JSON endpoint for programs.

    python -m tlflow.serve results/vgg16/export/model.onnx [--port 8000]

``GET /`` is a page where a person drops or picks images and sees each one's
classes and probabilities; ``POST /predict`` takes multipart images (field
``images``, one or more) and answers JSON. Runs on ONNX Runtime (no TensorFlow),
binds to 127.0.0.1 unless told otherwise, and keeps uploads in memory: nothing
is written to disk. A bad upload (not an image, empty, too large, too many) gets
its error in the answer; the others are still predicted.
"""

from __future__ import annotations

import argparse
import io
from importlib.resources import files

import numpy as np

from .images import load_rgb
from .onnx_model import OnnxModel
from .predict import PredictError, read_meta
from .readers import DamagedFileError

FIELD = "images"
PAGE = files(__package__).joinpath("templates/serve.html")


def decode(data: bytes, size) -> np.ndarray:
    """An upload decoded as the predictor decodes a file (tlflow.images.load_rgb)."""
    return load_rgb(io.BytesIO(data), size)


def create_app(model_path, max_bytes: int = 10 * 2**20, max_files: int = 32, threads: int = 1):
    """The Starlette app serving ``model_path`` (an ``.onnx`` with ``model.json`` beside)."""
    from starlette.applications import Starlette
    from starlette.concurrency import run_in_threadpool
    from starlette.formparsers import MultiPartException, MultiPartParser
    from starlette.responses import HTMLResponse, JSONResponse
    from starlette.routing import Route

    meta = read_meta(model_path)
    model = OnnxModel(model_path, threads)  # ONNX Runtime sessions run calls in parallel safely
    size = tuple(meta.backbone.image_size)
    # The whole body is read into memory first, up to this; form fields stay small.
    max_body = max_files * (max_bytes + 64 * 2**10)

    def error(status: int, message: str) -> JSONResponse:
        return JSONResponse({"error": message}, status_code=status)

    async def read_body(request) -> bytes | None:
        body = bytearray()
        async for chunk in request.stream():
            body += chunk
            if len(body) > max_body:
                return None
        return bytes(body)

    async def body_stream(body: bytes):
        yield body

    async def parse(request, body: bytes):
        parser = MultiPartParser(
            request.headers, body_stream(body), max_files=max_files, max_fields=max_files
        )
        parser.spool_max_size = len(body) + 1  # uploads stay in memory, never on disk
        return await parser.parse()

    def classify(uploads) -> list[dict]:
        results, good, arrays = [], [], []
        for name, data in uploads:
            result = {"file": name}
            if not data:
                result["error"] = "the file is empty"
            elif len(data) > max_bytes:
                result["error"] = f"the file is {len(data)} bytes, over the limit of {max_bytes}"
            else:
                try:
                    arrays.append(decode(data, size))
                    good.append(result)
                except Exception as failure:  # Pillow raises many types for broken files
                    result["error"] = (
                        f"not an image that can be decoded ({type(failure).__name__}: {failure})"
                    )
            results.append(result)
        if arrays:
            for result, p in zip(good, model(np.stack(arrays))):
                result["predicted_class"] = meta.classes[int(np.argmax(p))]
                result["probabilities"] = dict(zip(meta.classes, map(float, p)))
        return results

    async def predict(request):
        if not request.headers.get("content-type", "").startswith("multipart/form-data"):
            return error(415, f"send the images as multipart/form-data, field '{FIELD}'")
        body = await read_body(request)
        if body is None:
            return error(
                413,
                f"the upload is over {max_body} bytes: send at most {max_files} "
                f"images of at most {max_bytes} bytes each",
            )
        try:
            form = await parse(request, body)
        except MultiPartException as failure:
            status = 413 if "Too many files" in failure.message else 400
            return error(status, f"{failure.message} (at most {max_files} images at once)")
        uploads = [
            (item.filename or "", await item.read())
            for item in form.getlist(FIELD)
            if hasattr(item, "filename")
        ]
        await form.close()
        if not uploads:
            return error(400, f"no images in the upload: send them in the field '{FIELD}'")
        results = await run_in_threadpool(classify, uploads)
        status = 200 if all("error" not in result for result in results) else 422
        return JSONResponse({"classes": meta.classes, "results": results}, status_code=status)

    async def page(request):
        html = PAGE.read_text(encoding="utf-8")
        return HTMLResponse(html.replace("{{max_files}}", str(max_files)))

    return Starlette(routes=[Route("/", page), Route("/predict", predict, methods=["POST"])])


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", help="export/model.onnx written by the workflow (model.json beside it)")
    parser.add_argument(
        "--host", default="127.0.0.1", help="address to listen on (default: this machine only)"
    )
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--max-bytes", type=int, default=10 * 2**20, help="largest image accepted")
    parser.add_argument("--max-files", type=int, default=32, help="most images in one request")
    parser.add_argument("--threads", type=int, default=1, help="ONNX Runtime threads per request")
    args = parser.parse_args(argv)
    try:
        app = create_app(args.model, args.max_bytes, args.max_files, args.threads)
    except (PredictError, DamagedFileError) as failure:
        parser.exit(2, f"error: {failure}\n")
    import uvicorn

    print(f"serving {args.model} on http://{args.host}:{args.port}/")
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning")


if __name__ == "__main__":
    main()
