"""Reading fields as microscopes write them (OME-TIFF, OME-Zarr, per-channel files) and the
quality flags annotate raises before any prediction."""

import cv2
import numpy as np
import pytest

from hpa_keras.data.microscope import (
    Field,
    FieldSource,
    list_fields,
    parse_channel_map,
    read_field,
    working_planes,
)
from hpa_keras.data.quality import (
    QualitySettings,
    ceiling,
    displacement,
    focus,
    measure_quality,
    quality_flags,
    saturated_share,
)
from hpa_keras.errors import InputError

NAMES = ["DAPI", "Tubulin", "GFP", "Calreticulin"]
MAP = "DAPI=blue,Tubulin=red,GFP=green,Calreticulin=yellow"
pytest.importorskip("bioio_ome_tiff", reason="the annotate extra is not installed")


def cells_image(side: int, seed: int = 0, dtype=np.uint16) -> np.ndarray:
    """Four planes (C, Y, X) of blob-shaped 'cells': structure at several scales."""
    rng = np.random.default_rng(seed)
    planes = np.zeros((4, side, side), np.float32)
    for _ in range(max(4, side // 40)):
        row, column = rng.integers(side // 10, side - side // 10, size=2)
        radius = int(rng.integers(side // 20, side // 10))
        for channel in range(4):
            cv2.circle(
                planes[channel], (int(column), int(row)), radius + 6 * (channel != 2), 1.0, -1
            )
    planes += rng.normal(0, 0.02, planes.shape).astype(np.float32)
    planes = np.stack([cv2.GaussianBlur(plane, (0, 0), 1.0) for plane in planes])
    top = 255 if dtype == np.uint8 else 4000
    return np.clip(planes * top * 0.8, 0, top).astype(dtype)


def write_ome_tiff(path, data, names=NAMES, pixel_size=0.16, dim_order="CYX"):
    from bioio_base.types import PhysicalPixelSizes
    from bioio_ome_tiff.writers import OmeTiffWriter

    sizes = PhysicalPixelSizes(None, pixel_size, pixel_size) if pixel_size else None
    if isinstance(data, list):
        OmeTiffWriter.save(
            data, str(path), dim_order=[dim_order] * len(data), channel_names=[names] * len(data),
            physical_pixel_sizes=[sizes] * len(data),
        )  # fmt: skip
    else:
        OmeTiffWriter.save(
            data, str(path), dim_order=dim_order, channel_names=names, physical_pixel_sizes=sizes
        )
    return path


# ------------------------------------------------------------------ reading


def test_an_ome_tiff_reads_as_its_stains_with_its_pixel_size(tmp_path):
    data = cells_image(256)
    path = write_ome_tiff(tmp_path / "well.ome.tiff", data)
    (source,) = list_fields(path)
    assert source.field_id == "well" and source.kind == "ome"
    field = read_field(source, parse_channel_map(MAP))
    assert field.pixel_size == pytest.approx(0.16) and field.pixel_size_from == "metadata"
    for index, stain in enumerate(("blue", "red", "green", "yellow")):
        np.testing.assert_array_equal(field.stains[stain], data[index])
    assert field.dtype == np.uint16 and field.shape == (256, 256)
    assert read_field(source, parse_channel_map(MAP), pixel_size=0.08).pixel_size == 0.08


def test_each_scene_of_an_ome_tiff_is_a_field_and_a_folder_lists_them(tmp_path):
    scenes = [cells_image(128, seed) for seed in (1, 2)]
    write_ome_tiff(tmp_path / "plate.ome.tif", scenes)
    sources = list_fields(tmp_path)
    assert [source.field_id for source in sources] == ["plate_s0", "plate_s1"]
    second = read_field(sources[1], parse_channel_map(MAP))
    np.testing.assert_array_equal(second.stains["green"], scenes[1][2])


def test_an_ome_zarr_reads_as_the_tiff_does(tmp_path):
    from bioio_ome_zarr.writers import Channel, OMEZarrWriter

    data = cells_image(128, dtype=np.uint8)
    writer = OMEZarrWriter(
        str(tmp_path / "field.ome.zarr"), level_shapes=[data.shape], dtype=data.dtype,
        axes_names=["c", "y", "x"], axes_types=["channel", "space", "space"],
        axes_units=[None, "micrometer", "micrometer"], physical_pixel_size=[1.0, 0.2, 0.2],
        channels=[Channel(label=name, color="FFFFFF") for name in NAMES],
    )  # fmt: skip
    writer.write_full_volume(data)
    (source,) = list_fields(tmp_path)
    field = read_field(source, parse_channel_map(MAP))
    assert field.pixel_size == pytest.approx(0.2)
    np.testing.assert_array_equal(field.stains["red"], data[1])


def test_a_z_stack_is_projected_to_its_maximum_and_says_so(tmp_path):
    stack = np.stack([cells_image(96, seed) for seed in (3, 4, 5)], axis=1)  # C, Z, Y, X
    path = write_ome_tiff(tmp_path / "stack.ome.tiff", stack, dim_order="CZYX")
    field = read_field(list_fields(path)[0], parse_channel_map(MAP))
    np.testing.assert_array_equal(field.stains["blue"], stack[0].max(axis=0))
    assert "z-stack of 3 planes" in field.notes[0]


def test_channels_named_after_the_stains_need_no_map(tmp_path):
    data = cells_image(64, dtype=np.uint8)
    path = write_ome_tiff(tmp_path / "f.ome.tiff", data, names=["Red", "green", "BLUE", "yellow"])
    field = read_field(list_fields(path)[0])
    np.testing.assert_array_equal(field.stains["blue"], data[2])


@pytest.mark.parametrize(
    ("names", "channels", "pixel_size", "expected"),
    [
        (NAMES, "DAPI=blue,Hoechst=red", 0.1, "no channel 'Hoechst' (--channels); its channels"),
        (NAMES, None, 0.1, "its channels are 'DAPI', 'Tubulin', 'GFP', 'Calreticulin'; say which"),
        (NAMES, MAP, None, "give it with --pixel-size"),
    ],
)  # fmt: skip
def test_an_ome_file_that_does_not_fit_is_named_with_what_it_holds(
    tmp_path, names, channels, pixel_size, expected
):
    path = write_ome_tiff(tmp_path / "x.ome.tiff", cells_image(64), names, pixel_size)
    with pytest.raises(InputError, match="x.ome.tiff") as error:
        read_field(list_fields(path)[0], parse_channel_map(channels))
    assert expected in str(error.value)


def test_a_time_series_and_a_damaged_file_are_refused(tmp_path):
    series = np.stack([cells_image(64, seed) for seed in (1, 2)])  # T, C, Y, X
    path = write_ome_tiff(tmp_path / "movie.ome.tiff", series, dim_order="TCYX")
    with pytest.raises(InputError, match="movie.ome.tiff: holds 2 time points"):
        read_field(list_fields(path)[0], parse_channel_map(MAP))
    broken = tmp_path / "broken.ome.tif"
    broken.write_bytes(b"II*\x00" + b"\x00" * 64)
    with pytest.raises(InputError, match="broken.ome.tif: not a readable OME file"):
        list_fields(broken)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("DAPI=purple", "'purple' is not a stain"),
        ("DAPI=blue,Hoechst=blue", "two channels for blue"),
        ("DAPI", "expected NAME=STAIN"),
        (" , ", "--channels is empty"),
    ],
)
def test_a_bad_channel_map_is_refused(text, expected):
    with pytest.raises(InputError, match=expected):
        parse_channel_map(text)


def test_per_channel_files_may_lack_a_stain_and_span_an_hpa_field(tmp_path):
    data = cells_image(512, dtype=np.uint8)
    for stain, plane in zip(("blue", "green"), data[2:0:-1], strict=True):
        cv2.imwrite(str(tmp_path / f"a_{stain}.png"), plane)
    (source,) = list_fields(tmp_path)
    field = read_field(source)
    assert sorted(field.stains) == ["blue", "green"]
    assert field.pixel_size == pytest.approx(0.32) and field.pixel_size_from == "HPA field"


def test_a_folder_without_fields_and_a_missing_path_are_refused(tmp_path):
    with pytest.raises(InputError, match="no fields"):
        list_fields(tmp_path)
    with pytest.raises(InputError, match="no such file or folder"):
        list_fields(tmp_path / "absent")


def test_working_planes_are_the_field_at_0_32_um_a_pixel():
    data = cells_image(400, dtype=np.uint16)
    stains = {"blue": data[2], "red": data[1]}
    field = Field(FieldSource("f", "channels"), stains, 0.08, "metadata")
    planes = working_planes(field)
    assert planes["blue"].shape == (100, 100) and planes["blue"].dtype == np.float32
    expected = cv2.resize(
        data[2].astype(np.float32) / 65535, (100, 100), interpolation=cv2.INTER_AREA
    )
    np.testing.assert_allclose(planes["blue"], expected, atol=1e-6)
    coarse = working_planes(Field(field.source, stains, 0.64, "metadata"))
    assert coarse["red"].shape == (800, 800)


# ------------------------------------------------------------------ quality


def _field(data, pixel_size=0.08):
    stains = dict(zip(("red", "green", "blue", "yellow"), data, strict=True))
    return Field(FieldSource("f", "channels"), stains, pixel_size, "metadata")


def test_a_blank_stain_is_flagged_and_a_stained_one_is_not():
    data = cells_image(512, dtype=np.uint16)
    rng = np.random.default_rng(1)
    data[1] = np.clip(200 + rng.normal(0, 8, data[1].shape), 0, None).astype(np.uint16)  # dark
    data[3] = 0
    field = _field(data)
    measures = measure_quality(field.stains, working_planes(field))
    flags = quality_flags(measures, QualitySettings())
    assert "blank:green" in flags and "blank:yellow" in flags
    assert "blank:red" not in flags and "blank:blue" not in flags
    assert not any(flag.startswith("shifted") for flag in flags)  # yellow has nothing to shift


def test_saturation_counts_signal_pixels_at_the_files_ceiling():
    plane = np.zeros((200, 200), np.uint16)
    plane[50:150, 50:150] = 3000
    plane[50:70, 50:150] = 4095  # a 12-bit camera's top, a fifth of the signal
    assert ceiling(plane) == 4095 and ceiling(plane.astype(np.uint8)) == 255
    working = plane.astype(np.float32) / 65535
    assert saturated_share(plane, working) == pytest.approx(0.2, abs=0.01)
    plane[50:70, 50:150] = 3500
    assert saturated_share(plane, working) == 0.0


def test_blur_lowers_the_focus_measure_below_the_limit():
    data = cells_image(1024, dtype=np.uint16)
    sharp = np.stack(
        [
            cv2.add(plane, (np.random.default_rng(2).random(plane.shape) * 300).astype(np.uint16))
            for plane in data
        ]
    )
    field = _field(sharp, pixel_size=0.08)
    planes = working_planes(field)
    blurred = _field(np.stack([cv2.GaussianBlur(p, (0, 0), 0.8 / 0.08) for p in sharp]))
    before, after = focus(planes["blue"]), focus(working_planes(blurred)["blue"])
    assert after < before - 0.5


def test_a_shifted_stain_is_found_at_its_displacement():
    data = cells_image(1024, dtype=np.uint16)
    field = _field(data, pixel_size=0.08)
    planes = working_planes(field)
    distance, correlation, gain = displacement(planes["red"], planes["yellow"])
    assert distance < 0.5 and correlation > 0.1 and gain == pytest.approx(0, abs=0.01)
    moved = np.roll(data[3], 25, axis=1)  # 25 px of 0.08 um: 2 um
    planes_moved = working_planes(_field(np.stack([data[0], data[1], data[2], moved])))
    distance, correlation, gain = displacement(planes_moved["red"], planes_moved["yellow"])
    assert distance == pytest.approx(2.0, abs=0.35) and gain > 0.02
    flags = quality_flags(
        measure_quality(_field(np.stack([data[0], data[1], data[2], moved])).stains, planes_moved),
        QualitySettings(),
    )
    assert "shifted:red_yellow" in flags


def test_flags_follow_their_thresholds():
    measures = {
        "blank_ratio": {"red": 5.0, "blue": 0.2},
        "saturated": {"red": 0.2, "blue": 0.9},
        "focus": -2.5,
        "shift": {"red_yellow": 1.5, "blue": 3.0},
    }
    settings = QualitySettings()
    flags = quality_flags(measures, settings, ("red", "green", "blue"), density=0.4)
    assert flags == [
        "missing:green", "blank:blue", "saturated:red", "out_of_focus", "shifted:red_yellow",
        "few_cells",
    ]  # fmt: skip
    assert "many_cells" in quality_flags(measures, settings, density=61.0)
    relaxed = QualitySettings(saturated_share=0.5, focus_limit=-3.0, shift_limit=2.0)
    assert quality_flags(measures, relaxed, density=10.0) == ["blank:blue"]
    with pytest.raises(InputError, match="--min-cells is over --max-cells"):
        QualitySettings(min_cells=5, max_cells=2).validate()


def test_real_fields_pass_and_degraded_ones_are_flagged(real_2021_folder):
    from benchmarks.quality_flags import degrade, field_flags

    sources = list_fields(real_2021_folder / "images")[:2]
    rng = np.random.default_rng(0)
    for index, source in enumerate(sources):
        field = read_field(source)
        assert field_flags(field) == []
        for kind, meant in (("blur 0.8 um", "out_of_focus"), ("saturated", "saturated"),
                            ("blank (dark)", "blank"), ("shifted 2 um", "shifted")):  # fmt: skip
            flags = field_flags(degrade(field, kind, index, rng))
            assert any(flag.split(":")[0] == meant for flag in flags), (kind, flags)
