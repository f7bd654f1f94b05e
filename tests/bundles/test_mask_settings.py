"""The ALD settings of issue 11 reach the loss and the trainer of every bundle from its train.yaml entries."""

from __future__ import annotations

from pathlib import Path

import pytest
from monai.bundle import ConfigParser

REPO = Path(__file__).resolve().parents[2]
BUNDLES = ["rotated_mnist_so2", "adrenal_ct_so3", "brain_mri_so3"]


def _parser(bundle: str) -> ConfigParser:
    parser = ConfigParser()
    parser.read_config(str(REPO / "bundles" / bundle / "configs" / "train.yaml"))
    return parser


@pytest.mark.parametrize("bundle", BUNDLES)
def test_mask_entries_reach_the_loss_and_the_trainer(bundle):
    parser = _parser(bundle)
    assert parser["mask_gradient"] in ("one_sided", "two_sided")
    assert parser.get_parsed_content("loss").mask_gradient == parser["mask_gradient"]
    parser["mask_gradient"] = "one_sided"
    parser["lambda_s"] = 0.5
    loss = parser.get_parsed_content("loss", instantiate=True, lazy=False)
    assert loss.mask_gradient == "one_sided" and loss.lambda_s == 0.5
    assert parser.get("train#trainer#mask_loss_terms") == "@mask_loss_terms"
    assert parser.get("train#trainer#alpha_grad_interval") == "@alpha_grad_interval"


@pytest.mark.parametrize("bundle", BUNDLES)
def test_a_bad_mask_gradient_names_the_entry(bundle):
    parser = _parser(bundle)
    parser["mask_gradient"] = "both"
    with pytest.raises(RuntimeError, match="GroupActionLoss") as err:
        parser.get_parsed_content("loss")
    # MONAI wraps the constructor's error; the cause names the entry, what is allowed and what arrived
    assert "mask_gradient must be one of ('one_sided', 'two_sided'), got 'both'" in str(err.value.__cause__)
