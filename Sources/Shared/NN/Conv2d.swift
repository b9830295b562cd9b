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
    static let slots = 4
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

/// How a 3x3 stride-1 convolution is computed: `auto` picks by shape and use (see
/// `Conv2d.winogradTile`); the others force a path (for tests and measurements): `winograd`
/// is F(2x2, 3x3), `winograd4` F(4x4, 3x3) where the plane is at least 5 wide (F(2x2) below).
public enum ConvAlgorithm: Sendable {
    case auto, im2col, winograd, winograd4
}

/// Conv2d with weight [cout, cin, k, k] and bias [cout]; k in {1, 3}, stride in {1, 2}, zero padding
/// k/2 on every side, or (`padLow` 0) none on top/left and k/2 on bottom/right (diffusers'
/// Downsample2D with padding 0: F.pad(x, (0, 1, 0, 1)) before the stride-2 conv).
public final class Conv2d {
    public let cin: Int, cout: Int, kernel: Int, stride: Int
    /// Padding on the top and left (the bottom and right have kernel / 2).
    public let padLow: Int
    public let weight: Parameter
    public let bias: Parameter
    let ws: Workspace
    let out = Buffer()
    let dIn = Buffer()
    /// Transformed filters of the Winograd paths (16 or 36 * cout * cin), kept across calls.
    let wgU = WinogradFilterCache()
    var input: UnsafePointer<Float>? = nil
    var n = 0, h = 0, w = 0, ho = 0, wo = 0
    /// Path of 3x3 stride-1 convolutions (both give the same function to float rounding).
    public var algorithm: ConvAlgorithm = .auto

    public init(_ name: String, _ cin: Int, _ cout: Int, kernel: Int, stride: Int = 1, padLow: Int? = nil,
                zeroInit: Bool = false, _ f: ParameterFactory, _ ws: Workspace) {
        precondition(kernel == 1 || kernel == 3, "Conv2d: kernel 1 or 3")
        precondition(stride == 1 || stride == 2, "Conv2d: stride 1 or 2")
        precondition(padLow == nil || padLow == kernel / 2 || (padLow == 0 && stride == 2), "Conv2d: low padding 0 only at stride 2")
        self.cin = cin; self.cout = cout; self.kernel = kernel; self.stride = stride; self.ws = ws
        self.padLow = padLow ?? kernel / 2
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
        let p = padLow + kernel / 2
        return ((h + p - kernel) / stride + 1, (w + p - kernel) / stride + 1)
    }

