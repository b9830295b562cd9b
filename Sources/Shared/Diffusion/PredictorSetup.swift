// Building the noise predictor a tool samples or serves with, written once: a trained model
// (or a conditional / unconditional pair of them), a process speaking the stream protocol, or an
// analytic one; then classifier-free or classifier guidance on top. `denoise` and `guide` both
// describe what they want as a `PredictorSpec` and get a `PredictorSetup` back.

/// Where eps_theta comes from.
public enum PredictorSource: Sendable, Equatable {
    /// A model file written by `train`.
    case model(String)
    /// A conditional and an unconditional model file used as one guided pair.
    case pair(cond: String, uncond: String)
    /// A shell command answering request frames (ExternalPredictor.swift), and the seconds to wait per answer.
    case process(String, timeout: Double)
    /// An analytic Gaussian or Gaussian mixture (AnalyticPredictors.swift).
    case analytic(String)
}

/// Guidance applied on top of the base predictor.
public enum GuidanceSpec: Sendable, Equatable {
    /// eps_uncond + W (eps_cond - eps_uncond), then Lin et al.'s rescale phi (Guidance.swift).
    case classifierFree(scale: Double, rescale: Double)
    /// eps - sqrt(1 - abar_t) S grad log p(y | x_t) with the classifier file at `path`.
    case classifier(path: String, scale: Double)
    /// Classifier-free guidance first, then the classifier's gradient on the guided eps.
    case combined(scale: Double, rescale: Double, classifier: String, classifierScale: Double)

    /// The classifier-free part (W, phi), if any.
    public var classifierFree: (scale: Double, rescale: Double)? {
        switch self {
        case .classifierFree(let w, let phi), .combined(let w, let phi, _, _): return (w, phi)
        case .classifier: return nil
        }
    }
    /// The classifier part (file, S), if any.
    public var classifier: (path: String, scale: Double)? {
        switch self {
        case .classifier(let p, let s), .combined(_, _, let p, let s): return (p, s)
        case .classifierFree: return nil
        }
    }
}

public struct PredictorSpec: Sendable {
    public var source: PredictorSource
    public var weights: WeightChoice = .ema
    public var guidance: GuidanceSpec? = nil
    /// The label every sample gets (nil: the frames' 'y', or none).
    public var label: Int? = nil
    /// A process predictor is asked for v (a learned variance).
    public var processAnswersV = false
    /// What a process predictor's network predicts, as declared by the caller (each answer names its
    /// own type by its tensor: 'eps', 'x0' or 'v_pred'); not eps lets a chain start at abar = 0.
    public var processPrediction: PredictionType = .eps
    public init(source: PredictorSource) { self.source = source }

    public var isModel: Bool {
        switch source { case .model, .pair: return true; default: return false }
    }

    /// Checks of the values themselves.
    public func validate() throws {
        if case .process(_, let timeout) = source, !(timeout > 0 && timeout.isFinite) {
            throw DDPMError("predictor timeout must be a positive number of seconds, got \(timeout)")
        }
        if let label, label < 0 { throw DDPMError("label \(label) is negative") }
        if let (w, phi) = guidance?.classifierFree {
            guard w.isFinite else { throw DDPMError("guidance scale must be finite, got \(w)") }
            guard phi >= 0 && phi <= 1 else { throw DDPMError("guidance rescale must lie in [0, 1], got \(phi)") }
        }
        if let (_, s) = guidance?.classifier {
            guard s.isFinite else { throw DDPMError("classifier guidance scale must be finite, got \(s)") }
            guard case .model = source else { throw DDPMError("classifier guidance needs a model file as the noise predictor") }
        }
        if weights != .ema && !isModel { throw DDPMError("the weight choice '\(weights.rawValue)' applies to model files only") }
    }
}

/// The predictor a spec describes, with what the tools need to know about it.
public final class PredictorSetup {
    public let spec: PredictorSpec
    /// The predictor without guidance, and with it (what the sampler calls).
    public let base: EpsPredictor
    public let predictor: EpsPredictor
    public let schedule: Schedule
    /// The model's data shape (nil for a process or analytic predictor given none).
    public let sampleShape: [Int]?
    /// Number of classes of the model (0: unconditional; nil: not known, a process or analytic predictor).
    public let classes: Int?
    /// The single model file, when the source is one.
    public let model: LoadedModel?
    public let external: ExternalPredictor?

