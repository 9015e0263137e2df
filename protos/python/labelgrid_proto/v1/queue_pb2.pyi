import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from labelgrid_proto.v1 import arrays_pb2 as _arrays_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Consensus(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    CONSENSUS_UNSPECIFIED: _ClassVar[Consensus]
    CONSENSUS_MAJORITY: _ClassVar[Consensus]
    CONSENSUS_DAWID_SKENE: _ClassVar[Consensus]

class Role(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    ROLE_UNSPECIFIED: _ClassVar[Role]
    ROLE_ADMIN: _ClassVar[Role]
    ROLE_TRAINER: _ClassVar[Role]
    ROLE_LABELLER: _ClassVar[Role]
CONSENSUS_UNSPECIFIED: Consensus
CONSENSUS_MAJORITY: Consensus
CONSENSUS_DAWID_SKENE: Consensus
ROLE_UNSPECIFIED: Role
ROLE_ADMIN: Role
ROLE_TRAINER: Role
ROLE_LABELLER: Role

class Project(_message.Message):
    __slots__ = ("name", "options", "multi_label", "allow_other", "lease_seconds", "model_version", "created_at", "overlap", "review_threshold", "max_overlap", "reviewers", "instructions", "reliability_cut")
    NAME_FIELD_NUMBER: _ClassVar[int]
    OPTIONS_FIELD_NUMBER: _ClassVar[int]
    MULTI_LABEL_FIELD_NUMBER: _ClassVar[int]
    ALLOW_OTHER_FIELD_NUMBER: _ClassVar[int]
    LEASE_SECONDS_FIELD_NUMBER: _ClassVar[int]
    MODEL_VERSION_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    OVERLAP_FIELD_NUMBER: _ClassVar[int]
    REVIEW_THRESHOLD_FIELD_NUMBER: _ClassVar[int]
    MAX_OVERLAP_FIELD_NUMBER: _ClassVar[int]
    REVIEWERS_FIELD_NUMBER: _ClassVar[int]
    INSTRUCTIONS_FIELD_NUMBER: _ClassVar[int]
    RELIABILITY_CUT_FIELD_NUMBER: _ClassVar[int]
    name: str
    options: _containers.RepeatedScalarFieldContainer[str]
    multi_label: bool
    allow_other: bool
    lease_seconds: int
    model_version: int
    created_at: _timestamp_pb2.Timestamp
    overlap: int
    review_threshold: float
    max_overlap: int
    reviewers: _containers.RepeatedScalarFieldContainer[str]
    instructions: str
    reliability_cut: float
    def __init__(self, name: _Optional[str] = ..., options: _Optional[_Iterable[str]] = ..., multi_label: _Optional[bool] = ..., allow_other: _Optional[bool] = ..., lease_seconds: _Optional[int] = ..., model_version: _Optional[int] = ..., created_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., overlap: _Optional[int] = ..., review_threshold: _Optional[float] = ..., max_overlap: _Optional[int] = ..., reviewers: _Optional[_Iterable[str]] = ..., instructions: _Optional[str] = ..., reliability_cut: _Optional[float] = ...) -> None: ...

class CreateProjectRequest(_message.Message):
    __slots__ = ("project", "exist_ok")
    PROJECT_FIELD_NUMBER: _ClassVar[int]
    EXIST_OK_FIELD_NUMBER: _ClassVar[int]
    project: Project
    exist_ok: bool
    def __init__(self, project: _Optional[_Union[Project, _Mapping]] = ..., exist_ok: _Optional[bool] = ...) -> None: ...

class CreateProjectResponse(_message.Message):
    __slots__ = ("project", "created")
    PROJECT_FIELD_NUMBER: _ClassVar[int]
    CREATED_FIELD_NUMBER: _ClassVar[int]
    project: Project
    created: bool
    def __init__(self, project: _Optional[_Union[Project, _Mapping]] = ..., created: _Optional[bool] = ...) -> None: ...

class GetProjectRequest(_message.Message):
    __slots__ = ("project",)
    PROJECT_FIELD_NUMBER: _ClassVar[int]
    project: str
    def __init__(self, project: _Optional[str] = ...) -> None: ...

class GetProjectResponse(_message.Message):
    __slots__ = ("project",)
    PROJECT_FIELD_NUMBER: _ClassVar[int]
    project: Project
    def __init__(self, project: _Optional[_Union[Project, _Mapping]] = ...) -> None: ...

class ListProjectsRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ListProjectsResponse(_message.Message):
    __slots__ = ("projects",)
    PROJECTS_FIELD_NUMBER: _ClassVar[int]
    projects: _containers.RepeatedCompositeFieldContainer[Project]
    def __init__(self, projects: _Optional[_Iterable[_Union[Project, _Mapping]]] = ...) -> None: ...

class SetProjectInstructionsRequest(_message.Message):
    __slots__ = ("project", "instructions")
    PROJECT_FIELD_NUMBER: _ClassVar[int]
    INSTRUCTIONS_FIELD_NUMBER: _ClassVar[int]
    project: str
    instructions: str
    def __init__(self, project: _Optional[str] = ..., instructions: _Optional[str] = ...) -> None: ...

class SetProjectInstructionsResponse(_message.Message):
    __slots__ = ("project",)
    PROJECT_FIELD_NUMBER: _ClassVar[int]
    project: Project
    def __init__(self, project: _Optional[_Union[Project, _Mapping]] = ...) -> None: ...

class Labels(_message.Message):
    __slots__ = ("values",)
    VALUES_FIELD_NUMBER: _ClassVar[int]
    values: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, values: _Optional[_Iterable[str]] = ...) -> None: ...

class NewItem(_message.Message):
    __slots__ = ("input", "metadata_json")
    INPUT_FIELD_NUMBER: _ClassVar[int]
    METADATA_JSON_FIELD_NUMBER: _ClassVar[int]
    input: _arrays_pb2.Payload
    metadata_json: str
    def __init__(self, input: _Optional[_Union[_arrays_pb2.Payload, _Mapping]] = ..., metadata_json: _Optional[str] = ...) -> None: ...

class AddFeaturesRequest(_message.Message):
    __slots__ = ("project", "idempotency_key", "items", "rows", "labels", "priorities")
    PROJECT_FIELD_NUMBER: _ClassVar[int]
    IDEMPOTENCY_KEY_FIELD_NUMBER: _ClassVar[int]
    ITEMS_FIELD_NUMBER: _ClassVar[int]
    ROWS_FIELD_NUMBER: _ClassVar[int]
    LABELS_FIELD_NUMBER: _ClassVar[int]
    PRIORITIES_FIELD_NUMBER: _ClassVar[int]
    project: str
    idempotency_key: str
    items: _containers.RepeatedCompositeFieldContainer[NewItem]
    rows: _arrays_pb2.NDArray
    labels: _containers.RepeatedCompositeFieldContainer[Labels]
    priorities: _containers.RepeatedScalarFieldContainer[float]
    def __init__(self, project: _Optional[str] = ..., idempotency_key: _Optional[str] = ..., items: _Optional[_Iterable[_Union[NewItem, _Mapping]]] = ..., rows: _Optional[_Union[_arrays_pb2.NDArray, _Mapping]] = ..., labels: _Optional[_Iterable[_Union[Labels, _Mapping]]] = ..., priorities: _Optional[_Iterable[float]] = ...) -> None: ...

class AddFeaturesResponse(_message.Message):
    __slots__ = ("ids", "already_existed")
    IDS_FIELD_NUMBER: _ClassVar[int]
    ALREADY_EXISTED_FIELD_NUMBER: _ClassVar[int]
    ids: _containers.RepeatedScalarFieldContainer[int]
    already_existed: bool
    def __init__(self, ids: _Optional[_Iterable[int]] = ..., already_existed: _Optional[bool] = ...) -> None: ...

class Item(_message.Message):
    __slots__ = ("id", "input", "metadata_json", "priority", "lease_token", "lease_expires_at", "others")
    ID_FIELD_NUMBER: _ClassVar[int]
    INPUT_FIELD_NUMBER: _ClassVar[int]
    METADATA_JSON_FIELD_NUMBER: _ClassVar[int]
    PRIORITY_FIELD_NUMBER: _ClassVar[int]
    LEASE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    LEASE_EXPIRES_AT_FIELD_NUMBER: _ClassVar[int]
    OTHERS_FIELD_NUMBER: _ClassVar[int]
    id: int
    input: _arrays_pb2.Payload
    metadata_json: str
    priority: float
    lease_token: str
    lease_expires_at: _timestamp_pb2.Timestamp
    others: _containers.RepeatedCompositeFieldContainer[OtherLabel]
    def __init__(self, id: _Optional[int] = ..., input: _Optional[_Union[_arrays_pb2.Payload, _Mapping]] = ..., metadata_json: _Optional[str] = ..., priority: _Optional[float] = ..., lease_token: _Optional[str] = ..., lease_expires_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., others: _Optional[_Iterable[_Union[OtherLabel, _Mapping]]] = ...) -> None: ...

class OtherLabel(_message.Message):
    __slots__ = ("worker_id", "labels")
    WORKER_ID_FIELD_NUMBER: _ClassVar[int]
    LABELS_FIELD_NUMBER: _ClassVar[int]
    worker_id: str
    labels: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, worker_id: _Optional[str] = ..., labels: _Optional[_Iterable[str]] = ...) -> None: ...

