"""Checkpoint loading: missing files, mismatched configurations and code-executing pickles are refused clearly."""

from __future__ import annotations

import pickle

import pytest
import torch
from ignite.engine import Engine

from monai_galr.handlers import GroupActionCheckpointLoader, load_network_weights
from monai_galr.networks import GroupActionAutoEncoder


def _net(latent_channels: int = 4, partition: str = "learned", seed: int = 0) -> GroupActionAutoEncoder:
    torch.manual_seed(seed)
    return GroupActionAutoEncoder(
        2, 1, 1, channels=(4,), strides=(1,), latent_channels=latent_channels, partition=partition
    )


class _Payload:
    """Unpickling this object creates ``marker`` (stands in for arbitrary code execution)."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


def _run_loader(path, net) -> None:
    engine = Engine(lambda e, b: None)
    GroupActionCheckpointLoader(load_path=str(path), load_dict={"model": net}).attach(engine)
    engine.run([0], max_epochs=1)


def _load_both(path, net):
    """The two loading paths (function and handler), so each test covers both."""
    return [lambda: load_network_weights(net, str(path)), lambda: _run_loader(path, net)]


def test_round_trip_loads_weights(tmp_path):
    src, dst = _net(seed=0), _net(seed=1)
    path = tmp_path / "model.pt"
    torch.save({"model": src.state_dict()}, path)
    assert not torch.equal(src.encode.latent.conv.weight, dst.encode.latent.conv.weight)
    load_network_weights(dst, str(path))
    for k, v in src.state_dict().items():
        assert torch.equal(v, dst.state_dict()[k]), k
    # the handler too, from a bare state dict
    other = _net(seed=2)
    torch.save(src.state_dict(), tmp_path / "bare.pt")
    _run_loader(tmp_path / "bare.pt", other)
    assert torch.equal(other.encode.latent.conv.weight, src.encode.latent.conv.weight)


def test_missing_file_names_it(tmp_path):
    path = tmp_path / "nowhere" / "model.pt"
    for load in _load_both(path, _net()):
        with pytest.raises(FileNotFoundError, match="nowhere"):
            load()


def test_other_latent_size_names_file_and_tensor(tmp_path):
    path = tmp_path / "latent8.pt"
    torch.save({"model": _net(latent_channels=8).state_dict()}, path)
    for load in _load_both(path, _net(latent_channels=4)):
        with pytest.raises(ValueError, match="latent8.pt") as info:
            load()
        assert "ald.alpha" in str(info.value)
        assert "size mismatch" in str(info.value)


def test_other_partition_names_file_and_tensor(tmp_path):
    path = tmp_path / "manual.pt"
    torch.save({"model": _net(partition="manual").state_dict()}, path)
    for load in _load_both(path, _net(partition="learned")):
        with pytest.raises(ValueError, match="manual.pt") as info:
            load()
        assert "ald.alpha" in str(info.value) and "ald.fixed_mask" in str(info.value)


def test_non_state_dict_is_refused(tmp_path):
    path = tmp_path / "tensor.pt"
    torch.save(torch.zeros(3), path)
    with pytest.raises(ValueError, match="tensor.pt"):
        load_network_weights(_net(), str(path))


@pytest.mark.parametrize("fmt", ["torch", "pickle"])
def test_code_executing_pickle_is_refused(tmp_path, fmt):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pt"
    payload = {"model": _Payload(str(marker))}
    if fmt == "torch":
        torch.save(payload, path)
    else:
        with open(path, "wb") as f:
            pickle.dump(payload, f, protocol=2)
    for load in _load_both(path, _net()):
        with pytest.raises(ValueError, match="evil.pt") as info:
            load()
        assert "weights-only" in str(info.value)
        assert not marker.exists()
    # the payload is live: an unrestricted load would have run it
    if fmt == "torch":
        torch.load(path, weights_only=False)
    else:
        with open(path, "rb") as f:
            pickle.load(f)
    assert marker.exists()
