import numpy as np
import pytest

import mdnext
from mdnext.errors import FramesError
from mdnext.frames import Frames, concatenate


def test_validation_and_padding():
    frames = Frames(positions=np.zeros((4, 2, 2)), species=["A", "B"])
    assert frames.positions.shape == (4, 2, 3)
    assert frames.positions.dtype == np.float64
    assert frames.times is None and frames.cell is None and not frames.is_periodic


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"positions": np.zeros((0, 2, 3))}, "at least one frame"),
        ({"positions": np.zeros((2, 2, 4))}, "shape (T, N, 3)"),
        ({"positions": np.full((2, 2, 3), np.nan)}, "non-finite"),
        ({"species": ["A"]}, "species"),
        ({"masses": [1.0]}, "masses"),
        ({"cell": np.eye(2)}, "cell"),
        ({"pbc": True}, "need a cell"),
        ({"dt": -1.0}, "dt"),
        ({"time": [0.0]}, "time"),
        ({"atoms": {"bogus": ["x", "y"]}}, "unknown per-atom field"),
        ({"atoms": {"names": ["x"]}}, "atoms['names']"),
    ],
)
def test_invalid_input_is_rejected(kwargs, message):
    arguments = {"positions": np.zeros((2, 2, 3)), "species": ["A", "B"], **kwargs}
    with pytest.raises(FramesError, match=message.replace("(", r"\(").replace(")", r"\)").replace("[", r"\[")):
        Frames(**arguments)


def test_nan_reports_frame():
    positions = np.zeros((3, 2, 3))
    positions[2, 1, 0] = np.nan
    with pytest.raises(FramesError, match="frame 2"):
        Frames(positions=positions, species=["A", "B"])


def test_slicing_keeps_time_and_scales_dt(small_frames):
    sub = small_frames[1::2]
    assert sub.n_frames == 2
    assert sub.dt == pytest.approx(0.2)
    np.testing.assert_allclose(sub.times, [0.1, 0.3])
    assert sub.cell.shape == (2, 3, 3)
    one = small_frames[-1]
    assert one.n_frames == 1 and one.times[0] == pytest.approx(0.4)
    picked = small_frames[np.array([0, 3])]
    assert picked.dt == pytest.approx(0.3)
    assert small_frames[np.array([0, 1, 3])].dt is None


def test_select_atoms(small_frames):
    sub = small_frames.select_atoms([2, 0])
    assert list(sub.species) == ["H", "O"]
    assert list(sub.atoms["names"]) == ["HW2", "OW"]
    np.testing.assert_array_equal(sub.positions, small_frames.positions[:, [2, 0]])
    with pytest.raises(FramesError, match="empty"):
        small_frames.select_atoms([])


def test_wrapped_positions_lie_in_box(small_frames):
    shifted = small_frames.replace(positions=small_frames.positions + np.array([20.0, -11.0, 24.0]))  # whole box vectors
    wrapped = shifted.wrapped()
    lengths = np.array([10.0, 11.0, 12.0])
    assert np.all(wrapped.positions >= 0) and np.all(wrapped.positions < lengths)
    np.testing.assert_allclose(wrapped.positions, small_frames.positions, atol=1e-9)


def test_species_codes_and_concatenate(small_frames):
    unique, codes = small_frames.species_codes
    assert list(unique) == ["H", "O"] and list(codes) == [1, 0, 0]
    joined = concatenate([small_frames, small_frames])
    assert joined.n_frames == 10 and joined.times.shape == (10,)
    other = small_frames.select_atoms([0, 1])
    with pytest.raises(FramesError):
        concatenate([small_frames, other])
    assert "5 frames, 3 atoms" in repr(small_frames)


def test_repeated_frames_across_blocks():
    positions = np.repeat(np.arange(4.0), [2, 3, 1, 1])[:, None, None] * np.ones((1, 2, 3))  # a a b b b c d
    frames = Frames(positions, np.array(["C", "C"]))
    for block in (1, 2, 3, 256):
        assert frames.repeated_frames(block).tolist() == [1, 3, 4]
    assert frames[:1].repeated_frames().tolist() == []


def test_training_warns_about_repeated_frames():
    rng = np.random.default_rng(0)
    positions = np.cumsum(rng.normal(size=(60, 3, 3)), axis=0)
    positions[1] = positions[0]  # the first frame written twice
    with pytest.warns(UserWarning, match=r"1 frame\(s\) repeat the frame before \(1\)"):
        mdnext.train(Frames(positions, np.array(["C"] * 3)), "autoregressive", horizons=(1,))
