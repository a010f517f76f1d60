"""The Croissant 1.1 description of a dataset version, with the Responsible-AI extension.

Built as plain JSON-LD (no mlcroissant import at run time: it is slow to import and only
needed to check the result, which the tests do). Every shard is one `cr:FileObject` with
its sha256; one `cr:FileSet` per shard format gathers them for the record set.

mlcroissant 1.1.1 reads records from Parquet but not from Arrow IPC files, so for the
default `arrow` output the description validates but `mlcroissant` cannot iterate its
records; `datasets.load_dataset` on the version folder is the reader for those.
"""

from __future__ import annotations

import posixpath
from typing import Any

CROISSANT_1_1 = "http://mlcommons.org/croissant/1.1"
RAI_1_0 = "http://mlcommons.org/croissant/RAI/1.0"

# The standard Croissant 1.1 @context (as mlcroissant's `make_context` builds it for 1.1),
# plus the `rai:` prefix of the Responsible-AI vocabulary.
CROISSANT_CONTEXT: dict[str, Any] = {
    "@language": "en",
    "@vocab": "https://schema.org/",
    "arrayShape": "cr:arrayShape",
    "citeAs": "cr:citeAs",
    "column": "cr:column",
    "conformsTo": "dct:conformsTo",
    "containedIn": "cr:containedIn",
    "cr": "http://mlcommons.org/croissant/",
    "rai": "http://mlcommons.org/croissant/RAI/",
    "data": {"@id": "cr:data", "@type": "@json"},
    "dataType": {"@id": "cr:dataType", "@type": "@vocab"},
    "dct": "http://purl.org/dc/terms/",
    "description": {"@container": "@language"},
    "equivalentProperty": "cr:equivalentProperty",
    "examples": {"@id": "cr:examples", "@type": "@json"},
    "extract": "cr:extract",
    "field": "cr:field",
    "fileProperty": "cr:fileProperty",
    "fileObject": "cr:fileObject",
    "fileSet": "cr:fileSet",
    "format": "cr:format",
    "includes": "cr:includes",
    "isArray": "cr:isArray",
    "isLiveDataset": "cr:isLiveDataset",
    "jsonPath": "cr:jsonPath",
    "key": "cr:key",
    "md5": "cr:md5",
    "name": {"@container": "@language"},
    "parentField": "cr:parentField",
    "path": "cr:path",
    "recordSet": "cr:recordSet",
    "references": "cr:references",
    "regex": "cr:regex",
    "repeated": "cr:repeated",
    "replace": "cr:replace",
    "samplingRate": "cr:samplingRate",
    "sc": "https://schema.org/",
    "separator": "cr:separator",
    "source": "cr:source",
    "subField": "cr:subField",
    "transform": "cr:transform",
}

# MIME types: Arrow IPC file format is registered with IANA; Parquet uses Croissant's own.
ENCODING_FORMATS = {
    ".arrow": "application/vnd.apache.arrow.file",
    ".parquet": "application/x-parquet",
}

# Responsible-AI properties this module writes, by their short name in `rai`.
RAI_PROPERTIES = (
    "dataCollection",
    "dataCollectionType",
    "dataPreprocessingProtocol",
    "dataManipulationProtocol",
    "dataAnnotationProtocol",
    "dataUseCases",
    "dataBiases",
    "dataLimitations",
    "dataSocialImpact",
    "personalSensitiveInformation",
    "dataReleaseMaintenancePlan",
)

RECORD_SET = "records"
# `isArray` is the 1.1 way to say "a list of dataType"; mlcroissant 1.1.1 still casts list
# leaves element-wise only when the deprecated `repeated` is set too, so both are written.
_ARRAY = {"isArray": True, "repeated": True}
SPLIT_SET = "splits"


def shard_encoding_format(path: str) -> str:
    """Return the MIME type of a shard from its file extension."""
    ext = posixpath.splitext(path)[1].lower()
    try:
        return ENCODING_FORMATS[ext]
    except KeyError:
        raise ValueError(f"unsupported shard format: {path}") from None


def _file_set_id(ext: str) -> str:
    return f"shards{ext.replace('.', '-')}"


