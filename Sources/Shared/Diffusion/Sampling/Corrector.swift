// Langevin corrector (Song et al. 2021, "Score-Based Generative Modeling through SDEs",
// Algorithm 5, VP form) at chain level j, after the reverse step into it:
//   g = s(x, t_j) = -eps / sqrt(1 - abar_j),  z ~ N(0, I),
//   step = 2 alpha_j (r ||z|| / ||g||)^2 per sample,  x <- x + step g + sqrt(2 step) z,
// with alpha_j = 1 - beta'_j of the (respaced) chain and r the signal-to-noise ratio.
// Sample s draws its z from RandomStream(seed, .corrector, s).

public struct LangevinCorrector: Sendable {
    public let plan: SamplingPlan
    public let steps: Int
    public let snr: Double
    public init(plan: SamplingPlan, steps: Int, snr: Double) { self.plan = plan; self.steps = steps; self.snr = snr }

    public func correct(x: inout [Float], level j: Int, y: [Int]?, predictor: EpsPredictor,
                        noise: inout [RandomStream], sampleSize d: Int) throws {
        let n = noise.count
        let t = plan.timesteps[j]
        let scale = 1 / (1 - plan.chain.alphaBar[j]).squareRoot()
        for _ in 0..<steps {
            let p = try Sampling.predict(predictor, x: x, t: Array(repeating: t, count: n), y: y, variance: false)
            for s in 0..<n {
                let r = s * d ..< (s + 1) * d
                var z = [Double](repeating: 0, count: d)
                var gn = 0.0, zn = 0.0
                for (k, i) in r.enumerated() {
                    z[k] = Double(noise[s].nextNormal())
                    let g = -Double(p.eps[i]) * scale
                    gn += g * g; zn += z[k] * z[k]
                }
                guard gn > 0 else { continue }
                let step = 2 * plan.chain.alpha[j] * snr * snr * zn / gn
                for (k, i) in r.enumerated() {
                    let g = -Double(p.eps[i]) * scale
                    x[i] = Float(Double(x[i]) + step * g + (2 * step).squareRoot() * z[k])
                }
            }
        }
    }
}
