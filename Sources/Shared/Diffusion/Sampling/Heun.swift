// Heun's second-order method on the probability-flow ODE in sigma (Karras et al. 2022, Algorithm 1
// without churn; diffusers' HeunDiscreteScheduler), in VE coordinates X = x / a, dX/dsigma = eps^:
//   d_1 = eps^(x, sigma_i),  X_e = x0^ + sigma' d_1                     (the Euler step, Euler.swift)
//   d_2 = eps^(a' X_e, sigma')                                          (a second prediction at level i-1)
//   X'  = X + (sigma' - sigma_i) (d_1 + d_2) / 2,   x' = a' X'           (trapezoid: eq. in Alg. 1, l. 7-8)
// The last step (sigma' = 0) is the Euler step, which returns x0^ (Alg. 1, line 6). A step from
// abar_i = 0 (sigma_i = inf, kept only for an x_0-predictor) is also the Euler step: the trapezoid
// over an infinite sigma interval is undefined there. K levels cost 2K - 1 predictions.
import Foundation

public struct HeunStep: ReverseSolver {
    public let plan: SamplingPlan
    public let rule: X0Rule
    public init(plan: SamplingPlan, rule: X0Rule = .none) { self.plan = plan; self.rule = rule }
    public var needsVariance: Bool { false }

    public mutating func step(level i: Int, x: inout [Float], prediction p: Prediction, sampleSize d: Int,
                              x0: inout [Float], noise: inout [RandomStream],
                              evaluate: (_ x: [Float], _ level: Int) throws -> Prediction) throws {
        let e1 = try X0Estimate.estimate(x: x, prediction: p, alphaBar: plan.alphaBar(level: i), sampleSize: d, rule: rule, t: plan.timesteps[i])
        let (a, _) = plan.alphaSigma(level: i)
        let aPrev = plan.alphaSigma(level: i - 1).a
        let sigma = plan.sigma(level: i), sigmaPrev = plan.sigma(level: i - 1)
        for j in 0..<x.count { x0[j] = Float(e1.x0[j]) }
        var euler = [Float](repeating: 0, count: x.count)
        for j in 0..<x.count { euler[j] = Float(EulerStep.update(x0: e1.x0[j], eps: e1.eps[j], alpha: aPrev, sigma: sigmaPrev)) }
        guard i > 0, sigma.isFinite else { x = euler; return }
        let p2 = try evaluate(euler, i - 1)
        let e2 = try X0Estimate.estimate(x: euler, prediction: p2, alphaBar: plan.alphaBar(level: i - 1), sampleSize: d, rule: rule, t: plan.timesteps[i - 1])
        let dt = sigmaPrev - sigma
        for j in 0..<x.count {
            let big = Double(x[j]) / a + dt * 0.5 * (e1.eps[j] + e2.eps[j])
            x[j] = Float(aPrev * big)
        }
    }
}
