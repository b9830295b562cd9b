// Model and checkpoint files: ONE frame (one safetensors file) holding the weights
// (EMA and raw), the schedule's betas and the metadata that rebuilds the network
// (docs/FORMAT.md). A checkpoint adds the optimizer state and the step.

/// Which weights of a model file to load into the network.
public enum WeightChoice: String, Sendable {
    /// The exponential moving average (what sampling uses by default).
    case ema
    /// The weights as the optimizer left them.
    case raw
}

/// A model read back from a file.
public struct LoadedModel {
    public var network: Network
    public var schedule: Schedule
    /// The file's `__metadata__` (kind, arch.*, loss, classes, data_shape, ...).
    public var metadata: [String: String]
    /// The whole frame (for resuming: raw, EMA and optimizer tensors).
    public var frame: Frame

    /// The network's typed hyper-parameters (read from the `arch.` keys).
    public var config: NetworkConfig { network.config }
    /// The network's architecture dictionary, from the `arch.` keys.
    public var architecture: [String: String] { ModelFile.architecture(from: metadata) }
    public var loss: LossKind { LossKind(rawValue: metadata["loss"] ?? "simple") ?? .simple }
    /// What the network predicts (`prediction`: eps, x0 or v; absent in files before it: eps).
    /// Any other value throws.
    public func predictionType() throws -> PredictionType { try PredictionType(metadataValue: metadata["prediction"]) }
    /// Number of classes K (0 = unconditional; label K is the null class).
    public var classes: Int { network.classes }
    /// Shape of one data sample, e.g. [1, 28, 28] or [2].
    public var dataShape: [Int] { (metadata["data_shape"] ?? "").split(separator: ",").compactMap { Int($0) } }
}

public enum ModelFile {
    public static let archPrefix = "arch."

    public static func architecture(from metadata: [String: String]) -> [String: String] {
        var a: [String: String] = [:]
        for (k, v) in metadata where k.hasPrefix(archPrefix) { a[String(k.dropFirst(archPrefix.count))] = v }
        return a
    }

    /// The frame of a model (`kind = model`) or, with an optimizer, of a checkpoint (`kind = checkpoint`).
    /// Tensors, in order: `ema.<p>` F32, `raw.<p>` F32 for every parameter p (the network's order),
    /// `schedule.beta` F64 [T]; for a checkpoint also `adam.m.<p>`, `adam.v.<p>` F32.
    /// `info` is merged into the metadata (loss, classes, data_shape, steps, seed, ...).
    public static func frame(network: Network, ema: EMA, schedule: Schedule, info: [String: String],
                             optimizer: AdamW? = nil, kind: String? = nil) -> Frame {
        var meta = info
        meta["kind"] = kind ?? (optimizer == nil ? "model" : "checkpoint")
        meta["toolkit_version"] = toolkitVersion
        for (k, v) in network.architecture { meta[archPrefix + k] = v }
        meta["schedule"] = schedule.kind.rawValue
        meta["T"] = String(schedule.T)
        meta["zero_terminal_snr"] = schedule.zeroTerminalSNR ? "true" : "false"
        if !schedule.betaStart.isNaN { meta["beta_start"] = "\(schedule.betaStart)" }
        if !schedule.betaEnd.isNaN { meta["beta_end"] = "\(schedule.betaEnd)" }
        meta["ema_decay"] = "\(ema.decay)"
        meta["ema_updates"] = String(ema.updates)
        var f = Frame(metadata: meta)
        let store = network.store
        precondition(ema.store === store && (optimizer == nil || optimizer!.store === store),
                     "ModelFile.frame: the EMA or the optimizer tracks another network")
        // Each tensor is the slot's range of one flat buffer.
        func add(_ prefix: String, _ buffer: UnsafeMutableBufferPointer<Float>) {
            for slot in store.slots { f[prefix + slot.name] = Tensor(Array(store.slice(buffer, slot.range)), shape: slot.shape) }
        }
        add("ema.", ema.shadow)
        add("raw.", store.values)
        f["schedule.beta"] = Tensor(schedule.beta, shape: [schedule.T])
        if let optimizer {
            f.metadata["step"] = String(optimizer.step)
            add("adam.m.", optimizer.m)
            add("adam.v.", optimizer.v)
        }
        return f
    }

