// The variance schedule beta_1..beta_T and every quantity derived from it.
// Indices are 0-based: t = 0 .. T-1, t = T-1 the noisiest (docs/FORMAT.md).
// Computed in double precision.
import Foundation

public enum ScheduleKind: String, CaseIterable, Sendable {
    case linear, cosine, scaledLinear = "scaled-linear", sigmoid, quadratic, custom
}

public struct Schedule: Sendable {
    public var kind: ScheduleKind
    public var betaStart: Double
    public var betaEnd: Double
    public var zeroTerminalSNR: Bool

    public let beta: [Double]
    public let alpha: [Double]                 // 1 - beta
    public let alphaBar: [Double]              // prod_{s<=t} alpha_s
    public let alphaBarPrev: [Double]          // alphaBar[t-1], 1 at t = 0
    public let sqrtAlphaBar: [Double]
    public let sqrtOneMinusAlphaBar: [Double]
    public let posteriorVariance: [Double]     // beta~_t = beta_t (1 - abar_{t-1}) / (1 - abar_t)  (Ho et al. eq. 7)
    public let posteriorLogVarianceClipped: [Double] // log beta~ with t = 0 taking beta~_1 (beta~_0 = 0)
    public let posteriorMeanCoef1: [Double]    // multiplies x_0: beta_t sqrt(abar_{t-1}) / (1 - abar_t)
    public let posteriorMeanCoef2: [Double]    // multiplies x_t: sqrt(alpha_t) (1 - abar_{t-1}) / (1 - abar_t)
    public let snr: [Double]                   // abar / (1 - abar)

    public var T: Int { beta.count }
    /// The most timesteps a schedule may have (flags, schedule and model files alike).
    public static let maxT = 1_000_000

    /// Builds every derived quantity from the betas.
    public init(betas: [Double], kind: ScheduleKind = .custom, betaStart: Double = .nan, betaEnd: Double = .nan,
                zeroTerminalSNR: Bool = false) throws {
        guard !betas.isEmpty else { throw DDPMError("schedule needs at least one timestep") }
        guard betas.count <= Schedule.maxT else { throw DDPMError("T = \(betas.count) is too large (at most \(Schedule.maxT))") }
        for (t, b) in betas.enumerated() where !(b > 0 && b <= 1) {
            throw DDPMError("beta at t=\(t) is \(b); betas must lie in (0, 1]")
        }
        if let t = betas.dropLast().firstIndex(of: 1.0) {
            throw DDPMError("beta at t=\(t) is 1 before the last step; only the last beta may be 1 (zero terminal SNR)")
        }
        self.kind = kind
        self.betaStart = betaStart
        self.betaEnd = betaEnd
        self.zeroTerminalSNR = zeroTerminalSNR
        let T = betas.count
        beta = betas
        alpha = betas.map { 1 - $0 }
        var ab = [Double](repeating: 0, count: T)
        var p = 1.0
        for t in 0..<T { p *= 1 - betas[t]; ab[t] = p }
        if zeroTerminalSNR || betas[T - 1] == 1 { ab[T - 1] = 0 }
        alphaBar = ab
        alphaBarPrev = [1] + ab.dropLast()
        sqrtAlphaBar = ab.map { $0.squareRoot() }
        sqrtOneMinusAlphaBar = ab.map { (1 - $0).squareRoot() }
        var pv = [Double](repeating: 0, count: T)
        var c1 = pv, c2 = pv
        for t in 0..<T {
            let d = 1 - ab[t]
            pv[t] = betas[t] * (1 - alphaBarPrev[t]) / d
            c1[t] = betas[t] * alphaBarPrev[t].squareRoot() / d
            c2[t] = (1 - alphaBarPrev[t]) * (1 - betas[t]).squareRoot() / d
        }
        posteriorVariance = pv
        // beta~_0 = 0, so its log is clipped to log beta~_1 (Nichol & Dhariwal 2021, as in their code);
        // with T = 1 there is no beta~_1 and log beta_0 is used.
        posteriorLogVarianceClipped = (0..<T).map { t in
            t == 0 ? log(T > 1 ? pv[1] : betas[0]) : log(pv[t])
        }
        posteriorMeanCoef1 = c1
        posteriorMeanCoef2 = c2
        snr = ab.map { $0 / (1 - $0) }
    }

