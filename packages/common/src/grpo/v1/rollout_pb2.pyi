from grpo.v1 import reward_pb2 as _reward_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class FinishReason(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    FINISH_REASON_UNSPECIFIED: _ClassVar[FinishReason]
    FINISH_REASON_STOP: _ClassVar[FinishReason]
    FINISH_REASON_LENGTH: _ClassVar[FinishReason]
    FINISH_REASON_ABORT: _ClassVar[FinishReason]

class TensorEncoding(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    TENSOR_ENCODING_RAW: _ClassVar[TensorEncoding]
    TENSOR_ENCODING_SPARSE_XOR: _ClassVar[TensorEncoding]
    TENSOR_ENCODING_PLANES_XOR: _ClassVar[TensorEncoding]
FINISH_REASON_UNSPECIFIED: FinishReason
FINISH_REASON_STOP: FinishReason
FINISH_REASON_LENGTH: FinishReason
FINISH_REASON_ABORT: FinishReason
TENSOR_ENCODING_RAW: TensorEncoding
TENSOR_ENCODING_SPARSE_XOR: TensorEncoding
TENSOR_ENCODING_PLANES_XOR: TensorEncoding

class Prompt(_message.Message):
    __slots__ = ("id", "text", "token_ids", "reference", "task", "fields_json", "environment")
    ID_FIELD_NUMBER: _ClassVar[int]
    TEXT_FIELD_NUMBER: _ClassVar[int]
    TOKEN_IDS_FIELD_NUMBER: _ClassVar[int]
    REFERENCE_FIELD_NUMBER: _ClassVar[int]
    TASK_FIELD_NUMBER: _ClassVar[int]
    FIELDS_JSON_FIELD_NUMBER: _ClassVar[int]
    ENVIRONMENT_FIELD_NUMBER: _ClassVar[int]
    id: str
    text: str
    token_ids: _containers.RepeatedScalarFieldContainer[int]
    reference: str
    task: str
    fields_json: str
    environment: str
    def __init__(self, id: _Optional[str] = ..., text: _Optional[str] = ..., token_ids: _Optional[_Iterable[int]] = ..., reference: _Optional[str] = ..., task: _Optional[str] = ..., fields_json: _Optional[str] = ..., environment: _Optional[str] = ...) -> None: ...

class EnvironmentSpec(_message.Message):
    __slots__ = ("name", "max_turns", "max_turn_tokens", "config_json")
    NAME_FIELD_NUMBER: _ClassVar[int]
    MAX_TURNS_FIELD_NUMBER: _ClassVar[int]
    MAX_TURN_TOKENS_FIELD_NUMBER: _ClassVar[int]
    CONFIG_JSON_FIELD_NUMBER: _ClassVar[int]
    name: str
    max_turns: int
    max_turn_tokens: int
    config_json: str
    def __init__(self, name: _Optional[str] = ..., max_turns: _Optional[int] = ..., max_turn_tokens: _Optional[int] = ..., config_json: _Optional[str] = ...) -> None: ...

class SamplingParams(_message.Message):
    __slots__ = ("temperature", "top_p", "top_k", "max_new_tokens", "stop_token_ids", "seed")
    TEMPERATURE_FIELD_NUMBER: _ClassVar[int]
    TOP_P_FIELD_NUMBER: _ClassVar[int]
    TOP_K_FIELD_NUMBER: _ClassVar[int]
    MAX_NEW_TOKENS_FIELD_NUMBER: _ClassVar[int]
    STOP_TOKEN_IDS_FIELD_NUMBER: _ClassVar[int]
    SEED_FIELD_NUMBER: _ClassVar[int]
    temperature: float
    top_p: float
    top_k: int
    max_new_tokens: int
    stop_token_ids: _containers.RepeatedScalarFieldContainer[int]
    seed: int
    def __init__(self, temperature: _Optional[float] = ..., top_p: _Optional[float] = ..., top_k: _Optional[int] = ..., max_new_tokens: _Optional[int] = ..., stop_token_ids: _Optional[_Iterable[int]] = ..., seed: _Optional[int] = ...) -> None: ...

class RolloutRequest(_message.Message):
    __slots__ = ("prompts", "group_size", "sampling", "min_policy_version", "reward_spec", "apply_chat_template", "environment", "partial")
    PROMPTS_FIELD_NUMBER: _ClassVar[int]
    GROUP_SIZE_FIELD_NUMBER: _ClassVar[int]
    SAMPLING_FIELD_NUMBER: _ClassVar[int]
    MIN_POLICY_VERSION_FIELD_NUMBER: _ClassVar[int]
    REWARD_SPEC_FIELD_NUMBER: _ClassVar[int]
    APPLY_CHAT_TEMPLATE_FIELD_NUMBER: _ClassVar[int]
    ENVIRONMENT_FIELD_NUMBER: _ClassVar[int]
    PARTIAL_FIELD_NUMBER: _ClassVar[int]
    prompts: _containers.RepeatedCompositeFieldContainer[Prompt]
    group_size: int
    sampling: SamplingParams
    min_policy_version: int
    reward_spec: _reward_pb2.RewardSpec
    apply_chat_template: bool
    environment: EnvironmentSpec
    partial: bool
    def __init__(self, prompts: _Optional[_Iterable[_Union[Prompt, _Mapping]]] = ..., group_size: _Optional[int] = ..., sampling: _Optional[_Union[SamplingParams, _Mapping]] = ..., min_policy_version: _Optional[int] = ..., reward_spec: _Optional[_Union[_reward_pb2.RewardSpec, _Mapping]] = ..., apply_chat_template: _Optional[bool] = ..., environment: _Optional[_Union[EnvironmentSpec, _Mapping]] = ..., partial: _Optional[bool] = ...) -> None: ...

class Completion(_message.Message):
    __slots__ = ("token_ids", "logprobs", "finish_reason", "text", "reward", "correct", "reward_components", "extracted_answer", "reward_reason", "reward_timed_out", "loss_mask", "episode", "token_versions")
    class RewardComponentsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    TOKEN_IDS_FIELD_NUMBER: _ClassVar[int]
    LOGPROBS_FIELD_NUMBER: _ClassVar[int]
    FINISH_REASON_FIELD_NUMBER: _ClassVar[int]
    TEXT_FIELD_NUMBER: _ClassVar[int]
    REWARD_FIELD_NUMBER: _ClassVar[int]
    CORRECT_FIELD_NUMBER: _ClassVar[int]
    REWARD_COMPONENTS_FIELD_NUMBER: _ClassVar[int]
    EXTRACTED_ANSWER_FIELD_NUMBER: _ClassVar[int]
    REWARD_REASON_FIELD_NUMBER: _ClassVar[int]
    REWARD_TIMED_OUT_FIELD_NUMBER: _ClassVar[int]
    LOSS_MASK_FIELD_NUMBER: _ClassVar[int]
    EPISODE_FIELD_NUMBER: _ClassVar[int]
    TOKEN_VERSIONS_FIELD_NUMBER: _ClassVar[int]
    token_ids: _containers.RepeatedScalarFieldContainer[int]
    logprobs: _containers.RepeatedScalarFieldContainer[float]
    finish_reason: FinishReason
    text: str
    reward: float
    correct: bool
    reward_components: _containers.ScalarMap[str, float]
    extracted_answer: str
    reward_reason: str
    reward_timed_out: bool
    loss_mask: _containers.RepeatedScalarFieldContainer[bool]
    episode: EpisodeStats
    token_versions: _containers.RepeatedCompositeFieldContainer[VersionSpan]
    def __init__(self, token_ids: _Optional[_Iterable[int]] = ..., logprobs: _Optional[_Iterable[float]] = ..., finish_reason: _Optional[_Union[FinishReason, str]] = ..., text: _Optional[str] = ..., reward: _Optional[float] = ..., correct: _Optional[bool] = ..., reward_components: _Optional[_Mapping[str, float]] = ..., extracted_answer: _Optional[str] = ..., reward_reason: _Optional[str] = ..., reward_timed_out: _Optional[bool] = ..., loss_mask: _Optional[_Iterable[bool]] = ..., episode: _Optional[_Union[EpisodeStats, _Mapping]] = ..., token_versions: _Optional[_Iterable[_Union[VersionSpan, _Mapping]]] = ...) -> None: ...

class VersionSpan(_message.Message):
    __slots__ = ("policy_version", "tokens")
    POLICY_VERSION_FIELD_NUMBER: _ClassVar[int]
    TOKENS_FIELD_NUMBER: _ClassVar[int]
    policy_version: int
    tokens: int
    def __init__(self, policy_version: _Optional[int] = ..., tokens: _Optional[int] = ...) -> None: ...

class EpisodeStats(_message.Message):
    __slots__ = ("turns", "tool_calls", "tool_errors", "tool_seconds", "model_tokens", "environment_tokens", "turn_limit_reached", "environment_reward")
    TURNS_FIELD_NUMBER: _ClassVar[int]
    TOOL_CALLS_FIELD_NUMBER: _ClassVar[int]
    TOOL_ERRORS_FIELD_NUMBER: _ClassVar[int]
    TOOL_SECONDS_FIELD_NUMBER: _ClassVar[int]
    MODEL_TOKENS_FIELD_NUMBER: _ClassVar[int]
    ENVIRONMENT_TOKENS_FIELD_NUMBER: _ClassVar[int]
    TURN_LIMIT_REACHED_FIELD_NUMBER: _ClassVar[int]
    ENVIRONMENT_REWARD_FIELD_NUMBER: _ClassVar[int]
    turns: int
    tool_calls: int
    tool_errors: int
    tool_seconds: float
    model_tokens: int
    environment_tokens: int
    turn_limit_reached: bool
    environment_reward: float
    def __init__(self, turns: _Optional[int] = ..., tool_calls: _Optional[int] = ..., tool_errors: _Optional[int] = ..., tool_seconds: _Optional[float] = ..., model_tokens: _Optional[int] = ..., environment_tokens: _Optional[int] = ..., turn_limit_reached: _Optional[bool] = ..., environment_reward: _Optional[float] = ...) -> None: ...

class RolloutGroup(_message.Message):
    __slots__ = ("prompt_id", "prompt_token_ids", "completions", "policy_version", "generate_seconds", "score_seconds")
    PROMPT_ID_FIELD_NUMBER: _ClassVar[int]
    PROMPT_TOKEN_IDS_FIELD_NUMBER: _ClassVar[int]
    COMPLETIONS_FIELD_NUMBER: _ClassVar[int]
    POLICY_VERSION_FIELD_NUMBER: _ClassVar[int]
    GENERATE_SECONDS_FIELD_NUMBER: _ClassVar[int]
    SCORE_SECONDS_FIELD_NUMBER: _ClassVar[int]
    prompt_id: str
    prompt_token_ids: _containers.RepeatedScalarFieldContainer[int]
    completions: _containers.RepeatedCompositeFieldContainer[Completion]
    policy_version: int
    generate_seconds: float
    score_seconds: float
    def __init__(self, prompt_id: _Optional[str] = ..., prompt_token_ids: _Optional[_Iterable[int]] = ..., completions: _Optional[_Iterable[_Union[Completion, _Mapping]]] = ..., policy_version: _Optional[int] = ..., generate_seconds: _Optional[float] = ..., score_seconds: _Optional[float] = ...) -> None: ...

class WeightChunk(_message.Message):
    __slots__ = ("policy_version", "pieces", "last", "total_tensors", "total_bytes", "lora_adapter", "delta_base", "full_set")
    POLICY_VERSION_FIELD_NUMBER: _ClassVar[int]
    PIECES_FIELD_NUMBER: _ClassVar[int]
    LAST_FIELD_NUMBER: _ClassVar[int]
    TOTAL_TENSORS_FIELD_NUMBER: _ClassVar[int]
    TOTAL_BYTES_FIELD_NUMBER: _ClassVar[int]
    LORA_ADAPTER_FIELD_NUMBER: _ClassVar[int]
    DELTA_BASE_FIELD_NUMBER: _ClassVar[int]
    FULL_SET_FIELD_NUMBER: _ClassVar[int]
    policy_version: int
    pieces: _containers.RepeatedCompositeFieldContainer[TensorPiece]
    last: bool
    total_tensors: int
    total_bytes: int
    lora_adapter: LoraAdapterSpec
    delta_base: DeltaBase
    full_set: bool
    def __init__(self, policy_version: _Optional[int] = ..., pieces: _Optional[_Iterable[_Union[TensorPiece, _Mapping]]] = ..., last: _Optional[bool] = ..., total_tensors: _Optional[int] = ..., total_bytes: _Optional[int] = ..., lora_adapter: _Optional[_Union[LoraAdapterSpec, _Mapping]] = ..., delta_base: _Optional[_Union[DeltaBase, _Mapping]] = ..., full_set: _Optional[bool] = ...) -> None: ...

class DeltaBase(_message.Message):
    __slots__ = ("policy_version", "fingerprint")
    POLICY_VERSION_FIELD_NUMBER: _ClassVar[int]
    FINGERPRINT_FIELD_NUMBER: _ClassVar[int]
    policy_version: int
    fingerprint: WeightFingerprint
    def __init__(self, policy_version: _Optional[int] = ..., fingerprint: _Optional[_Union[WeightFingerprint, _Mapping]] = ...) -> None: ...

class WeightFingerprint(_message.Message):
    __slots__ = ("digest", "tensors")
    DIGEST_FIELD_NUMBER: _ClassVar[int]
    TENSORS_FIELD_NUMBER: _ClassVar[int]
    digest: int
    tensors: int
    def __init__(self, digest: _Optional[int] = ..., tensors: _Optional[int] = ...) -> None: ...

class LoraAdapterSpec(_message.Message):
    __slots__ = ("rank", "alpha", "target_modules")
    RANK_FIELD_NUMBER: _ClassVar[int]
    ALPHA_FIELD_NUMBER: _ClassVar[int]
    TARGET_MODULES_FIELD_NUMBER: _ClassVar[int]
    rank: int
    alpha: float
    target_modules: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, rank: _Optional[int] = ..., alpha: _Optional[float] = ..., target_modules: _Optional[_Iterable[str]] = ...) -> None: ...

class TensorPiece(_message.Message):
    __slots__ = ("name", "dtype", "shape", "offset", "data", "crc32", "encoding", "encoded_bytes")
    NAME_FIELD_NUMBER: _ClassVar[int]
    DTYPE_FIELD_NUMBER: _ClassVar[int]
    SHAPE_FIELD_NUMBER: _ClassVar[int]
    OFFSET_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    CRC32_FIELD_NUMBER: _ClassVar[int]
    ENCODING_FIELD_NUMBER: _ClassVar[int]
    ENCODED_BYTES_FIELD_NUMBER: _ClassVar[int]
    name: str
    dtype: str
    shape: _containers.RepeatedScalarFieldContainer[int]
    offset: int
    data: bytes
    crc32: int
    encoding: TensorEncoding
    encoded_bytes: int
    def __init__(self, name: _Optional[str] = ..., dtype: _Optional[str] = ..., shape: _Optional[_Iterable[int]] = ..., offset: _Optional[int] = ..., data: _Optional[bytes] = ..., crc32: _Optional[int] = ..., encoding: _Optional[_Union[TensorEncoding, str]] = ..., encoded_bytes: _Optional[int] = ...) -> None: ...

class UpdateWeightsResponse(_message.Message):
    __slots__ = ("policy_version", "tensors", "bytes", "receive_seconds", "apply_seconds", "fingerprint", "takes_deltas")
    POLICY_VERSION_FIELD_NUMBER: _ClassVar[int]
    TENSORS_FIELD_NUMBER: _ClassVar[int]
    BYTES_FIELD_NUMBER: _ClassVar[int]
    RECEIVE_SECONDS_FIELD_NUMBER: _ClassVar[int]
    APPLY_SECONDS_FIELD_NUMBER: _ClassVar[int]
    FINGERPRINT_FIELD_NUMBER: _ClassVar[int]
    TAKES_DELTAS_FIELD_NUMBER: _ClassVar[int]
    policy_version: int
    tensors: int
    bytes: int
    receive_seconds: float
    apply_seconds: float
    fingerprint: WeightFingerprint
    takes_deltas: bool
    def __init__(self, policy_version: _Optional[int] = ..., tensors: _Optional[int] = ..., bytes: _Optional[int] = ..., receive_seconds: _Optional[float] = ..., apply_seconds: _Optional[float] = ..., fingerprint: _Optional[_Union[WeightFingerprint, _Mapping]] = ..., takes_deltas: _Optional[bool] = ...) -> None: ...

class GetInfoRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class RolloutInfo(_message.Message):
    __slots__ = ("model", "backend", "policy_version", "in_flight_prompts", "in_flight_requests", "max_context_length", "eos_token_id", "pad_token_id", "weight_sync_ranks", "weight_sync_group", "uptime_seconds", "busy_seconds", "fingerprint", "takes_deltas", "host_cpu_threads")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    BACKEND_FIELD_NUMBER: _ClassVar[int]
    POLICY_VERSION_FIELD_NUMBER: _ClassVar[int]
    IN_FLIGHT_PROMPTS_FIELD_NUMBER: _ClassVar[int]
    IN_FLIGHT_REQUESTS_FIELD_NUMBER: _ClassVar[int]
    MAX_CONTEXT_LENGTH_FIELD_NUMBER: _ClassVar[int]
    EOS_TOKEN_ID_FIELD_NUMBER: _ClassVar[int]
    PAD_TOKEN_ID_FIELD_NUMBER: _ClassVar[int]
    WEIGHT_SYNC_RANKS_FIELD_NUMBER: _ClassVar[int]
    WEIGHT_SYNC_GROUP_FIELD_NUMBER: _ClassVar[int]
    UPTIME_SECONDS_FIELD_NUMBER: _ClassVar[int]
    BUSY_SECONDS_FIELD_NUMBER: _ClassVar[int]
    FINGERPRINT_FIELD_NUMBER: _ClassVar[int]
    TAKES_DELTAS_FIELD_NUMBER: _ClassVar[int]
    HOST_CPU_THREADS_FIELD_NUMBER: _ClassVar[int]
    model: str
    backend: str
    policy_version: int
    in_flight_prompts: int
    in_flight_requests: int
    max_context_length: int
    eos_token_id: int
    pad_token_id: int
    weight_sync_ranks: int
    weight_sync_group: str
    uptime_seconds: float
    busy_seconds: float
    fingerprint: WeightFingerprint
    takes_deltas: bool
    host_cpu_threads: int
    def __init__(self, model: _Optional[str] = ..., backend: _Optional[str] = ..., policy_version: _Optional[int] = ..., in_flight_prompts: _Optional[int] = ..., in_flight_requests: _Optional[int] = ..., max_context_length: _Optional[int] = ..., eos_token_id: _Optional[int] = ..., pad_token_id: _Optional[int] = ..., weight_sync_ranks: _Optional[int] = ..., weight_sync_group: _Optional[str] = ..., uptime_seconds: _Optional[float] = ..., busy_seconds: _Optional[float] = ..., fingerprint: _Optional[_Union[WeightFingerprint, _Mapping]] = ..., takes_deltas: _Optional[bool] = ..., host_cpu_threads: _Optional[int] = ...) -> None: ...

class InitWeightSyncRequest(_message.Message):
    __slots__ = ("master_address", "master_port", "group_name", "backend", "rank_offset", "world_size")
    MASTER_ADDRESS_FIELD_NUMBER: _ClassVar[int]
    MASTER_PORT_FIELD_NUMBER: _ClassVar[int]
    GROUP_NAME_FIELD_NUMBER: _ClassVar[int]
    BACKEND_FIELD_NUMBER: _ClassVar[int]
    RANK_OFFSET_FIELD_NUMBER: _ClassVar[int]
    WORLD_SIZE_FIELD_NUMBER: _ClassVar[int]
    master_address: str
    master_port: int
    group_name: str
    backend: str
    rank_offset: int
    world_size: int
    def __init__(self, master_address: _Optional[str] = ..., master_port: _Optional[int] = ..., group_name: _Optional[str] = ..., backend: _Optional[str] = ..., rank_offset: _Optional[int] = ..., world_size: _Optional[int] = ...) -> None: ...

class InitWeightSyncResponse(_message.Message):
    __slots__ = ("ranks",)
    RANKS_FIELD_NUMBER: _ClassVar[int]
    ranks: int
    def __init__(self, ranks: _Optional[int] = ...) -> None: ...

class TensorShape(_message.Message):
    __slots__ = ("dims",)
    DIMS_FIELD_NUMBER: _ClassVar[int]
    dims: _containers.RepeatedScalarFieldContainer[int]
    def __init__(self, dims: _Optional[_Iterable[int]] = ...) -> None: ...

class DistributedWeightsRequest(_message.Message):
    __slots__ = ("policy_version", "group_name", "bucket_index", "last", "names", "dtypes", "shapes")
    POLICY_VERSION_FIELD_NUMBER: _ClassVar[int]
    GROUP_NAME_FIELD_NUMBER: _ClassVar[int]
    BUCKET_INDEX_FIELD_NUMBER: _ClassVar[int]
    LAST_FIELD_NUMBER: _ClassVar[int]
    NAMES_FIELD_NUMBER: _ClassVar[int]
    DTYPES_FIELD_NUMBER: _ClassVar[int]
    SHAPES_FIELD_NUMBER: _ClassVar[int]
    policy_version: int
    group_name: str
    bucket_index: int
    last: bool
    names: _containers.RepeatedScalarFieldContainer[str]
    dtypes: _containers.RepeatedScalarFieldContainer[str]
    shapes: _containers.RepeatedCompositeFieldContainer[TensorShape]
    def __init__(self, policy_version: _Optional[int] = ..., group_name: _Optional[str] = ..., bucket_index: _Optional[int] = ..., last: _Optional[bool] = ..., names: _Optional[_Iterable[str]] = ..., dtypes: _Optional[_Iterable[str]] = ..., shapes: _Optional[_Iterable[_Union[TensorShape, _Mapping]]] = ...) -> None: ...
