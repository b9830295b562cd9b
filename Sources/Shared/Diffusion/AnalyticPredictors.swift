// Exact eps* for data whose noised marginals are closed-form: isotropic
// Gaussians and mixtures of them. They make the samplers testable exactly and
// let the predictor protocol be shown without a trained model.
//
// For x_0 ~ N(mu 1, sigma^2 I): q_t(x_t) = N(sqrt(abar) mu 1, (abar sigma^2 + 1 - abar) I), so
//   eps*(x_t, t) = -sqrt(1 - abar) grad log q_t = sqrt(1 - abar) (x_t - sqrt(abar) mu) / (abar sigma^2 + 1 - abar).
// For a mixture sum_k w_k N(mu_k 1, sigma_k^2 I): eps* = sum_k r_k(x_t) eps*_k with r_k the
// posterior probability of component k given x_t (Tweedie: the score of a mixture).
// x0*_k = E[x_0 | x_t, k] = ((1 - abar) mu + sqrt(abar) sigma^2 x_t) / (abar sigma^2 + 1 - abar), the x_0
// of eps*_k by eq. 4 and defined at abar = 0 too (= mu); the mixture's is sum_k r_k x0*_k.
import Foundation

/// One isotropic Gaussian component: every coordinate ~ N(mu, sigma^2) independently.
public struct GaussianComponent: Sendable, Equatable {
    public var mu: Double
    public var sigma: Double
    public var weight: Double
    public init(mu: Double, sigma: Double, weight: Double = 1) { self.mu = mu; self.sigma = sigma; self.weight = weight }

    /// Variance of the noised marginal per coordinate: abar sigma^2 + 1 - abar.
    @inline(__always) public func noisedVariance(_ abar: Double) -> Double { abar * sigma * sigma + 1 - abar }

    /// eps*_k(x, t) for one coordinate.
    @inline(__always) public func eps(_ x: Double, alphaBar abar: Double) -> Double {
        (1 - abar).squareRoot() * (x - abar.squareRoot() * mu) / noisedVariance(abar)
    }

    /// x0*_k(x, t) for one coordinate.
    @inline(__always) public func x0(_ x: Double, alphaBar abar: Double) -> Double {
        ((1 - abar) * mu + abar.squareRoot() * sigma * sigma * x) / noisedVariance(abar)
    }
}

/// The exact predictor for a Gaussian mixture. With labels, y = k answers for
/// component k alone (class-conditional); without labels (y = nil) for the
/// whole mixture, or for `null` when given (a separate unconditional model).
/// A constant `v` makes it answer a learned-variance output too. `prediction` other than eps makes
/// it answer x0 as well (as an x0- or v-prediction network would), exact at every abar.
public final class GaussianMixturePredictor: EpsPredictor {
    public let components: [GaussianComponent]
    public let null: GaussianComponent?
    public let schedule: Schedule
    public let constantV: Double?
    public var sampleShape: [Int]
    public let spec: String
    public let prediction: PredictionType

    public init(components: [GaussianComponent], null: GaussianComponent? = nil, schedule: Schedule,
                sampleShape: [Int], v: Double? = nil, spec: String? = nil, prediction: PredictionType = .eps) {
        self.prediction = prediction
        precondition(!components.isEmpty)
        let total = components.reduce(0) { $0 + $1.weight }
        self.components = components.map { GaussianComponent(mu: $0.mu, sigma: $0.sigma, weight: $0.weight / total) }
        self.null = null
        self.schedule = schedule
        self.constantV = v
        self.sampleShape = sampleShape
        self.spec = spec ?? "mixture"
    }

    public var learnsVariance: Bool { constantV != nil }
    public var predictionType: PredictionType { prediction }
    public var describe: String { "analytic: " + spec }

    /// Parses `gaussian mu=M sigma=S [v=V] [null=M,S] [prediction=eps|x0|v]` or
    /// `mixture mu=M1,M2,.. sigma=S1,S2,.. [weight=W1,W2,..] [v=V] [null=M,S] [prediction=eps|x0|v]`
    /// (`prediction`: answer x0 too, as a network of that type; served by `guide` as 'v_pred').
    public static func parse(_ spec: String, schedule: Schedule, sampleShape: [Int]) throws -> GaussianMixturePredictor {
        let words = spec.split(whereSeparator: { $0 == " " || $0 == "\t" }).map(String.init)
        guard let kind = words.first, kind == "gaussian" || kind == "mixture" else {
            throw DDPMError("analytic spec '\(spec)': expected 'gaussian mu=M sigma=S' or 'mixture mu=M1,M2 sigma=S1,S2 weight=W1,W2'")
        }
        var fields: [String: [Double]] = [:]
        var prediction = PredictionType.eps
        for w in words.dropFirst() {
            let kv = w.split(separator: "=", maxSplits: 1).map(String.init)
            if kv.count == 2, kv[0] == "prediction" {
                guard let p = PredictionType(rawValue: kv[1]) else {
                    throw DDPMError("analytic spec '\(spec)': 'prediction' must be eps, x0 or v, got '\(kv[1])'")
                }
                prediction = p
                continue
            }
            guard kv.count == 2, ["mu", "sigma", "weight", "v", "null"].contains(kv[0]) else {
                throw DDPMError("analytic spec '\(spec)': unknown or malformed field '\(w)' (fields: mu, sigma, weight, v, null, prediction)")
            }
            let values = kv[1].split(separator: ",").map { Double($0) }
            guard !values.isEmpty, values.allSatisfy({ $0 != nil && $0!.isFinite }) else {
                throw DDPMError("analytic spec '\(spec)': '\(kv[0])' needs finite numbers, got '\(kv[1])'")
            }
            fields[kv[0]] = values.map { $0! }
        }
        guard let mu = fields["mu"], let sigma = fields["sigma"] else { throw DDPMError("analytic spec '\(spec)': needs mu= and sigma=") }
        let k = mu.count
        if kind == "gaussian" && k != 1 { throw DDPMError("analytic spec '\(spec)': 'gaussian' takes one mu (use 'mixture' for several)") }
        let sig = sigma.count == 1 ? Array(repeating: sigma[0], count: k) : sigma
        let wts = fields["weight"] ?? Array(repeating: 1, count: k)
        guard sig.count == k, wts.count == k else { throw DDPMError("analytic spec '\(spec)': mu, sigma and weight need the same number of values") }
        guard sig.allSatisfy({ $0 >= 0 }), wts.allSatisfy({ $0 > 0 }) else { throw DDPMError("analytic spec '\(spec)': sigma must be >= 0 and weights > 0") }
        var null: GaussianComponent? = nil
        if let n = fields["null"] {
            guard n.count == 2, n[1] >= 0 else { throw DDPMError("analytic spec '\(spec)': null=M,S needs a mean and a sigma >= 0") }
            null = GaussianComponent(mu: n[0], sigma: n[1])
        }
        var v: Double? = nil
        if let vv = fields["v"] { guard vv.count == 1 else { throw DDPMError("analytic spec '\(spec)': v takes one value") }; v = vv[0] }
        return GaussianMixturePredictor(components: (0..<k).map { GaussianComponent(mu: mu[$0], sigma: sig[$0], weight: wts[$0]) },
                                        null: null, schedule: schedule, sampleShape: sampleShape, v: v, spec: spec, prediction: prediction)
    }

