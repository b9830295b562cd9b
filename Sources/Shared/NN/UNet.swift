// U-Net noise predictor in the style of Ho et al. 2020 / Nichol & Dhariwal 2021,
// laid out as diffusers' UNet2DModel (the peer's "bench-unet-28"): conv_in, down
// levels of residual blocks (+ attention at chosen resolutions) and stride-2 conv
// downsamplers, a mid block (res, attention, res), up levels of res_blocks+1
// residual blocks each fed cat([h, skip]) from the skip stack, nearest x2 + conv
// upsamplers, then GroupNorm-SiLU-conv_out.
// The diffusers options that DDPM checkpoints use (UNetConfig's second group of fields; their
// defaults are this network's own): GroupNorm eps, the sinusoid's order and frequency shift,
// downsample padding 0 (pad (0,1,0,1) before the stride-2 conv), scale-shift time conditioning,
// the mid block's output scale, its attention (and that attention's GroupNorm), input centring
// x -> 2x - 1.
import Foundation

/// Hyper-parameters of a U-Net (`arch = unet`; the `arch.*` keys of a model file, typed).
public struct UNetConfig: Codable, Equatable, Sendable {
    public var inShape: [Int]           // [C, H, W]
    public var channels: Int            // base channels
    public var mults: [Int]             // channel multiplier per level
    public var resBlocks: Int           // residual blocks per down level (up levels: +1)
    public var attnResolutions: [Int]   // feature-map sizes (H) with attention (the mid block always has it)
    public var heads: Int               // attention heads; 0: channels / headDim
    public var headDim: Int
    public var groups: Int
    public var dropout: Float
    public var classes: Int             // 0: unconditional; else K classes + null class K
    public var learnSigma: Bool         // doubled output channels [eps | v]
    public var seed: UInt64
    // diffusers UNet2DModel options (arch.* keys written only when not default)
    public var normEps: Double = 1e-5          // norm_eps: every GroupNorm's eps
    public var flipSinToCos: Bool = true       // flip_sin_to_cos: sinusoid [cos | sin] (false: [sin | cos])
    public var freqShift: Int = 0              // freq_shift: f_i = exp(-ln(10^4) i / (half - shift))
    public var downsamplePadding: Int = 1      // downsample_padding: 1 symmetric, 0 pad (0,1,0,1)
    public var scaleShift: Bool = false        // resnet_time_scale_shift "scale_shift"
    public var midScale: Double = 1            // mid_block_scale_factor: mid outputs divided by it
    public var midAttention: Bool = true       // add_attention
    public var midAttentionNorm: Bool = true   // the mid attention's GroupNorm (diffusers: none under scale_shift)
    public var centerInput: Bool = false       // center_input_sample: x -> 2x - 1

    /// The defaults here are the U-Net's only ones (`train` without flags, absent `arch.*` keys,
    /// the help text): 16 channels, mults 1,2,2, one residual block per level, attention only in
    /// the mid block, heads of width 8, 8 groups, dropout 0.1 -- on 28x28 digits at batch 64 it
    /// trains at about 140 examples/s on the 2-core machine (the former default, 32 channels, two
    /// blocks per level and attention at 7x7: 29 examples/s, measured side by side).
    public init(inShape: [Int], channels: Int = 16, mults: [Int] = [1, 2, 2], resBlocks: Int = 1,
                attnResolutions: [Int] = [], heads: Int = 0, headDim: Int = 8, groups: Int = 8,
                dropout: Float = 0.1, classes: Int = 0, learnSigma: Bool = false, seed: UInt64 = 0) {
        self.inShape = inShape; self.channels = channels; self.mults = mults; self.resBlocks = resBlocks
        self.attnResolutions = attnResolutions; self.heads = heads; self.headDim = headDim
        self.groups = groups; self.dropout = dropout; self.classes = classes
        self.learnSigma = learnSigma; self.seed = seed
    }

    /// The default U-Net for image samples of `sampleShape` [C, H, W].
    public static func defaults(for sampleShape: [Int]) -> UNetConfig { UNetConfig(inShape: sampleShape) }

