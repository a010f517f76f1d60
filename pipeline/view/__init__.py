"""`roleforge view`: a local web page over a store's versions, rows, quarantine, quality
and models, reading shards on demand (see server.py for the HTTP side, site.py for pages)."""

from pipeline.view.server import ViewServer
from pipeline.view.site import Response, ViewSite
from pipeline.view.static import write_static_site

__all__ = ["Response", "ViewServer", "ViewSite", "write_static_site"]
