// A data frame validated once: 'x' (and 't', 'y') with shapes, dtypes, ranges and finiteness
// checked against what the consumer needs, every failure naming the frame and the tensor.
// Every tool and the Trainer read their data frames through this type (docs/FORMAT.md,
// "Data frames").

/// What a consumer requires of a data frame.
public struct BatchRules: Sendable {
    /// Shape of one sample ([D] or [C, H, W]); nil: any, taken from the first frame.
    public var sampleShape: [Int]?
    /// Sample ranks accepted when `sampleShape` is nil (1: vectors, 3: images).
    public var ranks: Set<Int> = [1, 3]
    /// 't' must be present (true), may be present (nil) or is ignored (false).
    public var timesteps: Bool? = nil
    /// Number of timesteps T: every t must lie in 0 ..< T.
    public var T: Int? = nil
    /// Labels: nil ignores 'y'; a value K accepts 'y' in 0 ... K (K itself is the null class when
    /// `allowNull`), K = 0 refuses labels.
    public var classes: Int? = nil
    public var allowNull = false
    /// false: 'y' is not read at all.
    public var readLabels = true
    /// 'x' may hold NaN or infinity.
    public var allowNonFinite = false
    /// Zero samples (N = 0) are accepted.
    public var allowEmpty = false

    public init(sampleShape: [Int]? = nil, timesteps: Bool? = nil, T: Int? = nil, classes: Int? = nil) {
        self.sampleShape = sampleShape
        self.timesteps = timesteps
        self.T = T
        self.classes = classes
    }
}

/// One validated data frame.
public struct Batch {
    /// count * prod(sampleShape) values, F32 (F64 input converted).
    public var x: [Float]
    public var sampleShape: [Int]
    public var t: [Int]?
    public var y: [Int]?
    /// The frame it came from (metadata and other tensors pass through).
    public var frame: Frame
    /// N, the samples of the frame.
    public let count: Int
    public var sampleSize: Int { sampleShape.reduce(1, *) }

    /// Validates `frame` (number `index` in its stream, 1-based) against `rules`.
    public init(frame: Frame, index: Int, rules: BatchRules) throws {
        func fail(_ message: String) -> DDPMError { DDPMError("frame \(index): \(message)") }
        guard let xt = frame["x"] else {
            throw fail("no tensor 'x' (it has: \(frame.names.listedForMessage()))")
        }
        guard xt.dtype == .f32 || xt.dtype == .f64 else { throw fail("'x' must be F32 (or F64), found \(xt.dtype.rawValue)") }
        guard let n = xt.shape.first else { throw fail("'x' must have shape [N, ...], found a scalar") }
        let shape = Array(xt.shape.dropFirst())
        // A zero size leaves no values to work on, and would let N (up to 2^40) size the allocations.
        guard shape.allSatisfy({ $0 > 0 }) else { throw fail("'x' has samples of shape \(shape) with a zero size (shape \(xt.shape))") }
        if let want = rules.sampleShape {
            guard shape == want else { throw fail("'x' has shape \(xt.shape), expected [N,\(want.map(String.init).joined(separator: ","))]") }
        } else {
            guard rules.ranks.contains(shape.count), shape.allSatisfy({ $0 > 0 }) else {
                throw fail("'x' must have shape [N, D] or [N, C, H, W] with no zero sizes, found \(xt.shape)")
            }
        }
        guard n > 0 || rules.allowEmpty else { throw fail("'x' holds no samples (shape \(xt.shape))") }
        let values = xt.floats
        if !rules.allowNonFinite, let bad = values.firstIndex(where: { !$0.isFinite }) {
            throw fail("'x' holds a non-finite value (\(values[bad])) at element \(bad)")
        }
        var t: [Int]? = nil
        if rules.timesteps != false, let tt = frame["t"] {
            let ts = try Batch.integers(tt, name: "t", count: n, frame: index)
            if let T = rules.T, let bad = ts.first(where: { $0 < 0 || $0 >= T }) {
                throw fail("t = \(bad) outside 0 ... \(T - 1)")
            }
            t = ts
        } else if rules.timesteps == true {
            throw fail("no tensor 't' (timesteps, one per sample)")
        }
        var y: [Int]? = nil
        if !rules.readLabels {
        } else if let k = rules.classes, let yt = frame["y"] {
            guard k > 0 else { throw fail("'y' given, but the model is unconditional (trained without labels)") }
            let ys = try Batch.integers(yt, name: "y", count: n, frame: index)
            let top = rules.allowNull ? k : k - 1
            if let bad = ys.first(where: { $0 < 0 || $0 > top }) {
                throw fail("label \(bad) in 'y' outside 0 ... \(top)\(rules.allowNull ? " (\(k) is the null class)" : "")")
            }
            y = ys
        } else if rules.classes == nil, let yt = frame["y"] {
            // Labels wanted as data (training, classify): integers >= 0, one per sample.
            let ys = try Batch.integers(yt, name: "y", count: n, frame: index)
            if let bad = ys.first(where: { $0 < 0 }) { throw fail("negative class label \(bad) in 'y'") }
            y = ys
        }
        self.x = values
        self.count = n
        self.sampleShape = shape
        self.t = t
        self.y = y
        self.frame = frame
    }

    /// An integer tensor of one value per sample (I64, I32 or U8, shape [n]), bounded to Int32 so that
    /// no label or timestep from a file can overflow arithmetic or size an allocation.
    static func integers(_ tensor: Tensor, name: String, count n: Int, frame index: Int) throws -> [Int] {
        guard tensor.dtype == .i64 || tensor.dtype == .i32 || tensor.dtype == .u8 else {
            throw DDPMError("frame \(index): '\(name)' must be integers (I64, I32 or U8), found \(tensor.dtype.rawValue)")
        }
        guard tensor.shape == [n] else {
            throw DDPMError("frame \(index): '\(name)' has shape \(tensor.shape), expected [\(n)] (one per sample)")
        }
        let v = try tensor.integers()
        if let bad = v.first(where: { $0 < Int64(Int32.min) || $0 > Int64(Int32.max) }) {
            throw DDPMError("frame \(index): '\(name)' holds \(bad), outside the 32-bit range")
        }
        return v.map { Int($0) }
    }

    /// The samples in consecutive ranges of at most `size` (the batches a tool runs).
    public func chunks(of size: Int) -> [Range<Int>] {
        stride(from: 0, to: count, by: max(1, size)).map { $0 ..< min($0 + max(1, size), count) }
    }

    /// The values of samples `r`.
    public func samples(_ r: Range<Int>) -> [Float] { Array(x[r.lowerBound * sampleSize ..< r.upperBound * sampleSize]) }
}
