"""The FastAPI app of `annorm serve`: JSON/PNG endpoints that mirror the Python API, and the
static page (server/static) that uses only them.

Safety: uploads larger than MAX_UPLOAD_BYTES get 413 before they are read; images are decoded
by annorm_cli.images (pixel limit, one-sentence errors), and every size a request names (the
mask endpoint's width and height) is held to the same pixel limit; every number goes through the
checks the CLI and the Python API use (seeds, truncation); every bad input is a 4xx whose JSON
`detail` is one sentence of at most MAX_DETAIL characters (an input is quoted by a short prefix).
The model runs one request at a time; MAX_WAITING more may wait for it, and any beyond get 503
at once (a flood cannot pile up work or memory). Served on this machine's loopback, the app
answers only requests whose Host is that address (DNS rebinding) and refuses cross-origin
requests that change state (a web page the user visits cannot drive it). The client never names
a server path. Files: uploads larger than a megabyte are spooled by the multipart parser into the
temp folder `annorm serve` creates and removes; a truncation the server has not seen before has
its batch-norm statistics computed once and kept in annorm's cache folder, as the CLI keeps them
(pipelines.generation.standing_file: at most 64 files of a few KB).
"""
from __future__ import annotations

import base64
import contextlib
import threading
from pathlib import Path
from typing import Iterator, Optional

import numpy as np
from fastapi import APIRouter, FastAPI, File, Form, HTTPException, Request, UploadFile
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, Field

from annorm_cli.errors import AnnormError

STATIC = Path(__file__).parent / "static"
MAX_UPLOAD_BYTES = 32 * 2 ** 20      # a request body larger than this gets 413
MAX_WAITING = 4                      # requests that may wait while the model works; more get 503
MAX_SAMPLES = 256                    # samples per generate request
MAX_DETAIL = 300                     # characters of an error's detail
TOP_ENTITIES = 16                    # entity maps per AN layer on the layout page


class ModelGate:
    """One request on the model at a time, at most `waiting` more queued; beyond that, 503.
    The model runs with the thread count of the thread that made the gate (torch's thread count
    is per thread: a worker thread would use all cores, and a reduction over another number of
    threads can change the last bit of a result the CLI computes)."""

    def __init__(self, waiting: int = MAX_WAITING) -> None:
        import torch
        self.lock = threading.Lock()
        self.slots = threading.BoundedSemaphore(waiting + 1)
        self.threads = torch.get_num_threads()

    @contextlib.contextmanager
    def __call__(self) -> Iterator[None]:
        if not self.slots.acquire(blocking=False):
            raise HTTPException(503, "The server is busy with other requests; try again in a moment.",
                                headers={"Retry-After": "2"})
        try:
            with self.lock:
                import torch
                torch.set_num_threads(self.threads)
                yield
        finally:
            self.slots.release()


class SameOrigin:
    """ASGI middleware: with `hosts` (the Host header values of the address the server is bound
    to), any other Host gets 421 (a DNS-rebinding page names its own host); a request that can
    change state (not GET, HEAD or OPTIONS) whose Origin is another site, or that the browser
    marks cross-site (Sec-Fetch-Site), gets 403. Without `hosts` (served beyond this machine) only
    the cross-origin rule holds."""

    SAFE_METHODS = ("GET", "HEAD", "OPTIONS")

    def __init__(self, app, hosts: Optional[frozenset[str]] = None) -> None:
        self.app, self.hosts = app, hosts

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        headers = {k.lower(): v.decode("latin-1") for k, v in scope["headers"]}
        host = headers.get(b"host", "").lower()
        if self.hosts is not None and host not in self.hosts:
            return await JSONResponse({"detail": "This server answers only to the address it listens on; open "
                                                 "that address instead."}, status_code=421)(scope, receive, send)
        if scope["method"] not in self.SAFE_METHODS and _cross_origin(headers, host):
            return await JSONResponse({"detail": "Requests from another site are refused; use the page this "
                                                 "server serves."}, status_code=403)(scope, receive, send)
        return await self.app(scope, receive, send)


