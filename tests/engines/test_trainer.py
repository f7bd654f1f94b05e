"""GroupActionTrainer: a tiny two-epoch run, its output dict and MONAI's iteration events."""

from __future__ import annotations

from collections import Counter

import pytest
import torch
from monai.data import DataLoader
from monai.engines.utils import IterationEvents
from monai.utils import set_determinism

from monai_galr.engines import GroupActionTrainer, PrepareGroupActionBatch
from monai_galr.losses import GroupActionLoss
from monai_galr.networks import GroupActionAutoEncoder

EVENTS = (
    IterationEvents.FORWARD_COMPLETED,
    IterationEvents.LOSS_COMPLETED,
    IterationEvents.BACKWARD_COMPLETED,
    IterationEvents.MODEL_COMPLETED,
)


def _data(n: int = 16, size: int = 16) -> list[dict]:
    g = torch.Generator().manual_seed(0)
    items = []
    for _ in range(n):
        img = torch.zeros(1, size, size)
        r, c = torch.randint(2, size - 8, (2,), generator=g).tolist()
        img[:, r : r + 6, c : c + 3] = torch.rand(1, generator=g) * 0.5 + 0.5  # an off-centre bar
        items.append({"image": img})
    return items


def _trainer(max_epochs: int = 2, **net_kwargs) -> GroupActionTrainer:
    set_determinism(seed=0)
    net = GroupActionAutoEncoder(2, 1, 1, channels=(4, 8), strides=(2, 1), latent_channels=4, **net_kwargs)
    return GroupActionTrainer(
        device=torch.device("cpu"),
        max_epochs=max_epochs,
        train_data_loader=DataLoader(_data(), batch_size=4, shuffle=False, num_workers=0),
        network=net,
        optimizer=torch.optim.Adam(net.parameters(), lr=1e-2),
        loss_function=GroupActionLoss(),
        prepare_batch=PrepareGroupActionBatch(random_if_missing=True, seed=0),
    )


def _bare_trainer(**kwargs) -> GroupActionTrainer:
    """A trainer with nothing to train: for the argument checks of the constructor."""
    return GroupActionTrainer(
        device=torch.device("cpu"), max_epochs=1, train_data_loader=[], network=torch.nn.Linear(1, 1),
        optimizer=None, loss_function=None, **kwargs,
    )


def test_trainer_runs_fires_events_and_reports_outputs():
    trainer = _trainer(alpha_init_std=0.1)
    counts: Counter = Counter()
    for event in EVENTS:
        trainer.add_event_handler(event, lambda engine, e=event: counts.update([e]))
    losses: list[float] = []
    outputs: list[dict] = []

    @trainer.on(IterationEvents.MODEL_COMPLETED)
    def _record(engine):
        losses.append(float(engine.state.output["loss"].item()))
        outputs.append(dict(engine.state.output))

    trainer.run()
    assert trainer.state.epoch == 2 and trainer.state.iteration == 8
    assert all(counts[e] == 8 for e in EVENTS), counts
    out = outputs[-1]
    assert {"image", "label", "pred", "loss", "loss_r", "loss_i", "loss_v", "mask_fraction", "rotation"} <= set(out)
    assert out["pred"].shape == out["label"].shape == out["image"].shape == (4, 1, 16, 16)
    assert out["rotation"].shape == (4, 2, 2)
    assert all(isinstance(out[k], float) for k in ("loss_r", "loss_i", "loss_v", "mask_fraction"))
    assert 0.0 <= out["mask_fraction"] <= 1.0
    assert out["loss"].item() == pytest.approx(out["loss_r"] + out["loss_i"] + out["loss_v"], rel=1e-5)
    assert all(torch.isfinite(torch.tensor(losses)))
    # training works: the second epoch's mean loss is below the first's
    assert sum(losses[4:]) < sum(losses[:4]), losses


