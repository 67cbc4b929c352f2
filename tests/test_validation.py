"""Values that used to pass silently (issue 32) now fail before training with one line naming the key."""

from __future__ import annotations

import pytest
from omegaconf import OmegaConf

from src.training.validation import ConfigError, validate_config

GOOD = {"batch": 2, "epochs": 1, "seed": 0, "optim": {"base_lr": 0.1}, "compile": False, "study": "demo"}


def test_a_good_config_passes():
    validate_config(OmegaConf.create(GOOD))
    validate_config(OmegaConf.create({**GOOD, "study": "small_batch_cifar10.v2-b"}))


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"optim": {"base_lr": float("nan")}}, "optim.base_lr=nan is invalid: it must be a finite number > 0"),
        ({"optim": {"base_lr": float("inf")}}, "optim.base_lr=inf is invalid"),
        ({"compile": "maybe"}, "compile='maybe' is invalid: it must be true or false"),
        ({"resume": 1}, "resume=1 is invalid: it must be true or false"),
        ({"study": "../../escape"}, "study='../../escape' is invalid: it must be a plain name"),
        ({"study": ".."}, "study='..' is invalid"),
        ({"study": "a/b"}, "study='a/b' is invalid"),
    ],
)
def test_a_silently_accepted_value_now_fails_with_one_line(change, message):
    with pytest.raises(ConfigError) as caught:
        validate_config(OmegaConf.create({**GOOD, **change}))
    assert str(caught.value).startswith(message) and "\n" not in str(caught.value)
