"""The base every typed config derives from.

Why a shared base: every section must reject unknown keys (a typo in a YAML preset or a CLI
override must fail loudly, naming the key) and re-validate on assignment so CLI overrides go
through the same checks as YAML values.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class StrictModel(BaseModel):
    """A pydantic model that forbids unknown keys and validates assignments."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True, frozen=False)
