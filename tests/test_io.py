"""cdpkd.io readers: synthetic files per format and failure mode, plus the real shared data."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest
import scipy.io

from cdpkd.io import CIRS059_ACQUISITION, RFSequence, as_frames, load_pair, read_mat, read_metaimage, read_rf

try:
    import SimpleITK  # noqa: F401

    HAVE_SITK = True
except ImportError:
    HAVE_SITK = False

BACKENDS = [
    "numpy",
    pytest.param("simpleitk", marks=pytest.mark.skipif(not HAVE_SITK, reason="no SimpleITK")),
]

# Real data beside the repository (<root>/../shared/data), or where CDPKD_SHARED_DATA points.
SHARED_DATA = Path(
    os.environ.get("CDPKD_SHARED_DATA") or Path(__file__).resolve().parents[2] / "shared" / "data"
)


# ---------------------------------------------------------------------------------------------
# writers for synthetic files


def write_mhd(
    folder: Path,
    array: np.ndarray,
    name: str = "seq",
    element_type: str = "MET_FLOAT",
    spacing: str | None = "0.2 0.02 1",
    big_endian: bool = False,
    header_size: int = 0,
    extra: dict[str, str] | None = None,
    raw_bytes: bytes | None = None,
) -> Path:
    """Write ``array`` ((H, W) or (F, H, W), C order) as ``name.mhd`` + ``name.raw``; return the header."""
    dims = " ".join(str(d) for d in reversed(array.shape))  # MetaImage lists the fastest axis first
    fields = {
        "ObjectType": "Image",
        "NDims": str(array.ndim),
        "DimSize": dims,
        "ElementType": element_type,
        "BinaryData": "True",
        "BinaryDataByteOrderMSB": str(big_endian),
        "CompressedData": "False",
    }
    if spacing is not None:
        fields["ElementSpacing"] = " ".join(spacing.split()[: array.ndim])
    if header_size:
        fields["HeaderSize"] = str(header_size)
    fields.update(extra or {})
    fields["ElementDataFile"] = f"{name}.raw"
    header = folder / f"{name}.mhd"
    header.write_text("".join(f"{k} = {v}\n" for k, v in fields.items()))
    if raw_bytes is None:
        dtype = np.dtype({"MET_FLOAT": "f4", "MET_SHORT": "i2", "MET_DOUBLE": "f8"}.get(element_type, "f4"))
        raw_bytes = (
            b"\xab" * header_size + array.astype(dtype.newbyteorder(">" if big_endian else "<")).tobytes()
        )
    (folder / f"{name}.raw").write_bytes(raw_bytes)
    return header


def write_mat_v73(path: Path, variables: dict[str, np.ndarray]) -> Path:
    """Mimic a MATLAB v7.3 file: HDF5 with a 512-byte user block holding MATLAB's 128-byte header,
    each variable a dataset with its dimensions reversed (MATLAB is column-major) and a
    ``MATLAB_class`` attribute. Enough for readers; MATLAB's own extras (#refs#, ...) are left out."""
    classes = {np.dtype("f4"): "single", np.dtype("f8"): "double", np.dtype("i4"): "int32"}
    with h5py.File(path, "w", userblock_size=512) as fh:
        for name, value in variables.items():
            value = np.atleast_2d(value)  # MATLAB has no 0-D / 1-D arrays
            ds = fh.create_dataset(name, data=value.T)
            ds.attrs["MATLAB_class"] = np.bytes_(classes[value.dtype])
    text = b"MATLAB 7.3 MAT-file, Platform: GLNXA64, Created on: test HDF5 schema 1.00 ."
    with open(path, "r+b") as fh:
        fh.write(text.ljust(116, b" ") + b"\x00" * 8 + b"\x00\x02" + b"IM")
    return path


def write_mat(path: Path, variables: dict[str, np.ndarray], version: str) -> Path:
    if version == "v5":
        scipy.io.savemat(path, variables)
        return path
    return write_mat_v73(path, variables)


# ---------------------------------------------------------------------------------------------
# MetaImage


