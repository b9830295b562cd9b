// The contract between the neural-network core and the tools that train and
// sample with it. Layers live beside this file, each with forward and backward.

/// A trainable tensor and the gradient accumulated into it by `backward`.
public final class Parameter {
    /// Unique dotted name, e.g. "down.0.res.1.conv1.weight": the tensor's name in model files.
    public let name: String
    public let shape: [Int]
    public var value: [Float]
    public var grad: [Float]

    public init(name: String, shape: [Int], value: [Float]) {
        precondition(value.count == shape.reduce(1, *), "parameter \(name): \(value.count) values for shape \(shape)")
        self.name = name
        self.shape = shape
        self.value = value
        self.grad = [Float](repeating: 0, count: value.count)
    }

    public var count: Int { value.count }

    public func zeroGrad() {
        grad.withUnsafeMutableBufferPointer { g in
            for i in 0..<g.count { g[i] = 0 }
        }
    }
}

/// A noise-prediction network eps_theta(x_t, t, y) (a U-Net or an MLP).
public protocol Network: AnyObject {
    /// Trainable parameters in a fixed order; names are unique.
    var parameters: [Parameter] { get }
    /// The typed hyper-parameters that rebuild the network (`config.make()`), stored in a model's
    /// `__metadata__` as the `arch.*` keys (`architecture`, derived from it).
    var config: NetworkConfig { get }
    /// K: the classes it is conditioned on (0: unconditional; label K is the null class), or a
    /// classifier's number of logits.
    var classes: Int { get }
    /// Shape of one input sample ([C, H, W] or [D]) and of one output sample
    /// (the same, or with doubled channels for a learned variance).
    var inputShape: [Int] { get }
    var outputShape: [Int] { get }
    /// Forward for a batch. `x` holds batch * prod(inputShape) values; `t` the
    /// timesteps (0-based); `y` class labels, nil for an unconditional network
    /// (the null class is label == number of classes). `training` enables dropout.
    func forward(_ x: [Float], t: [Int], y: [Int]?, training: Bool) -> [Float]
    /// Backward of the last forward: accumulates into the parameters' `grad`
    /// and returns d loss / d x.
    func backward(_ gradOutput: [Float]) -> [Float]
}

extension Network {
    public var classes: Int { config.classes }
    /// The model file's `arch.*` keys (without the prefix), derived from `config`.
    public var architecture: [String: String] { config.architecture }
}
