"""The run config: one typed object per section, loaded from a preset or YAML plus CLI overrides.

Each package owns the config class of its section (``diffucoder/<pkg>/config.py``); this module
only composes them, so a stage's settings live next to the code that reads them.

Loading order: class defaults (the paper's values where the paper gives one) <- preset YAML
(``tiny`` / ``paper-7b`` or a file path) <- ``key.sub=value`` overrides. Unknown keys and wrong
types raise :class:`ConfigError`, which names every offending key.
"""

from __future__ import annotations

import difflib
import hashlib
import json
from importlib import resources
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, Field, ValidationError, model_validator

from diffucoder.config_base import StrictModel
from diffucoder.data.config import DataConfig
from diffucoder.decoding.config import DecodingConfig
from diffucoder.evaluation.config import EvaluationConfig
from diffucoder.k8s.config import KubernetesConfig
from diffucoder.model.config import ModelConfig
from diffucoder.ops.config import PlanConfig, PromotionConfig
from diffucoder.rl.config import GRPOConfig
from diffucoder.sandbox.config import SandboxConfig
from diffucoder.train.config import TrainStageConfig

PRESETS = ("tiny", "smoke", "paper-7b")


class ConfigError(ValueError):
    """A config could not be loaded; the message names each bad key."""


class TrackingConfig(StrictModel):
    """MLflow settings. ``tracking_uri=None`` means $MLFLOW_TRACKING_URI, else ``mlflow.db`` (SQLite)
    in the project home (:mod:`diffucoder.home`)."""

    tracking_uri: str | None = None
    experiment: str = "diffucoder"
    registered_model_name: str = "diffucoder"
    registered_model_alias: str = "candidate"


class StorageConfig(StrictModel):
    """Object-store behaviour shared by every artifact read and write (see ``diffucoder.storage``).

    Retries cover transient errors only (connection failures, 5xx, throttling); the worst-case
    wait before giving up is about ``max_attempts * retry_max_backoff_s``, so keep both small
    where a fast failure matters more than riding out an outage.
    """

    max_attempts: int = Field(5, ge=1, description="attempts for transient S3 errors (1 = no retry)")
    retry_initial_backoff_s: float = Field(0.2, ge=0, description="first backoff; doubles per attempt")
    retry_max_backoff_s: float = Field(5.0, ge=0, description="cap on one backoff")
    connect_timeout_s: float = Field(5.0, gt=0, description="TCP connect timeout per S3 request")
    read_timeout_s: float = Field(60.0, gt=0, description="socket read timeout per S3 request")
    multipart_chunk_mb: int = Field(64, ge=5, description="multipart part size (S3 minimum is 5 MiB)")
    max_concurrency: int = Field(8, ge=1, description="parallel transfers (files and parts) per call")


class RunConfig(StrictModel):
    """Everything one pipeline run needs; stored beside every artifact it produces."""

    preset: str = "custom"
    seed: int = 0
    output_root: str = Field(
        "runs/latest",
        description="local dir or s3:// prefix for all artifacts; relative to the project home (diffucoder.home)",
    )
    device: Literal["auto", "cpu", "cuda"] = "auto"
    model: ModelConfig = ModelConfig()
    data: DataConfig = DataConfig()
    pretrain: TrainStageConfig = TrainStageConfig()
    midtrain: TrainStageConfig = TrainStageConfig()
    instruct: TrainStageConfig = TrainStageConfig()
    grpo: GRPOConfig = GRPOConfig()
    decoding: DecodingConfig = DecodingConfig()
    sandbox: SandboxConfig = SandboxConfig()
    evaluation: EvaluationConfig = EvaluationConfig()
    tracking: TrackingConfig = TrackingConfig()
    storage: StorageConfig = StorageConfig()
    k8s: KubernetesConfig = KubernetesConfig()
    plan: PlanConfig = PlanConfig()
    promotion: PromotionConfig = PromotionConfig()

    @model_validator(mode="after")
    def _evaluation_can_decode_fast(self) -> RunConfig:
        """Fail at load, not after the reference runs, when evaluation's fast decoding cannot split
        ``gen_length`` into the decoding section's blocks at every speed."""
        ev = self.evaluation
        if not ev.fast_decoding:
            return self
        for speed in ev.speeds:
            steps = ev.gen_length if speed == "1x" else ev.gen_length // 2
            update = {
                "max_new_tokens": ev.gen_length,
                "steps": steps,
                "fast": ev.fast_decoding_for(self.decoding.fast).model_dump(),
            }
            try:
                DecodingConfig.model_validate({**self.decoding.model_dump(), **update})
            except ValidationError as err:
                raise ValueError(
                    f"evaluation.fast_decoding=true at speed {speed} (gen_length {ev.gen_length}): "
                    f"{err.errors()[0]['msg']}; set evaluation.fast.block_length (or decoding.fast.block_length "
                    "when evaluation.fast is null) to a divisor of evaluation.gen_length or "
                    "evaluation.fast_decoding=false"
                ) from None
        return self

    def fingerprint(self) -> str:
        """Short, stable hash of the resolved config (used in cache keys and run tags)."""
        blob = json.dumps(self.model_dump(mode="json"), sort_keys=True).encode()
        return hashlib.sha256(blob).hexdigest()[:16]

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.model_dump(mode="json"), sort_keys=False)