    /// Sinusoid width (= channels, as diffusers' block_out_channels[0]) and embedding width (4 x channels).
    public var sinusoidDim: Int { channels }
    public var tembDim: Int { 4 * channels }

    func headsFor(_ c: Int) -> Int { heads > 0 ? heads : max(1, c / headDim) }

    /// Feature-map sizes (H) of the levels, top first: 28, 14, 7 for 28x28 and 3 levels.
    public var levelSizes: [Int] { (0..<mults.count).map { inShape.count == 3 ? inShape[1] >> $0 : 0 } }

    /// Every setting out of bounds (sizes first, so that nothing below overflows), then the
    /// total parameter count, computed without allocating.
    public var issues: [ConfigIssue] {
        let lim = ConfigLimits.self
        guard inShape.count == 3, inShape.allSatisfy({ $0 > 0 && $0 <= lim.sampleSize }),
              inShape.reduce(1, *) <= lim.sampleSize else {
            return [ConfigIssue("in_shape", "U-Net input shape \(inShape) must be C,H,W with positive sizes and at most \(lim.sampleSize) values")]
        }
        var out = levelIssues(channels: channels, mults: mults, groups: groups, name: "U-Net")
        if !out.isEmpty { return out }
        if !(1...lim.depth).contains(resBlocks) {
            out.append(ConfigIssue("res_blocks", "\(resBlocks) residual blocks per level: must lie in 1 ... \(lim.depth)"))
        }
        let f = 1 << (mults.count - 1)
        if inShape[1] % f != 0 || inShape[2] % f != 0 {
            out.append(ConfigIssue("mults", "image size \(inShape[1])x\(inShape[2]) is not divisible by \(f), as \(mults.count) levels need"))
        }
        if let bad = attnResolutions.first(where: { $0 < 1 || $0 > lim.sampleSize }) {
            out.append(ConfigIssue("attn", "attention resolution \(bad) must be a positive feature-map size"))
        }
        if !(0...lim.width).contains(heads) { out.append(ConfigIssue("heads", "\(heads) attention heads: must lie in 0 ... \(lim.width) (0: channels / head_dim)")) }
        if !(1...lim.width).contains(headDim) { out.append(ConfigIssue("head_dim", "attention head width \(headDim) must lie in 1 ... \(lim.width)")) }
        if out.isEmpty {
            for (i, m) in mults.enumerated() where attnResolutions.contains(inShape[1] >> i) || (i == mults.count - 1 && midAttention) {
                let c = channels * m, h = headsFor(c)
                if c % h != 0 { out.append(ConfigIssue(heads > 0 ? "heads" : "head_dim", "\(c) attention channels are not divisible into \(h) heads")); break }
            }
        }
        if !(dropout >= 0 && dropout < 1) { out.append(ConfigIssue("dropout", "dropout probability \(dropout) must lie in [0, 1)")) }
        if !(0...lim.classes).contains(classes) { out.append(ConfigIssue("classes", "\(classes) classes: must lie in 0 ... \(lim.classes)")) }
        if !(normEps > 0 && normEps <= 1) { out.append(ConfigIssue("norm_eps", "GroupNorm eps \(normEps) must lie in (0, 1]")) }
        if !(0..<(sinusoidDim / 2)).contains(freqShift) {
            out.append(ConfigIssue("freq_shift", "frequency shift \(freqShift) must lie in 0 ... \(sinusoidDim / 2 - 1) (half the sinusoid width, less one)"))
        }
        if !(0...1).contains(downsamplePadding) { out.append(ConfigIssue("downsample_padding", "downsample padding \(downsamplePadding) must be 0 or 1")) }
        if !(midScale >= 1e-3 && midScale <= 1e3) { out.append(ConfigIssue("mid_scale", "mid-block output scale \(midScale) must lie in 0.001 ... 1000")) }
        if out.isEmpty, let issue = parameterIssue(parameterCount) { out.append(issue) }
        return out
    }

    /// Throws a one-line error naming the first issue.
    public func validate() throws {
        if let issue = issues.first { throw DDPMError(issue.message) }
    }

