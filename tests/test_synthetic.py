import hashlib
import itertools
import json

import cv2
import numpy as np
import pytest

from hpa_keras.classes import CHANNELS, CLASS_NAMES, NUM_CLASSES
from hpa_keras.data.labels import read_labels, read_sample_submission
from hpa_keras.errors import InputError
from hpa_keras.synthetic.cell_field import make_cell_field
from hpa_keras.synthetic.generator import DemoDataSettings, make_demo_data, render_sample
from hpa_keras.synthetic.label_sampler import (
    label_set_distribution,
    real_class_counts,
    real_class_frequencies,
    sample_label_sets,
)
from hpa_keras.synthetic.protein_patterns import PATTERNS

TINY = DemoDataSettings(num_samples=6, image_size=64, seed=3, test_fraction=0.34)


def folder_digest(folder):
    """sha256 of every file under ``folder`` by relative path."""
    return {
        str(path.relative_to(folder)): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(folder.rglob("*"))
        if path.is_file()
    }


def test_same_seed_gives_the_same_bytes_whatever_the_worker_count(tmp_path):
    make_demo_data(tmp_path / "a", TINY, workers=1, progress=False)
    make_demo_data(tmp_path / "b", TINY, workers=2, progress=False)
    digest_a, digest_b = folder_digest(tmp_path / "a"), folder_digest(tmp_path / "b")
    assert len(digest_a) == 6 * 4 + 4
    assert digest_a == digest_b
    other = DemoDataSettings(num_samples=6, image_size=64, seed=4, test_fraction=0.34)
    make_demo_data(tmp_path / "c", other, workers=1, progress=False)
    assert set(folder_digest(tmp_path / "c").values()).isdisjoint(
        value for key, value in digest_a.items() if key.endswith(".png")
    )


def test_kaggle_layout_and_files(tmp_path):
    summary = make_demo_data(tmp_path, TINY, workers=1, progress=False)
    assert (summary["num_train"], summary["num_test"]) == (4, 2)
    train = read_labels(tmp_path / "train.csv")
    test = read_labels(tmp_path / "test_labels.csv")
    submission = read_sample_submission(tmp_path / "sample_submission.csv")
    assert len(train) == 4 and submission.ids == test.ids and len(test) == 2
    assert set(train.ids).isdisjoint(test.ids)
    assert (tmp_path / "sample_submission.csv").read_text().splitlines()[1].endswith(",0")
    for folder, table in (("train", train), ("test", test)):
        names = sorted(path.name for path in (tmp_path / folder).iterdir())
        expected = sorted(
            f"{sample_id}_{channel}.png" for sample_id in table.ids for channel in CHANNELS
        )
        assert names == expected
        image = cv2.imread(str(tmp_path / folder / names[0]), cv2.IMREAD_UNCHANGED)
        assert image.dtype == np.uint8 and image.shape == (64, 64)
    generation = json.loads((tmp_path / "generation.json").read_text())
    assert generation["settings"]["seed"] == 3
    assert not list(tmp_path.rglob("*.tmp"))


def test_sixteen_bit_output(tmp_path):
    settings = DemoDataSettings(
        num_samples=2, image_size=48, seed=0, test_fraction=0.0, bit_depth=16
    )
    make_demo_data(tmp_path, settings, workers=1, progress=False)
    path = next((tmp_path / "train").glob("*_blue.png"))
    image = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    assert image.dtype == np.uint16 and image.shape == (48, 48)
    assert image.max() > 255  # uses the 16-bit range, not 8-bit values in a 16-bit file
    assert not (tmp_path / "sample_submission.csv").exists()  # no test split asked for