class PopRequest(_message.Message):
    __slots__ = ("project", "worker_id", "n")
    PROJECT_FIELD_NUMBER: _ClassVar[int]
    WORKER_ID_FIELD_NUMBER: _ClassVar[int]
    N_FIELD_NUMBER: _ClassVar[int]
    project: str
    worker_id: str
    n: int
    def __init__(self, project: _Optional[str] = ..., worker_id: _Optional[str] = ..., n: _Optional[int] = ...) -> None: ...

class PopResponse(_message.Message):
    __slots__ = ("items",)
    ITEMS_FIELD_NUMBER: _ClassVar[int]
    items: _containers.RepeatedCompositeFieldContainer[Item]
    def __init__(self, items: _Optional[_Iterable[_Union[Item, _Mapping]]] = ...) -> None: ...

class SubmitRequest(_message.Message):
    __slots__ = ("project", "item_id", "lease_token", "worker_id", "labels", "pop_next")
    PROJECT_FIELD_NUMBER: _ClassVar[int]
    ITEM_ID_FIELD_NUMBER: _ClassVar[int]
    LEASE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    WORKER_ID_FIELD_NUMBER: _ClassVar[int]
    LABELS_FIELD_NUMBER: _ClassVar[int]
    POP_NEXT_FIELD_NUMBER: _ClassVar[int]
    project: str
    item_id: int
    lease_token: str
    worker_id: str
    labels: _containers.RepeatedScalarFieldContainer[str]
    pop_next: bool
    def __init__(self, project: _Optional[str] = ..., item_id: _Optional[int] = ..., lease_token: _Optional[str] = ..., worker_id: _Optional[str] = ..., labels: _Optional[_Iterable[str]] = ..., pop_next: _Optional[bool] = ...) -> None: ...

