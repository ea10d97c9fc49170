"""The models the bo sampler scores configs with: each predicts a mean and a standard deviation.

- ``gp``: a Gaussian process (scikit-learn, Matern 5/2 with a noise term) under one length scale;
  ``gp-ard``: the same with a length scale per column (how much each knob matters).
- ``forest``: a random forest as SMAC's (Hutter et al., 2011): bootstrapped regression trees that
  consider 5/6 of the columns at each split and stop at 3 rows a leaf (SMAC3's defaults); its
  mean is the trees' mean, its variance the trees' spread plus the variance within their leaves
  (the law of total variance). Trees split on a knob's values wherever the results do, so an
  interaction (threads x instances against the cores, precision x accelerator) is a pair of
  splits, not a distance. Replayed on recorded landscapes it trails the default ``gp`` (few rows
  barely split such trees; docs/benchmarks.md), so it is an option, not the default.

Both are fitted with one thread: the matrices are small, and the cores belong to the measurements.
"""

from __future__ import annotations

import functools
import math
import warnings
from collections.abc import Callable
from typing import TYPE_CHECKING, Protocol

import numpy as np

if TYPE_CHECKING:
    from sklearn.ensemble import RandomForestRegressor
    from sklearn.gaussian_process import GaussianProcessRegressor

# scipy and scikit-learn are imported where a model is fitted: together they take over a second to
# import, which every command (tuner show, report, the API) would pay for a sampler it never runs.

#: The model kinds ``fit`` makes.
KINDS = ("gp", "gp-ard", "forest")
#: The bounds of a Gaussian process's length scales, where ``fit`` is given none.
SHORTEST_SCALE, LONGEST_SCALE = 0.05, 50.0
#: Trees of a ``forest`` model: more than SMAC's 10, as a fit of 40 rows costs milliseconds.
FOREST_TREES = 50
#: Where ``fit`` averages a Gaussian process over its length scales: the factors of the most likely
#: length scale(s) it refits at, powers of two from a sixteenth to four times it.
AVERAGED_SCALES = tuple(2.0**k for k in range(-4, 3) if k)


class Model(Protocol):
    def predict(self, rows: np.ndarray, noise: bool = True) -> tuple[np.ndarray, np.ndarray]:
        """Mean and standard deviation at each row; without ``noise``, of the modelled value itself
        (a config next to a measured one is then as certain as its neighbour, not as noisy)."""
        ...


def fit(
    rows: np.ndarray,
    values: np.ndarray,
    seed: int,
    kind: str,
    noise: np.ndarray | None = None,
    longest: float | None = None,
    prior_unit: float | None = None,
    average: bool = False,
    centered: bool = True,
) -> Model:
    """A model of ``values`` over ``rows`` (one per row), of one of ``KINDS``.

    ``noise``: each value's own variance as its measurement gives it, in the values' units. A
    Gaussian process adds it to its noise term for that row (a value known to be noisy pulls the
    model less); a forest has no use for it.

    ``longest``: the longest length scale a Gaussian process may take (None: ``LONGEST_SCALE``).
    Bounded by the distance between the two farthest configs of the space, it keeps every config
    a neighbour of its neighbours only: far longer, the fit is a smooth surface over the whole space
    that predicts a config one knob from a measured one with next to no doubt, where a knob can
    change throughput by a factor.

    ``prior_unit``: fit a Gaussian process's hyperparameters to their most probable values under
    the priors of Optuna's own ``GPSampler`` (``log_prior``), rather than to the likelihood alone;
    a length scale is measured in units of this distance (that of a config one knob away). None:
    the likelihood alone.

    ``average``: a Gaussian process's predictions are averaged over its length scales rather than
    taken at the most likely one: it is refitted with its length scale(s) fixed at each of
    ``AVERAGED_SCALES`` times the most likely, the amplitude and noise fitted again, and the fits are
    weighed by their likelihoods (a flat prior on the length scale's log). With few rows a longer
    scale often fits them as well as a shorter one, and the one fit is sure of configs far from any
    row that the shorter scale is not; the average keeps that doubt.

    ``centered``: a Gaussian process's prior mean, where no row is near, is the values' mean (scikit-learn's
    ``normalize_y``); without it, zero: the values are only scaled (by their root mean square), so that a
    config far from every row is predicted at 0, for a constraint its bound. A forest has no prior mean.
    """
    if kind == "forest":
        return _Forest(rows, values, seed)
    if kind in ("gp", "gp-ard"):
        return _GaussianProcess(rows, values, seed, kind == "gp-ard", noise, longest, prior_unit, average, centered)
    raise ValueError(f"unknown model {kind!r}; valid: {', '.join(KINDS)}")


