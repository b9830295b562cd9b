// AdamW with linear learning-rate warm-up and global gradient-norm clipping, and an
// exponential moving average of the weights. Every loop runs in a fixed order in
// Float, so two runs from the same state give bit-identical weights.
import Foundation

public struct OptimizerConfig: Sendable {
    /// Peak learning rate (after warm-up).
    public var lr: Double = 2e-4
    public var beta1: Double = 0.9
    public var beta2: Double = 0.999
    public var eps: Double = 1e-8
    /// Decoupled weight decay lambda (Loshchilov & Hutter 2019): p -= lr * lambda * p.
    public var weightDecay: Double = 0
    /// Linear warm-up over this many steps (0 = none): lr_k = lr * min(1, (k + 1) / warmup).
    public var warmup: Int = 0
    /// Clip the global L2 norm of all gradients to this value (0 = no clipping).
    public var clip: Double = 1
    public init() {}
}

/// AdamW (Kingma & Ba 2015, Algorithm 1, with Loshchilov & Hutter 2019's decoupled decay).
/// `step` counts the updates done so far; update k (0-based) uses bias corrections with k + 1.
public final class AdamW {
    public let parameters: [Parameter]
    public var config: OptimizerConfig
    /// First and second moment estimates, one array per parameter.
    public var m: [[Float]]
    public var v: [[Float]]
    public private(set) var step: Int = 0

    public init(parameters: [Parameter], config: OptimizerConfig) {
        self.parameters = parameters
        self.config = config
        m = parameters.map { [Float](repeating: 0, count: $0.count) }
        v = m
    }

    /// Restores the moments and the step count (from a checkpoint).
    public func restore(m: [[Float]], v: [[Float]], step: Int) throws {
        guard m.count == parameters.count, v.count == parameters.count else {
            throw DDPMError("optimizer state has \(m.count) tensors for \(parameters.count) parameters")
        }
        for (i, p) in parameters.enumerated() where m[i].count != p.count || v[i].count != p.count {
            throw DDPMError("optimizer state for '\(p.name)' has the wrong size")
        }
        self.m = m
        self.v = v
        self.step = step
    }

    /// The learning rate of update k (0-based): linear warm-up to `lr` over `warmup` updates.
    public func learningRate(at k: Int) -> Double {
        guard config.warmup > 0 else { return config.lr }
        return config.lr * min(1, Double(k + 1) / Double(config.warmup))
    }

    /// Global L2 norm of all gradients, sqrt(sum_p sum_i g_i^2), accumulated in Double over 8
    /// fixed lanes (i mod 8) so it vectorises; the order is fixed, so the result is reproducible.
    public func gradientNorm() -> Double {
        var total = 0.0
        for p in parameters {
            p.grad.withUnsafeBufferPointer { g in
                let n = g.count, base = g.baseAddress!
                var lanes = SIMD8<Double>(repeating: 0)
                var i = 0
                while i + 8 <= n {
                    let x = SIMD8<Double>(SIMD8<Float>(UnsafeRawPointer(base + i).loadUnaligned(as: SIMD8<Float>.self)))
                    lanes += x * x
                    i += 8
                }
                var tail = 0.0
                while i < n { let x = Double(base[i]); tail += x * x; i += 1 }
                total += lanes.sum() + tail
            }
        }
        return total.squareRoot()
    }

    /// Scales all gradients by clip / norm when the norm exceeds `clip` (Pascanu et al. 2013).
    /// Returns the norm before clipping.
    @discardableResult
    public func clipGradients() -> Double {
        let norm = gradientNorm()
        guard config.clip > 0, norm > config.clip else { return norm }
        let scale = Float(config.clip / norm)
        for p in parameters {
            p.grad.withUnsafeMutableBufferPointer { g in
                for i in 0..<g.count { g[i] *= scale }
            }
        }
        return norm
    }

    /// One AdamW update with the current gradients:
    ///   m = b1 m + (1 - b1) g;  v = b2 v + (1 - b2) g^2
    ///   p -= lr_k * ( (m / (1 - b1^k)) / (sqrt(v / (1 - b2^k)) + eps) + lambda p ),  k = step + 1.
    /// With `ema`, the EMA update of the new weights (EMA.update) is done in the same pass.
    /// Elementwise, so it is split over the threads by element ranges without changing any result.
    public func update(ema: EMA? = nil) {
        let k = step + 1
        let lr = learningRate(at: step)
        let c = AdamWConstants(b1: Float(config.beta1), b2: Float(config.beta2),
                               c1: Float(1 / (1 - pow(config.beta1, Double(k)))),
                               c2: Float(1 / (1 - pow(config.beta2, Double(k)))),
                               eps: Float(config.eps), lr: Float(lr), decay: Float(lr * config.weightDecay))
        precondition(ema == nil || ema!.shadow.count == parameters.count, "AdamW.update: the EMA tracks other parameters")
        let d = ema.map { $0.beginUpdate() }
        // Pointers taken serially (the mutable accesses make the arrays' storage unique first).
        var tensors: [(w: UnsafeMutablePointer<Float>, g: UnsafePointer<Float>, m: UnsafeMutablePointer<Float>,
                       v: UnsafeMutablePointer<Float>, s: UnsafeMutablePointer<Float>?, n: Int)] = []
        for (j, p) in parameters.enumerated() {
            let w = p.value.withUnsafeMutableBufferPointer { $0.baseAddress! }
            let g = UnsafePointer(p.grad.withUnsafeMutableBufferPointer { $0.baseAddress! })
            let mm = m[j].withUnsafeMutableBufferPointer { $0.baseAddress! }
            let vv = v[j].withUnsafeMutableBufferPointer { $0.baseAddress! }
            let s = ema.map { e in e.shadow[j].withUnsafeMutableBufferPointer { $0.baseAddress! } }
            tensors.append((w, g, mm, vv, s, p.count))
        }
        let total = tensors.reduce(0) { $0 + $1.n }
        let pieces = total >= 16_384 ? BLAS.maxThreads : 1
        parallelFor(pieces) { piece in
            for t in tensors {
                let r = chunkRange(piece, of: pieces, n: t.n)
                adamWRange(t.w, t.g, t.m, t.v, r, c)
                if let s = t.s, let d { emaRange(s, UnsafePointer(t.w), r, d) }
            }
        }
        step += 1
    }
}