def _cross_origin(headers: dict, host: str) -> bool:
    """Whether a browser says the request comes from another site than `host` (Origin, Sec-Fetch-Site)."""
    from urllib.parse import urlsplit
    if headers.get(b"sec-fetch-site", "same-origin") not in ("same-origin", "none"):
        return True
    origin = headers.get(b"origin")
    return origin is not None and urlsplit(origin).netloc.lower() != host


def local_hosts(host: str, port: int) -> Optional[frozenset[str]]:
    """The Host header values a server bound to loopback `host`:`port` answers to (None: bound
    beyond this machine, any name may reach it)."""
    names = {"127.0.0.1": ("127.0.0.1", "localhost"), "localhost": ("127.0.0.1", "localhost", "[::1]"),
             "::1": ("[::1]", "localhost")}.get(host)
    if names is None:
        return None
    return frozenset(f"{name}:{port}" for name in names) | (frozenset(names) if port == 80 else frozenset())


class BodyLimit:
    """ASGI middleware: a request body over `limit` bytes gets 413 (by its Content-Length before
    anything is read, or as soon as a streamed body passes the limit)."""

    def __init__(self, app, limit: int = MAX_UPLOAD_BYTES) -> None:
        self.app, self.limit = app, limit

    def message(self) -> str:
        return f"The upload is larger than the server's limit of {self.limit // 2 ** 20} MB; send a smaller file."

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        length = dict(scope["headers"]).get(b"content-length")
        if length is not None and (not length.isdigit() or int(length) > self.limit):
            return await JSONResponse({"detail": self.message()}, status_code=413)(scope, receive, send)
        received = 0

        async def limited():
            nonlocal received
            message = await receive()
            received += len(message.get("body", b""))
            if received > self.limit:
                raise HTTPException(413, self.message())
            return message
        return await self.app(scope, limited, send)


def _b64_png(pixels: np.ndarray, text: Optional[dict] = None) -> str:
    from annorm_cli.images import png_bytes
    return base64.b64encode(png_bytes(pixels, text=text)).decode("ascii")


def _png(pixels: np.ndarray, text: Optional[dict] = None) -> Response:
    from annorm_cli.images import png_bytes
    return Response(png_bytes(pixels, text=text, compress_level=1), media_type="image/png")


def _read_upload(upload: UploadFile) -> bytes:
    return upload.file.read(MAX_UPLOAD_BYTES + 1)


class GenerateRequest(BaseModel):
    classes: list[str] = Field(["all"], description="Class names or indices, or ['all'].")
    seed: int = Field(0, ge=0, le=2 ** 63 - 1, description="The first seed.")
    count: int = Field(8, ge=1, le=64, description="Consecutive seeds per class.")
    truncation: Optional[float] = Field(None, description="Truncated-normal latent |z| <= T, from 0.1 to 4.")
    model: Optional[str] = Field(None, description="Registry name (default cifar10-an).")


class Models:
    """The models the app has loaded (on first use; they stay loaded) and its device."""

    def __init__(self, device: str) -> None:
        self.device_name = device
        self.loaded: dict[tuple[Optional[str], str], tuple] = {}

    def __call__(self, name: Optional[str], task: str) -> tuple:
        from annorm_cli import weights
        key = (name or None, task)
        if key not in self.loaded:
            self.loaded[key] = weights.load(name or None, None, task=task)
        return self.loaded[key]

    @property
    def device(self):
        from annorm_cli.device import resolve_device
        return resolve_device(self.device_name)