@pytest.mark.parametrize("backend", BACKENDS)
def test_mhd_roundtrip_2d(tmp_path, backend):
    rf = np.arange(50 * 8, dtype=np.float32).reshape(50, 8) - 100.5
    seq = read_metaimage(write_mhd(tmp_path, rf, spacing="0.3 0.025"), backend=backend)
    assert seq.frames.shape == (1, 50, 8) and seq.frames.dtype == np.float32 and seq.frames.flags.c_contiguous
    np.testing.assert_array_equal(seq.frames[0], rf)
    assert seq.pitch_m == pytest.approx(0.3e-3) and seq.dz_m == pytest.approx(0.025e-3)
    assert seq.fs_hz == pytest.approx(1540 / (2 * 0.025e-3)) and seq.fs_source.startswith("derived")
    assert seq.dz_source == "header" and seq.fc_hz is None
    assert seq.meta["backend"] == backend and seq.meta["header"]["DimSize"] == "8 50"


@pytest.mark.parametrize("backend", BACKENDS)
def test_mhd_roundtrip_3d(tmp_path, backend):
    rf = np.random.default_rng(0).standard_normal((3, 40, 6)).astype(np.float32)
    stamps = {f"Seq_Frame{k:04d}_Timestamp": f"{100 + 0.04 * k:.3f}" for k in (7, 8, 9)}
    seq = read_metaimage(write_mhd(tmp_path, rf, extra=stamps), backend=backend)
    assert seq.frames.shape == (3, 40, 6) and len(seq) == 3 and seq.frame_shape == (40, 6)
    np.testing.assert_array_equal(seq.frames, rf)
    assert seq.pitch_m == pytest.approx(0.2e-3) and seq.dz_m == pytest.approx(0.02e-3)
    assert seq.fs_hz == pytest.approx(38.5e6)
    assert seq.meta["frame_timestamps_s"] == pytest.approx([100.28, 100.32, 100.36])
    pre, post = seq.pair(0, 2)
    np.testing.assert_array_equal(pre, rf[0])
    np.testing.assert_array_equal(post, rf[2])


@pytest.mark.parametrize("backend", BACKENDS)
def test_mhd_big_endian_short_with_header_size(tmp_path, backend):
    rf = np.arange(-60, 60, dtype=np.int16).reshape(2, 10, 6)
    seq = read_metaimage(
        write_mhd(tmp_path, rf, element_type="MET_SHORT", big_endian=True, header_size=16), backend=backend
    )
    np.testing.assert_array_equal(seq.frames, rf.astype(np.float32))


@pytest.mark.parametrize("backend", BACKENDS)
def test_mha_local_data(tmp_path, backend):
    rf = np.linspace(-1, 1, 12 * 4, dtype=np.float64).reshape(12, 4)
    header = "NDims = 2\nDimSize = 4 12\nElementType = MET_DOUBLE\nElementSpacing = 0.1 0.05\n"
    path = tmp_path / "one.mha"
    path.write_bytes((header + "ElementDataFile = LOCAL\n").encode() + rf.astype("<f8").tobytes())
    np.testing.assert_array_equal(read_rf(path, backend=backend).frames[0], rf.astype(np.float32))


def test_mhd_arguments_override_header(tmp_path):
    seq = read_rf(write_mhd(tmp_path, np.ones((2, 20, 4), np.float32)), fs_hz=40e6, fc_hz=5e6, pitch_m=3e-4)
    assert (seq.fs_hz, seq.fs_source, seq.fc_hz, seq.pitch_m) == (40e6, "argument", 5e6, 3e-4)
    assert seq.dz_m == pytest.approx(0.02e-3) and seq.meta["pitch_source"] == "argument"


@pytest.mark.parametrize("backend", BACKENDS)
def test_mhd_truncated_raw_names_expected_and_actual_bytes(tmp_path, backend):
    rf = np.zeros((2, 10, 6), np.float32)  # 480 bytes
    header = write_mhd(tmp_path, rf, raw_bytes=rf.tobytes()[:-4])
    with pytest.raises(ValueError, match=r"truncated.*expected 480 bytes, actual 476 bytes"):
        read_metaimage(header, backend=backend)


@pytest.mark.parametrize("backend", BACKENDS)
def test_mhd_header_data_size_mismatch(tmp_path, backend):
    # header says 2 frames, the file holds 3
    header = write_mhd(
        tmp_path, np.zeros((2, 10, 6), np.float32), raw_bytes=np.zeros((3, 10, 6), "<f4").tobytes()
    )
    with pytest.raises(ValueError, match=r"size mismatch.*expected 480 bytes, actual 720 bytes"):
        read_metaimage(header, backend=backend)


