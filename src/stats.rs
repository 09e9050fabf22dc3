//! The statistics that tmr reports: how far to trust a majority vote of
//! replicas, what a run of clean reruns does and does not prove about a
//! suspected flake, and how wide the uncertainty on an observed failure rate
//! really is.
//!
//! Everything here is a pure function of its arguments: no I/O, no processes,
//! no clocks, no randomness, no global state. It must stay that way. Keeping
//! the arithmetic apart from the runner is what lets it be checked against
//! hand-computed values and property tests, and lets the reporting code quote
//! a number without wondering what else computing it did.
//!
//! The functions never panic. Out-of-range inputs are clamped to the nearest
//! meaningful value (each function says how), and a NaN probability comes
//! back out as NaN rather than as a plausible-looking number.

/// Confidence levels are clamped into `[CONFIDENCE_FLOOR, CONFIDENCE_CEIL]`.
/// The ceiling keeps every quantile finite (z ≈ 8.03 there), which is far
/// beyond any confidence a report would meaningfully claim.
const CONFIDENCE_FLOOR: f64 = 1e-15;
const CONFIDENCE_CEIL: f64 = 1.0 - 1e-15;

/// A confidence level as the functions below use it. NaN maps to the ceiling
/// on purpose: an unreadable confidence then yields the widest interval and
/// the largest rerun count, so a bad input can only make tmr more cautious,
/// never let it overclaim.
fn clamp_confidence(confidence: f64) -> f64 {
    if confidence.is_nan() {
        CONFIDENCE_CEIL
    } else {
        confidence.clamp(CONFIDENCE_FLOOR, CONFIDENCE_CEIL)
    }
}

/// The half-width multiplier for a two-sided interval: a standard normal
/// lands within ±z with probability `confidence` (0.95 → 1.959964,
/// 0.99 → 2.575829, 0.90 → 1.644854).
///
/// Uses Wichura's AS241 (PPND16), accurate to about 1e-16 relative, and works
/// from the tail probability `(1 − confidence)/2` directly so that confidences
/// very close to 1 do not lose their digits to `1 − p` cancellation.
///
/// `confidence` is clamped into `[1e-15, 1 − 1e-15]`, so the result is always
/// finite and positive; NaN is read as the upper end (the cautious choice).
pub fn z_for_confidence(confidence: f64) -> f64 {
    let c = clamp_confidence(confidence);
    // Central region of AS241: |p − 0.5| ≤ 0.425, where p − 0.5 = c/2.
    let q = c / 2.0;
    if q <= 0.425 {
        let r = 0.180625 - q * q;
        return q * polynomial(&AS241_A, r) / polynomial(&AS241_B, r);
    }
    // Tail regions: r = sqrt(−ln(upper tail probability)).
    let tail = (1.0 - c) / 2.0;
    let r = (-tail.ln()).sqrt();
    if r <= 5.0 {
        let r = r - 1.6;
        polynomial(&AS241_C, r) / polynomial(&AS241_D, r)
    } else {
        let r = r - 5.0;
        polynomial(&AS241_E, r) / polynomial(&AS241_F, r)
    }
}

// Wichura (1988), Algorithm AS241 PPND16, Applied Statistics 37(3) 477–484.
// Coefficients in ascending powers (a0..a7 and so on, as published),
// rounded to the nearest f64.
const AS241_A: [f64; 8] = [
    3.3871328727963665,
    133.14166789178438,
    1971.5909503065513,
    13731.69376550946,
    45921.95393154987,
    67265.7709270087,
    33430.57558358813,
    2509.0809287301227,
];
const AS241_B: [f64; 8] = [
    1.0,
    42.31333070160091,
    687.1870074920579,
    5394.196021424751,
    21213.794301586597,
    39307.89580009271,
    28729.085735721943,
    5226.495278852854,
];
const AS241_C: [f64; 8] = [
    1.4234371107496835,
    4.630337846156546,
    5.769497221460691,
    3.6478483247632045,
    1.2704582524523684,
    0.2417807251774506,
    0.022723844989269184,
    0.0007745450142783414,
];
const AS241_D: [f64; 8] = [
    1.0,
    2.053191626637759,
    1.6763848301838038,
    0.6897673349851,
    0.14810397642748008,
    0.015198666563616457,
    0.0005475938084995345,
    1.0507500716444169e-9,
];
const AS241_E: [f64; 8] = [
    6.657904643501103,
    5.463784911164114,
    1.7848265399172913,
    0.29656057182850487,
    0.026532189526576124,
    0.0012426609473880784,
    2.7115555687434876e-5,
    2.0103343992922881e-7,
];
const AS241_F: [f64; 8] = [
    1.0,
    0.599832206555888,
    0.1369298809227358,
    0.014875361290850615,
    0.0007868691311456133,
    1.8463183175100548e-5,
    1.421511758316446e-7,
    2.0442631033899397e-15,
];

