// 2-D convolution on NCHW batches: 1x1 (a plain GEMM) and 3x3 (im2col + GEMM),
// stride 1 or 2, zero padding k/2. Per-sample GEMMs run in parallel over fixed
// batch chunks with single-threaded OpenBLAS; weight gradients are summed per
// chunk and then over chunks in order (bit-reproducible).
import COpenBLAS
import Foundation

/// Optional CPU-time breakdown of convolution work (single-threaded runs only:
/// the counters are not synchronised). Index: 0 im2col, 1 GEMM, 2 col2im.
public enum ConvProfile {
    nonisolated(unsafe) public static var enabled = false
    nonisolated(unsafe) public static var seconds: [Double] = [0, 0, 0]
    @inline(__always) static func now() -> Double {
        var ts = timespec()
        clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts)
        return Double(ts.tv_sec) + Double(ts.tv_nsec) * 1e-9
    }
    @inline(__always) static func time<R>(_ k: Int, _ body: () -> R) -> R {
        guard enabled else { return body() }
        let t0 = now()
        let r = body()
        seconds[k] += now() - t0
        return r
    }
}

/// Scratch memory shared by the layers of one network (they run one at a time):
/// per reduction chunk, a few reusable slots.
public final class Workspace {
    static let chunksMax = 4
    static let slots = 3
    private var buffers: [Buffer]

    public init() {
        buffers = (0..<(Workspace.chunksMax * Workspace.slots)).map { _ in Buffer() }
    }

    /// Grow slot `slot` of chunk `chunk` to `count` floats. Call before the parallel region.
    func reserve(_ slot: Int, chunks: Int, count: Int) {
        for c in 0..<chunks { buffers[c * Workspace.slots + slot].ensure(count) }
    }

    @inline(__always) func ptr(_ slot: Int, chunk: Int) -> UnsafeMutablePointer<Float> {
        buffers[chunk * Workspace.slots + slot].ptr
    }
}

/// Sets OpenBLAS threads for a per-chunk loop: 1 when our chunks already keep
/// every core busy, all otherwise (small batches). Returns the chunk count.
@inline(__always)
func prepareChunks(_ n: Int) -> Int {
    let chunks = reductionChunks(n)
    BLAS.setThreads(chunks >= BLAS.maxThreads ? 1 : BLAS.maxThreads)
    return chunks
}

/// Conv2d with weight [cout, cin, k, k] and bias [cout]; k in {1, 3}, stride in {1, 2}, padding k/2.
public final class Conv2d {
    public let cin: Int, cout: Int, kernel: Int, stride: Int
    public let weight: Parameter
    public let bias: Parameter
    let ws: Workspace
    let out = Buffer()
    let dIn = Buffer()
    var input: UnsafePointer<Float>? = nil
    var n = 0, h = 0, w = 0, ho = 0, wo = 0

    public init(_ name: String, _ cin: Int, _ cout: Int, kernel: Int, stride: Int = 1,
                zeroInit: Bool = false, _ f: ParameterFactory, _ ws: Workspace) {
        precondition(kernel == 1 || kernel == 3, "Conv2d: kernel 1 or 3")
        precondition(stride == 1 || stride == 2, "Conv2d: stride 1 or 2")
        self.cin = cin; self.cout = cout; self.kernel = kernel; self.stride = stride; self.ws = ws
        let bound = 1 / Float(cin * kernel * kernel).squareRoot()
        if zeroInit {
            weight = f.constant(name + ".weight", [cout, cin, kernel, kernel], 0)
            bias = f.constant(name + ".bias", [cout], 0)
        } else {
            weight = f.uniform(name + ".weight", [cout, cin, kernel, kernel], bound: bound)
            bias = f.uniform(name + ".bias", [cout], bound: bound)
        }
    }

    public var parameters: [Parameter] { [weight, bias] }
    var kk: Int { cin * kernel * kernel }
    var needsCol: Bool { kernel != 1 || stride != 1 }

    /// Output size for an h x w input.
    public func outputSize(_ h: Int, _ w: Int) -> (Int, Int) {
        let p = kernel / 2
        return ((h + 2 * p - kernel) / stride + 1, (w + 2 * p - kernel) / stride + 1)
    }

    /// im2col for one sample: col[(c, ky, kx), (oy, ox)] = x[c, oy*s + ky - p, ox*s + kx - p] (0 outside).
    /// Interior/border split: each output row is a zero prefix, a copy (contiguous at
    /// stride 1, strided at stride 2) and a zero suffix.
    @inline(__always)
    func im2col(_ x: UnsafePointer<Float>, _ col: UnsafeMutablePointer<Float>) {
        let k = kernel, p = k / 2, s = stride, P = ho * wo
        for c in 0..<cin {
            let xc = x + c * h * w
            for ky in 0..<k {
                for kx in 0..<k {
                    let row = col + ((c * k + ky) * k + kx) * P
                    // valid ox: 0 <= ox*s + kx - p < w
                    let lo = max(0, (p - kx + s - 1) / s)
                    let t = w - 1 + p - kx, hi = t < 0 ? 0 : min(wo, t / s + 1)
                    for oy in 0..<ho {
                        let iy = oy * s + ky - p
                        let dst = row + oy * wo
                        if iy < 0 || iy >= h || hi <= lo {
                            dst.initialize(repeating: 0, count: wo)
                            continue
                        }
                        if lo > 0 { dst.initialize(repeating: 0, count: lo) }
                        let src = xc + iy * w + (lo * s + kx - p)
                        if s == 1 {
                            (dst + lo).update(from: src, count: hi - lo)
                        } else {
                            for i in 0..<(hi - lo) { dst[lo + i] = src[i * s] }
                        }
                        if hi < wo { (dst + hi).initialize(repeating: 0, count: wo - hi) }
                    }
                }
            }
        }
    }

