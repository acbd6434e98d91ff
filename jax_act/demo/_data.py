"""Data for the demo: scikit-learn's digits, or a user's own .npz file.

Everything here is NumPy; the arrays reach JAX only in the training code.
"""

import dataclasses
import os
import zipfile

import numpy as np

# Shares of the examples that go to training, validation and test.
SPLIT_FRACTIONS = (0.6, 0.2, 0.2)

# Fewest examples each split may hold (validation fits the temperature and
# test measures calibration: a handful of examples would make both noise).
MIN_PER_SPLIT = 5


class DataError(ValueError):
    """A data file the demo cannot use; the message says what to fix."""


@dataclasses.dataclass(frozen=True)
class Splits:
    """Standardised train, validation and test arrays.

    Attributes:
        x_train, x_val, x_test: float32 features [n, features], standardised
            with the training split's mean and standard deviation.
        y_train, y_val, y_test: int32 labels [n].
        num_classes: one more than the largest label.
        source: where the data came from, for the record.
    """

    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    num_classes: int
    source: str

    def summary(self) -> dict:
        """Sizes and origin, for the JSON record."""
        return {
            "source": self.source,
            "features": int(self.x_train.shape[1]),
            "classes": self.num_classes,
            "train": len(self.y_train),
            "validation": len(self.y_val),
            "test": len(self.y_test),
        }


def load_digits() -> tuple[np.ndarray, np.ndarray, str]:
    """scikit-learn's bundled 8x8 digits: 1797 images, 10 classes.

    The data ship inside scikit-learn, so nothing is downloaded.
    """
    from sklearn.datasets import load_digits as sklearn_digits

    bunch = sklearn_digits()
    return bunch.data, bunch.target, "sklearn.datasets.load_digits"


def load_npz(path: str) -> tuple[np.ndarray, np.ndarray, str]:
    """Reads arrays `x` [N, features] and `y` [N] from a .npz file.

    Raises:
        DataError: if the file is missing or unreadable, lacks `x` or `y`,
            or the arrays have the wrong shapes, lengths or dtypes.
    """
    if not os.path.exists(path):
        raise DataError(f"--data {path}: no such file.")
    if os.path.isdir(path):
        raise DataError(f"--data {path}: is a directory, not a .npz file.")
    try:
        loaded = np.load(path, allow_pickle=False)
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as err:
        raise DataError(
            f"--data {path}: cannot be read as a NumPy .npz archive ({err})."
        ) from err
    if not isinstance(loaded, np.lib.npyio.NpzFile):
        raise DataError(
            f"--data {path}: holds a single array, not a .npz archive; "
            "save one with np.savez(path, x=features, y=labels)."
        )
    with loaded as archive:
        missing = [k for k in ("x", "y") if k not in archive.files]
        if missing:
            raise DataError(
                f"--data {path}: no array named "
                f"{' or '.join(repr(k) for k in missing)} (it holds "
                f"{sorted(archive.files)}). Save it with "
                "np.savez(path, x=features, y=labels)."
            )
        try:
            x, y = archive["x"], archive["y"]
        except (OSError, ValueError, zipfile.BadZipFile, EOFError) as err:
            raise DataError(
                f"--data {path}: cannot read its arrays ({err})."
            ) from err
    x, y = _check_arrays(x, y, path)
    return x, y, path


def _check_arrays(x, y, path) -> tuple[np.ndarray, np.ndarray]:
    """Validates a user's arrays and returns float features, int labels."""
    where = f"--data {path}"
    if not (np.issubdtype(x.dtype, np.number) or x.dtype == np.bool_):
        raise DataError(f"{where}: `x` has non-numeric dtype {x.dtype}.")
    if np.issubdtype(x.dtype, np.complexfloating):
        raise DataError(f"{where}: `x` is complex; expected real features.")
    if x.ndim != 2:
        raise DataError(
            f"{where}: `x` has shape {x.shape}; expected (N, features). "
            "Flatten images first: x.reshape(len(x), -1)."
        )
    if y.ndim != 1:
        raise DataError(
            f"{where}: `y` has shape {y.shape}; expected (N,) integer labels."
        )
    if len(x) != len(y):
        raise DataError(
            f"{where}: `x` has {len(x)} rows but `y` has {len(y)} labels; "
            "they must match."
        )
    if not np.all(np.isfinite(x)):
        raise DataError(f"{where}: `x` holds NaN or infinite values.")
    return x, _integer_labels(y, where)


def _integer_labels(y: np.ndarray, where: str) -> np.ndarray:
    """Labels as int64; whole-valued floats are accepted, others are not."""
    if np.issubdtype(y.dtype, np.integer):
        labels = y.astype(np.int64)
    elif np.issubdtype(y.dtype, np.floating):
        bad = ~np.isfinite(y) | (y != np.round(y))
        if np.any(bad):
            index = int(np.argmax(bad))
            raise DataError(
                f"{where}: `y` must hold integer class labels; got "
                f"{y.dtype} with the non-integer value {y[index].item()!r} at "
                f"index {index}."
            )
        labels = y.astype(np.int64)
    else:
        raise DataError(
            f"{where}: `y` must hold integer class labels; got dtype "
            f"{y.dtype}. Map class names to 0, 1, 2, ... first."
        )
    if labels.size and labels.min() < 0:
        raise DataError(
            f"{where}: `y` holds the negative label {labels.min()}; labels "
            "must be 0, 1, ..., classes - 1."
        )
    return labels


def split(
    x: np.ndarray,
    y: np.ndarray,
    source: str,
    *,
    seed: int,
    subset: int | None = None,
) -> Splits:
    """Shuffles with a fixed seed, splits 60/20/20 and standardises.

    Args:
        x: features [N, features].
        y: integer labels [N].
        source: where the data came from.
        seed: seed of the shuffle; the same seed gives the same splits.
        subset: keep only this many examples (after shuffling), for quick
            runs; None keeps all.

    Raises:
        DataError: if a split would hold fewer than `MIN_PER_SPLIT`
            examples, or there are fewer than two classes.
    """
    order = np.random.default_rng(seed).permutation(len(y))
    if subset is not None:
        order = order[:subset]
    x = np.asarray(x, dtype=np.float64)[order]
    y = np.asarray(y)[order]

    n_train = round(SPLIT_FRACTIONS[0] * len(y))
    n_val = round(SPLIT_FRACTIONS[1] * len(y))
    sizes = (n_train, n_val, len(y) - n_train - n_val)
    if min(sizes) < MIN_PER_SPLIT:
        raise DataError(
            f"{source}: {len(y)} examples give splits of {sizes} "
            f"(train, validation, test); each needs at least "
            f"{MIN_PER_SPLIT}. Use more data."
        )
    num_classes = int(y.max()) + 1
    if num_classes < 2:
        raise DataError(f"{source}: every label is 0; need two classes.")

    # Standardise with training statistics only, so that nothing about the
    # validation or test examples leaks into the model. A constant feature
    # (the digits' blank corner pixels) keeps scale 1 instead of 0.
    x_train = x[:n_train]
    mean = x_train.mean(axis=0)
    std = x_train.std(axis=0)
    std = np.where(std > 1e-8, std, 1.0)
    x = ((x - mean) / std).astype(np.float32)
    y = y.astype(np.int32)

    a, b = n_train, n_train + n_val
    return Splits(
        x_train=x[:a],
        y_train=y[:a],
        x_val=x[a:b],
        y_val=y[a:b],
        x_test=x[b:],
        y_test=y[b:],
        num_classes=num_classes,
        source=source,
    )
