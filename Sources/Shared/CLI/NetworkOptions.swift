// The network flags of `train` (U-Net and MLP sizes) as one option group: their help text prints
// the config types' defaults, `validate()` holds the rules between these flags, and `apply`
// writes them into a NetworkConfig -- a fresh one, or a checkpoint's, whose values they must match.
import ArgumentParser

extension NetworkKind: ExpressibleByArgument {}

public struct NetworkOptions: ParsableArguments {
    public init() {}

    // The defaults the help text shows: the config types' own.
    static let unet = UNetConfig.defaults(for: [1, 28, 28])
    static let mlp = MLPConfig(dim: 2)
    static let clfUNet = ClassifierConfig.UNetEncoder()
    static let clfMLP = ClassifierConfig.MLPEncoder()

    @Option(help: "Network: unet or mlp (default: unet for images [N,C,H,W], mlp for vectors [N,D]).")
    public var arch: NetworkKind?
    @Option(help: "U-Net base channels (default \(NetworkOptions.unet.channels); classifier \(NetworkOptions.clfUNet.channels)).")
    public var channels: Int?
    @Option(help: "U-Net channel multipliers per level (default \(archList(NetworkOptions.unet.mults)); classifier \(archList(NetworkOptions.clfUNet.mults))).")
    public var mults: String?
    @Option(help: "U-Net residual blocks per level (default \(NetworkOptions.unet.resBlocks); classifier \(NetworkOptions.clfUNet.resBlocks)).")
    public var resBlocks: Int?
    @Option(help: "U-Net attention at these feature-map sizes, comma-separated, e.g. 7 or 14,7; '' for none (default \(NetworkOptions.unet.attnResolutions.isEmpty ? "none" : archList(NetworkOptions.unet.attnResolutions))). The mid block always has attention.")
    public var attn: String?
    @Option(help: "U-Net attention heads (default \(NetworkOptions.unet.heads): channels / \(NetworkOptions.unet.headDim), heads of width \(NetworkOptions.unet.headDim)).")
    public var heads: Int?
    @Option(help: "U-Net GroupNorm groups (default \(NetworkOptions.unet.groups); classifier \(NetworkOptions.clfUNet.groups)).")
    public var groups: Int?
    @Option(help: "U-Net dropout probability (default \(NetworkOptions.unet.dropout)).")
    public var dropout: Double?
    @Option(help: "MLP hidden width (default \(NetworkOptions.mlp.width); classifier \(NetworkOptions.clfMLP.width)).")
    public var width: Int?
    @Option(help: "MLP hidden layers (default \(NetworkOptions.mlp.depth); classifier \(NetworkOptions.clfMLP.depth)).")
    public var depth: Int?
    @Option(help: "MLP sinusoidal time-embedding dimension (default \(NetworkOptions.mlp.tembDim); classifier \(NetworkOptions.clfMLP.tembDim)).")
    public var tembDim: Int?
    @Option(help: "MLP Fourier features of the input: sin and cos of pi 2^k x for k < F per coordinate (Tancik et al. 2020), for low-dimensional data such as the 2-D toys (default \(NetworkOptions.mlp.fourier): none; at most \(MLPConfig.maxFourier)).")
    public var fourier: Int?

    /// The flags of each family that were given, in help order.
    var unetFlags: [String] {
        [("--channels", channels != nil), ("--mults", mults != nil), ("--res-blocks", resBlocks != nil), ("--attn", attn != nil),
         ("--heads", heads != nil), ("--groups", groups != nil), ("--dropout", dropout != nil)].filter { $0.1 }.map { $0.0 }
    }
    var mlpFlags: [String] {
        [("--width", width != nil), ("--depth", depth != nil), ("--temb-dim", tembDim != nil), ("--fourier", fourier != nil)].filter { $0.1 }.map { $0.0 }
    }

    /// The rules between these flags: lists well formed, no flag of the other family.
    public func validate() throws {
        _ = try list("--mults", mults)
        _ = try list("--attn", attn)
        if arch == .mlp, let f = unetFlags.first { throw ValidationError("\(f) is a U-Net flag; it does not apply to --arch mlp") }
        if arch == .unet, let f = mlpFlags.first { throw ValidationError("\(f) is an MLP flag; it does not apply to --arch unet") }
    }

    func list(_ flag: String, _ text: String?) throws -> [Int]? {
        guard let text else { return nil }
        return try parseIntList(text) { ValidationError("\(flag) '\(text)': expected comma-separated integers such as 1,2,2 ('' for none)") }
    }