    /// col2im for one sample: dx[c, iy, ix] += dcol[(c, ky, kx), (oy, ox)] (adjoint of im2col); dx zeroed here.
    @inline(__always)
    func col2im(_ dcol: UnsafePointer<Float>, _ dx: UnsafeMutablePointer<Float>) {
        let k = kernel, p = k / 2, s = stride, P = ho * wo
        dx.initialize(repeating: 0, count: cin * h * w)
        for c in 0..<cin {
            let xc = dx + c * h * w
            for ky in 0..<k {
                for kx in 0..<k {
                    let row = dcol + ((c * k + ky) * k + kx) * P
                    let lo = max(0, (p - kx + s - 1) / s)
                    let t = w - 1 + p - kx, hi = t < 0 ? 0 : min(wo, t / s + 1)
                    if hi <= lo { continue }
                    for oy in 0..<ho {
                        let iy = oy * s + ky - p
                        if iy < 0 || iy >= h { continue }
                        let src = row + oy * wo + lo
                        let dst = xc + iy * w + (lo * s + kx - p)
                        if s == 1 {
                            for i in 0..<(hi - lo) { dst[i] += src[i] }
                        } else {
                            for i in 0..<(hi - lo) { dst[i * s] += src[i] }
                        }
                    }
                }
            }
        }
    }

    /// y[n] = W * im2col(x[n]) + b  (y [n, cout, ho, wo]). x must stay alive until backward.
    public func forward(_ x: UnsafePointer<Float>, n: Int, h: Int, w: Int) -> UnsafeMutablePointer<Float> {
        input = x
        self.n = n; self.h = h; self.w = w
        (ho, wo) = outputSize(h, w)
        let P = ho * wo, K = kk, inSize = cin * h * w
        let y = out.ensure(n * cout * P)
        let chunks = prepareChunks(n)
        if needsCol { ws.reserve(0, chunks: chunks, count: K * P) }
        let W = UnsafePointer(weight.w), b = UnsafePointer(bias.w)
        parallelFor(chunks) { c in
            let col = self.ws.ptr(0, chunk: c)
            for s in chunkRange(c, of: chunks, n: n) {
                let ys = y + s * self.cout * P
                for o in 0..<self.cout { (ys + o * P).initialize(repeating: b[o], count: P) }
                var src = x + s * inSize
                if self.needsCol {
                    ConvProfile.time(0) { self.im2col(src, col) }
                    src = UnsafePointer(col)
                }
                ConvProfile.time(1) { BLAS.gemm(false, false, self.cout, P, K, 1, W, K, src, P, 1, ys, P) }
            }
        }
        return y
    }

    /// dW += sum_n dY[n] col[n]^T, db += sum dY, dx[n] = col2im(W^T dY[n]).
    public func backward(_ dy: UnsafePointer<Float>, inputGrad: Bool = true) -> UnsafeMutablePointer<Float>? {
        let x = input!
        let P = ho * wo, K = kk, inSize = cin * h * w, wCount = cout * K
        let chunks = prepareChunks(n)
        ws.reserve(2, chunks: chunks, count: wCount + cout)
        if needsCol { ws.reserve(0, chunks: chunks, count: K * P) }
        if needsCol && inputGrad { ws.reserve(1, chunks: chunks, count: K * P) }
        let dx = inputGrad ? dIn.ensure(n * inSize) : nil
        let W = UnsafePointer(weight.w)
        parallelFor(chunks) { c in
            let part = self.ws.ptr(2, chunk: c)
            part.initialize(repeating: 0, count: wCount + self.cout)
            let col = self.ws.ptr(0, chunk: c), dcol = self.ws.ptr(1, chunk: c)
            for s in chunkRange(c, of: chunks, n: n) {
                let dys = dy + s * self.cout * P
                var src = x + s * inSize
                if self.needsCol {
                    ConvProfile.time(0) { self.im2col(src, col) }
                    src = UnsafePointer(col)
                }
                ConvProfile.time(1) { BLAS.gemm(false, true, self.cout, K, P, 1, dys, P, src, P, 1, part, K) }
                let pb = part + wCount
                for o in 0..<self.cout { pb[o] += vsum(dys + o * P, P) }
                if let dx {
                    if self.needsCol {
                        ConvProfile.time(1) { BLAS.gemm(true, false, K, P, self.cout, 1, W, K, dys, P, 0, dcol, P) }
                        ConvProfile.time(2) { self.col2im(dcol, dx + s * inSize) }
                    } else {
                        BLAS.gemm(true, false, K, P, self.cout, 1, W, K, dys, P, 0, dx + s * inSize, P)
                    }
                }
            }
        }
        let gW = weight.g, gb = bias.g
        for c in 0..<chunks {
            let part = ws.ptr(2, chunk: c)
            for i in 0..<wCount { gW[i] += part[i] }
            for o in 0..<cout { gb[o] += part[wCount + o] }
        }
        return dx
    }
}