class CroissantBuilder:
    """Builds the Croissant JSON-LD dict of one dataset version from its manifest."""

    def __init__(
        self,
        manifest: dict[str, Any],
        *,
        description: str,
        languages: list[str],
        license_id: str,
        keywords: list[str],
        rai: dict[str, str | list[str]],
    ):
        unknown = set(rai) - set(RAI_PROPERTIES)
        if unknown:
            raise ValueError(f"unknown RAI properties: {sorted(unknown)}")
        self.manifest = manifest
        self.description = description
        self.languages = languages
        self.license_id = license_id
        self.keywords = keywords
        self.rai = rai

    def build(self) -> dict[str, Any]:
        """Return the Croissant 1.1 JSON-LD of the version, ready for `json.dump`."""
        m = self.manifest
        doc: dict[str, Any] = {
            "@context": CROISSANT_CONTEXT,
            "@type": "sc:Dataset",
            "conformsTo": [CROISSANT_1_1, RAI_1_0],
            "name": m["name"],
            "description": self.description,
            # Croissant asks for MAJOR.MINOR.PATCH; our versions are single integers.
            "version": f"{int(m['version'])}.0.0",
            "datePublished": m["created_at"],
            "license": self.license_id,
            "citeAs": self._cite_as(),
            "keywords": self.keywords,
            "identifier": f"sha256:{m['content_id']}",
            "distribution": self._distribution(),
            "recordSet": [self._split_record_set(), self._record_set()],
        }
        if self.languages:
            doc["inLanguage"] = self.languages
        for key, value in self.rai.items():
            doc[f"rai:{key}"] = value
        return doc

    def _cite_as(self) -> str:
        m = self.manifest
        key = "".join(c if c.isalnum() else "_" for c in m["name"])
        return (
            f"@misc{{{key}_v{m['version']}, title={{{m['name']} v{m['version']}}}, "
            f"note={{roleforge dataset version, content id {m['content_id']}}}, "
            f"year={{{str(m['created_at'])[:4]}}}}}"
        )

    def _distribution(self) -> list[dict[str, Any]]:
        files: list[dict[str, Any]] = []
        extensions: dict[str, None] = {}
        for shard in self.manifest["shards"]:
            path = shard["path"]
            ext = posixpath.splitext(path)[1].lower()
            extensions[ext] = None
            files.append(
                {
                    "@type": "cr:FileObject",
                    "@id": path,
                    "name": posixpath.basename(path),
                    "description": f"{shard['split']} shard, {shard['rows']} records.",
                    "contentUrl": path,
                    "contentSize": f"{int(shard['bytes'])} B",
                    "encodingFormat": shard_encoding_format(path),
                    "sha256": shard["sha256"],
                }
            )
        for ext in extensions:
            folder = posixpath.dirname(self.manifest["shards"][0]["path"])
            files.append(
                {
                    "@type": "cr:FileSet",
                    "@id": _file_set_id(ext),
                    "name": _file_set_id(ext),
                    "description": "All shards of this version; each record names its split.",
                    "encodingFormat": ENCODING_FORMATS[ext],
                    "includes": posixpath.join(folder, f"*-of-*{ext}"),
                }
            )
        return files

    def _split_record_set(self) -> dict[str, Any]:
        splits = sorted({s["split"] for s in self.manifest["shards"]}, key=_split_order)
        return {
            "@type": "cr:RecordSet",
            "@id": SPLIT_SET,
            "name": SPLIT_SET,
            "description": "The splits of this version.",
            "dataType": "cr:Split",
            "key": {"@id": f"{SPLIT_SET}/name"},
            "field": [
                {
                    "@type": "cr:Field",
                    "@id": f"{SPLIT_SET}/name",
                    "name": "name",
                    "dataType": "sc:Text",
                }
            ],
            "data": [{f"{SPLIT_SET}/name": s} for s in splits],
        }

    def _record_set(self) -> dict[str, Any]:
        ext = posixpath.splitext(self.manifest["shards"][0]["path"])[1].lower()
        column = _ColumnFields(_file_set_id(ext))
        return {
            "@type": "cr:RecordSet",
            "@id": RECORD_SET,
            "name": RECORD_SET,
            "description": (
                "One conversation sample per record: the character, the turns with "
                "<image>/<audio> placeholders, the media in placeholder order, and the "
                "augmentation that produced it (null for originals)."
            ),
            "key": {"@id": f"{RECORD_SET}/id"},
            "field": [
                column.leaf(
                    "id",
                    "sc:Text",
                    "Stable record id (hash of source key, or of parent id, recipe hash and copy).",
                ),
                column.leaf(
                    "parent_id",
                    "sc:Text",
                    "Id of the original an augmented variant derives from; null for originals.",
                ),
                column.leaf("source", "sc:Text", "Corpus name from the recipe."),
                {
                    **column.leaf("split", "sc:Text", "train, validation or test."),
                    "references": {"field": {"@id": f"{SPLIT_SET}/name"}},
                },
                column.struct(
                    "character",
                    "The persona the assistant plays (null when the corpus names none).",
                    [
                        ("name", "sc:Text", False),
                        ("profile", "sc:Text", False),
                        ("greeting", "sc:Text", False),
                        ("catchphrases", "sc:Text", True),
                        ("aliases", "sc:Text", True),
                    ],
                ),
                column.struct(
                    "messages",
                    "The turns, in order; the assistant speaks as the character.",
                    [
                        ("role", "sc:Text", False),
                        ("name", "sc:Text", False),
                        ("content", "sc:Text", False),
                    ],
                    is_array=True,
                ),
                column.media(
                    "images", "sc:ImageObject", "Encoded image bytes, in <image> placeholder order."
                ),
                column.media(
                    "audios", "sc:AudioObject", "Encoded audio bytes, in <audio> placeholder order."
                ),
                column.struct(
                    "augmentation",
                    "What was applied to make this variant, replayable (null for originals).",
                    [
                        ("recipe_hash", "sc:Text", False),
                        ("copy", "sc:Integer", False),
                        ("seed", "sc:Integer", False),
                    ],
                    extra=[
                        column.nested_struct(
                            "augmentation",
                            "ops",
                            "Applied ops with their drawn parameters (canonical JSON).",
                            [("modality", "sc:Text"), ("op", "sc:Text"), ("params", "sc:Text")],
                        )
                    ],
                ),
            ],
        }


