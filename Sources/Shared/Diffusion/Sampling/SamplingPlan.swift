// Which timesteps a sampler visits and the schedule re-derived on them: the `set_timesteps` half
// of a sampler (diffusers' schedulers), shared by every reverse step (DDPM.swift, DDIM.swift).
//
// Level i of K is timestep t_i (ascending, t_0 < ... < t_{K-1}); step i goes from t_i to
// t_{i-1}, and below t_0 lies x_0 (abar = 1). `chain` is `Schedule.respaced(timesteps)`
// (Spacing.swift), so chain.alphaBar[i] = alphaBar[t_i] and the posterior coefficients are those
// of the shorter chain. A first timestep with abar = 0 (zero terminal SNR) is dropped: eps-
// prediction cannot give x_0 there, so the chain starts at the next one, from N(0, I) (unless the
// options say the predictor gives x_0 itself: `keepsZeroSNRStart`).
//
// Every solver sees level i through a_i = sqrt(abar_i), s_i = sqrt(1 - abar_i), sigma_i = s_i / a_i
// (the VE noise level of Karras et al. 2022) and lambda_i = log(a_i / s_i) (Lu et al. 2022); below
// level 0 lies x_0: a = 1, s = sigma = 0, lambda = +inf.
import Foundation

public enum SamplerKind: String, CaseIterable, Sendable {
    case ddpm, ddim, euler, eulerAncestral = "euler-ancestral", heun, dpmpp2m = "dpmpp-2m", dpmpp2mSDE = "dpmpp-2m-sde", unipc
}
public enum VarianceKind: String, CaseIterable, Sendable { case beta, posterior, learned }

/// What a predictor brings as sampler defaults (SampleJob.defaults); the tools' flags override it.
public struct SamplerDefaults: Sendable, Equatable {
    public var variance: VarianceKind = .posterior
    public var spacing: Spacing = .leading
    public var stepsOffset = 0
    public var clip = false
    /// DDIM keeps the model's eps after clipping (diffusers' convention).
    public var keepsModelEps = false
    /// The schedule's length, to tell whether the offset fits.
    public var T = 1000
    public init(variance: VarianceKind = .posterior, T: Int = 1000) { self.variance = variance; self.T = T }

    /// Whether leading spacing with `stepsOffset` stays within 0 ... from for `steps` steps.
    public func offsetFits(from: Int?, steps: Int?) -> Bool {
        let n = (from ?? T - 1) + 1, k = steps ?? n
        return k >= 1 && k <= n && (k - 1) * (n / k) + stepsOffset <= n - 1
    }
}

/// Everything that chooses a reverse chain, typed (the tools' sampler option group builds it).
public struct SamplerOptions: Sendable, Equatable {
    public var kind: SamplerKind = .ddpm
    /// DDIM's eta (0: deterministic).
    public var eta: Double = 0
    /// DDPM's variance.
    public var variance: VarianceKind = .posterior
    /// nil: every timestep of 0 ... from.
    public var steps: Int? = nil
    public var spacing: Spacing = .leading
    /// Added to every leading timestep (diffusers' steps_offset).
    public var stepsOffset = 0
    /// The timestep the chain starts from (nil: T - 1).
    public var from: Int? = nil
    /// Clip the predicted x_0 to [-1, 1].
    public var clip = false
    /// With clip / threshold: DDIM keeps the model's eps instead of re-deriving it from the changed x_0
    /// (diffusers' DDIMScheduler.step with use_clipped_model_output = False, its default).
    public var keepsModelEps = false
    /// Langevin corrector steps after each reverse step, and their signal-to-noise ratio.
    public var correctorSteps = 0
    public var snr = 0.16
    /// Dynamic thresholding of x0^ (Saharia et al. 2022); excludes `clip`.
    public var threshold: DynamicThreshold? = nil
    /// The predictor gives x_0 itself (x0- or v-prediction): a first timestep with abar = 0 is kept.
    public var keepsZeroSNRStart = false
    public init() {}

    /// How x0^ is post-processed (X0Estimate.swift).
    public var x0Rule: X0Rule { X0Rule(clip: clip, threshold: threshold, keepsModelEps: keepsModelEps) }

    /// Range checks of the values themselves (the schedule's are in `SamplingPlan`).
    public func validate() throws {
        guard eta >= 0 && eta.isFinite else { throw DDPMError("DDIM eta must be finite and >= 0, got \(eta)") }
        guard correctorSteps >= 0 && correctorSteps <= 1000 else { throw DDPMError("corrector steps must lie in 0 ... 1000, got \(correctorSteps)") }
        guard snr > 0 && snr.isFinite else { throw DDPMError("corrector signal-to-noise ratio must be finite and > 0, got \(snr)") }
        if kind == .ddim && variance == .learned { throw DDPMError("DDIM has no learned variance (its noise is set by eta)") }
        if kind != .ddim && kind != .ddpm && variance == .learned { throw DDPMError("the \(kind.rawValue) sampler has no learned variance") }
        if kind != .ddim && eta != 0 { throw DDPMError("eta \(eta) applies to DDIM, not to \(kind.rawValue)") }
        if let threshold {
            if clip { throw DDPMError("clipping and dynamic thresholding of x_0 exclude each other") }
            try threshold.validate()
        }
        if keepsModelEps && kind != .ddim { throw DDPMError("keeping the model's eps after clipping applies to DDIM, not to \(kind.rawValue)") }
        if keepsModelEps && !clip && threshold == nil { throw DDPMError("keeping the model's eps applies when x_0 is clipped or thresholded") }
    }

