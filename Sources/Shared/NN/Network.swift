// The contract between the neural-network core and the tools that train and
// sample with it. Layers live beside this file, each with forward and backward.
//
// Memory (llm.c style): a network's parameters live in ONE flat value buffer and ONE
// flat gradient buffer (`ParameterStore`); each `Parameter` is a named view of a range of
// them. The optimizer's moments and the EMA's shadow are flat buffers of the same layout,
// so zeroing, the gradient norm, clipping, AdamW + EMA and the model file's tensors are
// each one pass over one range.

/// A trainable tensor and the gradient accumulated into it by `backward`: a view of
/// `count` floats at `offset` in `store`'s flat `values` and `grads`.
public final class Parameter {
    /// Unique dotted name, e.g. "down.0.res.1.conv1.weight": the tensor's name in model files.
    public let name: String
    public let shape: [Int]
    public let count: Int
    /// The store that holds the values (kept alive by this reference). A parameter made on
    /// its own has a store of its own; `ParameterStore(packing:)` moves it into a shared one.
    public private(set) var store: ParameterStore
    public private(set) var offset: Int
    /// The values and the gradient: fixed memory of the store (it never moves).
    public private(set) var value: UnsafeMutableBufferPointer<Float>
    public private(set) var grad: UnsafeMutableBufferPointer<Float>

    /// A parameter in a store of its own (until a network packs it), gradient zero.
    public init(name: String, shape: [Int], value: [Float]) {
        precondition(value.count == shape.reduce(1, *), "parameter \(name): \(value.count) values for shape \(shape)")
        self.name = name
        self.shape = shape
        count = value.count
        let own = ParameterStore(slots: [.init(name: name, shape: shape, offset: 0, count: value.count)])
        _ = own.values.update(fromContentsOf: value)
        store = own
        offset = 0
        self.value = own.values
        grad = own.grads
    }

    /// Points this parameter at `offset` in `store` (for `ParameterStore(packing:)`).
    fileprivate func move(to store: ParameterStore, offset: Int) {
        self.store = store
        self.offset = offset
        value = store.slice(store.values, offset..<offset + count)
        grad = store.slice(store.grads, offset..<offset + count)
    }

    public func zeroGrad() { grad.update(repeating: 0) }
}

/// One flat buffer of parameter values and one of their gradients, with the layout of the
/// tensors in it: tensor j occupies `slots[j].range`, the slots back to back in order
/// (offset_j = offset_{j-1} + count_{j-1}). The memory is allocated once, never moves and
/// is freed with the store.
public final class ParameterStore {
    public struct Slot: Sendable {
        public let name: String
        public let shape: [Int]
        public let offset: Int
        public let count: Int
        public var range: Range<Int> { offset..<offset + count }
    }

    public let slots: [Slot]
    /// Total number of floats (the sum of the slots' counts).
    public let count: Int
    public let values: UnsafeMutableBufferPointer<Float>
    public let grads: UnsafeMutableBufferPointer<Float>

    /// A zeroed store with this layout (`slots` back to back from 0).
    init(slots: [Slot]) {
        var n = 0
        for s in slots {
            precondition(s.offset == n, "ParameterStore: slot '\(s.name)' at \(s.offset), expected \(n)")
            n += s.count
        }
        self.slots = slots
        count = n
        values = ParameterStore.allocate(n)
        grads = ParameterStore.allocate(n)
    }

    /// Packs `parameters`, in this order, into one new store: copies their values and
    /// gradients and points each parameter at its range (their old stores are released).
    public convenience init(packing parameters: [Parameter]) {
        var slots: [Slot] = []
        var n = 0
        for p in parameters {
            slots.append(Slot(name: p.name, shape: p.shape, offset: n, count: p.count))
            n += p.count
        }
        self.init(slots: slots)
        for (p, s) in zip(parameters, slots) {
            _ = slice(values, s.range).update(fromContentsOf: p.value)
            _ = slice(grads, s.range).update(fromContentsOf: p.grad)
            p.move(to: self, offset: s.offset)
        }
    }

    deinit {
        values.baseAddress!.deallocate()
        grads.baseAddress!.deallocate()
    }

    /// A zeroed buffer of `n` floats, 64-byte aligned (also for n = 0: the base is never nil).
    /// Free with `baseAddress!.deallocate()`.
    static func allocate(_ n: Int) -> UnsafeMutableBufferPointer<Float> {
        let raw = UnsafeMutableRawPointer.allocate(byteCount: max(1, n) * MemoryLayout<Float>.stride, alignment: 64)
        let p = raw.initializeMemory(as: Float.self, repeating: 0, count: max(1, n))
        return UnsafeMutableBufferPointer(start: p, count: n)
    }

    /// Elements `r` of a flat buffer of this layout (values, grads, or an optimizer/EMA buffer).
    @inline(__always)
    public func slice(_ buffer: UnsafeMutableBufferPointer<Float>, _ r: Range<Int>) -> UnsafeMutableBufferPointer<Float> {
        precondition(buffer.count == count && r.lowerBound >= 0 && r.upperBound <= count)
        return UnsafeMutableBufferPointer(start: buffer.baseAddress! + r.lowerBound, count: r.count)
    }

    /// Sets every gradient to zero (one pass).
    public func zeroGrad() { grads.update(repeating: 0) }
}

/// A noise-prediction network eps_theta(x_t, t, y) (a U-Net or an MLP).
public protocol Network: AnyObject {
    /// Trainable parameters in a fixed order; names are unique.
    var parameters: [Parameter] { get }
    /// The flat buffers that hold `parameters`, in the same order (slot j is parameters[j]).
    var store: ParameterStore { get }
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
