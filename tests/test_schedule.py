"""Learning-rate schedules: warm-up, then constant, step, cosine or wsd, over steps or time."""
import pytest

from charrnn.config import TrainConfig
from charrnn.errors import UsageError
from charrnn.schedule import learning_rate


def lrs(cfg, steps, elapsed=0.0):
    return [learning_rate(cfg, s, elapsed) for s in steps]


def test_warm_up_rises_linearly_to_the_learning_rate():
    cfg = TrainConfig(lr=1.0, warmup_steps=4, lr_schedule="constant")
    assert lrs(cfg, range(6)) == [0.25, 0.5, 0.75, 1.0, 1.0, 1.0]


def test_step_decay_multiplies_after_each_period():
    cfg = TrainConfig(lr=1.0, warmup_steps=0, lr_schedule="step", lr_decay=0.5,
                      lr_decay_every=10)
    assert lrs(cfg, (0, 9, 10, 25)) == [1.0, 1.0, 0.5, 0.25]


def test_cosine_falls_from_the_rate_to_its_floor_over_max_steps():
    cfg = TrainConfig(lr=1.0, warmup_steps=10, lr_schedule="cosine", max_steps=110,
                      min_lr_frac=0.1)
    assert lrs(cfg, (10, 60, 110, 500)) == pytest.approx([1.0, 0.55, 0.1, 0.1])


def test_wsd_holds_the_rate_then_falls_linearly_over_the_last_fraction():
    cfg = TrainConfig(lr=2.0, warmup_steps=0, lr_schedule="wsd", max_steps=100,
                      decay_frac=0.25, min_lr_frac=0.0)
    assert lrs(cfg, (0, 50, 75, 80, 90, 100)) == pytest.approx([2.0, 2.0, 2.0, 1.6, 0.8, 0.0])


def test_with_only_a_time_budget_the_schedule_follows_the_clock():
    cfg = TrainConfig(lr=1.0, warmup_steps=0, lr_schedule="wsd", max_time=100.0,
                      decay_frac=0.5, min_lr_frac=0.2)
    rates = [learning_rate(cfg, 1000, t) for t in (0.0, 50.0, 75.0, 100.0, 300.0)]
    assert rates == pytest.approx([1.0, 1.0, 0.6, 0.2, 0.2])
    assert learning_rate(TrainConfig(lr=1.0, warmup_steps=0, lr_schedule="wsd", decay_frac=0.3,
                                     min_lr_frac=0.1), 10**6, 1e6) \
        == 1.0  # no budget: nothing to decay over


@pytest.mark.parametrize("bad", [0.0, 1.5, float("nan")])
def test_decay_frac_outside_zero_to_one_is_a_clear_error(bad):
    with pytest.raises(UsageError, match="decay_frac must"):
        TrainConfig(decay_frac=bad)


def test_wsd_decay_started_early_falls_over_the_same_fraction_then_holds_its_floor():
    cfg = TrainConfig(lr=2.0, warmup_steps=0, lr_schedule="wsd", max_steps=100,
                      decay_frac=0.25, min_lr_frac=0.0)
    rates = [learning_rate(cfg, s, 0.0, decay_start=0.4) for s in (0, 40, 45, 50, 65, 80, 100)]
    assert rates == pytest.approx([2.0, 2.0, 1.6, 1.2, 0.0, 0.0, 0.0])
    assert [learning_rate(cfg, s, 0.0, decay_start=0.75) for s in range(101)] == \
        pytest.approx(lrs(cfg, range(101)))  # at its own place: the plain schedule
