// The training loop of an eps-prediction network (Ho et al. 2020, Algorithm 1), with the
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

    /// Validates and concatenates a data stream: every frame needs `x` (F32 or F64, [N, ...]) of one
    /// sample shape; `y`, if present in one frame, must be in all, integer (I64/I32/U8), [N], >= 0.
    /// Frames of kind `schedule` are skipped.
    public init(frames: [Frame]) throws {
        var xs: [Float] = []
        var ys: [Int] = []
        var shape: [Int]? = nil
        var hasY: Bool? = nil
        var n = 0
        for (k, f) in frames.enumerated() where f.kind != "schedule" {
            let frameNo = k + 1
            guard let x = f["x"] else {
                throw DDPMError("frame \(frameNo) has no tensor 'x' (it has: \(f.names.isEmpty ? "none" : f.names.joined(separator: ", ")))")
            }
            guard x.dtype == .f32 || x.dtype == .f64 else {
                throw DDPMError("frame \(frameNo): 'x' must be F32 (or F64), found \(x.dtype.rawValue)")
            }
            guard x.shape.count >= 2, x.shape.allSatisfy({ $0 > 0 }) else {
                throw DDPMError("frame \(frameNo): 'x' must have shape [N, D] or [N, C, H, W] with no zero sizes, found \(x.shape)")
            }
            let s = Array(x.shape.dropFirst())
            if let shape, shape != s {
                throw DDPMError("frame \(frameNo): 'x' samples have shape \(s), earlier frames \(shape); mixed shapes cannot be trained together")
            }
            shape = s
            let values = x.floats
            if let bad = values.firstIndex(where: { !$0.isFinite }) {
                throw DDPMError("frame \(frameNo): 'x' holds a non-finite value (\(values[bad])) at element \(bad)")
            }
            let y = f["y"]
            if let hasY, hasY != (y != nil) {
                throw DDPMError("frame \(frameNo): \(y == nil ? "has no 'y' but earlier frames do" : "has 'y' but earlier frames do not")")
            }
            hasY = y != nil
            if let y {
                guard y.dtype == .i64 || y.dtype == .i32 || y.dtype == .u8 else {
                    throw DDPMError("frame \(frameNo): labels 'y' must be integers (I64, I32 or U8), found \(y.dtype.rawValue)")
                }
                guard y.shape == [x.shape[0]] else {
                    throw DDPMError("frame \(frameNo): 'y' has shape \(y.shape), expected [\(x.shape[0])] (one label per sample)")
                }
                let labels = try y.integers()
                if let neg = labels.first(where: { $0 < 0 }) {
                    throw DDPMError("frame \(frameNo): negative class label \(neg) in 'y'")
                }
                ys.append(contentsOf: labels.map { Int($0) })
            }
            xs.append(contentsOf: values)
            n += x.shape[0]
        }
        guard let shape, n > 0 else { throw DDPMError("no training data: the stream holds no frames with 'x'") }
        self.x = xs
        self.y = hasY == true ? ys : nil
        self.sampleShape = shape
        self.count = n
    }
}

/// Everything that shapes a training run besides the network and the data.
/// What is trained: the eps-prediction network, or the noise-aware classifier p(y | x_t, t).
public enum TrainObjective: String, Sendable {
    case denoiser, classifier
}

public struct TrainConfig: Sendable {
    public var objective: TrainObjective = .denoiser
    public var batch: Int = 64
    public var seed: UInt64 = 0
    public var loss: LossKind = .simple
    public var vlbWeight: Double = 0.001
    /// Number of classes K (0 = unconditional: labels are not given to the network).
    public var classes: Int = 0
    /// Probability of replacing a label by the null class K (classifier-free guidance training).
    public var pUncond: Double = 0.1
    public var optimizer = OptimizerConfig()
    public var emaDecay: Double = 0.9999
    public init() {}
}

public final class Trainer {
    public let network: Network
    public let schedule: Schedule
    public let data: TrainingData
    public let config: TrainConfig
    public let loss: DiffusionLoss
    public let optimizer: AdamW
    public let ema: EMA
    /// Called before each forward with the step number (e.g. to key dropout masks by step).
    public var beforeStep: ((Int) -> Void)?

    /// Steps done so far (= the RNG position).
    public var step: Int { optimizer.step }

    // Reused buffers.
    var x0: [Float], xt: [Float], eps: [Float], t: [Int], y: [Int], gradient: [Float] = []
    var permutation: [Int] = []
    var permutationEpoch = -1