class SubmitResponse(_message.Message):
    __slots__ = ("annotation_id", "duplicate", "next")
    ANNOTATION_ID_FIELD_NUMBER: _ClassVar[int]
    DUPLICATE_FIELD_NUMBER: _ClassVar[int]
    NEXT_FIELD_NUMBER: _ClassVar[int]
    annotation_id: int
    duplicate: bool
    next: Item
    def __init__(self, annotation_id: _Optional[int] = ..., duplicate: _Optional[bool] = ..., next: _Optional[_Union[Item, _Mapping]] = ...) -> None: ...

class ReleaseRequest(_message.Message):
    __slots__ = ("project", "item_id", "lease_token", "worker_id")
    PROJECT_FIELD_NUMBER: _ClassVar[int]
    ITEM_ID_FIELD_NUMBER: _ClassVar[int]
    LEASE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    WORKER_ID_FIELD_NUMBER: _ClassVar[int]
    project: str
    item_id: int
    lease_token: str
    worker_id: str
    def __init__(self, project: _Optional[str] = ..., item_id: _Optional[int] = ..., lease_token: _Optional[str] = ..., worker_id: _Optional[str] = ...) -> None: ...

class ReleaseResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class UndoRequest(_message.Message):
    __slots__ = ("project", "worker_id")
    PROJECT_FIELD_NUMBER: _ClassVar[int]
    WORKER_ID_FIELD_NUMBER: _ClassVar[int]
    project: str
    worker_id: str
    def __init__(self, project: _Optional[str] = ..., worker_id: _Optional[str] = ...) -> None: ...

class UndoResponse(_message.Message):
    __slots__ = ("item", "labels")
    ITEM_FIELD_NUMBER: _ClassVar[int]
    LABELS_FIELD_NUMBER: _ClassVar[int]
    item: Item
    labels: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, item: _Optional[_Union[Item, _Mapping]] = ..., labels: _Optional[_Iterable[str]] = ...) -> None: ...

class ListLeasesRequest(_message.Message):
    __slots__ = ("project", "worker_id")
    PROJECT_FIELD_NUMBER: _ClassVar[int]
    WORKER_ID_FIELD_NUMBER: _ClassVar[int]
    project: str
    worker_id: str
    def __init__(self, project: _Optional[str] = ..., worker_id: _Optional[str] = ...) -> None: ...

class ListLeasesResponse(_message.Message):
    __slots__ = ("items", "worker_id")
    ITEMS_FIELD_NUMBER: _ClassVar[int]
    WORKER_ID_FIELD_NUMBER: _ClassVar[int]
    items: _containers.RepeatedCompositeFieldContainer[Item]
    worker_id: str
    def __init__(self, items: _Optional[_Iterable[_Union[Item, _Mapping]]] = ..., worker_id: _Optional[str] = ...) -> None: ...

class UpdatePrioritiesRequest(_message.Message):
    __slots__ = ("project", "model_version", "ids", "priorities", "relabel_ids", "relabel_priorities")
    PROJECT_FIELD_NUMBER: _ClassVar[int]
    MODEL_VERSION_FIELD_NUMBER: _ClassVar[int]
    IDS_FIELD_NUMBER: _ClassVar[int]
    PRIORITIES_FIELD_NUMBER: _ClassVar[int]
    RELABEL_IDS_FIELD_NUMBER: _ClassVar[int]
    RELABEL_PRIORITIES_FIELD_NUMBER: _ClassVar[int]
    project: str
    model_version: int
    ids: _containers.RepeatedScalarFieldContainer[int]
    priorities: _containers.RepeatedScalarFieldContainer[float]
    relabel_ids: _containers.RepeatedScalarFieldContainer[int]
    relabel_priorities: _containers.RepeatedScalarFieldContainer[float]
    def __init__(self, project: _Optional[str] = ..., model_version: _Optional[int] = ..., ids: _Optional[_Iterable[int]] = ..., priorities: _Optional[_Iterable[float]] = ..., relabel_ids: _Optional[_Iterable[int]] = ..., relabel_priorities: _Optional[_Iterable[float]] = ...) -> None: ...

