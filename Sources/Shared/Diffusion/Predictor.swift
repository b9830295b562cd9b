// The reverse process asks a predictor for eps_theta(x_t, t, y): an analytic
// one (AnalyticPredictors.swift), a process speaking the stream protocol
// (ExternalPredictor.swift) or a trained `Network` (ModelPredictor.swift).

/// What a predictor answers for a batch: the noise estimate and, for a
/// learned variance, the raw interpolation output v (same size as eps).
///
/// Convention for v (Nichol & Dhariwal 2021, eq. 15): frac = (v + 1) / 2,
/// log Sigma_t = frac log beta_t + (1 - frac) log beta~_t, with the clipped
/// log beta~ (`Schedule.posteriorLogVarianceClipped`) and, when respaced, the
/// respaced beta and beta~.
///
/// `x0`: the predicted x_0 when the predictor's parameterisation gives it directly (x0- and
/// v-prediction); nil means derive it from eps (eq. 4). Solvers take x0^ = x0 ?? from eps, so a
/// v-predictor works at abar = 0, where eps alone cannot give x_0.
public struct Prediction {
    public var eps: [Float]
    public var v: [Float]?
    public var x0: [Float]?
    public init(eps: [Float], v: [Float]? = nil, x0: [Float]? = nil) { self.eps = eps; self.v = v; self.x0 = x0 }
}

/// eps_theta(x_t, t, y). Integration point for a trained model: wrap a
/// `Network` (NN/Network.swift) in a class conforming to this protocol; the
/// samplers, guidance and both tools then work with it unchanged.
public protocol EpsPredictor: AnyObject {
    /// Shape of one sample ([D] or [C, H, W]).
    var sampleShape: [Int] { get }
    /// True when `predict` also returns `v` (learned variance).
    var learnsVariance: Bool { get }
    /// A short description for output metadata (e.g. the command or the analytic spec).
    var describe: String { get }
    /// What the predictor's network predicts (Parameterization.swift). Not eps: its answers carry
    /// `x0` everywhere, also at abar = 0, where a chain may then start (zero terminal SNR).
    var predictionType: PredictionType { get }
    /// `x` holds t.count samples of prod(sampleShape) values, `t` 0-based timesteps
    /// of the FULL schedule, `y` class labels or nil for the unconditional prediction.
    func predict(x: [Float], t: [Int], y: [Int]?) throws -> Prediction
}

extension EpsPredictor {
    public var sampleSize: Int { sampleShape.reduce(1, *) }

    /// eps-prediction unless the predictor says otherwise.
    public var predictionType: PredictionType { .eps }

    /// Calls `predict` and checks the answer's sizes.
    public func checkedPredict(x: [Float], t: [Int], y: [Int]?) throws -> Prediction {
        let p = try predict(x: x, t: t, y: y)
        guard p.eps.count == x.count else {
            throw DDPMError("predictor answered \(p.eps.count) eps values for \(x.count) inputs")
        }
        if let v = p.v, v.count != x.count {
            throw DDPMError("predictor answered \(v.count) v values for \(x.count) inputs")
        }
        if let x0 = p.x0, x0.count != x.count {
            throw DDPMError("predictor answered \(x0.count) x0 values for \(x.count) inputs")
        }
        if let bad = p.x0?.first(where: { !$0.isFinite }) {
            throw DDPMError("predictor answered a non-finite 'x0' (\(bad)) at t = \(t.first ?? 0)")
        }
        return p
    }
}