    /// Number of trainable parameters, by the same walk as `UNet.init` (for a config without issues).
    public var parameterCount: Int {
        let ch = channels, temb = tembDim
        var n = linearCount(sinusoidDim, temb) + linearCount(temb, temb) + (classes > 0 ? (classes + 1) * temb : 0)
        n += convCount(inShape[0], ch, 3)
        func attn(_ c: Int, norm: Bool = true) -> Int { (norm ? 2 * c : 0) + 4 * linearCount(c, c) }
        func resCount(_ a: Int, _ b: Int, temb: Int) -> Int {   // scale_shift: time_emb_proj gives 2b
            resBlockCount(a, b, temb: temb) + (scaleShift ? linearCount(temb, b) : 0)
        }
        var skip = [ch], cur = ch, size = inShape[1]
        for (i, m) in mults.enumerated() {
            let out = ch * m, hasAttn = attnResolutions.contains(size)
            for _ in 0..<resBlocks {
                n += resCount(cur, out, temb: temb) + (hasAttn ? attn(out) : 0)
                cur = out
                skip.append(cur)
            }
            if i != mults.count - 1 { n += convCount(cur, cur, 3); skip.append(cur); size /= 2 }
        }
        n += 2 * resCount(cur, cur, temb: temb) + (midAttention ? attn(cur, norm: midAttentionNorm) : 0)
        for (i, m) in mults.enumerated().reversed() {
            let out = ch * m, hasAttn = attnResolutions.contains(size)
            for _ in 0...resBlocks {
                n += resCount(cur + skip.removeLast(), out, temb: temb) + (hasAttn ? attn(out) : 0)
                cur = out
            }
            if i != 0 { n += convCount(cur, cur, 3); size *= 2 }
        }
        let outC = learnSigma ? 2 * inShape[0] : inShape[0]
        return n + 2 * cur + convCount(cur, outC, 3)
    }
}

public final class UNet: Network {
    enum Op {
        case conv(Conv2d)
        case res(ResBlock)
        case attn(SpatialAttention)
        case upsample(Upsample2x, Conv2d)
        case concat(Buffer, Buffer)   // (cat([h, skip]) buffer, dh buffer); pops the skip stack
        case normSiLU(GroupNorm)
    }

    /// The hyper-parameters (`config` is the same as a `NetworkConfig`).
    public let unetConfig: UNetConfig
    public let parameters: [Parameter]
    public let store: ParameterStore
    public let outChannels: Int
    /// Dropout masks are keyed by (dropoutSeed, step); the trainer sets step each iteration.
    public var dropoutSeed: UInt64
    public var step: UInt64 = 0
    /// The place of this forward's first sample in the step's whole batch (a rank's share under
    /// mpirun starts there), so that dropout masks do not depend on how the batch is shared.
    public var firstExample = 0
    /// Per-op wall time (seconds, accumulated) when `profile` is on; labels in `opNames`.
    public var profile = false
    public private(set) var opTimes: [Double] = []
    public private(set) var opNames: [String] = []
    /// Called by forward with the activations at diffusers' block boundaries (`conv_in`,
    /// `down_blocks.i`, `mid_block`, `up_blocks.k`; [n, C, H, W]): layer-by-layer comparison.
    public var tap: ((String, UnsafeBufferPointer<Float>) -> Void)?
    var boundaries: [Int: String] = [:]

    let ws: Workspace
    let timeEmbedding: TimeEmbedding
    let classEmbedding: ClassEmbedding?
    let tembAct = SiLU()
    var ops: [(op: Op, push: Bool)] = []
    let inputBuf = Buffer(), gradBuf = Buffer(), dsTemb = Buffer()
    var skipGrads: [Buffer] = []
    // shapes recorded by the last forward: per op, its input (c, h, w)
    var shapes: [(Int, Int, Int)] = []
    var skipShapes: [(Int, Int, Int)] = []
    var batch = 0

