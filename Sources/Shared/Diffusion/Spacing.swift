// Which timesteps a K-step sampler visits, and the schedule re-derived on them.
// Definitions follow Lin et al. 2024 ("Common diffusion noise schedules and
// sample steps are flawed"), Table 2, written 0-based over N = from + 1 steps
// (t = 0 .. from; from = T-1 when sampling from pure noise):
//   linspace: t_i = round(i (N-1) / (K-1))            (includes 0 and N-1; round = half to even, as numpy)
//   leading:  t_i = i floor(N / K) + o                (starts at o, may stop short of N-1; o = steps_offset,
//             diffusers' DDIMScheduler / DDPMScheduler, which add it to leading spacing only)
//   trailing: t_j = round(N - j N / K) - 1, j = 0..K-1 (starts at N-1, may stop short of 0)
// With K = N all three are 0 .. N-1.
//   karras:   sigma_k = (sigma_max^(1/rho) + k/(K-1) (sigma_min^(1/rho) - sigma_max^(1/rho)))^rho, rho = 7,
//             k = 0..K-1 (Karras et al. 2022, eq. 5), sigma_t = sqrt((1 - abar_t) / abar_t),
//             sigma_min = sigma_0, sigma_max = sigma_{N-1} (the last t with abar > 0 under zero terminal SNR);
//             t_k = round(interpolation of t in log sigma), duplicates dropped (diffusers' _sigma_to_t,
//             as DPMSolverMultistepScheduler with use_karras_sigmas). Solvers then use sigma_{t_k}.
import Foundation

public enum Spacing: String, CaseIterable, Sendable {
    case leading, trailing, linspace, karras

    /// The visited timesteps, ascending, distinct, within 0 ..< count; `alphaBar` of the schedule
    /// (at least `count` values) is needed by karras only.
    public func timesteps(count n: Int, steps k: Int, alphaBar: [Double]? = nil, offset: Int = 0) throws -> [Int] {
        guard n >= 1 else { throw DDPMError("no timesteps to sample over") }
        guard offset == 0 || self == .leading else { throw DDPMError("a steps offset applies to leading spacing only, not to \(rawValue)") }
        guard offset >= 0 else { throw DDPMError("the steps offset must be >= 0, got \(offset)") }
        guard k >= 1 else { throw DDPMError("the number of sampling steps must be at least 1, got \(k)") }
        guard k <= n else { throw DDPMError("\(k) sampling steps exceed the \(n) timesteps available (0 ... \(n - 1))") }
        var ts: [Int]
        switch self {
        case .linspace:
            ts = k == 1 ? [n - 1] : (0..<k).map { Int((Double($0) * Double(n - 1) / Double(k - 1)).rounded(.toNearestOrEven)) }
        case .leading:
            let stride = n / k
            guard (k - 1) * stride + offset <= n - 1 else {
                throw DDPMError("steps offset \(offset) moves the last of \(k) leading timesteps to \((k - 1) * stride + offset), past t = \(n - 1)")
            }
            ts = (0..<k).map { $0 * stride + offset }
        case .trailing:
            let stride = Double(n) / Double(k)
            ts = (0..<k).map { Int((Double(n) - Double($0) * stride).rounded(.toNearestOrEven)) - 1 }.reversed()
        case .karras:
            guard let alphaBar, alphaBar.count >= n else { throw DDPMError("karras spacing needs the schedule's alpha_bar") }
            ts = try Spacing.karrasTimesteps(alphaBar: Array(alphaBar[0..<n]), steps: k)
        }
        precondition(Set(ts).count == ts.count && ts.allSatisfy { $0 >= 0 && $0 < n }, "spacing produced invalid timesteps")
        return ts
    }
}

extension Spacing {
    /// Karras et al. 2022, eq. 5: K sigmas from sigma_max down to sigma_min, rho = 7.
    public static func karrasSigmas(sigmaMin: Double, sigmaMax: Double, steps k: Int, rho: Double = 7) -> [Double] {
        let lo = pow(sigmaMin, 1 / rho), hi = pow(sigmaMax, 1 / rho)
        return (0..<k).map { i in
            let ramp = k == 1 ? 0 : Double(i) / Double(k - 1)
            return pow(hi + ramp * (lo - hi), rho)
        }
    }

    /// The fractional timestep of sigma by linear interpolation in log sigma between neighbouring
    /// timesteps, clamped to [0, N-1] (diffusers' _sigma_to_t). `logSigmas` ascending.
    public static func timestep(sigma: Double, logSigmas: [Double]) -> Double {
        let ls = log(max(sigma, 1e-10))
        let m = logSigmas.count
        guard m >= 2 else { return 0 }
        // low = the last index with logSigmas[low] <= ls, at most m - 2 (0 when none).
        var lo = 0, hi = m - 1
        if ls < logSigmas[0] { lo = 0 } else {
            while lo < hi { let mid = (lo + hi + 1) / 2; if logSigmas[mid] <= ls { lo = mid } else { hi = mid - 1 } }
        }
        lo = min(lo, m - 2)
        let a = logSigmas[lo], b = logSigmas[lo + 1]
        let w = min(1, max(0, (a - ls) / (a - b)))
        return (1 - w) * Double(lo) + w * Double(lo + 1)
    }

    /// Ascending distinct timesteps of the K Karras sigmas over abar_0 .. abar_{N-1}.
    public static func karrasTimesteps(alphaBar: [Double], steps k: Int) throws -> [Int] {
        let finite = alphaBar.prefix { $0 > 0 }.count     // abar = 0 (zero terminal SNR) has no finite sigma
        guard finite >= 1 else { throw DDPMError("karras spacing needs a timestep with alpha_bar > 0") }
        let logSigmas = alphaBar[0..<finite].map { log(((1 - $0) / $0).squareRoot()) }
        guard zip(logSigmas, logSigmas.dropFirst()).allSatisfy({ $0 < $1 }) else {
            throw DDPMError("karras spacing needs sigma strictly increasing in t (alpha_bar strictly decreasing)")
        }
        if finite == 1 { return [0] }
        let sigmas = karrasSigmas(sigmaMin: exp(logSigmas[0]), sigmaMax: exp(logSigmas[finite - 1]), steps: k)
        let ts = sigmas.map { Int(timestep(sigma: $0, logSigmas: logSigmas).rounded(.toNearestOrEven)) }
        return Array(Set(ts)).sorted()
    }
}

extension Schedule {
    /// The schedule restricted to ascending timesteps t_0 < ... < t_{K-1}:
    /// beta'_i = 1 - abar_{t_i} / abar_{t_{i-1}}, abar_{t_{-1}} = 1 (Nichol & Dhariwal 2021, sec. 4),
    /// so that alphaBar'[i] = alphaBar[t_i] and every derived quantity (posterior
    /// coefficients, beta~) is that of the shorter chain.
    public func respaced(_ timesteps: [Int]) throws -> Schedule {
        guard !timesteps.isEmpty else { throw DDPMError("no timesteps to respace to") }
        var prev = 1.0
        var betas: [Double] = []
        for (i, t) in timesteps.enumerated() {
            guard t >= 0 && t < T else { throw DDPMError("timestep \(t) outside 0 ... \(T - 1)") }
            if i > 0 && t <= timesteps[i - 1] { throw DDPMError("timesteps must be increasing") }
            betas.append(alphaBar[t] == 0 ? 1 : 1 - alphaBar[t] / prev)
            prev = alphaBar[t]
        }
        return try Schedule(betas: betas, kind: .custom, zeroTerminalSNR: alphaBar[timesteps.last!] == 0)
    }
}
