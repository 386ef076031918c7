"""Preprocessing, batching, augmentation and the bundled digits."""

import numpy as np
import pytest

import fastdl
from fastdl import data


def test_to_categorical():
    np.testing.assert_array_equal(data.to_categorical([2, 0, 1]), np.eye(3)[[2, 0, 1]])
    assert data.to_categorical(np.array([[1], [3]]), num_classes=5).shape == (2, 5)
    assert data.to_categorical([1, 0]).dtype == np.float32
    with pytest.raises(ValueError, match="num_classes=2"):
        data.to_categorical([0, 4], num_classes=2)
    with pytest.raises(ValueError, match="negative"):
        data.to_categorical([0, -1])


def test_train_test_split_sizes_seed_and_stratify():
    x = np.arange(100).reshape(50, 2)
    y = np.arange(50) % 5
    a = data.train_test_split(x, y, test_size=0.2, seed=1)
    b = data.train_test_split(x, y, test_size=0.2, seed=1)
    for u, v in zip(a, b):
        np.testing.assert_array_equal(u, v)
    x_tr, x_te, y_tr, y_te = a
    assert len(x_te) == 10 and len(x_tr) == 40
    assert sorted(np.concatenate([x_tr[:, 0], x_te[:, 0]])) == list(range(0, 100, 2))  # a partition
    np.testing.assert_array_equal(x_tr[:, 0] // 2 % 5, y_tr)  # rows stay aligned
    _, _, _, y_te = data.train_test_split(x, y, test_size=0.2, seed=3, stratify=y)
    np.testing.assert_array_equal(np.bincount(y_te), [2, 2, 2, 2, 2])
    with pytest.raises(ValueError, match="samples"):
        data.train_test_split(x, y[:3])


def test_standard_scaler_fits_train_applies_to_test(rng):
    train = rng.normal(3, 2, (500, 3))
    train[:, 2] = 7.0  # a constant feature
    test = rng.normal(3, 2, (100, 3))
    s = data.StandardScaler().fit(train)
    z = s.transform(train)
    np.testing.assert_allclose(z[:, :2].mean(axis=0), 0, atol=1e-12)
    np.testing.assert_allclose(z[:, :2].std(axis=0), 1, atol=1e-12)
    np.testing.assert_array_equal(z[:, 2], 0.0)
    np.testing.assert_allclose(s.transform(test), (test - train.mean(0)) / np.where(train.std(0) > 0, train.std(0), 1))
    np.testing.assert_allclose(s.inverse_transform(s.transform(test)), test)
    with pytest.raises(ValueError, match="features"):
        s.transform(test[:, :2])
    with pytest.raises(RuntimeError, match="not fitted"):
        data.StandardScaler().transform(test)


def test_min_max_scaler(rng):
    train = rng.uniform(-5, 5, (200, 2))
    s = data.MinMaxScaler(feature_range=(-1, 1)).fit(train)
    z = s.transform(train)
    np.testing.assert_allclose(z.min(axis=0), -1)
    np.testing.assert_allclose(z.max(axis=0), 1)
    np.testing.assert_allclose(s.inverse_transform(z), train)


def test_batches_cover_every_sample_once_in_seeded_order():
    x = np.arange(10)
    got = [b for b in data.batches(x, batch_size=3, seed=0)]
    assert [len(b) for b in got] == [3, 3, 3, 1]
    assert sorted(np.concatenate(got)) == list(range(10))
    again = [b for b in data.batches(x, batch_size=3, seed=0)]
    for u, v in zip(got, again):
        np.testing.assert_array_equal(u, v)
    pairs = list(data.batches(x, x * 10, batch_size=4, shuffle=False, drop_last=True))
    assert len(pairs) == 2 and np.array_equal(pairs[0][1], pairs[0][0] * 10)


def _images(rng, n=6, h=5, w=7, c=2):
    return rng.standard_normal((n, h, w, c)).astype(np.float32)


def test_random_flip_is_exact_and_seeded(rng):
    x = _images(rng)
    out = data.random_flip(x, "horizontal", rng=5)
    for a, b in zip(x, out):
        assert np.array_equal(a, b) or np.array_equal(a[:, ::-1], b)
    assert any(not np.array_equal(a, b) for a, b in zip(x, out))
    np.testing.assert_array_equal(out, data.random_flip(x, "horizontal", rng=5))
    v = data.random_flip(x, "vertical", rng=1)
    for a, b in zip(x, v):
        assert np.array_equal(a, b) or np.array_equal(a[::-1], b)
    with pytest.raises(ValueError, match="mode"):
        data.random_flip(x, "diagonal")


def test_random_crop_shapes_and_content(rng):
    x = _images(rng)
    same = data.random_crop(x, rng=0)  # no padding, full size: the identity
    np.testing.assert_array_equal(same, x)
    out = data.random_crop(x, size=(3, 4), rng=2)
    assert out.shape == (6, 3, 4, 2)
    for a, b in zip(x, out):  # every crop is a window of its image
        assert any(np.array_equal(a[i:i + 3, j:j + 4], b) for i in range(3) for j in range(4))
    padded = data.random_crop(x, padding=2, rng=3)
    assert padded.shape == x.shape
    with pytest.raises(ValueError, match="does not fit"):
        data.random_crop(x, size=(9, 9))


def test_random_rotation_zero_identity_shapes_and_seed(rng):
    x = _images(rng, h=6, w=6)
    np.testing.assert_array_equal(data.random_rotation(x, 0.0, rng=0), x)
    out = data.random_rotation(x, 90, rng=3)
    assert out.shape == x.shape and out.dtype == np.float32
    assert np.abs(out).max() <= np.abs(x).max() + 1e-5  # bilinear: convex combinations (and fill 0)
    np.testing.assert_array_equal(out, data.random_rotation(x, 90, rng=3))


def test_rotation_by_90_is_rot90(rng):
    x = _images(rng, n=1, h=5, w=5, c=1)

    class Fixed:  # a generator whose uniform() returns 90 degrees
        def uniform(self, lo, hi, n):
            return np.full(n, 90.0)

    import fastdl.data.augmentation as aug
    original = aug._random.resolve
    aug._random.resolve = lambda rng: Fixed()
    try:
        out = data.random_rotation(x, 90)
    finally:
        aug._random.resolve = original
    # +90 degrees is a counter-clockwise quarter turn as displayed: np.rot90
    np.testing.assert_allclose(out[0, :, :, 0], np.rot90(x[0, :, :, 0], k=1), atol=1e-5)


def test_augmentation_uses_fastdl_seed(rng):
    x = _images(rng)
    fastdl.set_seed(11)
    a = data.random_rotation(data.random_flip(x), 15)
    fastdl.set_seed(11)
    b = data.random_rotation(data.random_flip(x), 15)
    np.testing.assert_array_equal(a, b)


def test_load_digits_is_the_uci_set():
    x, y = data.load_digits()
    assert x.shape == (1797, 64) and x.dtype == np.float32 and y.shape == (1797,)
    np.testing.assert_array_equal(np.bincount(y), [178, 182, 177, 183, 181, 182, 181, 179, 174, 180])
    assert x.min() == 0 and x.max() == 16
    np.testing.assert_array_equal(x[0, :8], [0, 0, 5, 13, 9, 1, 0, 0])  # the first image's top row
    images, _ = data.load_digits(flatten=False)
    assert images.shape == (1797, 8, 8, 1)


def test_stratified_split_keeps_the_test_size_and_takes_one_hot_rows():
    y = np.repeat([0, 1, 2], 10)
    for test_size in (1, 2, 29, 0.5):  # per-class rounding alone would give 0 or 30 test samples
        tr, te = data.train_test_split(y, test_size=test_size, seed=0, stratify=y)
        expected = test_size if isinstance(test_size, int) else 15
        assert len(te) == expected and len(tr) == 30 - expected
        assert np.array_equal(np.sort(np.concatenate([tr, te])), y)
    onehot = np.eye(3)[y]
    _, te = data.train_test_split(onehot, test_size=0.3, seed=1, stratify=onehot)
    np.testing.assert_array_equal(te.sum(axis=0), [3, 3, 3])


def test_inverse_transform_checks_the_width(rng):
    x = rng.standard_normal((5, 3))
    for scaler in (data.StandardScaler(), data.MinMaxScaler()):
        scaler.fit(x)
        np.testing.assert_allclose(scaler.inverse_transform(scaler.transform(x)), x, rtol=1e-12, atol=1e-12)
        with pytest.raises(ValueError, match="2 features but the scaler was fitted on 3"):
            scaler.inverse_transform(x[:, :2])
