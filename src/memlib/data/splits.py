"""Seeded SSLMem splits: shared (S_S), candidate (S_C), independent (S_I), extra (S_E).

Encoder f trains on S_S ∪ S_C, encoder g on S_S ∪ S_I (``|S_I| = |S_C|``, so both
see the same number of points); S_E holds points neither saw (drawn from the
test split). See the book's Methods page.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..atomic import save_json

SUBSETS = ("candidate", "shared", "extra", "independent")
#: Paper notation for each subset, for plots and tables.
SUBSET_LABELS = {"candidate": "S_C", "shared": "S_S", "extra": "S_E", "independent": "S_I"}


@dataclass(frozen=True)
class Splits:
    """Indices of the four SSLMem subsets.

    ``shared``, ``candidate`` and ``independent`` index the training split of
    the dataset; ``extra`` indexes the test split.
    """

    shared: np.ndarray
    candidate: np.ndarray
    independent: np.ndarray
    extra: np.ndarray
    seed: int
    meta: dict = field(default_factory=dict)

    def __post_init__(self):
        for name in SUBSETS:
            object.__setattr__(self, name, np.asarray(getattr(self, name), dtype=np.int64))
        self.check_disjoint()

    def check_disjoint(self) -> None:
        """Raise ``ValueError`` if two training subsets share an index or a subset repeats one."""
        train = {"shared": self.shared, "candidate": self.candidate, "independent": self.independent}
        for name, idx in {**train, "extra": self.extra}.items():
            if len(np.unique(idx)) != len(idx):
                raise ValueError(f"splits: subset {name!r} contains repeated indices")
        names = list(train)
        for i, a in enumerate(names):
            for b in names[i + 1 :]:
                common = np.intersect1d(train[a], train[b])
                if len(common):
                    raise ValueError(
                        f"splits: subsets {a!r} and {b!r} share {len(common)} indices "
                        f"(e.g. {common[:5].tolist()}); they must be disjoint"
                    )

    @property
    def f_train(self) -> np.ndarray:
        """Training indices of encoder f (S_S ∪ S_C)."""
        return np.concatenate([self.shared, self.candidate])

    @property
    def g_train(self) -> np.ndarray:
        """Training indices of encoder g (S_S ∪ S_I)."""
        return np.concatenate([self.shared, self.independent])

    def sizes(self) -> dict[str, int]:
        return {name: len(getattr(self, name)) for name in SUBSETS}

    def to_dict(self) -> dict:
        return {"seed": self.seed, "meta": self.meta, **{n: getattr(self, n).tolist() for n in SUBSETS}}

    def save(self, path: str | Path) -> Path:
        """Write the splits as JSON (saved with every run so it can be re-scored).

        Written atomically through a temporary file of its own
        (:func:`~memlib.atomic.save_json`), so two processes saving the same
        splits at once never collide, and a crash never leaves half a file.
        """
        return save_json(self.to_dict(), path)

    @classmethod
    def load(cls, path: str | Path) -> "Splits":
        d = json.loads(Path(path).read_text())
        return cls(**{n: d[n] for n in SUBSETS}, seed=d["seed"], meta=d.get("meta", {}))


def _resolve(size: int | float, total: int, name: str) -> int:
    """A size given as a count (int ≥ 0) or as a fraction of ``total`` (0 < float < 1)."""
    if isinstance(size, bool) or not isinstance(size, (int, float, np.integer, np.floating)):
        raise TypeError(f"make_splits: {name}={size!r} must be an int count or a float fraction")
    if isinstance(size, (float, np.floating)):
        if not 0.0 < size < 1.0:
            raise ValueError(f"make_splits: {name}={size} as a fraction must lie in (0, 1); pass an int for a count")
        return int(round(size * total))
    if size < 0:
        raise ValueError(f"make_splits: {name}={size} must be ≥ 0")
    return int(size)


def check_split_sizes(
    n_train: int,
    n_test: int,
    shared: int | float,
    candidate: int | float,
    extra: int | float | None = None,
) -> tuple[int, int, int]:
    """Resolve the sizes of S_S, S_C (= S_I) and S_E and check they fit the dataset.

    Needs only the dataset's split sizes, so a run can check its sizes
    before loading any data. Arguments are those of :func:`make_splits`.

    Returns
    -------
    tuple of int
        ``(|S_S|, |S_C|, |S_E|)``.

    Raises
    ------
    ValueError
        If a size is negative, a fraction lies outside (0, 1), ``candidate``
        is 0, or the subsets do not fit the dataset's splits.
    """
    n_s = _resolve(shared, n_train, "shared")
    n_c = _resolve(candidate, n_train, "candidate")
    n_e = n_c if extra is None else _resolve(extra, n_test, "extra")
    if n_c == 0:
        raise ValueError("make_splits: candidate=0; SSLMem needs at least one candidate point")
    need = n_s + 2 * n_c
    if need > n_train:
        raise ValueError(
            f"make_splits: shared + 2*candidate = {n_s} + 2*{n_c} = {need} exceeds the {n_train} "
            f"training points; lower 'shared' or 'candidate' (S_I has the size of S_C)"
        )
    if n_e > n_test:
        raise ValueError(f"make_splits: extra={n_e} exceeds the {n_test} test points; lower 'extra'")
    return n_s, n_c, n_e


def make_splits(
    n_train: int,
    n_test: int,
    shared: int | float,
    candidate: int | float,
    extra: int | float | None = None,
    seed: int = 0,
    train_labels: np.ndarray | None = None,
) -> Splits:
    """Draw seeded, disjoint SSLMem splits.

    Parameters
    ----------
    n_train, n_test
        Sizes of the dataset's training and test splits.
    shared, candidate
        Size of S_S and of S_C (= size of S_I), each an int count or a float
        fraction of ``n_train``.
    extra
        Size of S_E (from the test split); an int or a fraction of ``n_test``.
        Defaults to the size of S_C.
    seed
        Seed of the draw; the same seed gives the same splits.
    train_labels
        Optional labels of the training split. When given, S_C and S_I are
        drawn stratified by class so both hold the same class mixture.

    Returns
    -------
    Splits
        The four index sets, checked disjoint.

    Raises
    ------
    ValueError
        If the requested sizes do not fit the dataset.
    """
    n_s, n_c, n_e = check_split_sizes(n_train, n_test, shared, candidate, extra)
    rng = np.random.default_rng(seed)
    if train_labels is None:
        perm = rng.permutation(n_train)
        cand, indep, rest = perm[:n_c], perm[n_c : 2 * n_c], perm[2 * n_c :]
    else:
        cand, indep, rest = _stratified_pair(np.asarray(train_labels), n_c, rng)
    shared_idx = rng.permutation(rest)[:n_s]
    extra_idx = rng.permutation(n_test)[:n_e]
    return Splits(
        shared=np.sort(shared_idx),
        candidate=np.sort(cand),
        independent=np.sort(indep),
        extra=np.sort(extra_idx),
        seed=seed,
        meta={"n_train": n_train, "n_test": n_test, "stratified": train_labels is not None},
    )


def _stratified_pair(labels: np.ndarray, n: int, rng: np.random.Generator):
    """Two disjoint draws of ``n`` points with the same class proportions, and the rest."""
    classes, counts = np.unique(labels, return_counts=True)
    # Largest-remainder allocation of n over classes, proportional to class frequency.
    exact = n * counts / counts.sum()
    per_class = np.floor(exact).astype(int)
    per_class[np.argsort(-(exact - per_class))[: n - per_class.sum()]] += 1
    a, b = [], []
    for c, k in zip(classes, per_class):
        idx = rng.permutation(np.flatnonzero(labels == c))
        if 2 * k > len(idx):
            raise ValueError(
                f"make_splits: class {c} has {len(idx)} points, fewer than the 2*{k} a stratified draw needs"
            )
        a.append(idx[:k])
        b.append(idx[k : 2 * k])
    a, b = np.concatenate(a), np.concatenate(b)
    rest = np.setdiff1d(np.arange(len(labels)), np.concatenate([a, b]))
    return a, b, rest