def test_trainer_is_deterministic():
    def final_loss() -> float:
        trainer = _trainer(max_epochs=1, partition="manual")
        trainer.run()
        return float(trainer.state.output["loss"].item())

    assert final_loss() == final_loss()


def test_trainer_mask_fraction_follows_the_partition():
    trainer = _trainer(max_epochs=1, partition="manual", varying_fraction=0.25)
    trainer.run()
    assert trainer.state.output["mask_fraction"] == 0.25


def test_default_prepare_batch_samples_rotations():
    set_determinism(seed=0)
    net = GroupActionAutoEncoder(2, 1, 1, channels=(4,), strides=(1,), latent_channels=2)
    trainer = GroupActionTrainer(
        device=torch.device("cpu"),
        max_epochs=1,
        train_data_loader=DataLoader(_data(4), batch_size=2),
        network=net,
        optimizer=torch.optim.SGD(net.parameters(), lr=1e-3),
        loss_function=GroupActionLoss(),
    )
    assert isinstance(trainer.prepare_batch, PrepareGroupActionBatch) and trainer.prepare_batch.random_if_missing
    trainer.run()
    r = trainer.state.output["rotation"]
    assert not torch.allclose(r, torch.eye(2).expand_as(r))


def test_alpha_grad_interval_measures_each_term_on_the_logits():
    set_determinism(seed=0)
    net = GroupActionAutoEncoder(2, 1, 1, channels=(4, 8), strides=(2, 1), latent_channels=4, alpha_init_std=0.1)
    loss = GroupActionLoss(lambda_i=0.5, lambda_v=0.25, lambda_s=0.1)
    trainer = GroupActionTrainer(
        device=torch.device("cpu"), max_epochs=1,
        train_data_loader=DataLoader(_data(), batch_size=4, shuffle=False, num_workers=0), network=net,
        optimizer=torch.optim.SGD(net.parameters(), lr=0.0), loss_function=loss,
        prepare_batch=PrepareGroupActionBatch(random_if_missing=True, seed=0), alpha_grad_interval=2,
    )
    seen, totals = [], []

    @trainer.on(IterationEvents.BACKWARD_COMPLETED)
    def _record(engine):
        ag = engine.state.alpha_grad
        if ag is not None and ag["iteration"] == engine.state.iteration:
            seen.append(ag["iteration"])
            totals.append((ag["total"], net.ald.alpha.grad.detach().clone(), ag))

    trainer.run()
    assert seen == [1, 3]  # iterations 1, 1 + interval, ... of the 4
    for total, grad, ag in totals:
        assert set(ag) == {"iteration", "loss_r", "loss_i", "loss_v", "loss_s", "total"}
        torch.testing.assert_close(ag["loss_r"] + ag["loss_i"] + ag["loss_v"] + ag["loss_s"], total)
        # the per-term gradients add up to what the real backward pass put on alpha
        torch.testing.assert_close(total, grad, rtol=1e-4, atol=1e-8)
        p = torch.sigmoid(net.ald.alpha.detach())
        torch.testing.assert_close(ag["loss_s"], 0.1 * p * (1 - p) / 4)


@pytest.mark.parametrize("bad", [-1, 1.5, True])
def test_bad_alpha_grad_interval(bad):
    with pytest.raises(ValueError, match="alpha_grad_interval"):
        _bare_trainer(alpha_grad_interval=bad)