    public init(config: UNetConfig) throws {
        try config.validate()
        self.unetConfig = config
        dropoutSeed = config.seed
        let ws = Workspace()
        self.ws = ws
        let f = ParameterFactory(seed: config.seed)
        let ch = config.channels, groups = config.groups, temb = config.tembDim
        let p = config.dropout
        timeEmbedding = TimeEmbedding("time_embedding", sinusoidDim: config.sinusoidDim, dim: temb,
                                      flipSinToCos: config.flipSinToCos, freqShift: config.freqShift, f)
        classEmbedding = config.classes > 0 ? ClassEmbedding("class_embedding", classes: config.classes, dim: temb, f) : nil
        outChannels = config.learnSigma ? 2 * config.inShape[0] : config.inShape[0]
        var ops: [(Op, Bool)] = []
        var layer: UInt64 = 0
        let eps = Float(config.normEps), midScale = Float(config.midScale)
        func res(_ name: String, _ a: Int, _ b: Int, scale: Float = 1) -> Op {
            layer += 1
            return .res(ResBlock(name, a, b, tembDim: temb, groups: groups, dropout: p, layer: layer, eps: eps,
                                 scaleShift: config.scaleShift, outputScale: scale, f, ws))
        }
        func attn(_ name: String, _ c: Int, norm: Bool = true, scale: Float = 1) -> Op {
            .attn(SpatialAttention(name, channels: c, heads: config.headsFor(c), groups: norm ? groups : 0, eps: eps,
                                   outputScale: scale, f, ws))
        }
        var boundaries: [Int: String] = [:]
        ops.append((.conv(Conv2d("conv_in", config.inShape[0], ch, kernel: 3, f, ws)), true))
        boundaries[0] = "conv_in"
        var skipCh = [ch]
        var cur = ch
        var res0 = config.inShape[1]
        let L = config.mults.count
        for i in 0..<L {
            let out = ch * config.mults[i]
            let hasAttn = config.attnResolutions.contains(res0)
            for j in 0..<config.resBlocks {
                ops.append((res("down_blocks.\(i).resnets.\(j)", cur, out), !hasAttn))
                cur = out
                if hasAttn { ops.append((attn("down_blocks.\(i).attentions.\(j)", cur), true)) }
                skipCh.append(cur)
            }
            if i != L - 1 {
                ops.append((.conv(Conv2d("down_blocks.\(i).downsamplers.0.conv", cur, cur, kernel: 3, stride: 2,
                                         padLow: config.downsamplePadding == 0 ? 0 : nil, f, ws)), true))
                skipCh.append(cur)
                res0 /= 2
            }
            boundaries[ops.count - 1] = "down_blocks.\(i)"
        }
        ops.append((res("mid_block.resnets.0", cur, cur, scale: midScale), false))
        if config.midAttention {
            ops.append((attn("mid_block.attentions.0", cur, norm: config.midAttentionNorm, scale: midScale), false))
        }
        ops.append((res("mid_block.resnets.1", cur, cur, scale: midScale), false))
        boundaries[ops.count - 1] = "mid_block"
        for k in 0..<L {
            let i = L - 1 - k
            let out = ch * config.mults[i]
            let hasAttn = config.attnResolutions.contains(res0)
            for j in 0...config.resBlocks {
                let s = skipCh.removeLast()
                ops.append((.concat(Buffer(), Buffer()), false))
                ops.append((res("up_blocks.\(k).resnets.\(j)", cur + s, out), false))
                cur = out
                if hasAttn { ops.append((attn("up_blocks.\(k).attentions.\(j)", cur), false)) }
            }
            if i != 0 {
                ops.append((.upsample(Upsample2x(), Conv2d("up_blocks.\(k).upsamplers.0.conv", cur, cur, kernel: 3, f, ws)), false))
                res0 *= 2
            }
            boundaries[ops.count - 1] = "up_blocks.\(k)"
        }
        ops.append((.normSiLU(GroupNorm("conv_norm_out", channels: cur, groups: groups, eps: eps, fusedSiLU: true, f)), false))
        ops.append((.conv(Conv2d("conv_out", cur, outChannels, kernel: 3, zeroInit: true, f, ws)), false))
        self.ops = ops.map { (op: $0.0, push: $0.1) }
        self.boundaries = boundaries
        parameters = f.all
        store = ParameterStore(packing: parameters)   // one flat buffer for all of them
        skipGrads = (0..<ops.filter { $0.1 }.count).map { _ in Buffer() }
        opNames = self.ops.map { UNet.name(of: $0.op) }
        opTimes = [Double](repeating: 0, count: self.ops.count)
    }