/// Horner evaluation of a polynomial given in ascending powers.
fn polynomial(coefficients: &[f64], x: f64) -> f64 {
    coefficients.iter().rev().fold(0.0, |acc, &c| acc * x + c)
}

/// A closed range `[lo, hi]` of plausible values for a rate, with
/// `0 ≤ lo ≤ hi ≤ 1`.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct Interval {
    pub lo: f64,
    pub hi: f64,
}

/// Where the true per-run rate plausibly lies after `k` events in `n` runs,
/// at the given two-sided `confidence`.
///
/// Wilson rather than the textbook `p̂ ± z·sqrt(p̂(1−p̂)/n)` because tmr's
/// common case is `k = 0` or `k = n` (nothing or everything failed), where
/// that formula collapses to a zero-width interval and claims certainty it
/// does not have; Wilson stays honest there and never leaves `[0, 1]`.
///
/// Read `hi` as "the rate could still be this high": `k = 0, n = 10` at 95%
/// gives `hi ≈ 0.28`, i.e. ten clean runs do not rule out a flake that
/// fails more than a quarter of the time. `lo` is exactly 0 when `k = 0` and
/// `hi` exactly 1 when `k = n`, so "cannot exclude 0%/100%" is visible as
/// such. With no runs (`n = 0`) nothing is known and the interval is
/// `[0, 1]`. A `k` above `n` is treated as `n`.
pub fn wilson(k: u64, n: u64, confidence: f64) -> Interval {
    if n == 0 {
        return Interval { lo: 0.0, hi: 1.0 };
    }
    let k = k.min(n);
    let nf = n as f64;
    let p = k as f64 / nf;
    let z = z_for_confidence(confidence);
    let z2 = z * z;
    let denom = 1.0 + z2 / nf;
    let centre = (p + z2 / (2.0 * nf)) / denom;
    let half = z / denom * (p * (1.0 - p) / nf + z2 / (4.0 * nf * nf)).sqrt();
    // Mathematically lo ≤ p ≤ hi and both lie in [0, 1]; the min/max and
    // clamps only absorb rounding so the guarantees hold bit for bit.
    let lo = if k == 0 { 0.0 } else { (centre - half).clamp(0.0, 1.0).min(p) };
    let hi = if k == n { 1.0 } else { (centre + half).clamp(0.0, 1.0).max(p) };
    Interval { lo, hi }
}

/// The most a rate can plausibly be after `n` runs in which the event never
/// happened: the exact zero-event bound `1 − (1 − confidence)^(1/n)`.
///
/// This is what "it passed n times in a row" is worth. The folk "rule of
/// three" (3/n at 95%) is its approximation and slightly overstates it
/// (`n = 100`: 0.0295 rather than 0.03). With `n = 0` nothing is excluded and
/// the bound is 1. `confidence` is clamped as in [`z_for_confidence`].
pub fn rule_of_three(n: u64, confidence: f64) -> f64 {
    if n == 0 {
        return 1.0;
    }
    let c = clamp_confidence(confidence);
    // 1 − exp(ln(1 − c)/n), written to stay accurate when the bound is tiny.
    -((-c).ln_1p() / n as f64).exp_m1()
}

