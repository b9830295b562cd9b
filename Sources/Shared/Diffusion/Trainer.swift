// The training loop of a noise-prediction network (Ho et al. 2020, Algorithm 1; the target eps,
// x_0 or v and the Min-SNR weighting in Losses.swift / Parameterization.swift), with the
// hybrid loss option (Nichol & Dhariwal 2021), classifier-free label dropout (Ho & Salimans
// 2022), AdamW with warm-up and clipping, and an EMA of the weights.
//
// Every random draw is a pure function of (seed, purpose, index), so training N steps in one
// go and N/2 + N/2 with a resume give bit-identical weights:
//   data order   RandomStream(seed, .shuffle, index: epoch): a Fisher-Yates permutation per epoch;
//                the i-th example of step k is example g = k * batch + i of the endless sequence
//                epoch 0, epoch 1, ... (epoch = g / N, position g % N).
//   t            RandomStream(seed, .timestep, index: g).nextInt(below: T)
//   eps          RandomStream(seed, .noise, index: g), M normals
//   label drop   RandomStream(seed, .labelDrop, index: g).nextUniform() < pUncond -> null class K
// so the RNG position of a run is its step number k.
//
// Data-parallel (a Communicator of N ranks): rank r takes the examples i in
// floor(r B / N) ..< floor((r + 1) B / N) of every step, the same g as one process, with dropout
// masks keyed by i (UNet.firstExample). Each example's loss gradient carries 1/B (the global
// batch), so the sum over ranks is the gradient of the batch mean; ONE all-reduce (sum) over the
// flat gradient buffer before clipping, then every rank applies the same AdamW + EMA. The sums
// over the batch are grouped by rank, not as one process groups them: docs/PARALLEL.md bounds it.
import Foundation

/// Training examples held in memory: every frame's `x` (and `y`) concatenated.
public struct TrainingData {
    /// count * prod(sampleShape) values.
    public let x: [Float]
    /// Class labels, one per example, or nil when the stream has none.
    public let y: [Int]?
    public let sampleShape: [Int]
    public let count: Int
    public var sampleCount: Int { sampleShape.reduce(1, *) }

    public init(x: [Float], y: [Int]?, sampleShape: [Int]) {
        self.x = x
        self.y = y
        self.sampleShape = sampleShape
        self.count = x.count / max(1, sampleShape.reduce(1, *))
    }

    /// Validates (`Batch`, frame by frame) and concatenates a data stream: every frame needs `x`
    /// (F32 or F64, [N, D] or [N, C, H, W]) of one sample shape; `y`, if present in one frame, must
    /// be in all, integer (I64/I32/U8), [N], >= 0. Frames of kind `schedule` are skipped.
    public init(frames: [Frame]) throws {
        var xs: [Float] = []
        var ys: [Int] = []
        var shape: [Int]? = nil
        var hasY: Bool? = nil
        var n = 0
        for (k, f) in frames.enumerated() where f.kind != "schedule" {
            let frameNo = k + 1
            let batch = try Batch(frame: f, index: frameNo, rules: BatchRules(timesteps: false))
            if let shape, shape != batch.sampleShape {
                throw DDPMError("frame \(frameNo): 'x' samples have shape \(batch.sampleShape), earlier frames \(shape); mixed shapes cannot be trained together")
            }
            shape = batch.sampleShape
            if let hasY, hasY != (batch.y != nil) {
                throw DDPMError("frame \(frameNo): \(batch.y == nil ? "has no 'y' but earlier frames do" : "has 'y' but earlier frames do not")")
            }
            hasY = batch.y != nil
            if let y = batch.y { ys.append(contentsOf: y) }
            xs.append(contentsOf: batch.x)
            n += batch.count
        }
        guard let shape, n > 0 else { throw DDPMError("no training data: the stream holds no frames with 'x'") }
        self.x = xs
        self.y = hasY == true ? ys : nil
        self.sampleShape = shape
        self.count = n
    }

    /// The number of classes the labels imply: max(y) + 1, or 0 without labels.
    public var inferredClasses: Int { (y?.max()).map { $0 + 1 } ?? 0 }
}

/// What is trained: the eps-prediction network, or the noise-aware classifier p(y | x_t, t).
public enum TrainObjective: String, Codable, Sendable {
    case denoiser, classifier
}

