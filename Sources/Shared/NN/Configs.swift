// The typed hyper-parameters of every network a model file holds, with ONE set of defaults
// (the initialisers of MLPConfig, ClassifierConfig's encoders and UNetConfig), the bounds
// checked before anything is allocated, and the model file's `arch.*` dictionary
// (docs/FORMAT.md) written from them and read back into them.

/// A setting out of bounds. `key` names the setting as the model file does (`channels`, `mults`,
/// `lr`, ...; `parameters` for the total size), `message` names the value. Tools map the key to
/// their flag; the library never words an error in flags.
public struct ConfigIssue: Equatable, Sendable {
    public var key: String
    public var message: String
    public init(_ key: String, _ message: String) { self.key = key; self.message = message }
}

/// Bounds on every size a configuration can ask for (checked before allocation).
public enum ConfigLimits {
    /// Trainable parameters of one network (2^29 = 536,870,912 floats, 2 GB per copy).
    public static let parameters = 1 << 29
    /// Channels of any layer (channels x mult), MLP width, time-embedding and head widths.
    public static let width = 65_536
    /// MLP hidden layers, residual blocks per level.
    public static let depth = 64
    /// U-Net levels (entries of `mults`).
    public static let levels = 8
    /// Classes of a conditional network or classifier.
    public static let classes = 1 << 20
    /// Values of one data sample.
    public static let sampleSize = 1 << 24
    /// Examples per training step.
    public static let batch = 1 << 16
}

/// The noise-predictor families (`train --arch`); a classifier's encoder is one of them too.
public enum NetworkKind: String, CaseIterable, Codable, Sendable {
    case unet, mlp

    /// U-Net for images [C, H, W], MLP for anything else.
    public static func defaults(for sampleShape: [Int]) -> NetworkKind { sampleShape.count == 3 ? .unet : .mlp }
}

// MARK: the MLP noise predictor

/// Hyper-parameters of `MLP` (`arch = mlp`).
public struct MLPConfig: Codable, Equatable, Sendable {
    public var dim: Int
    public var width: Int
    public var depth: Int
    /// Sinusoidal time-embedding width (even).
    public var tembDim: Int
    /// Fourier octaves per input coordinate (sin, cos of pi 2^k x_j for k < fourier); 0: none.
    public var fourier: Int
    /// 0: unconditional; else K classes plus the null class K.
    public var classes: Int
    /// Doubled output [eps | v] (the hybrid loss's learned variance).
    public var learnSigma: Bool
    public var seed: UInt64

    /// Largest `fourier`: the octave pi 2^(F-1) stays far below float's 2^24, where sin of x
    /// would lose every digit.
    public static let maxFourier = 16

    /// The defaults here are the MLP's only ones (train, model files, help text).
    public init(dim: Int, width: Int = 128, depth: Int = 3, tembDim: Int = 32, fourier: Int = 0, classes: Int = 0,
                learnSigma: Bool = false, seed: UInt64 = 0) {
        self.dim = dim; self.width = width; self.depth = depth; self.tembDim = tembDim; self.fourier = fourier
        self.classes = classes; self.learnSigma = learnSigma; self.seed = seed
    }

    /// The default MLP for samples of `sampleShape` (flattened).
    public static func defaults(for sampleShape: [Int]) -> MLPConfig { MLPConfig(dim: sampleShape.reduce(1, *)) }

