"""The base of every learner config section."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class Section(BaseModel):
    """A config section: a misspelt key is an error, not a silently ignored setting."""

    model_config = ConfigDict(extra="forbid")