/// Everything that shapes a training run besides the network and the data. The defaults are
/// these, the optimizer's (OptimizerConfig) and, for batch and lr, the network's (`defaults(for:)`).
public struct TrainConfig: Sendable {
    public var objective: TrainObjective = .denoiser
    public var batch: Int = 64
    public var seed: UInt64 = 0
    public var loss: LossKind = .simple
    public var vlbWeight: Double = 0.001
    /// The network's target (eps, x0 or v).
    public var prediction: PredictionType = .eps
    /// The per-sample weight of the MSE, and gamma of Min-SNR-gamma (Hang et al. 2023 use 5).
    public var weighting: LossWeighting = .uniform
    public var snrGamma: Double = 5
    /// Number of classes K (0 = unconditional: labels are not given to the network).
    public var classes: Int = 0
    /// Probability of replacing a label by the null class K (classifier-free guidance training).
    public var pUncond: Double = 0.1
    public var optimizer = OptimizerConfig()
    public var emaDecay: Double = 0.9999
    public init() {}
}

public final class Trainer {
    /// Values of one batch (batch x sample size) at most: each of x0, x_t and eps is one such buffer.
    public static let maxBatchValues = 1 << 28
    public let network: Network
    public let schedule: Schedule
    public let data: TrainingData
    public let config: TrainConfig
    public let loss: DiffusionLoss
    public let optimizer: AdamW
    public let ema: EMA
    /// Called before each forward with the step number (e.g. to key dropout masks by step).
    public var beforeStep: ((Int) -> Void)?
    /// The ranks that share each step's batch (nil: this process does it all).
    public let communicator: Communicator?
    /// This rank's examples of each step's batch, i in share (0..<batch in one process).
    public let share: Range<Int>
    /// Wall time spent in the gradient and loss all-reduce so far (seconds).
    public private(set) var reduceSeconds = 0.0

    /// Steps done so far (= the RNG position).
    public var step: Int { optimizer.step }

    // Reused buffers.
    var x0: [Float], xt: [Float], eps: [Float], t: [Int], y: [Int], gradient: [Float] = []
    var permutation: [Int] = []
    var permutationEpoch = -1

    public init(network: Network, schedule: Schedule, data: TrainingData, config: TrainConfig,
                communicator: Communicator? = nil) throws {
        let m = data.sampleCount
        guard network.inputShape == data.sampleShape else {
            throw DDPMError("the network takes samples of shape \(network.inputShape), the data has \(data.sampleShape)")
        }
        try config.validate()
        let outCount = network.outputShape.reduce(1, *)
        if config.objective == .classifier {
            guard data.y != nil, config.classes >= 2 else {
                throw DDPMError("a classifier needs labels 'y' with at least 2 classes")
            }
            guard outCount == config.classes else {
                throw DDPMError("the classifier outputs \(outCount) logits for \(config.classes) classes")
            }
        } else {
            let want = config.loss == .hybrid ? 2 * m : m
            guard outCount == want else {
                throw DDPMError(config.loss == .hybrid
                    ? "the hybrid loss needs a network with a learned variance (output \(2 * m) values per sample, it has \(outCount))"
                    : "the network outputs \(outCount) values per sample; the simple loss needs \(m) (a learned-variance network needs the hybrid loss)")
            }
            guard config.classes == 0 || network.classes == config.classes else {
                throw DDPMError("the network is conditioned on \(network.classes) classes, the training on \(config.classes)")
            }
        }
        guard config.batch * m <= Trainer.maxBatchValues else {
            throw DDPMError("a batch of \(config.batch) samples of \(m) values exceeds \(Trainer.maxBatchValues) values")
        }
        if config.classes > 0, let y = data.y, let bad = y.first(where: { $0 >= config.classes }) {
            throw DDPMError("class label \(bad) is out of range for \(config.classes) classes (labels must be 0..<\(config.classes))")
        }
        if config.classes > 0 && data.y == nil {
            throw DDPMError("\(config.classes) classes asked for, but the data has no labels 'y'")
        }
        let ranks = communicator?.size ?? 1, rank = communicator?.rank ?? 0
        guard config.batch >= ranks else {
            throw DDPMError("a batch of \(config.batch) examples cannot be shared among \(ranks) ranks: the batch must be at least the number of ranks")
        }
        self.communicator = ranks > 1 ? communicator : nil
        self.share = (config.batch * rank / ranks) ..< (config.batch * (rank + 1) / ranks)
        let n = share.count
        self.network = network
        self.schedule = schedule
        self.data = data
        self.config = config
        self.loss = DiffusionLoss(kind: config.loss, schedule: schedule, vlbWeight: config.vlbWeight,
                                  decoder: data.sampleShape.count == 3 ? .discretized8bit : .gaussian,
                                  prediction: config.prediction, weighting: config.weighting, snrGamma: config.snrGamma)
        self.optimizer = AdamW(store: network.store, config: config.optimizer)
        self.ema = EMA(store: network.store, decay: config.emaDecay)
        x0 = [Float](repeating: 0, count: n * m)
        xt = x0
        eps = x0
        t = [Int](repeating: 0, count: n)
        y = t
    }