    public var issues: [ConfigIssue] {
        var out: [ConfigIssue] = []
        if !(1...ConfigLimits.sampleSize).contains(dim) { out.append(ConfigIssue("dim", "MLP dimension \(dim) must lie in 1 ... \(ConfigLimits.sampleSize)")) }
        if !(1...ConfigLimits.width).contains(width) { out.append(ConfigIssue("width", "MLP width \(width) must lie in 1 ... \(ConfigLimits.width)")) }
        if !(1...ConfigLimits.depth).contains(depth) { out.append(ConfigIssue("depth", "MLP depth \(depth) must lie in 1 ... \(ConfigLimits.depth)")) }
        if !(2...ConfigLimits.width).contains(tembDim) || tembDim % 2 != 0 {
            out.append(ConfigIssue("temb_dim", "time-embedding width \(tembDim) must be even and lie in 2 ... \(ConfigLimits.width)"))
        }
        if !(0...MLPConfig.maxFourier).contains(fourier) {
            out.append(ConfigIssue("fourier", "\(fourier) Fourier octaves: must lie in 0 ... \(MLPConfig.maxFourier)"))
        }
        if !(0...ConfigLimits.classes).contains(classes) { out.append(ConfigIssue("classes", "\(classes) classes: must lie in 0 ... \(ConfigLimits.classes)")) }
        if out.isEmpty, let issue = parameterIssue(parameterCount) { out.append(issue) }
        return out
    }

    /// Width of the first layer's input row [x (D) | Fourier features (2 F D) | sinusoid(t)].
    public var inputWidth: Int { dim * (1 + 2 * fourier) + tembDim }

    /// Number of trainable parameters (for a configuration without issues).
    public var parameterCount: Int {
        let out = learnSigma ? 2 * dim : dim
        return linearCount(inputWidth, width) + (depth - 1) * linearCount(width, width) + linearCount(width, out)
            + (classes > 0 ? (classes + 1) * width : 0)
    }
}

// MARK: the noise-aware classifier

/// Hyper-parameters of the noise-aware classifier p(y | x_t, t) (`arch = classifier-unet` or
/// `classifier-mlp`): a time-conditioned encoder over the sample and a linear head to K logits.
public struct ClassifierConfig: Codable, Equatable, Sendable {
    /// The U-Net's down path (conv_in, res blocks, stride-2 convs), pooled.
    public struct UNetEncoder: Codable, Equatable, Sendable {
        public var channels: Int
        public var mults: [Int]
        public var resBlocks: Int
        public var groups: Int
        /// The defaults here are the image classifier's only ones.
        public init(channels: Int = 32, mults: [Int] = [1, 2, 2], resBlocks: Int = 1, groups: Int = 8) {
            self.channels = channels; self.mults = mults; self.resBlocks = resBlocks; self.groups = groups
        }
    }
    /// An MLP over [flatten(x_t) | sinusoid(t)].
    public struct MLPEncoder: Codable, Equatable, Sendable {
        public var width: Int
        public var depth: Int
        public var tembDim: Int
        /// The defaults here are the vector classifier's only ones.
        public init(width: Int = 256, depth: Int = 2, tembDim: Int = 32) {
            self.width = width; self.depth = depth; self.tembDim = tembDim
        }
    }
    public enum Encoder: Codable, Equatable, Sendable {
        case unet(UNetEncoder)
        case mlp(MLPEncoder)
        public var kind: NetworkKind {
            switch self { case .unet: return .unet; case .mlp: return .mlp }
        }
    }

    public var inShape: [Int]
    public var classes: Int
    public var encoder: Encoder
    public var seed: UInt64

    public init(inShape: [Int], classes: Int, encoder: Encoder, seed: UInt64 = 0) {
        self.inShape = inShape; self.classes = classes; self.encoder = encoder; self.seed = seed
    }

    /// The default classifier for samples of `sampleShape`: a U-Net encoder for images, an MLP
    /// otherwise (or an MLP for any data with `kind: .mlp`).
    public static func defaults(for sampleShape: [Int], kind: NetworkKind? = nil, classes: Int, seed: UInt64 = 0) -> ClassifierConfig {
        let k = kind ?? NetworkKind.defaults(for: sampleShape)
        return ClassifierConfig(inShape: sampleShape, classes: classes,
                                encoder: k == .unet ? .unet(UNetEncoder()) : .mlp(MLPEncoder()), seed: seed)
    }

