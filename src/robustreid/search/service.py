"""The search service: a FastAPI app over one index folder, and the page it serves.

``create_app(index_dir, token=None, embedder=None)`` builds the app (FastAPI's tutorial layout: one ``app``,
routes by resource, pydantic response models); it holds no state beyond the opened index, its embedder and
one lock. ``robustreid serve`` runs it with uvicorn.

Routes (when a token is set, every route but the page and its ``/static/`` files needs
``Authorization: Bearer <token>``; it is checked before the request body is read, and there is no
``/openapi.json`` then):

====================================  =================================================================
``GET /``                              the search page (``static/``: HTML, JS, CSS; no CDN)
``POST /api/search``                   multipart: ``image`` (a crop) or ``tracklet`` (an id), ``k`` -> hits
``POST /api/search/tracklet/{id}``     the hits of a stored tracklet's descriptor (``?k=``)
``GET /api/tracklets/{id}``            one tracklet: camera, frames, times, boxes, thumbnail URL
``GET /api/cameras``                   per camera: tracklets, first / last frame and time
``GET /api/info``                      the index: model, dimension, store, counts
``GET /thumbnails/{id}``               a tracklet's thumbnail (JPEG), found by its integer id only
====================================  =================================================================

Every error is a 4xx (or, for a fault of ours, a 500) with a one-line JSON body ``{"detail": "..."}``, never a
traceback. A search runs the same functions as ``robustreid search`` (:func:`.query.search_image`,
:func:`.query.search_tracklet`), the embedding and the vector search under one lock: on 2 cores a second model
run at the same time only slows both, so concurrent requests queue (uvicorn's thread pool) instead of failing.
"""

from __future__ import annotations

import secrets
import threading
import time
from pathlib import Path
from typing import Annotated

from fastapi import FastAPI, File, Form, HTTPException, Query, Request, UploadFile
from fastapi import Path as PathParam
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel
from starlette.exceptions import HTTPException as StarletteHTTPException

from .embedding import Embedder, check_matches, load_embedder
from .index import MAX_ID, Hit, SearchIndex, open_index
from .query import (
    MAX_PIXELS,
    MAX_UPLOAD_BYTES,
    QueryError,
    check_k,
    decode_image,
    search_image,
    search_tracklet,
)

__all__ = ["STATIC_DIR", "CameraOut", "HitOut", "SearchOut", "TrackletOut", "create_app"]

STATIC_DIR = Path(__file__).resolve().parent / "static"
_FORM_OVERHEAD = 64 * 1024  # multipart boundaries and the small fields around the image
TrackletId = Annotated[int, PathParam(ge=0, le=MAX_ID)]  # SQLite's integer range: no OverflowError, a 422


class HitOut(BaseModel):
    tracklet_id: int
    camera: str
    first_frame: int
    last_frame: int
    first_time: float | None
    last_time: float | None
    distance: float
    label: str | None = None
    thumbnail_url: str


class SearchOut(BaseModel):
    query: dict
    k: int
    hits: list[HitOut]
    seconds: float


class CameraOut(BaseModel):
    id: int
    name: str
    tracklets: int
    first_frame: int | None
    last_frame: int | None
    first_time: float | None
    last_time: float | None


class TrackletOut(BaseModel):
    id: int
    camera: str
    track_id: int | None
    first_frame: int
    last_frame: int
    first_time: float | None
    last_time: float | None
    num_boxes: int
    boxes: list[list[float]]
    label: str | None
    thumbnail_url: str


def _hit_out(hit: Hit) -> HitOut:
    return HitOut(**hit.as_dict(), thumbnail_url=f"/thumbnails/{hit.tracklet_id}")


class _TokenGuard:
    """ASGI middleware: with a ``token``, every HTTP request but the page (``/``) and its ``/static/`` files
    needs ``Authorization: Bearer <token>`` (a 401 otherwise). A middleware, not a route dependency, so the
    check comes before the body is read, and no route can be added without it."""

    def __init__(self, app, token: str | None):
        self.app, self.token = app, token

    async def __call__(self, scope, receive, send):
        path = scope.get("path", "")
        if (scope["type"] != "http" or self.token is None or path == "/" or path.startswith("/static/")
                or _bearer_ok(dict(scope.get("headers") or []).get(b"authorization", b""), self.token)):
            return await self.app(scope, receive, send)
        response = JSONResponse({"detail": "missing or wrong token: send Authorization: Bearer <token>"},
                                status_code=401, headers={"WWW-Authenticate": "Bearer"})
        return await response(scope, receive, send)


def _bearer_ok(header: bytes, token: str) -> bool:
    scheme, _, given = header.decode("latin-1").partition(" ")
    return scheme.lower() == "bearer" and secrets.compare_digest(given.strip().encode(), token.encode())


class _BodyLimit:
    """ASGI middleware: a request body over ``limit`` bytes is a 413 before it is read (by Content-Length) or
    while it is read (a chunked body), so an upload never fills the disk or the memory."""

    def __init__(self, app, limit: int):
        self.app, self.limit = app, limit

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        length = dict(scope.get("headers") or []).get(b"content-length")
        if length is not None and length.isdigit() and int(length) > self.limit:
            response = JSONResponse({"detail": f"request body of {int(length)} bytes, more than the limit of "
                                               f"{self.limit}"}, status_code=413)
            return await response(scope, receive, send)
        seen = 0

        async def limited():
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.limit:  # an HTTPException passes FastAPI's body parsing unchanged
                    raise HTTPException(413, f"request body over the limit of {self.limit} bytes")
            return message

        return await self.app(scope, limited, send)


