"""The Xception of the study: trainable-parameter counts per freeze depth, and frozen parts
that stay frozen (no gradients, BatchNorm statistics untouched) through real training."""

from __future__ import annotations

import copy
import itertools
import pickle

import pytest
import timm
import torch
import torch.distributed as dist
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from cars.config import ConfigError, TrainConfig
from cars.learn.engine import train_one_epoch, update_batchnorm_statistics
from cars.learn.model import (
    XCEPTION_BLOCKS,
    EvalBatchNorm2d,
    build_model,
    count_parameters,
    freeze_blocks,
)
from cars.learn.optim import create_optimizer

TOTAL = 21_208_556


@pytest.fixture(scope="module")
def xception() -> nn.Module:
    """One 196-class legacy_xception, copied by tests instead of rebuilt."""
    return timm.create_model("legacy_xception", num_classes=196)


def _params(model: nn.Module, *names: str) -> int:
    return sum(p.numel() for name in names for p in model.get_submodule(name).parameters())


@pytest.mark.parametrize(
    ("regime", "blocks", "trainable"),
    [
        ("frozen", None, 401_604),
        ("frozen", 5, 401_604),
        ("finetune", None, 5_150_404),
        ("finetune", 14, TOTAL),
        ("scratch", 3, TOTAL),
    ],
)
def test_trainable_counts_match_the_reference_study(
    regime: str, blocks: int | None, trainable: int
) -> None:
    model = build_model(regime, 196, blocks)
    assert count_parameters(model) == (trainable, TOTAL)


def test_depths_two_and_eight_train_exactly_their_blocks(xception: nn.Module) -> None:
    # Written out by hand from the Keras block map, not taken from XCEPTION_BLOCKS.
    head = _params(xception, "fc")
    exit_flow = _params(xception, "conv3", "bn3", "conv4", "bn4")
    two = head + exit_flow + _params(xception, "block12")
    eight = two + _params(xception, *(f"block{i}" for i in range(6, 12)))
    for blocks, expected in ((2, two), (8, eight)):
        model = copy.deepcopy(xception)
        freeze_blocks(model, blocks)
        assert count_parameters(model) == (expected, TOTAL)
    assert head == 401_604
    assert exit_flow == 5_150_404 - 401_604


def test_trainable_count_grows_with_every_block(xception: nn.Module) -> None:
    # Freezing only ever adds frozen blocks, so one copy can walk from 14 down to 0.
    model = copy.deepcopy(xception)
    counts = []
    for blocks in range(14, -1, -1):
        freeze_blocks(model, blocks)
        counts.insert(0, count_parameters(model)[0])
    assert counts[0] == 401_604
    assert counts[-1] == TOTAL
    assert all(a < b for a, b in itertools.pairwise(counts))


def test_block_map_covers_every_parameter_once(xception: nn.Module) -> None:
    names = [name for block in XCEPTION_BLOCKS for name in block]
    assert len(XCEPTION_BLOCKS) == 14
    assert len(names) == len(set(names))
    assert _params(xception, *names, "fc") == TOTAL


def frozen_batchnorm_names(model: nn.Module) -> list[str]:
    """Names of the BatchNorm layers that stay in eval mode during training."""
    return [name for name, m in model.named_modules() if isinstance(m, EvalBatchNorm2d)]


def test_frozen_batchnorms_stay_in_eval_mode_through_train_copy_and_pickle() -> None:
    model = build_model("finetune", 196, 2)
    model.train()
    frozen = frozen_batchnorm_names(model)
    # Blocks 1..12 hold 35 BatchNorms; block12 and the exit flow keep training.
    assert len(frozen) == 35
    assert "block11.rep.8" in frozen
    assert "bn3" not in frozen
    assert not any(name.startswith("block12") for name in frozen)
    for candidate in (model, copy.deepcopy(model), pickle.loads(pickle.dumps(model))):
        candidate.eval()
        candidate.train()
        modules = dict(candidate.named_modules())
        assert all(not modules[name].training for name in frozen)
        assert modules["bn3"].training
        assert modules["block12.rep.2"].training