    /// The first of the weights, EMA, and AdamW moments that holds a NaN or infinity (one pass over
    /// each flat buffer), or nil when all are finite: nothing non-finite is ever written.
    public func nonFiniteState() -> String? {
        let buffers: [(String, UnsafeMutableBufferPointer<Float>)] = [("the weights", network.store.values), ("the EMA of the weights", ema.shadow),
                                                                       ("the AdamW first moment", optimizer.m), ("the AdamW second moment", optimizer.v)]
        for (name, b) in buffers {
            if let i = b.firstIndex(where: { !$0.isFinite }) {
                let slot = network.store.slots.first { $0.range.contains(i) }
                return "\(name) hold a non-finite value (\(b[i])) in '\(slot?.name ?? "?")'"
            }
        }
        return nil
    }

    /// Restores raw weights, EMA, optimizer moments and step from a checkpoint frame.
    public func restore(checkpoint frame: Frame) throws {
        guard frame.kind == "checkpoint" else {
            throw DDPMError("resuming needs a checkpoint (kind 'checkpoint'), got kind '\(frame.kind ?? "none")'")
        }
        guard let step = Int(frame.metadata["step"] ?? ""), step >= 0 else { throw DDPMError("checkpoint has no valid 'step'") }
        // All four sets of tensors are checked before any flat buffer is filled.
        try ModelFile.read(frame, store: network.store, into: [("raw.", network.store.values), ("ema.", ema.shadow),
                                                               ("adam.m.", optimizer.m), ("adam.v.", optimizer.v)])
        optimizer.restore(step: step)
        ema.restore(updates: Int(frame.metadata["ema_updates"] ?? "") ?? step)
    }

    /// The data index of example g of the endless shuffled sequence.
    func exampleIndex(_ g: Int) -> Int {
        let n = data.count
        let epoch = g / n
        if epoch != permutationEpoch {
            if permutation.count != n { permutation = Array(0..<n) } else { for i in 0..<n { permutation[i] = i } }
            var r = RandomStream(seed: config.seed, purpose: .shuffle, index: UInt64(epoch))
            var i = n - 1
            while i > 0 {   // Fisher-Yates
                let j = r.nextInt(below: i + 1)
                permutation.swapAt(i, j)
                i -= 1
            }
            permutationEpoch = epoch
        }
        return permutation[g % n]
    }

    /// Fills x0, xt, eps, t, y for this rank's share of step k (Algorithm 1 lines 2-4; x_t by
    /// Ho et al. eq. 4: x_t = sqrt(abar_t) x_0 + sqrt(1 - abar_t) eps); row j is example share.lowerBound + j.
    func makeBatch(step k: Int) {
        let m = data.sampleCount
        let T = schedule.T
        let K = config.classes
        data.x.withUnsafeBufferPointer { src in
        x0.withUnsafeMutableBufferPointer { x0p in
        xt.withUnsafeMutableBufferPointer { xtp in
        eps.withUnsafeMutableBufferPointer { ep in
            for i in 0..<share.count {
                let g = k * config.batch + share.lowerBound + i
                let idx = exampleIndex(g)
                var rt = RandomStream(seed: config.seed, purpose: .timestep, index: UInt64(g))
                let ti = rt.nextInt(below: T)
                t[i] = ti
                var rn = RandomStream(seed: config.seed, purpose: .noise, index: UInt64(g))
                let e = UnsafeMutableBufferPointer(rebasing: ep[(i * m)..<(i * m + m)])
                rn.fillNormal(e)
                let a = Float(schedule.sqrtAlphaBar[ti]), b = Float(schedule.sqrtOneMinusAlphaBar[ti])
                for j in 0..<m {
                    let x = src[idx * m + j]
                    x0p[i * m + j] = x
                    xtp[i * m + j] = ForwardProcess.qSample(x0: x, eps: e[j], a: a, b: b)
                }
                if config.objective == .classifier, let labels = data.y {
                    y[i] = labels[idx]      // the target: never dropped
                } else if K > 0, let labels = data.y {
                    var rl = RandomStream(seed: config.seed, purpose: .labelDrop, index: UInt64(g))
                    y[i] = rl.nextUniform() < config.pUncond ? K : labels[idx]
                }
            }
        }}}}
    }