def _one_line(errors) -> str:
    """A validation error list as one line: ``k: Input should be a valid integer``."""
    parts = []
    for err in errors[:3]:
        where = ".".join(str(x) for x in err.get("loc", ()) if x not in ("body", "query", "path", "form"))
        parts.append(f"{where}: {err.get('msg', 'invalid')}" if where else str(err.get("msg", "invalid")))
    return "; ".join(parts) or "invalid request"


def create_app(index_dir, token: str | None = None, embedder: Embedder | None = None, *, device=None,
               max_upload_bytes: int = MAX_UPLOAD_BYTES, max_pixels: int = MAX_PIXELS) -> FastAPI:
    """The app over the index in ``index_dir`` (module docstring). ``embedder``: what embeds uploaded crops
    (default: the one the index was built with, :func:`embedding.load_embedder`); ``token``: the bearer token
    every API call must carry (None: none needed, for a loopback-only server)."""
    index: SearchIndex = open_index(index_dir)
    embed = embedder if embedder is not None else load_embedder(index.meta["checkpoint"], device=device)
    check_matches(embed, index.meta, str(index_dir))
    compute = threading.Lock()

    app = FastAPI(title="robustreid search", version="1", docs_url=None, redoc_url=None,
                  openapi_url=None if token is not None else "/openapi.json")
    app.add_middleware(_BodyLimit, limit=max_upload_bytes + _FORM_OVERHEAD)
    app.add_middleware(_TokenGuard, token=token)  # added last: runs first
    app.state.index, app.state.embedder = index, embed

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException):
        detail = exc.detail if isinstance(exc.detail, str) else str(exc.detail)
        return JSONResponse({"detail": " ".join(detail.split())}, status_code=exc.status_code,
                            headers=getattr(exc, "headers", None))

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError):
        return JSONResponse({"detail": _one_line(exc.errors())}, status_code=422)

    @app.exception_handler(QueryError)
    async def query_error(request: Request, exc: QueryError):
        return JSONResponse({"detail": str(exc)}, status_code=exc.status)

    @app.exception_handler(Exception)
    async def internal_error(request: Request, exc: Exception):  # a fault of ours: one line, no traceback
        return JSONResponse({"detail": f"internal error ({type(exc).__name__})"}, status_code=500)

    def run_search(hits_of, k: int, query: dict) -> SearchOut:
        start = time.perf_counter()
        with compute:  # one model run / one matrix product at a time (module docstring)
            hits = hits_of()
        if hits is None:
            raise HTTPException(404, f"no tracklet {query['tracklet']} in the index")
        return SearchOut(query=query, k=k, hits=[_hit_out(h) for h in hits],
                         seconds=round(time.perf_counter() - start, 4))

    @app.post("/api/search", response_model=SearchOut)
    def search(image: Annotated[UploadFile | None, File()] = None,
               tracklet: Annotated[int | None, Form(ge=0, le=MAX_ID)] = None,
               k: Annotated[int, Form()] = 20) -> SearchOut:
        k = check_k(k)
        if (image is None) == (tracklet is None):
            raise QueryError("expected one of the fields image (a crop to upload) or tracklet (an id)", 422)
        if tracklet is not None:
            return run_search(lambda: search_tracklet(index, tracklet, k), k, {"tracklet": tracklet})
        data = image.file.read(max_upload_bytes + 1)
        name = image.filename or "image"
        pixels = decode_image(data, max_bytes=max_upload_bytes, max_pixels=max_pixels, name=name)
        return run_search(lambda: search_image(index, embed, pixels, k), k, {"image": name})

    @app.post("/api/search/tracklet/{tracklet_id}", response_model=SearchOut)
    def search_by_tracklet(tracklet_id: TrackletId, k: Annotated[int, Query()] = 20) -> SearchOut:
        k = check_k(k)
        return run_search(lambda: search_tracklet(index, tracklet_id, k), k, {"tracklet": tracklet_id})

    @app.get("/api/tracklets/{tracklet_id}", response_model=TrackletOut)
    def get_tracklet(tracklet_id: TrackletId) -> TrackletOut:
        row = index.tracklet(tracklet_id)
        if row is None:
            raise HTTPException(404, f"no tracklet {tracklet_id} in the index")
        fields = {name: row[name] for name in TrackletOut.model_fields if name in row}
        return TrackletOut(**fields, thumbnail_url=f"/thumbnails/{tracklet_id}")

    @app.get("/api/cameras", response_model=list[CameraOut])
    def get_cameras() -> list[CameraOut]:
        return [CameraOut(**c) for c in index.cameras()]

    @app.get("/api/info")
    def get_info() -> dict:
        info = index.info()
        return {key: info[key] for key in ("checkpoint", "dim", "store", "model_sha256", "generation",
                                           "sources", "tracklets")} | {"cameras": len(info["cameras"]),
                                                                       "token": token is not None}

    @app.get("/thumbnails/{tracklet_id}")
    def thumbnail(tracklet_id: TrackletId) -> FileResponse:
        path = index.thumbnail_path(tracklet_id)
        if path is None:
            raise HTTPException(404, f"no thumbnail for tracklet {tracklet_id}")
        return FileResponse(path, media_type="image/jpeg")

    @app.get("/", include_in_schema=False)
    def page() -> FileResponse:
        return FileResponse(STATIC_DIR / "index.html", media_type="text/html")

    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
    return app
