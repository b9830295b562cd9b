// Rebuilds any network from its `architecture` dictionary (all values strings).

/// Builds networks from `architecture` dictionaries (as stored in a model's `__metadata__`).
public enum NetworkFactory {
    /// arch=mlp: dim, width (128), depth (3), temb_dim (32), classes (0), learn_sigma (false), seed (0).
    /// arch=unet: see `UNet.init(config:)` keys.
    public static func make(architecture a: [String: String]) throws -> Network {
        var a = a
        guard let arch = a.removeValue(forKey: "arch") else { throw DDPMError("architecture: missing key 'arch'") }
        var p = ArchParser(arch: arch, values: a)
        let net: Network
        switch arch {
        case "mlp":
            let dim = try p.int("dim", nil, min: 1)
            let width = try p.int("width", 128, min: 1)
            let depth = try p.int("depth", 3, min: 1)
            let temb = try p.int("temb_dim", 32, min: 2)
            guard temb % 2 == 0 else { throw DDPMError("architecture: temb_dim must be even, got \(temb)") }
            let classes = try p.int("classes", 0, min: 0)
            let learnSigma = try p.bool("learn_sigma", false)
            let seed = try p.uint64("seed", 0)
            try p.finish()
            net = MLP(dim: dim, width: width, depth: depth, sinusoidDim: temb, classes: classes,
                      learnSigma: learnSigma, seed: seed)
        case "unet":
            var c = UNetConfig(inShape: try p.ints("in_shape", nil, min: 1))
            c.channels = try p.int("channels", 32, min: 1)
            c.mults = try p.ints("mults", [1, 2, 2], min: 1)
            c.resBlocks = try p.int("res_blocks", 2, min: 1)
            c.attnResolutions = try p.ints("attn", [], min: 1)
            c.heads = try p.int("heads", 0, min: 0)
            c.headDim = try p.int("head_dim", 8, min: 1)
            c.groups = try p.int("groups", 8, min: 1)
            c.dropout = Float(try p.double("dropout", 0, range: 0...0.999))
            c.classes = try p.int("classes", 0, min: 0)
            c.learnSigma = try p.bool("learn_sigma", false)
            c.seed = try p.uint64("seed", 0)
            try p.finish()
            net = try UNet(config: c)
        default:
            throw DDPMError("architecture: unknown arch '\(arch)' (expected mlp or unet)")
        }
        return net
    }

    /// The peer's "bench-unet-28": 1x28x28, channels 32, mults 1,2,2, 2 res blocks,
    /// attention at 7x7 with 8 heads of dim 8, 8 groups; 1,623,169 parameters
    /// (1,624,577 with classes = 10, i.e. 11 class rows).
    public static func benchUNet28(classes: Int = 0, seed: UInt64 = 0) -> UNet {
        try! UNet(config: UNetConfig(inShape: [1, 28, 28], channels: 32, mults: [1, 2, 2], resBlocks: 2,
                                     attnResolutions: [7], heads: 8, headDim: 8, groups: 8, dropout: 0,
                                     classes: classes, learnSigma: false, seed: seed))
    }

    /// The peer's "mlp-2d": 34 -> 128 -> 128 -> 128 -> 2, 37,762 parameters.
    public static func benchMLP2D(seed: UInt64 = 0) -> MLP {
        MLP(dim: 2, width: 128, depth: 3, sinusoidDim: 32, classes: 0, learnSigma: false, seed: seed)
    }

    /// Checks a batch before it is handed to `forward` (which only preconditions):
    /// sizes, timesteps in 0..<T (when T is given) and labels in 0...classes.
    public static func validate(_ net: Network, x: [Float], t: [Int], y: [Int]?, timesteps T: Int? = nil) throws {
        let per = net.inputShape.reduce(1, *)
        guard x.count == t.count * per else {
            throw DDPMError("input: \(x.count) values for \(t.count) samples of shape \(net.inputShape)")
        }
        if let T, let bad = t.first(where: { $0 < 0 || $0 >= T }) {
            throw DDPMError("timestep \(bad) out of range 0..<\(T)")
        }
        let classes = Int(net.architecture["classes"] ?? "0") ?? 0
        if let y {
            guard classes > 0 else { throw DDPMError("class labels given to an unconditional network") }
            guard y.count == t.count else { throw DDPMError("\(y.count) class labels for \(t.count) samples") }
            if let bad = y.first(where: { $0 < 0 || $0 > classes }) {
                throw DDPMError("class label \(bad) out of range 0...\(classes) (\(classes) is the null class)")
            }
        }
    }
}

/// Typed reads from an architecture dictionary; unknown keys are an error.
struct ArchParser {
    let arch: String
    var values: [String: String]

    mutating func string(_ key: String, _ def: String?) throws -> String {
        if let v = values.removeValue(forKey: key) { return v }
        if let def { return def }
        throw DDPMError("architecture (\(arch)): missing key '\(key)'")
    }

    mutating func int(_ key: String, _ def: Int?, min lo: Int) throws -> Int {
        let s = try string(key, def.map(String.init))
        guard let v = Int(s.nnTrimmed), v >= lo else {
            throw DDPMError("architecture (\(arch)): '\(key)' must be an integer >= \(lo), got '\(s)'")
        }
        return v
    }

    mutating func uint64(_ key: String, _ def: UInt64) throws -> UInt64 {
        let s = try string(key, String(def))
        guard let v = UInt64(s.nnTrimmed) else { throw DDPMError("architecture (\(arch)): '\(key)' must be a non-negative integer, got '\(s)'") }
        return v
    }

    mutating func double(_ key: String, _ def: Double, range: ClosedRange<Double>) throws -> Double {
        let s = try string(key, String(def))
        guard let v = Double(s.nnTrimmed), range.contains(v) else {
            throw DDPMError("architecture (\(arch)): '\(key)' must be a number in \(range), got '\(s)'")
        }
        return v
    }

    mutating func bool(_ key: String, _ def: Bool) throws -> Bool {
        let s = try string(key, String(def))
        switch s.nnTrimmed.lowercased() {
        case "true", "1", "yes": return true
        case "false", "0", "no": return false
        default: throw DDPMError("architecture (\(arch)): '\(key)' must be true or false, got '\(s)'")
        }
    }

    mutating func ints(_ key: String, _ def: [Int]?, min lo: Int) throws -> [Int] {
        let s = try string(key, def.map { $0.map(String.init).joined(separator: ",") })
        if s.nnTrimmed.isEmpty { return [] }
        let parts = s.split(separator: ",").map { Int(String($0).nnTrimmed) }
        guard !parts.isEmpty, parts.allSatisfy({ $0 != nil && $0! >= lo }) else {
            throw DDPMError("architecture (\(arch)): '\(key)' must be comma-separated integers >= \(lo), got '\(s)'")
        }
        return parts.map { $0! }
    }

    func finish() throws {
        if let k = values.keys.sorted().first {
            throw DDPMError("architecture (\(arch)): unknown key '\(k)'")
        }
    }
}

fileprivate extension String {
    var nnTrimmed: String {
        var s = Substring(self)
        while s.first == " " { s.removeFirst() }
        while s.last == " " { s.removeLast() }
        return String(s)
    }
}
