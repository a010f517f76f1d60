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

Two of nlpaug's imports are not optional: its base augmenter imports pandas (to hand a
DataFrame back as it came; our ops pass strings) and its file helpers import gdown (with
BeautifulSoup, to download models; character ops download nothing). Measured in a fresh
process, importing nlpaug's character augmenters took 145 MB resident and 1.8 s with
them, 47 MB and 0.5 s without: in every Ray worker and in-process run that runs a text op.
For those, `STAND_INS` puts a small module in their place while the library imports: the
names the library reads at run time answer as they would for our inputs (no value is an
instance of the stand-in's DataFrame), anything else raises an AttributeError that says
why. The stand-ins leave `sys.modules` after the import, like the marks above, so a later
`import pandas` gets pandas.

Two more are imported unconditionally for code an op may reach, but rarely: albumentations'
pixel transforms import scipy.special for one function of one transform (`j1` in
RingingOvershoot), nlpaug's file helpers import requests to download models. Together
~0.3 s of CPU (scipy.special pulls in scipy's array API layer) in a rerun that computes
20 records in-process. `DEFERRED` gives the library a module in their place that
imports the real one on its first attribute read and answers from it (the standard
library's `importlib.util.LazyLoader` does the same, but is not thread-safe before
Python 3.12 and leaves a half-loaded module in sys.modules); it leaves sys.modules after
the import, so a later `import requests` anywhere is the usual import.
"""

from __future__ import annotations

import importlib
import os
import sys
import threading
from types import ModuleType
from typing import Any

# The extras each library imports only for code our ops never run.
OPTIONAL_EXTRAS: dict[str, tuple[str, ...]] = {
    "nlpaug": ("torch", "librosa", "matplotlib"),
    "albumentations": ("torch", "huggingface_hub"),
}

# Modules a library imports unconditionally for code our ops never run, with the names
# its reachable code reads from them at run time: a stand-in (`_stand_in`) is imported in
# their place, and taken out of sys.modules afterwards (a later `import pandas` anywhere
# gets the real one). nlpaug: `isinstance(result, pd.DataFrame)` in every `augment`; its
# util package imports gdown (Google Drive downloads of word-vector models, with bs4,
# soupsieve, filelock: ~0.15 s of CPU per process); its character augmenters never download.
STAND_INS: dict[str, dict[str, tuple[str, ...]]] = {
    "nlpaug": {"pandas": ("DataFrame",), "gdown": ()},
}

# Modules a library imports unconditionally for code an op reaches rarely: a `_Deferred`
# module stands in while the library imports and imports the real one when first read.
DEFERRED: dict[str, tuple[str, ...]] = {
    "albumentations": ("scipy.special",),
    "nlpaug": ("requests",),
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
            name: _stand_in(name, library, names)
            for name, names in STAND_INS.get(library, {}).items()
            if name not in sys.modules
        }
        stand_ins.update(
            (name, _Deferred(name)) for name in DEFERRED.get(library, ()) if name not in sys.modules
        )
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


class _Deferred(ModuleType):
    """A module that imports the real module of its name when an attribute it lacks is
    first read, and answers every such read from it (`DEFERRED`)."""

    def __getattr__(self, attr: str) -> Any:
        name = self.__name__
        if sys.modules.get(name) is self:
            # Read while the library still imports: the real module replaces this one.
            del sys.modules[name]
        real = importlib.import_module(name)
        return getattr(real, attr)


def _stand_in(name: str, library: str, names: tuple[str, ...]) -> ModuleType:
    """Return a module `name` whose `names` are classes nothing is an instance of, and
    whose other attributes raise an AttributeError naming why the real module is absent."""
    module = ModuleType(
        name, f"Stand-in for {name} while {library} imports (augmenters.libraries)."
    )
    for attr in names:
        setattr(module, attr, type(attr, (), {"__module__": name}))

    def missing(attr: str) -> Any:
        raise AttributeError(
            f"{library} was imported with a stand-in for {name} (augmenters/libraries.py): "
            f"{name}.{attr} belongs to {library} code that roleforge's ops do not run"
        )

    module.__getattr__ = missing  # type: ignore[method-assign]
    return module
