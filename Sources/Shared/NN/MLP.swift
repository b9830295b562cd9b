// Noise predictor for [N, D] data (peer's "mlp-2d" when D=2, width 128, depth 3, sinusoid 32).
import Foundation

/// eps_theta(x, t, y) = Linear_out(SiLU(Linear_depth(... SiLU(Linear_1([x | sinusoid(t)]) + E[y]) ...))).
/// Class conditioning (classes > 0): a learned table E with classes+1 rows (row `classes`
/// is the null class) of width `width`, added to the first hidden layer's pre-activation.
/// learnSigma doubles the output: [eps (D) | v (D)].
public final class MLP: Network {
    public let dim: Int
    public let width: Int
    public let depth: Int
    public let sinusoidDim: Int
    public let classes: Int
    public let learnSigma: Bool
    public let seed: UInt64
    public let parameters: [Parameter]

    let hidden: [Linear]
    let acts: [SiLU]
    let outLayer: Linear
    let classEmbedding: ClassEmbedding?
    let input = Buffer()
    let sinusoids: SinusoidTable
    var batch = 0

    public init(dim: Int, width: Int = 128, depth: Int = 3, sinusoidDim: Int = 32,
                classes: Int = 0, learnSigma: Bool = false, seed: UInt64 = 0) {
        precondition(dim > 0 && width > 0 && depth > 0 && sinusoidDim > 0 && sinusoidDim % 2 == 0 && classes >= 0)
        self.dim = dim
        self.width = width
        self.depth = depth
        self.sinusoidDim = sinusoidDim
        self.classes = classes
        self.learnSigma = learnSigma
        self.seed = seed
        sinusoids = SinusoidTable(dim: sinusoidDim)
        let f = ParameterFactory(seed: seed)
        var layers: [Linear] = []
        for i in 0..<depth {
            layers.append(Linear("layers.\(i)", i == 0 ? dim + sinusoidDim : width, width, f))
        }
        hidden = layers
        acts = (0..<depth).map { _ in SiLU() }
        outLayer = Linear("out", width, learnSigma ? 2 * dim : dim, f)
        classEmbedding = classes > 0 ? ClassEmbedding("class_embedding", classes: classes, dim: width, f) : nil
        parameters = f.all
    }

    public var architecture: [String: String] {
        ["arch": "mlp", "dim": String(dim), "width": String(width), "depth": String(depth),
         "temb_dim": String(sinusoidDim), "classes": String(classes),
         "learn_sigma": String(learnSigma), "seed": String(seed)]
    }
    public var inputShape: [Int] { [dim] }
    public var outputShape: [Int] { [learnSigma ? 2 * dim : dim] }

    public func forward(_ x: [Float], t: [Int], y: [Int]?, training: Bool) -> [Float] {
        let n = t.count
        precondition(x.count == n * dim, "MLP: \(x.count) values for \(n) samples of dimension \(dim)")
        ClassEmbedding.check(y, classes: classes, batch: n)
        batch = n
        BLAS.setThreads(1)
        let inW = dim + sinusoidDim
        let a = input.ensure(n * inW)
        x.withUnsafeBufferPointer { xs in
            for r in 0..<n { (a + r * inW).update(from: xs.baseAddress! + r * dim, count: dim) }
        }
        sinusoids.fill(t, into: a + dim, rowStride: inW)
        var h = UnsafePointer(a)
        for i in 0..<depth {
            let z = hidden[i].forward(h, rows: n)
            if i == 0, let ce = classEmbedding { ce.addForward(y, batch: n, into: z) }
            h = UnsafePointer(acts[i].forward(z, count: n * width))
        }
        let o = outLayer.forward(h, rows: n)
        return Array(UnsafeBufferPointer(start: o, count: n * outLayer.outFeatures))
    }

    public func backward(_ gradOutput: [Float]) -> [Float] {
        let n = batch
        precondition(gradOutput.count == n * outLayer.outFeatures, "MLP backward: gradient size mismatch")
        BLAS.setThreads(1)
        var d = gradOutput.withUnsafeBufferPointer { outLayer.backward($0.baseAddress!)! }
        for i in stride(from: depth - 1, through: 0, by: -1) {
            let dz = acts[i].backward(d)
            if i == 0, let ce = classEmbedding { ce.backward(dz) }
            // the first layer's input is [x | sinusoid(t)]: only the x columns need a gradient
            d = hidden[i].backward(dz, inputColumns: i == 0 ? dim : nil)!
        }
        // d is [n, dim + sinusoidDim]; the x part is the first dim columns.
        let inW = dim + sinusoidDim
        var dx = [Float](repeating: 0, count: n * dim)
        for r in 0..<n { for j in 0..<dim { dx[r * dim + j] = d[r * inW + j] } }
        return dx
    }
}
