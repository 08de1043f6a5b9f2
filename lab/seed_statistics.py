"""Statistics over training seeds: a mean with its interval, and the verdict a claim gets from it."""
import math


def mean_ci95(values):
    """Mean and 95 % confidence interval of the mean (Student t, n - 1 degrees of freedom).

    With one value the interval is (nan, nan): a single run says nothing about the spread.
    """
    from scipy import stats
    n = len(values)
    mean = sum(values) / n
    if n < 2:
        return mean, (math.nan, math.nan)
    sd = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1))
    half = stats.t.ppf(0.975, n - 1) * sd / math.sqrt(n)
    return mean, (mean - half, mean + half)


def verdict(ci95, direction):
    """Read a claim off the 95 % interval of a difference: direction +1 if the claim says it is positive,
    -1 if it says negative. "holds" (interval excludes 0 on the claim's side), "reversed" (on the other
    side) or "not shown" (interval contains 0, or there is no interval)."""
    low, high = ci95
    if math.isnan(low) or math.isnan(high):
        return "not shown"
    if low > 0 or high < 0:
        return "holds" if (low > 0) == (direction > 0) else "reversed"
    return "not shown"
