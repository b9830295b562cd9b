// Residual block with timestep-embedding injection (Ho et al. 2020; diffusers ResnetBlock2D):
//   h = conv1(SiLU(GN(x))) + time_emb_proj(SiLU(temb))[:, :, None, None]
//   h = conv2(dropout(SiLU(GN(h))))
//   out = shortcut(x) + h     (shortcut: 1x1 conv when Cin != Cout, identity otherwise)
// SiLU(temb) is computed once by the network and shared by all blocks; each block
// adds its d SiLU(temb) into the network's accumulator.
import Foundation

public final class ResBlock {
    public let cin: Int, cout: Int
    let norm1: GroupNorm, conv1: Conv2d, proj: Linear
    let norm2: GroupNorm, dropout: Dropout, conv2: Conv2d
    let shortcut: Conv2d?
    let projGrad = Buffer()
    var input: UnsafePointer<Float>? = nil
    var n = 0, hw = 0

    public init(_ name: String, _ cin: Int, _ cout: Int, tembDim: Int, groups: Int, dropout p: Float,
                layer: UInt64, _ f: ParameterFactory, _ ws: Workspace) {
        self.cin = cin; self.cout = cout
        norm1 = GroupNorm(name + ".norm1", channels: cin, groups: groups, fusedSiLU: true, f)
        conv1 = Conv2d(name + ".conv1", cin, cout, kernel: 3, f, ws)
        proj = Linear(name + ".time_emb_proj", tembDim, cout, f)
        norm2 = GroupNorm(name + ".norm2", channels: cout, groups: groups, fusedSiLU: true, f)
        dropout = Dropout(p: p, layer: layer)
        conv2 = Conv2d(name + ".conv2", cout, cout, kernel: 3, zeroInit: true, f, ws)
        shortcut = cin != cout ? Conv2d(name + ".conv_shortcut", cin, cout, kernel: 1, f, ws) : nil
    }

    public var parameters: [Parameter] {
        norm1.parameters + conv1.parameters + proj.parameters + norm2.parameters + conv2.parameters
            + (shortcut?.parameters ?? [])
    }

    /// x [n, cin, h, w], sTemb = SiLU(temb) [n, tembDim] -> [n, cout, h, w].
    public func forward(_ x: UnsafePointer<Float>, n: Int, h: Int, w: Int, sTemb: UnsafePointer<Float>,
                        training: Bool, seed: UInt64, step: UInt64) -> UnsafeMutablePointer<Float> {
        input = x; self.n = n; hw = h * w
        let a = norm1.forward(x, n: n, hw: hw)
        let e = proj.forward(sTemb, rows: n)
        let hb = conv1.forward(a, n: n, h: h, w: w, sampleBias: e)     // + time_emb_proj, fused
        let b = norm2.forward(hb, n: n, hw: hw)
        let dr = dropout.forward(b, n: n, per: cout * hw, training: training, seed: seed, step: step)
        // out = shortcut(x) + conv2(...), the residual fused into conv2's output initialisation
        let r = shortcut.map { UnsafePointer($0.forward(x, n: n, h: h, w: w)) } ?? x
        return conv2.forward(dr, n: n, h: h, w: w, residual: r)
    }

    /// Returns dx; adds d SiLU(temb) into dsTemb [n, tembDim].
    public func backward(_ dy: UnsafePointer<Float>, dsTemb: UnsafeMutablePointer<Float>) -> UnsafeMutablePointer<Float> {
        let n = self.n, cout = self.cout
        let dr = conv2.backward(dy)!
        let db = dropout.backward(dr)
        let dh = norm2.backward(db, inPlace: true)
        // temb projection: d e[s, c] = sum over positions of dh[s, c], taken from conv1's bias pass
        let de = projGrad.ensure(n * cout)
        let da = conv1.backward(dh, channelSums: de)!
        let dsT = proj.backward(de)!
        for i in 0..<(n * proj.inFeatures) { dsTemb[i] += dsT[i] }
        // dx = dxa + d shortcut, the sum formed in norm1's last write, in place in its
        // gradient buffer (saves a buffer and a pass over dx)
        let ds = shortcut.map { UnsafePointer($0.backward(dy)!) } ?? dy
        return norm1.backward(da, inPlace: true, residual: ds)
    }
}
