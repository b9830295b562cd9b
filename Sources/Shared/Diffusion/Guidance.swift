// Guidance: mixing conditional and unconditional predictions (classifier-free)
// and shifting eps by a classifier's gradient (classifier guidance).
//
// With x0- or v-prediction the answers carry x0 too (Parameterization.swift). Both eps and x0 are
// affine in the network output at fixed x_t, so classifier-free guidance mixes them with the same
// weights and they stay consistent (x_t = a x0 + s eps holds for the mix). The rescale multiplies
// the mixed eps of a sample by c = phi std(eps_cond)/std(eps_cfg) + 1 - phi; the x0 consistent with
// c eps is c x0 + (1 - c) x_t / a (at abar = 0 every eps is x_t, so c = 1 and x0 is kept). Classifier
// guidance shifts eps by -s S g, i.e. x0 by +(s^2 / a) S g (kept at abar = 0, where it is undefined).
//
// Scale conventions. Here W is the weight on the conditional prediction:
//   eps = eps_uncond + W (eps_cond - eps_uncond)
// W = 1 is plain conditional sampling, W = 0 unconditional. Ho & Salimans
// (2021) write eps = (1 + w) eps_cond - w eps_uncond, i.e. w = W - 1.
import Foundation

public enum Guidance {
    /// Classifier-free guidance: eps_uncond + W (eps_cond - eps_uncond)  (Ho & Salimans 2021, eq. 6 with w = W - 1).
    public static func classifierFree(cond: [Float], uncond: [Float], scale w: Double) -> [Float] {
        precondition(cond.count == uncond.count)
        var out = [Float](repeating: 0, count: cond.count)
        for i in 0..<cond.count {
            let u = Double(uncond[i])
            out[i] = Float(u + w * (Double(cond[i]) - u))
        }
        return out
    }

    /// Guidance rescale (Lin et al. 2024, eq. 15-16), per sample of `sampleSize` values:
    ///   x_rescaled = x_cfg std(x_cond) / std(x_cfg);  x = phi x_rescaled + (1 - phi) x_cfg.
    /// Lin et al. apply it to v-predictions; here it is applied to whatever is
    /// mixed (eps for the tools). std is over all values of one sample.
    public static func rescale(guided: [Float], cond: [Float], phi: Double, sampleSize d: Int) -> [Float] {
        precondition(guided.count == cond.count && d > 0 && guided.count % d == 0)
        guard phi != 0 else { return guided }
        var out = guided
        for s in 0..<(guided.count / d) {
            let r = s * d ..< (s + 1) * d
            let sc = standardDeviation(cond[r]), sg = standardDeviation(guided[r])
            let factor = sg > 0 ? sc / sg : 1
            for i in r {
                let g = Double(guided[i])
                out[i] = Float(phi * g * factor + (1 - phi) * g)
            }
        }
        return out
    }

    /// Classifier-free guidance followed by the rescale (phi = 0: none).
    public static func mix(cond: [Float], uncond: [Float], scale w: Double, rescale phi: Double, sampleSize d: Int) -> [Float] {
        let g = classifierFree(cond: cond, uncond: uncond, scale: w)
        return phi == 0 ? g : rescale(guided: g, cond: cond, phi: phi, sampleSize: d)
    }

    /// Classifier guidance: eps~ = eps - sqrt(1 - abar_t) S grad_x log p(y | x_t)
    /// (Dhariwal & Nichol 2021, Algorithm 2 / eq. 14). `gradient` per element, `sqrtOneMinusAlphaBar` per sample.
    public static func classifier(eps: [Float], gradient: [Float], sqrtOneMinusAlphaBar s: [Double], scale: Double) -> [Float] {
        precondition(eps.count == gradient.count && !s.isEmpty && eps.count % s.count == 0)
        let d = eps.count / s.count
        var out = eps
        for i in 0..<eps.count {
            out[i] = Float(Double(eps[i]) - s[i / d] * scale * Double(gradient[i]))
        }
        return out
    }

    /// Population standard deviation of a slice, in Double.
    static func standardDeviation(_ a: ArraySlice<Float>) -> Double {
        guard !a.isEmpty else { return 0 }
        var m = 0.0
        for v in a { m += Double(v) }
        m /= Double(a.count)
        var q = 0.0
        for v in a { q += (Double(v) - m) * (Double(v) - m) }
        return (q / Double(a.count)).squareRoot()
    }
}

