from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class DataType(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    DATA_TYPE_UNSPECIFIED: _ClassVar[DataType]
    FP16: _ClassVar[DataType]
    BF16: _ClassVar[DataType]
    FP32: _ClassVar[DataType]
    FP64: _ClassVar[DataType]
    INT64: _ClassVar[DataType]

class InputKind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    LOGITS: _ClassVar[InputKind]
    PROBABILITIES: _ClassVar[InputKind]
    LOG_PROBABILITIES: _ClassVar[InputKind]
DATA_TYPE_UNSPECIFIED: DataType
FP16: DataType
BF16: DataType
FP32: DataType
FP64: DataType
INT64: DataType
LOGITS: InputKind
PROBABILITIES: InputKind
LOG_PROBABILITIES: InputKind

class Tensor(_message.Message):
    __slots__ = ("dtype", "shape", "data", "shm")
    DTYPE_FIELD_NUMBER: _ClassVar[int]
    SHAPE_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    SHM_FIELD_NUMBER: _ClassVar[int]
    dtype: DataType
    shape: _containers.RepeatedScalarFieldContainer[int]
    data: bytes
    shm: SharedMemoryRef
    def __init__(self, dtype: _Optional[_Union[DataType, str]] = ..., shape: _Optional[_Iterable[int]] = ..., data: _Optional[bytes] = ..., shm: _Optional[_Union[SharedMemoryRef, _Mapping]] = ...) -> None: ...

class SharedMemoryRef(_message.Message):
    __slots__ = ("region", "offset", "byte_size", "release")
    REGION_FIELD_NUMBER: _ClassVar[int]
    OFFSET_FIELD_NUMBER: _ClassVar[int]
    BYTE_SIZE_FIELD_NUMBER: _ClassVar[int]
    RELEASE_FIELD_NUMBER: _ClassVar[int]
    region: str
    offset: int
    byte_size: int
    release: int
    def __init__(self, region: _Optional[str] = ..., offset: _Optional[int] = ..., byte_size: _Optional[int] = ..., release: _Optional[int] = ...) -> None: ...

class StrategySpec(_message.Message):
    __slots__ = ("name", "input_kind", "temperature", "base", "normalized", "seed", "pre_score", "beta", "sampling", "class_priors", "candidates", "eta", "reference", "loss")
    NAME_FIELD_NUMBER: _ClassVar[int]
    INPUT_KIND_FIELD_NUMBER: _ClassVar[int]
    TEMPERATURE_FIELD_NUMBER: _ClassVar[int]
    BASE_FIELD_NUMBER: _ClassVar[int]
    NORMALIZED_FIELD_NUMBER: _ClassVar[int]
    SEED_FIELD_NUMBER: _ClassVar[int]
    PRE_SCORE_FIELD_NUMBER: _ClassVar[int]
    BETA_FIELD_NUMBER: _ClassVar[int]
    SAMPLING_FIELD_NUMBER: _ClassVar[int]
    CLASS_PRIORS_FIELD_NUMBER: _ClassVar[int]
    CANDIDATES_FIELD_NUMBER: _ClassVar[int]
    ETA_FIELD_NUMBER: _ClassVar[int]
    REFERENCE_FIELD_NUMBER: _ClassVar[int]
    LOSS_FIELD_NUMBER: _ClassVar[int]
    name: str
    input_kind: InputKind
    temperature: float
    base: float
    normalized: bool
    seed: int
    pre_score: str
    beta: float
    sampling: str
    class_priors: _containers.RepeatedScalarFieldContainer[float]
    candidates: int
    eta: float
    reference: int
    loss: str
    def __init__(self, name: _Optional[str] = ..., input_kind: _Optional[_Union[InputKind, str]] = ..., temperature: _Optional[float] = ..., base: _Optional[float] = ..., normalized: _Optional[bool] = ..., seed: _Optional[int] = ..., pre_score: _Optional[str] = ..., beta: _Optional[float] = ..., sampling: _Optional[str] = ..., class_priors: _Optional[_Iterable[float]] = ..., candidates: _Optional[int] = ..., eta: _Optional[float] = ..., reference: _Optional[int] = ..., loss: _Optional[str] = ...) -> None: ...

class ModelSpec(_message.Message):
    __slots__ = ("name", "samples", "seed")
    NAME_FIELD_NUMBER: _ClassVar[int]
    SAMPLES_FIELD_NUMBER: _ClassVar[int]
    SEED_FIELD_NUMBER: _ClassVar[int]
    name: str
    samples: int
    seed: int
    def __init__(self, name: _Optional[str] = ..., samples: _Optional[int] = ..., seed: _Optional[int] = ...) -> None: ...

class ScoreRequest(_message.Message):
    __slots__ = ("session_id", "seq", "ids", "keys", "logits", "embedding", "strategy", "k", "model", "inputs", "labeled")
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    SEQ_FIELD_NUMBER: _ClassVar[int]
    IDS_FIELD_NUMBER: _ClassVar[int]
    KEYS_FIELD_NUMBER: _ClassVar[int]
    LOGITS_FIELD_NUMBER: _ClassVar[int]
    EMBEDDING_FIELD_NUMBER: _ClassVar[int]
    STRATEGY_FIELD_NUMBER: _ClassVar[int]
    K_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    INPUTS_FIELD_NUMBER: _ClassVar[int]
    LABELED_FIELD_NUMBER: _ClassVar[int]
    session_id: str
    seq: int
    ids: Tensor
    keys: _containers.RepeatedScalarFieldContainer[str]
    logits: Tensor
    embedding: Tensor
    strategy: StrategySpec
    k: int
    model: ModelSpec
    inputs: Tensor
    labeled: Tensor
    def __init__(self, session_id: _Optional[str] = ..., seq: _Optional[int] = ..., ids: _Optional[_Union[Tensor, _Mapping]] = ..., keys: _Optional[_Iterable[str]] = ..., logits: _Optional[_Union[Tensor, _Mapping]] = ..., embedding: _Optional[_Union[Tensor, _Mapping]] = ..., strategy: _Optional[_Union[StrategySpec, _Mapping]] = ..., k: _Optional[int] = ..., model: _Optional[_Union[ModelSpec, _Mapping]] = ..., inputs: _Optional[_Union[Tensor, _Mapping]] = ..., labeled: _Optional[_Union[Tensor, _Mapping]] = ...) -> None: ...

class ScoreAck(_message.Message):
    __slots__ = ("session_id", "seq", "items", "acked_seq", "replayed", "durable_seq")
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    SEQ_FIELD_NUMBER: _ClassVar[int]
    ITEMS_FIELD_NUMBER: _ClassVar[int]
    ACKED_SEQ_FIELD_NUMBER: _ClassVar[int]
    REPLAYED_FIELD_NUMBER: _ClassVar[int]
    DURABLE_SEQ_FIELD_NUMBER: _ClassVar[int]
    session_id: str
    seq: int
    items: int
    acked_seq: int
    replayed: bool
    durable_seq: int
    def __init__(self, session_id: _Optional[str] = ..., seq: _Optional[int] = ..., items: _Optional[int] = ..., acked_seq: _Optional[int] = ..., replayed: _Optional[bool] = ..., durable_seq: _Optional[int] = ...) -> None: ...

class CreateSessionRequest(_message.Message):
    __slots__ = ("strategy", "k", "session_id", "model")
    STRATEGY_FIELD_NUMBER: _ClassVar[int]
    K_FIELD_NUMBER: _ClassVar[int]
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    strategy: StrategySpec
    k: int
    session_id: str
    model: ModelSpec
    def __init__(self, strategy: _Optional[_Union[StrategySpec, _Mapping]] = ..., k: _Optional[int] = ..., session_id: _Optional[str] = ..., model: _Optional[_Union[ModelSpec, _Mapping]] = ...) -> None: ...

class SessionRef(_message.Message):
    __slots__ = ("session_id",)
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    session_id: str
    def __init__(self, session_id: _Optional[str] = ...) -> None: ...

class Session(_message.Message):
    __slots__ = ("session_id", "strategy", "k", "next_seq", "items", "model", "durable_seq")
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    STRATEGY_FIELD_NUMBER: _ClassVar[int]
    K_FIELD_NUMBER: _ClassVar[int]
    NEXT_SEQ_FIELD_NUMBER: _ClassVar[int]
    ITEMS_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    DURABLE_SEQ_FIELD_NUMBER: _ClassVar[int]
    session_id: str
    strategy: StrategySpec
    k: int
    next_seq: int
    items: int
    model: ModelSpec
    durable_seq: int
    def __init__(self, session_id: _Optional[str] = ..., strategy: _Optional[_Union[StrategySpec, _Mapping]] = ..., k: _Optional[int] = ..., next_seq: _Optional[int] = ..., items: _Optional[int] = ..., model: _Optional[_Union[ModelSpec, _Mapping]] = ..., durable_seq: _Optional[int] = ...) -> None: ...

class TopK(_message.Message):
    __slots__ = ("ids", "scores", "keys", "items")
    IDS_FIELD_NUMBER: _ClassVar[int]
    SCORES_FIELD_NUMBER: _ClassVar[int]
    KEYS_FIELD_NUMBER: _ClassVar[int]
    ITEMS_FIELD_NUMBER: _ClassVar[int]
    ids: _containers.RepeatedScalarFieldContainer[int]
    scores: _containers.RepeatedScalarFieldContainer[float]
    keys: _containers.RepeatedScalarFieldContainer[str]
    items: int
    def __init__(self, ids: _Optional[_Iterable[int]] = ..., scores: _Optional[_Iterable[float]] = ..., keys: _Optional[_Iterable[str]] = ..., items: _Optional[int] = ...) -> None: ...

class ScoreBatchRequest(_message.Message):
    __slots__ = ("strategy", "logits", "embedding", "ids", "model", "inputs")
    STRATEGY_FIELD_NUMBER: _ClassVar[int]
    LOGITS_FIELD_NUMBER: _ClassVar[int]
    EMBEDDING_FIELD_NUMBER: _ClassVar[int]
    IDS_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    INPUTS_FIELD_NUMBER: _ClassVar[int]
    strategy: StrategySpec
    logits: Tensor
    embedding: Tensor
    ids: Tensor
    model: ModelSpec
    inputs: Tensor
    def __init__(self, strategy: _Optional[_Union[StrategySpec, _Mapping]] = ..., logits: _Optional[_Union[Tensor, _Mapping]] = ..., embedding: _Optional[_Union[Tensor, _Mapping]] = ..., ids: _Optional[_Union[Tensor, _Mapping]] = ..., model: _Optional[_Union[ModelSpec, _Mapping]] = ..., inputs: _Optional[_Union[Tensor, _Mapping]] = ...) -> None: ...

class ScoreBatchReply(_message.Message):
    __slots__ = ("scores",)
    SCORES_FIELD_NUMBER: _ClassVar[int]
    scores: Tensor
    def __init__(self, scores: _Optional[_Union[Tensor, _Mapping]] = ...) -> None: ...

class ServerInfoRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class StrategyInfo(_message.Message):
    __slots__ = ("name", "input_shape", "summary", "needs_embedding", "entropic", "set_level", "default_pre_score", "candidates_per_k")
    NAME_FIELD_NUMBER: _ClassVar[int]
    INPUT_SHAPE_FIELD_NUMBER: _ClassVar[int]
    SUMMARY_FIELD_NUMBER: _ClassVar[int]
    NEEDS_EMBEDDING_FIELD_NUMBER: _ClassVar[int]
    ENTROPIC_FIELD_NUMBER: _ClassVar[int]
    SET_LEVEL_FIELD_NUMBER: _ClassVar[int]
    DEFAULT_PRE_SCORE_FIELD_NUMBER: _ClassVar[int]
    CANDIDATES_PER_K_FIELD_NUMBER: _ClassVar[int]
    name: str
    input_shape: str
    summary: str
    needs_embedding: bool
    entropic: bool
    set_level: bool
    default_pre_score: str
    candidates_per_k: int
    def __init__(self, name: _Optional[str] = ..., input_shape: _Optional[str] = ..., summary: _Optional[str] = ..., needs_embedding: _Optional[bool] = ..., entropic: _Optional[bool] = ..., set_level: _Optional[bool] = ..., default_pre_score: _Optional[str] = ..., candidates_per_k: _Optional[int] = ...) -> None: ...

class Limits(_message.Message):
    __slots__ = ("max_message_bytes", "max_k", "max_sessions", "session_memory_bytes", "session_memory_free_bytes", "checkpoint_batches")
    MAX_MESSAGE_BYTES_FIELD_NUMBER: _ClassVar[int]
    MAX_K_FIELD_NUMBER: _ClassVar[int]
    MAX_SESSIONS_FIELD_NUMBER: _ClassVar[int]
    SESSION_MEMORY_BYTES_FIELD_NUMBER: _ClassVar[int]
    SESSION_MEMORY_FREE_BYTES_FIELD_NUMBER: _ClassVar[int]
    CHECKPOINT_BATCHES_FIELD_NUMBER: _ClassVar[int]
    max_message_bytes: int
    max_k: int
    max_sessions: int
    session_memory_bytes: int
    session_memory_free_bytes: int
    checkpoint_batches: int
    def __init__(self, max_message_bytes: _Optional[int] = ..., max_k: _Optional[int] = ..., max_sessions: _Optional[int] = ..., session_memory_bytes: _Optional[int] = ..., session_memory_free_bytes: _Optional[int] = ..., checkpoint_batches: _Optional[int] = ...) -> None: ...

class TensorSignature(_message.Message):
    __slots__ = ("name", "dtype", "shape")
    NAME_FIELD_NUMBER: _ClassVar[int]
    DTYPE_FIELD_NUMBER: _ClassVar[int]
    SHAPE_FIELD_NUMBER: _ClassVar[int]
    name: str
    dtype: str
    shape: _containers.RepeatedScalarFieldContainer[int]
    def __init__(self, name: _Optional[str] = ..., dtype: _Optional[str] = ..., shape: _Optional[_Iterable[int]] = ...) -> None: ...

class ModelInfo(_message.Message):
    __slots__ = ("name", "platform", "input", "logits_output", "embedding_output", "default_strategy", "mc_dropout", "members")
    NAME_FIELD_NUMBER: _ClassVar[int]
    PLATFORM_FIELD_NUMBER: _ClassVar[int]
    INPUT_FIELD_NUMBER: _ClassVar[int]
    LOGITS_OUTPUT_FIELD_NUMBER: _ClassVar[int]
    EMBEDDING_OUTPUT_FIELD_NUMBER: _ClassVar[int]
    DEFAULT_STRATEGY_FIELD_NUMBER: _ClassVar[int]
    MC_DROPOUT_FIELD_NUMBER: _ClassVar[int]
    MEMBERS_FIELD_NUMBER: _ClassVar[int]
    name: str
    platform: str
    input: TensorSignature
    logits_output: str
    embedding_output: str
    default_strategy: str
    mc_dropout: bool
    members: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, name: _Optional[str] = ..., platform: _Optional[str] = ..., input: _Optional[_Union[TensorSignature, _Mapping]] = ..., logits_output: _Optional[str] = ..., embedding_output: _Optional[str] = ..., default_strategy: _Optional[str] = ..., mc_dropout: _Optional[bool] = ..., members: _Optional[_Iterable[str]] = ...) -> None: ...

