// The reverse process: DDPM ancestral sampling (Ho et al. 2020, Algorithm 2)
// and DDIM (Song, Meng & Ermon 2021), on every timestep or on a respaced
// subsequence, with an optional Langevin corrector (Song et al. 2021, SDEs,
// Algorithm 5). Randomness: sample j draws x_T and every step's z from
// RandomStream(seed, .sampler, j) in order, and the corrector's noise from
// RandomStream(seed, .corrector, j), so samples do not depend on batching.
// A step draws its d normals z only when it adds noise (not at the last step, not in DDIM with eta = 0).
//
// Step i of K goes from t_i to t_{i-1} (the previous timestep of the list; below
// t_0 lies x_0, abar = 1). On the respaced chain (Spacing.swift):
//   x0^  = (x_t - sqrt(1 - abar) eps) / sqrt(abar)            [clipped to [-1, 1] with --clip]
//   DDPM: x_prev = coef1' x0^ + coef2' x_t + sigma z            (Ho et al. eq. 7, Algorithm 2)
//         sigma^2 = beta'_i (beta), beta~'_i (posterior), or exp(frac log beta' + (1 - frac) log beta~'_clipped) (learned)
//   DDIM: x_prev = sqrt(abar_prev) x0^ + sqrt(1 - abar_prev - sigma^2) eps + sigma z,
//         sigma = eta sqrt((1 - abar_prev)/(1 - abar)) sqrt(1 - abar/abar_prev)   (eq. 12, 16)
//         with --clip, eps is recomputed from the clipped x0^.
// The last step (i = 0) adds no noise: DDPM returns coef1'_0 x0^ + coef2'_0 x_t = x0^ (coef1'_0 = 1,
// coef2'_0 = 0 because abar_prev = 1), DDIM goes to abar = 1 and also returns x0^. So the variance
// at t_0 is never used for sampling; it is defined as beta'_0 = 1 - abar_{t_0} (beta), 0 (posterior),
// and through log beta~'_1 (the clipped value) for learned.
import Foundation

public enum SamplerKind: String, CaseIterable, Sendable { case ddpm, ddim }
public enum VarianceKind: String, CaseIterable, Sendable { case beta, posterior, learned }

public struct SamplerOptions: Sendable {
    public var kind: SamplerKind = .ddpm
    public var eta: Double = 0
    public var variance: VarianceKind = .posterior
    /// nil: every timestep of 0 ... from.
    public var steps: Int? = nil
    public var spacing: Spacing = .leading
    /// The timestep the chain starts from (nil: T - 1).
    public var from: Int? = nil
    public var clip = false
    public var correctorSteps = 0
    public var snr = 0.16
    public init() {}
}

public final class Sampler {
    public let schedule: Schedule
    public let options: SamplerOptions
    /// Visited timesteps of the full schedule, ascending (t_0 < ... < t_{K-1}).
    public let timesteps: [Int]
    /// The schedule re-derived on `timesteps` (Schedule.respaced).
    public let chain: Schedule
    /// A timestep with abar = 0 (zero terminal SNR) was dropped from the start: eps-prediction
    /// cannot give x_0 there. The chain then starts at the first step with abar > 0.
    public let droppedTerminal: Int?

    public init(schedule: Schedule, options: SamplerOptions) throws {
        self.schedule = schedule
        self.options = options
        let from = options.from ?? schedule.T - 1
        guard from >= 0 && from < schedule.T else {
            throw DDPMError("--from \(from) is outside 0 ... \(schedule.T - 1) (the schedule has T = \(schedule.T))")
        }
        guard options.eta >= 0 && options.eta.isFinite else { throw DDPMError("--eta must be >= 0, got \(options.eta)") }
        guard options.correctorSteps >= 0 else { throw DDPMError("--corrector-steps must be >= 0") }
        guard options.snr > 0 && options.snr.isFinite else { throw DDPMError("--snr must be > 0, got \(options.snr)") }
        var ts = try options.spacing.timesteps(count: from + 1, steps: options.steps ?? from + 1)
        var dropped: Int? = nil
        if let last = ts.last, schedule.alphaBar[last] == 0 {
            // eps-prediction: x0^ = (x - eps) / 0. Start at the first step with abar > 0 instead.
            dropped = last
            ts.removeLast()
            guard !ts.isEmpty else {
                throw DDPMError("alpha_bar = 0 at t = \(last) (zero terminal SNR) and no other step is left: eps-prediction cannot predict x_0 there; use more --steps")
            }
        }
        timesteps = ts
        droppedTerminal = dropped
        chain = try schedule.respaced(ts)
    }

    public var startTimestep: Int { timesteps.last! }
    public var stepCount: Int { timesteps.count }

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

    /// One frame of the trajectory: x at timestep t (before the step from t) and the x0^ predicted from it.
    public typealias TrajectoryHandler = (_ step: Int, _ t: Int, _ x: [Float], _ x0: [Float]) throws -> Void