    /// The named schedules. `betaStart`/`betaEnd` default per kind (nil = the kind's default).
    public static func make(_ kind: ScheduleKind, T: Int = 1000, betaStart: Double? = nil, betaEnd: Double? = nil,
                            zeroTerminalSNR: Bool = false) throws -> Schedule {
        guard T >= 1 else { throw DDPMError("T must be at least 1, got \(T)") }
        guard T <= Schedule.maxT else { throw DDPMError("T = \(T) is too large (at most \(Schedule.maxT))") }
        let defaults: (Double, Double)
        switch kind {
        case .scaledLinear: defaults = (0.00085, 0.012)   // latent diffusion
        default: defaults = (1e-4, 0.02)                  // Ho et al. 2020
        }
        let b0 = betaStart ?? defaults.0, b1 = betaEnd ?? defaults.1
        if kind != .cosine {
            guard b0 > 0, b0 < 1 else { throw DDPMError("beta_start must lie in (0, 1), got \(b0)") }
            guard b1 > 0, b1 < 1 else { throw DDPMError("beta_end must lie in (0, 1), got \(b1)") }
            guard b0 <= b1 else { throw DDPMError("beta_start (\(b0)) must not exceed beta_end (\(b1))") }
        }
        func linspace(_ a: Double, _ b: Double) -> [Double] {
            T == 1 ? [a] : (0..<T).map { a + (b - a) * Double($0) / Double(T - 1) }
        }
        var betas: [Double]
        switch kind {
        case .linear:
            betas = linspace(b0, b1)
        case .scaledLinear, .quadratic:
            // Linear in sqrt(beta): Ho et al.'s "quad", diffusers' "scaled_linear".
            betas = linspace(b0.squareRoot(), b1.squareRoot()).map { $0 * $0 }
        case .sigmoid:
            // beta = sigmoid(linspace(-6, 6)) (end - start) + start (GeoDiff; diffusers "sigmoid").
            betas = linspace(-6, 6).map { b0 + (b1 - b0) / (1 + exp(-$0)) }
        case .cosine:
            // abar(t) = f(t)/f(0), f(t) = cos^2(((t/T) + s)/(1 + s) pi/2), s = 0.008;
            // beta_t = min(1 - abar(t+1)/abar(t), 0.999) (Nichol & Dhariwal 2021, eq. 17).
            let s = 0.008
            func f(_ u: Double) -> Double { let c = cos((u + s) / (1 + s) * Double.pi / 2); return c * c }
            betas = (0..<T).map { i in min(1 - f(Double(i + 1) / Double(T)) / f(Double(i) / Double(T)), 0.999) }
        case .custom:
            throw DDPMError("a custom schedule is built from its betas")
        }
        if zeroTerminalSNR { betas = try rescaleZeroTerminalSNR(betas) }
        return try Schedule(betas: betas, kind: kind, betaStart: kind == .cosine ? .nan : b0,
                            betaEnd: kind == .cosine ? .nan : b1, zeroTerminalSNR: zeroTerminalSNR)
    }

    /// Lin et al. 2024, Algorithm 1: shift and scale sqrt(abar) so that it is 0 at
    /// the last step and unchanged at the first, then recover the betas.
    public static func rescaleZeroTerminalSNR(_ betas: [Double]) throws -> [Double] {
        guard betas.count >= 2 else { throw DDPMError("a zero-terminal-SNR schedule needs T >= 2") }
        var s = [Double](), p = 1.0
        for b in betas { p *= 1 - b; s.append(p.squareRoot()) }
        let s0 = s[0], sT = s[s.count - 1]
        s = s.map { ($0 - sT) * s0 / (s0 - sT) }
        let ab = s.map { $0 * $0 }
        var out = [1 - ab[0]]
        for t in 1..<ab.count { out.append(1 - ab[t] / ab[t - 1]) }
        out[out.count - 1] = 1
        return out
    }

    /// The default schedule of every tool: linear, T = 1000, 1e-4 .. 0.02.
    public static func standard() -> Schedule { try! make(.linear) }

    // MARK: frames

    /// The tensors of a schedule frame, in order (docs/FORMAT.md).
    public var columns: [(String, [Double])] {
        [("beta", beta), ("alpha", alpha), ("alpha_bar", alphaBar), ("alpha_bar_prev", alphaBarPrev),
         ("sqrt_alpha_bar", sqrtAlphaBar), ("sqrt_one_minus_alpha_bar", sqrtOneMinusAlphaBar),
         ("posterior_variance", posteriorVariance), ("posterior_log_variance_clipped", posteriorLogVarianceClipped),
         ("posterior_mean_coef1", posteriorMeanCoef1), ("posterior_mean_coef2", posteriorMeanCoef2), ("snr", snr)]
    }

    public var metadata: [String: String] {
        var m = ["kind": "schedule", "schedule": kind.rawValue, "T": String(T),
                 "zero_terminal_snr": zeroTerminalSNR ? "true" : "false"]
        if !betaStart.isNaN { m["beta_start"] = "\(betaStart)" }
        if !betaEnd.isNaN { m["beta_end"] = "\(betaEnd)" }
        return m
    }

    public func frame() -> Frame {
        var f = Frame(metadata: metadata)
        for (name, col) in columns { f[name] = Tensor(col, shape: [T]) }
        return f
    }

    /// Rebuilds a schedule from a frame's `beta` (the other columns are derived again, not trusted).
    public init(frame: Frame) throws {
        guard frame.kind == "schedule" else { throw DDPMError("expected a schedule frame, got kind '\(frame.kind ?? "none")'") }
        let b = try frame.require("beta")
        guard b.shape.count == 1 else { throw DDPMError("schedule 'beta' must have shape [T], got \(b.shape)") }
        let m = frame.metadata
        try self.init(betas: b.doubles, kind: ScheduleKind(rawValue: m["schedule"] ?? "custom") ?? .custom,
                      betaStart: Double(m["beta_start"] ?? "") ?? .nan, betaEnd: Double(m["beta_end"] ?? "") ?? .nan,
                      zeroTerminalSNR: m["zero_terminal_snr"] == "true")
    }

    /// Loads the schedule in a file (its first frame).
    public static func load(path: String) throws -> Schedule {
        do { return try Schedule(frame: try Frame.load(path: path)) }
        catch let e as DDPMError { throw DDPMError("schedule file \(path): \(e.message)") }
    }

    /// The `--text` table: a header row, then one TSV row per t.
    public func table() -> String {
        var out = "t\t" + columns.map(\.0).joined(separator: "\t") + "\n"
        let cols = columns
        for t in 0..<T {
            out += String(t)
            for (_, c) in cols { out += "\t" + formatG(c[t]) }
            out += "\n"
        }
        return out
    }
}

/// %.17g: round-trips a Double exactly, short where it can be.
public func formatG(_ x: Double) -> String {
    if x.isInfinite { return x > 0 ? "inf" : "-inf" }
    if x.isNaN { return "nan" }
    let s = String(format: "%.10g", x)
    return Double(s) == x ? s : String(format: "%.17g", x)
}