    public var issues: [ConfigIssue] {
        var out: [ConfigIssue] = []
        let size = inShape.reduce(1) { $0.multipliedReportingOverflow(by: max($1, 0)).partialValue }
        if inShape.isEmpty || !inShape.allSatisfy({ $0 > 0 }) || size > ConfigLimits.sampleSize {
            out.append(ConfigIssue("in_shape", "classifier input shape \(inShape) must have positive sizes and at most \(ConfigLimits.sampleSize) values"))
        }
        if !(2...ConfigLimits.classes).contains(classes) {
            out.append(ConfigIssue("classes", "a classifier needs at least 2 classes (at most \(ConfigLimits.classes)), got \(classes)"))
        }
        switch encoder {
        case .unet(let e):
            if inShape.count != 3 { out.append(ConfigIssue("in_shape", "a U-Net encoder needs image samples [C, H, W], got \(inShape)")) }
            out += levelIssues(channels: e.channels, mults: e.mults, groups: e.groups, name: "classifier")
            if !(1...ConfigLimits.depth).contains(e.resBlocks) {
                out.append(ConfigIssue("res_blocks", "\(e.resBlocks) residual blocks per level: must lie in 1 ... \(ConfigLimits.depth)"))
            }
        case .mlp(let e):
            if !(1...ConfigLimits.width).contains(e.width) { out.append(ConfigIssue("width", "classifier width \(e.width) must lie in 1 ... \(ConfigLimits.width)")) }
            if !(1...ConfigLimits.depth).contains(e.depth) { out.append(ConfigIssue("depth", "classifier depth \(e.depth) must lie in 1 ... \(ConfigLimits.depth)")) }
            if !(2...ConfigLimits.width).contains(e.tembDim) || e.tembDim % 2 != 0 {
                out.append(ConfigIssue("temb_dim", "time-embedding width \(e.tembDim) must be even and lie in 2 ... \(ConfigLimits.width)"))
            }
        }
        if out.isEmpty, let issue = parameterIssue(parameterCount) { out.append(issue) }
        return out
    }

    /// Number of trainable parameters (for a configuration without issues).
    public var parameterCount: Int {
        switch encoder {
        case .unet(let e):
            let temb = 4 * e.channels
            var n = linearCount(32, temb) + linearCount(temb, temb) + convCount(inShape[0], e.channels, 3)
            var cur = e.channels
            for (l, m) in e.mults.enumerated() {
                for _ in 0..<e.resBlocks { n += resBlockCount(cur, e.channels * m, temb: temb); cur = e.channels * m }
                if l < e.mults.count - 1 { n += convCount(cur, cur, 3) }
            }
            return n + 2 * cur + linearCount(cur, classes)
        case .mlp(let e):
            return linearCount(inShape.reduce(1, *) + e.tembDim, e.width) + (e.depth - 1) * linearCount(e.width, e.width)
                + linearCount(e.width, classes)
        }
    }
}

// MARK: every network

/// The network of a model file, typed: what `train` builds and `ModelFile.load` rebuilds.
public enum NetworkConfig: Codable, Equatable, Sendable {
    case unet(UNetConfig)
    case mlp(MLPConfig)
    case classifier(ClassifierConfig)

    /// The default network for samples of `sampleShape` (`kind` nil: U-Net for images, MLP for
    /// vectors). A noise predictor learns the variance with `learnSigma` (the hybrid loss) and is
    /// conditional with `classes` > 0; a classifier has `classes` logits. The defaults themselves
    /// are the config types' initialisers.
    public static func defaults(for sampleShape: [Int], kind: NetworkKind? = nil, classifier: Bool = false,
                                classes: Int = 0, learnSigma: Bool = false, seed: UInt64 = 0) throws -> NetworkConfig {
        let k = kind ?? NetworkKind.defaults(for: sampleShape)
        if classifier {
            if k == .unet && sampleShape.count != 3 {
                throw DDPMError("a U-Net encoder needs image samples [C, H, W]; the data has samples of shape \(sampleShape)")
            }
            return .classifier(ClassifierConfig.defaults(for: sampleShape, kind: k, classes: classes, seed: seed))
        }
        switch k {
        case .unet:
            guard sampleShape.count == 3 else {
                throw DDPMError("a U-Net needs image samples [C, H, W]; the data has samples of shape \(sampleShape)")
            }
            var c = UNetConfig.defaults(for: sampleShape)
            c.classes = classes; c.learnSigma = learnSigma; c.seed = seed
            return .unet(c)
        case .mlp:
            guard sampleShape.count == 1 else {
                throw DDPMError("an MLP noise predictor needs vector samples [D]; the data has samples of shape \(sampleShape)")
            }
            var c = MLPConfig.defaults(for: sampleShape)
            c.classes = classes; c.learnSigma = learnSigma; c.seed = seed
            return .mlp(c)
        }
    }

