// The data prediction every solver uses, at level i (a = sqrt(abar), s = sqrt(1 - abar)):
//   x0^ = p.x0 ?? (x - s eps) / a                               (Ho et al. 2020, eq. 4 solved for x_0)
//   clip:      x0^ <- clamp(x0^, -1, 1)
//   threshold: per sample, q = quantile(|x0^|, p) (linear interpolation, as torch.quantile),
//              m = clamp(q, 1, max), x0^ <- clamp(x0^, -m, m) / m
//              (Saharia et al. 2022, "Imagen", sec. 2.3; diffusers' _threshold_sample)
//   eps^ = eps as given, or (x - a x0^) / s when clip/threshold changed x0^ (the pair stays consistent),
//          unless the rule keeps the model's eps (diffusers' DDIM default, use_clipped_model_output = False).
// At abar = 0 only p.x0 can give x_0 (eps-prediction cannot: a = 0).
import Foundation

/// Imagen's dynamic thresholding: the percentile p of |x0^| per sample, bounded to [1, maxValue].
public struct DynamicThreshold: Sendable, Equatable {
    public var percentile: Double
    public var maxValue: Double
    public init(percentile: Double = 0.995, maxValue: Double = 1) { self.percentile = percentile; self.maxValue = maxValue }

    public func validate() throws {
        guard percentile > 0 && percentile <= 1 else { throw DDPMError("the thresholding percentile must lie in (0, 1], got \(percentile)") }
        guard maxValue >= 1 && maxValue.isFinite else { throw DDPMError("the thresholding maximum must be finite and >= 1, got \(maxValue)") }
    }

    /// m = clamp(quantile(|v|, p), 1, maxValue) of one sample.
    public func scale(_ v: ArraySlice<Double>) -> Double {
        let sorted = v.map { abs($0) }.sorted()
        guard !sorted.isEmpty else { return 1 }
        let pos = percentile * Double(sorted.count - 1)
        let lo = Int(pos.rounded(.down)), hi = min(lo + 1, sorted.count - 1)
        let q = sorted[lo] + (pos - Double(lo)) * (sorted[hi] - sorted[lo])
        return min(max(q, 1), maxValue)
    }
}

/// How x0^ is post-processed: nothing, clipped to [-1, 1], or dynamically thresholded.
public struct X0Rule: Sendable, Equatable {
    public var clip: Bool
    public var threshold: DynamicThreshold?
    /// eps^ stays the model's when x0^ is changed (else it is re-derived from x0^).
    public var keepsModelEps: Bool
    public init(clip: Bool = false, threshold: DynamicThreshold? = nil, keepsModelEps: Bool = false) {
        self.clip = clip; self.threshold = threshold; self.keepsModelEps = keepsModelEps
    }
    public static let none = X0Rule()
    var changesX0: Bool { clip || threshold != nil }
}

public enum X0Estimate {
    /// (x0^, eps^) of n samples of d values at abar (the level's), in Double.
    public static func estimate(x: [Float], prediction p: Prediction, alphaBar abar: Double, sampleSize d: Int,
                                rule: X0Rule, t: Int) throws -> (x0: [Double], eps: [Double]) {
        let a = abar.squareRoot(), s = (1 - abar).squareRoot()
        var x0 = [Double](repeating: 0, count: x.count)
        var eps = p.eps.map { Double($0) }
        if let given = p.x0 {
            guard given.count == x.count else { throw DDPMError("predictor answered \(given.count) x0 values for \(x.count) inputs") }
            for j in 0..<x.count { x0[j] = Double(given[j]) }
        } else {
            guard abar > 0 else {
                throw DDPMError("alpha_bar = 0 at t = \(t): eps-prediction cannot give x_0 there (an x0- or v-predictor can)")
            }
            for j in 0..<x.count { x0[j] = Posterior.predictX0(xt: Double(x[j]), eps: eps[j], alphaBar: abar) }
        }
        guard rule.changesX0 else { return (x0, eps) }
        if rule.clip {
            for j in 0..<x.count { x0[j] = min(1, max(-1, x0[j])) }
        } else if let th = rule.threshold, d > 0 {
            for start in stride(from: 0, to: x.count, by: d) {
                let m = th.scale(x0[start ..< start + d])
                for j in start ..< start + d { x0[j] = min(m, max(-m, x0[j])) / m }
            }
        }
        if s > 0 && !rule.keepsModelEps { for j in 0..<x.count { eps[j] = (Double(x[j]) - a * x0[j]) / s } }
        return (x0, eps)
    }
}