    /// The reverse step of this kind on `schedule`.
    public func makeSolver(schedule: Schedule) throws -> any ReverseSolver {
        try validate()
        let plan = try SamplingPlan(schedule: schedule, from: from, steps: steps, spacing: spacing, stepsOffset: stepsOffset,
                                    keepZeroSNRStart: keepsZeroSNRStart)
        let rule = x0Rule
        switch kind {
        case .ddpm: return DDPMStep(plan: plan, variance: variance, rule: rule)
        case .ddim: return DDIMStep(plan: plan, eta: eta, rule: rule)
        case .euler: return EulerStep(plan: plan, rule: rule)
        case .eulerAncestral: return EulerAncestralStep(plan: plan, rule: rule)
        case .heun: return HeunStep(plan: plan, rule: rule)
        case .dpmpp2m: return DPMSolverPP2M(plan: plan, rule: rule, stochastic: false)
        case .dpmpp2mSDE: return DPMSolverPP2M(plan: plan, rule: rule, stochastic: true)
        case .unipc: return UniPCStep(plan: plan, rule: rule)
        }
    }

    public func makeCorrector(plan: SamplingPlan) -> LangevinCorrector? {
        correctorSteps > 0 ? LangevinCorrector(plan: plan, steps: correctorSteps, snr: snr) : nil
    }
}

public struct SamplingPlan: Sendable {
    public let schedule: Schedule
    /// Visited timesteps of the full schedule, ascending.
    public let timesteps: [Int]
    /// The schedule re-derived on `timesteps`.
    public let chain: Schedule
    /// The abar = 0 timestep dropped from the start, if any.
    public let droppedTerminal: Int?

    /// `keepZeroSNRStart`: keep a first timestep with abar = 0 (the predictor gives x_0 there).
    public init(schedule: Schedule, from: Int? = nil, steps: Int? = nil, spacing: Spacing = .leading, stepsOffset: Int = 0,
                keepZeroSNRStart: Bool = false) throws {
        let from = from ?? schedule.T - 1
        guard from >= 0 && from < schedule.T else {
            throw DDPMError("start timestep \(from) is outside 0 ... \(schedule.T - 1) (the schedule has T = \(schedule.T))")
        }
        var ts = try spacing.timesteps(count: from + 1, steps: steps ?? from + 1, alphaBar: schedule.alphaBar, offset: stepsOffset)
        var dropped: Int? = nil
        if !keepZeroSNRStart, let last = ts.last, schedule.alphaBar[last] == 0 {
            dropped = last
            ts.removeLast()
            guard !ts.isEmpty else {
                throw DDPMError("alpha_bar = 0 at t = \(last) (zero terminal SNR) and no other step is left: eps-prediction cannot predict x_0 there; use more steps")
            }
        }
        self.schedule = schedule
        timesteps = ts
        droppedTerminal = dropped
        chain = try schedule.respaced(ts)
    }

    public var startTimestep: Int { timesteps.last! }
    public var stepCount: Int { timesteps.count }
    /// abar of level i and of the level below it (1 below level 0).
    @inline(__always) func alphaBars(_ i: Int) -> (Double, Double) { (chain.alphaBar[i], i > 0 ? chain.alphaBar[i - 1] : 1.0) }
    /// abar of level i, 1 for i = -1 (x_0).
    @inline(__always) public func alphaBar(level i: Int) -> Double { i >= 0 ? chain.alphaBar[i] : 1 }
    /// a = sqrt(abar), s = sqrt(1 - abar) of level i (i = -1: a = 1, s = 0).
    @inline(__always) public func alphaSigma(level i: Int) -> (a: Double, s: Double) {
        let ab = alphaBar(level: i)
        return (ab.squareRoot(), (1 - ab).squareRoot())
    }
    /// sigma = s / a of level i (+inf at abar = 0, 0 for i = -1).
    @inline(__always) public func sigma(level i: Int) -> Double {
        let (a, s) = alphaSigma(level: i)
        return a == 0 ? .infinity : s / a
    }
}

/// One reverse step: the `step` half of a sampler. The caller keeps the loop (Sample.swift):
/// for i = K-1 ... 0, ask the predictor at t_i, then `step(level: i, ...)`. A solver that keeps a
/// history of predictions (multistep) holds it in its own state, hence `mutating`; it starts a new
/// history at level K-1. A solver that needs more predictions within a step (Heun) asks
/// `evaluate(x, level)`: the predictor at plan.timesteps[level] with the caller's labels and checks.
public protocol ReverseSolver {
    var plan: SamplingPlan { get }
    /// The predictor must answer v (a learned variance) for this solver.
    var needsVariance: Bool { get }
    /// x (n samples of d values at level i) -> x at level i - 1 (x_0 for i = 0), in place; `x0`
    /// receives the predicted x_0; sample s draws its z from noise[s], and only when it adds noise.
    mutating func step(level i: Int, x: inout [Float], prediction p: Prediction, sampleSize d: Int,
                       x0: inout [Float], noise: inout [RandomStream],
                       evaluate: (_ x: [Float], _ level: Int) throws -> Prediction) throws
}