class _ColumnFields:
    """Makes `cr:Field`s that extract columns (and nested values) from one FileSet."""

    def __init__(self, file_set: str):
        self.file_set = file_set

    def _source(self, column: str, *json_paths: str) -> dict[str, Any]:
        source: dict[str, Any] = {
            "fileSet": {"@id": self.file_set},
            "extract": {"column": column},
        }
        if json_paths:
            transforms = [{"jsonPath": p} for p in json_paths]
            source["transform"] = transforms[0] if len(transforms) == 1 else transforms
        return source

    def leaf(self, name: str, data_type: str, description: str) -> dict[str, Any]:
        return {
            "@type": "cr:Field",
            "@id": f"{RECORD_SET}/{name}",
            "name": name,
            "description": description,
            "dataType": data_type,
            "source": self._source(name),
        }

    def struct(
        self,
        name: str,
        description: str,
        children: list[tuple[str, str, bool]],
        *,
        is_array: bool = False,
        extra: list[dict[str, Any]] | None = None,
    ) -> dict[str, Any]:
        sub_fields = []
        for child, data_type, child_is_array in children:
            sub: dict[str, Any] = {
                "@type": "cr:Field",
                "@id": f"{RECORD_SET}/{name}/{child}",
                "name": child,
                "dataType": data_type,
                "source": self._source(name, child),
            }
            if child_is_array:
                sub.update(_ARRAY)
            sub_fields.append(sub)
        field: dict[str, Any] = {
            "@type": "cr:Field",
            "@id": f"{RECORD_SET}/{name}",
            "name": name,
            "description": description,
            "subField": sub_fields + (extra or []),
        }
        if is_array:
            field["isArray"] = True
        return field

    def nested_struct(
        self, parent: str, name: str, description: str, children: list[tuple[str, str]]
    ) -> dict[str, Any]:
        return {
            "@type": "cr:Field",
            "@id": f"{RECORD_SET}/{parent}/{name}",
            "name": name,
            "description": description,
            "isArray": True,
            "subField": [
                {
                    "@type": "cr:Field",
                    "@id": f"{RECORD_SET}/{parent}/{name}/{child}",
                    "name": child,
                    "dataType": data_type,
                    "source": self._source(parent, name, child),
                }
                for child, data_type in children
            ],
        }

    def media(self, name: str, data_type: str, description: str) -> dict[str, Any]:
        return {
            "@type": "cr:Field",
            "@id": f"{RECORD_SET}/{name}",
            "name": name,
            "description": description,
            "dataType": data_type,
            **_ARRAY,
            "source": self._source(name, "bytes"),
        }


def _split_order(split: str) -> tuple[int, str]:
    order = {"train": 0, "validation": 1, "test": 2}
    return (order.get(split, len(order)), split)