    public func predict(x: [Float], t: [Int], y: [Int]?) throws -> Prediction {
        let n = t.count
        guard n > 0, x.count % n == 0 else { throw DDPMError("analytic predictor: \(x.count) values for \(n) timesteps") }
        let d = x.count / n
        var eps = [Float](repeating: 0, count: x.count)
        var x0: [Float]? = prediction == .eps ? nil : eps
        for s in 0..<n {
            guard t[s] >= 0 && t[s] < schedule.T else { throw DDPMError("analytic predictor: t = \(t[s]) outside 0 ... \(schedule.T - 1)") }
            let abar = schedule.alphaBar[t[s]]
            let r = s * d ..< (s + 1) * d
            var single: GaussianComponent? = nil
            if let y {
                guard y[s] >= 0 && y[s] < components.count else {
                    throw DDPMError("analytic predictor: label \(y[s]) outside 0 ... \(components.count - 1)")
                }
                single = components[y[s]]
            } else if let null { single = null
            } else if components.count == 1 { single = components[0] }
            if let c = single {
                for i in r { eps[i] = Float(c.eps(Double(x[i]), alphaBar: abar)) }
                if x0 != nil { for i in r { x0![i] = Float(c.x0(Double(x[i]), alphaBar: abar)) } }
                continue
            }
            // Responsibilities r_k ∝ w_k N(x; sqrt(abar) mu_k, v_k I), in log space.
            let sa = abar.squareRoot()
            var logr = components.map { c -> Double in
                let v = c.noisedVariance(abar)
                var q = 0.0
                for i in r { let e = Double(x[i]) - sa * c.mu; q += e * e }
                return log(c.weight) - 0.5 * Double(d) * log(v) - q / (2 * v)
            }
            let m = logr.max()!
            var z = 0.0
            for k in 0..<logr.count { logr[k] = exp(logr[k] - m); z += logr[k] }
            for i in r {
                var e = 0.0
                for (k, c) in components.enumerated() { e += logr[k] / z * c.eps(Double(x[i]), alphaBar: abar) }
                eps[i] = Float(e)
                if x0 != nil {
                    var e0 = 0.0
                    for (k, c) in components.enumerated() { e0 += logr[k] / z * c.x0(Double(x[i]), alphaBar: abar) }
                    x0![i] = Float(e0)
                }
            }
        }
        let v = constantV.map { [Float](repeating: Float($0), count: x.count) }
        return Prediction(eps: eps, v: v, x0: x0)
    }
}

/// An analytic classifier: log p(y | x_t) = log q_t(x_t | y) - log q_t(x_t) + const with both
/// noised marginals Gaussian (class y's component against a reference component), so
///   grad_x log p(y | x_t) = -(x - sqrt(abar) mu_y) / v_y + (x - sqrt(abar) mu_ref) / v_ref,
/// v = abar sigma^2 + 1 - abar. With equal sigmas it is constant in x.
public struct GaussianRatioClassifier {
    public var classes: [GaussianComponent]
    public var reference: GaussianComponent
    public var schedule: Schedule
    public init(classes: [GaussianComponent], reference: GaussianComponent, schedule: Schedule) {
        self.classes = classes; self.reference = reference; self.schedule = schedule
    }

    public func gradient(x: [Float], t: [Int], y: [Int]) throws -> [Float] {
        let n = t.count, d = x.count / max(n, 1)
        var g = [Float](repeating: 0, count: x.count)
        for s in 0..<n {
            guard y[s] >= 0 && y[s] < classes.count else { throw DDPMError("classifier: label \(y[s]) out of range") }
            let abar = schedule.alphaBar[t[s]], sa = abar.squareRoot()
            let c = classes[y[s]], vc = c.noisedVariance(abar), vr = reference.noisedVariance(abar)
            for i in s * d ..< (s + 1) * d {
                let xv = Double(x[i])
                g[i] = Float(-(xv - sa * c.mu) / vc + (xv - sa * reference.mu) / vr)
            }
        }
        return g
    }
}