def create_app(device: str = "auto", hosts: Optional[frozenset[str]] = None) -> FastAPI:
    """The app: the API routes, the page, one-sentence errors, the body limit, the same-origin
    rules (SameOrigin; `hosts` from local_hosts) and the model gate."""
    from annorm_cli import __version__
    app = FastAPI(title="annorm", version=__version__, docs_url=None, redoc_url=None,
                  description="Generate, inpaint and look inside Attentive Normalization. The page at / "
                              "uses only these endpoints; every error's `detail` is one sentence.")
    app.add_middleware(BodyLimit)
    app.add_middleware(SameOrigin, hosts=hosts)
    app.state.gate, app.state.models = ModelGate(), Models(device)
    app.add_exception_handler(AnnormError, _annorm_error)
    app.add_exception_handler(RequestValidationError, _invalid_request)
    app.include_router(router)
    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    return app


def _short(text: str) -> str:
    return text if len(text) <= MAX_DETAIL else text[:MAX_DETAIL - 4] + " ..."


async def _annorm_error(request: Request, exc: AnnormError) -> JSONResponse:
    return JSONResponse({"detail": _short(str(exc))}, status_code=400)


async def _invalid_request(request: Request, exc: RequestValidationError) -> JSONResponse:
    first = exc.errors()[0]
    where = ".".join(str(part) for part in first.get("loc", ())[1:]) or "request"
    return JSONResponse({"detail": _short(f"The field '{where[:40]}' is not valid: {first.get('msg', 'bad value')}.")},
                        status_code=422)


router = APIRouter()


@router.get("/", include_in_schema=False)
def page():
    return FileResponse(STATIC / "index.html")


@router.get("/docs", include_in_schema=False)
def docs():
    return FileResponse(STATIC / "docs.html")


@router.get("/api/models", summary="The shipped models (as `annorm models`)")
def models() -> list[dict]:
    from annorm_cli import weights
    rows = []
    for entry in weights.REGISTRY.values():
        row = {"name": entry.name, "task": entry.task, "description": entry.description}
        with contextlib.suppress(AnnormError, OSError, ValueError):
            row["classes"] = weights.read_card(weights.weights_dir() / entry.card_file).get("classes", [])
        rows.append(row)
    return rows


@router.post("/api/inpaint", summary="Fill the hole of a photo (as annorm_cli.inpaint); returns the PNG",
             responses={200: {"content": {"image/png": {}}}})
def inpaint(request: Request, image: UploadFile = File(..., description="The photo."),
            mask: UploadFile = File(..., description="Its mask: white or transparent = hole; any size of the "
                                                     "photo's aspect ratio."),
            model: Optional[str] = Form(None), seed: int = Form(0, ge=0, le=2 ** 63 - 1),
            texture: bool = Form(True)) -> Response:
    from annorm_cli.images import read_image, read_mask
    from annorm_cli.pipelines import inpaint_array, inpaint_text
    photo = read_image(_read_upload(image), name=image.filename or "image")
    hole = read_mask(_read_upload(mask), photo.shape[:2], name=mask.filename or "mask")
    state = request.app.state
    with state.gate():
        network, card = state.models(model, "inpaint")
        filled = inpaint_array(network, photo, hole, device=state.models.device, texture=texture, seed=seed)
    return _png(filled, inpaint_text(model or "scenes-inpaint-an", card["sha256"]))


@router.post("/api/mask", summary="A mask file read as the CLI reads it, at the photo's size: hole opaque white, "
                                  "the rest transparent (PNG)", responses={200: {"content": {"image/png": {}}}})
def mask(mask: UploadFile = File(...), width: int = Form(..., ge=1, le=100_000),
         height: int = Form(..., ge=1, le=100_000)) -> Response:
    from annorm_cli.images import MAX_PIXELS, png_rgba, read_mask
    if width * height > MAX_PIXELS:
        raise HTTPException(413, f"A {width}x{height} mask is above the limit of {MAX_PIXELS:,} pixels that "
                                 "uploads have too.")
    hole = read_mask(_read_upload(mask), (height, width), name=mask.filename or "mask")
    return Response(png_rgba(hole), media_type="image/png")


@router.post("/api/generate", summary="Class-conditional samples (as annorm_cli.generate); each PNG carries "
                                      "the text chunks `annorm generate --from-png` reads")
