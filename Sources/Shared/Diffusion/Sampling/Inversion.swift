// DDIM inversion (Song et al. 2021, sec. 4.3; Dhariwal & Nichol 2021, App. F): the deterministic
// DDIM step (eq. 12, eta = 0) run upwards on a plan's levels, encoding x_0 into the x_t from which
// DDIM on the SAME plan decodes it again. From x at level i-1 (x_0 below level 0) to level i, with
// eps and x0^ predicted at level i-1 (x_0 is evaluated at level 0's timestep):
//   x0^ = (x_{i-1} - sqrt(1 - abar_{i-1}) eps) / sqrt(abar_{i-1})    (= x_0 itself below level 0)
//   x_i = sqrt(abar_i) x0^ + sqrt(1 - abar_i) eps
// Decoding uses eps(x_i, t_i) where encoding used eps(x_{i-1}, t_{i-1}): the round trip is exact
// only when eps is constant along the path; its error falls as O(1 / K) (a first-order scheme).
import Foundation

public enum DDIMInversion {
    /// Encodes `x` (n samples of x_0, in place) to level K-1 of `plan`; `trajectory` receives x and
    /// x0^ of the visited levels (step k = level k - 1 left, as `Sampling.run` numbers its steps).
    public static func run(x: inout [Float], count n: Int, y: [Int]?, predictor: EpsPredictor, plan: SamplingPlan,
                           trajectory: inout Trajectory?, progress: Progress? = nil, progressBase: Int = 0) throws {
        guard n > 0, x.count % n == 0 else { throw DDPMError("inversion: \(x.count) values for \(n) samples") }
        let K = plan.stepCount
        let chain = plan.chain
        var x0 = [Float](repeating: 0, count: x.count)
        for i in 0..<K {
            // The level being left: i - 1 (x_0 below level 0, evaluated at t_0).
            let from = max(i - 1, 0)
            let abarFrom = i == 0 ? 1.0 : chain.alphaBar[i - 1]
            let abarTo = chain.alphaBar[i]
            let p = try Sampling.predict(predictor, x: x, t: Array(repeating: plan.timesteps[from], count: n), y: y, variance: false)
            let kept: [Float]? = trajectory.map { $0.every > 0 && i % $0.every == 0 } == true ? x : nil
            let a = abarTo.squareRoot(), b = max(0, 1 - abarTo).squareRoot()
            for j in 0..<x.count {
                let xs: Double
                if i == 0 { xs = Double(x[j]) }
                else if let px0 = p.x0 { xs = Double(px0[j]) }
                else { xs = Posterior.predictX0(xt: Double(x[j]), eps: Double(p.eps[j]), alphaBar: abarFrom) }
                x0[j] = Float(xs)
                x[j] = Float(a * xs + b * Double(p.eps[j]))
            }
            if let kept { trajectory!.frames.append((i, plan.timesteps[from], kept, x0)) }
            progress?.update(progressBase + (i + 1) * n, unit: "sample-steps")
        }
        for v in x where !v.isFinite { throw DDPMError("inversion produced a non-finite value (\(v)) at t = \(plan.startTimestep)") }
    }
}
