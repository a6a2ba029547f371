"""torch.compile with an eager fallback: a failed compilation costs speed, never the run."""

from __future__ import annotations

import logging

import pytest
import torch
from devices import NEEDS_CUDA
from timm.utils import unwrap_model
from torch import nn

from cars.learn.compiled import CompiledModule, compile_model


def _net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.Flatten(), nn.LazyLinear(2))


def _inputs() -> torch.Tensor:
    return torch.randn(2, 3, 8, 8, generator=torch.Generator().manual_seed(1))


class FailingBackend:
    """A compiler backend that fails, as inductor does without a C compiler; counts its calls."""

    def __init__(self) -> None:
        self.calls = 0

    def __call__(self, graph: torch.fx.GraphModule, example_inputs: list) -> None:
        self.calls += 1
        raise RuntimeError("no C compiler found")


def test_a_failed_compilation_runs_the_model_eagerly_and_says_why(
    caplog: pytest.LogCaptureFixture,
) -> None:
    net = _net().eval()
    expected = net(_inputs())
    backend = FailingBackend()
    model = compile_model(net, backend=backend)
    with caplog.at_level(logging.WARNING, logger="cars.learn.compiled"):
        first = model(_inputs())
        second = model(_inputs())
    torch.testing.assert_close(first, expected)
    torch.testing.assert_close(second, expected)
    assert model.compiled is False and "no C compiler found" in model.failure
    assert backend.calls == 1  # not tried again at every step
    assert [r.getMessage() for r in caplog.records if "torch.compile failed" in r.getMessage()]


def test_a_compiled_model_keeps_the_plain_model_s_parameters_and_state() -> None:
    net = _net()
    net(_inputs())  # materialise the lazy layer
    model = compile_model(net, backend="aot_eager")
    out = model(_inputs())
    torch.testing.assert_close(out, _net().train()(_inputs()))
    assert model.compiled is True and model.failure is None
    assert unwrap_model(model) is net
    assert list(model.parameters()) == list(net.parameters())  # each once
    assert set(model.state_dict()) == {f"module.{k}" for k in net.state_dict()}
    out.sum().backward()
    assert all(p.grad is not None for p in net.parameters())


def test_compiling_can_be_switched_off() -> None:
    net = _net()
    assert compile_model(net, enabled=False) is net
    assert isinstance(compile_model(net), CompiledModule)


def test_running_out_of_memory_is_not_taken_for_a_failed_compilation() -> None:
    class Exhausting(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            raise torch.OutOfMemoryError("CUDA out of memory")

    model = compile_model(Exhausting(), backend="aot_eager")
    with pytest.raises(torch.OutOfMemoryError):
        model(_inputs())
    assert model.compiled is None


@pytest.mark.parametrize(
    "device", [pytest.param("cpu", marks=pytest.mark.slow), pytest.param("cuda", marks=NEEDS_CUDA)]
)
def test_inductor_compiles_a_training_step(device: str) -> None:
    net = _net().to(device)
    net(_inputs().to(device))
    reference = _net().to(device)
    reference(_inputs().to(device))
    model = compile_model(net)
    optimizer = torch.optim.AdamW(net.parameters(), lr=0.1)
    loss = model(_inputs().to(device)).square().mean()
    loss.backward()
    optimizer.step()
    assert model.compiled is True, model.failure
    expected = reference(_inputs().to(device)).square().mean()
    torch.testing.assert_close(loss, expected, rtol=1e-4, atol=1e-5)
    assert not torch.equal(net[0].weight, reference[0].weight)
