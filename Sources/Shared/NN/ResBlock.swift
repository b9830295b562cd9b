// Residual block with timestep-embedding injection (Ho et al. 2020; diffusers ResnetBlock2D):
//   h = conv1(SiLU(GN(x))) + time_emb_proj(SiLU(temb))[:, :, None, None]
//   h = conv2(dropout(SiLU(GN(h))))
//   out = (shortcut(x) + h) / r   (shortcut: 1x1 conv when Cin != Cout, identity otherwise;
//                                  r: diffusers' output_scale_factor, 1 by default)
// With scale_shift (diffusers time_embedding_norm "scale_shift", Nichol & Dhariwal 2021 sec. 2.4):
// time_emb_proj gives [scale | shift] (2 Cout) and h = conv2(dropout(SiLU(GN(h1) (1 + scale) + shift)))
// with h1 = conv1(SiLU(GN(x))).
// SiLU(temb) is computed once by the network and shared by all blocks; each block
// adds its d SiLU(temb) into the network's accumulator.
import Foundation

public final class ResBlock {
    public let cin: Int, cout: Int
    let norm1: GroupNorm, conv1: Conv2d, proj: Linear
    let norm2: GroupNorm, dropout: Dropout, conv2: Conv2d
    let shortcut: Conv2d?
    public let scaleShift: Bool
    public let outputScale: Float
    let projGrad = Buffer(), scaled = Buffer(), dScaled = Buffer()
    var input: UnsafePointer<Float>? = nil
    var n = 0, hw = 0

    public init(_ name: String, _ cin: Int, _ cout: Int, tembDim: Int, groups: Int, dropout p: Float,
                layer: UInt64, eps: Float = 1e-5, scaleShift: Bool = false, outputScale: Float = 1,
                _ f: ParameterFactory, _ ws: Workspace) {
        self.cin = cin; self.cout = cout; self.scaleShift = scaleShift; self.outputScale = outputScale
        norm1 = GroupNorm(name + ".norm1", channels: cin, groups: groups, eps: eps, fusedSiLU: true, f)
        conv1 = Conv2d(name + ".conv1", cin, cout, kernel: 3, f, ws)
        proj = Linear(name + ".time_emb_proj", tembDim, scaleShift ? 2 * cout : cout, f)
        norm2 = GroupNorm(name + ".norm2", channels: cout, groups: groups, eps: eps, fusedSiLU: true, f)
        dropout = Dropout(p: p, layer: layer)
        conv2 = Conv2d(name + ".conv2", cout, cout, kernel: 3, zeroInit: true, f, ws)
        shortcut = cin != cout ? Conv2d(name + ".conv_shortcut", cin, cout, kernel: 1, f, ws) : nil
    }

    public var parameters: [Parameter] {
        norm1.parameters + conv1.parameters + proj.parameters + norm2.parameters + conv2.parameters
            + (shortcut?.parameters ?? [])
    }

    /// x [n, cin, h, w], sTemb = SiLU(temb) [n, tembDim] -> [n, cout, h, w]. `training` enables
    /// dropout; `inference` (default: not training) lets the convolutions take their inference path.
    public func forward(_ x: UnsafePointer<Float>, n: Int, h: Int, w: Int, sTemb: UnsafePointer<Float>,
                        training: Bool, seed: UInt64, step: UInt64, first: Int = 0,
                        inference: Bool? = nil) -> UnsafeMutablePointer<Float> {
        input = x; self.n = n; hw = h * w
        let inference = inference ?? !training
        let a = norm1.forward(x, n: n, hw: hw)
        let e = proj.forward(sTemb, rows: n)
        let b: UnsafeMutablePointer<Float>
        if scaleShift {
            let hb = conv1.forward(a, n: n, h: h, w: w, inference: inference)
            b = norm2.forward(hb, n: n, hw: hw, modulation: e)
        } else {
            let hb = conv1.forward(a, n: n, h: h, w: w, sampleBias: e, inference: inference)     // + time_emb_proj, fused
            b = norm2.forward(hb, n: n, hw: hw)
        }
        let dr = dropout.forward(b, n: n, per: cout * hw, training: training, seed: seed, step: step, first: first)
        // out = shortcut(x) + conv2(...), the residual fused into conv2's output initialisation
        let r = shortcut.map { UnsafePointer($0.forward(x, n: n, h: h, w: w, inference: inference)) } ?? x
        let y = conv2.forward(dr, n: n, h: h, w: w, residual: r, inference: inference)
        guard outputScale != 1 else { return y }
        let count = n * cout * hw, sc = outputScale, o = scaled.ensure(count)
        parallelRanges(count) { range in for i in range { o[i] = y[i] / sc } }
        return o
    }

    /// Returns dx; adds d SiLU(temb) into dsTemb [n, tembDim].
    public func backward(_ dy: UnsafePointer<Float>, dsTemb: UnsafeMutablePointer<Float>) -> UnsafeMutablePointer<Float> {
        let n = self.n, cout = self.cout
        var dyScaled = dy
        if outputScale != 1 {   // d(shortcut(x) + h) = dy / r
            let count = n * cout * hw, sc = outputScale, d = dScaled.ensure(count)
            parallelRanges(count) { range in for i in range { d[i] = dy[i] / sc } }
            dyScaled = UnsafePointer(d)
        }
        let dy = dyScaled
        let dr = conv2.backward(dy)!
        let db = dropout.backward(dr)
        let de = projGrad.ensure(n * proj.outFeatures)
        let da: UnsafeMutablePointer<Float>
        if scaleShift {
            // d e = [d scale | d shift], from norm2's modulation
            let dh = norm2.backward(db, inPlace: true, modulationGrad: de)
            da = conv1.backward(dh)!
        } else {
            let dh = norm2.backward(db, inPlace: true)
            // temb projection: d e[s, c] = sum over positions of dh[s, c], taken from conv1's bias pass
            da = conv1.backward(dh, channelSums: de)!
        }
        let dsT = proj.backward(de)!
        for i in 0..<(n * proj.inFeatures) { dsTemb[i] += dsT[i] }
        // dx = dxa + d shortcut, the sum formed in norm1's last write, in place in its
        // gradient buffer (saves a buffer and a pass over dx)
        let ds = shortcut.map { UnsafePointer($0.backward(dy)!) } ?? dy
        return norm1.backward(da, inPlace: true, residual: ds)
    }
}
