"""evaluate_estimators: known answers with oracle, offset and zero estimators; bad estimates."""

import math

import numpy as np
import pytest

from cdpkd.evaluation import METRICS, evaluate_estimators, pair_metrics, per_pair_table
from cdpkd.metrics import axial_strain
from cdpkd.sim import read_pair
from cdpkd.sim.dataset import write_dataset


@pytest.fixture(scope="module")
def test_set(tmp_path_factory):
    from cdpkd.sim import ImagingConfig, SimulationConfig

    config = SimulationConfig(imaging=ImagingConfig(n_samples=256, n_lines=32))
    return write_dataset(tmp_path_factory.mktemp("eval") / "test.h5", config, 2, base_seed=5, workers=1)


def test_oracle_is_perfect_and_offset_shows_in_displacement_only(test_set):
    truths = {i: read_pair(test_set, i).displacement for i in range(2)}

    def oracle_factory():  # estimators see pairs in order 0, 1
        order = iter([0, 1])
        return lambda pre, post: truths[next(order)]

    def offset_factory():
        order = iter([0, 1])
        return lambda pre, post: truths[next(order)] + np.array([0.5, -0.25], np.float32)[:, None, None]

    result = evaluate_estimators(
        {"oracle": oracle_factory(), "offset": offset_factory(), "zero": lambda pre, post: np.zeros_like(truths[0])},
        test_set,
        keep=(1,),
    )
    summary = result.summary
    assert list(summary.columns) == list(METRICS)
    assert summary.loc["oracle", "disp_rmse_axial"] == pytest.approx(0, abs=1e-6)
    assert summary.loc["oracle", "strain_rmse"] == pytest.approx(0, abs=1e-7)
    # a constant offset is invisible to strain but shows exactly in the displacement RMSE
    assert summary.loc["offset", "disp_rmse_axial"] == pytest.approx(0.5, rel=1e-5)
    assert summary.loc["offset", "disp_rmse_lateral"] == pytest.approx(0.25, rel=1e-5)
    assert summary.loc["offset", "strain_rmse"] == pytest.approx(0, abs=1e-6)
    # no motion: the strain error is the RMS of the true strain in the scored region
    strain = axial_strain(truths[0][None], 31)[0, 0][32:-32, 4:-4]
    zero_pair0 = result.per_pair.query("method == 'zero' and pair == 0")["strain_rmse"].item()
    assert zero_pair0 == pytest.approx(float(np.sqrt(np.mean(strain**2))), rel=1e-4)
    # motion compensation with the truth matches the frames far better than none
    assert summary.loc["oracle", "warp_ncc"] > summary.loc["zero", "warp_ncc"] + 0.1
    assert set(result.estimates["oracle"]) == {1}
    np.testing.assert_array_equal(result.estimates["oracle"][1], truths[1])
    assert len(result.per_pair) == 6


def test_bad_estimates_are_rejected(test_set):
    pair = read_pair(test_set, 0)
    kwargs = dict(strain_window=31, border=(32, 4))
    with pytest.raises(ValueError, match="differs from ground truth"):
        pair_metrics(pair.displacement[:, :-1], pair.displacement, pair.pre, pair.post, pair.labels, **kwargs)
    broken = pair.displacement.copy()
    broken[0, 5, 5] = math.nan
    with pytest.raises(ValueError, match="NaN or Inf"):
        pair_metrics(broken, pair.displacement, pair.pre, pair.post, pair.labels, **kwargs)
    with pytest.raises(ValueError, match="returned shape"):
        evaluate_estimators({"bad": lambda pre, post: np.zeros((2, 8, 8), np.float32)}, test_set)


def test_per_pair_table_lists_every_pair_with_its_applied_strain(test_set):
    truths = {i: read_pair(test_set, i).displacement for i in range(2)}
    order = iter([0, 1])
    result = evaluate_estimators(
        {"zero": lambda pre, post: np.zeros_like(truths[0]), "oracle": lambda pre, post: truths[next(order)]},
        test_set,
    )
    table = per_pair_table(result, test_set)
    assert list(table.columns) == ["applied_strain_pct", "inclusions", "zero", "oracle"]
    assert list(table.index) == [0, 1]
    for i in range(2):
        meta = read_pair(test_set, i).meta
        assert table.loc[i, "applied_strain_pct"] == pytest.approx(100 * meta["applied_strain"])
        assert table.loc[i, "inclusions"] == meta["n_inclusions"]
        expected = result.per_pair.query(f"method == 'zero' and pair == {i}")["strain_rmse"].item()
        assert table.loc[i, "zero"] == expected
    assert (table["oracle"] < 1e-6).all()
    with pytest.raises(ValueError, match="unknown metric"):
        per_pair_table(result, test_set, metric="nope")