def test_mask_loss_terms_let_only_the_chosen_terms_reach_the_logits():
    """With mask_loss_terms the logits' gradient is that of the chosen terms; every other parameter is unchanged."""
    grads = {}
    for terms in (None, ["loss_i", "loss_v"]):
        set_determinism(seed=0)
        net = GroupActionAutoEncoder(2, 1, 1, channels=(4, 8), strides=(2, 1), latent_channels=4, alpha_init_std=0.1)
        loss = GroupActionLoss(lambda_i=0.5, lambda_v=0.25, mask_gradient="two_sided")
        trainer = GroupActionTrainer(
            device=torch.device("cpu"), max_epochs=1,
            train_data_loader=DataLoader(_data(4), batch_size=4, shuffle=False, num_workers=0), network=net,
            optimizer=torch.optim.SGD(net.parameters(), lr=0.0), loss_function=loss,
            prepare_batch=PrepareGroupActionBatch(random_if_missing=True, seed=0), alpha_grad_interval=1,
            mask_loss_terms=terms,
        )
        seen = {}

        @trainer.on(IterationEvents.BACKWARD_COMPLETED)
        def _record(engine, seen=seen):
            seen["alpha"] = net.ald.alpha.grad.detach().clone()
            seen["terms"] = engine.state.alpha_grad
            seen["encoder"] = next(net.encode.parameters()).grad.detach().clone()

        trainer.run()
        grads[None if terms is None else "latent"] = seen
    full, latent = grads[None], grads["latent"]
    torch.testing.assert_close(full["alpha"], full["terms"]["total"], rtol=1e-4, atol=1e-9)
    torch.testing.assert_close(latent["alpha"], latent["terms"]["loss_i"] + latent["terms"]["loss_v"], rtol=1e-4,
                               atol=1e-9)
    torch.testing.assert_close(latent["alpha"], latent["terms"]["total"], rtol=1e-4, atol=1e-9)
    assert not torch.allclose(latent["alpha"], full["alpha"])  # the reconstruction's share is gone
    assert bool((latent["alpha"] != 0).all())  # two-sided: every logit hears both latent terms
    torch.testing.assert_close(latent["encoder"], full["encoder"])


@pytest.mark.parametrize("spelling", [None, "all", "null", "None"])
def test_mask_loss_terms_all_spellings(spelling):
    trainer = _bare_trainer(mask_loss_terms=spelling)
    assert trainer.mask_loss_terms is None
    assert _bare_trainer(mask_loss_terms="loss_i").mask_loss_terms == ("loss_i",)


@pytest.mark.parametrize("bad", [[], ["loss_x"], "loss"])
def test_bad_mask_loss_terms(bad):
    with pytest.raises(ValueError, match="mask_loss_terms must be null"):
        _bare_trainer(mask_loss_terms=bad)


def _two_sided_trainer(net: GroupActionAutoEncoder, max_epochs: int, **warmup) -> GroupActionTrainer:
    """8 images in batches of 4 (2 iterations per epoch), the two-sided latent decision, the given warm-up."""
    return GroupActionTrainer(
        device=torch.device("cpu"), max_epochs=max_epochs,
        train_data_loader=DataLoader(_data(8), batch_size=4, shuffle=False, num_workers=0), network=net,
        optimizer=torch.optim.Adam(net.parameters(), lr=1e-2), loss_function=GroupActionLoss(mask_gradient="two_sided"),
        prepare_batch=PrepareGroupActionBatch(random_if_missing=True, seed=0), mask_loss_terms=["loss_i", "loss_v"],
        **warmup,
    )


def test_mask_warmup_epochs_hold_the_logits_then_release_them():
    set_determinism(seed=0)
    net = GroupActionAutoEncoder(2, 1, 1, channels=(4, 8), strides=(2, 1), latent_channels=4, alpha_init=1.0)
    start = net.ald.alpha.detach().clone()
    assert bool((net.ald.hard_mask() == 1).all())  # alpha_init > 0: every channel starts varying
    trainer = _two_sided_trainer(net, max_epochs=2, mask_warmup_epochs=1)
    after_epoch = {}
    first_weight = next(net.encode.parameters())
    weight_start = first_weight.detach().clone()
    from ignite.engine import Events

    trainer.add_event_handler(
        Events.EPOCH_COMPLETED, lambda e: after_epoch.update({e.state.epoch: net.ald.alpha.detach().clone()})
    )
    trainer.run()
    assert torch.equal(after_epoch[1], start)  # held during the warm-up ...
    assert not torch.equal(after_epoch[2], start)  # ... and learned afterwards
    assert not torch.equal(first_weight.detach(), weight_start)  # the rest trained throughout


