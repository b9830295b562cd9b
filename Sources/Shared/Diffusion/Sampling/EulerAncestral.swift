// Euler ancestral (Karras et al. 2022 / k-diffusion's sample_euler_ancestral with eta = 1; diffusers'
// EulerAncestralDiscreteScheduler), in VE coordinates X = x / a from sigma = sigma_i to sigma' = sigma_{i-1}:
//   sigma_up   = sqrt(sigma'^2 (sigma^2 - sigma'^2) / sigma^2) = sigma' sqrt(1 - r),  r = sigma'^2 / sigma^2
//   sigma_down = sqrt(sigma'^2 - sigma_up^2)                   = sigma' sqrt(r)
//   X' = X + (sigma_down - sigma) eps^ + sigma_up z = x0^ + sigma_down eps^ + sigma_up z
//   x' = a' X'
// With r = abar_i (1 - abar') / (abar' (1 - abar_i)) this is DDIM with eta = 1 (the DDPM posterior
// variance): a'^2 sigma_up^2 = (1 - abar')/(1 - abar_i) (1 - abar_i/abar'). Finite at abar_i = 0 (r = 0).
// The last step (sigma' = 0) returns x0^ and draws no z.
import Foundation

public struct EulerAncestralStep: ReverseSolver {
    public let plan: SamplingPlan
    public let rule: X0Rule
    public init(plan: SamplingPlan, rule: X0Rule = .none) { self.plan = plan; self.rule = rule }
    public var needsVariance: Bool { false }

    /// (sigma_up, sigma_down) from level i to i - 1.
    public func sigmas(level i: Int) -> (up: Double, down: Double) {
        guard i > 0 else { return (0, 0) }
        let abar = plan.alphaBar(level: i), prev = plan.alphaBar(level: i - 1)
        let sigmaPrev = plan.sigma(level: i - 1)
        let r = abar * (1 - prev) / (prev * (1 - abar))
        return (sigmaPrev * max(0, 1 - r).squareRoot(), sigmaPrev * r.squareRoot())
    }

    public mutating func step(level i: Int, x: inout [Float], prediction p: Prediction, sampleSize d: Int,
                              x0: inout [Float], noise: inout [RandomStream],
                              evaluate: (_ x: [Float], _ level: Int) throws -> Prediction) throws {
        let est = try X0Estimate.estimate(x: x, prediction: p, alphaBar: plan.alphaBar(level: i), sampleSize: d, rule: rule, t: plan.timesteps[i])
        let aPrev = plan.alphaSigma(level: i - 1).a
        let (up, down) = sigmas(level: i)
        for s in 0..<noise.count {
            for j in s * d ..< (s + 1) * d {
                x0[j] = Float(est.x0[j])
                let z = i > 0 ? Double(noise[s].nextNormal()) : 0
                x[j] = Float(aPrev * (est.x0[j] + down * est.eps[j] + up * z))
            }
        }
    }
}
