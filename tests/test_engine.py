"""The engine: optimizers, schedules and losses by name, device/precision choice, the step and the evaluation."""
import copy

import pytest
import torch
from torch import nn

from nettrain.config import Config
from nettrain.data import ArrayData, DataInfo
from nettrain.data.batches import BatchPrep, InMemoryBatches
from nettrain.engine.device import resolve_device, resolve_precision
from nettrain.engine.loop import Step, evaluate, train_epoch, tta_forward
from nettrain.engine.muon import orthogonalize
from nettrain.engine.optim import (LOSSES, OPTIMIZERS, SCHEDULERS, build_loss, build_optimizer, build_scheduler,
                                   default_loss_for)
from nettrain.errors import ConfigError, NettrainError


def optim_cfg(**kw):
    return Config().override({f"optim.{k}": v for k, v in kw.items()}).optim


def sched_cfg(**kw):
    return Config().override({f"sched.{k}": v for k, v in kw.items()}).sched


def params():
    return [nn.Parameter(torch.zeros(3))]


# ---- optimizers ----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", OPTIMIZERS.names())
def test_every_optimizer_builds_with_the_shared_settings(name):
    opt = build_optimizer(params(), optim_cfg(name=name, lr=0.5, weight_decay=0.01))
    assert opt.param_groups[0]["lr"] == 0.5 and opt.param_groups[0]["weight_decay"] == 0.01


def test_optimizer_settings_reach_torch():
    sgd = build_optimizer(params(), optim_cfg(name="sgd", lr=0.1, momentum=0.9, nesterov=True))
    assert isinstance(sgd, torch.optim.SGD)
    assert sgd.param_groups[0]["momentum"] == 0.9 and sgd.param_groups[0]["nesterov"] is True
    adam = build_optimizer(params(), optim_cfg(name="adam", betas=[0.8, 0.99], eps=1e-6, args={"amsgrad": True}))
    assert adam.param_groups[0]["betas"] == (0.8, 0.99) and adam.param_groups[0]["eps"] == 1e-6
    assert adam.param_groups[0]["amsgrad"] is True


def test_adam_uses_the_fused_kernel_unless_told_otherwise():
    assert build_optimizer(params(), optim_cfg(name="adam")).param_groups[0]["fused"] is True
    assert build_optimizer(params(), optim_cfg(name="adamw")).param_groups[0]["fused"] is True
    assert not build_optimizer(params(), optim_cfg(name="adam", args={"fused": False})).param_groups[0]["fused"]
    foreach = build_optimizer(params(), optim_cfg(name="adam", args={"foreach": True})).param_groups[0]
    assert foreach["foreach"] is True and not foreach["fused"]
    sgd = build_optimizer(params(), optim_cfg(name="sgd", lr=0.1)).param_groups[0]
    assert sgd["foreach"] is True and not sgd.get("fused")   # torch would pick the per-tensor loop on the CPU
    assert build_optimizer(params(), optim_cfg(name="sgd", args={"foreach": False})).param_groups[0]["foreach"] is False


def test_optimizer_given_a_setting_it_does_not_take():
    with pytest.raises(ConfigError, match="optimizer 'adam' takes no momentum; it takes: lr, betas"):
        build_optimizer(params(), optim_cfg(name="adam", momentum=0.9))
    with pytest.raises(ConfigError, match=r"takes no lr_decy \(did you mean 'lr_decay'\?\)"):
        build_optimizer(params(), optim_cfg(name="adagrad", args={"lr_decy": 0.1}))
    with pytest.raises(ConfigError, match="optimizer 'sgd': .*fix the optim"):
        build_optimizer(params(), optim_cfg(name="sgd", lr=-1.0))


def test_unknown_optimizer():
    with pytest.raises(NettrainError, match=r"unknown optimizer 'adamm' \(did you mean 'adam'\?\)"):
        build_optimizer(params(), optim_cfg(name="adamm"))


def conv_net():
    return nn.Sequential(nn.Conv2d(3, 8, 3, bias=False), nn.BatchNorm2d(8), nn.Flatten(), nn.Linear(8 * 4 * 4, 5))