    /// One step: batch, forward, loss, backward, clip, AdamW (with warm-up), EMA.
    /// A non-finite loss or gradient throws before the weights change.
    @discardableResult
    public func trainStep() throws -> LossValue {
        let k = step
        makeBatch(step: k)
        if let unet = network as? UNet { unet.step = UInt64(k); unet.firstExample = share.lowerBound }   // dropout masks keyed by step and example
        beforeStep?(k)
        var value: LossValue
        if config.objective == .classifier {
            // Cross-entropy of p_phi(y | x_t, t) on noised data (Dhariwal & Nichol 2021 sec. 4).
            let logits = network.forward(xt, t: t, y: nil, training: true)
            let (ce, acc) = Losses.crossEntropy(logits: logits, labels: y, classes: config.classes, gradient: &gradient)
            value = LossValue(loss: ce, simple: 0, vlbTerm: 0, accuracy: acc)
        } else {
            let out = network.forward(xt, t: t, y: config.classes > 0 ? y : nil, training: true)
            value = loss.evaluate(output: out, x0: x0, xt: xt, eps: eps, t: t, gradient: &gradient)
        }
        guard value.loss.isFinite else {
            throw DDPMError("loss is \(value.loss) at step \(k + 1); training stopped (weights of step \(k) kept)")
        }
        let local = Double(share.count), total = Double(config.batch)
        if share.count != config.batch {
            // The loss carries 1/n of this rank's n examples; the batch mean needs 1/B.
            let f = Float(local / total)
            for i in gradient.indices { gradient[i] *= f }
        }
        network.store.zeroGrad()
        _ = network.backward(gradient)
        if let comm = communicator {
            // The sum of the ranks' gradients, then the global mean of the loss values.
            let start = DispatchTime.now().uptimeNanoseconds
            try comm.allReduceSum(network.store.grads)
            var sums = [value.loss, value.simple, value.vlbTerm, value.accuracy].map { $0.isNaN ? 0 : $0 * local }
            try comm.allReduceSum(&sums)
            reduceSeconds += Double(DispatchTime.now().uptimeNanoseconds - start) * 1e-9
            value = LossValue(loss: sums[0] / total, simple: sums[1] / total, vlbTerm: sums[2] / total,
                              accuracy: value.accuracy.isNaN ? .nan : sums[3] / total)
        }
        let norm = optimizer.clipGradients()
        guard norm.isFinite else {
            throw DDPMError("gradient norm is \(norm) at step \(k + 1); training stopped (weights of step \(k) kept)")
        }
        optimizer.update(ema: ema)   // AdamW, then the EMA of the new weights, in one pass
        return value
    }
}

// MARK: the training facts in a model file's metadata

extension TrainConfig {
    /// The metadata keys that reproduce a run (docs/FORMAT.md); a denoiser's also name its target and weighting.
    public var metadata: [String: String] {
        var m = ["objective": objective.rawValue, "loss": loss.rawValue, "vlb_weight": "\(vlbWeight)", "classes": String(classes), "p_uncond": "\(pUncond)",
         "seed": String(seed), "batch": String(batch), "lr": "\(optimizer.lr)", "adam_beta1": "\(optimizer.beta1)",
         "adam_beta2": "\(optimizer.beta2)", "adam_eps": "\(optimizer.eps)", "warmup": String(optimizer.warmup),
         "clip": "\(optimizer.clip)", "weight_decay": "\(optimizer.weightDecay)", "ema_decay": "\(emaDecay)"]
        if objective == .denoiser {
            m["prediction"] = prediction.rawValue; m["weighting"] = weighting.rawValue; m["snr_gamma"] = "\(snrGamma)"
        }
        return m
    }