class _GaussianProcess:
    def __init__(
        self,
        rows: np.ndarray,
        values: np.ndarray,
        seed: int,
        ard: bool,
        noise: np.ndarray | None,
        longest: float | None,
        prior_unit: float | None,
        average: bool,
        centered: bool = True,
    ) -> None:
        from sklearn.exceptions import ConvergenceWarning
        from sklearn.gaussian_process import GaussianProcessRegressor
        from sklearn.gaussian_process.kernels import ConstantKernel, Matern, WhiteKernel

        scale = np.ones(rows.shape[1]) if ard else 1.0
        bounds = (SHORTEST_SCALE, longest or LONGEST_SCALE)
        kernel = ConstantKernel(1.0, (1e-2, 1e2)) * Matern(scale, bounds, nu=2.5) + WhiteKernel(1e-2, (1e-6, 1.0))
        alpha: float | np.ndarray = 1e-10  # scikit-learn's default
        #: What the values are divided by before the fit, where they are not centered (normalize_y does both)
        self.scale = 1.0 if centered else float(np.sqrt(np.mean(np.square(values)))) or 1.0
        values = values / self.scale
        spread = float(np.var(values)) if centered else 1.0
        if noise is not None and spread > 0:
            alpha = alpha + np.asarray(noise) / self.scale**2 / spread  # normalize_y fits values / their std
        optimizer = "fmin_l_bfgs_b" if prior_unit is None else functools.partial(_most_probable, unit=prior_unit)
        self.model: GaussianProcessRegressor = GaussianProcessRegressor(
            kernel, alpha=alpha, normalize_y=centered, n_restarts_optimizer=1, random_state=seed, optimizer=optimizer
        )
        with warnings.catch_warnings():  # few rows: the fit often rests on a bound, which is fine
            warnings.simplefilter("ignore", ConvergenceWarning)
            self.model.fit(rows, values)
            #: The fits whose predictions are averaged, and their weights (the one fit, alone)
            self.fits, self.weights = [self.model], np.ones(1)
            if average:
                fitted = np.asarray(self.model.kernel_.k1.k2.length_scale)
                scales = {tuple(np.atleast_1d(np.clip(fitted * factor, *bounds))) for factor in AVERAGED_SCALES}
                scales.discard(tuple(np.atleast_1d(fitted)))  # at a bound, a factor gives the fitted scale again
                self.fits += [self._refit(rows, values, np.array(scale)) for scale in sorted(scales)]
                likelihoods = np.array([f.log_marginal_likelihood_value_ for f in self.fits])
                self.weights = np.exp(likelihoods - likelihoods.max())
                self.weights /= self.weights.sum()

    def _refit(self, rows: np.ndarray, values: np.ndarray, scale: np.ndarray) -> GaussianProcessRegressor:
        """The model fitted again, with its optimizer, its length scale(s) fixed at ``scale``."""
        from sklearn.base import clone

        kernel = self.model.kernel_.clone_with_theta(self.model.kernel_.theta)
        kernel.set_params(
            k1__k2__length_scale=scale if len(scale) > 1 else scale[0], k1__k2__length_scale_bounds="fixed"
        )
        model: GaussianProcessRegressor = clone(self.model).set_params(kernel=kernel, n_restarts_optimizer=0)
        return model.fit(rows, values)

    def predict(self, rows: np.ndarray, noise: bool = True) -> tuple[np.ndarray, np.ndarray]:
        """The fits' mixture, as one normal distribution of its mean and variance."""
        means, stds = (np.array(parts) for parts in zip(*(_predict(model, rows, noise) for model in self.fits)))
        mean = np.average(means, axis=0, weights=self.weights)
        variance = np.average(np.square(stds) + np.square(means - mean), axis=0, weights=self.weights)
        return mean * self.scale, np.sqrt(variance) * self.scale


def _predict(model: GaussianProcessRegressor, rows: np.ndarray, noise: bool) -> tuple[np.ndarray, np.ndarray]:
    """One fit's mean and standard deviation at each row (``Model.predict``)."""
    if noise:
        return model.predict(rows, return_std=True)
    fitted = model.kernel_
    model.kernel_ = fitted.k1  # the noise term (k2) is left out of the prediction only
    try:
        return model.predict(rows, return_std=True)
    finally:
        model.kernel_ = fitted