    public init(network: Network, schedule: Schedule, data: TrainingData, config: TrainConfig) throws {
        let m = data.sampleCount
        guard network.inputShape == data.sampleShape else {
            throw DDPMError("the network takes samples of shape \(network.inputShape), the data has \(data.sampleShape)")
        }
        let outCount = network.outputShape.reduce(1, *)
        let want = config.objective == .classifier ? config.classes : (config.loss == .hybrid ? 2 * m : m)
        if config.objective == .classifier {
            guard data.y != nil, config.classes >= 2 else {
                throw DDPMError("--classifier needs labels 'y' with at least 2 classes")
            }
            guard outCount == config.classes else {
                throw DDPMError("the classifier outputs \(outCount) logits for \(config.classes) classes")
            }
        } else if outCount != want {
            throw DDPMError(config.loss == .hybrid
                ? "--loss hybrid needs a network with a learned variance (output \(2 * m) values per sample, it has \(outCount))"
                : "the network outputs \(outCount) values per sample; --loss simple needs \(m) (a learned-variance network needs --loss hybrid)")
        }
        guard config.batch > 0 else { throw DDPMError("--batch must be positive, got \(config.batch)") }
        guard config.pUncond >= 0 && config.pUncond <= 1 else { throw DDPMError("--p-uncond must lie in [0, 1], got \(config.pUncond)") }
        if config.classes > 0, let y = data.y, let bad = y.first(where: { $0 >= config.classes }) {
            throw DDPMError("class label \(bad) is out of range for --classes \(config.classes) (labels must be 0..<\(config.classes))")
        }
        if config.classes > 0 && data.y == nil {
            throw DDPMError("--classes \(config.classes) given but the data has no labels 'y'")
        }
        self.network = network
        self.schedule = schedule
        self.data = data
        self.config = config
        self.loss = DiffusionLoss(kind: config.loss, schedule: schedule, vlbWeight: config.vlbWeight,
                                  decoder: data.sampleShape.count == 3 ? .discretized8bit : .gaussian)
        self.optimizer = AdamW(store: network.store, config: config.optimizer)
        self.ema = EMA(store: network.store, decay: config.emaDecay)
        x0 = [Float](repeating: 0, count: config.batch * m)
        xt = x0
        eps = x0
        t = [Int](repeating: 0, count: config.batch)
        y = t
    }

    /// Restores raw weights, EMA, optimizer moments and step from a checkpoint frame.
    public func restore(checkpoint frame: Frame) throws {
        guard frame.kind == "checkpoint" else {
            throw DDPMError("--resume needs a checkpoint (kind 'checkpoint'), got kind '\(frame.kind ?? "none")'")
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

    /// Fills x0, xt, eps, t, y for step k (Algorithm 1 lines 2-4; x_t by Ho et al. eq. 4:
    /// x_t = sqrt(abar_t) x_0 + sqrt(1 - abar_t) eps).
    func makeBatch(step k: Int) {
        let m = data.sampleCount
        let T = schedule.T
        let K = config.classes
        data.x.withUnsafeBufferPointer { src in
        x0.withUnsafeMutableBufferPointer { x0p in
        xt.withUnsafeMutableBufferPointer { xtp in
        eps.withUnsafeMutableBufferPointer { ep in
            for i in 0..<config.batch {
                let g = k * config.batch + i
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
                    xtp[i * m + j] = a * x + b * e[j]
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
        if let unet = network as? UNet { unet.step = UInt64(k) }   // dropout masks keyed by step
        beforeStep?(k)
        let value: LossValue
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
        network.store.zeroGrad()
        _ = network.backward(gradient)
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
    /// The metadata keys that reproduce a run (docs/FORMAT.md).
    public var metadata: [String: String] {
        ["objective": objective.rawValue, "loss": loss.rawValue, "vlb_weight": "\(vlbWeight)", "classes": String(classes), "p_uncond": "\(pUncond)",
         "seed": String(seed), "batch": String(batch), "lr": "\(optimizer.lr)", "adam_beta1": "\(optimizer.beta1)",
         "adam_beta2": "\(optimizer.beta2)", "adam_eps": "\(optimizer.eps)", "warmup": String(optimizer.warmup),
         "clip": "\(optimizer.clip)", "weight_decay": "\(optimizer.weightDecay)", "ema_decay": "\(emaDecay)"]
    }

    /// Reads back `metadata` (for --resume); every key must be present and valid.
    public init(metadata m: [String: String]) throws {
        func value<T>(_ key: String, _ parse: (String) -> T?) throws -> T {
            guard let s = m[key], let v = parse(s) else { throw DDPMError("checkpoint metadata lacks a valid '\(key)'") }
            return v
        }
        self.init()
        objective = TrainObjective(rawValue: m["objective"] ?? "denoiser") ?? .denoiser
        loss = try value("loss") { LossKind(rawValue: $0) }
        vlbWeight = try value("vlb_weight") { Double($0) }
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