class UpdatePrioritiesResponse(_message.Message):
    __slots__ = ("updated", "model_version", "relabelled", "relabel_ignored", "relabel_withdrawn")
    UPDATED_FIELD_NUMBER: _ClassVar[int]
    MODEL_VERSION_FIELD_NUMBER: _ClassVar[int]
    RELABELLED_FIELD_NUMBER: _ClassVar[int]
    RELABEL_IGNORED_FIELD_NUMBER: _ClassVar[int]
    RELABEL_WITHDRAWN_FIELD_NUMBER: _ClassVar[int]
    updated: int
    model_version: int
    relabelled: int
    relabel_ignored: int
    relabel_withdrawn: int
    def __init__(self, updated: _Optional[int] = ..., model_version: _Optional[int] = ..., relabelled: _Optional[int] = ..., relabel_ignored: _Optional[int] = ..., relabel_withdrawn: _Optional[int] = ...) -> None: ...

class StreamLabelledRequest(_message.Message):
    __slots__ = ("project", "after_annotation_id", "chunk_size", "follow", "labels_only", "consensus")
    PROJECT_FIELD_NUMBER: _ClassVar[int]
    AFTER_ANNOTATION_ID_FIELD_NUMBER: _ClassVar[int]
    CHUNK_SIZE_FIELD_NUMBER: _ClassVar[int]
    FOLLOW_FIELD_NUMBER: _ClassVar[int]
    LABELS_ONLY_FIELD_NUMBER: _ClassVar[int]
    CONSENSUS_FIELD_NUMBER: _ClassVar[int]
    project: str
    after_annotation_id: int
    chunk_size: int
    follow: bool
    labels_only: bool
    consensus: Consensus
    def __init__(self, project: _Optional[str] = ..., after_annotation_id: _Optional[int] = ..., chunk_size: _Optional[int] = ..., follow: _Optional[bool] = ..., labels_only: _Optional[bool] = ..., consensus: _Optional[_Union[Consensus, str]] = ...) -> None: ...

class LabelledItem(_message.Message):
    __slots__ = ("annotation_id", "item_id", "input", "labels", "worker_id", "created_at", "confidence", "metadata_json")
    ANNOTATION_ID_FIELD_NUMBER: _ClassVar[int]
    ITEM_ID_FIELD_NUMBER: _ClassVar[int]
    INPUT_FIELD_NUMBER: _ClassVar[int]
    LABELS_FIELD_NUMBER: _ClassVar[int]
    WORKER_ID_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    CONFIDENCE_FIELD_NUMBER: _ClassVar[int]
    METADATA_JSON_FIELD_NUMBER: _ClassVar[int]
    annotation_id: int
    item_id: int
    input: _arrays_pb2.Payload
    labels: _containers.RepeatedScalarFieldContainer[str]
    worker_id: str
    created_at: _timestamp_pb2.Timestamp
    confidence: float
    metadata_json: str
    def __init__(self, annotation_id: _Optional[int] = ..., item_id: _Optional[int] = ..., input: _Optional[_Union[_arrays_pb2.Payload, _Mapping]] = ..., labels: _Optional[_Iterable[str]] = ..., worker_id: _Optional[str] = ..., created_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., confidence: _Optional[float] = ..., metadata_json: _Optional[str] = ...) -> None: ...

class StreamLabelledResponse(_message.Message):
    __slots__ = ("items", "cursor")
    ITEMS_FIELD_NUMBER: _ClassVar[int]
    CURSOR_FIELD_NUMBER: _ClassVar[int]
    items: _containers.RepeatedCompositeFieldContainer[LabelledItem]
    cursor: int
    def __init__(self, items: _Optional[_Iterable[_Union[LabelledItem, _Mapping]]] = ..., cursor: _Optional[int] = ...) -> None: ...

class StreamUnlabelledRequest(_message.Message):
    __slots__ = ("project", "after_item_id", "chunk_size", "ids_only", "packed")
    PROJECT_FIELD_NUMBER: _ClassVar[int]
    AFTER_ITEM_ID_FIELD_NUMBER: _ClassVar[int]
    CHUNK_SIZE_FIELD_NUMBER: _ClassVar[int]
    IDS_ONLY_FIELD_NUMBER: _ClassVar[int]
    PACKED_FIELD_NUMBER: _ClassVar[int]
    project: str
    after_item_id: int
    chunk_size: int
    ids_only: bool
    packed: bool
    def __init__(self, project: _Optional[str] = ..., after_item_id: _Optional[int] = ..., chunk_size: _Optional[int] = ..., ids_only: _Optional[bool] = ..., packed: _Optional[bool] = ...) -> None: ...

