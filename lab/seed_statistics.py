"""Statistics over training seeds: intervals, tests and the verdict a claim gets from them.

Every verdict is decided here and stored in the results; reports only print it. An exploratory claim is read
off the paired differences VAE - AutoEncoder of the same seed on its primary measure: a two-sided t test
(superiority claims) or two one-sided tests against a stated margin (equivalence claims), with Holm's
correction across the claims of a dataset; a confirmatory claim off two independent samples by Welch's t
(the plan's rule, two_sample_verdict). Every mean of one model over seeds gets a Student t interval
(over_seeds), in the study, the beta sweep and evaluate.py alike; a report draws it inside the measure's range
(a share in [0, 1]) for display only, and the stored interval is the t interval itself.
"""
import math

ALPHA = 0.05


def mean_ci95(values, level=0.95):
    """Mean and confidence interval of the mean (Student t, n - 1 degrees of freedom): for paired differences,
    which have no range to leave. With one value the interval is (nan, nan): one run says nothing of spread."""
    from scipy import stats
    n = len(values)
    mean = sum(values) / n
    if n < 2:
        return mean, (math.nan, math.nan)
    half = stats.t.ppf(0.5 + level / 2, n - 1) * standard_error(values)
    return mean, (mean - half, mean + half)


def standard_error(values):
    n = len(values)
    mean = sum(values) / n
    return math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1) / n)


def over_seeds(values):
    """The one summary of a measure over seeds: {"n", "mean", "ci95" (Student t), "values"}."""
    mean, ci = mean_ci95(values)
    return {"n": len(values), "mean": mean, "ci95": list(ci), "values": list(values)}


def t_test_p(differences):
    """Two-sided p of the paired t test that the mean difference is 0 (1.0 when it cannot be computed)."""
    from scipy import stats
    if len(differences) < 2:
        return 1.0
    if standard_error(differences) == 0:
        return 1.0 if sum(differences) == 0 else 0.0
    return float(stats.ttest_1samp(differences, 0.0).pvalue)


def tost_p(differences, margin):
    """Two one-sided t tests (Schuirmann 1987): p of "the mean difference lies inside (-margin, +margin)", the
    larger of the two one-sided p values. p < alpha exactly when the (1 - 2 alpha) interval lies inside."""
    from scipy import stats
    n = len(differences)
    if n < 2:
        return 1.0
    mean, se = sum(differences) / n, standard_error(differences)
    if se == 0:
        return 0.0 if abs(mean) < margin else 1.0
    lower = stats.t.sf((mean + margin) / se, n - 1)  # H0: mean <= -margin
    upper = stats.t.cdf((mean - margin) / se, n - 1)  # H0: mean >= +margin
    return float(max(lower, upper))


def holm(p_values):
    """Holm-Bonferroni adjusted p values (Holm 1979), in the order given: the family-wise error stays below
    alpha when each adjusted p is compared with alpha."""
    order = sorted(range(len(p_values)), key=lambda i: p_values[i])
    adjusted, running = [0.0] * len(p_values), 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (len(p_values) - rank) * p_values[i]))
        adjusted[i] = running
    return adjusted


def verdict(mean, p_adjusted, direction, margin=None, ci90=None):
    """A claim's verdict from its primary measure. Superiority (direction +1 or -1: the sign VAE - AE has when
    the claim is right): "holds" or "reversed" when the adjusted p < alpha, by the sign of the mean difference;
    else "not shown". Equivalence (margin given): "equivalent" when the adjusted TOST p < alpha; "not
    equivalent" when the 90 % interval (ci90) lies wholly outside (-margin, +margin), so that a one-sided test at
    5 % puts the difference beyond the margin (not Holm-adjusted, which the report says); else "not shown" (the
    interval is too wide to tell)."""
    if margin is not None and (p_adjusted is None or p_adjusted >= ALPHA):
        low, high = ci90 if ci90 is not None else (math.nan, math.nan)
        return "not equivalent" if (low >= margin or high <= -margin) else "not shown"
    if p_adjusted is None or p_adjusted >= ALPHA:
        return "not shown"
    if margin is not None:
        return "equivalent"
    return "holds" if (mean > 0) == (direction > 0) else "reversed"


def paired_power(difference, sd, n, alpha):
    """Power of the two-sided one-sample (paired) t test at level alpha when the true mean difference is
    `difference` and the differences' standard deviation is sd (the noncentral t, n - 1 degrees of freedom)."""
    from scipy import stats
    df, shift = n - 1, abs(difference) / (sd / math.sqrt(n))
    critical = stats.t.ppf(1 - alpha / 2, df)
    power = float(stats.nct.sf(critical, df, shift) + stats.nct.cdf(-critical, df, shift))
    return 1.0 if math.isnan(power) else power


def paired_minimum_detectable_difference(differences, alpha, power=0.8):
    """The smallest true mean difference the two-sided paired t test at level alpha detects with `power`, at
    these differences' n and standard deviation (an exploratory comparison's mde80); nan below 2 seeds."""
    from scipy import optimize
    n = len(differences)
    if n < 2 or standard_error(differences) == 0:
        return math.nan
    sd = standard_error(differences) * math.sqrt(n)
    high = 8 * sd
    while paired_power(high, sd, n, alpha) < power:  # with 2 or 3 seeds the critical t is large
        high *= 4
        if high > 1e9 * sd:
            return math.inf
    return float(optimize.brentq(lambda d: paired_power(d, sd, n, alpha) - power, 1e-9 * sd, high))