def generate(request: Request, body: GenerateRequest) -> dict:
    from annorm_cli import weights
    from annorm_cli.pipelines import check_seed, check_truncation, class_index, generate_images, sample_text
    check_seed(body.seed + body.count - 1, f"The last seed ({body.seed} + {body.count} - 1)")
    check_truncation(body.truncation)
    state = request.app.state
    with state.gate():
        generator, card = state.models(body.model, "class-conditional")
        names = list(generator.config.class_names)
        wanted = list(range(len(names))) if [c.lower() for c in body.classes] == ["all"] else \
            [class_index(c, names) for c in body.classes]
        if len(wanted) * body.count > MAX_SAMPLES:
            raise HTTPException(400, f"That is {len(wanted) * body.count} samples; ask for at most "
                                     f"{MAX_SAMPLES} per request.")
        pairs = [(c, s) for c in wanted for s in range(body.seed, body.seed + body.count)]
        images = generate_images(generator, [c for c, _ in pairs], [s for _, s in pairs],
                                 truncation=body.truncation, device=state.models.device)
    name = body.model or weights.DEFAULT_MODEL["class-conditional"]
    return {"samples": [{"class": names[c], "seed": s,
                         "png": _b64_png(pixels, sample_text(name, card["sha256"], names[c], s, body.truncation))}
                        for (c, s), pixels in zip(pairs, images)]}


@router.post("/api/layouts", summary="What the AN layers saw (as annorm_cli.layouts): for a generated sample "
                                     "(class_name + seed) or a photo and its mask")
def layouts(request: Request, class_name: Optional[str] = Form(None), seed: int = Form(0, ge=0, le=2 ** 63 - 1),
            truncation: Optional[float] = Form(None), image: Optional[UploadFile] = File(None),
            mask: Optional[UploadFile] = File(None), model: Optional[str] = Form(None)) -> dict:
    from annorm_cli import pipelines
    from annorm_cli.images import read_image, read_mask
    pipelines.check_truncation(truncation)
    if (image is None) != (mask is None):
        raise HTTPException(400, "A photo's layouts need both the image and its mask.")
    if image is None and class_name is None:
        raise HTTPException(400, "Give a class_name and seed, or an image and its mask.")
    state = request.app.state
    if image is not None:
        photo = read_image(_read_upload(image), name=image.filename or "image")
        hole = read_mask(_read_upload(mask), photo.shape[:2], name=mask.filename or "mask")
        with state.gate():
            result = pipelines.inpainting_layouts(state.models(model, "inpaint")[0], photo, hole)
        return _layout_json(result, scale=1)
    with state.gate():
        generator, _ = state.models(model, "class-conditional")
        index = pipelines.class_index(class_name, generator.config.class_names)
        result = pipelines.generator_layouts(generator, index, seed, truncation=truncation)
    return _layout_json(result, scale=8)


def _layout_json(result, scale: int) -> dict:
    """The arrays `annorm visualize-layout` writes, as PNGs (base64) plus each layer's argmax grid."""
    from annorm_cli import visualize
    picture = result.image.repeat(scale, 0).repeat(scale, 1)
    layers = []
    for name, layout in result.layouts.items():
        hard = visualize.hard_layout(layout, picture.shape[:2])
        shares = visualize.entity_shares(layout)
        layers.append({
            "name": name,
            "hard": _b64_png(hard),
            "blend": _b64_png((0.5 * picture + 0.5 * hard).astype(np.uint8)),
            "argmax": layout.argmax(0).tolist(),                      # [h][w] entity per layout cell
            "colours": visualize.palette(layout.shape[0]).tolist(),
            "entities": [{"index": i, "share": float(shares[i]),
                          "heat": _b64_png(visualize.entity_heat(layout, i, picture))}
                         for i in visualize.ranked_entities(layout, TOP_ENTITIES)],
        })
    return {"image": _b64_png(picture), "width": int(picture.shape[1]), "height": int(picture.shape[0]),
            "layers": layers}