    /// Reads back `metadata` (to resume); every key must be present and parse (bounds: `validate()`),
    /// except `prediction`, `weighting` and `snr_gamma`, absent from older files (eps, uniform, 5),
    /// which must parse when present.
    public init(metadata m: [String: String]) throws {
        func value<T>(_ key: String, _ parse: (String) -> T?) throws -> T {
            guard let s = m[key], let v = parse(s) else { throw DDPMError("checkpoint metadata lacks a valid '\(key)'") }
            return v
        }
        self.init()
        objective = TrainObjective(rawValue: m["objective"] ?? "denoiser") ?? .denoiser
        loss = try value("loss") { LossKind(rawValue: $0) }
        vlbWeight = try value("vlb_weight") { Double($0) }
        func optional<T>(_ key: String, _ expected: String, _ parse: (String) -> T?) throws -> T? {
            guard let s = m[key] else { return nil }
            guard let v = parse(s) else { throw DDPMError("checkpoint metadata has an invalid '\(key)' ('\(String(s.prefix(40)))'; expected \(expected))") }
            return v
        }
        prediction = try optional("prediction", "eps, x0 or v") { PredictionType(rawValue: $0) } ?? prediction
        weighting = try optional("weighting", "uniform or min-snr") { LossWeighting(rawValue: $0) } ?? weighting
        snrGamma = try optional("snr_gamma", "a number") { Double($0) } ?? snrGamma
        classes = try value("classes") { Int($0) }
        pUncond = try value("p_uncond") { Double($0) }
        seed = try value("seed") { UInt64($0) }
        batch = try value("batch") { Int($0) }
        optimizer.lr = try value("lr") { Double($0) }
        optimizer.beta1 = try value("adam_beta1") { Double($0) }
        optimizer.beta2 = try value("adam_beta2") { Double($0) }
        optimizer.eps = try value("adam_eps") { Double($0) }
        optimizer.warmup = try value("warmup") { Int($0) }
        optimizer.clip = try value("clip") { Double($0) }
        optimizer.weightDecay = try value("weight_decay") { Double($0) }
        emaDecay = try value("ema_decay") { Double($0) }
    }
}

// MARK: bounds, defaults, Codable

extension TrainConfig {
    /// Examples per step by default: 64 for a U-Net, 128 for a classifier of images, 256 otherwise.
    public static let unetBatch = 64, imageClassifierBatch = 128, otherBatch = 256
    /// Peak learning rate by default: 2e-4 for a U-Net, 1e-3 otherwise (MLPs, classifiers).
    public static let unetLearningRate = 2e-4, otherLearningRate = 1e-3

    /// The defaults for training `network`: objective, loss, classes and seed follow the network
    /// (classifier or not, learned variance, conditioning, initialisation seed), batch and lr its family.
    public static func defaults(for network: NetworkConfig) -> TrainConfig {
        var c = TrainConfig()
        c.objective = network.isClassifier ? .classifier : .denoiser
        c.loss = network.learnSigma ? .hybrid : .simple
        c.classes = network.classes
        c.seed = network.seed
        switch network {
        case .unet: c.batch = unetBatch
        case .classifier where network.inputShape.count == 3: c.batch = imageClassifierBatch
        default: c.batch = otherBatch
        }
        if case .unet = network { c.optimizer.lr = unetLearningRate } else { c.optimizer.lr = otherLearningRate }
        return c
    }

