// Noise predictor for [N, D] data (peer's "mlp-2d" when D=2, width 128, depth 3, sinusoid 32).
import Foundation

/// eps_theta(x, t, y) = Linear_out(SiLU(Linear_depth(... SiLU(Linear_1([x | phi(x) | sinusoid(t)]) + E[y]) ...))).
/// phi(x): with `fourier` F > 0, the Fourier features of every coordinate x_j at the octaves
/// f_k = pi 2^k, k < F: (sin f_k x_j, cos f_k x_j) (Tancik et al. 2020; they let an MLP fit the
/// sharp score of low-dimensional data near its support, which plain coordinates smooth over); F = 0:
/// none. Class conditioning (classes > 0): a learned table E with classes+1 rows (row `classes`
/// is the null class) of width `width`, added to the first hidden layer's pre-activation.
/// learnSigma doubles the output: [eps (D) | v (D)].
///
/// Execution: the batch is cut into a fixed number of contiguous row blocks ("lanes", a function
/// of the batch size only, see `laneCount`). Each lane runs the whole network on its rows with
/// single-threaded GEMMs, the lanes run concurrently, so one step needs just one parallel
/// region for the forward and one for the backward. In the backward each lane writes its own
/// partial weight gradients; they are added in lane order afterwards, so the gradients are
/// bit-identical run to run and whatever the thread count.
public final class MLP: Network {
    public let dim: Int
    public let width: Int
    public let depth: Int
    public let sinusoidDim: Int
    /// Fourier octaves per input coordinate (0: the coordinates alone).
    public let fourier: Int
    public let classes: Int
    public let learnSigma: Bool
    public let seed: UInt64
    public let parameters: [Parameter]
    public let store: ParameterStore

    let hidden: [Linear]
    let outLayer: Linear
    let classEmbedding: ClassEmbedding?
    let input = Buffer()
    let sinusoids: SinusoidTable
    /// f_k = pi 2^k, k < fourier.
    let frequencies: [Float]
    /// Width of a first-layer input row [x | phi(x) | sinusoid(t)] (MLPConfig.inputWidth).
    let inWidth: Int
    var batch = 0
    /// Labels of the last forward (the null class for y = nil); empty without class conditioning.
    var labels: [Int] = []
    var lanes: [Lane] = []
    var lanesUsed = 0

    /// Workspace of one lane (its rows' activations and its partial gradients).
    final class Lane {
        var z: [Buffer] = []      // pre-activations of the hidden layers [rows, width]
        var h: [Buffer] = []      // their SiLU [rows, width]
        let dA = Buffer(), dB = Buffer()   // backward: dL/dh and dL/dz [rows, width]
        let dIn = Buffer()        // backward with Fourier features: dL/d[x | phi(x)] [rows, D (1 + 2F)]
        var gW: [Buffer] = []     // partial dL/dW per layer (hidden..., out)
        var gB: [Buffer] = []     // partial dL/db per layer
        let gTable = Buffer()     // partial dL/dE (class table)
        init(depth: Int) {
            z = (0..<depth).map { _ in Buffer() }
            h = (0..<depth).map { _ in Buffer() }
            gW = (0...depth).map { _ in Buffer() }
            gB = (0...depth).map { _ in Buffer() }
        }
    }

    /// Rows a lane pushes through all layers at a time in the forward (the activations of
    /// such a block stay in the core's cache); per-row results do not depend on it.
    let blockRows = 256

    /// The sizes have no defaults here: MLPConfig holds the MLP's one set (`MLP(config:)`).
    public init(dim: Int, width: Int, depth: Int, sinusoidDim: Int, fourier: Int = 0,
                classes: Int = 0, learnSigma: Bool = false, seed: UInt64 = 0) {
        precondition(dim > 0 && width > 0 && depth > 0 && sinusoidDim > 0 && sinusoidDim % 2 == 0 && classes >= 0)
        precondition((0...MLPConfig.maxFourier).contains(fourier))
        self.dim = dim
        self.width = width
        self.depth = depth
        self.sinusoidDim = sinusoidDim
        self.fourier = fourier
        frequencies = (0..<fourier).map { Float(Double.pi * Double(1 << $0)) }
        inWidth = MLPConfig(dim: dim, tembDim: sinusoidDim, fourier: fourier).inputWidth
        self.classes = classes
        self.learnSigma = learnSigma
        self.seed = seed
        sinusoids = SinusoidTable(dim: sinusoidDim)
        let f = ParameterFactory(seed: seed)
        var layers: [Linear] = []
        for i in 0..<depth {
            layers.append(Linear("layers.\(i)", i == 0 ? inWidth : width, width, f))
        }
        hidden = layers
        outLayer = Linear("out", width, learnSigma ? 2 * dim : dim, f)
        classEmbedding = classes > 0 ? ClassEmbedding("class_embedding", classes: classes, dim: width, f) : nil
        parameters = f.all
        store = ParameterStore(packing: parameters)   // one flat buffer for all of them
    }