class StreamUnlabelledResponse(_message.Message):
    __slots__ = ("items", "cursor", "ids", "priorities", "rows")
    ITEMS_FIELD_NUMBER: _ClassVar[int]
    CURSOR_FIELD_NUMBER: _ClassVar[int]
    IDS_FIELD_NUMBER: _ClassVar[int]
    PRIORITIES_FIELD_NUMBER: _ClassVar[int]
    ROWS_FIELD_NUMBER: _ClassVar[int]
    items: _containers.RepeatedCompositeFieldContainer[Item]
    cursor: int
    ids: _containers.RepeatedScalarFieldContainer[int]
    priorities: _containers.RepeatedScalarFieldContainer[float]
    rows: _arrays_pb2.NDArray
    def __init__(self, items: _Optional[_Iterable[_Union[Item, _Mapping]]] = ..., cursor: _Optional[int] = ..., ids: _Optional[_Iterable[int]] = ..., priorities: _Optional[_Iterable[float]] = ..., rows: _Optional[_Union[_arrays_pb2.NDArray, _Mapping]] = ...) -> None: ...

class GetProgressRequest(_message.Message):
    __slots__ = ("project", "worker_stats")
    PROJECT_FIELD_NUMBER: _ClassVar[int]
    WORKER_STATS_FIELD_NUMBER: _ClassVar[int]
    project: str
    worker_stats: bool
    def __init__(self, project: _Optional[str] = ..., worker_stats: _Optional[bool] = ...) -> None: ...

class WorkerCount(_message.Message):
    __slots__ = ("worker_id", "labelled")
    WORKER_ID_FIELD_NUMBER: _ClassVar[int]
    LABELLED_FIELD_NUMBER: _ClassVar[int]
    worker_id: str
    labelled: int
    def __init__(self, worker_id: _Optional[str] = ..., labelled: _Optional[int] = ...) -> None: ...

class LabelCount(_message.Message):
    __slots__ = ("label", "count")
    LABEL_FIELD_NUMBER: _ClassVar[int]
    COUNT_FIELD_NUMBER: _ClassVar[int]
    label: str
    count: int
    def __init__(self, label: _Optional[str] = ..., count: _Optional[int] = ...) -> None: ...

class Progress(_message.Message):
    __slots__ = ("total", "labelled", "leased", "available", "fraction", "workers", "labels", "last_annotation_id", "annotations", "in_review", "worker_stats", "last_training_run_id")
    TOTAL_FIELD_NUMBER: _ClassVar[int]
    LABELLED_FIELD_NUMBER: _ClassVar[int]
    LEASED_FIELD_NUMBER: _ClassVar[int]
    AVAILABLE_FIELD_NUMBER: _ClassVar[int]
    FRACTION_FIELD_NUMBER: _ClassVar[int]
    WORKERS_FIELD_NUMBER: _ClassVar[int]
    LABELS_FIELD_NUMBER: _ClassVar[int]
    LAST_ANNOTATION_ID_FIELD_NUMBER: _ClassVar[int]
    ANNOTATIONS_FIELD_NUMBER: _ClassVar[int]
    IN_REVIEW_FIELD_NUMBER: _ClassVar[int]
    WORKER_STATS_FIELD_NUMBER: _ClassVar[int]
    LAST_TRAINING_RUN_ID_FIELD_NUMBER: _ClassVar[int]
    total: int
    labelled: int
    leased: int
    available: int
    fraction: float
    workers: _containers.RepeatedCompositeFieldContainer[WorkerCount]
    labels: _containers.RepeatedCompositeFieldContainer[LabelCount]
    last_annotation_id: int
    annotations: int
    in_review: int
    worker_stats: _containers.RepeatedCompositeFieldContainer[WorkerStats]
    last_training_run_id: int
    def __init__(self, total: _Optional[int] = ..., labelled: _Optional[int] = ..., leased: _Optional[int] = ..., available: _Optional[int] = ..., fraction: _Optional[float] = ..., workers: _Optional[_Iterable[_Union[WorkerCount, _Mapping]]] = ..., labels: _Optional[_Iterable[_Union[LabelCount, _Mapping]]] = ..., last_annotation_id: _Optional[int] = ..., annotations: _Optional[int] = ..., in_review: _Optional[int] = ..., worker_stats: _Optional[_Iterable[_Union[WorkerStats, _Mapping]]] = ..., last_training_run_id: _Optional[int] = ...) -> None: ...

class WorkerStats(_message.Message):
    __slots__ = ("worker_id", "labels", "agreement_with_consensus", "compared", "seconds_per_label")
    WORKER_ID_FIELD_NUMBER: _ClassVar[int]
    LABELS_FIELD_NUMBER: _ClassVar[int]
    AGREEMENT_WITH_CONSENSUS_FIELD_NUMBER: _ClassVar[int]
    COMPARED_FIELD_NUMBER: _ClassVar[int]
    SECONDS_PER_LABEL_FIELD_NUMBER: _ClassVar[int]
    worker_id: str
    labels: int
    agreement_with_consensus: float
    compared: int
    seconds_per_label: float
    def __init__(self, worker_id: _Optional[str] = ..., labels: _Optional[int] = ..., agreement_with_consensus: _Optional[float] = ..., compared: _Optional[int] = ..., seconds_per_label: _Optional[float] = ...) -> None: ...

class GetProgressResponse(_message.Message):
    __slots__ = ("progress",)
    PROGRESS_FIELD_NUMBER: _ClassVar[int]
    progress: Progress
    def __init__(self, progress: _Optional[_Union[Progress, _Mapping]] = ...) -> None: ...