def test_frozen_batchnorm_keeps_its_state_dict_keys() -> None:
    frozen_model = build_model("frozen", 196)
    scratch_model = build_model("scratch", 196)
    assert frozen_model.state_dict().keys() == scratch_model.state_dict().keys()
    scratch_model.load_state_dict(frozen_model.state_dict())
    frozen_model.load_state_dict(scratch_model.state_dict())
    assert isinstance(frozen_model.bn4, EvalBatchNorm2d)


def test_frozen_batchnorms_stay_in_eval_mode_under_ddp(tmp_path) -> None:
    dist.init_process_group(
        "gloo", init_method=f"file://{tmp_path / 'store'}", rank=0, world_size=1
    )
    try:
        ddp = nn.parallel.DistributedDataParallel(build_model("finetune", 10, 1))
        ddp.train()
        assert not ddp.module.bn2.training
        assert not ddp.module.block11.rep[2].training
        assert ddp.module.bn4.training
        ddp(torch.randn(2, 3, 64, 64)).sum().backward()
        assert ddp.module.block11.rep[1].pointwise.weight.grad is None
        assert ddp.module.conv4.pointwise.weight.grad is not None
    finally:
        dist.destroy_process_group()


def test_training_leaves_the_frozen_part_bit_identical() -> None:
    torch.manual_seed(0)
    model = build_model("finetune", 3, 2)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    data = TensorDataset(torch.randn(8, 3, 64, 64), torch.tensor([0, 1, 2, 0, 1, 2, 0, 1]))
    # High weight decay: a frozen parameter wrongly in the optimizer would move.
    config = TrainConfig(data="d", regime="finetune", trainable_blocks=2, weight_decay=0.5)
    optimizer = create_optimizer(model, config)
    train_one_epoch(
        model,
        DataLoader(data, batch_size=4),
        optimizer,
        loss_fn=nn.CrossEntropyLoss(),
        device="cpu",
    )
    after = model.state_dict()
    frozen_prefixes = ("conv1", "bn1", "conv2", "bn2", *(f"block{i}." for i in range(1, 12)))
    for key, value in before.items():
        frozen = key.startswith(frozen_prefixes) and not key.startswith("block12")
        if frozen:
            assert torch.equal(after[key], value), f"frozen {key} changed"
    # Trainable BatchNorms did update their statistics, and trainable weights moved.
    for key in ("bn3.running_mean", "bn4.running_var", "block12.rep.2.running_mean", "fc.weight"):
        assert not torch.equal(after[key], before[key]), f"trainable {key} did not change"
    assert after["bn4.num_batches_tracked"] == 2
    assert after["bn1.num_batches_tracked"] == before["bn1.num_batches_tracked"]
    for name, param in model.named_parameters():
        if name.startswith(frozen_prefixes) and not name.startswith("block12"):
            assert not param.requires_grad
            assert param.grad is None, f"frozen {name} got a gradient"
        else:
            assert param.grad is not None, f"trainable {name} got no gradient"


def test_precise_statistics_leave_the_frozen_part_bit_identical() -> None:
    torch.manual_seed(0)
    model = build_model("finetune", 3, 1)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    images = [(torch.randn(4, 3, 32, 32), torch.tensor([0, 1, 2, 0])) for _ in range(2)]
    update_batchnorm_statistics(model, images, num_batches=2, device="cpu")
    after = model.state_dict()
    for key, value in before.items():
        if not key.startswith(("bn3.", "bn4.")):
            assert torch.equal(after[key], value), f"{key} changed"
        elif "running" in key:
            assert not torch.equal(after[key], value), f"trainable {key} was not recomputed"


def test_model_predicts_one_score_per_class() -> None:
    model = build_model("frozen", 7).eval()
    with torch.inference_mode():
        assert model(torch.randn(2, 3, 64, 64)).shape == (2, 7)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"regime": "linear", "num_classes": 196}, "regime='linear'"),
        ({"regime": "finetune", "num_classes": 196, "trainable_blocks": 15}, "trainable_blocks"),
        ({"regime": "finetune", "num_classes": 0}, "num_classes=0"),
        ({"regime": "scratch", "num_classes": 196, "weights": "imagenet"}, "scratch"),
    ],
)
def test_bad_arguments_name_the_problem(kwargs: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        build_model(**kwargs)


def test_freeze_depth_out_of_range_is_an_error(xception: nn.Module) -> None:
    with pytest.raises(ConfigError, match="from 0 to 14"):
        freeze_blocks(copy.deepcopy(xception), 15)
