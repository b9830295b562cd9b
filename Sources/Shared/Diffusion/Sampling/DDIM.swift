// DDIM (Song, Meng & Ermon 2021) on the (respaced) chain:
//   x0^    = (x_t - sqrt(1 - abar) eps) / sqrt(abar) or the predictor's x0   [clipped/thresholded, eps
//            recomputed from it: X0Estimate.swift]
//   x_prev = sqrt(abar_prev) x0^ + sqrt(1 - abar_prev - sigma^2) eps + sigma z       (eq. 12)
//   sigma  = eta sqrt((1 - abar_prev) / (1 - abar)) sqrt(1 - abar / abar_prev)          (eq. 16)
// z is drawn only when sigma > 0 and not at the last step (which returns x0^: abar_prev = 1).
import Foundation

public enum DDIM {
    /// sigma_t(eta), eq. 16.
    @inline(__always)
    public static func sigma(eta: Double, alphaBar abar: Double, alphaBarPrev prev: Double) -> Double {
        guard eta != 0, abar < 1 else { return 0 }
        return eta * ((1 - prev) / (1 - abar)).squareRoot() * max(0, 1 - abar / prev).squareRoot()
    }

    /// x_prev, eq. 12.
    @inline(__always)
    public static func step(x0: Double, eps: Double, alphaBarPrev prev: Double, sigma: Double, z: Double) -> Double {
        prev.squareRoot() * x0 + max(0, 1 - prev - sigma * sigma).squareRoot() * eps + sigma * z
    }
}

public struct DDIMStep: ReverseSolver {
    public let plan: SamplingPlan
    public let eta: Double
    public let rule: X0Rule
    public init(plan: SamplingPlan, eta: Double = 0, rule: X0Rule = .none) {
        self.plan = plan; self.eta = eta; self.rule = rule
    }
    public var needsVariance: Bool { false }

    public mutating func step(level i: Int, x: inout [Float], prediction p: Prediction, sampleSize d: Int,
                              x0: inout [Float], noise: inout [RandomStream],
                              evaluate: (_ x: [Float], _ level: Int) throws -> Prediction) throws {
        let (abar, abarPrev) = plan.alphaBars(i)
        let sigma = DDIM.sigma(eta: eta, alphaBar: abar, alphaBarPrev: abarPrev)
        let drawZ = i > 0 && sigma > 0
        let est = try X0Estimate.estimate(x: x, prediction: p, alphaBar: abar, sampleSize: d, rule: rule, t: plan.timesteps[i])
        for s in 0..<noise.count {
            for j in s * d ..< (s + 1) * d {
                let xs = est.x0[j], eps = est.eps[j]
                x0[j] = Float(xs)
                let z = drawZ ? Double(noise[s].nextNormal()) : 0
                x[j] = Float(DDIM.step(x0: xs, eps: eps, alphaBarPrev: abarPrev, sigma: sigma, z: z))
            }
        }
    }
}