def test_muon_orthogonalizes_the_filters_and_leaves_the_rest_to_sgd():
    # seeded: with 5 Newton-Schulz steps a gradient whose smallest singular value is tiny keeps a small one in its
    # update (1 initialization in 40 gave 0.43), so the bound below holds for this net, not for every draw
    torch.manual_seed(1)
    net = conv_net()
    opt = build_optimizer(net.parameters(), optim_cfg(name="muon", lr=0.1, momentum=0.9, nesterov=True,
                                                      weight_decay=0.01, args={"muon_lr": 0.05}))
    conv, bn_w, bn_b, head_w, head_b = net.parameters()
    sgd, muon = opt.param_groups
    assert muon["muon"] and [conv] == muon["params"] and muon["lr"] == 0.05
    assert not sgd["muon"] and [id(p) for p in sgd["params"]] == [id(bn_w), id(bn_b), id(head_w), id(head_b)]
    twin = conv_net()
    twin.load_state_dict(net.state_dict())
    reference = torch.optim.SGD(list(twin.parameters())[1:], lr=0.1, momentum=0.9, nesterov=True, weight_decay=0.01)
    torch.manual_seed(0)
    for _ in range(3):
        opt.zero_grad()
        net(torch.randn(4, 3, 6, 6)).square().sum().backward()
        for p, q in zip(list(net.parameters())[1:], list(twin.parameters())[1:]):
            q.grad = p.grad.clone()
        before, grad = conv.detach().clone(), conv.grad.clone()
        opt.step()
        reference.step()
        for p, q in zip(list(net.parameters())[1:], list(twin.parameters())[1:]):
            assert torch.equal(p, q)   # the SGD side is torch.optim.SGD, step for step
        update = (before - conv.detach()).reshape(8, -1) / 0.05
        singular = torch.linalg.svdvals(update)
        assert singular.min() > 0.5 and singular.max() < 1.5   # every direction about the same size
        assert not torch.allclose(update, grad.reshape(8, -1) / grad.norm(), atol=0.05)


def test_muon_orthogonalize_is_close_to_the_polar_factor():
    g = torch.randn(16, 4, 3, 3, dtype=torch.float64)
    u, _, vh = torch.linalg.svd(g.reshape(16, -1), full_matrices=False)
    out = orthogonalize(g, steps=5, dtype=torch.float64)
    assert out.shape == g.shape and out.dtype == g.dtype
    cosine = (out.reshape(16, -1) * (u @ vh)).sum() / (out.norm() * (u @ vh).norm())
    assert cosine > 0.95
    tall = orthogonalize(torch.randn(40, 6), steps=5, dtype=torch.float32)   # tall: iterates on the transpose
    assert torch.linalg.svdvals(tall).min() > 0.5


def test_muon_normalize_keeps_each_filter_bank_at_norm_sqrt_rows():
    net = conv_net()
    with torch.no_grad():
        net[0].weight.mul_(7)
    opt = build_optimizer(net.parameters(), optim_cfg(name="muon", args={"muon_lr": 0.0, "normalize": True}))
    net(torch.randn(2, 3, 6, 6)).sum().backward()
    opt.step()
    assert net[0].weight.norm().item() == pytest.approx(8 ** 0.5, rel=1e-5)
    with pytest.raises(ConfigError, match="optimizer 'muon': muon_lr must be >= 0"):
        build_optimizer(net.parameters(), optim_cfg(name="muon", args={"muon_lr": -1.0}))


def test_muon_resumes_exactly_from_its_state_dict():
    torch.manual_seed(0)
    nets = [conv_net(), conv_net()]
    nets[1].load_state_dict(nets[0].state_dict())
    cfg = optim_cfg(name="muon", lr=0.1, momentum=0.9, args={"muon_lr": 0.05, "normalize": True})
    first = build_optimizer(nets[0].parameters(), cfg)
    batches = [torch.randn(4, 3, 6, 6) for _ in range(4)]

    def step(net, opt, x):
        opt.zero_grad()
        net(x).square().sum().backward()
        opt.step()

    for x in batches[:2]:
        step(nets[0], first, x)
    nets[1].load_state_dict(nets[0].state_dict())
    second = build_optimizer(nets[1].parameters(), cfg)
    second.load_state_dict(copy.deepcopy(first.state_dict()))   # as from a checkpoint file: momentum buffers too
    for x in batches[2:]:
        step(nets[0], first, x)
        step(nets[1], second, x)
    for p, q in zip(nets[0].parameters(), nets[1].parameters()):
        assert torch.equal(p, q)