/// How many consecutive clean reruns are needed before tmr may say "if this
/// was a flake, its rate is below `rate`" at `confidence`: the smallest `n`
/// with `rule_of_three(n, confidence) <= rate` (0.05 at 95% → 59).
///
/// This is the budget to plan for before declaring a one-off failure
/// transient. A `rate` of 1 or more is satisfied by zero runs. A `rate` of 0
/// or less (or NaN) can never be established by finitely many runs and
/// yields `u64::MAX`, which callers should read as "unreachable", as they
/// should any count too large to fit.
pub fn runs_to_bound(rate: f64, confidence: f64) -> u64 {
    if rate.is_nan() || rate <= 0.0 {
        return u64::MAX;
    }
    if rate >= 1.0 {
        return 0;
    }
    let c = clamp_confidence(confidence);
    // Closed form: n ≥ ln(1 − c) / ln(1 − rate). The `as` cast saturates.
    let estimate = ((-c).ln_1p() / (-rate).ln_1p()).ceil();
    let mut n = if estimate.is_finite() && estimate >= 1.0 {
        estimate as u64
    } else if estimate.is_finite() {
        1
    } else {
        u64::MAX
    };
    // The closed form can be off by a step through rounding; settle on the
    // answer that agrees with `rule_of_three` exactly. Bounded, because past
    // 2^53 neighbouring counts are indistinguishable in f64 anyway.
    for _ in 0..64 {
        if rule_of_three(n, c) <= rate {
            break;
        }
        match n.checked_add(1) {
            Some(next) => n = next,
            None => return u64::MAX,
        }
    }
    for _ in 0..64 {
        if n > 0 && rule_of_three(n - 1, c) <= rate {
            n -= 1;
        } else {
            break;
        }
    }
    n
}

/// The number of ways to choose `k` of `n`, as used in the vote arithmetic.
///
/// Exact (the exact integer, correctly rounded to f64) whenever
/// `n · C(n, k)` fits in 128 bits, which covers every `n` up to 124;
/// beyond that, accurate to a few ulps. Finite up to about `n = 1029`
/// (C(1000, 500) ≈ 2.7e299) and `+inf` past that. `k > n` gives 0.
pub fn binomial(n: u64, k: u64) -> f64 {
    if k > n {
        return 0.0;
    }
    let k = k.min(n - k);
    let base = n - k;
    // Each partial product is itself C(n − k + i, i), an integer that never
    // exceeds the result, so nothing overflows early and every division is
    // exact. Integers while they fit, floating point from there on.
    let mut exact: u128 = 1;
    let mut i = 1;
    while i <= k {
        match exact.checked_mul(u128::from(base + i)) {
            Some(product) => exact = product / u128::from(i),
            None => break,
        }
        i += 1;
    }
    let mut acc = exact as f64;
    while i <= k {
        acc = acc * (base + i) as f64 / i as f64;
        i += 1;
    }
    acc
}

/// How likely a strict-majority vote of `n` replicas is to be wrong, if each
/// replica independently fails with probability `p`: the chance that more
/// than half of them fail, `Σ_{k=⌊n/2⌋+1}^{n} C(n,k) p^k (1−p)^(n−k)`.
///
/// This is what redundancy buys: three replicas turn a 1% failure into
/// 0.0298% (`3p² − 2p³`), five into about 0.001%. It is a best case. The
/// independence assumption is exactly what a shared bug, a shared machine or
/// a shared input breaks, and correlated failures are not reduced by voting
/// at all, so read the result as a floor on the real wrong-vote rate.
///
/// With an even `n`, a tie is "no majority", not a wrong answer, and is not
/// counted; nor is anything counted for `n = 0`, which returns 0. `n = 1` is
/// just `p`. `p` is clamped into `[0, 1]`; NaN gives NaN. Cost is O(n).
pub fn majority_failure_probability(n: u64, p: f64) -> f64 {
    if p.is_nan() {
        return f64::NAN;
    }
    let p = p.clamp(0.0, 1.0);
    let first = n / 2 + 1;
    if first > n {
        return 0.0;
    }
    if p == 0.0 {
        return 0.0;
    }
    if p == 1.0 {
        return 1.0;
    }
    // Sum in log space so that large n neither overflows C(n, k) nor
    // underflows p^k before the two meet.
    let ln_p = p.ln();
    let ln_q = (-p).ln_1p();
    let mut ln_choose = ln_binomial(n, first);
    let mut sum = 0.0;
    let mut k = first;
    loop {
        sum += (ln_choose + k as f64 * ln_p + (n - k) as f64 * ln_q).exp();
        if k == n {
            break;
        }
        ln_choose += ((n - k) as f64 / (k + 1) as f64).ln();
        k += 1;
    }
    sum.min(1.0)
}

