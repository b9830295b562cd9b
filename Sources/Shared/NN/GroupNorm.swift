// GroupNorm (Wu & He 2018), optionally fused with the SiLU that follows it.
import Foundation

/// Per sample and group of C/groups consecutive channels: xhat = (x - mean) / sqrt(var + eps)
/// (biased variance over the group's channels x H x W), y = gamma_c xhat + beta_c,
/// and z = SiLU(y) when `fusedSiLU`. Parallel over samples.
/// With a per-sample `modulation` [n, 2C] = [scale | shift] (fused only; diffusers' ResnetBlock2D
/// with time_embedding_norm "scale_shift"): z = SiLU(y (1 + scale_c) + shift_c).
public final class GroupNorm {
    public let channels: Int, groups: Int
    public let eps: Float
    public let fusedSiLU: Bool
    public let gamma: Parameter
    public let beta: Parameter
    let out = Buffer()
    let dIn = Buffer()
    let stats = Buffer()      // [n, groups, 2]: mean, rstd
    let partials = Buffer()   // [chunks, 2C]: dgamma, dbeta per chunk
    var input: UnsafePointer<Float>? = nil
    var modulation: UnsafePointer<Float>? = nil
    var n = 0, hw = 0

    public init(_ name: String, channels: Int, groups: Int, eps: Float = 1e-5, fusedSiLU: Bool, _ f: ParameterFactory) {
        precondition(groups > 0 && channels % groups == 0, "GroupNorm: \(channels) channels not divisible into \(groups) groups")
        self.channels = channels; self.groups = groups; self.eps = eps; self.fusedSiLU = fusedSiLU
        gamma = f.constant(name + ".weight", [channels], 1)
        beta = f.constant(name + ".bias", [channels], 0)
    }

    public var parameters: [Parameter] { [gamma, beta] }

    /// x [n, C, hw] -> the layer's own buffer [n, C, hw]. x must stay alive until backward.
    public func forward(_ x: UnsafePointer<Float>, n: Int, hw: Int,
                        modulation mod: UnsafePointer<Float>? = nil) -> UnsafeMutablePointer<Float> {
        precondition(mod == nil || fusedSiLU, "GroupNorm: modulation needs the fused SiLU")
        input = x; self.n = n; self.hw = hw; modulation = mod
        let C = channels, G = groups, cg = C / G, size = cg * hw
        let y = out.ensure(n * C * hw)
        let st = stats.ensure(n * G * 2)
        let ga = UnsafePointer(gamma.w), be = UnsafePointer(beta.w)
        let eps = self.eps, fused = fusedSiLU
        parallelFor(reductionChunks(n)) { ch in
            for s in chunkRange(ch, of: reductionChunks(n), n: n) {
                for g in 0..<G {
                    let base = (s * C + g * cg) * hw
                    let xs = x + base, ys = y + base
                    // one-pass mean and biased variance, shifted by k = the group's first value
                    // (per-channel partial sums in Double): with d = x - k,
                    // mean = k + E[d], var = E[d^2] - E[d]^2
                    let k = xs[0]
                    var sum = 0.0, sq = 0.0
                    for c in 0..<cg {
                        let (s1, s2) = vshiftedSums(xs + c * hw, hw, k)
                        sum += Double(s1); sq += Double(s2)
                    }
                    let md = sum / Double(size)
                    let m = Float(Double(k) + md)
                    let variance = max(sq / Double(size) - md * md, 0)
                    let rstd = Float(1 / (variance + Double(eps)).squareRoot())
                    st[(s * G + g) * 2] = m
                    st[(s * G + g) * 2 + 1] = rstd
                    for c in 0..<cg {
                        var a = ga[g * cg + c] * rstd, b = be[g * cg + c] - m * a
                        if let mod {   // (a x + b)(1 + scale) + shift
                            let k = 1 + mod[s * 2 * C + g * cg + c]
                            a *= k; b = b * k + mod[s * 2 * C + C + g * cg + c]
                        }
                        let xr = xs + c * hw, yr = ys + c * hw
                        if fused {
                            siluAffine(xr, yr, hw, a, b)
                        } else {
                            vaxpbyc(xr, a, xr, 0, b, yr, hw)
                        }
                    }
                }
            }
        }
        return y
    }