    /// `schedule` is the one to use for a process or analytic predictor; a model brings its own, and
    /// a schedule given with one must equal it.
    public init(spec: PredictorSpec, schedule given: Schedule?, sampleShape: [Int]?) throws {
        try spec.validate()
        self.spec = spec
        var model: LoadedModel? = nil
        var external: ExternalPredictor? = nil
        let base: EpsPredictor, sched: Schedule, shape: [Int]?, classes: Int?
        switch spec.source {
        case .model(let path):
            let m = try ModelFile.load(path: path, weights: spec.weights)
            let mp = try ModelPredictor(model: m, path: path)
            model = m; base = mp; sched = mp.schedule; shape = mp.sampleShape; classes = mp.classes
        case .pair(let c, let u):
            let cond = try ModelPredictor(model: try ModelFile.load(path: c, weights: spec.weights), path: c)
            let uncond = try ModelPredictor(model: try ModelFile.load(path: u, weights: spec.weights), path: u)
            base = try SeparateModelsPredictor(cond: cond, uncond: uncond)
            sched = cond.schedule; shape = cond.sampleShape; classes = cond.classes
        case .process(let command, let timeout):
            sched = given ?? Schedule.standard()
            guard let sampleShape else { throw DDPMError("a predictor process needs the sample shape (D or C,H,W)") }
            let e = try ExternalPredictor(command: command, sampleShape: sampleShape, learnsVariance: spec.processAnswersV, timeout: timeout,
                                          schedule: sched, prediction: spec.processPrediction)
            external = e; base = e; shape = sampleShape; classes = nil
        case .analytic(let text):
            sched = given ?? Schedule.standard()
            base = try GaussianMixturePredictor.parse(text, schedule: sched, sampleShape: sampleShape ?? [])
            shape = sampleShape; classes = nil
        }
        if spec.isModel {
            if let given, given.beta != sched.beta {
                throw DDPMError("the schedule given (T = \(given.T)) differs from the schedule the model was trained with (T = \(sched.T))")
            }
            if let sampleShape, let shape, sampleShape != shape {
                throw DDPMError("sample shape \(sampleShape.map(String.init).joined(separator: ",")) differs from the model's data shape \(shape.map(String.init).joined(separator: ","))")
            }
        }
        let classifierGuided = spec.guidance?.classifier != nil
        if let k = classes {
            if spec.guidance?.classifierFree != nil, k == 0 {
                throw DDPMError("classifier-free guidance needs a class-conditional model; \(Self.name(spec.source)) is unconditional (trained without labels)")
            }
            if let label = spec.label {
                if k == 0 && !classifierGuided { throw DDPMError("label \(label) given, but \(Self.name(spec.source)) is an unconditional model (trained without labels)") }
                if k > 0 && label >= k { throw DDPMError("label \(label) is outside the model's classes 0 ... \(k - 1)") }
            }
        }
        var guided = base
        if let (w, phi) = spec.guidance?.classifierFree {
            guided = ClassifierFreeGuided(base, scale: w, rescale: phi, schedule: sched)
        }
        if let (path, s) = spec.guidance?.classifier {
            let c = try ClassifierGradient(model: try ModelFile.load(path: path, weights: spec.weights), path: path)
            if let shape, c.network.inputShape != shape {
                throw DDPMError("the classifier's input shape \(c.network.inputShape) differs from the model's \(shape)")
            }
            guard c.schedule.beta == sched.beta else { throw DDPMError("\(path) was trained with another schedule than the model") }
            if let label = spec.label, label >= c.classes {
                throw DDPMError("label \(label) is outside the classifier's classes 0 ... \(c.classes - 1)")
            }
            // On the conditional eps when the model is conditional (or classifier-free guided), else the unconditional one.
            let conditional = spec.guidance?.classifierFree != nil || (classes ?? 0) > 0
            guided = ClassifierGuided(guided, schedule: sched, scale: s, conditional: conditional,
                                      gradient: { try c.gradient(x: $0, t: $1, y: $2) })
        }
        self.base = base
        self.predictor = guided
        self.schedule = sched
        self.sampleShape = shape
        self.classes = classes
        self.model = model
        self.external = external
    }

    static func name(_ source: PredictorSource) -> String {
        switch source {
        case .model(let p): return p
        case .pair(let c, _): return c
        case .process(let c, _): return "'\(c)'"
        case .analytic(let s): return "'\(s)'"
        }
    }