@pytest.mark.parametrize("backend", BACKENDS)
def test_mhd_non_finite_values(tmp_path, backend):
    rf = np.zeros((2, 10, 6), np.float32)
    rf[1, 3, 4] = np.nan
    rf[1, 5, 0] = np.inf
    with pytest.raises(ValueError, match=r"2 non-finite.*frame 1, axial sample 3, line 4"):
        read_metaimage(write_mhd(tmp_path, rf), backend=backend)


@pytest.mark.parametrize("backend", BACKENDS)
def test_mhd_missing_files(tmp_path, backend):
    header = write_mhd(tmp_path, np.zeros((10, 6), np.float32))
    (tmp_path / "seq.raw").unlink()
    with pytest.raises(FileNotFoundError, match=r"data file not found: .*seq\.raw"):
        read_metaimage(header, backend=backend)
    with pytest.raises(FileNotFoundError, match="header not found"):
        read_metaimage(tmp_path / "absent.mhd", backend=backend)


def test_mhd_numpy_refuses_unsupported_type_and_compression(tmp_path):
    rf = np.zeros((10, 6), np.float32)
    with pytest.raises(ValueError, match="unsupported ElementType 'MET_LONG'"):
        read_metaimage(write_mhd(tmp_path, rf, name="a", element_type="MET_LONG"), backend="numpy")
    compressed = write_mhd(tmp_path, rf, name="b", extra={"CompressedData": "True"})
    with pytest.raises(ValueError, match="CompressedData"):
        read_metaimage(compressed, backend="numpy")


@pytest.mark.parametrize(
    "fields, message",
    [
        ({"DimSize": "6 10 2 2", "NDims": "4"}, "2-D or 3-D"),
        ({"NDims": "3"}, "NDims = 3 but DimSize has 2"),
        ({"ElementNumberOfChannels": "2"}, "ElementNumberOfChannels"),
        ({"BinaryDataByteOrderMSB": "True", "ElementByteOrderMSB": "False"}, "contradictory byte-order"),
    ],
)
def test_mhd_bad_headers(tmp_path, fields, message):
    with pytest.raises(ValueError, match=message):
        read_metaimage(write_mhd(tmp_path, np.zeros((10, 6), np.float32), extra=fields), backend="numpy")


def test_mhd_not_a_header(tmp_path):
    (tmp_path / "x.mhd").write_text("NDims = 2\nDimSize = 4 4\n")
    with pytest.raises(ValueError, match="no ElementDataFile"):
        read_metaimage(tmp_path / "x.mhd")


@pytest.mark.skipif(not HAVE_SITK, reason="no SimpleITK")
def test_mhd_compressed_read_by_simpleitk(tmp_path):
    import SimpleITK as sitk

    rf = np.random.default_rng(1).standard_normal((2, 30, 5)).astype(np.float32)
    sitk.WriteImage(sitk.GetImageFromArray(rf), str(tmp_path / "z.mhd"), useCompression=True)
    seq = read_metaimage(tmp_path / "z.mhd", backend="simpleitk")
    np.testing.assert_array_equal(seq.frames, rf)


def test_simpleitk_is_optional(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "SimpleITK", None)  # makes `import SimpleITK` fail
    header = write_mhd(tmp_path, np.ones((10, 6), np.float32))
    with pytest.raises(ImportError, match="pip install SimpleITK"):
        read_metaimage(header, backend="simpleitk")
    assert read_metaimage(header).meta["backend"] == "numpy"


# ---------------------------------------------------------------------------------------------
# RFSequence


def test_pair_index_checks(tmp_path):
    seq = RFSequence(as_frames(np.zeros((3, 4, 2)), "mem"), None, None, None, None, tmp_path)
    pre, post = seq.pair(2, 2)
    pre[:] = 1  # copies: the sequence is untouched
    assert seq.frames.max() == 0
    for i, j in ((0, 3), (-1, 0)):
        with pytest.raises(ValueError, match="out of range.*3 frame"):
            seq.pair(i, j)
    with pytest.raises(TypeError):
        seq.pair(0.0, 1)
    with pytest.raises(ValueError, match="float32"):
        RFSequence(np.zeros((4, 2)), None, None, None, None, tmp_path)


# ---------------------------------------------------------------------------------------------
# MATLAB


def padded_frame(rows=40, valid=32, lines=6, seed=0):
    rf = np.random.default_rng(seed).standard_normal((rows, lines)).astype(np.float32)
    rf[valid:] = 99.0  # padding that must not leak into the frames
    return rf


