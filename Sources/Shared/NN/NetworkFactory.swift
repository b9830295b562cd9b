// Builds networks from `architecture` dictionaries (as stored in a model's `__metadata__`),
// the peer benchmark's networks, and the check of a batch before `forward`.

public enum NetworkFactory {
    /// Any network from its `arch.*` keys (`NetworkConfig(architecture:)`, then `make()`);
    /// absent keys take the config types' defaults.
    public static func make(architecture a: [String: String]) throws -> Network {
        try NetworkConfig(architecture: a).make()
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
        let classes = net.classes
        if let y {
            guard classes > 0 else { throw DDPMError("class labels given to an unconditional network") }
            guard y.count == t.count else { throw DDPMError("\(y.count) class labels for \(t.count) samples") }
            if let bad = y.first(where: { $0 < 0 || $0 > classes }) {
                throw DDPMError("class label \(bad) out of range 0...\(classes) (\(classes) is the null class)")
            }
        }
    }
}
