"""The op libraries, imported without the optional extras none of our ops reach.

nlpaug and albumentations each import torch when it is installed, nlpaug also librosa
and matplotlib, albumentations also huggingface_hub, all behind `try: import ... except
ImportError`: nlpaug for its model augmenters' sampling helpers and an audio plot,
albumentations for `ToTensorV2` and for sharing pipelines on the Hub.
Our ops use nlpaug's character augmenters and albumentations' image transforms only, so
those imports buy nothing, and torch alone costs seconds in every fresh process (a
worker, or a rerun with a few misses: docs/ARCHITECTURE.md, "Execution settings").

`import_op_library` imports a library with its extras marked absent (`sys.modules[name]
= None`, which makes `import name` raise ModuleNotFoundError, an ImportError the
libraries catch) and unmarks them afterwards, so a later `import torch` anywhere in the
process works as usual. An extra already imported is left alone: the library then sees
it, as it would without us.
"""

from __future__ import annotations

import importlib
import os
import sys
import threading
from types import ModuleType

# The extras each library imports only for code our ops never run.
OPTIONAL_EXTRAS: dict[str, tuple[str, ...]] = {
    "nlpaug": ("torch", "librosa", "matplotlib"),
    "albumentations": ("torch", "huggingface_hub"),
}

# Modules a library imports unconditionally, only for code our ops never run: an empty
# module stands in for each while the library is imported, and is taken out of
# sys.modules afterwards (a later `import gdown` anywhere gets the real one). nlpaug's util
# package, which every augmenter imports, imports gdown (Google Drive downloads of
# word-vector models) and with it bs4, soupsieve, filelock: ~0.15 s of CPU per process;
# its character augmenters never download.
STAND_INS: dict[str, tuple[str, ...]] = {
    "nlpaug": ("gdown",),
}

# Another thread importing an extra while it is marked absent would get an ImportError.
_LOCK = threading.Lock()


def import_op_library(module: str) -> ModuleType:
    """Return `module` (e.g. "nlpaug.augmenter.char"), imported without its library's extras."""
    loaded = sys.modules.get(module)
    if loaded is not None:
        return loaded
    library = module.partition(".")[0]
    if library == "albumentations":
        # Otherwise every first import asks PyPI for a newer version (up to 2 s, or a
        # warning, per process); a data job must not depend on the network for that.
        os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")
    with _LOCK:
        marked = [name for name in OPTIONAL_EXTRAS.get(library, ()) if name not in sys.modules]
        for name in marked:
            sys.modules[name] = None  # type: ignore[assignment]
        stand_ins = {
            name: ModuleType(name, f"stands in for {name} while {library} is imported")
            for name in STAND_INS.get(library, ())
            if name not in sys.modules
        }
        sys.modules.update(stand_ins)
        try:
            return importlib.import_module(module)
        finally:
            for name in marked:
                if name in sys.modules and sys.modules[name] is None:
                    del sys.modules[name]
            for name, stand_in in stand_ins.items():
                if sys.modules.get(name) is stand_in:
                    del sys.modules[name]