    /// Validates `config`, then builds the network.
    public convenience init(config c: MLPConfig) throws {
        try NetworkConfig.mlp(c).validate()
        self.init(dim: c.dim, width: c.width, depth: c.depth, sinusoidDim: c.tembDim, fourier: c.fourier, classes: c.classes,
                  learnSigma: c.learnSigma, seed: c.seed)
    }

    public var config: NetworkConfig {
        .mlp(MLPConfig(dim: dim, width: width, depth: depth, tembDim: sinusoidDim, fourier: fourier, classes: classes,
                       learnSigma: learnSigma, seed: seed))
    }
    public var inputShape: [Int] { [dim] }
    public var outputShape: [Int] { [learnSigma ? 2 * dim : dim] }

    /// Number of lanes for a batch of n: about 128 rows each, at least 2 from 64 rows on (so
    /// both cores work), at most 8. A function of n only: the gradient sums do not depend on
    /// the thread count.
    static func laneCount(_ n: Int) -> Int { n < 64 ? 1 : min(8, max(2, n / 128)) }

    /// All layers' (hidden..., out) weights and biases: pointers taken once per call, outside the
    /// parallel region.
    var layerList: [Linear] { hidden + [outLayer] }

    public func forward(_ x: [Float], t: [Int], y: [Int]?, training: Bool) -> [Float] {
        let n = t.count
        precondition(x.count == n * dim, "MLP: \(x.count) values for \(n) samples of dimension \(dim)")
        ClassEmbedding.check(y, classes: classes, batch: n)
        batch = n
        if classEmbedding != nil { labels = y ?? [Int](repeating: classes, count: n) }
        BLAS.setThreads(1)
        // The input rows [x | phi(x) | sinusoid(t)]: x and the sinusoids here (serially: the
        // sinusoid table fills itself lazily), phi(x) by each lane for its rows.
        let inW = inWidth
        let a = input.ensure(n * inW)
        x.withUnsafeBufferPointer { xs in
            for r in 0..<n { (a + r * inW).update(from: xs.baseAddress! + r * dim, count: dim) }
        }
        sinusoids.fill(t, into: a + inW - sinusoidDim, rowStride: inW)
        let k = MLP.laneCount(n)
        while lanes.count < k { lanes.append(Lane(depth: depth)) }
        lanesUsed = k
        let layers = layerList
        let W = layers.map { UnsafePointer($0.weight.w) }, B = layers.map { UnsafePointer($0.bias.w) }
        let table = classEmbedding.map { UnsafePointer($0.table.w) }
        let outF = outLayer.outFeatures
        return [Float](unsafeUninitializedCapacity: n * outF) { buf, count in
            let o = buf.baseAddress!
            labels.withUnsafeBufferPointer { lab in
                parallelFor(k) { l in
                    forwardLane(lanes[l], chunkRange(l, of: k, n: n), W, B, table, lab.baseAddress, o)
                }
            }
            count = n * outF
        }
    }