# ---- schedules (stepped once per optimizer step) ----------------------------------------------------------------

def lrs(cfg, epochs=4, steps=5, lr=1.0):
    opt = torch.optim.SGD(params(), lr=lr)
    sched = build_scheduler(opt, cfg, epochs, steps)
    out = []
    for _ in range(epochs * steps):
        out.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    return out


def test_constant_step_cosine_onecycle_and_warmup():
    assert lrs(sched_cfg(name="none")) == [1.0] * 20
    step = lrs(sched_cfg(name="step", step_epochs=2, gamma=0.1))
    assert step[:10] == [1.0] * 10 and step[10:] == pytest.approx([0.1] * 10)
    cos = lrs(sched_cfg(name="cosine", min_lr=0.0))
    assert cos[0] == 1.0 and all(a > b for a, b in zip(cos, cos[1:])) and cos[-1] < 0.01
    one = lrs(sched_cfg(name="onecycle", pct_start=0.25))
    peak = one.index(max(one))
    assert 3 <= peak <= 6 and max(one) == pytest.approx(1.0) and one[0] < 0.1 and one[-1] < 0.01
    warm = lrs(sched_cfg(name="none", warmup_epochs=1))
    assert warm[0] == pytest.approx(0.1) and all(a < b for a, b in zip(warm[:5], warm[1:6])) and warm[5:] == [1.0] * 15


def test_schedule_state_restores_exactly():
    opt = torch.optim.SGD(params(), lr=1.0)
    sched = build_scheduler(opt, sched_cfg(name="cosine", warmup_epochs=1), 4, 5)
    for _ in range(7):
        opt.step()
        sched.step()
    opt2 = torch.optim.SGD(params(), lr=1.0)
    sched2 = build_scheduler(opt2, sched_cfg(name="cosine", warmup_epochs=1), 4, 5)
    opt2.load_state_dict(opt.state_dict())
    sched2.load_state_dict(sched.state_dict())
    for _ in range(5):
        assert opt2.param_groups[0]["lr"] == opt.param_groups[0]["lr"]
        for o, s in ((opt, sched), (opt2, sched2)):
            o.step()
            s.step()


def test_every_scheduler_builds():
    for name in SCHEDULERS.names():
        assert len(lrs(sched_cfg(name=name), epochs=2, steps=3)) == 6


# ---- losses ----------------------------------------------------------------------------------------------------

def test_losses_by_name_and_default_for_regression(tmp_path):
    tc = Config().train
    assert isinstance(build_loss(tc), nn.CrossEntropyLoss)
    smooth = build_loss(Config().override({"train.label_smoothing": 0.1}).train)
    assert smooth.label_smoothing == 0.1
    assert set(LOSSES.names()) >= {"cross-entropy", "nll", "mse", "l1"}
    assert default_loss_for("regression", "cross-entropy") == "mse"
    assert default_loss_for("regression", "l1") == "l1" and default_loss_for("classification", "nll") == "nll"
    path = tmp_path / "my_loss.py"
    path.write_text("def half_mse(out, y):\n    return ((out - y) ** 2).mean() / 2\n")
    fn = build_loss(Config().override({"train.loss": f"{path}:half_mse"}).train)
    assert fn(torch.ones(2), torch.zeros(2)) == 0.5
    path.write_text(path.read_text() + "\ndef per_example(out, y):\n    return (out - y) ** 2\n")
    fn = build_loss(Config().override({"train.loss": f"{path}:per_example"}).train)
    with pytest.raises(ConfigError, match=r"returned shape \(2,\); it must return one number, a 0-d tensor"):
        fn(torch.ones(2), torch.zeros(2))   # not torch's "grad can be implicitly created only for scalar outputs"
    with pytest.raises(NettrainError, match=r"unknown loss 'mce' \(did you mean 'mse'\?\)"):
        build_loss(Config().override({"train.loss": "mce"}).train)


# ---- device and precision ----------------------------------------------------------------------------------------

