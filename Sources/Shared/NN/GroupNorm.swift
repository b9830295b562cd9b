// GroupNorm (Wu & He 2018), optionally fused with the SiLU that follows it.
import Foundation

/// Per sample and group of C/groups consecutive channels: xhat = (x - mean) / sqrt(var + eps)
/// (biased variance over the group's channels x H x W), y = gamma_c xhat + beta_c,
/// and z = SiLU(y) when `fusedSiLU`. Parallel over samples.
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
    var n = 0, hw = 0

    public init(_ name: String, channels: Int, groups: Int, eps: Float = 1e-5, fusedSiLU: Bool, _ f: ParameterFactory) {
        precondition(groups > 0 && channels % groups == 0, "GroupNorm: \(channels) channels not divisible into \(groups) groups")
        self.channels = channels; self.groups = groups; self.eps = eps; self.fusedSiLU = fusedSiLU
        gamma = f.constant(name + ".weight", [channels], 1)
        beta = f.constant(name + ".bias", [channels], 0)
    }

    public var parameters: [Parameter] { [gamma, beta] }

    /// x [n, C, hw] -> the layer's own buffer [n, C, hw]. x must stay alive until backward.
    public func forward(_ x: UnsafePointer<Float>, n: Int, hw: Int) -> UnsafeMutablePointer<Float> {
        input = x; self.n = n; self.hw = hw
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
                    // two-pass mean and biased variance (per-channel partial sums in Double)
                    var sum = 0.0
                    for c in 0..<cg { sum += Double(vsum(xs + c * hw, hw)) }
                    let m = Float(sum / Double(size))
                    var sq = 0.0
                    for c in 0..<cg { sq += Double(vsumSquaredDeviation(xs + c * hw, hw, m)) }
                    let rstd = Float(1 / (sq / Double(size) + Double(eps)).squareRoot())
                    st[(s * G + g) * 2] = m
                    st[(s * G + g) * 2 + 1] = rstd
                    for c in 0..<cg {
                        let a = ga[g * cg + c] * rstd, b = be[g * cg + c] - m * a
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
    public func backward(_ dyIn: UnsafeMutablePointer<Float>, inPlace: Bool = false) -> UnsafeMutablePointer<Float> {
        let dy = UnsafePointer(dyIn)
        let x = input!
        let C = channels, G = groups, cg = C / G, hw = self.hw, n = self.n
        let size = Float(cg * hw)
        let dx = inPlace ? dyIn : dIn.ensure(n * C * hw)
        let st = UnsafePointer(stats.ptr)
        let ga = UnsafePointer(gamma.w), be = UnsafePointer(beta.w)
        let fused = fusedSiLU
        let chunks = reductionChunks(n)
        let part = partials.zeroed(chunks * 2 * C)
        parallelFor(chunks) { ch in
            let pg = part + ch * 2 * C, pb = pg + C
            for s in chunkRange(ch, of: chunks, n: n) {
                for g in 0..<G {
                    let base = (s * C + g * cg) * hw
                    let m = st[(s * G + g) * 2], rstd = st[(s * G + g) * 2 + 1]
                    // pass 1: dy' (through SiLU if fused) into dx; dbeta = sum dy', dgamma = sum dy' xhat
                    var sumG: Float = 0, sumGX: Float = 0
                    for c in 0..<cg {
                        let ci = g * cg + c
                        let xr = x + base + c * hw, dyr = dy + base + c * hw, dxr = dx + base + c * hw
                        if fused {
                            let a = ga[ci] * rstd, b = be[ci] - m * a
                            siluGradAffine(xr, dyr, dxr, hw, a, b)
                        } else {
                            if !inPlace { dxr.update(from: dyr, count: hw) }
                        }
                        let dbet = vsum(dxr, hw)
                        let dgam = rstd * (vdot(dxr, xr, hw) - m * dbet)
                        pg[ci] += dgam
                        pb[ci] += dbet
                        sumG += dbet * ga[ci]
                        sumGX += dgam * ga[ci]
                    }
                    // pass 2: dx = rstd (d gamma - mean(g) - xhat mean(g xhat)), g = d gamma
                    let meanG = sumG / size, meanGX = sumGX / size
                    for c in 0..<cg {
                        let ci = g * cg + c
                        let xr = x + base + c * hw, dxr = dx + base + c * hw
                        let a = rstd * ga[ci], b = -rstd * rstd * meanGX
                        let cst = rstd * (-meanG + m * rstd * meanGX)
                        vaxpbyc(UnsafePointer(dxr), a, xr, b, cst, dxr, hw)
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