class ServerInfoReply(_message.Message):
    __slots__ = ("version", "device", "strategies", "limits", "models", "model_errors", "state_errors", "shared_memory")
    class ModelErrorsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    class StateErrorsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    VERSION_FIELD_NUMBER: _ClassVar[int]
    DEVICE_FIELD_NUMBER: _ClassVar[int]
    STRATEGIES_FIELD_NUMBER: _ClassVar[int]
    LIMITS_FIELD_NUMBER: _ClassVar[int]
    MODELS_FIELD_NUMBER: _ClassVar[int]
    MODEL_ERRORS_FIELD_NUMBER: _ClassVar[int]
    STATE_ERRORS_FIELD_NUMBER: _ClassVar[int]
    SHARED_MEMORY_FIELD_NUMBER: _ClassVar[int]
    version: str
    device: str
    strategies: _containers.RepeatedCompositeFieldContainer[StrategyInfo]
    limits: Limits
    models: _containers.RepeatedCompositeFieldContainer[ModelInfo]
    model_errors: _containers.ScalarMap[str, str]
    state_errors: _containers.ScalarMap[str, str]
    shared_memory: SharedMemoryInfo
    def __init__(self, version: _Optional[str] = ..., device: _Optional[str] = ..., strategies: _Optional[_Iterable[_Union[StrategyInfo, _Mapping]]] = ..., limits: _Optional[_Union[Limits, _Mapping]] = ..., models: _Optional[_Iterable[_Union[ModelInfo, _Mapping]]] = ..., model_errors: _Optional[_Mapping[str, str]] = ..., state_errors: _Optional[_Mapping[str, str]] = ..., shared_memory: _Optional[_Union[SharedMemoryInfo, _Mapping]] = ...) -> None: ...

class ReloadModelsRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class RegisterSharedMemoryRequest(_message.Message):
    __slots__ = ("name", "key", "byte_size")
    NAME_FIELD_NUMBER: _ClassVar[int]
    KEY_FIELD_NUMBER: _ClassVar[int]
    BYTE_SIZE_FIELD_NUMBER: _ClassVar[int]
    name: str
    key: str
    byte_size: int
    def __init__(self, name: _Optional[str] = ..., key: _Optional[str] = ..., byte_size: _Optional[int] = ...) -> None: ...

class SharedMemoryRegion(_message.Message):
    __slots__ = ("name", "key", "byte_size", "idle_s")
    NAME_FIELD_NUMBER: _ClassVar[int]
    KEY_FIELD_NUMBER: _ClassVar[int]
    BYTE_SIZE_FIELD_NUMBER: _ClassVar[int]
    IDLE_S_FIELD_NUMBER: _ClassVar[int]
    name: str
    key: str
    byte_size: int
    idle_s: float
    def __init__(self, name: _Optional[str] = ..., key: _Optional[str] = ..., byte_size: _Optional[int] = ..., idle_s: _Optional[float] = ...) -> None: ...

class RegisterSharedMemoryResponse(_message.Message):
    __slots__ = ("region", "nonce")
    REGION_FIELD_NUMBER: _ClassVar[int]
    NONCE_FIELD_NUMBER: _ClassVar[int]
    region: SharedMemoryRegion
    nonce: int
    def __init__(self, region: _Optional[_Union[SharedMemoryRegion, _Mapping]] = ..., nonce: _Optional[int] = ...) -> None: ...

