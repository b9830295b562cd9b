// Multi-head self-attention over the spatial positions of a feature map, the
// peer's "Attention(C)" (diffusers Attention with its own GroupNorm and residual):
//   n = GN(x); q, k, v = W_{q,k,v} n + b;  per head h (channels h*d ..< (h+1)*d):
//   A_h = softmax(q_h^T k_h / sqrt(d)) (rows: queries), o_h = v_h A_h^T;
//   out = (x + W_o o + b_o) / r     (r: diffusers' rescale_output_factor, 1 by default;
//   without a GroupNorm, n = x: diffusers' mid-block attention under scale_shift).
// Per sample, everything is kept channel-major [C, P] (P = H*W tokens), so the
// projections are [C,C]x[C,P] GEMMs and no transposes are needed.
import Foundation

public final class SpatialAttention {
    public let name: String
    public let channels: Int, heads: Int
    public let norm: GroupNorm?
    /// r of out = (x + W_o o + b_o) / r.
    public let outputScale: Float
    public let wq: Parameter, bq: Parameter, wk: Parameter, bk: Parameter
    public let wv: Parameter, bv: Parameter, wo: Parameter, bo: Parameter
    let ws: Workspace
    let q = Buffer(), k = Buffer(), v = Buffer(), attn = Buffer(), o = Buffer(), out = Buffer()
    let dO = Buffer(), dQ = Buffer(), dK = Buffer(), dV = Buffer(), dn = Buffer(), dScaled = Buffer()
    var input: UnsafePointer<Float>? = nil
    var nrm: UnsafePointer<Float>? = nil
    var n = 0, P = 0

    /// `groups` 0: no GroupNorm.
    public init(_ name: String, channels: Int, heads: Int, groups: Int, eps: Float = 1e-5, outputScale: Float = 1,
                _ f: ParameterFactory, _ ws: Workspace) {
        precondition(heads > 0 && channels % heads == 0, "attention: \(channels) channels not divisible into \(heads) heads")
        self.name = name; self.channels = channels; self.heads = heads; self.ws = ws; self.outputScale = outputScale
        norm = groups > 0 ? GroupNorm(name + ".group_norm", channels: channels, groups: groups, eps: eps, fusedSiLU: false, f) : nil
        let bound = 1 / Float(channels).squareRoot()
        func lin(_ s: String) -> (Parameter, Parameter) {
            (f.uniform("\(name).\(s).weight", [channels, channels], bound: bound),
             f.uniform("\(name).\(s).bias", [channels], bound: bound))
        }
        (wq, bq) = lin("to_q"); (wk, bk) = lin("to_k"); (wv, bv) = lin("to_v"); (wo, bo) = lin("to_out.0")
    }

    public var parameters: [Parameter] { (norm?.parameters ?? []) + [wq, bq, wk, bk, wv, bv, wo, bo] }

    /// x [n, C, hw] -> [n, C, hw] (own buffer).
    public func forward(_ x: UnsafePointer<Float>, n: Int, hw: Int) -> UnsafeMutablePointer<Float> {
        input = x; self.n = n; P = hw
        let C = channels, H = heads, d = C / H, P = hw, cp = C * P
        let nr = norm.map { UnsafePointer($0.forward(x, n: n, hw: hw)) } ?? x
        nrm = nr
        let qp = q.ensure(n * cp), kp = k.ensure(n * cp), vp = v.ensure(n * cp)
        let ap = attn.ensure(n * H * P * P), op = o.ensure(n * cp), y = out.ensure(n * cp)
        let Wq = UnsafePointer(wq.w), Wk = UnsafePointer(wk.w), Wv = UnsafePointer(wv.w), Wo = UnsafePointer(wo.w)
        let Bq = UnsafePointer(bq.w), Bk = UnsafePointer(bk.w), Bv = UnsafePointer(bv.w), Bo = UnsafePointer(bo.w)
        let scale = 1 / Float(d).squareRoot()
        BLAS.setThreads(n >= BLAS.maxThreads ? 1 : BLAS.maxThreads)
        parallelFor(n) { s in
            let ns = nr + s * cp
            for (W, B, dst) in [(Wq, Bq, qp + s * cp), (Wk, Bk, kp + s * cp), (Wv, Bv, vp + s * cp)] {
                for c in 0..<C { (dst + c * P).initialize(repeating: B[c], count: P) }
                BLAS.gemm(false, false, C, P, C, 1, W, C, ns, P, 1, dst, P)
            }
            for h in 0..<H {
                let Qh = qp + s * cp + h * d * P, Kh = kp + s * cp + h * d * P, Vh = vp + s * cp + h * d * P
                let A = ap + (s * H + h) * P * P
                BLAS.gemm(true, false, P, P, d, scale, Qh, P, Kh, P, 0, A, P)
                for i in 0..<P { softmaxRow(A + i * P, P) }   // softmax over keys, row i
                BLAS.gemm(false, true, d, P, P, 1, Vh, P, A, P, 0, op + s * cp + h * d * P, P)
            }
            let ys = y + s * cp, xs = x + s * cp
            for c in 0..<C {
                let b = Bo[c]
                for i in 0..<P { ys[c * P + i] = xs[c * P + i] + b }
            }
            BLAS.gemm(false, false, C, P, C, 1, Wo, C, op + s * cp, P, 1, ys, P)
        }
        if outputScale != 1 {
            let r = outputScale
            parallelRanges(n * cp) { range in for i in range { y[i] /= r } }
        }
        return y
    }