def test_devices():
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device("auto").type in ("cpu", "cuda", "mps")
    with pytest.raises(ConfigError, match="unknown device 'gpu0'"):
        resolve_device("gpu0")
    if not torch.cuda.is_available():
        with pytest.raises(ConfigError, match="CUDA is not available"):
            resolve_device("cuda")


def test_precisions_on_cpu():
    cpu = torch.device("cpu")
    assert resolve_precision("auto", cpu, "vector").name == "32"   # tiny vector models: no casts
    assert resolve_precision("32", cpu, "image").dtype is None
    assert resolve_precision("bf16-mixed", cpu, "image").dtype == torch.bfloat16
    with pytest.raises(ConfigError, match="16-mixed needs a GPU"):
        resolve_precision("16-mixed", cpu, "image")
    assert not resolve_precision("32", cpu, "image").scaler().is_enabled()


class Probe(nn.Linear):
    """A linear layer that records the dtype it computes in and whether autocast was on."""

    def forward(self, x):
        self.seen = (x.dtype, torch.is_autocast_enabled("cpu"))
        return super().forward(x)


def test_small_linears_run_in_float32_under_cpu_bf16_autocast():
    bf16 = resolve_precision("bf16-mixed", torch.device("cpu"), "image")
    small, large = Probe(64, 10), Probe(1024, 2048)   # 16 x 64 x 10 rows x in x out: small; 16 x 1024 x 2048: not
    x = torch.randn(16, 64)
    expected = nn.functional.linear(x, small.weight, small.bias)   # the float32 product, outside autocast
    with bf16.small_linears_in_float32(small, large), bf16.autocast():
        out = small(x)
        assert small.seen == (torch.float32, False) and out.dtype == torch.float32
        assert torch.is_autocast_enabled("cpu")                 # back on after the layer
        assert large(torch.randn(16, 1024)).dtype == torch.bfloat16 and large.seen[1]
        assert torch.equal(out, expected)
    assert not small._forward_pre_hooks and not small._forward_hooks   # the modules are left as they were
    with bf16.autocast():
        assert small(x).dtype == torch.bfloat16


def test_small_linears_threshold_can_be_moved():
    bf16 = resolve_precision("bf16-mixed", torch.device("cpu"), "image")
    small, large = Probe(64, 10), Probe(1024, 2048)
    with bf16.small_linears_in_float32(small, below=16 * 64 * 10), bf16.autocast():   # 16 x 64 x 10 is not below
        assert small(torch.randn(16, 64)).dtype == torch.bfloat16 and small.seen[1]   # autocast left on
    with bf16.small_linears_in_float32(large, below=1 << 62), bf16.autocast():        # any size is below
        assert large(torch.randn(16, 1024)).dtype == torch.float32 and large.seen == (torch.float32, False)


def test_small_linears_switch_nothing_outside_cpu_bf16_autocast_and_survive_errors():
    bf16 = resolve_precision("bf16-mixed", torch.device("cpu"), "image")
    layer = Probe(4, 2)
    with resolve_precision("32", torch.device("cpu"), "image").small_linears_in_float32(layer):
        assert not layer._forward_pre_hooks
    halved = Probe(4, 2).to(torch.bfloat16)
    with bf16.small_linears_in_float32(halved), bf16.autocast():
        assert halved(torch.randn(3, 4)).dtype == torch.bfloat16   # weights in bf16: left to autocast
    with bf16.small_linears_in_float32(layer):
        layer(torch.randn(3, 4))                     # no autocast: nothing to switch
        assert layer.seen == (torch.float32, False)
        with bf16.autocast():
            with pytest.raises(RuntimeError):
                layer(torch.randn(3, 5))             # wrong width: the forward raises inside the float32 block
            assert torch.is_autocast_enabled("cpu")  # ... and autocast is on again all the same


