// The Bayes posterior q(x_{t-1} | x_t, x_0) and the x_0 <-> eps conversions,
// elementwise, in Double. `abar` etc. are the (possibly respaced) schedule's values.
import Foundation

public enum Posterior {
    /// x_0 from eps: x_t = sqrt(abar) x_0 + sqrt(1 - abar) eps  (Ho et al. eq. 4, solved for x_0).
    @inline(__always)
    public static func predictX0(xt: Double, eps: Double, alphaBar abar: Double) -> Double {
        (xt - (1 - abar).squareRoot() * eps) / abar.squareRoot()
    }

    /// eps from x_0 (the same identity solved for eps); used after clipping x_0.
    @inline(__always)
    public static func predictEps(xt: Double, x0: Double, alphaBar abar: Double) -> Double {
        (xt - abar.squareRoot() * x0) / (1 - abar).squareRoot()
    }

    /// mu~_t(x_t, x_0) = coef1 x_0 + coef2 x_t  (Ho et al. eq. 7).
    @inline(__always)
    public static func mean(x0: Double, xt: Double, t: Int, schedule s: Schedule) -> Double {
        s.posteriorMeanCoef1[t] * x0 + s.posteriorMeanCoef2[t] * xt
    }

    /// log Sigma for a learned variance: frac = (v + 1) / 2,
    /// log Sigma = frac log beta_t + (1 - frac) log beta~_t (clipped)  (Nichol & Dhariwal eq. 15).
    @inline(__always)
    public static func learnedLogVariance(v: Double, t: Int, schedule s: Schedule) -> Double {
        let frac = (v + 1) / 2
        return frac * log(s.beta[t]) + (1 - frac) * s.posteriorLogVarianceClipped[t]
    }

    /// The score of q_t: grad log q_t(x_t) = -eps / sqrt(1 - abar_t)  (Song et al. 2021, eq. in sec. 3.4 / Ho et al. sec. 3.2).
    @inline(__always)
    public static func score(eps: Double, alphaBar abar: Double) -> Double {
        -eps / (1 - abar).squareRoot()
    }
}