    /// Runs the chain on `x` (n samples of d values at timestep `startTimestep`), in place.
    /// `noise`: the per-sample .sampler streams; `correctorNoise`: per-sample .corrector streams
    /// (needed when correctorSteps > 0). `every` > 0 calls `trajectory` at the first step and every `every` steps.
    public func run(x: inout [Float], y: [Int]?, predictor: EpsPredictor, noise: inout [RandomStream],
                    correctorNoise: inout [RandomStream], every: Int = 0, trajectory: TrajectoryHandler? = nil,
                    progress: ((Int) -> Void)? = nil) throws {
        let n = noise.count
        guard n > 0, x.count % n == 0 else { throw DDPMError("sampler: \(x.count) values for \(n) samples") }
        let d = x.count / n
        if options.variance == .learned && options.kind == .ddpm && !predictor.learnsVariance {
            throw DDPMError("--variance learned needs a predictor that answers 'v' (a learned variance)")
        }
        if options.correctorSteps > 0 && correctorNoise.count != n { throw DDPMError("sampler: corrector streams missing") }
        let K = timesteps.count
        var x0 = [Float](repeating: 0, count: x.count)
        for i in stride(from: K - 1, through: 0, by: -1) {
            let t = timesteps[i]
            let p = try predictor.checkedPredict(x: x, t: Array(repeating: t, count: n), y: y)
            try Sampler.checkFinite(p.eps, "eps", t: t)
            if options.variance == .learned && options.kind == .ddpm {
                guard let v = p.v else { throw DDPMError("--variance learned: the predictor answered no 'v' at t = \(t)") }
                try Sampler.checkFinite(v, "v", t: t)
            }
            let abar = chain.alphaBar[i]
            let abarPrev = i > 0 ? chain.alphaBar[i - 1] : 1.0
            let kept: [Float]? = trajectory != nil && every > 0 && (K - 1 - i) % every == 0 ? x : nil
            let sigmaDDIM = DDIM.sigma(eta: options.eta, alphaBar: abar, alphaBarPrev: abarPrev)
            let fixedLogVar: Double? = {
                switch options.variance {
                case .beta: return log(chain.beta[i])
                case .posterior: return i > 0 ? log(chain.posteriorVariance[i]) : -.infinity
                case .learned: return nil
                }
            }()
            // z is drawn at every step but the last, except by DDIM steps with sigma = 0 (eta = 0) which need none.
            let drawZ = i > 0 && (options.kind == .ddpm || sigmaDDIM > 0)
            for s in 0..<n {
                for j in s * d ..< (s + 1) * d {
                    let xt = Double(x[j])
                    var eps = Double(p.eps[j])
                    var xs = Posterior.predictX0(xt: xt, eps: eps, alphaBar: abar)
                    if options.clip {
                        xs = min(1, max(-1, xs))
                        eps = Posterior.predictEps(xt: xt, x0: xs, alphaBar: abar)
                    }
                    x0[j] = Float(xs)
                    let z = drawZ ? Double(noise[s].nextNormal()) : 0
                    switch options.kind {
                    case .ddpm:
                        let mean = Posterior.mean(x0: xs, xt: xt, t: i, schedule: chain)
                        if i == 0 { x[j] = Float(mean); continue }
                        let logVar = fixedLogVar ?? Posterior.learnedLogVariance(v: Double(p.v![j]), t: i, schedule: chain)
                        x[j] = Float(mean + exp(0.5 * logVar) * z)
                    case .ddim:
                        x[j] = Float(DDIM.step(x0: xs, eps: eps, alphaBarPrev: abarPrev, sigma: sigmaDDIM, z: z))
                    }
                }
            }
            if let trajectory, let xt = kept { try trajectory(K - 1 - i, t, xt, x0) }
            if i > 0 && options.correctorSteps > 0 {
                try correct(x: &x, level: i - 1, y: y, predictor: predictor, noise: &correctorNoise, dimension: d)
            }
            progress?(K - i)
        }
    }

    /// Langevin corrector at chain level j (Song et al. 2021, Algorithm 5, VP form):
    ///   g = s(x, t_j) = -eps / sqrt(1 - abar_j),  z ~ N(0, I),
    ///   step = 2 alpha_j (r ||z|| / ||g||)^2 per sample,  x <- x + step g + sqrt(2 step) z,
    /// with alpha_j = 1 - beta'_j of the (respaced) chain and r = --snr.
    func correct(x: inout [Float], level j: Int, y: [Int]?, predictor: EpsPredictor, noise: inout [RandomStream], dimension d: Int) throws {
        let n = noise.count
        let t = timesteps[j]
        let scale = 1 / (1 - chain.alphaBar[j]).squareRoot()
        for _ in 0..<options.correctorSteps {
            let p = try predictor.checkedPredict(x: x, t: Array(repeating: t, count: n), y: y)
            try Sampler.checkFinite(p.eps, "eps", t: t)
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
                let step = 2 * chain.alpha[j] * options.snr * options.snr * zn / gn
                for (k, i) in r.enumerated() {
                    let g = -Double(p.eps[i]) * scale
                    x[i] = Float(Double(x[i]) + step * g + (2 * step).squareRoot() * z[k])
                }
            }
        }
    }

    static func checkFinite(_ a: [Float], _ name: String, t: Int) throws {
        for v in a where !v.isFinite { throw DDPMError("predictor answered a non-finite '\(name)' (\(v)) at t = \(t)") }
    }

    /// The score s = -eps / sqrt(1 - abar_t) per sample's t (Song et al. 2021; Ho et al. sec. 3.2).
    public static func score(x: [Float], t: [Int], y: [Int]?, predictor: EpsPredictor, schedule: Schedule) throws -> [Float] {
        let p = try predictor.checkedPredict(x: x, t: t, y: y)
        try checkFinite(p.eps, "eps", t: t.first ?? 0)
        let d = x.count / max(t.count, 1)
        var s = [Float](repeating: 0, count: x.count)
        for i in 0..<x.count { s[i] = Float(Posterior.score(eps: Double(p.eps[i]), alphaBar: schedule.alphaBar[t[i / d]])) }
        return s
    }
}