class UnregisterSharedMemoryRequest(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class UnregisterSharedMemoryResponse(_message.Message):
    __slots__ = ("regions",)
    REGIONS_FIELD_NUMBER: _ClassVar[int]
    regions: _containers.RepeatedCompositeFieldContainer[SharedMemoryRegion]
    def __init__(self, regions: _Optional[_Iterable[_Union[SharedMemoryRegion, _Mapping]]] = ...) -> None: ...

class SharedMemoryStatusRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class SharedMemoryStatusResponse(_message.Message):
    __slots__ = ("regions",)
    REGIONS_FIELD_NUMBER: _ClassVar[int]
    regions: _containers.RepeatedCompositeFieldContainer[SharedMemoryRegion]
    def __init__(self, regions: _Optional[_Iterable[_Union[SharedMemoryRegion, _Mapping]]] = ...) -> None: ...

class SharedMemoryInfo(_message.Message):
    __slots__ = ("enabled", "max_bytes", "max_regions", "idle_s")
    ENABLED_FIELD_NUMBER: _ClassVar[int]
    MAX_BYTES_FIELD_NUMBER: _ClassVar[int]
    MAX_REGIONS_FIELD_NUMBER: _ClassVar[int]
    IDLE_S_FIELD_NUMBER: _ClassVar[int]
    enabled: bool
    max_bytes: int
    max_regions: int
    idle_s: float
    def __init__(self, enabled: _Optional[bool] = ..., max_bytes: _Optional[int] = ..., max_regions: _Optional[int] = ..., idle_s: _Optional[float] = ...) -> None: ...
