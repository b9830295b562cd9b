// The noise-aware classifier p_phi(y | x_t, t) of classifier guidance (Dhariwal & Nichol 2021,
// sec. 4), and grad_{x_t} log p_phi(y | x_t, t), the quantity the guided sampler adds to the mean.
import Foundation

/// logits = Linear_out(SiLU(Linear_depth(... SiLU(Linear_1([flatten(x_t) | sinusoid(t)])) ...))):
/// a time-conditioned MLP encoder over the flattened sample (vectors or images) with K logits.
/// Used for vectors and `train --classifier --arch mlp`; images default to the U-Net-down-path
/// encoder, `NoiseAwareUNetClassifier` below.
/// Weights: PyTorch-like uniform(+-1/sqrt(fan_in)) from RandomStream(seed, .init_).
public final class NoiseAwareClassifier: Network {
    public let inShape: [Int]
    public let width: Int
    public let depth: Int
    public let sinusoidDim: Int
    public let classes: Int
    public let seed: UInt64
    public let parameters: [Parameter]
    public let store: ParameterStore

    let hidden: [Linear]
    let acts: [SiLU]
    let head: Linear
    let input = Buffer()
    var batch = 0
    var m: Int { inShape.reduce(1, *) }

    /// The sizes have no defaults here: ClassifierConfig.MLPEncoder holds the one set.
    public init(inShape: [Int], width: Int, depth: Int, sinusoidDim: Int, classes: Int, seed: UInt64 = 0) throws {
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
        store = ParameterStore(packing: parameters)   // one flat buffer for all of them
    }