class ScaledFirst(nn.Module):
    """Arithmetic on the input before the first convolution: in float32 under autocast, so rounding the input
    first changes what the convolution sees."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)

    def forward(self, x):
        return self.conv(x * 1.001)


def test_takes_rounded_input_only_where_it_changes_nothing():
    cpu = torch.device("cpu")
    bf16, fp32 = resolve_precision("bf16-mixed", cpu, "image"), resolve_precision("32", cpu, "image")
    torch.manual_seed(0)
    x = torch.randn(1, 3, 8, 8)
    conv_first = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.Flatten(), nn.Linear(144, 2))
    assert bf16.takes_rounded_input(conv_first, x)            # autocast casts the convolution's input anyway
    assert conv_first.training                                 # checked in eval mode, then put back
    assert not fp32.takes_rounded_input(conv_first, x)         # no autocast: rounding would change the input
    assert not bf16.takes_rounded_input(ScaledFirst(), x)
    mlp = nn.Sequential(nn.Flatten(), nn.Linear(192, 8))
    assert bf16.takes_rounded_input(mlp, x)                   # a bf16 product
    with bf16.small_linears_in_float32(mlp):                   # 1 x 192 x 8 runs in float32 on the rounded values
        assert not bf16.takes_rounded_input(mlp, x)
    assert not bf16.takes_rounded_input(nn.Conv2d(5, 4, 3), x)   # a model that fails on it keeps float32 batches


# ---- the step and the evaluation pass -----------------------------------------------------------------------------

def vector_batches(x, y, batch_size, shuffle=False):
    return InMemoryBatches(ArrayData(x, y), BatchPrep(DataInfo(kind="vector", shape=[x.shape[1]]), "cpu"),
                           batch_size, train=True, shuffle=shuffle)


def test_evaluate_sums_exactly_over_every_example():
    model = nn.Linear(2, 3, bias=False)
    with torch.no_grad():
        model.weight.copy_(torch.eye(3, 2))   # logits = [x0, x1, 0]
    x = torch.tensor([[5.0, 0], [0, 5], [5, 0], [-5, -5], [0, 5]])
    y = torch.tensor([0, 1, 1, 2, 0])
    prec = resolve_precision("32", torch.device("cpu"), "vector")
    loss_fn = nn.CrossEntropyLoss()
    res = evaluate(model, vector_batches(x, y, 2), loss_fn, prec, True, 3)   # batches of 2, 2, 1
    assert res["examples"] == 5 and res["acc"] == pytest.approx(3 / 5)
    assert res["confusion"].tolist() == [[1, 1, 0], [1, 1, 0], [0, 0, 1]]
    assert res["loss"] == pytest.approx(loss_fn(model(x), y).item(), rel=1e-6)
    assert model.training   # the mode it had is restored


def test_evaluate_regression_mse_mae():
    model = nn.Linear(1, 1)
    with torch.no_grad():
        model.weight.fill_(1.0)
        model.bias.fill_(0.0)
    x = torch.tensor([[1.0], [2.0], [3.0]])
    y = torch.tensor([[1.0], [0.0], [5.0]])
    prec = resolve_precision("32", torch.device("cpu"), "vector")
    res = evaluate(model, vector_batches(x, y, 2), nn.MSELoss(), prec, False)
    assert res["mse"] == pytest.approx((0 + 4 + 4) / 3) and res["mae"] == pytest.approx((0 + 2 + 2) / 3)
    assert res["loss"] == pytest.approx(8 / 3) and "acc" not in res


class TopLeft(nn.Module):
    """Outputs the top-left pixel: which views TTA averaged can be read off the result."""
    def forward(self, x):
        return x[:, :, 0, 0]


def test_tta_averages_the_mirror_and_the_shifted_views():
    img = torch.tensor([[[[0.0, 10, 2], [20, 4, 30], [40, 50, 60]]]])   # top-left 0, top-right 2, centre 4
    assert tta_forward(TopLeft(), img).item() == pytest.approx((0 + 2) / 2)
    # moved by one pixel either way with reflected edges, the top-left pixel (mirrored or not) is the centre
    assert tta_forward(TopLeft(), img, shift=1).item() == pytest.approx(((0 + 2) / 2 + 4) / 2)


def test_evaluate_with_tta_scores_the_averaged_outputs():
    # the plain model's top-left pixel picks class 0; the mirror image's top-left (the top-right pixel) class 1
    x = torch.zeros(1, 2, 3, 3)
    x[0, 0, 0, 0], x[0, 1, 0, 2] = 1.0, 3.0
    prec = resolve_precision("32", torch.device("cpu"), "image")
    batches = [(x, torch.tensor([1]))]
    assert evaluate(TopLeft(), batches, nn.CrossEntropyLoss(), prec, True, 2)["acc"] == 0
    assert evaluate(TopLeft(), batches, nn.CrossEntropyLoss(), prec, True, 2, tta=True)["acc"] == 1


def make_step(model, lr=0.1, accumulate=1, grad_clip=None):
    opt = torch.optim.SGD(model.parameters(), lr=lr)
    prec = resolve_precision("32", torch.device("cpu"), "vector")
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 1.0)
    return Step(model, nn.MSELoss(), opt, sched, prec, prec.scaler(), accumulate, grad_clip)


def test_train_epoch_is_the_tutorial_step():
    torch.manual_seed(0)
    x, y = torch.randn(8, 3), torch.randn(8, 1)
    model, ref = nn.Linear(3, 1), nn.Linear(3, 1)
    ref.load_state_dict(model.state_dict())
    out = train_epoch(make_step(model), vector_batches(x, y, 4), classification=False)
    opt = torch.optim.SGD(ref.parameters(), lr=0.1)
    losses = []
    for i in (0, 4):   # the loop written out by hand
        loss = nn.functional.mse_loss(ref(x[i:i + 4]), y[i:i + 4])
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert all(torch.equal(a, b) for a, b in zip(model.parameters(), ref.parameters()))
    assert out["loss"] == pytest.approx(sum(losses) / 2) and out["examples"] == 8 and out["acc"] is None


def test_accumulation_equals_one_big_batch():
    torch.manual_seed(0)
    x, y = torch.randn(8, 3), torch.randn(8, 1)
    a, b = nn.Linear(3, 1), nn.Linear(3, 1)
    b.load_state_dict(a.state_dict())
    train_epoch(make_step(a, accumulate=2), vector_batches(x, y, 4), classification=False)
    train_epoch(make_step(b), vector_batches(x, y, 8), classification=False)
    assert all(torch.allclose(p, q, atol=1e-6) for p, q in zip(a.parameters(), b.parameters()))


def test_grad_clip_limits_the_update():
    x, y = torch.ones(4, 1), torch.full((4, 1), 100.0)
    model = nn.Linear(1, 1, bias=False)
    with torch.no_grad():
        model.weight.zero_()
    train_epoch(make_step(model, lr=1.0, grad_clip=0.5), vector_batches(x, y, 4), classification=False)
    assert model.weight.item() == pytest.approx(0.5)   # the gradient (-200) clipped to norm 0.5


def test_lookahead_pulls_the_weights_back_to_the_slow_copy_on_its_schedule():
    model = nn.Sequential(nn.Linear(2, 1), nn.BatchNorm1d(1))
    from nettrain.engine.lookahead import Lookahead
    la = Lookahead(model, every=2, decay=0.5, total_steps=4)
    weight, running_mean = model[0].weight, model[1].running_mean
    start_w, start_m = weight.detach().clone(), running_mean.clone()
    assert la.share(0) == 0 and la.share(2) == 0.5 ** 2 * 0.5 ** 3 and la.share(4) == 1

    with torch.no_grad():
        weight.add_(1.0)
        running_mean.add_(2.0)
    la.step()                                                       # step 1: no sync, the fast weights run free
    assert torch.equal(weight, start_w + 1) and la.step_count == 1
    la.step()                                                       # step 2: slow <- d*slow + (1-d)*fast; fast <- slow
    d = la.share(2)
    torch.testing.assert_close(weight.detach(), start_w + (1 - d) * 1.0)
    torch.testing.assert_close(running_mean, start_m + (1 - d) * 2.0)   # BatchNorm statistics too
    torch.testing.assert_close(la.slow["0.weight"], weight.detach())
    synced = weight.detach().clone()

    with torch.no_grad():
        weight.add_(5.0)
    la.step()
    la.step()                                                       # the last step: the model ends on the slow copy
    torch.testing.assert_close(weight.detach(), synced)

    again = Lookahead(model, every=2, decay=0.5, total_steps=4)
    again.load_state_dict(la.state_dict())
    assert again.step_count == 4 and torch.equal(again.slow["0.weight"], la.slow["0.weight"])