    static func name(of op: Op) -> String {
        switch op {
        case .conv(let c): return "conv \(c.weight.name.dropLast(7))"
        case .res(let r): return "res \(r.conv1.weight.name.dropLast(13))"
        case .attn(let a): return "attn \(a.name)"
        case .upsample(_, let c): return "upsample \(c.weight.name.dropLast(12))"
        case .concat: return "concat"
        case .normSiLU: return "conv_norm_out"
        }
    }

    public var config: NetworkConfig { .unet(unetConfig) }
    public var classes: Int { unetConfig.classes }
    public var inputShape: [Int] { unetConfig.inShape }
    public var outputShape: [Int] { [outChannels, unetConfig.inShape[1], unetConfig.inShape[2]] }

    /// Profile clock: this thread's CPU time when single-threaded (immune to other
    /// processes on a shared machine), wall time otherwise.
    static func clock() -> Double {
        BLAS.maxThreads == 1 ? ConvProfile.now() : Double(DispatchTime.now().uptimeNanoseconds) * 1e-9
    }

    public func resetProfile() { opTimes = [Double](repeating: 0, count: ops.count) }

    public func forward(_ x: [Float], t: [Int], y: [Int]?, training: Bool) -> [Float] {
        let n = t.count
        let (C0, H0, W0) = (unetConfig.inShape[0], unetConfig.inShape[1], unetConfig.inShape[2])
        precondition(x.count == n * C0 * H0 * W0, "UNet: \(x.count) values for \(n) samples of shape \(unetConfig.inShape)")
        ClassEmbedding.check(y, classes: unetConfig.classes, batch: n)
        precondition(y == nil || classEmbedding != nil, "UNet: class labels given to an unconditional network")
        batch = n
        BLAS.setThreads(1)
        let temb = timeEmbedding.forward(t)
        if let ce = classEmbedding { ce.addForward(y, batch: n, into: temb) }
        let sTemb = UnsafePointer(tembAct.forward(temb, count: n * unetConfig.tembDim))
        let xin = inputBuf.ensure(x.count)
        x.withUnsafeBufferPointer { xin.update(from: $0.baseAddress!, count: x.count) }
        if unetConfig.centerInput { for i in 0..<x.count { xin[i] = 2 * xin[i] - 1 } }
        var h = UnsafePointer(xin)
        var (c, hh, ww) = (C0, H0, W0)
        var stack: [(UnsafePointer<Float>, Int)] = []   // (pointer, channels)
        shapes.removeAll(keepingCapacity: true)
        skipShapes.removeAll(keepingCapacity: true)
        for (k, (op, push)) in ops.enumerated() {
            let start = profile ? UNet.clock() : 0
            shapes.append((c, hh, ww))
            switch op {
            case .conv(let conv):
                h = UnsafePointer(conv.forward(h, n: n, h: hh, w: ww, inference: !training))
                (hh, ww) = conv.outputSize(hh, ww); c = conv.cout
            case .res(let r):
                h = UnsafePointer(r.forward(h, n: n, h: hh, w: ww, sTemb: sTemb, training: training,
                                            seed: dropoutSeed, step: step, first: firstExample))
                c = r.cout
            case .attn(let a):
                h = UnsafePointer(a.forward(h, n: n, hw: hh * ww))
            case .upsample(let up, let conv):
                let u = up.forward(h, n: n, channels: c, h: hh, w: ww)
                hh *= 2; ww *= 2
                h = UnsafePointer(conv.forward(u, n: n, h: hh, w: ww, inference: !training))
            case .concat(let buf, _):
                let (s, sc) = stack.removeLast()
                skipShapes.append((sc, hh, ww))
                let P = hh * ww, c1 = c * P, c2 = sc * P
                let cat = buf.ensure(n * (c1 + c2))
                let src = h
                parallelFor(reductionChunks(n)) { ch in
                    for b in chunkRange(ch, of: reductionChunks(n), n: n) {
                        (cat + b * (c1 + c2)).update(from: src + b * c1, count: c1)
                        (cat + b * (c1 + c2) + c1).update(from: s + b * c2, count: c2)
                    }
                }
                h = UnsafePointer(cat); c += sc
            case .normSiLU(let g):
                h = UnsafePointer(g.forward(h, n: n, hw: hh * ww))
            }
            if push { stack.append((h, c)) }
            if profile { opTimes[k] += UNet.clock() - start }
            if let tap, let label = boundaries[k] { tap(label, UnsafeBufferPointer(start: h, count: n * c * hh * ww)) }
        }
        return Array(UnsafeBufferPointer(start: h, count: n * c * hh * ww))
    }