/// ln C(n, k) for `k ≤ n`, without forming C(n, k) itself.
fn ln_binomial(n: u64, k: u64) -> f64 {
    let k = k.min(n - k);
    let base = (n - k) as f64;
    (1..=k).map(|i| ((base + i as f64) / i as f64).ln()).sum()
}

/// How likely a flake that strikes each run with probability `p` is to show
/// itself at least once in `runs` reruns: `1 − (1 − p)^runs`.
///
/// This is the power of a rerun budget, the other face of
/// [`runs_to_bound`]: 59 reruns catch a 5% flake 95% of the time, so a clean
/// 59 is evidence against it, while a clean 10 (40% power) says little.
/// `p` is clamped into `[0, 1]`; NaN gives NaN. Zero runs detect nothing.
pub fn detection_probability(p: f64, runs: u64) -> f64 {
    if p.is_nan() {
        return f64::NAN;
    }
    let p = p.clamp(0.0, 1.0);
    if runs == 0 || p == 0.0 {
        return 0.0;
    }
    if p == 1.0 {
        return 1.0;
    }
    // 1 − exp(runs·ln(1 − p)), accurate for tiny p as well.
    -(runs as f64 * (-p).ln_1p()).exp_m1()
}

/// The expected cost, in reruns, of chasing an odd outcome with the policy
/// "rerun until it shows up again, giving up after `cap`" when it recurs with
/// probability `p` per run: `Σ_{i=1}^{cap} (1 − p)^(i−1) = (1 − (1 − p)^cap)/p`.
///
/// Use it to price the rerun policy: a 20% flake is confirmed after about 5
/// reruns on average, a 5% one costs about 19 of a 60-run cap, and a
/// one-off glitch (`p = 0`) always burns the whole `cap`, which is what
/// classifying something as transient costs. The result lies in
/// `[min(1, cap), cap]`. `p` is clamped into `[0, 1]`; NaN gives NaN.
pub fn expected_runs_to_detect(p: f64, cap: u64) -> f64 {
    if p.is_nan() {
        return f64::NAN;
    }
    let p = p.clamp(0.0, 1.0);
    let capf = cap as f64;
    if cap == 0 {
        return 0.0;
    }
    if p == 0.0 {
        return capf;
    }
    (detection_probability(p, cap) / p).clamp(1.0, capf)
}