class WatchProgressRequest(_message.Message):
    __slots__ = ("project", "worker_id")
    PROJECT_FIELD_NUMBER: _ClassVar[int]
    WORKER_ID_FIELD_NUMBER: _ClassVar[int]
    project: str
    worker_id: str
    def __init__(self, project: _Optional[str] = ..., worker_id: _Optional[str] = ...) -> None: ...

class WatchProgressResponse(_message.Message):
    __slots__ = ("progress",)
    PROGRESS_FIELD_NUMBER: _ClassVar[int]
    progress: Progress
    def __init__(self, progress: _Optional[_Union[Progress, _Mapping]] = ...) -> None: ...

class ExportLabelsRequest(_message.Message):
    __slots__ = ("project", "chunk_size", "include_inputs", "consensus", "by_item")
    PROJECT_FIELD_NUMBER: _ClassVar[int]
    CHUNK_SIZE_FIELD_NUMBER: _ClassVar[int]
    INCLUDE_INPUTS_FIELD_NUMBER: _ClassVar[int]
    CONSENSUS_FIELD_NUMBER: _ClassVar[int]
    BY_ITEM_FIELD_NUMBER: _ClassVar[int]
    project: str
    chunk_size: int
    include_inputs: bool
    consensus: Consensus
    by_item: bool
    def __init__(self, project: _Optional[str] = ..., chunk_size: _Optional[int] = ..., include_inputs: _Optional[bool] = ..., consensus: _Optional[_Union[Consensus, str]] = ..., by_item: _Optional[bool] = ...) -> None: ...

class ExportLabelsResponse(_message.Message):
    __slots__ = ("items",)
    ITEMS_FIELD_NUMBER: _ClassVar[int]
    items: _containers.RepeatedCompositeFieldContainer[LabelledItem]
    def __init__(self, items: _Optional[_Iterable[_Union[LabelledItem, _Mapping]]] = ...) -> None: ...

class TrainingRun(_message.Message):
    __slots__ = ("status", "message", "score", "score_std", "n_labels", "n_scored", "model_version", "seconds", "started_at", "trainer", "phases")
    STATUS_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    SCORE_FIELD_NUMBER: _ClassVar[int]
    SCORE_STD_FIELD_NUMBER: _ClassVar[int]
    N_LABELS_FIELD_NUMBER: _ClassVar[int]
    N_SCORED_FIELD_NUMBER: _ClassVar[int]
    MODEL_VERSION_FIELD_NUMBER: _ClassVar[int]
    SECONDS_FIELD_NUMBER: _ClassVar[int]
    STARTED_AT_FIELD_NUMBER: _ClassVar[int]
    TRAINER_FIELD_NUMBER: _ClassVar[int]
    PHASES_FIELD_NUMBER: _ClassVar[int]
    status: str
    message: str
    score: float
    score_std: float
    n_labels: int
    n_scored: int
    model_version: int
    seconds: float
    started_at: _timestamp_pb2.Timestamp
    trainer: str
    phases: _containers.RepeatedCompositeFieldContainer[RunPhase]
    def __init__(self, status: _Optional[str] = ..., message: _Optional[str] = ..., score: _Optional[float] = ..., score_std: _Optional[float] = ..., n_labels: _Optional[int] = ..., n_scored: _Optional[int] = ..., model_version: _Optional[int] = ..., seconds: _Optional[float] = ..., started_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., trainer: _Optional[str] = ..., phases: _Optional[_Iterable[_Union[RunPhase, _Mapping]]] = ...) -> None: ...

class RunPhase(_message.Message):
    __slots__ = ("name", "seconds")
    NAME_FIELD_NUMBER: _ClassVar[int]
    SECONDS_FIELD_NUMBER: _ClassVar[int]
    name: str
    seconds: float
    def __init__(self, name: _Optional[str] = ..., seconds: _Optional[float] = ...) -> None: ...

class RecordTrainingRunRequest(_message.Message):
    __slots__ = ("project", "run")
    PROJECT_FIELD_NUMBER: _ClassVar[int]
    RUN_FIELD_NUMBER: _ClassVar[int]
    project: str
    run: TrainingRun
    def __init__(self, project: _Optional[str] = ..., run: _Optional[_Union[TrainingRun, _Mapping]] = ...) -> None: ...

class RecordTrainingRunResponse(_message.Message):
    __slots__ = ("id",)
    ID_FIELD_NUMBER: _ClassVar[int]
    id: int
    def __init__(self, id: _Optional[int] = ...) -> None: ...

class ListTrainingRunsRequest(_message.Message):
    __slots__ = ("project", "newest")
    PROJECT_FIELD_NUMBER: _ClassVar[int]
    NEWEST_FIELD_NUMBER: _ClassVar[int]
    project: str
    newest: int
    def __init__(self, project: _Optional[str] = ..., newest: _Optional[int] = ...) -> None: ...

class ListTrainingRunsResponse(_message.Message):
    __slots__ = ("runs",)
    RUNS_FIELD_NUMBER: _ClassVar[int]
    runs: _containers.RepeatedCompositeFieldContainer[TrainingRun]
    def __init__(self, runs: _Optional[_Iterable[_Union[TrainingRun, _Mapping]]] = ...) -> None: ...

