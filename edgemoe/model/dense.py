"""Dense late fusion trained with sensor dropout: the MoE with one expert and top-1.

With a single expert the top-1 softmax weight is exactly 1, so every token goes through the same
MLP: a dense fusion block over the present sensors' tokens, masked-mean pooled into the head. It
keeps the stage layout (a trivial gate, one expert), so it exports and runs like every method.
"""

from __future__ import annotations

from edgemoe.core.schema import ModelConfig
from edgemoe.model.smoe import SparseMoE


class DenseFusion(SparseMoE):
    """The sparse-MoE shape collapsed to one always-chosen expert (no load balancing needed)."""

    def __init__(self, config: ModelConfig) -> None:
        spec = config.model.model_copy(update={"num_experts": 1, "top_k": 1, "noisy_gating": False})
        super().__init__(config.model_copy(update={"model": spec}))