/// The middle value, for summaries such as replica wall times where one
/// replica stalled by the scheduler should not drag the headline number the
/// way it drags a mean. Even lengths average the two middle values; an empty
/// slice has no median.
///
/// `xs` is reordered in place (a linear-time selection, not a full sort), and
/// its final order is unspecified. Values are ordered by `f64::total_cmp`,
/// so NaNs sort to the ends (by sign) instead of breaking the ordering; the
/// result is NaN only if a NaN sits in the middle.
pub fn median(xs: &mut [f64]) -> Option<f64> {
    if xs.is_empty() {
        return None;
    }
    let len = xs.len();
    let mid = len / 2;
    let (left, upper, _) = xs.select_nth_unstable_by(mid, f64::total_cmp);
    let upper = *upper;
    if len % 2 == 1 {
        return Some(upper);
    }
    // Even length: the lower middle is the largest of the left part.
    let lower = left.iter().copied().max_by(f64::total_cmp)?;
    let sum = lower + upper;
    Some(if sum.is_finite() {
        sum / 2.0
    } else {
        // Avoid overflowing when both middles are near ±f64::MAX.
        lower / 2.0 + upper / 2.0
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn close(actual: f64, expected: f64, tol: f64) {
        assert!((actual - expected).abs() <= tol, "expected {expected} ± {tol}, got {actual}");
    }

    /// Reference erf by its Maclaurin series, test-only: fine to about 1e-13
    /// for |x| ≤ 2.1, which covers the confidences checked against it.
    fn erf_series(x: f64) -> f64 {
        let x2 = x * x;
        let mut term = x;
        let mut sum = x;
        for n in 1..200 {
            term *= -x2 / n as f64;
            sum += term / (2 * n + 1) as f64;
        }
        sum * std::f64::consts::FRAC_2_SQRT_PI
    }

    #[test]
    fn z_matches_standard_table_values() {
        // Standard normal table: Φ(1.959964) = 0.975, Φ(2.575829) = 0.995,
        // Φ(1.644854) = 0.95, the two-sided 95 / 99 / 90 % points.
        close(z_for_confidence(0.95), 1.959_963_984_540_054, 1e-9);
        close(z_for_confidence(0.99), 2.575_829_303_548_901, 1e-9);
        close(z_for_confidence(0.90), 1.644_853_626_951_472, 1e-9);
        // Φ(0.674490) = 0.75: the quartile, central branch of AS241.
        close(z_for_confidence(0.5), 0.674_489_750_196_082, 1e-9);
        // Φ(3.290527) = 0.9995; Φ(6.109410) = 1 − 5e-10 (far-tail branch).
        close(z_for_confidence(0.999), 3.290_526_731_491_926, 1e-9);
        // Far tails, at confidences exact in binary so the tail is exact:
        // 1 − 2⁻³⁰ → tail 2⁻³¹, Φ⁻¹(1 − 2⁻³¹) = 6.120756;
        // 1 − 2⁻⁴⁹ → tail 2⁻⁵⁰, Φ⁻¹(1 − 2⁻⁵⁰) = 7.956038.
        close(z_for_confidence(1.0 - 0.5f64.powi(30)), 6.120_756_285_971_94, 1e-9);
        close(z_for_confidence(1.0 - 0.5f64.powi(49)), 7.956_038_125_481_531, 1e-9);
    }

    #[test]
    fn z_clamps_out_of_range_confidence() {
        // Ceiling 1 − 1e-15: tail ≈ 5e-16, Φ⁻¹(1 − 5e-16) ≈ 8.03, between
        // the 2⁻⁵⁰ (7.956) and 2⁻⁵² (8.126) tail points.
        let top = z_for_confidence(1.0 - 1e-15);
        assert!(top > 7.956 && top < 8.126, "{top}");
        assert_eq!(z_for_confidence(1.0), top);
        assert_eq!(z_for_confidence(7.0), top);
        assert_eq!(z_for_confidence(f64::INFINITY), top);
        assert_eq!(z_for_confidence(f64::NAN), top);
        // Floor 1e-15: z ≈ 1e-15 · sqrt(2π)/2 ≈ 1.25e-15, positive but ~0.
        let bottom = z_for_confidence(0.0);
        assert!(bottom > 0.0 && bottom < 1e-14);
        assert_eq!(z_for_confidence(-3.0), bottom);
        assert_eq!(z_for_confidence(f64::NEG_INFINITY), bottom);
    }

    #[test]
    fn wilson_hand_computed() {
        // k=5, n=20, z=1.959964, z²=3.841459: p̂=0.25, denom=1+z²/n=1.192073,
        // centre=(0.25+0.096036)/1.192073=0.290280,
        // half=z/denom·sqrt(0.25·0.75/20+z²/1600)=1.644183·0.108517=0.178421
        // → [0.111859, 0.468701], i.e. [0.1119, 0.4687].
        let iv = wilson(5, 20, 0.95);
        close(iv.lo, 0.1119, 5e-5);
        close(iv.hi, 0.4687, 5e-5);
        // k=0, n=10: denom=1.384146, centre=0.192073/1.384146=0.138767,
        // half=z/denom·sqrt(z²/400)=1.415988·0.097998=0.138766 → lo=0,
        // hi=0.277533.
        let iv = wilson(0, 10, 0.95);
        assert_eq!(iv.lo, 0.0);
        close(iv.hi, 0.2775, 5e-5);
        // k=n=10 mirrors it: [1 − 0.2775, 1].
        let iv = wilson(10, 10, 0.95);
        close(iv.lo, 1.0 - 0.2775, 5e-5);
        assert_eq!(iv.hi, 1.0);
    }

    #[test]
    fn wilson_edge_cases() {
        // No runs: nothing known.
        assert_eq!(wilson(0, 0, 0.95), Interval { lo: 0.0, hi: 1.0 });
        assert_eq!(wilson(3, 0, 0.95), Interval { lo: 0.0, hi: 1.0 });
        // k > n is read as k = n.
        assert_eq!(wilson(12, 10, 0.95), wilson(10, 10, 0.95));
        // A NaN confidence is read as the (widest) ceiling.
        assert_eq!(wilson(5, 20, f64::NAN), wilson(5, 20, 1.0));
    }

    #[test]
    fn rule_of_three_hand_computed() {
        // 1 − 0.05^(1/100) = 1 − e^(ln 0.05/100) = 1 − e^(−0.0299573)
        // = 0.0295130, a little under the folk 3/100.
        close(rule_of_three(100, 0.95), 0.029_513, 1e-6);
        // n=1: 1 − 0.05 = 0.95.
        close(rule_of_three(1, 0.95), 0.95, 1e-12);
        // n=0 proves nothing.
        assert_eq!(rule_of_three(0, 0.95), 1.0);
        // 99%, n=10: 1 − 0.01^(0.1) = 1 − 0.630957 = 0.369043.
        close(rule_of_three(10, 0.99), 0.369_043, 1e-6);
    }

    #[test]
    fn runs_to_bound_hand_computed() {
        // ln(0.05)/ln(0.95) = −2.995732/−0.051293 = 58.40 → 59.
        assert_eq!(runs_to_bound(0.05, 0.95), 59);
        // ln(0.05)/ln(0.99) = −2.995732/−0.010050 = 298.07 → 299.
        assert_eq!(runs_to_bound(0.01, 0.95), 299);
        // ln(0.01)/ln(0.9) = −4.605170/−0.105361 = 43.71 → 44.
        assert_eq!(runs_to_bound(0.1, 0.99), 44);
        // rate ≥ 1 needs nothing; rate ≤ 0 is unreachable.
        assert_eq!(runs_to_bound(1.0, 0.95), 0);
        assert_eq!(runs_to_bound(0.0, 0.95), u64::MAX);
        assert_eq!(runs_to_bound(-0.5, 0.95), u64::MAX);
        assert_eq!(runs_to_bound(f64::NAN, 0.95), u64::MAX);
        // ln(0.05)/ln(1 − 1e-300) overflows every integer type.
        assert_eq!(runs_to_bound(1e-300, 0.95), u64::MAX);
    }

    #[test]
    fn binomial_hand_computed() {
        // 5!/(2!·3!) = 10; 10!/(3!·7!) = 120; C(52,5) = 2 598 960.
        assert_eq!(binomial(5, 2), 10.0);
        assert_eq!(binomial(10, 3), 120.0);
        assert_eq!(binomial(52, 5), 2_598_960.0);
        assert_eq!(binomial(7, 0), 1.0);
        assert_eq!(binomial(7, 7), 1.0);
        assert_eq!(binomial(0, 0), 1.0);
        assert_eq!(binomial(3, 4), 0.0);
        // C(1000, 500) = 2.7029e299: large but finite.
        let big = binomial(1000, 500);
        assert!(big.is_finite());
        close(big / 2.702_882_409_454_366e299, 1.0, 1e-12);
        // C(100, 50) = 100891344545564193334812497256 ≈ 1.008913445455642e29,
        // computed in integers, so correctly rounded.
        assert_eq!(binomial(100, 50), 1.008_913_445_455_642e29);
        assert_eq!(binomial(2000, 1000), f64::INFINITY);
    }

    #[test]
    fn majority_failure_hand_computed() {
        // n=3: C(3,2)p²(1−p) + p³ = 3p² − 2p³ = 3e-4 − 2e-6 = 2.98e-4.
        close(majority_failure_probability(3, 0.01), 2.98e-4, 1e-15);
        // n=5: 10p³q² + 5p⁴q + p⁵ = 9.801e-6 + 4.95e-8 + 1e-10 = 9.8506e-6.
        close(majority_failure_probability(5, 0.01), 9.8506e-6, 1e-15);
        // n=1: the single replica is the vote.
        close(majority_failure_probability(1, 0.3), 0.3, 1e-15);
        close(majority_failure_probability(1, 0.01), 0.01, 1e-15);
        // n=2, majority needs both: p² = 0.09 (the 2pq tie is not "wrong").
        close(majority_failure_probability(2, 0.3), 0.09, 1e-15);
        // p = 1/2 with odd n is a coin toss by symmetry.
        close(majority_failure_probability(7, 0.5), 0.5, 1e-12);
        assert_eq!(majority_failure_probability(0, 0.3), 0.0);
        assert_eq!(majority_failure_probability(3, 0.0), 0.0);
        assert_eq!(majority_failure_probability(3, 1.0), 1.0);
        assert_eq!(majority_failure_probability(3, -1.0), 0.0);
        assert!(majority_failure_probability(3, f64::NAN).is_nan());
        // Large n stays finite (C(2001, k) alone would overflow).
        let big = majority_failure_probability(2001, 0.4);
        assert!(big.is_finite() && (0.0..1e-10).contains(&big));
    }

    #[test]
    fn detection_hand_computed() {
        // 1 − 0.95^59 = 1 − e^(59·−0.051293) = 1 − 0.048495 = 0.951505.
        close(detection_probability(0.05, 59), 0.951_505, 1e-6);
        // 1 − 0.95^10 = 1 − 0.598737 = 0.401263.
        close(detection_probability(0.05, 10), 0.401_263, 1e-6);
        assert_eq!(detection_probability(0.05, 0), 0.0);
        assert_eq!(detection_probability(0.0, 100), 0.0);
        assert_eq!(detection_probability(1.0, 1), 1.0);
        assert_eq!(detection_probability(1.0, 0), 0.0);
    }

    #[test]
    fn expected_runs_hand_computed() {
        // (1 − 0.8^60)/0.2 = (1 − 1.53e-6)/0.2 = 4.99999.
        close(expected_runs_to_detect(0.2, 60), 5.0, 1e-4);
        // (1 − 0.95^60)/0.05 = (1 − 0.046069)/0.05 = 19.0786.
        close(expected_runs_to_detect(0.05, 60), 19.0786, 1e-4);
        // p = 0: never recurs, the whole cap is spent.
        assert_eq!(expected_runs_to_detect(0.0, 60), 60.0);
        // p = 1: recurs on the first rerun.
        assert_eq!(expected_runs_to_detect(1.0, 60), 1.0);
        assert_eq!(expected_runs_to_detect(0.3, 0), 0.0);
        // Tiny p behaves like p = 0 rather than dividing 0 by 0.
        close(expected_runs_to_detect(1e-300, 60), 60.0, 1e-9);
    }

    #[test]
    fn median_cases() {
        assert_eq!(median(&mut []), None);
        assert_eq!(median(&mut [4.0]), Some(4.0));
        // sorted 1 2 3 → 2.
        assert_eq!(median(&mut [3.0, 1.0, 2.0]), Some(2.0));
        // sorted 1 2 3 10 → (2 + 3)/2 = 2.5.
        assert_eq!(median(&mut [10.0, 2.0, 1.0, 3.0]), Some(2.5));
        // Both middles at f64::MAX: no overflow to infinity.
        assert_eq!(median(&mut [f64::MAX, f64::MAX]), Some(f64::MAX));
        // A positive NaN sorts last and does not poison an odd-length median.
        assert_eq!(median(&mut [f64::NAN, 1.0, 2.0]), Some(2.0));
    }

    fn width(iv: Interval) -> f64 {
        iv.hi - iv.lo
    }

    proptest! {
        #[test]
        fn z_inverts_the_normal_cdf(c in 0.001f64..0.9965) {
            // P(|Z| ≤ z) = erf(z/√2).
            let z = z_for_confidence(c);
            let back = erf_series(z / std::f64::consts::SQRT_2);
            prop_assert!((back - c).abs() < 1e-10, "c={c} z={z} back={back}");
        }

        #[test]
        fn z_increases_with_confidence(a in 0.0f64..1.0, b in 0.0f64..1.0) {
            let (lo, hi) = if a <= b { (a, b) } else { (b, a) };
            prop_assert!(z_for_confidence(lo) <= z_for_confidence(hi));
        }

        #[test]
        fn wilson_contains_estimate_within_unit_range(
            n in 1u64..5000,
            frac in 0.0f64..=1.0,
            c in 0.5f64..0.9999,
        ) {
            let k = (frac * n as f64).round() as u64;
            let iv = wilson(k, n, c);
            let p = k as f64 / n as f64;
            prop_assert!(0.0 <= iv.lo && iv.lo <= p && p <= iv.hi && iv.hi <= 1.0,
                "k={k} n={n} c={c} {iv:?}");
            prop_assert_eq!(iv.lo == 0.0, k == 0);
            prop_assert_eq!(iv.hi == 1.0, k == n);
        }

        #[test]
        fn wilson_narrows_as_n_grows(
            n in 1u64..500,
            frac in 0.0f64..=1.0,
            m in 2u64..20,
            c in 0.5f64..0.9999,
        ) {
            let k = (frac * n as f64).round() as u64;
            let small = wilson(k, n, c);
            let large = wilson(k * m, n * m, c);
            prop_assert!(width(large) < width(small),
                "k={k} n={n} m={m}: {small:?} vs {large:?}");
        }

        #[test]
        fn majority_vote_beats_a_single_replica(half in 1u64..40, p in 0.0f64..0.5) {
            let n = 2 * half + 1;
            let f = majority_failure_probability(n, p);
            prop_assert!(f <= p * (1.0 + 1e-12), "n={n} p={p} f={f}");
        }

        #[test]
        fn majority_failure_is_monotone_in_p(
            n in 1u64..80,
            a in 0.0f64..=1.0,
            b in 0.0f64..=1.0,
        ) {
            let (lo, hi) = if a <= b { (a, b) } else { (b, a) };
            let (f_lo, f_hi) = (
                majority_failure_probability(n, lo),
                majority_failure_probability(n, hi),
            );
            prop_assert!(f_lo <= f_hi * (1.0 + 1e-12) + 1e-300,
                "n={n}: f({lo})={f_lo} > f({hi})={f_hi}");
        }

        #[test]
        fn majority_failure_matches_direct_sum(n in 1u64..40, p in 0.0f64..=1.0) {
            let direct: f64 = (n / 2 + 1..=n)
                .map(|k| binomial(n, k) * p.powi(k as i32) * (1.0 - p).powi((n - k) as i32))
                .sum();
            let f = majority_failure_probability(n, p);
            prop_assert!((f - direct).abs() <= 1e-12 * direct.max(1e-300),
                "n={n} p={p}: {f} vs {direct}");
        }

        #[test]
        fn rule_of_three_decreases_in_n(n in 0u64..1_000_000, c in 0.5f64..0.9999) {
            prop_assert!(rule_of_three(n + 1, c) < rule_of_three(n, c));
        }

        #[test]
        fn runs_to_bound_is_the_smallest_sufficient_n(
            rate in 1e-4f64..0.999,
            c in 0.5f64..0.9999,
        ) {
            let n = runs_to_bound(rate, c);
            prop_assert!(n >= 1);
            prop_assert!(rule_of_three(n, c) <= rate);
            prop_assert!(rule_of_three(n - 1, c) > rate);
        }

        // Up to n = 56 every C(n, k) is below 2^53, so f64 holds it exactly
        // and Pascal's rule must hold with no rounding at all.
        #[test]
        fn binomial_obeys_pascal_and_symmetry(n in 1u64..=56, k in 0u64..=56) {
            prop_assume!(k <= n);
            prop_assert_eq!(binomial(n, k), binomial(n, n - k));
            if k >= 1 {
                prop_assert_eq!(binomial(n, k), binomial(n - 1, k - 1) + binomial(n - 1, k));
            }
        }

        #[test]
        fn expected_runs_matches_direct_sum(p in 0.0f64..=1.0, cap in 0u64..300) {
            let direct: f64 = (0..cap).map(|i| (1.0 - p).powi(i as i32)).sum();
            let e = expected_runs_to_detect(p, cap);
            prop_assert!((e - direct).abs() <= 1e-9 * direct.max(1.0),
                "p={p} cap={cap}: {e} vs {direct}");
            prop_assert!(e <= cap as f64);
        }

        #[test]
        fn median_matches_sorting(mut xs in prop::collection::vec(-1e6f64..1e6, 1..50)) {
            let mut sorted = xs.clone();
            sorted.sort_by(f64::total_cmp);
            let len = sorted.len();
            let expected = if len % 2 == 1 {
                sorted[len / 2]
            } else {
                (sorted[len / 2 - 1] + sorted[len / 2]) / 2.0
            };
            prop_assert_eq!(median(&mut xs), Some(expected));
        }
    }
}
