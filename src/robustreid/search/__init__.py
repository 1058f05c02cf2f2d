"""Person search across cameras: an index of tracklets (SQLite metadata + a vector store), queried from the
command line (``robustreid index`` / ``search``) or over HTTP with a page (``robustreid serve``).

* :mod:`.store`: the vector store behind one small interface (exact NumPy by default; FAISS kinds);
* :mod:`.index`: the index folder, SQLite metadata and atomic adds;
* :mod:`.embedding`: a model or the colour histogram as the index's embedder;
* :mod:`.build`: entries from a camera's sequence (through the tracker) or from crops;
* :mod:`.query`: a query image checked, decoded and searched;
* :mod:`.service`: the FastAPI app and its page (``static/``), needs ``robustreid[search]``.

The service is not imported here, so the index and the command line need no web packages.
"""

from .build import crop_tracklets, expand_sequences, sequence_tracklets
from .embedding import Embedder, load_embedder
from .index import Hit, SearchIndex, SourceTracklets, Tracklet, build_index, create_index, open_index
from .query import QueryError, decode_image, search_image, search_tracklet
from .store import DEFAULT_STORE, STORES, load_store, make_store

__all__ = [
    "DEFAULT_STORE",
    "STORES",
    "Embedder",
    "Hit",
    "QueryError",
    "SearchIndex",
    "SourceTracklets",
    "Tracklet",
    "build_index",
    "create_index",
    "crop_tracklets",
    "decode_image",
    "expand_sequences",
    "load_embedder",
    "load_store",
    "make_store",
    "open_index",
    "search_image",
    "search_tracklet",
    "sequence_tracklets",
]