@pytest.mark.parametrize("version", ["v5", "v7.3"])
def test_mat_bfdata_with_samplenum_is_cropped(tmp_path, version):
    rf = padded_frame()
    path = write_mat(tmp_path / "f.mat", {"BfData": rf, "SampleNum": np.array([[32]], np.int32)}, version)
    seq = read_mat(path, fs_hz=40e6, fc_hz=8.5e6)
    assert seq.frames.shape == (1, 32, 6) and seq.frames.flags.c_contiguous
    np.testing.assert_array_equal(seq.frames[0], rf[:32])
    assert seq.meta["format"] == f"mat-{version}" and seq.meta["variable"] == "BfData"
    assert seq.meta["sample_count"] == 32 and seq.meta["cropped_samples"] == 8
    assert seq.meta["scalars"] == {"SampleNum": 32} and seq.meta["stored_shape"] == [40, 6]
    assert (seq.fs_hz, seq.fs_source, seq.fc_hz, seq.pitch_m) == (40e6, "argument", 8.5e6, None)
    assert seq.dz_m == pytest.approx(1540 / 80e6)
    assert read_mat(path, sample_count=None).frames.shape == (1, 40, 6)
    assert read_mat(path, sample_count=10).frames.shape == (1, 10, 6)


def test_mat_v73_mimic_is_a_v73_file(tmp_path):
    path = write_mat_v73(tmp_path / "f.mat", {"rf": np.zeros((4, 3), np.float32)})
    assert scipy.io.matlab.matfile_version(path) == (2, 0)
    with h5py.File(path, "r") as fh:
        assert fh["rf"].shape == (3, 4)  # stored transposed, as MATLAB does


@pytest.mark.parametrize("version", ["v5", "v7.3"])
def test_mat_3d_frames_last(tmp_path, version):
    stack = np.random.default_rng(2).standard_normal((20, 5, 3))  # MATLAB rf(:, :, k), float64
    seq = read_mat(write_mat(tmp_path / "s.mat", {"rf": stack}, version))
    assert seq.frames.shape == (3, 20, 5) and seq.fs_hz is None and seq.fs_source == "unknown"
    for k in range(3):
        np.testing.assert_allclose(seq.frames[k], stack[:, :, k].astype(np.float32))
    frames_first = read_mat(tmp_path / "s.mat", frame_axis=0)
    assert frames_first.frames.shape == (20, 5, 3)


@pytest.mark.parametrize("version", ["v5", "v7.3"])
def test_mat_unknown_variable_lists_variables(tmp_path, version):
    path = write_mat(
        tmp_path / "f.mat", {"BfData": padded_frame(), "SampleNum": np.array([[32]], np.int32)}, version
    )
    with pytest.raises(
        ValueError, match=r"'data' not found; variables found: .*BfData 40x6 single.*SampleNum"
    ):
        read_mat(path, variable="data")


def test_mat_ambiguous_variable_lists_variables(tmp_path):
    path = write_mat(tmp_path / "f.mat", {"a": np.zeros((8, 4)), "b": np.zeros((8, 4))}, "v5")
    with pytest.raises(
        ValueError, match=r"cannot tell.*variable=.*variables found: a 8x4 double, b 8x4 double"
    ):
        read_mat(path)
    assert read_mat(path, variable="b").frames.shape == (1, 8, 4)


def test_mat_single_unnamed_array_is_picked(tmp_path):
    path = write_mat(tmp_path / "f.mat", {"echo": np.ones((8, 4)), "fs": np.array([[40e6]])}, "v5")
    seq = read_mat(path)
    assert seq.meta["variable"] == "echo" and seq.meta["scalars"] == {"fs": 40e6}


@pytest.mark.parametrize(
    "variables, message",
    [
        ({"BfData": padded_frame(), "SampleNum": np.array([[41]], np.int32)}, r"SampleNum = 41 .* 1\.\.40"),
        ({"rf": np.full((8, 4), np.nan)}, "non-finite"),
        ({"rf": np.ones((8, 4)) * 1j}, "real numeric"),
        ({"rf": np.array(["abc"])}, "not a numeric array"),
    ],
)
def test_mat_bad_contents(tmp_path, variables, message):
    with pytest.raises(ValueError, match=message):
        read_mat(
            write_mat(tmp_path / "f.mat", variables, "v5"), variable=None if "BfData" in variables else "rf"
        )