    /// Reads the F32 tensor `prefix + p.name` for every parameter, checking its shape.
    public static func tensors(_ frame: Frame, prefix: String, for params: [Parameter]) throws -> [[Float]] {
        try params.map { try tensor(frame, prefix + $0.name, shape: $0.shape) }
    }

    /// For each target, copies the F32 tensors `prefix + name` of every slot of `store` into
    /// `buffer` (a flat buffer of the store's layout: its values, an EMA shadow, a moment).
    /// Every tensor of every target is checked (present, shape, F32) before anything is
    /// copied, so on an error no buffer has changed.
    public static func read(_ frame: Frame, store: ParameterStore,
                            into targets: [(prefix: String, buffer: UnsafeMutableBufferPointer<Float>)]) throws {
        let arrays = try targets.map { t in try store.slots.map { try tensor(frame, t.prefix + $0.name, shape: $0.shape) } }
        for (t, a) in zip(targets, arrays) {
            for (slot, values) in zip(store.slots, a) { _ = store.slice(t.buffer, slot.range).update(fromContentsOf: values) }
        }
    }

    /// The F32 values of tensor `name`, which must have `shape`.
    static func tensor(_ frame: Frame, _ name: String, shape: [Int]) throws -> [Float] {
        guard let t = frame[name] else { throw DDPMError("model file has no tensor '\(name)'") }
        guard t.shape == shape else {
            throw DDPMError("tensor '\(name)' has shape \(t.shape), the network expects \(shape)")
        }
        guard case .f32(let a) = t.storage else { throw DDPMError("tensor '\(name)' must be F32, found \(t.dtype.rawValue)") }
        if let bad = a.firstIndex(where: { !$0.isFinite }) {
            throw DDPMError("tensor '\(name)' holds a non-finite value (\(a[bad])) at element \(bad): the file is damaged")
        }
        return a
    }

    /// The schedule stored in a model frame (`schedule.beta` plus the schedule metadata).
    public static func schedule(of frame: Frame) throws -> Schedule {
        let b = try frame.require("schedule.beta")
        guard b.shape.count == 1 else { throw DDPMError("'schedule.beta' must have shape [T], got \(b.shape)") }
        let m = frame.metadata
        return try Schedule(betas: b.doubles, kind: ScheduleKind(rawValue: m["schedule"] ?? "custom") ?? .custom,
                            betaStart: Double(m["beta_start"] ?? "") ?? .nan, betaEnd: Double(m["beta_end"] ?? "") ?? .nan,
                            zeroTerminalSNR: m["zero_terminal_snr"] == "true")
    }

    /// Rebuilds the network of a model, classifier or checkpoint frame (with `factory`, normally
    /// `makeAnyNetwork`: `NetworkConfig(architecture:).make()`) and loads the chosen weights into it.
    public static func load(frame: Frame, weights: WeightChoice = .ema,
                            factory: ([String: String]) throws -> Network = makeAnyNetwork(architecture:)) throws -> LoadedModel {
        guard frame.kind == "model" || frame.kind == "checkpoint" || frame.kind == "classifier" else {
            throw DDPMError("expected a model, classifier or checkpoint frame, got kind '\(frame.kind ?? "none")'")
        }
        let arch = architecture(from: frame.metadata)
        guard !arch.isEmpty else { throw DDPMError("model file has no architecture (no 'arch.' metadata keys)") }
        let network = try factory(arch)
        if let k = frame.metadata["classes"], k != String(network.classes) {
            throw DDPMError("metadata 'classes' = '\(k)' disagrees with the network's \(network.classes) classes (arch.classes)")
        }
        try read(frame, store: network.store, into: [(weights == .ema ? "ema." : "raw.", network.store.values)])
        return LoadedModel(network: network, schedule: try schedule(of: frame), metadata: frame.metadata, frame: frame)
    }

    /// `load(frame:)` on the first frame of a file, or a diffusers directory; errors name the path.
    public static func load(path: String, weights: WeightChoice = .ema,
                            factory: ([String: String]) throws -> Network = makeAnyNetwork(architecture:)) throws -> LoadedModel {
        do {
            // a diffusers UNet2DModel or pipeline directory (NN/Diffusers; one set of weights)
            if DiffusersDirectory.isDirectory(path) { return try DiffusersDirectory.load(directory: path, factory: factory) }
            return try load(frame: try Frame.load(path: path), weights: weights, factory: factory)
        }
        catch let e as DDPMError { throw DDPMError("\(path): \(e.message)") }
    }
}