    /// Every setting out of bounds (keys as in `metadata`), for flags and checkpoints alike.
    public var issues: [ConfigIssue] {
        var out: [ConfigIssue] = []
        func finite(_ v: Double, _ ok: Bool) -> Bool { v.isFinite && ok }
        if !(1...ConfigLimits.batch).contains(batch) { out.append(ConfigIssue("batch", "batch size \(batch) must lie in 1 ... \(ConfigLimits.batch)")) }
        let o = optimizer
        if !finite(o.lr, o.lr > 0) { out.append(ConfigIssue("lr", "learning rate \(o.lr) must be a finite number > 0")) }
        if o.warmup < 0 { out.append(ConfigIssue("warmup", "warm-up of \(o.warmup) steps: must be >= 0")) }
        if !finite(o.clip, o.clip >= 0) { out.append(ConfigIssue("clip", "gradient clipping norm \(o.clip) must be a finite number >= 0 (0: no clipping)")) }
        if !finite(o.weightDecay, o.weightDecay >= 0) { out.append(ConfigIssue("weight_decay", "weight decay \(o.weightDecay) must be a finite number >= 0")) }
        if !(o.beta1 >= 0 && o.beta1 < 1) { out.append(ConfigIssue("adam_beta1", "AdamW beta1 \(o.beta1) must lie in [0, 1)")) }
        if !(o.beta2 >= 0 && o.beta2 < 1) { out.append(ConfigIssue("adam_beta2", "AdamW beta2 \(o.beta2) must lie in [0, 1)")) }
        if !finite(o.eps, o.eps > 0) { out.append(ConfigIssue("adam_eps", "AdamW epsilon \(o.eps) must be a finite number > 0")) }
        if !(emaDecay >= 0 && emaDecay < 1) { out.append(ConfigIssue("ema_decay", "EMA decay \(emaDecay) must lie in [0, 1)")) }
        if !(pUncond >= 0 && pUncond <= 1) { out.append(ConfigIssue("p_uncond", "label dropout probability \(pUncond) must lie in [0, 1]")) }
        if !finite(vlbWeight, vlbWeight >= 0) { out.append(ConfigIssue("vlb_weight", "hybrid-loss weight \(vlbWeight) must be a finite number >= 0")) }
        if !finite(snrGamma, snrGamma > 0) { out.append(ConfigIssue("snr_gamma", "Min-SNR gamma \(snrGamma) must be a finite number > 0")) }
        if objective == .classifier && prediction != .eps {
            out.append(ConfigIssue("prediction", "a classifier has no prediction target (it is trained with cross-entropy)"))
        }
        if objective == .classifier && weighting != .uniform {
            out.append(ConfigIssue("weighting", "the Min-SNR weighting does not apply to a classifier (it is trained with cross-entropy)"))
        }
        if !(0...ConfigLimits.classes).contains(classes) {
            out.append(ConfigIssue("classes", "\(classes) classes: must lie in 0 ... \(ConfigLimits.classes)"))
        } else if objective == .classifier && classes < 2 {
            out.append(ConfigIssue("classes", "a classifier needs labels 'y' with at least 2 classes, got \(classes)"))
        }
        if objective == .classifier && loss == .hybrid {
            out.append(ConfigIssue("loss", "the hybrid loss does not apply to a classifier (it is trained with cross-entropy)"))
        }
        return out
    }

    /// Throws the first issue.
    public func validate() throws {
        if let issue = issues.first { throw DDPMError(issue.message) }
    }
}

extension TrainConfig: Equatable, Codable {
    enum CodingKeys: String, CodingKey {
        case objective, loss, vlbWeight = "vlb_weight", prediction, weighting, snrGamma = "snr_gamma", classes, pUncond = "p_uncond", seed, batch, lr,
             beta1 = "adam_beta1", beta2 = "adam_beta2", eps = "adam_eps", warmup, clip, weightDecay = "weight_decay",
             emaDecay = "ema_decay"
    }

    public static func == (a: TrainConfig, b: TrainConfig) -> Bool {
        a.objective == b.objective && a.batch == b.batch && a.seed == b.seed && a.loss == b.loss && a.vlbWeight == b.vlbWeight
            && a.prediction == b.prediction && a.weighting == b.weighting && a.snrGamma == b.snrGamma
            && a.classes == b.classes && a.pUncond == b.pUncond && a.emaDecay == b.emaDecay
            && a.optimizer.lr == b.optimizer.lr && a.optimizer.beta1 == b.optimizer.beta1 && a.optimizer.beta2 == b.optimizer.beta2
            && a.optimizer.eps == b.optimizer.eps && a.optimizer.weightDecay == b.optimizer.weightDecay
            && a.optimizer.warmup == b.optimizer.warmup && a.optimizer.clip == b.optimizer.clip
    }