    public func backward(_ gradOutput: [Float]) -> [Float] {
        let n = batch
        precondition(gradOutput.count == n * outputShape.reduce(1, *), "UNet backward: gradient size mismatch")
        BLAS.setThreads(1)
        let g0 = gradBuf.ensure(gradOutput.count)
        gradOutput.withUnsafeBufferPointer { g0.update(from: $0.baseAddress!, count: gradOutput.count) }
        let dsT = dsTemb.zeroed(n * unetConfig.tembDim)
        var g = g0
        var pushIndex = skipGrads.count
        var concatIndex = skipShapes.count
        for k in stride(from: ops.count - 1, through: 0, by: -1) {
            let start = profile ? UNet.clock() : 0
            let (op, push) = ops[k]
            let (c, hh, ww) = shapes[k]   // this op's input shape
            if push {
                // this op's output was also a skip: add the gradient from its concat
                pushIndex -= 1
                let sg = skipGrads[pushIndex].ptr
                let outCount = outputCount(k, n: n)
                let gg = g
                parallelRanges(outCount) { range in for i in range { gg[i] += sg[i] } }
            }
            switch op {
            case .conv(let conv):
                g = conv.backward(g)!
            case .res(let r):
                g = r.backward(g, dsTemb: dsT)
            case .attn(let a):
                g = a.backward(g)
            case .upsample(let up, let conv):
                let du = conv.backward(g)!
                g = up.backward(du)
            case .concat(_, let dhBuf):
                concatIndex -= 1
                let (sc, _, _) = skipShapes[concatIndex]
                let P = hh * ww, c1 = (c) * P, c2 = sc * P
                // skips were pushed in order; concat number i (from the end) pops push number i
                let target = skipGrads[skipGrads.count - 1 - concatIndex]
                let sg = target.ensure(n * c2)
                let dh = dhBuf.ensure(n * c1)
                let src = g
                parallelFor(reductionChunks(n)) { ch in
                    for b in chunkRange(ch, of: reductionChunks(n), n: n) {
                        (dh + b * c1).update(from: src + b * (c1 + c2), count: c1)
                        (sg + b * c2).update(from: src + b * (c1 + c2) + c1, count: c2)
                    }
                }
                g = dh
            case .normSiLU(let gn):
                g = gn.backward(g, inPlace: true)
            }
            if profile { opTimes[k] += UNet.clock() - start }
        }
        // time (and class) embedding
        let dtemb = tembAct.backward(dsT)
        if let ce = classEmbedding { ce.backward(dtemb) }
        timeEmbedding.backward(dtemb)
        let inCount = n * unetConfig.inShape.reduce(1, *)
        if unetConfig.centerInput { for i in 0..<inCount { g[i] *= 2 } }   // d(2x - 1)/dx
        return Array(UnsafeBufferPointer(start: g, count: inCount))
    }

    /// Number of output values of op k in the last forward (its successor's input shape).
    private func outputCount(_ k: Int, n: Int) -> Int {
        let (c, h, w) = shapes[k + 1]
        return n * c * h * w
    }
}