def across_seeds(results, seeds):
    """The mean and 95 % t interval over seeds of every number that all of results ({run name: {measure: value}},
    runs of one recipe) have, with each seed's value: {measure: over_seeds(values)}."""
    names = list(results)
    summary = {"runs": names, "seeds": [seeds[n] for n in names], "measures": {}}
    for key in results[names[0]]:
        values = [results[n].get(key) for n in names]
        if all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in values):
            summary["measures"][key] = over_seeds(values)
    return summary


# ---- two independent samples (the confirmatory study: studies/confirmatory.toml) ----

def welch_t_test_p(a, b):
    """Two-sided p of Welch's t test that two independent samples (one model's seeds, the other's) have the
    same mean; it does not assume equal variances, which the pilot rules out (the AutoEncoder's reconstruction
    spreads ten times as much over seeds as the VAE's)."""
    from scipy import stats
    if len(a) < 2 or len(b) < 2:
        return 1.0
    if standard_error(a) == 0 and standard_error(b) == 0:
        return 1.0 if sum(a) / len(a) == sum(b) / len(b) else 0.0
    return float(stats.ttest_ind(b, a, equal_var=False).pvalue)


def welch_power(difference, sd_a, sd_b, n_a, n_b, alpha):
    """Power of the two-sided Welch t test at level alpha when the true mean difference is `difference` and the
    two samples' standard deviations are sd_a and sd_b: the noncentral t with the Welch-Satterthwaite degrees of
    freedom (the approximation G*Power and statsmodels use; tests/test_plan.py checks it by simulation)."""
    from scipy import stats
    var_a, var_b = sd_a ** 2 / n_a, sd_b ** 2 / n_b
    se = math.sqrt(var_a + var_b)
    df = (var_a + var_b) ** 2 / (var_a ** 2 / (n_a - 1) + var_b ** 2 / (n_b - 1))
    critical, shift = stats.t.ppf(1 - alpha / 2, df), abs(difference) / se
    power = float(stats.nct.sf(critical, df, shift) + stats.nct.cdf(-critical, df, shift))
    return 1.0 if math.isnan(power) else power  # scipy's noncentral t gives nan only far out, where power is 1


def n_for_power(difference, sd_a, sd_b, alpha, power=0.8, most=10000):
    """The smallest n per model (equal n) at which the two-sided Welch test at level alpha detects a true
    difference of `difference` with at least `power`; None if not within `most`."""
    for n in range(2, most + 1):
        if welch_power(difference, sd_a, sd_b, n, n, alpha) >= power:
            return n
    return None


def minimum_detectable_difference(sd_a, sd_b, n_a, n_b, alpha, power=0.8):
    """The smallest true difference the two-sided Welch test at level alpha detects with `power` at these n and
    standard deviations (the 'mde80' a comparison stores beside "not shown")."""
    from scipy import optimize
    if n_a < 2 or n_b < 2 or sd_a + sd_b == 0:
        return math.nan
    scale = math.sqrt(sd_a ** 2 / n_a + sd_b ** 2 / n_b)
    high = 8 * scale  # widened until the power is reached: with 2 or 3 seeds the critical t is tens of units
    while welch_power(high, sd_a, sd_b, n_a, n_b, alpha) < power:
        high *= 4
        if high > 1e9 * scale:
            return math.inf
    return float(optimize.brentq(lambda d: welch_power(d, sd_a, sd_b, n_a, n_b, alpha) - power, 1e-9 * scale, high))


def welch_ci95(a, b, level=0.95):
    """mean(b) - mean(a) and its confidence interval by Welch's t (Welch-Satterthwaite degrees of freedom);
    (nan, nan) when either sample has fewer than 2 values."""
    from scipy import stats
    difference = sum(b) / len(b) - sum(a) / len(a) if a and b else math.nan
    if len(a) < 2 or len(b) < 2:
        return difference, (math.nan, math.nan)
    var_a, var_b = standard_error(a) ** 2, standard_error(b) ** 2
    if var_a + var_b == 0:
        return difference, (difference, difference)
    df = (var_a + var_b) ** 2 / (var_a ** 2 / (len(a) - 1) + var_b ** 2 / (len(b) - 1))
    half = stats.t.ppf(0.5 + level / 2, df) * math.sqrt(var_a + var_b)
    return difference, (difference - half, difference + half)


def two_sample_verdict(a, b, p_adjusted, direction, alpha=ALPHA):
    """The confirmatory plan's verdict rule (studies/confirmatory.toml): holds when the Holm-adjusted p < alpha and
    mean(b) - mean(a) has the sign of the claim's direction, reversed when it has the other sign, not shown
    otherwise or when either model has fewer than 2 values."""
    if len(a) < 2 or len(b) < 2 or p_adjusted is None or p_adjusted >= alpha:
        return "not shown"
    difference = sum(b) / len(b) - sum(a) / len(a)
    return "holds" if (difference > 0) == (direction > 0) else "reversed"
