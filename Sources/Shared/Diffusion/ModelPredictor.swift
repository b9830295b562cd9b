// Trained networks as predictors of the reverse process: a model file's `Network` behind the
// `EpsPredictor` protocol (Predictor.swift), the batched conditional/null pair that classifier-free
// guidance needs, two separate models as one guided pair, and a noise-aware classifier's
// grad_x log p_phi(y | x_t, t) for classifier guidance (Dhariwal & Nichol 2021, Algorithm 1-2).
import Foundation

/// A predictor that can answer the conditional and the unconditional prediction of one batch
/// together (for a model: ONE forward over [x | x] with labels [y | null]).
/// `ClassifierFreeGuided` uses this when its base offers it.
public protocol PairPredictor: EpsPredictor {
    func predictPair(x: [Float], t: [Int], y: [Int]) throws -> (cond: Prediction, uncond: Prediction)
}

/// eps_theta(x_t, t, y) of a trained network (forward with `training: false`).
///
/// * Output layout: `outputShape` equal to the input shape -> eps only; doubled first dimension
///   (channels, or D for vectors) -> per sample [eps (M values) | v (M values)], the learned variance
///   of Nichol & Dhariwal (2021) eq. 15 (see `Prediction`).
/// * The eps part is the network's target of `prediction` (eps, x0 or v; Parameterization.swift),
///   converted to eps and x0 at x_t (x0 stays nil for eps-prediction).
/// * y = nil on a class-conditional network asks for the null class (label K); labels on an
///   unconditional network are an error (a silently ignored label would be a wrong result).
/// * Batches larger than `maxBatch` are run in chunks (outputs are per sample, so chunking does
///   not change them beyond the network's own summation order).
public final class ModelPredictor: PairPredictor {
    public let network: Network
    public let schedule: Schedule
    /// K (0: unconditional). Label K is the null class.
    public let classes: Int
    public let sampleShape: [Int]
    public let learnsVariance: Bool
    /// What the network was trained to predict (the model file's `prediction`).
    public let prediction: PredictionType
    public var maxBatch: Int
    public let describe: String

    public var predictionType: PredictionType { prediction }

    public init(network: Network, schedule: Schedule, prediction: PredictionType = .eps, describe: String = "model", maxBatch: Int? = nil) throws {
        let inShape = network.inputShape, outShape = network.outputShape
        let m = inShape.reduce(1, *)
        if outShape == inShape {
            learnsVariance = false
        } else if outShape.count == inShape.count, outShape.reduce(1, *) == 2 * m, outShape[0] == 2 * inShape[0] {
            learnsVariance = true
        } else {
            throw DDPMError("the network's output shape \(outShape) is neither its input shape \(inShape) nor [eps | v] (doubled channels): not a noise predictor")
        }
        self.network = network
        self.schedule = schedule
        self.prediction = prediction
        self.classes = network.classes
        self.sampleShape = inShape
        self.describe = describe
        // MLPs are cheap per sample; convolutional networks hold large activations per sample.
        self.maxBatch = max(1, maxBatch ?? (network.config.kind == .mlp ? 8192 : 256))
    }

    /// Wraps a model file (`ModelFile.load`): its network and its schedule.
    public convenience init(model: LoadedModel, path: String, maxBatch: Int? = nil) throws {
        guard model.metadata["kind"] != "classifier" else {
            throw DDPMError("\(path) is a classifier (kind=classifier), not a noise-prediction model; it guides a model, it does not predict noise")
        }
        let prediction: PredictionType
        do { prediction = try model.predictionType() } catch let e as DDPMError { throw DDPMError("\(path): \(e.message)") }
        try self.init(network: model.network, schedule: model.schedule, prediction: prediction,
                      describe: "model: " + path, maxBatch: maxBatch)
    }

    /// The labels the network sees: y, or the null class K for y = nil on a conditional network.
    func networkLabels(_ y: [Int]?, count n: Int) throws -> [Int]? {
        guard let y else { return classes > 0 ? Array(repeating: classes, count: n) : nil }
        guard classes > 0 else { throw DDPMError("class labels given to an unconditional model (it was trained without 'y')") }
        guard y.count == n else { throw DDPMError("\(y.count) class labels for \(n) samples") }
        if let bad = y.first(where: { $0 < 0 || $0 > classes }) {
            throw DDPMError("class label \(bad) outside 0 ... \(classes - 1) (\(classes) is the null class)")
        }
        return y
    }

