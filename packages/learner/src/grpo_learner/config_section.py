"""The base of every learner config section."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class Section(BaseModel):
    """A config section: a misspelt key is an error, not a silently ignored setting, and a number is
    finite (`temperature = inf` or `lr = nan` is refused here, not after the model is built)."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)
