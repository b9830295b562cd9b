// The sampling loop, kept by the caller as diffusers does: x_T ~ N(0, I) (or a given x_t), then
// for every level i = K-1 ... 0 one prediction and one `ReverseSolver.step`, with the trajectory
// and the corrector as plain code in the loop. A solver that needs another prediction within the
// step (Heun) gets it from the loop's evaluator: the same predictor, labels and checks.
//
// Randomness: sample j draws x_T and every step's z from RandomStream(seed, .sampler, j) in
// order, the corrector's noise from RandomStream(seed, .corrector, j): samples do not depend on
// batching, frame split or thread count.

/// x_t and x0^ of some steps of a run, in the order visited (`every` > 0: the first step and every
/// `every` steps after it).
public struct Trajectory {
    public let every: Int
    public var frames: [(step: Int, t: Int, x: [Float], x0: [Float])] = []
    public init(every: Int) { self.every = every }
}

public enum Sampling {
    /// x_T ~ N(0, I) for samples firstIndex ..< firstIndex + n, and their per-sample streams
    /// (positioned after the x_T draws, ready for the steps' z).
    public static func initialNoise(count n: Int, dimension d: Int, seed: UInt64, firstIndex: Int) -> ([Float], [RandomStream]) {
        var x = [Float](repeating: 0, count: n * d)
        var streams: [RandomStream] = []
        for s in 0..<n {
            var r = RandomStream(seed: seed, purpose: .sampler, index: UInt64(firstIndex + s))
            for i in 0..<d { x[s * d + i] = r.nextNormal() }
            streams.append(r)
        }
        return (x, streams)
    }

    public static func streams(count n: Int, seed: UInt64, firstIndex: Int, purpose: RandomPurpose = .sampler) -> [RandomStream] {
        (0..<n).map { RandomStream(seed: seed, purpose: purpose, index: UInt64(firstIndex + $0)) }
    }

    /// The predictor's answer, checked: sizes, finiteness, and v when `variance` asks for it.
    public static func predict(_ predictor: EpsPredictor, x: [Float], t: [Int], y: [Int]?, variance: Bool) throws -> Prediction {
        let p = try predictor.checkedPredict(x: x, t: t, y: y)
        let at = t.first ?? 0
        try checkFinite(p.eps, "eps", t: at)
        if let x0 = p.x0 {
            guard x0.count == x.count else { throw DDPMError("predictor answered \(x0.count) x0 values for \(x.count) inputs") }
            try checkFinite(x0, "x0", t: at)
        }
        if variance {
            guard let v = p.v else { throw DDPMError("the predictor answered no 'v' at t = \(at) (the learned variance needs it)") }
            try checkFinite(v, "v", t: at)
        }
        return p
    }

    static func checkFinite(_ a: [Float], _ name: String, t: Int) throws {
        for v in a where !v.isFinite { throw DDPMError("predictor answered a non-finite '\(name)' (\(v)) at t = \(t)") }
    }

    /// Runs the whole chain on `x` (n = noise.count samples at the plan's start timestep), in place.
    public static func run(x: inout [Float], y: [Int]?, predictor: EpsPredictor, solver: inout any ReverseSolver,
                           noise: inout [RandomStream], corrector: LangevinCorrector? = nil,
                           correctorNoise: inout [RandomStream], trajectory: inout Trajectory?,
                           progress: Progress? = nil, progressBase: Int = 0) throws {
        let n = noise.count
        guard n > 0, x.count % n == 0 else { throw DDPMError("sampler: \(x.count) values for \(n) samples") }
        if solver.needsVariance && !predictor.learnsVariance {
            throw DDPMError("the learned variance needs a predictor that answers 'v' (a model trained with the hybrid loss)")
        }
        if corrector != nil && correctorNoise.count != n { throw DDPMError("sampler: corrector streams missing") }
        let d = x.count / n
        let plan = solver.plan
        let K = plan.stepCount
        var x0 = [Float](repeating: 0, count: x.count)
        let needsV = solver.needsVariance
        let evaluate: (_ x: [Float], _ level: Int) throws -> Prediction = { xs, level in
            guard level >= 0 && level < K, xs.count == n * d else {
                throw DDPMError("sampler: evaluation at level \(level) of 0 ..< \(K) with \(xs.count) values for \(n) samples")
            }
            return try predict(predictor, x: xs, t: Array(repeating: plan.timesteps[level], count: n), y: y, variance: needsV)
        }
        for i in stride(from: K - 1, through: 0, by: -1) {
            let t = plan.timesteps[i]
            let p = try evaluate(x, i)
            let kept: [Float]? = trajectory.map { $0.every > 0 && (K - 1 - i) % $0.every == 0 } == true ? x : nil
            try solver.step(level: i, x: &x, prediction: p, sampleSize: d, x0: &x0, noise: &noise, evaluate: evaluate)
            if let kept { trajectory!.frames.append((K - 1 - i, t, kept, x0)) }
            if i > 0, let corrector {
                try corrector.correct(x: &x, level: i - 1, y: y, predictor: predictor, noise: &correctorNoise, sampleSize: d)
            }
            progress?.update(progressBase + (K - i) * n, unit: "sample-steps")
        }
    }

    /// Convenience for tests and benchmarks: n samples from x_T with samples firstIndex ..< firstIndex + n.
    public static func sample(count n: Int, sampleShape: [Int], y: [Int]?, predictor: EpsPredictor, options: SamplerOptions,
                              schedule: Schedule, seed: UInt64, firstIndex: Int = 0) throws -> [Float] {
        var solver = try options.makeSolver(schedule: schedule)
        var (x, noise) = initialNoise(count: n, dimension: sampleShape.reduce(1, *), seed: seed, firstIndex: firstIndex)
        var corr = options.correctorSteps > 0 ? streams(count: n, seed: seed, firstIndex: firstIndex, purpose: .corrector) : []
        var none: Trajectory? = nil
        try run(x: &x, y: y, predictor: predictor, solver: &solver, noise: &noise, corrector: options.makeCorrector(plan: solver.plan),
                correctorNoise: &corr, trajectory: &none)
        return x
    }

    /// The score s = -eps / sqrt(1 - abar_t) per sample's t (Song et al. 2021; Ho et al. sec. 3.2).
    public static func score(x: [Float], t: [Int], y: [Int]?, predictor: EpsPredictor, schedule: Schedule) throws -> [Float] {
        let p = try predict(predictor, x: x, t: t, y: y, variance: false)
        let d = x.count / max(t.count, 1)
        var s = [Float](repeating: 0, count: x.count)
        for i in 0..<x.count { s[i] = Float(Posterior.score(eps: Double(p.eps[i]), alphaBar: schedule.alphaBar[t[i / d]])) }
        return s
    }
}