/// A predictor with classifier-free guidance built in: predict(y) mixes the
/// base's conditional answer with its unconditional one (y = nil).
public final class ClassifierFreeGuided: EpsPredictor {
    public let base: EpsPredictor
    public let scale: Double
    public let rescale: Double
    /// The schedule of the timesteps asked (for the x0 of a rescaled mix).
    public let schedule: Schedule?
    public init(_ base: EpsPredictor, scale: Double, rescale: Double = 0, schedule: Schedule? = nil) {
        self.base = base; self.scale = scale; self.rescale = rescale; self.schedule = schedule
    }
    public var sampleShape: [Int] { base.sampleShape }
    public var learnsVariance: Bool { base.learnsVariance }
    public var predictionType: PredictionType { base.predictionType }
    public var describe: String { base.describe }
    public func predict(x: [Float], t: [Int], y: [Int]?) throws -> Prediction {
        guard let y else { throw DDPMError("classifier-free guidance needs class labels (a label or 'y' in the input)") }
        // W = 1 mixes to the conditional answer exactly (u + (c - u) = c in Double; the rescale
        // factor is then 1): one forward instead of the pair.
        if scale == 1 { return try base.checkedPredict(x: x, t: t, y: y) }
        let c: Prediction, u: Prediction
        if let pair = base as? PairPredictor {
            // A model answers both in one batched forward ([x | x] with labels [y | null]).
            (c, u) = try pair.predictPair(x: x, t: t, y: y)
            guard c.eps.count == x.count, u.eps.count == x.count else { throw DDPMError("predictor answered a pair of the wrong size") }
        } else {
            c = try base.checkedPredict(x: x, t: t, y: y)
            u = try base.checkedPredict(x: x, t: t, y: nil)
        }
        // The learned variance is taken from the conditional answer.
        let eps = Guidance.mix(cond: c.eps, uncond: u.eps, scale: scale, rescale: rescale, sampleSize: base.sampleSize)
        guard c.x0 != nil || u.x0 != nil else { return Prediction(eps: eps, v: c.v) }
        guard let cx = c.x0, let ux = u.x0 else { throw DDPMError("classifier-free guidance: one answer of the pair has x0, the other not") }
        var x0 = Guidance.classifierFree(cond: cx, uncond: ux, scale: scale)
        if rescale != 0 {
            guard let schedule else { throw DDPMError("classifier-free guidance rescale of x0 needs the schedule") }
            let d = base.sampleSize
            let plain = Guidance.classifierFree(cond: c.eps, uncond: u.eps, scale: scale)
            for smp in 0..<t.count {
                let a = schedule.sqrtAlphaBar[t[smp]]
                let r = smp * d ..< (smp + 1) * d
                // c of `Guidance.rescale` for this sample.
                let sc = Guidance.standardDeviation(c.eps[r]), sg = Guidance.standardDeviation(plain[r])
                let k = rescale * (sg > 0 ? sc / sg : 1) + 1 - rescale
                guard a > 0, k != 1 else { continue }
                for i in r { x0[i] = Float(k * Double(x0[i]) + (1 - k) * Double(x[i]) / a) }
            }
        }
        return Prediction(eps: eps, v: c.v, x0: x0)
    }
}

/// A predictor with classifier guidance: eps~ = eps - sqrt(1 - abar_t) S grad log p(y | x_t).
/// `gradient(x, t, y)` returns grad_x log p(y | x_t) per element. `conditional`: eps is the base's
/// answer for the labels y (a conditional model, or classifier-free guidance under it), else its
/// unconditional one (y = nil), as for an unconditional model (Dhariwal & Nichol 2021, Algorithm 2
/// conditions eps on y when the model takes labels).
public final class ClassifierGuided: EpsPredictor {
    public let base: EpsPredictor
    public let scale: Double
    public let schedule: Schedule
    public let gradient: ([Float], [Int], [Int]) throws -> [Float]
    public let conditional: Bool
    public init(_ base: EpsPredictor, schedule: Schedule, scale: Double, conditional: Bool = false,
                gradient: @escaping ([Float], [Int], [Int]) throws -> [Float]) {
        self.base = base; self.schedule = schedule; self.scale = scale; self.conditional = conditional; self.gradient = gradient
    }
    public var sampleShape: [Int] { base.sampleShape }
    public var learnsVariance: Bool { base.learnsVariance }
    public var predictionType: PredictionType { base.predictionType }
    public var describe: String { base.describe + " + classifier" }
    public func predict(x: [Float], t: [Int], y: [Int]?) throws -> Prediction {
        guard let y else { throw DDPMError("classifier guidance needs class labels") }
        var p = try base.checkedPredict(x: x, t: t, y: conditional ? y : nil)
        let g = try gradient(x, t, y)
        guard g.count == x.count else { throw DDPMError("classifier gradient has \(g.count) values for \(x.count) inputs") }
        p.eps = Guidance.classifier(eps: p.eps, gradient: g, sqrtOneMinusAlphaBar: t.map { schedule.sqrtOneMinusAlphaBar[$0] }, scale: scale)
        if var x0 = p.x0 {
            // x0 + (s^2 / a) S g, consistent with the shifted eps (kept where a = 0).
            let d = x.count / max(t.count, 1)
            for i in 0..<x0.count {
                let ab = schedule.alphaBar[t[i / d]]
                guard ab > 0 else { continue }
                x0[i] = Float(Double(x0[i]) + (1 - ab) / ab.squareRoot() * scale * Double(g[i]))
            }
            p.x0 = x0
        }
        return p
    }
}
