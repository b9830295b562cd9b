// DDPM ancestral sampling (Ho et al. 2020, Algorithm 2) on the (respaced) chain:
//   x0^    = (x_t - sqrt(1 - abar) eps) / sqrt(abar) or the predictor's x0   [clipped/thresholded: X0Estimate.swift]
//   x_prev = coef1'_i x0^ + coef2'_i x_t + sigma_i z           (eq. 7)
//   sigma_i^2 = beta'_i (beta), beta~'_i (posterior), or exp(frac log beta'_i + (1 - frac) log beta~'_i)
//               with frac = (v + 1) / 2 (learned; Nichol & Dhariwal 2021, eq. 15)
// The last step (i = 0) adds no noise and returns x0^ (coef1'_0 = 1, coef2'_0 = 0).
import Foundation

public struct DDPMStep: ReverseSolver {
    public let plan: SamplingPlan
    public let variance: VarianceKind
    public let rule: X0Rule
    public init(plan: SamplingPlan, variance: VarianceKind = .posterior, rule: X0Rule = .none) {
        self.plan = plan; self.variance = variance; self.rule = rule
    }
    public var needsVariance: Bool { variance == .learned }

    public mutating func step(level i: Int, x: inout [Float], prediction p: Prediction, sampleSize d: Int,
                              x0: inout [Float], noise: inout [RandomStream],
                              evaluate: (_ x: [Float], _ level: Int) throws -> Prediction) throws {
        let chain = plan.chain
        let abar = chain.alphaBar[i]
        let fixedLogVar: Double? = {
            switch variance {
            case .beta: return log(chain.beta[i])
            case .posterior: return i > 0 ? log(chain.posteriorVariance[i]) : -.infinity
            case .learned: return nil
            }
        }()
        guard fixedLogVar != nil || p.v != nil else { throw DDPMError("the learned variance needs 'v' from the predictor at t = \(plan.timesteps[i])") }
        let est = try X0Estimate.estimate(x: x, prediction: p, alphaBar: abar, sampleSize: d, rule: rule, t: plan.timesteps[i])
        for s in 0..<noise.count {
            for j in s * d ..< (s + 1) * d {
                let xt = Double(x[j])
                let xs = est.x0[j]
                x0[j] = Float(xs)
                let z = i > 0 ? Double(noise[s].nextNormal()) : 0
                let mean = Posterior.mean(x0: xs, xt: xt, t: i, schedule: chain)
                if i == 0 { x[j] = Float(mean); continue }
                let logVar = fixedLogVar ?? Posterior.learnedLogVariance(v: Double(p.v![j]), t: i, schedule: chain)
                x[j] = Float(mean + exp(0.5 * logVar) * z)
            }
        }
    }
}