    /// Backward (dy is the gradient of z when fused, of y otherwise):
    /// dgamma_c += sum dy' xhat, dbeta_c += sum dy', and with g = dy' gamma,
    /// dx = rstd (g - mean(g) - xhat mean(g xhat)) over the group.
    /// `inPlace`: write dx over dy (every element is read before it is overwritten);
    /// callers pass it when dy is a consumed gradient buffer, saving one buffer per layer.
    /// `residual` (same shape as x): returns dx + residual, added in the last write instead
    /// of a separate pass (the residual branches of ResBlock and SpatialAttention).
    /// With a modulation, `modulationGrad` [n, 2C] receives d scale, d shift (written, not added):
    /// with u = y (1 + scale) + shift, d shift = sum du, d scale = sum du y, and dy = du (1 + scale).
    public func backward(_ dyIn: UnsafeMutablePointer<Float>, inPlace: Bool = false,
                         residual: UnsafePointer<Float>? = nil,
                         modulationGrad: UnsafeMutablePointer<Float>? = nil) -> UnsafeMutablePointer<Float> {
        let dy = UnsafePointer(dyIn)
        let x = input!
        let C = channels, G = groups, cg = C / G, hw = self.hw, n = self.n
        let size = Float(cg * hw)
        let dx = inPlace ? dyIn : dIn.ensure(n * C * hw)
        let st = UnsafePointer(stats.ptr)
        let ga = UnsafePointer(gamma.w), be = UnsafePointer(beta.w)
        let fused = fusedSiLU
        let mod = modulation
        precondition(mod == nil || modulationGrad != nil, "GroupNorm backward: a modulated forward needs modulationGrad")
        let chunks = reductionChunks(n)
        let part = partials.zeroed(chunks * 2 * C)
        parallelFor(chunks) { ch in
            let pg = part + ch * 2 * C, pb = pg + C
            for s in chunkRange(ch, of: chunks, n: n) {
                for g in 0..<G {
                    let base = (s * C + g * cg) * hw
                    let m = st[(s * G + g) * 2], rstd = st[(s * G + g) * 2 + 1]
                    // pass 1: dy' (through SiLU if fused, then stored in dx) with its sums in the
                    // same pass: dbeta = sum dy', dgamma = sum dy' xhat = rstd (sum dy' x - m sum dy')
                    var sumG: Float = 0, sumGX: Float = 0
                    for c in 0..<cg {
                        let ci = g * cg + c
                        let xr = x + base + c * hw, dyr = dy + base + c * hw, dxr = dx + base + c * hw
                        let (dbet, dyx): (Float, Float)
                        var k: Float = 1
                        if fused {
                            var a = ga[ci] * rstd, b = be[ci] - m * a
                            if let mod, let mg = modulationGrad {
                                k = 1 + mod[s * 2 * C + ci]
                                let b0 = b
                                a *= k; b = b * k + mod[s * 2 * C + C + ci]
                                (dbet, dyx) = siluGradAffineSums(xr, dyr, dxr, hw, a, b)
                                // d scale = sum du (gamma xhat + beta), d shift = sum du
                                mg[s * 2 * C + ci] = ga[ci] * rstd * dyx + b0 * dbet
                                mg[s * 2 * C + C + ci] = dbet
                            } else {
                                (dbet, dyx) = siluGradAffineSums(xr, dyr, dxr, hw, a, b)
                            }
                        } else {
                            (dbet, dyx) = vsumAndDot(dyr, xr, hw)
                        }
                        // the GroupNorm output's gradient is du k (k = 1 + scale; 1 unmodulated)
                        let dgam = k * (rstd * (dyx - m * dbet))
                        let dbk = k * dbet
                        pg[ci] += dgam
                        pb[ci] += dbk
                        sumG += dbk * ga[ci]
                        sumGX += dgam * ga[ci]
                    }
                    // pass 2: dx = rstd (dy' gamma - mean(g) - xhat mean(g xhat)), g = dy' gamma
                    // (dy' was stored in dx when fused; it is dy itself otherwise)
                    let meanG = sumG / size, meanGX = sumGX / size
                    for c in 0..<cg {
                        let ci = g * cg + c
                        let xr = x + base + c * hw, dxr = dx + base + c * hw
                        let src = fused ? UnsafePointer(dxr) : dy + base + c * hw
                        let k: Float = mod.map { 1 + $0[s * 2 * C + ci] } ?? 1
                        let a = k * (rstd * ga[ci]), b = -rstd * rstd * meanGX
                        let cst = rstd * (-meanG + m * rstd * meanGX)
                        if let res = residual {
                            vaxpbycr(src, a, xr, b, cst, res + base + c * hw, dxr, hw)
                        } else {
                            vaxpbyc(src, a, xr, b, cst, dxr, hw)
                        }
                    }
                }
            }
        }
        let gg = gamma.g, gb = beta.g
        for ch in 0..<chunks {
            let pg = part + ch * 2 * C
            for c in 0..<C { gg[c] += pg[c]; gb[c] += pg[C + c] }
        }
        return dx
    }
}