class GetAgreementRequest(_message.Message):
    __slots__ = ("project", "consensus")
    PROJECT_FIELD_NUMBER: _ClassVar[int]
    CONSENSUS_FIELD_NUMBER: _ClassVar[int]
    project: str
    consensus: Consensus
    def __init__(self, project: _Optional[str] = ..., consensus: _Optional[_Union[Consensus, str]] = ...) -> None: ...

class LabelAgreement(_message.Message):
    __slots__ = ("label", "percent", "fleiss_kappa", "krippendorff_alpha")
    LABEL_FIELD_NUMBER: _ClassVar[int]
    PERCENT_FIELD_NUMBER: _ClassVar[int]
    FLEISS_KAPPA_FIELD_NUMBER: _ClassVar[int]
    KRIPPENDORFF_ALPHA_FIELD_NUMBER: _ClassVar[int]
    label: str
    percent: float
    fleiss_kappa: float
    krippendorff_alpha: float
    def __init__(self, label: _Optional[str] = ..., percent: _Optional[float] = ..., fleiss_kappa: _Optional[float] = ..., krippendorff_alpha: _Optional[float] = ...) -> None: ...

class PairAgreement(_message.Message):
    __slots__ = ("worker_a", "worker_b", "items", "percent", "cohen_kappa")
    WORKER_A_FIELD_NUMBER: _ClassVar[int]
    WORKER_B_FIELD_NUMBER: _ClassVar[int]
    ITEMS_FIELD_NUMBER: _ClassVar[int]
    PERCENT_FIELD_NUMBER: _ClassVar[int]
    COHEN_KAPPA_FIELD_NUMBER: _ClassVar[int]
    worker_a: str
    worker_b: str
    items: int
    percent: float
    cohen_kappa: float
    def __init__(self, worker_a: _Optional[str] = ..., worker_b: _Optional[str] = ..., items: _Optional[int] = ..., percent: _Optional[float] = ..., cohen_kappa: _Optional[float] = ...) -> None: ...

class Agreement(_message.Message):
    __slots__ = ("items", "annotations", "percent", "fleiss_kappa", "fleiss_items", "krippendorff_alpha", "labels", "pairs", "workers")
    ITEMS_FIELD_NUMBER: _ClassVar[int]
    ANNOTATIONS_FIELD_NUMBER: _ClassVar[int]
    PERCENT_FIELD_NUMBER: _ClassVar[int]
    FLEISS_KAPPA_FIELD_NUMBER: _ClassVar[int]
    FLEISS_ITEMS_FIELD_NUMBER: _ClassVar[int]
    KRIPPENDORFF_ALPHA_FIELD_NUMBER: _ClassVar[int]
    LABELS_FIELD_NUMBER: _ClassVar[int]
    PAIRS_FIELD_NUMBER: _ClassVar[int]
    WORKERS_FIELD_NUMBER: _ClassVar[int]
    items: int
    annotations: int
    percent: float
    fleiss_kappa: float
    fleiss_items: int
    krippendorff_alpha: float
    labels: _containers.RepeatedCompositeFieldContainer[LabelAgreement]
    pairs: _containers.RepeatedCompositeFieldContainer[PairAgreement]
    workers: _containers.RepeatedCompositeFieldContainer[WorkerStats]
    def __init__(self, items: _Optional[int] = ..., annotations: _Optional[int] = ..., percent: _Optional[float] = ..., fleiss_kappa: _Optional[float] = ..., fleiss_items: _Optional[int] = ..., krippendorff_alpha: _Optional[float] = ..., labels: _Optional[_Iterable[_Union[LabelAgreement, _Mapping]]] = ..., pairs: _Optional[_Iterable[_Union[PairAgreement, _Mapping]]] = ..., workers: _Optional[_Iterable[_Union[WorkerStats, _Mapping]]] = ...) -> None: ...

class GetAgreementResponse(_message.Message):
    __slots__ = ("agreement",)
    AGREEMENT_FIELD_NUMBER: _ClassVar[int]
    agreement: Agreement
    def __init__(self, agreement: _Optional[_Union[Agreement, _Mapping]] = ...) -> None: ...

