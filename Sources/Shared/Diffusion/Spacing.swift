// Which timesteps a K-step sampler visits, and the schedule re-derived on them.
// Definitions follow Lin et al. 2024 ("Common diffusion noise schedules and
// sample steps are flawed"), Table 2, written 0-based over N = from + 1 steps
// (t = 0 .. from; from = T-1 when sampling from pure noise):
//   linspace: t_i = round(i (N-1) / (K-1))            (includes 0 and N-1; round = half to even, as numpy)
//   leading:  t_i = i floor(N / K)                    (starts at 0, may stop short of N-1)
//   trailing: t_j = round(N - j N / K) - 1, j = 0..K-1 (starts at N-1, may stop short of 0)
// With K = N all three are 0 .. N-1.
import Foundation

public enum Spacing: String, CaseIterable, Sendable {
    case leading, trailing, linspace

    /// The visited timesteps, ascending, distinct, within 0 ..< count.
    public func timesteps(count n: Int, steps k: Int) throws -> [Int] {
        guard n >= 1 else { throw DDPMError("no timesteps to sample over") }
        guard k >= 1 else { throw DDPMError("the number of sampling steps must be at least 1, got \(k)") }
        guard k <= n else { throw DDPMError("\(k) sampling steps exceed the \(n) timesteps available (0 ... \(n - 1))") }
        var ts: [Int]
        switch self {
        case .linspace:
            ts = k == 1 ? [n - 1] : (0..<k).map { Int((Double($0) * Double(n - 1) / Double(k - 1)).rounded(.toNearestOrEven)) }
        case .leading:
            let stride = n / k
            ts = (0..<k).map { $0 * stride }
        case .trailing:
            let stride = Double(n) / Double(k)
            ts = (0..<k).map { Int((Double(n) - Double($0) * stride).rounded(.toNearestOrEven)) - 1 }.reversed()
        }
        precondition(Set(ts).count == ts.count && ts.allSatisfy { $0 >= 0 && $0 < n }, "spacing produced invalid timesteps")
        return ts
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