def log_prior(theta: np.ndarray, unit: float) -> tuple[float, np.ndarray]:
    """The log density (up to a constant) of a Gaussian process's hyperparameters, and its gradient,
    under the priors of Optuna's ``GPSampler`` (optuna._gp.prior, over standardized values as here):
    the amplitude Gamma(2, 1), the noise variance Gamma(1.1, 30), and each length scale ``l``
    exp(-0.1 (l/unit)^2 - 0.1 (unit/l)^2), most probable at one ``unit``.

    ``theta`` is scikit-learn's: the logs of the amplitude, the length scales and the noise, in this
    order; the gradient is by ``theta``. Fitted to the likelihood alone, a few rows often take the
    amplitude's and the length scale's upper bounds and the noise's lower one: a smooth surface over
    the whole space, next to certain of every config near a measured one.
    """
    amplitude, scales, noise = np.exp(theta[0]), np.exp(theta[1:-1]) / unit, np.exp(theta[-1])
    value = (math.log(amplitude) - amplitude) + (0.1 * math.log(noise) - 30.0 * noise)
    value -= float(np.sum(0.1 * scales**2 + 0.1 / scales**2))
    gradient = np.concatenate(([1.0 - amplitude], -0.2 * scales**2 + 0.2 / scales**2, [0.1 - 30.0 * noise]))
    return value, gradient


def _most_probable(
    objective: Callable[[np.ndarray], tuple[float, np.ndarray]], start: np.ndarray, bounds: np.ndarray, unit: float
) -> tuple[np.ndarray, float]:
    """scikit-learn's optimizer of the hyperparameters, on the negative log likelihood less the log prior."""
    from scipy.optimize import minimize

    def posterior(theta: np.ndarray) -> tuple[float, np.ndarray]:
        value, gradient = objective(theta)
        prior, prior_gradient = log_prior(theta, unit)
        return value - prior, gradient - prior_gradient

    result = minimize(posterior, start, method="L-BFGS-B", jac=True, bounds=bounds)
    return result.x, float(result.fun)


class _Forest:
    def __init__(self, rows: np.ndarray, values: np.ndarray, seed: int) -> None:
        from sklearn.ensemble import RandomForestRegressor

        self.model: RandomForestRegressor = RandomForestRegressor(
            n_estimators=FOREST_TREES, max_features=5 / 6, min_samples_split=3, min_samples_leaf=3,
            bootstrap=True, random_state=seed, n_jobs=1,
        )  # fmt: skip
        self.model.fit(rows, values)

    def predict(self, rows: np.ndarray, noise: bool = True) -> tuple[np.ndarray, np.ndarray]:
        del noise  # a leaf's spread is the measurements' as much as the model's: both are kept
        means = np.empty((len(self.model.estimators_), len(rows)))
        second = np.empty_like(means)
        for i, tree in enumerate(self.model.estimators_):
            leaves = tree.apply(rows)
            means[i] = tree.tree_.value[leaves, 0, 0]
            second[i] = tree.tree_.impurity[leaves] + means[i] ** 2  # a leaf's variance + its mean squared
        mean = means.mean(axis=0)
        return mean, np.sqrt(np.maximum(second.mean(axis=0) - mean**2, 0.0))


def log_prob_at_most_zero(model: Model, rows: np.ndarray) -> np.ndarray:
    """Log of the modelled probability that each row's value is <= 0 (with the noise: whether a
    config meets a bound is decided by its measurement)."""
    from scipy.special import log_ndtr

    mean, std = model.predict(rows)
    return log_ndtr(-mean / np.maximum(std, 1e-9))


def log_expected_improvement(mean: np.ndarray, std: np.ndarray, best: float) -> np.ndarray:
    """log E[max(0, f - best)] for f ~ N(mean, std), stable far below the best."""
    from scipy.stats import norm

    z = (mean - best) / std
    out = np.empty_like(z)
    near = z > -5.0
    zn = z[near]
    out[near] = np.log(np.maximum(zn * norm.cdf(zn) + norm.pdf(zn), 1e-300))
    zf = z[~near]  # z * Phi(z) + phi(z) ~ phi(z) / z**2 as z -> -inf
    out[~near] = norm.logpdf(zf) - 2.0 * np.log(-zf)
    return out + np.log(std)