    /// The model file's path, when the source is one model.
    public var modelPath: String? { if case .model(let p) = spec.source { return p } else { return nil } }
    /// The predictor gives x0 at every abar (x0- or v-prediction), so a chain may start at abar = 0
    /// (zero terminal SNR) instead of dropping that level (SamplingPlan's `keepTerminal`).
    public var keepsTerminal: Bool { predictor.predictionType != .eps }
    /// The guidance needs labels for every sample.
    public var needsLabels: Bool { spec.guidance != nil }

    /// Metadata describing the predictor in output frames (denoise's samples).
    public func metadata(readsInput: Bool) -> [String: String] {
        var meta = ["predictor": predictor.describe, "T": String(schedule.T), "schedule": schedule.kind.rawValue]
        if predictor.predictionType != .eps { meta["prediction"] = predictor.predictionType.rawValue }
        if let path = modelPath, let model {
            meta["model"] = path; meta["model_summary"] = model.summary; meta["weights"] = spec.weights.rawValue
            if classes == 0 || (spec.label == nil && !readsInput) {
                meta["conditioning"] = classes == 0 ? "unconditional model" : "null class (unconditional)"
            }
        }
        if let (path, s) = spec.guidance?.classifier {
            meta["classifier"] = path; meta["classifier_scale"] = "\(s)"; meta["guidance_kind"] = "classifier"
        }
        if let (w, phi) = spec.guidance?.classifierFree {
            meta["guidance"] = "\(w)"; meta["guidance_rescale"] = "\(phi)"
            meta["guidance_kind"] = spec.guidance?.classifier != nil ? "classifier-free + classifier" : "classifier-free"
        }
        if let label = spec.label { meta["label"] = String(label) }
        return meta
    }

    /// Labels for a batch of `n` samples: the spec's label, else the frame's (already range-checked by
    /// `Batch`); a bare unconditional model ignores a frame's 'y' (labelled data sets carry one).
    public func labels(frameLabels y: [Int]?, count n: Int, frame index: Int) throws -> [Int]? {
        if let label = spec.label { return Array(repeating: label, count: n) }
        if classes == 0 && !needsLabels { return nil }
        guard let y else {
            if needsLabels { throw DDPMError("frame \(index): guidance needs labels: give a label or 'y' in the frames") }
            return nil
        }
        return y
    }

    /// The batch rules for data frames fed to this predictor (shape, labels).
    public func rules(sampleShape shp: [Int]) -> BatchRules {
        var r = BatchRules(sampleShape: shp)
        if spec.label != nil { r.readLabels = false } else if let k = classes, k > 0 { r.classes = k; r.allowNull = true }
        return r
    }

    public func close() { external?.close() }
    /// The end of a successful run: a predictor process must exit without unasked output.
    public func finish() throws { try external?.finish() }
}

extension PredictorSetup {
    /// The predictor of a tool that may read data frames: the schedule from `schedulePath`, else a
    /// leading schedule frame on `reader` (for a model such a frame must equal its schedule), else
    /// the default; the sample shape from `sampleShape`, the model, or the first data frame.
    public static func open(spec: PredictorSpec, schedulePath: String?, sampleShape: [Int]?,
                            reader: FrameReader?) throws -> (PredictorSetup, [Int]) {
        var schedule: Schedule? = nil
        if spec.isModel {
            if schedulePath != nil { throw DDPMError("a model file fixes the schedule it was trained with; no other schedule can be given") }
            if let reader, let first = try reader.next() {
                if first.kind == "schedule" { schedule = try Schedule(frame: first) } else { reader.pushBack(first) }
            }
        } else {
            schedule = try resolveSchedule(path: schedulePath, reader: reader)
        }
        var shape = sampleShape
        if shape == nil, !spec.isModel {
            guard let reader, let first = try reader.next() else {
                throw DDPMError(reader == nil ? "the sample shape (D or C,H,W) is needed" : "no input frames on stdin")
            }
            let x = try first.require("x")
            guard x.shape.count == 2 || x.shape.count == 4 else { throw DDPMError("input 'x' must be [N,D] or [N,C,H,W], got \(x.shape)") }
            shape = Array(x.shape.dropFirst())
            reader.pushBack(first)
        }
        let setup = try PredictorSetup(spec: spec, schedule: schedule, sampleShape: shape)
        return (setup, setup.sampleShape ?? shape!)
    }
}