def _merged(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    """``base`` with ``over`` laid on top: sections merge key by key, any other value replaces."""
    out = dict(base)
    for key, value in over.items():
        out[key] = (
            _merged(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
        )
    return out


def _read_preset(name_or_path: str, seen: tuple[str, ...] = ()) -> dict[str, Any]:
    """A preset or YAML file as a dict; ``base: <preset>`` in it starts from that packaged preset."""
    data, source = _read_yaml(name_or_path)
    base = data.pop("base", None)
    if base is None:
        return data
    if base not in PRESETS:
        raise ConfigError(f"{source}: base {base!r} is not a preset ({', '.join(PRESETS)})")
    if base in seen:
        raise ConfigError(f"{source}: base {base!r} leads back to itself ({' -> '.join((*seen, base))})")
    return _merged(_read_preset(base, (*seen, base)), data)


def _read_yaml(name_or_path: str) -> tuple[dict[str, Any], str]:
    if name_or_path in PRESETS:
        text = resources.files("diffucoder.presets").joinpath(f"{name_or_path}.yaml").read_text()
        source = f"preset {name_or_path!r}"
    else:
        path = Path(name_or_path)
        if not path.is_file():
            raise ConfigError(
                f"config {name_or_path!r} is neither a preset ({', '.join(PRESETS)}) nor a file"
                + _did_you_mean(name_or_path, PRESETS)
            )
        text, source = path.read_text(), str(path)
    try:
        data = yaml.safe_load(text) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{source}: invalid YAML: {exc}") from exc
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: top level must be a mapping, got {type(data).__name__}")
    return data, source


def parse_override(item: str) -> tuple[list[str], Any]:
    """``"grpo.beta=0.02"`` -> (["grpo", "beta"], 0.02); the value is parsed as YAML."""
    key, sep, raw = item.partition("=")
    if not sep or not key.strip():
        raise ConfigError(f"override {item!r} is not of the form key.sub=value")
    try:
        value = yaml.safe_load(raw) if raw != "" else ""
    except yaml.YAMLError:
        value = raw
    return key.strip().split("."), value


def apply_overrides(data: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Set each dotted key in a nested dict (unknown keys are caught later by validation)."""
    for item in overrides:
        path, value = parse_override(item)
        node = data
        for part in path[:-1]:
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                raise ConfigError(f"override {item!r}: {part!r} is a value, not a section")
            node = child
        node[path[-1]] = value
    return data


def _did_you_mean(word: str, choices: Any) -> str:
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f"; did you mean {close[0]!r}?" if close else ""


def _section_keys(loc: tuple[Any, ...]) -> list[str]:
    """The keys the section holding ``loc`` accepts (empty when ``loc`` leaves the typed sections)."""
    model: type[BaseModel] = RunConfig
    for part in loc[:-1]:
        field = model.model_fields.get(str(part))
        annotation = field.annotation if field is not None else None
        if not (isinstance(annotation, type) and issubclass(annotation, BaseModel)):
            return []
        model = annotation
    return list(model.model_fields)


def _format_errors(exc: ValidationError) -> str:
    lines = []
    for err in exc.errors():
        key = ".".join(str(p) for p in err["loc"]) or "<root>"
        if err["type"] == "extra_forbidden":
            hint = _did_you_mean(str(err["loc"][-1]), _section_keys(err["loc"]))
            lines.append(f"  {key}: unknown key{hint}")
        else:
            lines.append(f"  {key}: {err['msg']} (got {err.get('input')!r})")
    return "\n".join(lines)


def validate_config(data: dict[str, Any], source: str = "config") -> RunConfig:
    try:
        return RunConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(f"invalid {source}:\n{_format_errors(exc)}") from None


def load_config(name_or_path: str = "tiny", overrides: list[str] | None = None) -> RunConfig:
    """Load a preset name or YAML path, apply ``key.sub=value`` overrides, validate."""
    data = apply_overrides(_read_preset(name_or_path), list(overrides or []))
    if name_or_path in PRESETS:
        data.setdefault("preset", name_or_path)
    return validate_config(data, source=f"config {name_or_path!r}")
