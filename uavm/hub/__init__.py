"""Models by name: where a name's bundle comes from.

A name is an embedded demo model (``uavm.assets``), one of the authors' released models
(``uavm.official.MODELS``: vggsound-uavm, ...), or ``hf-hub:ORG/NAME[@REVISION]``, a uavm
bundle in a Hugging Face Hub repository. ``resolve`` turns a name into a bundle folder,
``load`` into a Bundle.

A released model's first use fetches the four files it needs into the cache
(``$UAVM_CACHE``) under their release file names, from the mirror when one is given
(``--mirror`` / ``$UAVM_MIRROR``) and from nowhere else, else from the release's URLs, and
converts them into ``CACHE/bundles/NAME``; every later use is offline and checked.

The parts, each importing only those before it:
``integrity`` (the cache, hash records, SHA256SUMS, the lock), ``transfer`` (sources,
resumable HTTP and file transfer), ``fetch`` (``uavm download`` and ``--verify``),
``convert`` (released models into the cache), ``hfhub`` (Hub pull and push), ``names``
(names, ``resolve``, ``load``, the catalog).
"""
from .convert import ensure
from .fetch import download, verify
from .hfhub import HF, from_hf_hub, push, self_contained
from .integrity import SUMS, IntegrityError, cache_dir, check_file, check_folder, reseal
from .names import available, catalog, converted, is_name, load, names, resolve
from .transfer import TRIES, DownloadError

__all__ = [
    "HF", "SUMS", "TRIES", "DownloadError", "IntegrityError", "available", "cache_dir", "catalog", "check_file", "check_folder",
    "converted", "download", "ensure", "from_hf_hub", "is_name", "load", "names", "push", "reseal", "resolve",
    "self_contained", "verify",
]
