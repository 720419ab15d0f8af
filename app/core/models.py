"""Datapoint models that follow MADSci 0.8.x field for field.

A document written by MADSci validates here and ours validate there: ``_id`` on the wire
(``datapoint_id`` accepted on input), ``data_type`` one of ``json``/``file``/
``object_storage``, ownership ids as ULIDs, extra fields allowed and kept. Differences,
all compatible: file datapoints carry the file facts (``filename``, ``size_bytes``,
``content_type``, ``sha256``) that MADSci accepts as extra fields.

``data_timestamp`` is what MADSci's is: the datetime in the form it was sent (naive local
wall time by default, as ``datetime.now()``; an offset is kept) and serialised as MADSci
writes it. Its true instant is :attr:`DataPoint.data_instant` (see ``app.core.timestamps``
for the rules); the store and sync pin it from what they recorded.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, ClassVar, Literal, Optional, Union

from pydantic import (
    AliasChoices,
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    PrivateAttr,
    Tag,
    field_serializer,
    field_validator,
    model_serializer,
)
from pydantic import SerializerFunctionWrapHandler

from app.core.datatype import DataPointTypeEnum
from app.core.ids import OWNERSHIP_FIELDS, is_ulid, new_ulid
from app.core.timestamps import (
    as_utc,
    format_canonical,
    local_now,
    madsci_text,
    parse_as_sent,
    parse_timestamp,
)


def _optional_ulid(value: Optional[str], info: Any) -> Optional[str]:
    if value is None:
        return None
    if not is_ulid(value):
        raise ValueError(
            f"{info.field_name} must be a ULID, got {value!r}; map a human name to an "
            f"id with app.core.ids.name_to_id or OwnershipInfo.from_names"
        )
    return value.upper()


class OwnershipInfo(BaseModel):
    """Who and what a datapoint belongs to: ten optional ULIDs, as in MADSci."""

    model_config = ConfigDict(validate_assignment=True)

    user_id: Optional[str] = None
    experiment_id: Optional[str] = None
    campaign_id: Optional[str] = None
    project_id: Optional[str] = None
    node_id: Optional[str] = None
    workcell_id: Optional[str] = None
    lab_id: Optional[str] = None
    step_id: Optional[str] = None
    workflow_id: Optional[str] = None
    manager_id: Optional[str] = None

    _check_ulids = field_validator(*OWNERSHIP_FIELDS, mode="after")(_optional_ulid)

    @model_serializer(mode="wrap")
    def _drop_unset(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        # MADSci's wire form only carries the ids that are set.
        return {key: value for key, value in handler(self).items() if value is not None}

    @classmethod
    def from_names(cls, **names: Optional[str]) -> "OwnershipInfo":
        """``from_names(experiment="EXP42", user="alice")``: ids derived from names.

        Each value may also be a ULID, which is kept as it is. Prefer
        ``DataClient.ownership(...)``, which also remembers the names in the local store.
        """
        from app.core.ids import id_for, kind_of_field

        ids = {
            f"{kind_of_field(kind)}_id": id_for(kind, name)
            for kind, name in names.items()
            if name
        }
        return cls(**ids)

    def ids(self) -> dict[str, str]:
        """The set ownership ids keyed by field name."""
        return {field: getattr(self, field) for field in OWNERSHIP_FIELDS if getattr(self, field)}


class DataPoint(BaseModel):
    """Base of every datapoint; ``DataPoint.discriminate`` picks the concrete type."""

    model_config = ConfigDict(extra="allow", populate_by_name=True, validate_assignment=False)

    label: Optional[str] = None
    ownership_info: Optional[OwnershipInfo] = Field(default_factory=OwnershipInfo)
    data_type: DataPointTypeEnum
    datapoint_id: str = Field(
        default_factory=new_ulid,
        serialization_alias="_id",
        validation_alias=AliasChoices("_id", "datapoint_id"),
    )
    #: When the data was taken, in the form it was sent (MADSci's default: naive local now).
    data_timestamp: datetime = Field(default_factory=local_now)
    #: Free-form text metadata; MADSci keeps it on object-storage datapoints (and accepts
    #: it as an extra field elsewhere). The names behind ownership ids live here too.
    custom_metadata: dict[str, str] = Field(default_factory=dict)

    _type_map: ClassVar[dict[DataPointTypeEnum, type["DataPoint"]]] = {}
    #: (the data_timestamp it belongs to, its instant as a datetime or canonical text):
    #: the instant recorded when the datapoint was captured or pulled, so a naive time is
    #: not re-read in whatever zone this process has now.
    _pinned_instant: Optional[tuple[datetime, Union[datetime, str]]] = PrivateAttr(default=None)

    @property
    def data_instant(self) -> datetime:
        """The true instant of ``data_timestamp`` (aware UTC): as recorded when pinned,
        else a naive time read in the bench's zone."""
        pinned = self._pinned()
        if pinned is not None and (pinned[0] is self.data_timestamp
                                   or _same_moment(pinned[0], self.data_timestamp)):
            return parse_timestamp(pinned[1]) if isinstance(pinned[1], str) else pinned[1]
        return as_utc(self.data_timestamp)

    def instant_text(self) -> str:
        """:attr:`data_instant` as canonical UTC text (what the store keeps)."""
        pinned = self._pinned()
        if pinned is not None and isinstance(pinned[1], str) and (
                pinned[0] is self.data_timestamp or _same_moment(pinned[0], self.data_timestamp)):
            return pinned[1]
        return format_canonical(self.data_instant if pinned is not None else self.data_timestamp)

    def pin_instant(self, instant: Union[datetime, str]) -> "DataPoint":
        """Record the true instant of the current ``data_timestamp`` (aware datetime or
        canonical text); returns self."""
        private = self.__pydantic_private__
        if private is None:
            self._pinned_instant = (self.data_timestamp, instant)
        else:
            private["_pinned_instant"] = (self.data_timestamp, instant)
        return self

    def __eq__(self, other: object) -> bool:
        # The pinned instant is a note of how this bench read the timestamp, not part of the
        # datapoint: what was submitted equals what comes back (MADSci code compares them),
        # as pydantic's own __eq__ would say if it did not compare private attributes.
        if not isinstance(other, DataPoint):
            return NotImplemented
        return (type(self) is type(other) and self.__dict__ == other.__dict__
                and self.__pydantic_extra__ == other.__pydantic_extra__)

    __hash__ = None  # type: ignore[assignment] - mutable, as pydantic models are

    def _pinned(self) -> Optional[tuple[datetime, Union[datetime, str]]]:
        # Straight from pydantic's private dict: attribute access to a private attribute
        # goes through BaseModel.__getattr__, ten times slower, on every stored row.
        private = self.__pydantic_private__
        return private.get("_pinned_instant") if private else None

    @field_validator("datapoint_id", mode="before")
    @classmethod
    def _id_as_text(cls, value: Any) -> str:
        # MongoDB ObjectIds (documents not written by a bench) read as their text;
        # ULIDs are case-insensitive and kept upper-case, as they are generated.
        text = value if isinstance(value, str) else str(value)
        return text.upper() if is_ulid(text) else text

    @field_validator("data_timestamp", mode="before")
    @classmethod
    def _timestamp_as_sent(cls, value: Any) -> datetime:
        return parse_as_sent(value)

    @field_serializer("data_timestamp")
    def _timestamp_as_madsci_writes_it(self, value: datetime) -> str:
        return madsci_text(value)

    @classmethod
    def discriminate(cls, datapoint: Union["DataPoint", dict[str, Any]]) -> "DataPoint":
        """Return the concrete datapoint type for a dict or a datapoint, as MADSci does."""
        if isinstance(datapoint, dict):
            if "data_type" not in datapoint:
                raise ValueError("a datapoint needs a data_type: json, file or object_storage")
            kind = DataPointTypeEnum(datapoint["data_type"])
            return cls._type_map[kind].model_validate({**datapoint, "data_type": kind.value})
        if isinstance(datapoint, DataPoint):
            concrete = cls._type_map[datapoint.data_type].model_validate(
                {**datapoint.model_dump(by_alias=True),
                 "data_timestamp": datapoint.data_timestamp}
            )
            pinned = datapoint._pinned()
            return concrete if pinned is None else concrete.pin_instant(pinned[1])
        raise TypeError(f"Expected DataPoint or dict, got {type(datapoint).__name__}")

    def to_document(self) -> dict[str, Any]:
        """The JSON-mode document MADSci stores and serves (``_id``, ISO timestamps)."""
        return self.model_dump(mode="json", by_alias=True)

    @field_validator("custom_metadata", mode="before")
    @classmethod
    def _metadata_as_text(cls, value: Any) -> dict[str, str]:
        # MADSci types custom_metadata as dict[str, str]; numbers and booleans are
        # written as text so the central document still validates there.
        if value is None:
            return {}
        if not isinstance(value, dict):
            raise ValueError("custom_metadata must be an object of text keys and values")
        out: dict[str, str] = {}
        for key, item in value.items():
            if isinstance(item, (dict, list, tuple, set, bytes)) or item is None:
                raise ValueError(
                    f"custom_metadata[{key!r}] must be text, a number or a boolean"
                )
            out[str(key)] = item if isinstance(item, str) else _scalar_text(item)
        return out