def test_mask_warmup_iterations_hold_the_logits_for_that_many_steps():
    """A warm-up counted in iterations: held for the first 3 steps (of 2 per epoch: into the second epoch)."""
    set_determinism(seed=0)
    net = GroupActionAutoEncoder(2, 1, 1, channels=(4, 8), strides=(2, 1), latent_channels=4, alpha_init=1.0)
    start = net.ald.alpha.detach().clone()
    trainer = _two_sided_trainer(net, max_epochs=3, mask_warmup_iterations=3)
    after = {}
    from ignite.engine import Events

    trainer.add_event_handler(
        Events.ITERATION_COMPLETED, lambda e: after.update({e.state.iteration: net.ald.alpha.detach().clone()})
    )
    trainer.run()
    assert all(torch.equal(after[i], start) for i in (1, 2, 3))  # held for three steps, across the epoch boundary
    assert not torch.equal(after[4], start)  # released at the fourth
    assert not torch.equal(after[6], after[4])


@pytest.mark.parametrize("name", ["mask_warmup_epochs", "mask_warmup_iterations"])
@pytest.mark.parametrize("bad", [-1, 1.5, True])
def test_bad_mask_warmup(name, bad):
    with pytest.raises(ValueError, match=f"{name} must be an int >= 0"):
        _bare_trainer(**{name: bad})


def test_two_sided_mask_gradient_with_the_learned_action_fails_before_training():
    """``action: learned`` mixes channels (no per-channel ``z_rotated``): the trainer says so when it is built."""
    learned = GroupActionAutoEncoder(2, 1, 1, channels=(4,), strides=(1,), latent_channels=2, action="learned")
    kw = dict(device=torch.device("cpu"), max_epochs=1, train_data_loader=[], network=learned, optimizer=None)
    with pytest.raises(ValueError, match=r"mask_gradient 'two_sided' needs a channel-wise .* got action 'learned'"):
        GroupActionTrainer(loss_function=GroupActionLoss(mask_gradient="two_sided"), **kw)
    GroupActionTrainer(loss_function=GroupActionLoss(mask_gradient="one_sided"), **kw)  # the paper's form runs
    grid = GroupActionAutoEncoder(2, 1, 1, channels=(4,), strides=(1,), latent_channels=2, action="grid")
    GroupActionTrainer(loss_function=GroupActionLoss(mask_gradient="two_sided"), **{**kw, "network": grid})


def test_switch_estimator_needs_loss_r_among_the_mask_terms():
    """mask_switch_images acts through loss_r: a trainer that keeps loss_r from the logits refuses it by name; with
    every term it trains and the switch reaches the logits."""
    net = GroupActionAutoEncoder(2, 1, 1, channels=(4, 8), strides=(2, 1), latent_channels=4, mask_switch_images=2)
    common = dict(device=torch.device("cpu"), max_epochs=1, network=net,
                  train_data_loader=DataLoader(_data(8), batch_size=4, shuffle=False, num_workers=0),
                  optimizer=torch.optim.Adam(net.parameters(), lr=1e-2),
                  loss_function=GroupActionLoss(mask_gradient="two_sided"),
                  prepare_batch=PrepareGroupActionBatch(random_if_missing=True, seed=0))
    with pytest.raises(ValueError, match=r"mask_switch_images 2 reaches the logits through loss_r.*\['loss_i', 'loss_v'\]"):
        GroupActionTrainer(mask_loss_terms=["loss_i", "loss_v"], **common)
    set_determinism(seed=0)
    alpha0 = net.ald.alpha.detach().clone()
    GroupActionTrainer(mask_loss_terms="all", **common).run()
    assert not torch.equal(net.ald.alpha.detach(), alpha0)