struct AdamWConstants {
    let b1, b2, c1, c2, eps, lr, decay: Float
}

/// The AdamW formulas of `AdamW.update` on elements `r` of one tensor.
@inline(__always) func adamWRange(_ w: UnsafeMutablePointer<Float>, _ g: UnsafePointer<Float>, _ mm: UnsafeMutablePointer<Float>,
                                  _ vv: UnsafeMutablePointer<Float>, _ r: Range<Int>, _ c: AdamWConstants) {
    let b1 = c.b1, b2 = c.b2, c1 = c.c1, c2 = c.c2, eps = c.eps, lrF = c.lr, decay = c.decay
    var i = r.lowerBound
    let n = r.upperBound
    // 8 lanes at a time: the same operations in the same order as the scalar tail below,
    // so every element gets the identical IEEE result either way.
    typealias V = SIMD8<Float>
    let b1v = V(repeating: b1), b2v = V(repeating: b2), ob1 = V(repeating: 1 - b1), ob2 = V(repeating: 1 - b2)
    let c1v = V(repeating: c1), c2v = V(repeating: c2), epsv = V(repeating: eps)
    let lrv = V(repeating: lrF), decv = V(repeating: decay)
    while i + 8 <= n {
        let gi = UnsafeRawPointer(g + i).loadUnaligned(as: V.self)
        let mi = b1v * UnsafeRawPointer(mm + i).loadUnaligned(as: V.self) + ob1 * gi
        let vi = b2v * UnsafeRawPointer(vv + i).loadUnaligned(as: V.self) + ob2 * gi * gi
        let wi = UnsafeRawPointer(w + i).loadUnaligned(as: V.self)
        let upd = lrv * ((mi * c1v) / ((vi * c2v).squareRoot() + epsv)) + decv * wi
        UnsafeMutableRawPointer(mm + i).storeBytes(of: mi, as: V.self)
        UnsafeMutableRawPointer(vv + i).storeBytes(of: vi, as: V.self)
        UnsafeMutableRawPointer(w + i).storeBytes(of: wi - upd, as: V.self)
        i += 8
    }
    while i < n {
        defer { i += 1 }
        let gi = g[i]
        let mi = b1 * mm[i] + (1 - b1) * gi
        let vi = b2 * vv[i] + (1 - b2) * gi * gi
        mm[i] = mi
        vv[i] = vi
        w[i] = w[i] - (lrF * ((mi * c1) / ((vi * c2).squareRoot() + eps)) + decay * w[i])
    }
}

/// ema = d ema + (1 - d) p on elements `r` (EMA.update).
@inline(__always) func emaRange(_ s: UnsafeMutablePointer<Float>, _ w: UnsafePointer<Float>, _ r: Range<Int>, _ d: Float) {
    for i in r { s[i] = d * s[i] + (1 - d) * w[i] }
}

/// Exponential moving average of the weights (Ho et al. 2020 sample with an EMA of decay 0.9999).
/// The effective decay of update n (0-based) is min(decay, (1 + n) / (10 + n)) -- the warm-up of
/// TensorFlow's ExponentialMovingAverage with num_updates -- so a short run's average is not
/// dominated by the initial weights; after ~10^5 updates it equals `decay`. decay = 0 keeps a copy.
public final class EMA {
    public let decay: Double
    public var shadow: [[Float]]
    public private(set) var updates: Int = 0

    public init(parameters: [Parameter], decay: Double) {
        self.decay = decay
        shadow = parameters.map { $0.value }
    }

    public func restore(shadow: [[Float]], updates: Int) throws {
        guard shadow.count == self.shadow.count, zip(shadow, self.shadow).allSatisfy({ $0.count == $1.count }) else {
            throw DDPMError("EMA state does not match the parameters")
        }
        self.shadow = shadow
        self.updates = updates
    }

    /// The decay used by update n.
    public func effectiveDecay(at n: Int) -> Double { min(decay, Double(1 + n) / Double(10 + n)) }

    /// ema = d ema + (1 - d) p.
    public func update(_ parameters: [Parameter]) {
        let d = beginUpdate()
        for (j, p) in parameters.enumerated() {
            p.value.withUnsafeBufferPointer { w in
            shadow[j].withUnsafeMutableBufferPointer { s in
                emaRange(s.baseAddress!, w.baseAddress!, 0..<s.count, d)
            }}
        }
    }

    /// The decay d of this update, counting it as done (for `AdamW.update(ema:)`, which applies it).
    func beginUpdate() -> Float {
        let d = Float(effectiveDecay(at: updates))
        updates += 1
        return d
    }
}