    public var config: NetworkConfig {
        .classifier(ClassifierConfig(inShape: inShape, classes: classes,
                                     encoder: .mlp(.init(width: width, depth: depth, tembDim: sinusoidDim)), seed: seed))
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

/// Every network a model file can hold (noise predictors and classifiers), from its `arch.*` keys.
public func makeAnyNetwork(architecture a: [String: String]) throws -> Network {
    try NetworkConfig(architecture: a).make()
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
    classifier.store.zeroGrad()
    let g = classifier.backward(dLogits)
    classifier.store.zeroGrad()
    return (logProb, g)
}

/// The image classifier of classifier guidance built from the U-Net's down path (Dhariwal &
/// Nichol 2021 use the U-Net encoder with a pooled head): conv_in, per level `resBlocks` residual
/// blocks with the timestep embedding injected (channels * mults[l]) and a stride-2 3x3 conv
/// between levels, then GroupNorm + SiLU, the mean over positions and a Linear head to K logits.
/// No attention and no dropout in this encoder. Layers are the U-Net's own (ResBlock, Conv2d,
/// GroupNorm, TimeEmbedding: sinusoid 32 -> Linear -> SiLU -> Linear, width 4 * channels).
public final class NoiseAwareUNetClassifier: Network {
    public let inShape: [Int]
    public let channels: Int
    public let mults: [Int]
    public let resBlocks: Int
    public let groups: Int
    public let classes: Int
    public let seed: UInt64
    public let parameters: [Parameter]
    public let store: ParameterStore

    enum Op { case res(ResBlock), down(Conv2d) }
    let ws = Workspace()
    let timeEmbedding: TimeEmbedding
    let tembAct = SiLU()
    let convIn: Conv2d
    let ops: [Op]
    let norm: GroupNorm
    let head: Linear
    let inputBuf = Buffer(), pooled = Buffer(), dPooled = Buffer(), dsTemb = Buffer()
    var shapes: [(Int, Int, Int)] = []     // per op: input (c, h, w)
    var last = (c: 0, h: 0, w: 0)
    var batch = 0

    /// The sizes have no defaults here: ClassifierConfig.UNetEncoder holds the one set.
    public init(inShape: [Int], channels: Int, mults: [Int], resBlocks: Int, groups: Int,
                classes: Int, seed: UInt64 = 0) throws {
        guard inShape.count == 3, inShape.allSatisfy({ $0 > 0 }) else { throw DDPMError("classifier-unet: input shape must be [C, H, W], got \(inShape)") }
        guard !mults.isEmpty, mults.allSatisfy({ $0 > 0 }), channels > 0, resBlocks > 0, groups > 0 else {
            throw DDPMError("classifier-unet: channels, mults, res_blocks and groups must be positive")
        }
        guard channels % groups == 0, mults.allSatisfy({ (channels * $0) % groups == 0 }) else {
            throw DDPMError("classifier-unet: every level's channels must be divisible by groups \(groups)")
        }
        guard classes >= 2 else { throw DDPMError("classifier-unet: needs at least 2 classes, got \(classes)") }
        self.inShape = inShape; self.channels = channels; self.mults = mults; self.resBlocks = resBlocks
        self.groups = groups; self.classes = classes; self.seed = seed
        let f = ParameterFactory(seed: seed)
        let temb = 4 * channels
        timeEmbedding = TimeEmbedding("time_embedding", sinusoidDim: 32, dim: temb, f)
        convIn = Conv2d("conv_in", inShape[0], channels, kernel: 3, f, ws)
        var ops: [Op] = []
        var cur = channels
        var layer: UInt64 = 0
        for (l, m) in mults.enumerated() {
            for r in 0..<resBlocks {
                layer += 1
                ops.append(.res(ResBlock("down.\(l).res.\(r)", cur, channels * m, tembDim: temb, groups: groups, dropout: 0,
                                         layer: layer, f, ws)))
                cur = channels * m
            }
            if l < mults.count - 1 { ops.append(.down(Conv2d("down.\(l).downsample", cur, cur, kernel: 3, stride: 2, f, ws))) }
        }
        self.ops = ops
        norm = GroupNorm("norm_out", channels: cur, groups: groups, fusedSiLU: true, f)
        head = Linear("head", cur, classes, f)
        parameters = f.all
        store = ParameterStore(packing: parameters)   // one flat buffer for all of them
    }

    public var config: NetworkConfig {
        .classifier(ClassifierConfig(inShape: inShape, classes: classes,
                                     encoder: .unet(.init(channels: channels, mults: mults, resBlocks: resBlocks, groups: groups)),
                                     seed: seed))
    }
    public var inputShape: [Int] { inShape }
    public var outputShape: [Int] { [classes] }

    public func forward(_ x: [Float], t: [Int], y: [Int]?, training: Bool) -> [Float] {
        let n = t.count
        precondition(x.count == n * inShape.reduce(1, *), "classifier-unet: \(x.count) values for \(n) samples of \(inShape)")
        batch = n
        BLAS.setThreads(1)
        let temb = timeEmbedding.forward(t)
        let sTemb = UnsafePointer(tembAct.forward(temb, count: n * timeEmbedding.dim))
        let xin = inputBuf.ensure(x.count)
        x.withUnsafeBufferPointer { xin.update(from: $0.baseAddress!, count: x.count) }
        var (c, h, w) = (inShape[0], inShape[1], inShape[2])
        var cur = UnsafePointer(convIn.forward(xin, n: n, h: h, w: w, inference: !training))
        c = channels
        shapes.removeAll(keepingCapacity: true)
        for op in ops {
            shapes.append((c, h, w))
            switch op {
            case .res(let r):
                cur = UnsafePointer(r.forward(cur, n: n, h: h, w: w, sTemb: sTemb, training: false, seed: seed, step: 0,
                                              inference: !training))   // no dropout here
                c = r.cout
            case .down(let conv):
                cur = UnsafePointer(conv.forward(cur, n: n, h: h, w: w, inference: !training))
                (h, w) = conv.outputSize(h, w)
            }
        }
        last = (c, h, w)
        let a = norm.forward(cur, n: n, hw: h * w)
        // mean over positions
        let p = pooled.ensure(n * c)
        let hw = h * w
        for s in 0..<n { for ch in 0..<c { p[s * c + ch] = vsum(a + (s * c + ch) * hw, hw) / Float(hw) } }
        let o = head.forward(p, rows: n)
        return Array(UnsafeBufferPointer(start: o, count: n * classes))
    }

    public func backward(_ gradOutput: [Float]) -> [Float] {
        let n = batch
        precondition(gradOutput.count == n * classes, "classifier-unet backward: gradient size mismatch")
        BLAS.setThreads(1)
        let dp = gradOutput.withUnsafeBufferPointer { head.backward($0.baseAddress!)! }
        let (c, h, w) = last
        let hw = h * w
        let da = dPooled.ensure(n * c * hw)
        for s in 0..<n { for ch in 0..<c { let v = dp[s * c + ch] / Float(hw); for i in 0..<hw { da[(s * c + ch) * hw + i] = v } } }
        var d = norm.backward(da)
        let dsT = dsTemb.zeroed(n * timeEmbedding.dim)
        for op in ops.reversed() {
            switch op {
            case .res(let r): d = r.backward(d, dsTemb: dsT)
            case .down(let conv): d = conv.backward(d)!
            }
        }
        let dx = convIn.backward(d)!
        timeEmbedding.backward(tembAct.backward(dsT))
        return Array(UnsafeBufferPointer(start: dx, count: n * inShape.reduce(1, *)))
    }
}
