"""The Croissant 1.1 description of a dataset version, with the Responsible-AI extension.

Built as plain JSON-LD (no mlcroissant import at run time: it is slow to import and only
needed to check the result, which the tests do). Every shard is one `cr:FileObject` with
its sha256; one `cr:FileSet` per shard format gathers them for the record set.

mlcroissant 1.1.1 reads records from Parquet (the default output) but has no Arrow reader,
so for `arrow` output the description validates but `mlcroissant` cannot iterate its
records; `datasets.load_dataset` on the version folder is the reader for those.
The record set's fields are derived from the record's Arrow schema and HF features.
"""

from __future__ import annotations

import posixpath
from typing import Any

import pyarrow as pa

from pipeline.record.schema import FIELD_DESCRIPTIONS, RECORD_SCHEMA, hf_features
from pipeline.store.manifest import Manifest

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

# MIME types: the Arrow IPC stream format is registered with IANA; Parquet uses Croissant's own.
ENCODING_FORMATS = {
    ".arrow": "application/vnd.apache.arrow.stream",
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
_MEDIA_TYPES = {"Image": "sc:ImageObject", "Audio": "sc:AudioObject"}


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
        manifest: Manifest,
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
            "name": m.name,
            "description": self.description,
            # Croissant asks for MAJOR.MINOR.PATCH; our versions are single integers.
            "version": f"{m.number}.0.0",
            "datePublished": m.created_at,
            "license": self.license_id,
            "citeAs": self._cite_as(),
            "keywords": self.keywords,
            "identifier": f"sha256:{m.content_id}",
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
        key = "".join(c if c.isalnum() else "_" for c in m.name)
        return (
            f"@misc{{{key}_v{m.version}, title={{{m.name} v{m.version}}}, "
            f"note={{roleforge dataset version, content id {m.content_id}}}, "
            f"year={{{m.created_at[:4]}}}}}"
        )

    def _distribution(self) -> list[dict[str, Any]]:
        files: list[dict[str, Any]] = []
        extensions: dict[str, None] = {}
        for shard in self.manifest.shards:
            path = shard.path
            ext = posixpath.splitext(path)[1].lower()
            extensions[ext] = None
            files.append(
                {
                    "@type": "cr:FileObject",
                    "@id": path,
                    "name": posixpath.basename(path),
                    "description": f"{shard.split} shard, {shard.rows} records.",
                    "contentUrl": path,
                    "contentSize": f"{shard.bytes} B",
                    "encodingFormat": shard_encoding_format(path),
                    "sha256": shard.sha256,
                }
            )
        for ext in extensions:
            folder = posixpath.dirname(self.manifest.shards[0].path)
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
        splits = sorted({s.split for s in self.manifest.shards if s.rows}, key=_split_order)
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
        ext = posixpath.splitext(self.manifest.shards[0].path)[1].lower()
        fields = RecordFields(_file_set_id(ext)).fields()
        for f in fields:
            if f["name"] == "split":
                f["references"] = {"field": {"@id": f"{SPLIT_SET}/name"}}
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
            "field": fields,
        }


class RecordFields:
    """The `cr:Field`s of the canonical record, derived from its Arrow schema and HF features
    (pipeline/record/schema.py), each extracting its column (and nested value) from one FileSet.
    """

    def __init__(self, file_set: str, schema: pa.Schema = RECORD_SCHEMA):
        self.file_set = file_set
        self.schema = schema
        self.features = hf_features()

    def fields(self) -> list[dict[str, Any]]:
        return [self._field([f.name], f.type, self.features[f.name]) for f in self.schema]

    def _source(self, path: list[str]) -> dict[str, Any]:
        source: dict[str, Any] = {
            "fileSet": {"@id": self.file_set},
            "extract": {"column": path[0]},
        }
        transforms = [{"jsonPath": p} for p in path[1:]]
        if transforms:
            source["transform"] = transforms[0] if len(transforms) == 1 else transforms
        return source

    def _field(self, path: list[str], arrow_type: pa.DataType, feature: Any) -> dict[str, Any]:
        field: dict[str, Any] = {
            "@type": "cr:Field",
            "@id": "/".join([RECORD_SET, *path]),
            "name": path[-1],
        }
        description = FIELD_DESCRIPTIONS.get(".".join(path))
        if description:
            field["description"] = description
        is_list = pa.types.is_list(arrow_type) or pa.types.is_large_list(arrow_type)
        item_type = arrow_type.value_type if is_list else arrow_type
        item_feature = feature["feature"] if is_list else feature
        media = item_feature.get("_type") if isinstance(item_feature, dict) else None
        if media in _MEDIA_TYPES:
            # A media list: the encoded bytes of each item.
            return {**field, "dataType": _MEDIA_TYPES[media], **_ARRAY,
                    "source": self._source([*path, "bytes"])}  # fmt: skip
        if pa.types.is_struct(item_type):
            field["subField"] = [
                self._field([*path, child.name], child.type, item_feature[child.name])
                for child in item_type
            ]
            if is_list:
                field["isArray"] = True
            return field
        field.update(dataType=_data_type(item_type), source=self._source(path))
        if is_list:
            field.update(_ARRAY)
        return field


def _data_type(arrow_type: pa.DataType) -> str:
    if pa.types.is_integer(arrow_type):
        return "sc:Integer"
    if pa.types.is_floating(arrow_type):
        return "sc:Float"
    if pa.types.is_boolean(arrow_type):
        return "sc:Boolean"
    if pa.types.is_string(arrow_type) or pa.types.is_large_string(arrow_type):
        return "sc:Text"
    raise ValueError(f"no Croissant data type for Arrow type {arrow_type}")


def _split_order(split: str) -> tuple[int, str]:
    order = {"train": 0, "validation": 1, "test": 2}
    return (order.get(split, len(order)), split)
