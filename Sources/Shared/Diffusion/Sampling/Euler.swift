// Euler on the probability-flow ODE in sigma (Karras et al. 2022, "Elucidating the Design Space
// of Diffusion-Based Generative Models", Algorithm 1 without churn; diffusers' EulerDiscreteScheduler).
// In VE coordinates X = x / a = x sqrt(1 + sigma^2) the ODE is dX/dsigma = (X - x0^(X)) / sigma = eps^,
// and one step from sigma_i to sigma_{i-1} is
//   X' = X + (sigma_{i-1} - sigma_i) eps^ = x0^ + sigma_{i-1} eps^        (X = x0^ + sigma_i eps^, eq. 4)
//   x' = X' / sqrt(1 + sigma_{i-1}^2) = a_{i-1} x0^ + s_{i-1} eps^
// which is DDIM with eta = 0 (Song et al. 2021, sec. 4.3; Karras et al. sec. 3); the second form is
// finite at abar_i = 0 (sigma_i = inf). The last step (sigma_{-1} = 0) returns x0^.
import Foundation

public struct EulerStep: ReverseSolver {
    public let plan: SamplingPlan
    public let rule: X0Rule
    public init(plan: SamplingPlan, rule: X0Rule = .none) { self.plan = plan; self.rule = rule }
    public var needsVariance: Bool { false }

    /// X' = x0^ + sigma' eps^, back to x' = X' / sqrt(1 + sigma'^2) (written as a' X').
    @inline(__always)
    public static func update(x0: Double, eps: Double, alpha aPrev: Double, sigma sigmaPrev: Double) -> Double {
        aPrev * (x0 + sigmaPrev * eps)
    }

    public mutating func step(level i: Int, x: inout [Float], prediction p: Prediction, sampleSize d: Int,
                              x0: inout [Float], noise: inout [RandomStream],
                              evaluate: (_ x: [Float], _ level: Int) throws -> Prediction) throws {
        let est = try X0Estimate.estimate(x: x, prediction: p, alphaBar: plan.alphaBar(level: i), sampleSize: d, rule: rule, t: plan.timesteps[i])
        let aPrev = plan.alphaSigma(level: i - 1).a, sigmaPrev = plan.sigma(level: i - 1)
        for j in 0..<x.count {
            x0[j] = Float(est.x0[j])
            x[j] = Float(EulerStep.update(x0: est.x0[j], eps: est.eps[j], alpha: aPrev, sigma: sigmaPrev))
        }
    }
}