class Token(_message.Message):
    __slots__ = ("name", "role", "projects", "any_worker", "created_at", "revoked_at")
    NAME_FIELD_NUMBER: _ClassVar[int]
    ROLE_FIELD_NUMBER: _ClassVar[int]
    PROJECTS_FIELD_NUMBER: _ClassVar[int]
    ANY_WORKER_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    REVOKED_AT_FIELD_NUMBER: _ClassVar[int]
    name: str
    role: Role
    projects: _containers.RepeatedScalarFieldContainer[str]
    any_worker: bool
    created_at: _timestamp_pb2.Timestamp
    revoked_at: _timestamp_pb2.Timestamp
    def __init__(self, name: _Optional[str] = ..., role: _Optional[_Union[Role, str]] = ..., projects: _Optional[_Iterable[str]] = ..., any_worker: _Optional[bool] = ..., created_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., revoked_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class CreateTokenRequest(_message.Message):
    __slots__ = ("name", "role", "projects", "any_worker")
    NAME_FIELD_NUMBER: _ClassVar[int]
    ROLE_FIELD_NUMBER: _ClassVar[int]
    PROJECTS_FIELD_NUMBER: _ClassVar[int]
    ANY_WORKER_FIELD_NUMBER: _ClassVar[int]
    name: str
    role: Role
    projects: _containers.RepeatedScalarFieldContainer[str]
    any_worker: bool
    def __init__(self, name: _Optional[str] = ..., role: _Optional[_Union[Role, str]] = ..., projects: _Optional[_Iterable[str]] = ..., any_worker: _Optional[bool] = ...) -> None: ...

class CreateTokenResponse(_message.Message):
    __slots__ = ("value", "token")
    VALUE_FIELD_NUMBER: _ClassVar[int]
    TOKEN_FIELD_NUMBER: _ClassVar[int]
    value: str
    token: Token
    def __init__(self, value: _Optional[str] = ..., token: _Optional[_Union[Token, _Mapping]] = ...) -> None: ...

class ListTokensRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ListTokensResponse(_message.Message):
    __slots__ = ("tokens",)
    TOKENS_FIELD_NUMBER: _ClassVar[int]
    tokens: _containers.RepeatedCompositeFieldContainer[Token]
    def __init__(self, tokens: _Optional[_Iterable[_Union[Token, _Mapping]]] = ...) -> None: ...

class RevokeTokenRequest(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class RevokeTokenResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class WhoAmIRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class WhoAmIResponse(_message.Message):
    __slots__ = ("auth_enabled", "token")
    AUTH_ENABLED_FIELD_NUMBER: _ClassVar[int]
    TOKEN_FIELD_NUMBER: _ClassVar[int]
    auth_enabled: bool
    token: Token
    def __init__(self, auth_enabled: _Optional[bool] = ..., token: _Optional[_Union[Token, _Mapping]] = ...) -> None: ...

class GetProjectStatsRequest(_message.Message):
    __slots__ = ("project", "bucket_seconds")
    PROJECT_FIELD_NUMBER: _ClassVar[int]
    BUCKET_SECONDS_FIELD_NUMBER: _ClassVar[int]
    project: str
    bucket_seconds: int
    def __init__(self, project: _Optional[str] = ..., bucket_seconds: _Optional[int] = ...) -> None: ...

class WorkerActivity(_message.Message):
    __slots__ = ("worker_id", "labels", "first_label_at", "last_label_at", "active_seconds", "labels_per_minute", "compared", "agreed", "agreement_with_consensus")
    WORKER_ID_FIELD_NUMBER: _ClassVar[int]
    LABELS_FIELD_NUMBER: _ClassVar[int]
    FIRST_LABEL_AT_FIELD_NUMBER: _ClassVar[int]
    LAST_LABEL_AT_FIELD_NUMBER: _ClassVar[int]
    ACTIVE_SECONDS_FIELD_NUMBER: _ClassVar[int]
    LABELS_PER_MINUTE_FIELD_NUMBER: _ClassVar[int]
    COMPARED_FIELD_NUMBER: _ClassVar[int]
    AGREED_FIELD_NUMBER: _ClassVar[int]
    AGREEMENT_WITH_CONSENSUS_FIELD_NUMBER: _ClassVar[int]
    worker_id: str
    labels: int
    first_label_at: _timestamp_pb2.Timestamp
    last_label_at: _timestamp_pb2.Timestamp
    active_seconds: float
    labels_per_minute: float
    compared: int
    agreed: int
    agreement_with_consensus: float
    def __init__(self, worker_id: _Optional[str] = ..., labels: _Optional[int] = ..., first_label_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., last_label_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., active_seconds: _Optional[float] = ..., labels_per_minute: _Optional[float] = ..., compared: _Optional[int] = ..., agreed: _Optional[int] = ..., agreement_with_consensus: _Optional[float] = ...) -> None: ...

class TimeBucket(_message.Message):
    __slots__ = ("start", "labels")
    START_FIELD_NUMBER: _ClassVar[int]
    LABELS_FIELD_NUMBER: _ClassVar[int]
    start: _timestamp_pb2.Timestamp
    labels: int
    def __init__(self, start: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., labels: _Optional[int] = ...) -> None: ...

class GetProjectStatsResponse(_message.Message):
    __slots__ = ("workers", "buckets", "bucket_seconds")
    WORKERS_FIELD_NUMBER: _ClassVar[int]
    BUCKETS_FIELD_NUMBER: _ClassVar[int]
    BUCKET_SECONDS_FIELD_NUMBER: _ClassVar[int]
    workers: _containers.RepeatedCompositeFieldContainer[WorkerActivity]
    buckets: _containers.RepeatedCompositeFieldContainer[TimeBucket]
    bucket_seconds: int
    def __init__(self, workers: _Optional[_Iterable[_Union[WorkerActivity, _Mapping]]] = ..., buckets: _Optional[_Iterable[_Union[TimeBucket, _Mapping]]] = ..., bucket_seconds: _Optional[int] = ...) -> None: ...