    /// Flat keys, the same names as `metadata`'s; absent keys take the defaults.
    public init(from decoder: Decoder) throws {
        let k = try decoder.container(keyedBy: CodingKeys.self)
        self.init()
        objective = try k.decodeIfPresent(TrainObjective.self, forKey: .objective) ?? objective
        loss = try k.decodeIfPresent(LossKind.self, forKey: .loss) ?? loss
        vlbWeight = try k.decodeIfPresent(Double.self, forKey: .vlbWeight) ?? vlbWeight
        prediction = try k.decodeIfPresent(PredictionType.self, forKey: .prediction) ?? prediction
        weighting = try k.decodeIfPresent(LossWeighting.self, forKey: .weighting) ?? weighting
        snrGamma = try k.decodeIfPresent(Double.self, forKey: .snrGamma) ?? snrGamma
        classes = try k.decodeIfPresent(Int.self, forKey: .classes) ?? classes
        pUncond = try k.decodeIfPresent(Double.self, forKey: .pUncond) ?? pUncond
        seed = try k.decodeIfPresent(UInt64.self, forKey: .seed) ?? seed
        batch = try k.decodeIfPresent(Int.self, forKey: .batch) ?? batch
        optimizer.lr = try k.decodeIfPresent(Double.self, forKey: .lr) ?? optimizer.lr
        optimizer.beta1 = try k.decodeIfPresent(Double.self, forKey: .beta1) ?? optimizer.beta1
        optimizer.beta2 = try k.decodeIfPresent(Double.self, forKey: .beta2) ?? optimizer.beta2
        optimizer.eps = try k.decodeIfPresent(Double.self, forKey: .eps) ?? optimizer.eps
        optimizer.warmup = try k.decodeIfPresent(Int.self, forKey: .warmup) ?? optimizer.warmup
        optimizer.clip = try k.decodeIfPresent(Double.self, forKey: .clip) ?? optimizer.clip
        optimizer.weightDecay = try k.decodeIfPresent(Double.self, forKey: .weightDecay) ?? optimizer.weightDecay
        emaDecay = try k.decodeIfPresent(Double.self, forKey: .emaDecay) ?? emaDecay
    }

    public func encode(to encoder: Encoder) throws {
        var k = encoder.container(keyedBy: CodingKeys.self)
        try k.encode(objective, forKey: .objective); try k.encode(loss, forKey: .loss)
        try k.encode(vlbWeight, forKey: .vlbWeight); try k.encode(classes, forKey: .classes)
        try k.encode(prediction, forKey: .prediction); try k.encode(weighting, forKey: .weighting); try k.encode(snrGamma, forKey: .snrGamma)
        try k.encode(pUncond, forKey: .pUncond); try k.encode(seed, forKey: .seed); try k.encode(batch, forKey: .batch)
        try k.encode(optimizer.lr, forKey: .lr); try k.encode(optimizer.beta1, forKey: .beta1)
        try k.encode(optimizer.beta2, forKey: .beta2); try k.encode(optimizer.eps, forKey: .eps)
        try k.encode(optimizer.warmup, forKey: .warmup); try k.encode(optimizer.clip, forKey: .clip)
        try k.encode(optimizer.weightDecay, forKey: .weightDecay); try k.encode(emaDecay, forKey: .emaDecay)
    }
}

extension Trainer {
    /// The model (`checkpoint == false`) or checkpoint frame of the current state (ModelFile.frame),
    /// with the run's facts: config, data shape and count, steps done.
    public func frame(checkpoint: Bool, extra: [String: String] = [:]) -> Frame {
        var info = config.metadata
        info["tool"] = "train"
        info["data_shape"] = data.sampleShape.map(String.init).joined(separator: ",")
        info["data_count"] = String(data.count)
        info["steps"] = String(step)
        info["decoder"] = loss.decoder.rawValue
        for (k, v) in extra { info[k] = v }
        return ModelFile.frame(network: network, ema: ema, schedule: schedule, info: info,
                               optimizer: checkpoint ? optimizer : nil,
                               kind: !checkpoint && config.objective == .classifier ? "classifier" : nil)
    }
}

extension Trainer {
    /// What every rank of a data-parallel run must hold alike: the data, the schedule, the
    /// settings, the step, and the weights, EMA and AdamW moments it starts from (FNV-1a).
    public func fingerprint() -> UInt64 {
        var f = Fingerprint()
        f.add(data.x)
        let shape: [Int] = data.sampleShape
        f.add(shape.map { String($0) }.joined(separator: ","))
        if let y = data.y { y.withUnsafeBytes { f.add($0) } } else { f.add("no labels") }
        schedule.beta.withUnsafeBytes { f.add($0) }
        let settings: [String] = config.metadata.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }
        f.add(settings.joined(separator: ";") + ";step=\(step)")
        let state: UInt64 = stateFingerprint()
        withUnsafeBytes(of: state) { f.add($0) }
        return f.value
    }

    /// The weights, EMA and AdamW moments (to check at checkpoints that the ranks never drift apart).
    public func stateFingerprint() -> UInt64 {
        var f = Fingerprint()
        for b in [network.store.values, ema.shadow, optimizer.m, optimizer.v] { f.add(UnsafeRawBufferPointer(b)) }
        return f.value
    }
}