    /// The raw network output [n, outputCount] for labels already mapped, in chunks of `maxBatch`.
    func forward(x: [Float], t: [Int], labels: [Int]?) throws -> [Float] {
        let n = t.count, m = sampleSize
        guard x.count == n * m else { throw DDPMError("model predictor: \(x.count) values for \(n) samples of shape \(sampleShape)") }
        if let bad = t.first(where: { $0 < 0 || $0 >= schedule.T }) {
            throw DDPMError("timestep \(bad) outside 0 ... \(schedule.T - 1) (the model's schedule has T = \(schedule.T))")
        }
        if n <= maxBatch { return network.forward(x, t: t, y: labels, training: false) }
        let w = network.outputShape.reduce(1, *)
        var out = [Float](repeating: 0, count: n * w)
        var start = 0
        while start < n {
            let b = min(maxBatch, n - start)
            let o = network.forward(Array(x[start * m ..< (start + b) * m]), t: Array(t[start ..< start + b]),
                                    y: labels.map { Array($0[start ..< start + b]) }, training: false)
            out.replaceSubrange(start * w ..< (start + b) * w, with: o)
            start += b
        }
        return out
    }

    /// Splits per-sample [out | v] rows (or out rows) of the output and converts out (of type
    /// `prediction`) at x_t and t to eps and x0.
    func split(_ out: [Float], x: [Float], t: [Int]) -> Prediction {
        Parameterization.prediction(raw: split(out, count: t.count), x: x, alphaBar: t.map { schedule.alphaBar[$0] }, type: prediction)
    }

    /// Splits per-sample [out | v] rows (or out rows) of the output, unconverted.
    func split(_ out: [Float], count n: Int) -> Prediction {
        guard learnsVariance else { return Prediction(eps: out) }
        let m = sampleSize
        var eps = [Float](repeating: 0, count: n * m), v = [Float](repeating: 0, count: n * m)
        for s in 0..<n {
            eps.replaceSubrange(s * m ..< (s + 1) * m, with: out[2 * s * m ..< (2 * s + 1) * m])
            v.replaceSubrange(s * m ..< (s + 1) * m, with: out[(2 * s + 1) * m ..< (2 * s + 2) * m])
        }
        return Prediction(eps: eps, v: v)
    }

    public func predict(x: [Float], t: [Int], y: [Int]?) throws -> Prediction {
        let labels = try networkLabels(y, count: t.count)
        return split(try forward(x: x, t: t, labels: labels), x: x, t: t)
    }

    /// Conditional and null-class predictions from one forward over the doubled batch
    /// [x | x], t twice, labels [y | K].
    public func predictPair(x: [Float], t: [Int], y: [Int]) throws -> (cond: Prediction, uncond: Prediction) {
        guard classes > 0 else { throw DDPMError("classifier-free guidance needs a class-conditional model (this one has no classes)") }
        let n = t.count
        let labels = try networkLabels(y, count: n)! + Array(repeating: classes, count: n)
        let out = split(try forward(x: x + x, t: t + t, labels: labels), x: x + x, t: t + t)
        let m = n * sampleSize
        let cond = Prediction(eps: Array(out.eps[..<m]), v: out.v.map { Array($0[..<m]) }, x0: out.x0.map { Array($0[..<m]) })
        let uncond = Prediction(eps: Array(out.eps[m...]), v: out.v.map { Array($0[m...]) }, x0: out.x0.map { Array($0[m...]) })
        return (cond, uncond)
    }
}

