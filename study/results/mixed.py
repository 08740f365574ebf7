"""Mixed-effects models with crossed random intercepts (participants and images), by maximum likelihood.

The models of the analysis, with X the fixed-effects design (an intercept and one treatment
column per method other than the reference) and one random intercept per grouping factor:

    logistic (fit_logit):  logit P(y = 1) = X beta + b_participant + b_image
    linear (fit_linear):   y = X beta + b_participant + b_image + e,   e ~ N(0, sd_residual²)
    b_participant ~ N(0, sd_participant²), b_image ~ N(0, sd_image²), all independent.

In R: glmer(y ~ method + (1|participant) + (1|image), family = binomial) and
lmer(y ~ method + (1|participant) + (1|image)).

fit_logit maximises the Laplace approximation of the marginal likelihood, as glmer does by
default (nAGQ = 1): with spherical random effects u (b = Lambda u, Lambda = diag of the SDs),

    deviance(theta, beta) = -2 log p(y | u*) + |u*|² + log det(Lambda Z'W Z Lambda + I)

where u* is the conditional mode (penalised Newton steps) and W = diag(mu (1 - mu)) at u*; the
deviance is minimised over (theta >= 0, beta) jointly by L-BFGS-B. The covariance of beta is
twice the inverse of the deviance's Hessian in (theta, beta) (finite differences), its beta
block, as glmer's vcov (use.hessian = TRUE); SDs on the boundary (0) are held fixed there.
fit_linear is statsmodels' MixedLM with the two factors as variance components, by REML (lmer's
default). Contrasts get Wald z tests and Wald 95% intervals (docs/METHODS.md lists the
differences from lme4). A fit with an SD at zero is `singular`, as lme4's isSingular.
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import linalg, optimize, stats
from scipy.special import expit

SINGULAR_TOL = 1e-4   # lme4's isSingular tolerance on the relative SDs theta
FLAT = 1e-6           # deviance change below which an SD of 0 fits as well as the estimate


@dataclass(frozen=True)
class Contrast:
    """One fixed effect: estimate, standard error, Wald z test and 95% interval."""

    term: str
    estimate: float
    se: float
    z: float
    p: float
    ci_low: float
    ci_high: float


@dataclass(frozen=True)
class MixedFit:
    """A fitted mixed model: fixed effects `beta` (named by `terms`) with covariance `cov`,
    random-intercept SDs by factor (plus "residual" for the linear model), log-likelihood
    (Laplace for the logistic model; REML criterion's for the linear one), observations,
    and whether an SD is at zero (a singular fit)."""

    family: str
    terms: tuple[str, ...]
    beta: np.ndarray
    cov: np.ndarray
    sd: dict[str, float]
    loglik: float
    n: int
    singular: bool

    def contrast(self, term: str, confidence: float = 0.95) -> Contrast:
        """The Wald z test and interval of one fixed effect."""
        i = self.terms.index(term)
        estimate, variance = float(self.beta[i]), float(self.cov[i, i])
        se = np.sqrt(variance) if variance > 0 else float("nan")   # NaN: the Hessian was not positive definite
        z = estimate / se
        half = stats.norm.ppf(0.5 + confidence / 2) * se
        return Contrast(term, estimate, se, z, float(2 * stats.norm.sf(abs(z))), estimate - half, estimate + half)


class Crossed:
    """Crossed grouping factors as integer codes: the random-effects design Z without forming it.

    `codes` maps each factor's name to one code per observation (0 .. levels-1). Z has one
    indicator column per level of each factor, factors in the given order.
    """

    def __init__(self, codes: dict[str, np.ndarray]):
        self.names = tuple(codes)
        self.codes = [np.asarray(c, dtype=np.intp) for c in codes.values()]
        self.sizes = [int(c.max()) + 1 if c.size else 0 for c in self.codes]
        self.starts = np.concatenate([[0], np.cumsum(self.sizes)]).astype(np.intp)
        self.q = int(self.starts[-1])
        self.factor_of_column = np.repeat(np.arange(len(self.sizes)), self.sizes)
        self.n = self.codes[0].size if self.codes else 0

    def times(self, b: np.ndarray) -> np.ndarray:
        """Z b: the summed random effects of each observation (b may be [..., q])."""
        return sum(b[..., s + c] for s, c in zip(self.starts, self.codes))

    def transpose_times(self, r: np.ndarray) -> np.ndarray:
        """Z' r for one vector r of length n."""
        return np.concatenate([np.bincount(c, r, minlength=k) for c, k in zip(self.codes, self.sizes)])

    def gram(self, w: np.ndarray) -> np.ndarray:
        """Z' diag(w) Z: diagonal blocks are per-level sums of w, off-diagonal ones cross counts."""
        out = np.zeros((self.q, self.q))
        for g, (cg, kg) in enumerate(zip(self.codes, self.sizes)):
            sg = slice(self.starts[g], self.starts[g + 1])
            out[sg, sg] = np.diag(np.bincount(cg, w, minlength=kg))
            for h in range(g + 1, len(self.codes)):
                ch, kh = self.codes[h], self.sizes[h]
                block = np.bincount(cg * kh + ch, w, minlength=kg * kh).reshape(kg, kh)
                sh = slice(self.starts[h], self.starts[h + 1])
                out[sg, sh] = block
                out[sh, sg] = block.T
        return out


def codes_of(values) -> np.ndarray:
    """Integer codes 0..k-1 of any labels (participant or image ids)."""
    return pd.factorize(pd.Series(values).astype(str), sort=True)[0]


def treatment_design(methods, levels: list[str]) -> tuple[np.ndarray, tuple[str, ...]]:
    """X = [1, (method == level) for each level but the first]: the reference is levels[0]."""
    methods = np.asarray(methods).astype(str)
    unknown = set(methods) - set(levels)
    if unknown:
        raise ValueError(f"methods {sorted(unknown)} are not among the levels {levels}")
    columns = [np.ones(methods.size)] + [(methods == m).astype(float) for m in levels[1:]]
    return np.column_stack(columns), ("(Intercept)", *levels[1:])


# ---------------------------------------------------------------------------------------------
# Logistic: Laplace maximum likelihood
# ---------------------------------------------------------------------------------------------


class LaplaceLogit:
    """The Laplace deviance of the logistic model for one data set, and its exact gradient.

    The gradient uses that u* maximises the penalised log-likelihood h (so only h's explicit
    dependence on the parameters counts) plus d log det H = tr(H^-1 dH), where H changes with
    Lambda directly and with W through eta* = X beta + Z Lambda u*, whose derivative includes
    du*/dphi = H^-1 (dLambda Z'(y - mu) - Lambda Z'W d eta/dphi) (implicit differentiation).
    """

    def __init__(self, y, X, groups: Crossed):
        self.y = np.asarray(y, dtype=float)
        self.X = np.asarray(X, dtype=float)
        self.groups = groups
        self.u = np.zeros(groups.q)     # warm start of the conditional mode

    def _penalised(self, eta: np.ndarray, u: np.ndarray) -> float:
        return float(np.sum(self.y * eta - np.logaddexp(0.0, eta)) - 0.5 * u @ u)

    def _mode(self, lam: np.ndarray, offset: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
        """The conditional mode u* by Newton steps (halved when one overshoots), warm-started."""
        g = self.groups
        u = self.u
        eta = offset + g.times(lam * u)
        value = self._penalised(eta, u)
        for _ in range(100):
            mu = expit(eta)
            hessian = lam[:, None] * g.gram(mu * (1 - mu)) * lam[None, :] + np.eye(g.q)
            step = linalg.cho_solve(linalg.cho_factor(hessian, lower=True, check_finite=False),
                                    lam * g.transpose_times(self.y - mu) - u, check_finite=False)
            for _halving in range(30):
                trial = u + step
                eta_trial = offset + g.times(lam * trial)
                new = self._penalised(eta_trial, trial)
                if new >= value - 1e-12:
                    break
                step = step / 2
            u, eta, gain, value = trial, eta_trial, new - value, new
            if np.max(np.abs(step)) < 1e-10 or gain < 1e-13:
                break
        self.u = u
        return u, eta, value

    def evaluate(self, params: np.ndarray) -> tuple[float, np.ndarray]:
        """(deviance, gradient) at params = (theta, beta)."""
        g = self.groups
        k = len(g.sizes)
        theta, beta = params[:k], params[k:]
        lam = theta[g.factor_of_column]
        u, eta, value = self._mode(lam, self.X @ beta)
        mu = expit(eta)
        w = mu * (1 - mu)
        gram = g.gram(w)
        hessian = lam[:, None] * gram * lam[None, :] + np.eye(g.q)
        chol = np.linalg.cholesky(hessian)
        inverse = linalg.cho_solve((chol, True), np.eye(g.q), check_finite=False)
        deviance = -2 * value + 2 * np.sum(np.log(np.diag(chol)))
        # Partial derivatives of eta (n x d) and of the mode equation's right side (q x d).
        residual_z = g.transpose_times(self.y - mu)
        member = g.factor_of_column[:, None] == np.arange(k)[None, :]            # q x k
        d_eta = np.column_stack([g.times(member[:, f] * u) for f in range(k)] + [self.X])
        right = np.column_stack([member[:, f] * residual_z for f in range(k)]
                                + [np.zeros((g.q, beta.size))])
        right -= lam[:, None] * np.column_stack([g.transpose_times(w * d_eta[:, j]) for j in range(d_eta.shape[1])])
        d_eta_total = d_eta + np.column_stack([g.times(lam * c) for c in (inverse @ right).T])
        # d(-2 h): explicit dependence only.
        explicit = -2 * np.concatenate([member.T @ (u * residual_z), self.X.T @ (self.y - mu)])
        # tr(H^-1 dH): through Lambda directly (theta only) and through W (every parameter).
        direct = 2 * member.T @ np.einsum("jl,l,lj->j", gram, lam, inverse)
        scaled = lam[:, None] * inverse * lam[None, :]
        leverage = sum(scaled[s1 + c1, s2 + c2] for s1, c1 in zip(g.starts, g.codes)
                       for s2, c2 in zip(g.starts, g.codes))
        through_w = (w * (1 - 2 * mu) * leverage) @ d_eta_total
        gradient = explicit + through_w
        gradient[:k] += direct
        return deviance, gradient

    def objective(self, params: np.ndarray) -> float:
        return self.evaluate(params)[0]


def start_beta(y, X) -> np.ndarray:
    """Ordinary logistic regression (no random effects) by Newton, with a small ridge so that
    a separated data set still gives finite starting values."""
    beta = np.zeros(X.shape[1])
    for _ in range(25):
        mu = expit(X @ beta)
        info = X.T @ (X * (mu * (1 - mu))[:, None]) + 1e-6 * np.eye(X.shape[1])
        step = np.linalg.solve(info, X.T @ (y - mu) - 1e-6 * beta)
        beta = beta + step
        if np.max(np.abs(step)) < 1e-8:
            break
    return beta


def fit_logit(y, X, groups: Crossed, terms: tuple[str, ...] | None = None, *,
              with_cov: bool = True) -> MixedFit:
    """Laplace maximum-likelihood fit of logit P(y=1) = X beta + sum of random intercepts.

    `with_cov=False` skips the Hessian (cov is then NaN): for callers that need only beta.
    """
    y = np.asarray(y, dtype=float)
    X = np.asarray(X, dtype=float)
    if not np.isin(y, (0.0, 1.0)).all():
        raise ValueError("fit_logit needs binary outcomes (0/1)")
    if y.size != X.shape[0] or y.size != groups.n:
        raise ValueError(f"fit_logit: {y.size} outcomes, {X.shape[0]} design rows, {groups.n} group codes")
    model = LaplaceLogit(y, X, groups)
    k = len(groups.sizes)
    start = np.concatenate([np.ones(k), start_beta(y, X)])
    bounds = [(0.0, None)] * k + [(None, None)] * X.shape[1]
    params = _minimise(model, start, bounds)
    # An SD whose removal costs (almost) nothing sits on a flat ridge that ends at 0: take the
    # boundary, where lme4's fits of such data end too, and refit beta there.
    for f in range(k):
        at_zero = params.copy()
        at_zero[f] = 0.0
        if params[f] < SINGULAR_TOL or model.objective(at_zero) - model.objective(params) < FLAT:
            bounds[f] = (0.0, 0.0)
            params = _minimise(model, at_zero, bounds)
    theta = params[:k]
    deviance = model.objective(params)
    cov = beta_cov(model, params, free=theta > 0) if with_cov else np.full((X.shape[1],) * 2, np.nan)
    names = terms or tuple(f"x{j}" for j in range(X.shape[1]))
    return MixedFit("binomial", names, params[k:], cov, dict(zip(groups.names, map(float, theta))),
                    -0.5 * deviance, int(y.size), bool((theta == 0).any()))


def _minimise(model: LaplaceLogit, start: np.ndarray, bounds: list) -> np.ndarray:
    result = optimize.minimize(model.evaluate, start, jac=True, method="L-BFGS-B", bounds=bounds,
                               options={"ftol": 1e-13, "gtol": 1e-8, "maxiter": 500})
    return result.x


def beta_cov(model: LaplaceLogit, params: np.ndarray, free: np.ndarray) -> np.ndarray:
    """2 H^-1 (its beta block), H the deviance's Hessian over the free SDs and beta: central
    differences of the exact gradient. SDs on the boundary (0) are held there."""
    k = free.size
    keep = np.concatenate([np.flatnonzero(free), k + np.arange(params.size - k)])
    steps = 1e-5 * np.maximum(1.0, np.abs(params[keep]))
    columns = []
    for index, h in zip(keep, steps):
        up, down = params.copy(), params.copy()
        up[index] += h
        down[index] -= h
        columns.append((model.evaluate(up)[1][keep] - model.evaluate(down)[1][keep]) / (2 * h))
    hessian = np.column_stack(columns)
    hessian = (hessian + hessian.T) / 2
    n_sd = int(free.sum())
    return 2 * np.linalg.inv(hessian)[n_sd:, n_sd:]


# ---------------------------------------------------------------------------------------------
# Linear: statsmodels MixedLM with variance components, REML
# ---------------------------------------------------------------------------------------------


def fit_linear(y, X, groups: Crossed, terms: tuple[str, ...] | None = None) -> MixedFit:
    """REML fit of y = X beta + sum of random intercepts + e (statsmodels MixedLM, one group,
    each factor a variance component)."""
    from statsmodels.regression.mixed_linear_model import MixedLM, VCSpec

    y = np.asarray(y, dtype=float)
    X = np.asarray(X, dtype=float)
    if y.size != X.shape[0] or y.size != groups.n:
        raise ValueError(f"fit_linear: {y.size} outcomes, {X.shape[0]} design rows, {groups.n} group codes")
    spec = VCSpec(list(groups.names), [[[f"{name}{j}" for j in range(k)]] for name, k in zip(groups.names, groups.sizes)],
                  [[np.eye(k)[c]] for c, k in zip(groups.codes, groups.sizes)])
    model = MixedLM(y, X, groups=np.zeros(y.size), exog_vc=spec)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")   # boundary and convergence chatter: singularity is reported
        result = model.fit(reml=True, method=["lbfgs", "bfgs", "powell"])
    names = terms or tuple(f"x{j}" for j in range(X.shape[1]))
    residual = float(np.sqrt(result.scale))
    sds = np.sqrt(np.maximum(result.vcomp, 0.0))
    sds[sds <= SINGULAR_TOL * residual] = 0.0      # lme4's isSingular: relative SD theta below 1e-4
    sd_by_factor = dict(zip(groups.names, map(float, sds)))
    singular = bool((sds == 0).any())
    p = X.shape[1]
    return MixedFit("gaussian", names, np.asarray(result.fe_params, dtype=float),
                    np.asarray(result.cov_params(), dtype=float)[:p, :p],
                    {**sd_by_factor, "residual": residual}, float(result.llf), int(y.size), singular)
