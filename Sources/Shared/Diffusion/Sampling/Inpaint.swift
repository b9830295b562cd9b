// Inpainting by RePaint (Lugmayr et al. 2022, Algorithm 1, eq. 8a-8c) with any reverse solver.
// m is the mask (1: known pixel, 0: to generate; values between blend), x0k the known image.
// A reverse step from level i to i - 1:
//   x_known   = sqrt(abar_{i-1}) x0k + sqrt(1 - abar_{i-1}) e,  e ~ N(0, I)     (8a: q(x_{t-1} | x_0))
//   x_unknown = the solver's step from x_i                                   (8b)
//   x_{i-1}   = m x_known + (1 - m) x_unknown                                 (8c)
// and below level 0 the known pixels are x0k itself.
// Resampling (sec. 4.2, "jumps"): on reaching a level that is a multiple of `jump` (and at least
// `jump` below the top), the chain goes back up `jump` levels by the forward process on the
// respaced chain, x_{l+1} = sqrt(1 - beta'_{l+1}) x_l + sqrt(beta'_{l+1}) z (eq. 1), and down
// again; `resample` - 1 times per such level (resample = 1: plain replacement, no jumps). After a
// jump a multistep solver starts afresh (its history belongs to the path it left).
// Noise: the solver's z from the sampler streams as in `Sampling.run`; e and the jumps' z from
// RandomStream(seed, .inpaint, sample): samples do not depend on batching.
import Foundation

public struct RePaintOptions: Sendable, Equatable {
    /// Levels per jump (j in the paper).
    public var jump = 10
    /// Passes over each jump point (r in the paper; 1: no resampling).
    public var resample = 10
    public init() {}

    public static let maxResample = 1000
    /// The most moves (reverse steps plus forward jumps) of one run.
    public static let maxMoves = 10_000_000

    public func validate() throws {
        guard jump >= 1 else { throw DDPMError("the RePaint jump length must be at least 1, got \(jump)") }
        guard (1...RePaintOptions.maxResample).contains(resample) else {
            throw DDPMError("the RePaint resample count must lie in 1 ... \(RePaintOptions.maxResample), got \(resample)")
        }
    }

    /// The levels visited from level K - 1 down to -1 (x_0), jumps included: consecutive entries
    /// differ by one; a rise is a forward jump step.
    public func levels(count K: Int) throws -> [Int] {
        try validate()
        guard K >= 1 else { throw DDPMError("RePaint needs at least one level") }
        let points = max(0, (K - jump + jump - 1) / jump)   // jump points 0, j, 2j, ... below K - j
        guard Double(K) + Double(points) * Double(resample - 1) * Double(2 * jump) <= Double(RePaintOptions.maxMoves) else {
            throw DDPMError("RePaint with \(K) steps, jump \(jump) and resample \(resample) makes more than \(RePaintOptions.maxMoves) moves")
        }
        var left = [Int: Int]()
        var l = 0
        while l < K - jump { left[l] = resample - 1; l += jump }
        var seq = [K - 1]
        var at = K - 1
        while at >= 0 {
            at -= 1
            seq.append(at)
            if let r = left[at], r > 0 {
                left[at] = r - 1
                for _ in 0..<jump { at += 1; seq.append(at) }
            }
        }
        return seq
    }
}

public enum RePaint {
    /// Completes `x` (n samples at level K - 1 of the solver's plan, usually x_T ~ N(0, I)) in
    /// place: `known` and `mask` hold n * d values each. Returns the number of network evaluations.
    @discardableResult
    public static func run(x: inout [Float], known: [Float], mask: [Float], y: [Int]?, predictor: EpsPredictor,
                           solver template: any ReverseSolver, options: RePaintOptions,
                           noise: inout [RandomStream], inpaintNoise: inout [RandomStream],
                           progress: Progress? = nil, progressBase: Int = 0) throws -> Int {
        let n = noise.count
        guard n > 0, x.count % n == 0, known.count == x.count, mask.count == x.count, inpaintNoise.count == n else {
            throw DDPMError("inpainting: \(x.count) values, \(known.count) known, \(mask.count) mask values for \(n) samples")
        }
        if template.needsVariance && !predictor.learnsVariance {
            throw DDPMError("the learned variance needs a predictor that answers 'v' (a model trained with the hybrid loss)")
        }
        let d = x.count / n
        let plan = template.plan
        let chain = plan.chain
        let seq = try options.levels(count: plan.stepCount)
        var solver = template
        var x0 = [Float](repeating: 0, count: x.count)
        var evaluations = 0
        let K = plan.stepCount
        let evaluate: (_ x: [Float], _ level: Int) throws -> Prediction = { xs, level in
            guard level >= 0 && level < K, xs.count == n * d else {
                throw DDPMError("inpainting: evaluation at level \(level) of 0 ..< \(K) with \(xs.count) values for \(n) samples")
            }
            evaluations += 1
            return try Sampling.predict(predictor, x: xs, t: Array(repeating: plan.timesteps[level], count: n), y: y,
                                        variance: template.needsVariance)
        }
        for k in 1..<seq.count {
            let from = seq[k - 1], to = seq[k]
            if to > from {
                // Forward jump on the respaced chain (eq. 1): every pixel re-noised.
                let b = chain.beta[to], a = (1 - b).squareRoot(), s = b.squareRoot()
                for smp in 0..<n {
                    for j in smp * d ..< (smp + 1) * d { x[j] = Float(a * Double(x[j]) + s * Double(inpaintNoise[smp].nextNormal())) }
                }
                solver = template
                continue
            }
            let p = try evaluate(x, from)
            try solver.step(level: from, x: &x, prediction: p, sampleSize: d, x0: &x0, noise: &noise, evaluate: evaluate)
            let abar = to >= 0 ? chain.alphaBar[to] : 1.0
            let a = abar.squareRoot(), s = max(0, 1 - abar).squareRoot()
            for smp in 0..<n {
                for j in smp * d ..< (smp + 1) * d {
                    let m = Double(mask[j])
                    guard m > 0 else { continue }
                    let e = to >= 0 ? Double(inpaintNoise[smp].nextNormal()) : 0
                    let xk = a * Double(known[j]) + s * e
                    x[j] = Float(m * xk + (1 - m) * Double(x[j]))
                }
            }
            progress?.update(progressBase + k * n, unit: "sample-moves")
        }
        return evaluations
    }
}