    /// `arch.arch`: mlp, unet, classifier-mlp or classifier-unet.
    public var arch: String {
        switch self {
        case .unet: return "unet"
        case .mlp: return "mlp"
        case .classifier(let c): return "classifier-" + c.encoder.kind.rawValue
        }
    }

    /// The family (a classifier: its encoder's).
    public var kind: NetworkKind {
        switch self {
        case .unet: return .unet
        case .mlp: return .mlp
        case .classifier(let c): return c.encoder.kind
        }
    }

    public var isClassifier: Bool { if case .classifier = self { return true } else { return false } }

    /// Shape of one input sample.
    public var inputShape: [Int] {
        switch self {
        case .unet(let c): return c.inShape
        case .mlp(let c): return [c.dim]
        case .classifier(let c): return c.inShape
        }
    }

    /// Shape of one output sample: the input's (doubled channels with a learned variance), or [K] logits.
    public var outputShape: [Int] {
        switch self {
        case .unet(let c): return [c.learnSigma ? 2 * c.inShape[0] : c.inShape[0]] + c.inShape.dropFirst()
        case .mlp(let c): return [c.learnSigma ? 2 * c.dim : c.dim]
        case .classifier(let c): return [c.classes]
        }
    }

    /// K: the classes a conditional noise predictor takes (0: unconditional; label K is the null
    /// class), or a classifier's number of logits.
    public var classes: Int {
        switch self {
        case .unet(let c): return c.classes
        case .mlp(let c): return c.classes
        case .classifier(let c): return c.classes
        }
    }

    /// The noise predictor also outputs v of the learned variance (hybrid loss); false for a classifier.
    public var learnSigma: Bool {
        switch self {
        case .unet(let c): return c.learnSigma
        case .mlp(let c): return c.learnSigma
        case .classifier: return false
        }
    }

    /// The initialisation seed.
    public var seed: UInt64 {
        switch self {
        case .unet(let c): return c.seed
        case .mlp(let c): return c.seed
        case .classifier(let c): return c.seed
        }
    }

    /// Every setting out of bounds, in a fixed order; the total parameter count is checked last
    /// (computed, not allocated).
    public var issues: [ConfigIssue] {
        switch self {
        case .unet(let c): return c.issues
        case .mlp(let c): return c.issues
        case .classifier(let c): return c.issues
        }
    }

    /// Throws the first issue.
    public func validate() throws {
        if let issue = issues.first { throw DDPMError(issue.message) }
    }

    /// Number of trainable parameters (valid configurations only: call `validate()` first).
    public var parameterCount: Int {
        switch self {
        case .unet(let c): return c.parameterCount
        case .mlp(let c): return c.parameterCount
        case .classifier(let c): return c.parameterCount
        }
    }

    /// Validates, then builds the network with its initial weights (from `seed`).
    public func make() throws -> Network {
        try validate()
        switch self {
        case .unet(let c):
            return try UNet(config: c)
        case .mlp(let c):
            return MLP(dim: c.dim, width: c.width, depth: c.depth, sinusoidDim: c.tembDim, fourier: c.fourier, classes: c.classes,
                       learnSigma: c.learnSigma, seed: c.seed)
        case .classifier(let c):
            switch c.encoder {
            case .unet(let e):
                return try NoiseAwareUNetClassifier(inShape: c.inShape, channels: e.channels, mults: e.mults,
                                                    resBlocks: e.resBlocks, groups: e.groups, classes: c.classes, seed: c.seed)
            case .mlp(let e):
                return try NoiseAwareClassifier(inShape: c.inShape, width: e.width, depth: e.depth, sinusoidDim: e.tembDim,
                                                classes: c.classes, seed: c.seed)
            }
        }
    }
}