def test_refuses_to_write_over_other_data_and_replaces_its_own(tmp_path):
    (tmp_path / "real").mkdir()
    (tmp_path / "real" / "train.csv").write_text("Id,Target\nx,0\n")
    with pytest.raises(InputError, match="not empty and was not made by make-demo-data"):
        make_demo_data(tmp_path / "real", TINY, workers=1, progress=False)
    assert (tmp_path / "real" / "train.csv").read_text() == "Id,Target\nx,0\n"

    make_demo_data(tmp_path / "own", TINY, workers=1, progress=False)
    with pytest.raises(InputError, match="--overwrite"):
        make_demo_data(tmp_path / "own", TINY, workers=1, progress=False)
    smaller = DemoDataSettings(num_samples=3, image_size=64, seed=1, test_fraction=0.0)
    make_demo_data(tmp_path / "own", smaller, workers=1, overwrite=True, progress=False)
    assert len(list((tmp_path / "own" / "train").iterdir())) == 12
    assert not (tmp_path / "own" / "test").exists()


@pytest.mark.parametrize(
    ("field", "value", "reason"),
    [
        ("num_samples", 0, "--num-samples"),
        ("image_size", 16, "--image-size"),
        ("test_fraction", 1.0, "--test-fraction"),
        ("bit_depth", 12, "--bit-depth"),
        ("label_balance", 1.5, "--label-balance"),
    ],
)
def test_settings_are_validated(tmp_path, field, value, reason):
    settings = DemoDataSettings(**{field: value})
    with pytest.raises(InputError, match=reason):
        make_demo_data(tmp_path / "x", settings, workers=1, progress=False)
    assert not (tmp_path / "x").exists()


def test_render_sample_shape_range_and_determinism():
    image = render_sample(np.random.default_rng(0), [0, 25], 96)
    assert image.shape == (96, 96, 4) and image.dtype == np.float32
    assert image.min() >= 0.0 and image.max() <= 1.0
    np.testing.assert_array_equal(image, render_sample(np.random.default_rng(0), [0, 25], 96))
    # The cell layout is drawn before the protein: the nucleus stain is the same field.
    nuclear_only = render_sample(np.random.default_rng(0), [0], 96)
    blue = CHANNELS.index("blue")
    correlation = np.corrcoef(image[..., blue].ravel(), nuclear_only[..., blue].ravel())[0, 1]
    assert correlation > 0.9


def pattern_features(pattern, cell_field):
    """Where a pattern's intensity lies, how much it covers, how many spots and how big."""
    total = pattern.sum() + 1e-9
    edge = cell_field.cell_depth < 3 * cell_field.scale + 1
    contacts = cv2.dilate(cell_field.contacts.astype(np.uint8), np.ones((3, 3), np.uint8)) > 0
    cytoplasm_mass = (pattern * cell_field.cytoplasm).sum() + 1e-9
    perinuclear = cell_field.cytoplasm & (
        cell_field.perinuclear_distance < 0.25 * cell_field.mean_radius
    )
    bright = pattern > 0.3 * pattern.max()
    count, _, stats, _ = cv2.connectedComponentsWithStats(bright.astype(np.uint8))
    areas = stats[1:, cv2.CC_STAT_AREA] / cell_field.scale**2
    return np.array(
        [
            (pattern * cell_field.nucleoli).sum() / total,
            (pattern * cell_field.nucleus).sum() / total,
            (pattern * edge).sum() / total,
            (pattern * contacts).sum() / total,
            (pattern * perinuclear).sum() / cytoplasm_mass,
            bright.sum() / max(cell_field.cell_mask.sum(), 1),
            np.log1p((count - 1) / len(cell_field.cells)),
            np.log1p(np.median(areas)) if len(areas) else 0.0,
        ]
    )


@pytest.fixture(scope="module")
def class_features():
    """Features of every class's pattern on five fields (shared between classes)."""
    features = np.zeros((NUM_CLASSES, 5, 8))
    for repeat in range(5):
        cell_field = make_cell_field(np.random.default_rng([3, repeat]), 256, mitotic_cells=1)
        for index in range(NUM_CLASSES):
            pattern = PATTERNS[index](np.random.default_rng([4, repeat, index]), cell_field)
            features[index, repeat] = pattern_features(pattern, cell_field)
    return features