    public func backward(_ dyIn: UnsafePointer<Float>) -> UnsafeMutablePointer<Float> {
        let C = channels, H = heads, d = C / H, P = self.P, cp = C * P, n = self.n
        var dyScaled = dyIn
        if outputScale != 1 {   // d(x + W_o o + b_o) = dy / r
            let r = outputScale, ds = dScaled.ensure(n * cp)
            parallelRanges(n * cp) { range in for i in range { ds[i] = dyIn[i] / r } }
            dyScaled = UnsafePointer(ds)
        }
        let dy = dyScaled
        let nr = nrm!
        let qp = UnsafePointer(q.ptr), kp = UnsafePointer(k.ptr), vp = UnsafePointer(v.ptr)
        let ap = UnsafePointer(attn.ptr), op = UnsafePointer(o.ptr)
        let dOp = dO.ensure(n * cp), dQp = dQ.ensure(n * cp), dKp = dK.ensure(n * cp), dVp = dV.ensure(n * cp)
        let dnp = dn.ensure(n * cp)
        let Wq = UnsafePointer(wq.w), Wk = UnsafePointer(wk.w), Wv = UnsafePointer(wv.w), Wo = UnsafePointer(wo.w)
        let scale = 1 / Float(d).squareRoot()
        let chunks = reductionChunks(n)
        BLAS.setThreads(chunks >= BLAS.maxThreads ? 1 : BLAS.maxThreads)
        let block = C * C + C   // one weight + bias
        ws.reserve(2, chunks: chunks, count: 4 * block)
        ws.reserve(0, chunks: chunks, count: P * P)
        parallelFor(chunks) { ch in
            let part = self.ws.ptr(2, chunk: ch)
            part.initialize(repeating: 0, count: 4 * block)
            let dA = self.ws.ptr(0, chunk: ch)
            for s in chunkRange(ch, of: chunks, n: n) {
                let dys = dy + s * cp, dOs = dOp + s * cp
                // out = x + Wo o + bo
                BLAS.gemm(false, true, C, C, P, 1, dys, P, op + s * cp, P, 1, part + 3 * block, C)
                for c in 0..<C { part[3 * block + C * C + c] += vsum(dys + c * P, P) }
                BLAS.gemm(true, false, C, P, C, 1, Wo, C, dys, P, 0, dOs, P)
                for h in 0..<H {
                    let off = s * cp + h * d * P
                    let A = ap + (s * H + h) * P * P
                    // o_h = v_h A^T: dv_h = do_h A, dA = do_h^T v_h
                    BLAS.gemm(false, false, d, P, P, 1, dOs + h * d * P, P, A, P, 0, dVp + off, P)
                    BLAS.gemm(true, false, P, P, d, 1, dOs + h * d * P, P, vp + off, P, 0, dA, P)
                    // softmax: dS_ij = A_ij (dA_ij - sum_k dA_ik A_ik)
                    for i in 0..<P {
                        let ar = A + i * P, dr = dA + i * P
                        var dot: Float = 0
                        for j in 0..<P { dot += ar[j] * dr[j] }
                        for j in 0..<P { dr[j] = ar[j] * (dr[j] - dot) }
                    }
                    // S = scale q_h^T k_h: dq_h = scale k_h dS^T, dk_h = scale q_h dS
                    BLAS.gemm(false, true, d, P, P, scale, kp + off, P, dA, P, 0, dQp + off, P)
                    BLAS.gemm(false, false, d, P, P, scale, qp + off, P, dA, P, 0, dKp + off, P)
                }
                let ns = nr + s * cp, dns = dnp + s * cp
                for (idx, dX, W) in [(0, dQp, Wq), (1, dKp, Wk), (2, dVp, Wv)] {
                    let dXs = dX + s * cp
                    BLAS.gemm(false, true, C, C, P, 1, dXs, P, ns, P, 1, part + idx * block, C)
                    for c in 0..<C { part[idx * block + C * C + c] += vsum(dXs + c * P, P) }
                    BLAS.gemm(true, false, C, P, C, 1, W, C, dXs, P, idx == 0 ? 0 : 1, dns, P)
                }
            }
        }
        let targets = [(wq, bq), (wk, bk), (wv, bv), (wo, bo)]
        for ch in 0..<chunks {
            let part = ws.ptr(2, chunk: ch)
            for (idx, (W, B)) in targets.enumerated() {
                let gW = W.g, gB = B.g, p = part + idx * block
                for i in 0..<(C * C) { gW[i] += p[i] }
                for c in 0..<C { gB[c] += p[C * C + c] }
            }
        }
        // dx = d GN-branch + dy (residual), summed in the GroupNorm's last write, in place
        // in its gradient buffer
        guard let norm else {
            let r = dy
            parallelRanges(n * cp) { range in for i in range { dnp[i] += r[i] } }
            return dnp
        }
        return norm.backward(dnp, inPlace: true, residual: dy)
    }
}

