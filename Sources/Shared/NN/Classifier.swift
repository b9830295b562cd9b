// The noise-aware classifier p_phi(y | x_t, t) of classifier guidance (Dhariwal & Nichol 2021,
// sec. 4), and grad_{x_t} log p_phi(y | x_t, t), the quantity the guided sampler adds to the mean.
import Foundation

/// logits = Linear_out(SiLU(Linear_depth(... SiLU(Linear_1([flatten(x_t) | sinusoid(t)])) ...))):
/// a time-conditioned MLP encoder over the flattened sample (vectors or images) with K logits.
/// (A U-Net-down-path encoder is not implemented; this one serves both data kinds.)
/// Weights: PyTorch-like uniform(+-1/sqrt(fan_in)) from RandomStream(seed, .init_).
public final class NoiseAwareClassifier: Network {
    public let inShape: [Int]
    public let width: Int
    public let depth: Int
    public let sinusoidDim: Int
    public let classes: Int
    public let seed: UInt64
    public let parameters: [Parameter]

    let hidden: [Linear]
    let acts: [SiLU]
    let head: Linear
    let input = Buffer()
    var batch = 0
    var m: Int { inShape.reduce(1, *) }

    public init(inShape: [Int], width: Int = 256, depth: Int = 2, sinusoidDim: Int = 32, classes: Int, seed: UInt64 = 0) throws {
        guard !inShape.isEmpty, inShape.allSatisfy({ $0 > 0 }) else { throw DDPMError("classifier: bad input shape \(inShape)") }
        guard width > 0, depth > 0, sinusoidDim > 0, sinusoidDim % 2 == 0 else {
            throw DDPMError("classifier: width and depth must be positive, temb_dim positive and even")
        }
        guard classes >= 2 else { throw DDPMError("classifier: needs at least 2 classes, got \(classes)") }
        self.inShape = inShape
        self.width = width
        self.depth = depth
        self.sinusoidDim = sinusoidDim
        self.classes = classes
        self.seed = seed
        let f = ParameterFactory(seed: seed)
        let m = inShape.reduce(1, *)
        hidden = (0..<depth).map { Linear("layers.\($0)", $0 == 0 ? m + sinusoidDim : width, width, f) }
        acts = (0..<depth).map { _ in SiLU() }
        head = Linear("head", width, classes, f)
        parameters = f.all
    }

    /// Rebuilds from `architecture` (arch = classifier-mlp).
    public convenience init(architecture a: [String: String]) throws {
        func int(_ k: String, _ d: Int?) throws -> Int {
            guard let s = a[k] ?? d.map(String.init), let v = Int(s) else { throw DDPMError("classifier architecture: bad or missing '\(k)'") }
            return v
        }
        let shape = (a["in_shape"] ?? "").split(separator: ",").compactMap { Int($0) }
        try self.init(inShape: shape, width: try int("width", 256), depth: try int("depth", 2),
                      sinusoidDim: try int("temb_dim", 32), classes: try int("classes", nil),
                      seed: UInt64(a["seed"] ?? "0") ?? 0)
    }

    public var architecture: [String: String] {
        ["arch": "classifier-mlp", "in_shape": inShape.map(String.init).joined(separator: ","), "width": String(width),
         "depth": String(depth), "temb_dim": String(sinusoidDim), "classes": String(classes), "seed": String(seed)]
    }
    public var inputShape: [Int] { inShape }
    public var outputShape: [Int] { [classes] }

    /// Logits [n, K]. `y` is ignored (the classifier predicts it).
    public func forward(_ x: [Float], t: [Int], y: [Int]?, training: Bool) -> [Float] {
        let n = t.count, m = self.m
        precondition(x.count == n * m, "classifier: \(x.count) values for \(n) samples of \(m)")
        batch = n
        let inW = m + sinusoidDim
        let a = input.ensure(n * inW)
        x.withUnsafeBufferPointer { xs in
            for r in 0..<n { (a + r * inW).update(from: xs.baseAddress! + r * m, count: m) }
        }
        sinusoidalEmbedding(t, dim: sinusoidDim, into: a + m, rowStride: inW)
        var h = UnsafePointer(a)
        for i in 0..<depth { h = UnsafePointer(acts[i].forward(hidden[i].forward(h, rows: n), count: n * width)) }
        let o = head.forward(h, rows: n)
        return Array(UnsafeBufferPointer(start: o, count: n * classes))
    }

    /// Accumulates parameter gradients; returns d loss / d x_t [n, M].
    public func backward(_ gradOutput: [Float]) -> [Float] {
        let n = batch, m = self.m
        precondition(gradOutput.count == n * classes, "classifier backward: gradient size mismatch")
        var d = gradOutput.withUnsafeBufferPointer { head.backward($0.baseAddress!)! }
        for i in stride(from: depth - 1, through: 0, by: -1) { d = hidden[i].backward(acts[i].backward(d))! }
        let inW = m + sinusoidDim
        var dx = [Float](repeating: 0, count: n * m)
        for r in 0..<n { for j in 0..<m { dx[r * m + j] = d[r * inW + j] } }
        return dx
    }
}

/// Every network a model file can hold: the noise predictors of `NetworkFactory` and the classifier.
public func makeAnyNetwork(architecture a: [String: String]) throws -> Network {
    a["arch"] == "classifier-mlp" ? try NoiseAwareClassifier(architecture: a) : try NetworkFactory.make(architecture: a)
}

/// log p_phi(y_i | x_t_i, t_i) per sample and grad_{x_t} log p_phi(y | x_t, t) [n, M] (backward
/// through the classifier to its input; the parameters' grads are left zeroed). For classifier
/// guidance, mu + s Sigma grad (Dhariwal & Nichol 2021, Algorithm 1).
public func classifierLogProbGradient(_ classifier: Network, x: [Float], t: [Int], y: [Int]) -> (logProb: [Double], gradient: [Float]) {
    let n = t.count
    let logits = classifier.forward(x, t: t, y: nil, training: false)
    let k = logits.count / max(n, 1)
    var logProb = [Double](repeating: 0, count: n)
    var dLogits = [Float](repeating: 0, count: n * k)
    for s in 0..<n {
        let (lse, p) = Losses.logSoftmax(logits, row: s, classes: k)
        logProb[s] = Double(logits[s * k + y[s]]) - lse
        // d log p(y) / d logits = onehot(y) - softmax
        for c in 0..<k { dLogits[s * k + c] = (c == y[s] ? 1 : 0) - Float(p[c]) }
    }
    for p in classifier.parameters { p.zeroGrad() }
    let g = classifier.backward(dLogits)
    for p in classifier.parameters { p.zeroGrad() }
    return (logProb, g)
}