// MARK: the model file's `arch.*` dictionary

extension NetworkConfig {
    /// The `arch.*` keys of a model file (without the prefix), as every version has written them.
    public var architecture: [String: String] {
        switch self {
        case .unet(let c):
            var a = ["arch": "unet", "in_shape": archList(c.inShape), "channels": String(c.channels), "mults": archList(c.mults),
                     "res_blocks": String(c.resBlocks), "attn": archList(c.attnResolutions), "heads": String(c.heads),
                     "head_dim": String(c.headDim), "groups": String(c.groups), "dropout": String(c.dropout),
                     "classes": String(c.classes), "learn_sigma": String(c.learnSigma), "seed": String(c.seed)]
            // the diffusers options, only when not default (older files stay as they were)
            let d = UNetConfig(inShape: c.inShape)
            if c.normEps != d.normEps { a["norm_eps"] = String(c.normEps) }
            if c.flipSinToCos != d.flipSinToCos { a["flip_sin_to_cos"] = String(c.flipSinToCos) }
            if c.freqShift != d.freqShift { a["freq_shift"] = String(c.freqShift) }
            if c.downsamplePadding != d.downsamplePadding { a["downsample_padding"] = String(c.downsamplePadding) }
            if c.scaleShift != d.scaleShift { a["scale_shift"] = String(c.scaleShift) }
            if c.midScale != d.midScale { a["mid_scale"] = String(c.midScale) }
            if c.midAttention != d.midAttention { a["mid_attn"] = String(c.midAttention) }
            if c.midAttentionNorm != d.midAttentionNorm { a["mid_attn_norm"] = String(c.midAttentionNorm) }
            if c.centerInput != d.centerInput { a["center_input"] = String(c.centerInput) }
            return a
        case .mlp(let c):
            var a = ["arch": "mlp", "dim": String(c.dim), "width": String(c.width), "depth": String(c.depth),
                     "temb_dim": String(c.tembDim), "classes": String(c.classes), "learn_sigma": String(c.learnSigma),
                     "seed": String(c.seed)]
            if c.fourier != 0 { a["fourier"] = String(c.fourier) }   // absent in files of older versions: 0
            return a
        case .classifier(let c):
            var a = ["arch": arch, "in_shape": archList(c.inShape), "classes": String(c.classes), "seed": String(c.seed)]
            switch c.encoder {
            case .unet(let e):
                a["channels"] = String(e.channels); a["mults"] = archList(e.mults)
                a["res_blocks"] = String(e.resBlocks); a["groups"] = String(e.groups)
            case .mlp(let e):
                a["width"] = String(e.width); a["depth"] = String(e.depth); a["temb_dim"] = String(e.tembDim)
            }
            return a
        }
    }