/// Two separate models as one guided pair: y -> the conditional model, y = nil -> the
/// unconditional one (its null class when it is conditional). For `guide --cond M1 --uncond M2`.
public final class SeparateModelsPredictor: PairPredictor {
    public let cond: ModelPredictor
    public let uncond: ModelPredictor
    public init(cond: ModelPredictor, uncond: ModelPredictor) throws {
        guard cond.sampleShape == uncond.sampleShape else {
            throw DDPMError("the conditional model's sample shape \(cond.sampleShape) differs from the unconditional model's \(uncond.sampleShape)")
        }
        guard cond.schedule.beta == uncond.schedule.beta else {
            throw DDPMError("the conditional and unconditional models were trained with different schedules")
        }
        guard cond.classes > 0 else { throw DDPMError("the conditional model of the pair is unconditional (trained without labels)") }
        // Mixing eps and x0 of two types is consistent, but a chain kept at abar = 0 needs x0 from both.
        guard (cond.prediction == .eps) == (uncond.prediction == .eps) else {
            throw DDPMError("the conditional model predicts \(cond.prediction.rawValue), the unconditional one \(uncond.prediction.rawValue): eps-prediction cannot be paired with x0- or v-prediction")
        }
        self.cond = cond; self.uncond = uncond
    }
    public var sampleShape: [Int] { cond.sampleShape }
    /// v comes from the conditional model (as in `ClassifierFreeGuided`).
    public var learnsVariance: Bool { cond.learnsVariance }
    public var predictionType: PredictionType { cond.prediction }
    public var describe: String { "cond " + cond.describe + ", uncond " + uncond.describe }
    public func predict(x: [Float], t: [Int], y: [Int]?) throws -> Prediction {
        try y == nil ? uncond.predict(x: x, t: t, y: nil) : cond.predict(x: x, t: t, y: y)
    }
    public func predictPair(x: [Float], t: [Int], y: [Int]) throws -> (cond: Prediction, uncond: Prediction) {
        (try cond.predict(x: x, t: t, y: y), try uncond.predict(x: x, t: t, y: nil))
    }
}

/// A noise-aware classifier p_phi(y | x_t, t) (kind = classifier) giving
/// grad_{x_t} log p_phi(y | x_t, t) for `ClassifierGuided` (`classifierLogProbGradient`:
/// forward, log-softmax, backward to the input), in chunks of `maxBatch`.
public final class ClassifierGradient {
    public let network: Network
    public let classes: Int
    public let schedule: Schedule
    public let maxBatch: Int

    public init(network: Network, schedule: Schedule, maxBatch: Int = 4096) throws {
        guard network.outputShape.count == 1 else { throw DDPMError("not a classifier: output shape \(network.outputShape)") }
        self.network = network
        self.classes = network.outputShape[0]
        self.schedule = schedule
        self.maxBatch = max(1, maxBatch)
    }

    public convenience init(model: LoadedModel, path: String) throws {
        guard model.metadata["kind"] == "classifier" || model.metadata["objective"] == "classifier" else {
            throw DDPMError("\(path) is not a classifier (kind '\(model.metadata["kind"] ?? "none")': a noise-aware classifier file is written by train's classifier mode)")
        }
        try self.init(network: model.network, schedule: model.schedule)
    }

    /// log p(y | x_t, t) per sample and its gradient with respect to x_t.
    public func logProbAndGradient(x: [Float], t: [Int], y: [Int]) throws -> (logProb: [Double], gradient: [Float]) {
        let n = t.count, m = network.inputShape.reduce(1, *)
        guard x.count == n * m, y.count == n else { throw DDPMError("classifier: \(x.count) values, \(y.count) labels for \(n) samples of \(m)") }
        if let bad = y.first(where: { $0 < 0 || $0 >= classes }) {
            throw DDPMError("label \(bad) outside the classifier's classes 0 ... \(classes - 1)")
        }
        if let bad = t.first(where: { $0 < 0 || $0 >= schedule.T }) { throw DDPMError("timestep \(bad) outside 0 ... \(schedule.T - 1)") }
        var logProb: [Double] = [], gradient: [Float] = []
        logProb.reserveCapacity(n); gradient.reserveCapacity(n * m)
        var start = 0
        while start < n {
            let b = min(maxBatch, n - start)
            let r = classifierLogProbGradient(network, x: Array(x[start * m ..< (start + b) * m]),
                                              t: Array(t[start ..< start + b]), y: Array(y[start ..< start + b]))
            logProb += r.logProb; gradient += r.gradient
            start += b
        }
        return (logProb, gradient)
    }

    public func gradient(x: [Float], t: [Int], y: [Int]) throws -> [Float] {
        try logProbAndGradient(x: x, t: t, y: y).gradient
    }
}

extension LoadedModel {
    /// A one-line summary of the training metadata for output frames
    /// (e.g. "kind=model arch=mlp loss=simple classes=0 data_shape=2 steps=3000 seed=0 T=1000 schedule=linear").
    public var summary: String {
        var parts: [String] = []
        for k in ["kind", "arch.arch", "loss", "prediction", "weighting", "classes", "p_uncond", "data_shape", "data_count", "steps", "batch", "lr",
                  "seed", "T", "schedule", "ema_decay", "decoder", "toolkit_version"] {
            if let v = metadata[k] { parts.append((k == "arch.arch" ? "arch" : k) + "=" + v) }
        }
        return parts.joined(separator: " ")
    }
}