    /// Lane forward on `rows`, in blocks of `blockRows`: for each hidden layer i
    ///   z_i = h_{i-1} W_i^T + b_i (+ E[y] for i = 0),  h_i = SiLU(z_i),  h_{-1} = [x | phi(x) | sinusoid(t)],
    /// then out = h_{depth-1} W_out^T + b_out into `out`.
    /// The bias is added after the GEMM: fl(acc + b), the same value as a GEMM accumulating onto b.
    func forwardLane(_ L: Lane, _ rows: Range<Int>, _ W: [UnsafePointer<Float>], _ B: [UnsafePointer<Float>],
                     _ table: UnsafePointer<Float>?, _ labels: UnsafePointer<Int>?, _ out: UnsafeMutablePointer<Float>) {
        let m = rows.count, w = width, inW = inWidth, outF = outLayer.outFeatures
        if m == 0 { return }
        fillFourier(rows)
        for i in 0..<depth { L.z[i].ensure(m * w); L.h[i].ensure(m * w) }
        var b0 = 0
        while b0 < m {
            let bm = min(blockRows, m - b0)
            var a = UnsafePointer(input.ptr + (rows.lowerBound + b0) * inW), lda = inW
            for i in 0..<depth {
                let z = L.z[i].ptr + b0 * w, h = L.h[i].ptr + b0 * w
                BLAS.gemm(false, true, bm, w, lda, 1, a, lda, W[i], lda, 0, z, w)
                for r in 0..<bm {
                    let zr = z + r * w
                    addRow(B[i], into: zr, w)
                    if i == 0, let table, let labels { addRow(table + labels[rows.lowerBound + b0 + r] * w, into: zr, w) }
                }
                siluAffine(z, h, bm * w, 1, 0)
                a = UnsafePointer(h)
                lda = w
            }
            let o = out + (rows.lowerBound + b0) * outF
            BLAS.gemm(false, true, bm, outF, w, 1, a, w, W[depth], w, 0, o, outF)
            for r in 0..<bm { addRow(B[depth], into: o + r * outF, outF) }
            b0 += bm
        }
    }

    /// phi(x) of the input rows `rows` from their x: (sin f_k x_j, cos f_k x_j) at column D + 2 (j F + k).
    func fillFourier(_ rows: Range<Int>) {
        guard fourier > 0 else { return }
        for r in rows {
            let row = input.ptr + r * inWidth
            for j in 0..<dim {
                for (k, f) in frequencies.enumerated() {
                    let c = dim + 2 * (j * fourier + k), arg = f * row[j]
                    row[c] = sin(arg)
                    row[c + 1] = cos(arg)
                }
            }
        }
    }

    public func backward(_ gradOutput: [Float]) -> [Float] {
        let n = batch, k = lanesUsed
        precondition(gradOutput.count == n * outLayer.outFeatures, "MLP backward: gradient size mismatch")
        BLAS.setThreads(1)
        let layers = layerList
        let W = layers.map { UnsafePointer($0.weight.w) }
        let dx = [Float](unsafeUninitializedCapacity: n * dim) { buf, count in
            let dxp = buf.baseAddress!
            gradOutput.withUnsafeBufferPointer { dy in
            labels.withUnsafeBufferPointer { lab in
                parallelFor(k) { l in
                    backwardLane(lanes[l], chunkRange(l, of: k, n: n), W, dy.baseAddress!, lab.baseAddress, dxp)
                }
            }}
            count = n * dim
        }
        // grad += partial_0 + partial_1 + ... (lane order), split over two element ranges.
        var targets: [(UnsafeMutablePointer<Float>, [UnsafePointer<Float>], Int)] = []
        for (j, layer) in layers.enumerated() {
            targets.append((layer.weight.g, lanes[..<k].map { UnsafePointer($0.gW[j].ptr) }, layer.weight.count))
            targets.append((layer.bias.g, lanes[..<k].map { UnsafePointer($0.gB[j].ptr) }, layer.bias.count))
        }
        if let ce = classEmbedding {
            targets.append((ce.table.g, lanes[..<k].map { UnsafePointer($0.gTable.ptr) }, ce.table.count))
        }
        parallelFor(2) { half in
            for (g, parts, count) in targets {
                for i in chunkRange(half, of: 2, n: count) {
                    var s = parts[0][i]
                    for l in 1..<parts.count { s += parts[l][i] }
                    g[i] += s
                }
            }
        }
        return dx
    }