    /// Reads an `arch.*` dictionary (all values strings): absent keys take the config types'
    /// defaults, unknown keys and malformed values are errors, and the result is validated.
    public init(architecture a: [String: String]) throws {
        var a = a
        guard let arch = a.removeValue(forKey: "arch") else { throw DDPMError("architecture: missing key 'arch'") }
        var p = ArchParser(arch: arch, values: a)
        switch arch {
        case "mlp":
            let d = MLPConfig(dim: try p.int("dim", nil))
            self = .mlp(MLPConfig(dim: d.dim, width: try p.int("width", d.width), depth: try p.int("depth", d.depth),
                                  tembDim: try p.int("temb_dim", d.tembDim), fourier: try p.int("fourier", d.fourier),
                                  classes: try p.int("classes", d.classes),
                                  learnSigma: try p.bool("learn_sigma", d.learnSigma), seed: try p.uint64("seed", d.seed)))
        case "unet":
            var c = UNetConfig(inShape: try p.ints("in_shape", nil))
            c.channels = try p.int("channels", c.channels)
            c.mults = try p.ints("mults", c.mults)
            c.resBlocks = try p.int("res_blocks", c.resBlocks)
            c.attnResolutions = try p.ints("attn", c.attnResolutions)
            c.heads = try p.int("heads", c.heads)
            c.headDim = try p.int("head_dim", c.headDim)
            c.groups = try p.int("groups", c.groups)
            // as written: String(Float); read through Double as every version did
            c.dropout = Float(try p.double("dropout", Double(c.dropout)))
            c.classes = try p.int("classes", c.classes)
            c.learnSigma = try p.bool("learn_sigma", c.learnSigma)
            c.seed = try p.uint64("seed", c.seed)
            c.normEps = try p.double("norm_eps", c.normEps)
            c.flipSinToCos = try p.bool("flip_sin_to_cos", c.flipSinToCos)
            c.freqShift = try p.int("freq_shift", c.freqShift)
            c.downsamplePadding = try p.int("downsample_padding", c.downsamplePadding)
            c.scaleShift = try p.bool("scale_shift", c.scaleShift)
            c.midScale = try p.double("mid_scale", c.midScale)
            c.midAttention = try p.bool("mid_attn", c.midAttention)
            c.midAttentionNorm = try p.bool("mid_attn_norm", c.midAttentionNorm)
            c.centerInput = try p.bool("center_input", c.centerInput)
            self = .unet(c)
        case "classifier-unet":
            let d = ClassifierConfig.UNetEncoder()
            let e = ClassifierConfig.UNetEncoder(channels: try p.int("channels", d.channels), mults: try p.ints("mults", d.mults),
                                                 resBlocks: try p.int("res_blocks", d.resBlocks), groups: try p.int("groups", d.groups))
            self = .classifier(ClassifierConfig(inShape: try p.ints("in_shape", nil), classes: try p.int("classes", nil),
                                                encoder: .unet(e), seed: try p.uint64("seed", 0)))
        case "classifier-mlp":
            let d = ClassifierConfig.MLPEncoder()
            let e = ClassifierConfig.MLPEncoder(width: try p.int("width", d.width), depth: try p.int("depth", d.depth),
                                                tembDim: try p.int("temb_dim", d.tembDim))
            self = .classifier(ClassifierConfig(inShape: try p.ints("in_shape", nil), classes: try p.int("classes", nil),
                                                encoder: .mlp(e), seed: try p.uint64("seed", 0)))
        default:
            throw DDPMError("architecture: unknown arch '\(arch)' (expected mlp, unet, classifier-mlp or classifier-unet)")
        }
        try p.finish()
        if let issue = issues.first { throw DDPMError("architecture (\(arch)): \(issue.message)") }
    }
}

/// "1,2,2" (the `arch.*` list format; "" for none).
func archList(_ v: [Int]) -> String { v.map(String.init).joined(separator: ",") }

/// Typed reads from an architecture dictionary; unknown keys are an error.
struct ArchParser {
    let arch: String
    var values: [String: String]

    mutating func string(_ key: String, _ def: String?) throws -> String {
        if let v = values.removeValue(forKey: key) { return v }
        if let def { return def }
        throw DDPMError("architecture (\(arch)): missing key '\(key)'")
    }

    mutating func int(_ key: String, _ def: Int?) throws -> Int {
        let s = try string(key, def.map(String.init))
        guard let v = Int(s.archTrimmed) else { throw DDPMError("architecture (\(arch)): '\(key)' must be an integer, got '\(s)'") }
        return v
    }

    mutating func uint64(_ key: String, _ def: UInt64) throws -> UInt64 {
        let s = try string(key, String(def))
        guard let v = UInt64(s.archTrimmed) else { throw DDPMError("architecture (\(arch)): '\(key)' must be a non-negative integer, got '\(s)'") }
        return v
    }

