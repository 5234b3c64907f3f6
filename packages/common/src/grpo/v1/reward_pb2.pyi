from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class ScoreItem(_message.Message):
    __slots__ = ("id", "completion", "reference", "task", "completion_tokens", "fields_json", "prompt")
    ID_FIELD_NUMBER: _ClassVar[int]
    COMPLETION_FIELD_NUMBER: _ClassVar[int]
    REFERENCE_FIELD_NUMBER: _ClassVar[int]
    TASK_FIELD_NUMBER: _ClassVar[int]
    COMPLETION_TOKENS_FIELD_NUMBER: _ClassVar[int]
    FIELDS_JSON_FIELD_NUMBER: _ClassVar[int]
    PROMPT_FIELD_NUMBER: _ClassVar[int]
    id: str
    completion: str
    reference: str
    task: str
    completion_tokens: int
    fields_json: str
    prompt: str
    def __init__(self, id: _Optional[str] = ..., completion: _Optional[str] = ..., reference: _Optional[str] = ..., task: _Optional[str] = ..., completion_tokens: _Optional[int] = ..., fields_json: _Optional[str] = ..., prompt: _Optional[str] = ...) -> None: ...

class RewardComponent(_message.Message):
    __slots__ = ("name", "weight", "max_completion_tokens", "overlong_buffer_tokens")
    NAME_FIELD_NUMBER: _ClassVar[int]
    WEIGHT_FIELD_NUMBER: _ClassVar[int]
    MAX_COMPLETION_TOKENS_FIELD_NUMBER: _ClassVar[int]
    OVERLONG_BUFFER_TOKENS_FIELD_NUMBER: _ClassVar[int]
    name: str
    weight: float
    max_completion_tokens: int
    overlong_buffer_tokens: int
    def __init__(self, name: _Optional[str] = ..., weight: _Optional[float] = ..., max_completion_tokens: _Optional[int] = ..., overlong_buffer_tokens: _Optional[int] = ...) -> None: ...

class RewardSpec(_message.Message):
    __slots__ = ("correctness_weight", "format_weight", "length_weight", "max_completion_tokens", "overlong_buffer_tokens", "fallback_last_number", "timeout_s", "components")
    CORRECTNESS_WEIGHT_FIELD_NUMBER: _ClassVar[int]
    FORMAT_WEIGHT_FIELD_NUMBER: _ClassVar[int]
    LENGTH_WEIGHT_FIELD_NUMBER: _ClassVar[int]
    MAX_COMPLETION_TOKENS_FIELD_NUMBER: _ClassVar[int]
    OVERLONG_BUFFER_TOKENS_FIELD_NUMBER: _ClassVar[int]
    FALLBACK_LAST_NUMBER_FIELD_NUMBER: _ClassVar[int]
    TIMEOUT_S_FIELD_NUMBER: _ClassVar[int]
    COMPONENTS_FIELD_NUMBER: _ClassVar[int]
    correctness_weight: float
    format_weight: float
    length_weight: float
    max_completion_tokens: int
    overlong_buffer_tokens: int
    fallback_last_number: bool
    timeout_s: float
    components: _containers.RepeatedCompositeFieldContainer[RewardComponent]
    def __init__(self, correctness_weight: _Optional[float] = ..., format_weight: _Optional[float] = ..., length_weight: _Optional[float] = ..., max_completion_tokens: _Optional[int] = ..., overlong_buffer_tokens: _Optional[int] = ..., fallback_last_number: _Optional[bool] = ..., timeout_s: _Optional[float] = ..., components: _Optional[_Iterable[_Union[RewardComponent, _Mapping]]] = ...) -> None: ...

class ScoreRequest(_message.Message):
    __slots__ = ("items", "spec")
    ITEMS_FIELD_NUMBER: _ClassVar[int]
    SPEC_FIELD_NUMBER: _ClassVar[int]
    items: _containers.RepeatedCompositeFieldContainer[ScoreItem]
    spec: RewardSpec
    def __init__(self, items: _Optional[_Iterable[_Union[ScoreItem, _Mapping]]] = ..., spec: _Optional[_Union[RewardSpec, _Mapping]] = ...) -> None: ...

class ScoreResult(_message.Message):
    __slots__ = ("id", "reward", "correct", "extracted", "reason", "components", "timed_out")
    class ComponentsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    ID_FIELD_NUMBER: _ClassVar[int]
    REWARD_FIELD_NUMBER: _ClassVar[int]
    CORRECT_FIELD_NUMBER: _ClassVar[int]
    EXTRACTED_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    COMPONENTS_FIELD_NUMBER: _ClassVar[int]
    TIMED_OUT_FIELD_NUMBER: _ClassVar[int]
    id: str
    reward: float
    correct: bool
    extracted: str
    reason: str
    components: _containers.ScalarMap[str, float]
    timed_out: bool
    def __init__(self, id: _Optional[str] = ..., reward: _Optional[float] = ..., correct: _Optional[bool] = ..., extracted: _Optional[str] = ..., reason: _Optional[str] = ..., components: _Optional[_Mapping[str, float]] = ..., timed_out: _Optional[bool] = ...) -> None: ...

class ScoreResponse(_message.Message):
    __slots__ = ("results",)
    RESULTS_FIELD_NUMBER: _ClassVar[int]
    results: _containers.RepeatedCompositeFieldContainer[ScoreResult]
    def __init__(self, results: _Optional[_Iterable[_Union[ScoreResult, _Mapping]]] = ...) -> None: ...