def test_nuclear_patterns_sit_in_the_nucleus_and_cytoplasmic_ones_outside(class_features):
    nucleus_fraction = class_features[:, :, 1].mean(axis=1)
    nuclear = [0, 1, 2, 3, 4, 5]
    cytoplasmic = [6, 7, 8, 9, 10, 11, 13, 15, 16, 19, 20, 21, 22, 23, 25, 26]
    assert nucleus_fraction[nuclear].min() > 0.8, nucleus_fraction[nuclear]
    assert nucleus_fraction[cytoplasmic].max() < 0.1, nucleus_fraction[cytoplasmic]
    nucleoli_fraction = class_features[:, :, 0].mean(axis=1)
    assert nucleoli_fraction[[2, 3]].min() > 0.5  # nucleoli, fibrillar center
    assert nucleoli_fraction[0] < 0.05  # nucleoplasm spares the nucleoli


def test_every_pair_of_class_patterns_is_measurably_distinct(class_features):
    mean, spread = class_features.mean(axis=1), class_features.std(axis=1)
    for first, second in itertools.combinations(range(NUM_CLASSES), 2):
        separation = np.abs(mean[first] - mean[second]) / (spread[first] + spread[second] + 1e-3)
        assert separation.max() > 1.5, (CLASS_NAMES[first], CLASS_NAMES[second], separation)


def test_label_table_is_the_real_distribution():
    label_sets, probabilities = label_set_distribution()
    assert len(label_sets) == 577
    assert probabilities.sum() == pytest.approx(1.0)
    counts = real_class_counts()
    assert counts[0] == 12885 and counts[27] == 11 and counts.sum() == 50782


def test_embedded_statistics_match_the_real_file(real_train_csv):
    real = read_labels(real_train_csv)
    np.testing.assert_array_equal(real_class_counts(), real.class_counts())


def test_sampled_labels_follow_the_real_distribution():
    samples = 5000
    label_sets = sample_label_sets(np.random.default_rng(11), samples)
    observed = np.zeros(NUM_CLASSES)
    for label_set in label_sets:
        observed[list(label_set)] += 1
    observed /= samples
    expected = real_class_frequencies()
    # Four binomial standard deviations plus a small floor: fails on a wrong table, not by chance.
    tolerance = 4 * np.sqrt(expected * (1 - expected) / samples) + 0.002
    assert np.all(np.abs(observed - expected) <= tolerance), (observed - expected) / tolerance
    sizes = np.bincount([len(label_set) for label_set in label_sets], minlength=6)[1:] / samples
    assert sizes[0] == pytest.approx(15126 / 31072, abs=0.03)  # one label
    assert sizes[1] == pytest.approx(12485 / 31072, abs=0.03)  # two labels
    both = np.mean([0 in label_set and 25 in label_set for label_set in label_sets])
    assert both == pytest.approx(0.1169, abs=0.015)  # Nucleoplasm with Cytosol: 11.69% real
    # Rare classes stay rare: Rods & rings (0.035%) at most a handful in 5,000.
    assert observed[27] * samples <= 8


def test_label_balance_lifts_every_class_to_its_share_and_keeps_real_label_sets():
    samples = 4000
    label_sets = sample_label_sets(np.random.default_rng(12), samples, balance=0.5)
    observed = np.zeros(NUM_CLASSES)
    for label_set in label_sets:
        observed[list(label_set)] += 1
    # Each class is drawn on purpose for at least 0.5/28 of the samples (1.79%).
    floor = 0.5 / NUM_CLASSES
    assert np.all(observed / samples >= floor - 4 * np.sqrt(floor * (1 - floor) / samples))
    real_sets = set(label_set_distribution()[0])
    assert all(label_set in real_sets for label_set in label_sets)
    # With no balance the draws are exactly the unbalanced ones.
    assert sample_label_sets(np.random.default_rng(3), 50) == sample_label_sets(
        np.random.default_rng(3), 50, balance=0.0
    )
    with pytest.raises(ValueError, match="balance"):
        sample_label_sets(np.random.default_rng(0), 5, balance=-0.1)