def _same_moment(first: datetime, second: datetime) -> bool:
    """Equal and of the same form (a naive and an aware datetime are never equal)."""
    return (first.tzinfo is None) == (second.tzinfo is None) and first == second \
        and first.utcoffset() == second.utcoffset()


def _scalar_text(item: Any) -> str:
    if isinstance(item, bool):
        return "true" if item else "false"
    return str(item)


class ValueDataPoint(DataPoint):
    """A datapoint holding one JSON value."""

    data_type: Literal[DataPointTypeEnum.JSON] = DataPointTypeEnum.JSON
    value: Any = None


class FileDataPoint(DataPoint):
    """A datapoint holding a file; ``path`` is where it was captured on the bench."""

    data_type: Literal[DataPointTypeEnum.FILE] = DataPointTypeEnum.FILE
    path: str
    #: File facts recorded at capture (extra fields to MADSci, which ignores them).
    filename: Optional[str] = None
    size_bytes: Optional[int] = None
    content_type: Optional[str] = None
    sha256: Optional[str] = None

    @field_validator("path", mode="before")
    @classmethod
    def _path_as_text(cls, value: Any) -> str:
        return str(value) if value is not None else value


class ObjectStorageDataPoint(DataPoint):
    """A datapoint whose file lives in S3-compatible object storage."""

    data_type: Literal[DataPointTypeEnum.OBJECT_STORAGE] = DataPointTypeEnum.OBJECT_STORAGE
    url: Optional[str] = None
    storage_endpoint: str
    public_endpoint: Optional[str] = None
    path: str
    bucket_name: Optional[str] = None
    object_name: Optional[str] = None
    content_type: Optional[str] = None
    size_bytes: Optional[int] = None
    etag: Optional[str] = None
    filename: Optional[str] = None
    sha256: Optional[str] = None

    @field_validator("path", mode="before")
    @classmethod
    def _path_as_text(cls, value: Any) -> str:
        return str(value) if value is not None else value


DataPoint._type_map.update(
    {
        DataPointTypeEnum.JSON: ValueDataPoint,
        DataPointTypeEnum.FILE: FileDataPoint,
        DataPointTypeEnum.OBJECT_STORAGE: ObjectStorageDataPoint,
    }
)

DataPointDataModels = Annotated[
    Union[
        Annotated[FileDataPoint, Tag(DataPointTypeEnum.FILE.value)],
        Annotated[ValueDataPoint, Tag(DataPointTypeEnum.JSON.value)],
        Annotated[ObjectStorageDataPoint, Tag(DataPointTypeEnum.OBJECT_STORAGE.value)],
    ],
    Discriminator("data_type"),
]