/// Nearest-neighbour x2 upsampling: y[c, 2i+a, 2j+b] = x[c, i, j]; backward sums each 2x2 block.
public final class Upsample2x {
    let out = Buffer(), dIn = Buffer()
    var n = 0, c = 0, h = 0, w = 0
    public init() {}

    public func forward(_ x: UnsafePointer<Float>, n: Int, channels: Int, h: Int, w: Int) -> UnsafeMutablePointer<Float> {
        self.n = n; c = channels; self.h = h; self.w = w
        let y = out.ensure(n * c * 4 * h * w)
        let planes = n * c, w2 = 2 * w
        parallelFor(reductionChunks(planes)) { ch in
            for pl in chunkRange(ch, of: reductionChunks(planes), n: planes) {
                let xs = x + pl * h * w, ys = y + pl * 4 * h * w
                for i in 0..<h {
                    let r0 = ys + 2 * i * w2, r1 = r0 + w2, xr = xs + i * w
                    for j in 0..<w { let v = xr[j]; r0[2 * j] = v; r0[2 * j + 1] = v }
                    r1.update(from: r0, count: w2)
                }
            }
        }
        return y
    }

    public func backward(_ dy: UnsafePointer<Float>) -> UnsafeMutablePointer<Float> {
        let dx = dIn.ensure(n * c * h * w)
        let planes = n * c, w2 = 2 * w, h = self.h, w = self.w
        parallelFor(reductionChunks(planes)) { ch in
            for pl in chunkRange(ch, of: reductionChunks(planes), n: planes) {
                let ds = dy + pl * 4 * h * w, xs = dx + pl * h * w
                for i in 0..<h {
                    let r0 = ds + 2 * i * w2, r1 = r0 + w2
                    for j in 0..<w { xs[i * w + j] = r0[2 * j] + r0[2 * j + 1] + r1[2 * j] + r1[2 * j + 1] }
                }
            }
        }
        return dx
    }
}

/// Inverted dropout: y = x m / (1 - p), m ~ Bernoulli(1 - p). The mask of sample s
/// comes from RandomStream(seed: mix(seed, layer, step), purpose: .dropout, index: s),
/// so a run is reproducible from (seed, step) whatever the batch partitioning.
public final class Dropout {
    public let p: Float
    public let layer: UInt64
    let mask = Buffer(), out = Buffer(), dIn = Buffer()
    var active = false, count = 0

    public init(p: Float, layer: UInt64) {
        precondition(p >= 0 && p < 1, "dropout probability must be in [0, 1)")
        self.p = p; self.layer = layer
    }

    /// x [n, per] -> y. Identity (returns x) when not training or p == 0. Sample s's mask is
    /// keyed by its place in the whole batch, first + s (a rank's share starts at `first`).
    public func forward(_ x: UnsafeMutablePointer<Float>, n: Int, per: Int, training: Bool, seed: UInt64, step: UInt64,
                        first: Int = 0) -> UnsafeMutablePointer<Float> {
        active = training && p > 0
        count = n * per
        guard active else { return x }
        let m = mask.ensure(n * per), y = out.ensure(n * per)
        let keep = 1 - p, scale = 1 / keep
        let key = splitmix64(seed ^ splitmix64(layer &+ 0x9E37_79B9_7F4A_7C15 &* (step &+ 1)))
        parallelFor(n) { s in
            var r = RandomStream(seed: key, purpose: .dropout, index: UInt64(first + s))
            for i in 0..<per {
                let v: Float = r.nextUniform() < Double(keep) ? scale : 0
                m[s * per + i] = v
                y[s * per + i] = x[s * per + i] * v
            }
        }
        return y
    }

    public func backward(_ dy: UnsafeMutablePointer<Float>) -> UnsafeMutablePointer<Float> {
        guard active else { return dy }
        let dx = dIn.ensure(count), m = mask.ptr
        for i in 0..<count { dx[i] = dy[i] * m[i] }
        return dx
    }
}
