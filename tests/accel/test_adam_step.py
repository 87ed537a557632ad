"""fused_adam_step against torch.optim.Adam(fused=True).step(): same parameters, moments, counts."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from vaekit.accel.adam_step import flat_base, fused_adam_step


def _pair(**options: object) -> tuple[list[nn.Parameter], torch.optim.Adam, list, torch.optim.Adam]:
    torch.manual_seed(0)
    params = [
        nn.Parameter(torch.randn(5, 3)),
        nn.Parameter(torch.randn(3)),
        nn.Parameter(torch.randn(2)),
    ]
    twins = copy.deepcopy(params)
    groups = [{"params": params[:2]}, {"params": params[2:], "lr": 0.3}]
    twin_groups = [{"params": twins[:2]}, {"params": twins[2:], "lr": 0.3}]
    kwargs = {"lr": 0.01, "fused": True, **options}
    return (
        params,
        torch.optim.Adam(groups, **kwargs),
        twins,
        torch.optim.Adam(twin_groups, **kwargs),
    )


@pytest.mark.parametrize(
    "options",
    [
        {},
        {"weight_decay": 0.1},
        {"amsgrad": True, "maximize": True},
        {"weight_decay": 0.1, "decoupled_weight_decay": True},
    ],
)
def test_direct_steps_equal_optimizer_steps_bitwise(options: dict) -> None:
    params, opt, twins, twin_opt = _pair(**options)
    generator = torch.Generator().manual_seed(1)
    for step in range(8):
        grads = [torch.randn(p.shape, generator=generator) for p in params]
        if step == 5:
            grads[2] = None  # a parameter without a gradient is left alone
        if step == 6:
            grads[1] = None  # ... also beside one with a gradient in its group
        found_inf = torch.tensor(float(step in (3, 4)))  # two skipped steps
        for p, t, g in zip(params, twins, grads, strict=True):
            p.grad = None if g is None else g.clone()
            t.grad = None if g is None else g.clone()
        for group, twin in zip(opt.param_groups, twin_opt.param_groups, strict=True):
            group["lr"] = twin["lr"] = 0.01 * (step + 1)  # a schedule
        opt.found_inf = found_inf  # type: ignore[attr-defined]
        opt.step()
        assert fused_adam_step(twin_opt, found_inf) is (step > 0)  # step 0 initialises the state
        if step == 0:
            twin_opt.found_inf = found_inf  # type: ignore[attr-defined]
            twin_opt.step()
    for p, t in zip(params, twins, strict=True):
        assert torch.equal(p, t)
        for key, value in opt.state[p].items():
            assert torch.equal(value, twin_opt.state[t][key]), key
    assert int(opt.state[params[0]]["step"]) == 6  # 8 steps, 2 skipped
    assert int(twin_opt.state[twins[1]]["step"]) == 5  # and one without a gradient


def test_step_counts_share_storage_and_survive_a_save_and_load(tmp_path) -> None:
    """The counts become elements of one tensor (one op per step); state_dict, torch.save with
    weights_only loading, and load_state_dict into a fresh optimiser keep every value exact."""
    params, opt, twins, twin_opt = _pair()
    generator = torch.Generator().manual_seed(2)

    def step(count: int) -> None:
        for _ in range(count):
            for p, t in zip(params, twins, strict=True):
                p.grad = torch.randn(p.shape, generator=generator)
                t.grad = p.grad.clone()
            opt.step()
            if not fused_adam_step(twin_opt):
                twin_opt.step()

    step(3)
    counts = [twin_opt.state[t]["step"] for t in twins[:2]]  # group 0
    assert counts[0]._base is not None and counts[0]._base is counts[1]._base
    torch.save(twin_opt.state_dict(), tmp_path / "opt.pt")
    fresh = torch.optim.Adam(
        [{"params": twins[:2]}, {"params": twins[2:], "lr": 0.3}], lr=0.01, fused=True
    )
    fresh.load_state_dict(torch.load(tmp_path / "opt.pt", weights_only=True))
    twin_opt = fresh
    step(3)
    for p, t in zip(params, twins, strict=True):
        assert torch.equal(p, t)
        for key, value in opt.state[p].items():
            assert torch.equal(value, twin_opt.state[t][key]), key
    assert [int(twin_opt.state[t]["step"]) for t in twins] == [6, 6, 6]


def test_it_declines_where_step_would_do_more() -> None:
    params, opt, _, _ = _pair()
    for p in params:
        p.grad = torch.ones_like(p)
    assert not fused_adam_step(opt)  # no state yet
    opt.step()
    before = [p.detach().clone() for p in params]
    handle = opt.register_step_pre_hook(lambda *args: None)
    assert not fused_adam_step(opt)
    handle.remove()
    assert all(torch.equal(p, b) for p, b in zip(params, before, strict=True))  # untouched
    assert fused_adam_step(opt)
    plain = torch.optim.Adam([nn.Parameter(torch.zeros(2))], foreach=False)
    plain.param_groups[0]["params"][0].grad = torch.ones(2)
    plain.step()
    assert not fused_adam_step(plain)  # not the fused kernel
    opt.param_groups[0]["lr"] = torch.tensor(0.01)
    assert not fused_adam_step(opt)  # tensor hyper-parameters


def test_flat_base_is_found_only_where_the_tensors_tile_it() -> None:
    """The step counts are counted at once where they tile one buffer (``_shared_counts``)."""
    shapes = [(4, 3), (3,), (2, 5)]
    flat = torch.randn(25)
    views = [v.view(s) for v, s in zip(flat.split([12, 3, 10]), shapes, strict=True)]
    assert flat_base(views) is flat
    assert flat_base(views[::-1]) is flat  # in any order
    cases = {
        "missing": views[:2],  # the buffer holds more than these tensors
        "separate": [v.clone() for v in views],
        "overlapping": [flat[0:12].view(4, 3), flat[10:13], flat[15:25].view(2, 5)],
        "strided": [flat[:24].view(4, 6).t()],
        "none": [],
    }
    for name, case in cases.items():
        assert flat_base(case) is None, name