    mutating func double(_ key: String, _ def: Double) throws -> Double {
        let s = try string(key, String(def))
        guard let v = Double(s.archTrimmed) else { throw DDPMError("architecture (\(arch)): '\(key)' must be a number, got '\(s)'") }
        return v
    }

    mutating func bool(_ key: String, _ def: Bool) throws -> Bool {
        let s = try string(key, String(def))
        switch s.archTrimmed.lowercased() {
        case "true", "1", "yes": return true
        case "false", "0", "no": return false
        default: throw DDPMError("architecture (\(arch)): '\(key)' must be true or false, got '\(s)'")
        }
    }

    mutating func ints(_ key: String, _ def: [Int]?) throws -> [Int] {
        let s = try string(key, def.map(archList))
        return try parseIntList(s) { DDPMError("architecture (\(arch)): '\(key)' must be comma-separated integers, got '\(s)'") }
    }

    func finish() throws {
        if let k = values.keys.sorted().first { throw DDPMError("architecture (\(arch)): unknown key '\(k)'") }
    }
}

/// "1,2,2" -> [1, 2, 2]; "" (or blanks) -> []; anything else throws `error()`.
public func parseIntList(_ s: String, error: () -> Error) throws -> [Int] {
    if s.archTrimmed.isEmpty { return [] }
    let parts = s.split(separator: ",", omittingEmptySubsequences: false).map { Int(String($0).archTrimmed) }
    guard parts.allSatisfy({ $0 != nil }) else { throw error() }
    return parts.map { $0! }
}

extension String {
    var archTrimmed: String {
        var s = Substring(self)
        while s.first == " " { s.removeFirst() }
        while s.last == " " { s.removeLast() }
        return String(s)
    }
}

// MARK: sizes, shared by the configs' checks and parameter counts

/// Issues of a stack of levels of `channels * mults[l]` channels normalised in `groups` groups.
func levelIssues(channels: Int, mults: [Int], groups: Int, name: String) -> [ConfigIssue] {
    var out: [ConfigIssue] = []
    if !(2...ConfigLimits.width).contains(channels) || channels % 2 != 0 {
        out.append(ConfigIssue("channels", "\(name) channels \(channels) must be even and lie in 2 ... \(ConfigLimits.width)"))
        return out
    }
    if !(1...ConfigLimits.levels).contains(mults.count) || !mults.allSatisfy({ $0 >= 1 && $0 <= ConfigLimits.width / channels }) {
        out.append(ConfigIssue("mults", "\(name) channel multipliers \(archList(mults)): 1 ... \(ConfigLimits.levels) levels of multipliers >= 1 with at most \(ConfigLimits.width) channels (\(channels) x multiplier) each"))
        return out
    }
    if groups < 1 || channels % groups != 0 || mults.contains(where: { (channels * $0) % groups != 0 }) {
        let bad = ([channels] + mults.map { channels * $0 }).first { groups < 1 || $0 % groups != 0 } ?? channels
        out.append(ConfigIssue("groups", "\(bad) channels are not divisible into \(groups) normalisation groups"))
    }
    return out
}

func parameterIssue(_ count: Int) -> ConfigIssue? {
    count <= ConfigLimits.parameters ? nil
        : ConfigIssue("parameters", "the network would have \(count) parameters, more than the limit of \(ConfigLimits.parameters)")
}

/// Weights and biases of Linear(a -> b), Conv2d(a -> b, k x k), a ResBlock (a -> b).
func linearCount(_ a: Int, _ b: Int) -> Int { a * b + b }
func convCount(_ a: Int, _ b: Int, _ k: Int) -> Int { a * b * k * k + b }
func resBlockCount(_ a: Int, _ b: Int, temb: Int) -> Int {
    2 * a + convCount(a, b, 3) + linearCount(temb, b) + 2 * b + convCount(b, b, 3) + (a != b ? convCount(a, b, 1) : 0)
}
