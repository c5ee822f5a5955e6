"""The fusion stage: sensor messages cancel a shared disturbance on every mask, absent sensors
send nothing, and the exported form over one mask's tokens equals the training form."""

from __future__ import annotations

import itertools

import pytest
import torch
from torch import nn

from edgemoe.model.fusion import SensorMessages, TokenFusion

M, S, D = 4, 2, 6


def disturbed_tokens(loadings: torch.Tensor, z: torch.Tensor, signal: torch.Tensor) -> torch.Tensor:
    """Tokens [B, M*S, D]: every token of sensor m is its signal plus ``loadings[m] @ z``."""
    per_sensor = signal + torch.einsum("mde,be->bmd", loadings, z)  # [B, M, D]
    return per_sensor.repeat_interleave(S, dim=1)


def test_messages_cancel_a_disturbance_every_sensor_feels_on_every_mask() -> None:
    """With W[r, s] = -A_r A_s^-1 each sender estimates minus r's share of the disturbance; the
    mean over the present senders is then exact for every combination of two or more sensors."""
    torch.manual_seed(0)
    loadings = torch.randn(M, D, D) + 3 * torch.eye(D)  # A_m, invertible
    messages = SensorMessages(M, S, D)
    messages.norm = nn.Identity()  # the property is about the sum before the normalisation
    with torch.no_grad():
        for r, s in itertools.product(range(M), range(M)):
            messages.weight[r, s] = -loadings[r] @ torch.linalg.inv(loadings[s])
    signal = torch.zeros(3, M, D)
    z = torch.randn(3, D) * 5
    tokens = disturbed_tokens(loadings, z, signal)
    for size in range(2, M + 1):
        for subset in itertools.combinations(range(M), size):
            present = torch.zeros(3, M)
            present[:, list(subset)] = 1.0
            mask = present.repeat_interleave(S, dim=1).bool()
            out = messages(tokens * mask.unsqueeze(-1), messages.training_layout(mask))
            for r in subset:
                assert out[:, r * S : (r + 1) * S].abs().max() < 1e-3, (subset, r)


def test_an_absent_sensor_sends_no_message() -> None:
    torch.manual_seed(1)
    fusion = TokenFusion(D, 2, 8, messages=SensorMessages(M, S, D)).eval()
    mask = torch.tensor([[True, False, True, True]]).repeat_interleave(S, dim=1)
    tokens = torch.randn(1, M * S, D) * mask.unsqueeze(-1)
    garbage = tokens.clone()
    garbage[:, S : 2 * S] = 100.0  # whatever sits in the absent sensor's slots
    with torch.no_grad():
        assert torch.allclose(fusion(tokens, mask), fusion(garbage * mask.unsqueeze(-1), mask))
        assert torch.equal(fusion(tokens, mask)[:, S : 2 * S], torch.zeros(1, S, D))


@pytest.mark.parametrize("present", [(0,), (1, 3), (0, 2, 3), (0, 1, 2, 3)])
def test_exported_form_over_one_masks_tokens_equals_the_training_form(present: tuple[int, ...]) -> None:
    torch.manual_seed(2)
    fusion = TokenFusion(D, 2, 8, messages=SensorMessages(M, S, D)).eval()
    bits = torch.zeros(2, M, dtype=torch.bool)
    bits[:, list(present)] = True
    mask = bits.repeat_interleave(S, dim=1)
    tokens = torch.randn(2, M * S, D) * mask.unsqueeze(-1)
    slots = [t for i in present for t in range(i * S, (i + 1) * S)]
    token_sensors = torch.eye(M)[[i for i in present for _ in range(S)]].expand(2, -1, -1)  # [B, T, M]
    with torch.no_grad():
        training = fusion(tokens, mask)[:, slots]
        exported = fusion.stage()(tokens[:, slots], token_sensors)
    assert torch.allclose(training, exported, atol=1e-5)


def test_messages_need_the_token_mask_in_the_training_form() -> None:
    fusion = TokenFusion(D, 2, 8, messages=SensorMessages(M, S, D))
    with pytest.raises(ValueError, match="token mask"):
        fusion(torch.randn(1, M * S, D))