    /// im2col for one sample: col[(c, ky, kx), (oy, ox)] = x[c, oy*s + ky - p, ox*s + kx - p] (0 outside).
    /// Interior/border split: each output row is a zero prefix, a copy (contiguous at
    /// stride 1, strided at stride 2) and a zero suffix.
    @inline(__always)
    func im2col(_ x: UnsafePointer<Float>, _ col: UnsafeMutablePointer<Float>) {
        if kernel == 3 && stride == 1 { im2colPlane3x3(x, col); return }
        let k = kernel, p = padLow, s = stride, P = ho * wo
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

    /// im2col for 3x3, stride 1, padding 1 (ho = h, wo = w): each of the 9 rows of a
    /// channel is the plane shifted by (ky-1, kx-1), so it is ONE contiguous copy of
    /// the interior plus zeroed border rows and a zeroed border column.
    @inline(__always)
    func im2colPlane3x3(_ x: UnsafePointer<Float>, _ col: UnsafeMutablePointer<Float>) {
        let P = h * w
        for c in 0..<cin {
            let xc = x + c * P
            for ky in 0..<3 {
                let dy = ky - 1
                let oyLo = max(0, -dy), oyHi = min(h, h - dy)
                for kx in 0..<3 {
                    let dx = kx - 1
                    let row = col + ((c * 3 + ky) * 3 + kx) * P
                    if oyLo > 0 { row.initialize(repeating: 0, count: oyLo * w) }
                    if oyHi < h { (row + oyHi * w).initialize(repeating: 0, count: (h - oyHi) * w) }
                    guard oyHi > oyLo else { continue }
                    let count = (oyHi - oyLo) * w
                    let dst = row + oyLo * w, src = xc + (oyLo + dy) * w
                    switch dx {
                    case 0:
                        dst.update(from: src, count: count)
                    case -1:   // dst[i] = src[i - 1]; column 0 is padding
                        (dst + 1).update(from: src, count: count - 1)
                        for oy in 0..<(oyHi - oyLo) { dst[oy * w] = 0 }
                    default:   // dst[i] = src[i + 1]; column w-1 is padding
                        dst.update(from: src + 1, count: count - 1)
                        for oy in 0..<(oyHi - oyLo) { dst[oy * w + w - 1] = 0 }
                    }
                }
            }
        }
    }

    /// col2im for 3x3, stride 1, padding 1: the adjoint of `im2colPlane3x3`. The
    /// entries of dcol at padding columns are zeroed first, so each of the 9 rows is
    /// ONE contiguous shifted add into the plane (dcol is scratch and may be modified).
    @inline(__always)
    func col2imPlane3x3(_ dcol: UnsafeMutablePointer<Float>, _ dx: UnsafeMutablePointer<Float>) {
        let P = h * w
        dx.initialize(repeating: 0, count: cin * P)
        for c in 0..<cin {
            let xc = dx + c * P
            for ky in 0..<3 {
                let dy = ky - 1
                let oyLo = max(0, -dy), oyHi = min(h, h - dy)
                guard oyHi > oyLo else { continue }
                let count = (oyHi - oyLo) * w
                for kx in 0..<3 {
                    let ddx = kx - 1
                    let src = dcol + ((c * 3 + ky) * 3 + kx) * P + oyLo * w
                    let dst = xc + (oyLo + dy) * w
                    switch ddx {
                    case 0:
                        for i in 0..<count { dst[i] += src[i] }
                    case -1:   // dst[i - 1] += src[i]; src column 0 is padding
                        for oy in 0..<(oyHi - oyLo) { src[oy * w] = 0 }
                        let d = dst - 1
                        for i in 1..<count { d[i] += src[i] }
                    default:   // dst[i + 1] += src[i]; src column w-1 is padding
                        for oy in 0..<(oyHi - oyLo) { src[oy * w + w - 1] = 0 }
                        let d = dst + 1
                        for i in 0..<(count - 1) { d[i] += src[i] }
                    }
                }
            }
        }
    }

    /// col2im for one sample: dx[c, iy, ix] += dcol[(c, ky, kx), (oy, ox)] (adjoint of im2col); dx zeroed here.
    @inline(__always)
    func col2im(_ dcol: UnsafeMutablePointer<Float>, _ dx: UnsafeMutablePointer<Float>) {
        if kernel == 3 && stride == 1 { col2imPlane3x3(dcol, dx); return }
        let k = kernel, p = padLow, s = stride, P = ho * wo
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
    /// Fused extras (each saves a pass over the output): `sampleBias` [n, cout] is added
    /// per sample and channel (the time-embedding projection), `residual` [n, cout, ho, wo]
    /// is added elementwise (the residual branch): y = W col + b + sampleBias + residual.
    /// `inference`: no training step uses this output (sampling), so `auto` may take F(4x4, 3x3).
    public func forward(_ x: UnsafePointer<Float>, n: Int, h: Int, w: Int,
                        sampleBias: UnsafePointer<Float>? = nil,
                        residual: UnsafePointer<Float>? = nil, inference: Bool = false) -> UnsafeMutablePointer<Float> {
        input = x
        self.n = n; self.h = h; self.w = w
        (ho, wo) = outputSize(h, w)
        switch winogradTile(inference: inference) {
        case 4: return winograd4Forward(x, sampleBias: sampleBias, residual: residual)
        case 2: return winogradForward(x, sampleBias: sampleBias, residual: residual)
        default: break
        }
        let P = ho * wo, K = kk, inSize = cin * h * w
        let y = out.ensure(n * cout * P)
        let chunks = prepareChunks(n)
        if needsCol { ws.reserve(0, chunks: chunks, count: K * P) }
        let W = UnsafePointer(weight.w), b = UnsafePointer(bias.w)
        parallelFor(chunks) { c in
            let col = self.ws.ptr(0, chunk: c)
            for s in chunkRange(c, of: chunks, n: n) {
                let ys = y + s * self.cout * P
                for o in 0..<self.cout {
                    let v = b[o] + (sampleBias?[s * self.cout + o] ?? 0)
                    if let residual {
                        let src = residual + (s * self.cout + o) * P, dst = ys + o * P
                        for i in 0..<P { dst[i] = src[i] + v }
                    } else {
                        (ys + o * P).initialize(repeating: v, count: P)
                    }
                }
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
    /// `channelSums` [n, cout], if given, receives sum over positions of dy per sample
    /// and channel (computed anyway for the bias gradient; the time-embedding
    /// projection's gradient needs exactly this).
    public func backward(_ dy: UnsafePointer<Float>, inputGrad: Bool = true,
                         channelSums: UnsafeMutablePointer<Float>? = nil) -> UnsafeMutablePointer<Float>? {
        if usesWinograd {
            return winogradBackward(dy, inputGrad: inputGrad, channelSums: channelSums)
        }
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
                for o in 0..<self.cout {
                    let v = vsum(dys + o * P, P)
                    pb[o] += v
                    channelSums?[s * self.cout + o] = v
                }
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