    /// Lane backward on `rows` (dy: the whole batch's dL/d out). With d = dL/dh_i:
    ///   dz_i = d * SiLU'(z_i);  dW_i = dz_i^T h_{i-1};  db_i = sum_rows dz_i;  dE[y] += dz_0;
    ///   dL/dh_{i-1} = dz_i W_i  (for i = 0 only the columns of x and phi(x) of W_0, then
    ///   dL/dx_j = g_j + sum_k f_k (g_sin,jk cos f_k x_j - g_cos,jk sin f_k x_j)).
    func backwardLane(_ L: Lane, _ rows: Range<Int>, _ W: [UnsafePointer<Float>], _ dy: UnsafePointer<Float>,
                      _ labels: UnsafePointer<Int>?, _ dx: UnsafeMutablePointer<Float>) {
        let m = rows.count, w = width, inW = inWidth, outF = outLayer.outFeatures
        // Partial gradients start at zero (an empty lane contributes zeros).
        for i in 0...depth {
            let inF = i == 0 ? inW : w, o = i == depth ? outF : w
            L.gW[i].ensure(o * inF)
            L.gB[i].zeroed(o)
        }
        if let ce = classEmbedding { L.gTable.zeroed(ce.table.count) }
        if m == 0 {
            for i in 0...depth { L.gW[i].zeroed(i == depth ? outF * w : w * (i == 0 ? inW : w)) }
            return
        }
        let dyl = dy + rows.lowerBound * outF
        let d = L.dA.ensure(m * w), dz = L.dB.ensure(m * w)
        BLAS.gemm(true, false, outF, w, m, 1, dyl, outF, L.h[depth - 1].ptr, w, 0, L.gW[depth].ptr, w)
        sumRows(dyl, m, outF, into: L.gB[depth].ptr)
        BLAS.gemm(false, false, m, w, outF, 1, dyl, outF, W[depth], w, 0, d, w)
        for i in stride(from: depth - 1, through: 0, by: -1) {
            siluGradAffine(L.z[i].ptr, d, dz, m * w, 1, 0)
            if i == 0, classEmbedding != nil, let labels {
                let g = L.gTable.ptr
                for r in 0..<m { addRow(dz + r * w, into: g + labels[rows.lowerBound + r] * w, w) }
            }
            let a = i == 0 ? UnsafePointer(input.ptr + rows.lowerBound * inW) : UnsafePointer(L.h[i - 1].ptr)
            let inF = i == 0 ? inW : w
            BLAS.gemm(true, false, w, inF, m, 1, dz, w, a, inF, 0, L.gW[i].ptr, inF)
            sumRows(dz, m, w, into: L.gB[i].ptr)
            if i > 0 {
                BLAS.gemm(false, false, m, w, w, 1, dz, w, W[i], w, 0, d, w)
            } else if fourier == 0 {
                // the first layer's input is [x | sinusoid(t)]: only the x columns need a gradient
                BLAS.gemm(false, false, m, dim, w, 1, dz, w, W[0], inW, 0, dx + rows.lowerBound * dim, dim)
            } else {
                // [x | phi(x) | sinusoid(t)]: the gradient of x and phi(x), then phi's chain rule
                let xW = inW - sinusoidDim
                let g = L.dIn.ensure(m * xW)
                BLAS.gemm(false, false, m, xW, w, 1, dz, w, W[0], inW, 0, g, xW)
                for r in 0..<m {
                    let gr = g + r * xW, row = input.ptr + (rows.lowerBound + r) * inW
                    let out = dx + (rows.lowerBound + r) * dim
                    for j in 0..<dim {
                        var s = gr[j]
                        for (k, f) in frequencies.enumerated() {
                            let c = dim + 2 * (j * fourier + k)
                            s += f * (gr[c] * row[c + 1] - gr[c + 1] * row[c])
                        }
                        out[j] = s
                    }
                }
            }
        }
    }
}

/// dst[j] += src[j] for j < n.
@inline(__always) private func addRow(_ src: UnsafePointer<Float>, into dst: UnsafeMutablePointer<Float>, _ n: Int) {
    for j in 0..<n { dst[j] += src[j] }
}

/// s[j] += sum over the m rows of x[r, j] (row order fixed), x row-major [m, n].
@inline(__always) private func sumRows(_ x: UnsafePointer<Float>, _ m: Int, _ n: Int, into s: UnsafeMutablePointer<Float>) {
    for r in 0..<m { addRow(x + r * n, into: s, n) }
}
