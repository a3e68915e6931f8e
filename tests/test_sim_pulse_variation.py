"""Per-pair pulse and noise draws: seeded, inside their ranges, visible in the RF spectrum, and
invisible to the cache keys and bytes of sets made without them."""

import json

import numpy as np
import pytest

from cdpkd.sim import ImagingConfig, SimulationConfig, simulate_pair
from cdpkd.sim.pulse_variation import PulseRanges

SMALL = ImagingConfig(n_samples=512, n_lines=32)


def spectral_peak_hz(rf: np.ndarray, fs_hz: float) -> float:
    """Frequency of the largest mean power along the axial axis of an H x W RF frame."""
    power = (np.abs(np.fft.rfft(rf, axis=0)) ** 2).mean(axis=1)
    return float(np.fft.rfftfreq(rf.shape[0], 1 / fs_hz)[np.argmax(power)])


def test_draws_are_seeded_in_range_and_shape_the_echo():
    ranges = PulseRanges(fc_hz=(3e6, 7e6), snr_db=(20.0, 40.0))
    config = SimulationConfig(imaging=SMALL, pulse_ranges=ranges)
    pairs = [simulate_pair(config, seed) for seed in (1, 2, 3, 4)]
    drawn = [p.meta["fc_hz"] for p in pairs]
    assert all(3e6 <= f <= 7e6 for f in drawn) and len(set(drawn)) == 4
    assert all(20.0 <= p.meta["snr_db"] <= 40.0 for p in pairs) and "fractional_bandwidth" not in pairs[0].meta
    again = simulate_pair(config, 3)
    np.testing.assert_array_equal(again.pre, pairs[2].pre)  # same seed, same bytes
    for pair in pairs:  # the echo's spectrum peaks at the drawn centre frequency
        assert spectral_peak_hz(pair.pre, SMALL.fs_hz) == pytest.approx(pair.meta["fc_hz"], rel=0.12)


def test_without_ranges_a_pair_and_its_config_are_unchanged():
    plain = SimulationConfig(imaging=SMALL)
    assert "pulse_ranges" not in plain.to_dict()  # cache keys of existing sets unchanged
    pair = simulate_pair(plain, 5)
    assert "fc_hz" not in pair.meta
    # the pulse draws use their own generator: phantom, strain and scatterers are the same
    varied = simulate_pair(SimulationConfig(imaging=SMALL, pulse_ranges=PulseRanges(snr_db=(30.0, 30.0))), 5)
    np.testing.assert_array_equal(varied.displacement, pair.displacement)
    np.testing.assert_array_equal(varied.labels, pair.labels)
    assert varied.meta["applied_strain"] == pair.meta["applied_strain"]
    np.testing.assert_allclose(varied.pre, pair.pre, rtol=0, atol=1e-6)  # the same SNR drawn: the same frame


def test_config_round_trip_and_bad_ranges():
    config = SimulationConfig(imaging=SMALL, pulse_ranges=PulseRanges(fc_hz=(4e6, 6e6), fractional_bandwidth=(0.4, 0.9)))
    back = SimulationConfig.from_dict(json.loads(json.dumps(config.to_dict())))
    assert back == config and back.to_dict() != SimulationConfig(imaging=SMALL).to_dict()
    with pytest.raises(ValueError, match="at least one range"):
        PulseRanges()
    with pytest.raises(ValueError, match="low"):
        PulseRanges(fc_hz=(6e6, 4e6))
    with pytest.raises(ValueError, match="finite"):
        PulseRanges(snr_db=(10.0, float("nan")))
    with pytest.raises(ValueError, match="Nyquist"):  # fs is 40 MHz
        SimulationConfig(imaging=SMALL, pulse_ranges=PulseRanges(fc_hz=(4e6, 25e6)))
    with pytest.raises(ValueError, match="PulseRanges or None"):
        SimulationConfig(imaging=SMALL, pulse_ranges={"fc_hz": (4e6, 6e6)})


def test_notebook_parameters_carry_pulse_ranges_optionally():
    from cdpkd.sim.study import notebook_simulation_config

    params = dict(n_samples=512, n_lines=32, fs_mhz=40.0, fc_mhz=5.0, pitch_mm=0.2, snr_db=30.0,
                  strain_min=0.005, strain_max=0.03)
    plain = notebook_simulation_config(params)  # no notebook declares pulse_ranges
    assert plain.pulse_ranges is None and "pulse_ranges" not in plain.to_dict()
    varied = notebook_simulation_config({**params, "pulse_ranges": {"fc_hz": [4e6, 6e6], "snr_db": [15, 40]}})
    assert varied.pulse_ranges == PulseRanges(fc_hz=(4e6, 6e6), snr_db=(15.0, 40.0))
    assert {k: v for k, v in varied.to_dict().items() if k != "pulse_ranges"} == plain.to_dict()
    with pytest.raises(ValueError, match="do not fit the imaging config"):
        notebook_simulation_config({**params, "pulse_ranges": {"fc_hz": [4e6, 30e6]}})
