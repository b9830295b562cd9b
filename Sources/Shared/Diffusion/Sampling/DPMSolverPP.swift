// DPM-Solver++(2M) (Lu et al. 2022, "DPM-Solver++: Fast Solver for Guided Sampling of Diffusion
// Probabilistic Models", Algorithm 2) and its SDE variant (ibid. sec. 5 / diffusers'
// DPMSolverMultistepScheduler, algorithm_type "sde-dpmsolver++", solver_type "midpoint"), in data
// prediction D = x0^ with lambda = log(a / s). From level i (a, s, lambda) to i - 1 (a', s', lambda'):
//   h = lambda' - lambda,  e^{-h} = a s' / (s a')          (0 at the last step, where s' = 0)
//   r = h_prev / h,  D = (1 + 1/(2r)) x0^_i - (1/(2r)) x0^_{i+1}    (second order, Alg. 2 line 5)
//   ODE: x' = (s'/s) x + a' (1 - e^{-h}) D                                     (Alg. 2 line 6)
//   SDE: x' = (s'/s) e^{-h} x + a' (1 - e^{-2h}) D + s' sqrt(1 - e^{-2h}) z
// D = x0^_i (first order, = DDIM) on the first step of a run (no history) and on the last step
// (diffusers' lower_order_final with final sigma 0; there x' = x0^). x0^_{i+1} and lambda_{i+1}
// are the solver's state from the previous step. At abar_i = 0 (x_0-predictor) s = 1, e^{-h} = 0.
import Foundation

public struct DPMSolverPP2M: ReverseSolver {
    public let plan: SamplingPlan
    public let rule: X0Rule
    /// The SDE variant (noise z from the per-sample streams).
    public let stochastic: Bool
    private var previousX0: [Double]? = nil
    private var previousLambda = -Double.infinity

    public init(plan: SamplingPlan, rule: X0Rule = .none, stochastic: Bool = false) {
        self.plan = plan; self.rule = rule; self.stochastic = stochastic
    }
    public var needsVariance: Bool { false }

    /// lambda = log(a / s) of level i (+inf below level 0, -inf at abar = 0).
    public func lambda(level i: Int) -> Double {
        let (a, s) = plan.alphaSigma(level: i)
        return log(a) - log(s)
    }

    public mutating func step(level i: Int, x: inout [Float], prediction p: Prediction, sampleSize d: Int,
                              x0: inout [Float], noise: inout [RandomStream],
                              evaluate: (_ x: [Float], _ level: Int) throws -> Prediction) throws {
        if i == plan.stepCount - 1 { previousX0 = nil; previousLambda = -.infinity }   // a new run
        let est = try X0Estimate.estimate(x: x, prediction: p, alphaBar: plan.alphaBar(level: i), sampleSize: d, rule: rule, t: plan.timesteps[i])
        let (a, s) = plan.alphaSigma(level: i)
        let (aPrev, sPrev) = plan.alphaSigma(level: i - 1)
        let lam = lambda(level: i)
        let ratio = sPrev / s                                  // s'/s
        let expMinusH = aPrev > 0 ? a * sPrev / (s * aPrev) : 0   // e^{-h}
        // Second order only between the first and the last step, with a finite previous step.
        var c0 = 1.0, c1 = 0.0
        if i > 0, let prev = previousX0, prev.count == x.count, previousLambda.isFinite {
            let h = lambda(level: i - 1) - lam, hPrev = lam - previousLambda
            let r = hPrev / h
            c0 = 1 + 1 / (2 * r); c1 = -1 / (2 * r)
        }
        let prev = previousX0
        for s in 0..<noise.count {
            for j in s * d ..< (s + 1) * d {
                let dj = c1 == 0 ? est.x0[j] : c0 * est.x0[j] + c1 * prev![j]
                x0[j] = Float(est.x0[j])
                if i == 0 { x[j] = Float(est.x0[j]); continue }
                let xs = Double(x[j])
                if stochastic {
                    let e2 = expMinusH * expMinusH
                    let z = Double(noise[s].nextNormal())
                    x[j] = Float(ratio * expMinusH * xs + aPrev * (1 - e2) * dj + sPrev * max(0, 1 - e2).squareRoot() * z)
                } else {
                    x[j] = Float(ratio * xs + aPrev * (1 - expMinusH) * dj)
                }
            }
        }
        previousX0 = est.x0
        previousLambda = lam
    }
}