    /// Writes the given flags into `config`. `fixed` (resuming): `config` is a checkpoint's and a
    /// given value must equal its own. A flag the network does not have is an error either way.
    public func apply(to config: inout NetworkConfig, fixed: Bool) throws {
        let s = FlagSetter(fixed: fixed)
        let whose = fixed ? "the checkpoint's " : "the "
        if fixed, let arch, arch != config.kind {
            throw DDPMError("--arch \(arch.rawValue) differs from the checkpoint's \(config.kind.rawValue)")
        }
        func refuse(_ flags: [String], _ what: String) throws {
            if let f = flags.first { throw DDPMError("\(f) does not apply to \(whose)\(what)") }
        }
        let m = try list("--mults", mults), a = try list("--attn", attn)
        switch config {
        case .unet(var c):
            try s.set("--channels", channels, &c.channels)
            try s.set("--mults", m, &c.mults, show: showList)
            try s.set("--res-blocks", resBlocks, &c.resBlocks)
            try s.set("--attn", a, &c.attnResolutions, show: showList)
            try s.set("--heads", heads, &c.heads)
            try s.set("--groups", groups, &c.groups)
            try s.set("--dropout", dropout.map { Float($0) }, &c.dropout)
            try refuse(mlpFlags, "U-Net (an MLP flag)")
            config = .unet(c)
        case .mlp(var c):
            try s.set("--width", width, &c.width)
            try s.set("--depth", depth, &c.depth)
            try s.set("--temb-dim", tembDim, &c.tembDim)
            try s.set("--fourier", fourier, &c.fourier)
            try refuse(unetFlags, "MLP (a U-Net flag)")
            config = .mlp(c)
        case .classifier(var c):
            switch c.encoder {
            case .unet(var e):
                try s.set("--channels", channels, &e.channels)
                try s.set("--mults", m, &e.mults, show: showList)
                try s.set("--res-blocks", resBlocks, &e.resBlocks)
                try s.set("--groups", groups, &e.groups)
                try refuse([("--attn", attn != nil), ("--heads", heads != nil), ("--dropout", dropout != nil)].filter { $0.1 }.map { $0.0 },
                           "classifier's U-Net encoder (no attention, no dropout)")
                try refuse(mlpFlags, "classifier's U-Net encoder (an MLP flag)")
                c.encoder = .unet(e)
            case .mlp(var e):
                try s.set("--width", width, &e.width)
                try s.set("--depth", depth, &e.depth)
                try s.set("--temb-dim", tembDim, &e.tembDim)
                try refuse(fourier != nil ? ["--fourier"] : [], "classifier's MLP encoder (no Fourier features)")
                try refuse(unetFlags, "classifier's MLP encoder (a U-Net flag)")
                c.encoder = .mlp(e)
            }
            config = .classifier(c)
        }
    }

    /// A built config's bounds (`NetworkConfig.issues`), the flag named when it was given; and
    /// attention sizes no level has.
    public func check(_ config: NetworkConfig) throws {
        if let issue = config.issues.first {
            throw DDPMError((flag(for: issue.key).map { "\($0): " } ?? "") + issue.message)
        }
        if case .unet(let c) = config, attn != nil, let bad = c.attnResolutions.first(where: { !c.levelSizes.contains($0) }) {
            throw DDPMError("--attn \(bad): no level has feature maps of size \(bad) (the levels have \(archList(c.levelSizes)))")
        }
    }

    /// The flag that sets config key `key`, when it was given.
    func flag(for key: String) -> String? {
        let given: [String: (String, Bool)] = [
            "channels": ("--channels", channels != nil), "mults": ("--mults", mults != nil),
            "res_blocks": ("--res-blocks", resBlocks != nil), "attn": ("--attn", attn != nil), "heads": ("--heads", heads != nil),
            "groups": ("--groups", groups != nil), "dropout": ("--dropout", dropout != nil), "width": ("--width", width != nil),
            "depth": ("--depth", depth != nil), "temb_dim": ("--temb-dim", tembDim != nil), "fourier": ("--fourier", fourier != nil)]
        guard let (f, isGiven) = given[key], isGiven else { return nil }
        return f
    }
}

func showList(_ v: [Int]) -> String { v.isEmpty ? "''" : archList(v) }

/// Writes flag values into config fields; `fixed`: a given value must equal the field's (resume).
struct FlagSetter {
    let fixed: Bool

    func set<T: Equatable>(_ flag: String, _ value: T?, _ field: inout T, show: (T) -> String = { "\($0)" }) throws {
        guard let value else { return }
        if fixed && value != field {
            throw DDPMError("\(flag) \(show(value)) differs from the checkpoint's \(show(field))")
        }
        field = value
    }
}