def test_mat_missing_or_not_a_mat_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="MATLAB file not found"):
        read_mat(tmp_path / "absent.mat")
    (tmp_path / "junk.mat").write_bytes(b"not a mat file " * 20)
    with pytest.raises(ValueError, match="not a readable MATLAB file"):
        read_mat(tmp_path / "junk.mat")


# ---------------------------------------------------------------------------------------------
# dispatch and pairs


def test_load_pair_from_two_files(tmp_path):
    pre_rf, post_rf = padded_frame(seed=1), padded_frame(seed=2)
    samplenum = np.array([[32]], np.int32)
    write_mat(tmp_path / "pre.mat", {"BfData": pre_rf, "SampleNum": samplenum}, "v5")
    write_mat(tmp_path / "post.mat", {"BfData": post_rf, "SampleNum": samplenum}, "v7.3")
    pre, post, meta = load_pair(tmp_path / "pre.mat", tmp_path / "post.mat", fs_hz=40e6)
    np.testing.assert_array_equal(pre, pre_rf[:32])
    np.testing.assert_array_equal(post, post_rf[:32])
    assert meta["shape"] == (32, 6) and meta["fs_hz"] == 40e6 and meta["post_meta"]["format"] == "mat-v7.3"


def test_load_pair_shape_mismatch(tmp_path):
    write_mat(tmp_path / "pre.mat", {"rf": np.zeros((32, 6))}, "v5")
    write_mat(tmp_path / "post.mat", {"rf": np.zeros((32, 5))}, "v5")
    with pytest.raises(ValueError, match=r"pre/post shape mismatch.*\(32, 6\).*\(32, 5\)"):
        load_pair(tmp_path / "pre.mat", tmp_path / "post.mat")


def test_load_pair_refuses_sequences(tmp_path):
    header = write_mhd(tmp_path, np.zeros((2, 10, 6), np.float32))
    with pytest.raises(ValueError, match=r"holds 2 frames.*pair\(i, j\)"):
        load_pair(header, header)


def test_read_rf_unknown_extension(tmp_path):
    with pytest.raises(
        ValueError, match=r"unknown RF file extension '\.npy'; supported: \.mhd, \.mha, \.mat"
    ):
        read_rf(tmp_path / "rf.npy")
    with pytest.raises(ValueError, match=r"open the \.mhd header \(seq\.mhd\)"):
        read_rf(tmp_path / "seq.raw")


# ---------------------------------------------------------------------------------------------
# real data (../shared/data beside the repository; skipped visibly when absent)


def shared_folder(name: str) -> Path:
    folder = SHARED_DATA / name
    if not folder.is_dir():
        pytest.skip(f"real data {folder} not found (set CDPKD_SHARED_DATA to its parent folder)")
    return folder


@pytest.mark.parametrize("stem", ["rf0299_07", "rf0300_25", "rf0302_07"])
def test_real_forearm_sequence(stem):
    path = shared_folder("invivo_arm") / f"{stem}.mhd"
    if not path.is_file():
        pytest.skip(f"real data {path} not found")
    seq = read_rf(path)
    assert seq.frames.shape == (6, 2000, 128) and seq.frames.dtype == np.float32
    assert np.isfinite(seq.frames).all() and seq.frames.std() > 0
    assert seq.dz_m == pytest.approx(0.02e-3) and seq.pitch_m == pytest.approx(0.2e-3)
    assert seq.fs_hz == pytest.approx(38.5e6) and seq.fs_source.startswith("derived")
    assert len(seq.meta["frame_timestamps_s"]) == 6


def test_real_phantom_pair():
    folder = shared_folder("phantom_cirs059")
    pre_path, post_path = folder / "frame_359.mat", folder / "frame_392.mat"
    if not (pre_path.is_file() and post_path.is_file()):
        pytest.skip(f"real data {pre_path} / {post_path} not found")
    pre, post, meta = load_pair(pre_path, post_path, **CIRS059_ACQUISITION)
    assert pre.shape == post.shape == (2195, 384) and pre.dtype == post.dtype == np.float32
    assert np.isfinite(pre).all() and np.isfinite(post).all() and not np.array_equal(pre, post)
    assert meta["pre_meta"]["cropped_samples"] == 2304 - 2195
    assert (meta["fs_hz"], meta["fc_hz"], meta["pitch_m"]) == (40e6, 8.5e6, None)
