"""Linear probes on pooled z / z_v / z_i: separable data, label-free noise, empty partitions, bad inputs."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from sklearn.metrics import roc_auc_score

from monai_galr.analysis import (
    block_position_target,
    extract_features,
    item_key_target,
    linear_probe,
    probe_table,
    run_probes,
)


def test_probe_separable_data_well_above_chance(tmp_path, ckpt2d, make_net, blob_items):
    items = blob_items(150, seed=1)
    out = run_probes(make_net(seed=5), items[:90], items[90:], str(tmp_path), ckpt_path=ckpt2d, batch_size=32)
    for part in ("z", "z_v", "z_i"):
        r = out["probes"][part]
        assert r["accuracy"] > 0.9 and r["auc"] > 0.95, (part, r)
        assert 0 <= r["f1"] <= 1 and 0 <= r["precision"] <= 1 and 0 <= r["recall"] <= 1
        assert r["channels"] == (8 if part == "z" else 4)
    assert out["num_classes"] == 3 and out["num_train"] == 90 and out["num_test"] == 60
    saved = json.loads((tmp_path / "probes.json").read_text())
    assert saved["probes"]["z"]["accuracy"] == pytest.approx(out["probes"]["z"]["accuracy"])
    md = (tmp_path / "probes.md").read_text()
    assert md.startswith("| features |") and "\nProtocol: logistic regression" in md
    assert not list(tmp_path.glob(".tmp_*"))


def test_probe_random_labels_near_chance(tmp_path, make_net, noise_items):
    items = noise_items(300, seed=2)
    out = run_probes(make_net(), items[:150], items[150:], str(tmp_path), batch_size=64)
    for part in ("z", "z_v", "z_i"):
        r = out["probes"][part]
        assert abs(r["accuracy"] - 0.5) < 0.15, (part, r)
        assert abs(r["auc"] - 0.5) < 0.17, (part, r)


def test_probe_empty_invariant_part_reports_na(tmp_path, make_net, blob_items):
    items = blob_items(60, seed=3)
    out = run_probes(make_net(partition="all"), items[:40], items[40:], str(tmp_path))
    assert math.isnan(out["probes"]["z_i"]["accuracy"]) and out["probes"]["z_i"]["channels"] == 0
    assert "no channels" in out["probes"]["z_i"]["note"]
    assert out["probes"]["z_v"]["accuracy"] > 0.8
    saved = json.loads((tmp_path / "probes.json").read_text())  # strict JSON: null, not NaN
    assert saved["probes"]["z_i"]["accuracy"] is None
    row = next(line for line in (tmp_path / "probes.md").read_text().splitlines() if line.startswith("| z_i"))
    assert "n/a" in row


def test_extract_features_pooling_and_view(make_net, blob_items):
    net = make_net().eval()
    items = blob_items(10)
    f, y = extract_features(net, items, pooling=("avg", "max"), batch_size=4)
    assert f["z"].shape == (10, 16) and f["z_v"].shape == (10, 8) and f["z_i"].shape == (10, 8)
    assert y.shape == (10,) and y.dtype == np.int64
    f_rot, _ = extract_features(net, items, view="rotated")
    f_in, _ = extract_features(net, items, view="input")
    assert f_rot["z"].shape == f_in["z"].shape == (10, 8) and not np.allclose(f_rot["z"], f_in["z"])
    with pytest.raises(ValueError, match="pooling"):
        extract_features(net, items, pooling="median")
    with pytest.raises(ValueError, match="view"):
        extract_features(net, items, view="upside_down")


def test_linear_probe_binary_auc_matches_sklearn_and_errors():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(80, 3))
    y = (x[:, 0] + 0.8 * rng.normal(size=80) > 0).astype(int)
    r = linear_probe(x[:50], y[:50], x[50:], y[50:])
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    clf = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000, random_state=0)).fit(x[:50], y[:50])
    assert r["auc"] == pytest.approx(roc_auc_score(y[50:], clf.predict_proba(x[50:])[:, 1]))
    with pytest.raises(ValueError, match="two classes"):
        linear_probe(x[:10], np.zeros(10), x[10:], y[10:])
    with pytest.raises(ValueError, match="same F"):
        linear_probe(x[:10], y[:10], x[10:, :2], y[10:])
    table = probe_table({"z": {**r, "channels": 3}}, "my protocol")
    assert "| z | 3 |" in table and table.rstrip().endswith("Protocol: my protocol")


def test_probe_without_labels_names_the_split(tmp_path, make_net, blob_items):
    items = blob_items(20)
    unlabeled = [{k: v for k, v in d.items() if k != "label"} for d in items]
    msg = r"^dataset has no labels for a probe: train_items item 0 has no 'label' key \(20 of 20 items unlabelled"
    with pytest.raises(ValueError, match=msg):
        run_probes(make_net(), unlabeled, items, str(tmp_path))
    with pytest.raises(ValueError, match="no labels for a probe.*use a datalist with labels"):
        run_probes(make_net(), items, unlabeled[:1] + items, str(tmp_path), label_hint="use a datalist with labels")
    with pytest.raises(ValueError, match="test_items.*'label'"):
        run_probes(make_net(), items, unlabeled, str(tmp_path))
    assert not (tmp_path / "probes.json").exists()


def test_probe_mismatched_checkpoint(tmp_path, make_net, blob_items, save_ckpt):
    other = save_ckpt(make_net(channels=(4, 6)), tmp_path / "other.pt")
    items = blob_items(20)
    with pytest.raises(ValueError, match="does not match the network"):
        run_probes(make_net(), items, items, str(tmp_path / "eval"), ckpt_path=other)
    with pytest.raises(FileNotFoundError, match="missing.pt"):
        run_probes(make_net(), items, items, str(tmp_path / "eval"), ckpt_path=str(tmp_path / "missing.pt"))
    assert not (tmp_path / "eval").exists()


def test_probe_3d_smoke(tmp_path, make_net, blob_items):
    items = blob_items(40, seed=4, spatial=(8, 8, 8))
    out = run_probes(make_net(spatial_dims=3), items[:24], items[24:], str(tmp_path), batch_size=8)
    for part in ("z", "z_v", "z_i"):
        assert 0.0 <= out["probes"][part]["accuracy"] <= 1.0
    assert out["probes"]["z"]["accuracy"] > 0.6
    assert (tmp_path / "probes.md").stat().st_size > 0


def _position_items(n: int, seed: int = 0, spatial=(16, 16)) -> list[dict]:
    """Class = which side (left / right) the bright one of two blobs sits on, in noise: the same pixels either way,
    so a global average cannot tell the classes apart, a spatial grid can."""
    rng = np.random.default_rng(seed)
    items = []
    for _ in range(n):
        c = int(rng.integers(0, 2))
        r = int(rng.integers(4, 9))
        img = rng.normal(0.0, 0.05, (1, *spatial)).astype(np.float32)
        bright, dim = (3, 9) if c == 0 else (9, 3)
        img[0, r : r + 4, bright : bright + 4] += 0.9
        img[0, r : r + 4, dim : dim + 4] += 0.4
        items.append({"image": img, "label": c, "block_corner": np.array([r, bright])})
    return items


def test_grid_pooling_keeps_position_that_global_pooling_loses(tmp_path, make_net):
    items = _position_items(120)
    net = make_net(seed=3)
    glob = run_probes(net, items[:80], items[80:], str(tmp_path / "g"), batch_size=40)
    grid = run_probes(net, items[:80], items[80:], str(tmp_path / "p"), batch_size=40, grid=(4, 4))
    assert grid["probes"]["z"]["accuracy"] >= 0.9
    assert glob["probes"]["z"]["accuracy"] <= 0.75
    assert grid["probes"]["z"]["num_features"] == 8 * 16 and glob["probes"]["z"]["num_features"] == 8
    assert grid["grid"] == [4, 4] and "4x4 grid" in grid["protocol"]


def test_grid_features_are_adaptive_average_pools(make_net, blob_items):
    net = make_net(partition="manual", varying_fraction=0.25).eval()
    items = blob_items(6, rotations=False)
    feats, _ = extract_features(net, items, batch_size=3, grid=(2, 2))
    x = torch.as_tensor(np.stack([d["image"] for d in items]))
    with torch.no_grad():
        z = net.encode(x).double()
    expected = torch.nn.functional.adaptive_avg_pool2d(z, (2, 2))
    np.testing.assert_allclose(feats["z"], expected.flatten(1).numpy(), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(feats["z_v"], expected[:, :2].flatten(1).numpy(), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(feats["z_i"], expected[:, 2:].flatten(1).numpy(), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("grid, match", [((16, 16), r"probe_grid \[16, 16\] is larger than the latent grid \[8, 8\]"),
                                         ((2, 2, 2), "has 3 entries"), ((0, 2), "positive ints"), ("8", "positive")])
def test_bad_probe_grid_names_the_entry(tmp_path, make_net, blob_items, grid, match):
    items = blob_items(20, rotations=False)
    with pytest.raises(ValueError, match=match):
        run_probes(make_net(), items, items, str(tmp_path), grid=grid)


def test_block_position_target_and_target_tables(tmp_path, make_net):
    target = block_position_target(spatial_shape=(32, 32), block_size=7, cells=3)
    assert target({"block_corner": np.array([0, 0])}) == 0
    assert target({"block_corner": np.array([25, 25])}) == 8
    assert target({"block_corner": np.array([9, 20])}) == 1 * 3 + 2  # 9 * 3 // 26 = 1, 20 * 3 // 26 = 2
    with pytest.raises(ValueError, match="block_corner"):
        target({"image": 0})
    items = _position_items(120)
    side = block_position_target(spatial_shape=(16, 16), block_size=4, cells=2)
    out = run_probes(make_net(seed=3), items[:80], items[80:], str(tmp_path), batch_size=40, grid=(4, 4),
                     targets={"side": side})
    assert out["targets"]["side"]["z"]["accuracy"] >= 0.9
    assert "Target `side`" in (tmp_path / "probes.md").read_text()
    assert item_key_target("label")({"label": np.array([1])}) == 1


def test_multiclass_auc_is_sklearn_one_vs_rest_and_skips_absent_classes():
    from monai_galr.analysis.probes import _ovr_auc

    rng = np.random.default_rng(1)
    proba = rng.dirichlet(np.ones(4), size=60)
    y = rng.integers(0, 4, 60)
    classes = np.arange(4)
    assert _ovr_auc(y, proba, classes) == pytest.approx(roc_auc_score(y, proba, multi_class="ovr", average="macro"))
    # a class of the train split missing from the test split: the others are scored (sklearn's ovr call raises)
    keep = y != 2
    expected = np.mean([roc_auc_score(y[keep] == c, proba[keep, c]) for c in (0, 1, 3)])
    assert _ovr_auc(y[keep], proba[keep], classes) == pytest.approx(expected)
    assert math.isnan(_ovr_auc(np.zeros(5, int), proba[:5], classes))


def test_run_probes_loads_the_checkpoint_through_the_engine(tmp_path, make_net, blob_items, save_ckpt, monkeypatch):
    from monai_galr.handlers import GroupActionCheckpointLoader

    calls = []
    real = GroupActionCheckpointLoader.__call__

    def spy(self, engine):
        calls.append(self.load_path)
        return real(self, engine)

    monkeypatch.setattr(GroupActionCheckpointLoader, "__call__", spy)
    ckpt = save_ckpt(make_net(seed=3), tmp_path / "w.pt")
    items = blob_items(24)
    net = make_net(seed=5)
    run_probes(net, items[:16], items[16:], str(tmp_path / "eval"), ckpt_path=ckpt, batch_size=8)
    assert calls == [ckpt]  # once, by MONAI's CheckpointLoader, when the first evaluator run starts
    reference = make_net(seed=3)
    for a, b in zip(net.state_dict().values(), reference.state_dict().values()):
        torch.testing.assert_close(a, b)


def _harmonic_net():
    """A tiny untrained harmonic network (3 rings x 4 modes on its 8x8 latent grid), 2 of 8 channels varying."""
    from monai_galr.networks import GroupActionAutoEncoder

    torch.manual_seed(0)
    return GroupActionAutoEncoder(2, 1, 1, channels=(4, 8), strides=(2, 1), latent_channels=8, norm="batch",
                                  partition="manual", varying_fraction=0.25, action="harmonic", spatial_size=(16, 16),
                                  harmonic_radii=3, harmonic_modes=4).eval()


def test_harmonic_latent_is_probed_on_its_rendered_map_by_default(blob_items):
    net = _harmonic_net()
    items = blob_items(6, rotations=False)
    feats, _ = extract_features(net, items, batch_size=3, grid=(2, 2))
    x = torch.as_tensor(np.stack([d["image"] for d in items]))
    with torch.no_grad():
        z = net.encode(x)
        maps = net.latent_map(z).double()  # (B, 8, 8, 8): the coefficients rendered on the latent grid
    assert z.shape[2:] != maps.shape[2:]
    expected = torch.nn.functional.adaptive_avg_pool2d(maps, (2, 2))
    np.testing.assert_allclose(feats["z"], expected.flatten(1).numpy(), rtol=1e-6, atol=1e-9)
    np.testing.assert_allclose(feats["z_v"], expected[:, :2].flatten(1).numpy(), rtol=1e-6, atol=1e-9)
    np.testing.assert_allclose(feats["z_i"], expected[:, 2:].flatten(1).numpy(), rtol=1e-6, atol=1e-9)
    coef, _ = extract_features(net, items, batch_size=3, grid=(2, 2), features="coefficients")
    np.testing.assert_allclose(coef["z"], z.double().flatten(1).numpy(), rtol=1e-12, atol=1e-12)
    assert coef["z_v"].shape[1] == 2 * z[0, 0].numel()


def test_probe_features_entry_is_checked_and_reported(tmp_path, make_net, blob_items):
    items = blob_items(40, rotations=False)
    out = run_probes(_harmonic_net(), items[:30], items[30:], str(tmp_path / "h"), grid=(2, 2))
    assert out["feature_space"] == "map" and out["grid"] == [2, 2] and "latent_map" in out["protocol"]
    out = run_probes(_harmonic_net(), items[:30], items[30:], str(tmp_path / "c"), grid=(2, 2), features="coefficients")
    assert out["feature_space"] == "coefficients" and out["grid"] is None and "flattened" in out["protocol"]
    with pytest.raises(ValueError, match="probe_features must be one of"):
        run_probes(_harmonic_net(), items, items, str(tmp_path), features="pixels")
    with pytest.raises(ValueError, match="needs a harmonic latent"):
        run_probes(make_net(), items, items, str(tmp_path), features="coefficients")
