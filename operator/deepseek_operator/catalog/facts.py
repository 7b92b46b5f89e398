"""Typed, immutable facts about models and GPUs (what catalog YAML entries become)."""

from typing import Final, Literal

from pydantic import BaseModel, ConfigDict, Field

from ..api import AttentionKind, CustomModelFacts, NativeDtype

GB: Final = 1e9
"""Bytes in a GB: checkpoint sizes on disk are published in GB."""
GIB: Final = 1 << 30
"""Bytes in a GiB: GPU memory is reported in MiB/GiB."""
MIB: Final = 1 << 20

WeightFormat = Literal["bf16", "fp16", "fp8", "int8", "int4"]

BYTES_PER_PARAM: Final[dict[WeightFormat, float]] = {
    "bf16": 2.0,
    "fp16": 2.0,
    "fp8": 1.0,
    "int8": 1.0,
    # 4-bit weights plus, per group of 128, a 16-bit scale and a 4-bit zero point (AWQ
    # and GPTQ with the usual group size 128).
    "int4": 0.5 + (2 + 0.5) / 128,
}
"""Bytes per parameter of each stored weight format (docs/sizing.md, "Weights")."""

_FROZEN = ConfigDict(frozen=True, extra="forbid", strict=True)


class ModelFacts(BaseModel):
    """What the operator knows about a model: architecture, size, and where facts come from.

    Sizes: `params_total_b` in billions of parameters, `disk_gb` in GB (1e9 bytes; 0 when
    unknown), `kv_bytes_per_token` in bytes of 16-bit KV cache per token over all layers.
    """

    model_config = _FROZEN

    name: str = Field(description="Catalog id, or the custom model's name.")
    display_name: str = Field(description="Name as the model card writes it.")
    repo: str = Field("", description="Hugging Face repository (ORG/REPO); empty for custom.")
    architecture: str = Field("", description="config.json architectures[0].")
    params_total_b: float = Field(gt=0)
    params_active_b: float | None = Field(None, gt=0, description="Mixture of experts only.")
    hidden_size: int = Field(ge=1)
    num_hidden_layers: int = Field(ge=1)
    num_attention_heads: int = Field(ge=1)
    attention: AttentionKind
    num_key_value_heads: int | None = Field(None, ge=1, description="gqa; None = MHA.")
    head_dim: int | None = Field(None, ge=1)
    kv_lora_rank: int | None = Field(None, ge=1, description="mla only.")
    qk_rope_head_dim: int | None = Field(None, ge=1, description="mla only.")
    max_position_embeddings: int = Field(ge=1)
    vocab_size: int | None = Field(None, ge=1)
    native_dtype: NativeDtype
    disk_gb: float = Field(ge=0)
    kv_bytes_per_token: int = Field(ge=1)
    notes: str = ""
    sources: dict[str, str] = Field(default={}, description="Fact group -> where it comes from.")
    custom: bool = Field(False, description="Described by spec.model.facts, not the catalog.")

    @property
    def kv_heads(self) -> int:
        """KV heads tensor parallelism can shard the KV cache over (MLA has one latent)."""
        if self.attention == "mla":
            return 1
        return self.num_key_value_heads or self.num_attention_heads

    @property
    def is_moe(self) -> bool:
        """True for a mixture of experts (fewer parameters active per token than in total)."""
        return self.params_active_b is not None and self.params_active_b < self.params_total_b

    @property
    def checkpoint_bytes(self) -> float:
        """Bytes of the native checkpoint: `disk_gb`, or parameters x native bytes if unknown."""
        if self.disk_gb > 0:
            return self.disk_gb * GB
        return self.params_total_b * 1e9 * BYTES_PER_PARAM[self.native_dtype]

    @classmethod
    def from_custom(cls, name: str, facts: CustomModelFacts) -> "ModelFacts":
        """Facts of a custom model given in `spec.model.facts`."""
        return cls(
            name=name,
            display_name=name,
            params_total_b=facts.params_b,
            params_active_b=facts.active_params_b or None,
            hidden_size=facts.hidden_size,
            num_hidden_layers=facts.num_hidden_layers,
            num_attention_heads=facts.num_attention_heads,
            attention=facts.attention,
            num_key_value_heads=facts.num_key_value_heads or None,
            max_position_embeddings=facts.max_position_embeddings,
            native_dtype=facts.native_dtype,
            disk_gb=facts.disk_gb,
            kv_bytes_per_token=facts.kv_bytes_per_token,
            sources={"all": "spec.model.facts"},
            custom=True,
        )


class GPUFacts(BaseModel):
    """A GPU type: memory as the node label reports it, and what it computes natively."""

    model_config = _FROZEN

    name: str = Field(description="Catalog id, e.g. H100-80GB.")
    memory_mib: int = Field(ge=1, description="nvidia.com/gpu.memory label value, MiB.")
    product: str = Field(description="nvidia.com/gpu.product label value.")
    compute_capability: str = Field(pattern=r"^[0-9]+\.[0-9]+$")
    family: str = Field(description="Architecture family, e.g. Hopper.")
    fp8: bool = Field(description="Has FP8 tensor cores (compute capability >= 8.9).")

    @property
    def memory_gib(self) -> float:
        """Total memory in GiB."""
        return self.memory_mib * MIB / GIB
