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
    /// The parameters it updates: the store's flat values, from its flat gradients.
    public let store: ParameterStore
    public var config: OptimizerConfig
    /// First and second moment estimates, flat buffers laid out like `store` (slot j's
    /// moments at `store.slots[j].range`); zero at the start, freed with the optimizer.
    public let m: UnsafeMutableBufferPointer<Float>
    public let v: UnsafeMutableBufferPointer<Float>
    public private(set) var step: Int = 0

    public init(store: ParameterStore, config: OptimizerConfig) {
        self.store = store
        self.config = config
        m = ParameterStore.allocate(store.count)
        v = ParameterStore.allocate(store.count)
    }

    deinit {
        m.baseAddress!.deallocate()
        v.baseAddress!.deallocate()
    }

    /// Restores the step count (from a checkpoint, whose moments are read into `m` and `v`).
    public func restore(step: Int) {
        precondition(step >= 0, "AdamW.restore: negative step \(step)")
        self.step = step
    }

    /// The learning rate of update k (0-based): linear warm-up to `lr` over `warmup` updates.
    public func learningRate(at k: Int) -> Double {
        guard config.warmup > 0 else { return config.lr }
        return config.lr * min(1, Double(k + 1) / Double(config.warmup))
    }

    /// Global L2 norm of all gradients, sqrt(sum_p sum_i g_i^2), accumulated in Double over 8
    /// fixed lanes (i mod 8) so it vectorises; the order is fixed, so the result is reproducible.
    /// One pass over the flat gradient that keeps the summation order of per-tensor arrays:
    /// within each slot, lanes by the index from the slot's start plus a scalar tail, then the
    /// slot totals added in order (a single lane set over the whole buffer would round
    /// differently, and the clipping factor and every result after it would change).
    public func gradientNorm() -> Double {
        let base = UnsafePointer(store.grads.baseAddress!)
        var total = 0.0
        for slot in store.slots {
            var lanes = SIMD8<Double>(repeating: 0)
            var i = slot.offset
            let n = slot.offset + slot.count
            while i + 8 <= n {
                let x = SIMD8<Double>(SIMD8<Float>(UnsafeRawPointer(base + i).loadUnaligned(as: SIMD8<Float>.self)))
                lanes += x * x
                i += 8
            }
            var tail = 0.0
            while i < n { let x = Double(base[i]); tail += x * x; i += 1 }
            total += lanes.sum() + tail
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
        let g = store.grads
        for i in 0..<g.count { g[i] *= scale }
        return norm
    }

    /// One AdamW update with the current gradients:
    ///   m = b1 m + (1 - b1) g;  v = b2 v + (1 - b2) g^2
    ///   p -= lr_k * ( (m / (1 - b1^k)) / (sqrt(v / (1 - b2^k)) + eps) + lambda p ),  k = step + 1.
    /// With `ema`, the EMA update of the new weights (EMA.update) is done in the same pass.
    /// Elementwise, so it is split over the threads by element ranges of the flat buffers without
    /// changing any result (the vector and scalar paths of `adamWRange` round identically).
    public func update(ema: EMA? = nil) {
        let k = step + 1
        let lr = learningRate(at: step)
        let c = AdamWConstants(b1: Float(config.beta1), b2: Float(config.beta2),
                               c1: Float(1 / (1 - pow(config.beta1, Double(k)))),
                               c2: Float(1 / (1 - pow(config.beta2, Double(k)))),
                               eps: Float(config.eps), lr: Float(lr), decay: Float(lr * config.weightDecay))
        precondition(ema == nil || ema!.store === store, "AdamW.update: the EMA tracks other parameters")
        let d = ema.map { $0.beginUpdate() }
        // The store's, the moments' and the shadow's memory never moves: plain pointers.
        let w = store.values.baseAddress!, g = UnsafePointer(store.grads.baseAddress!)
        let mm = m.baseAddress!, vv = v.baseAddress!, s = ema?.shadow.baseAddress
        let total = store.count
        let pieces = total >= 16_384 ? BLAS.maxThreads : 1
        parallelFor(pieces) { piece in
            let r = chunkRange(piece, of: pieces, n: total)
            // Blocks of 4096 elements: the EMA reads the new weights while they are in cache.
            var lo = r.lowerBound
            while lo < r.upperBound {
                let b = lo..<min(lo + 4096, r.upperBound)
                adamWRange(w, g, mm, vv, b, c)
                if let s, let d { emaRange(s, UnsafePointer(w), b, d) }
                lo = b.upperBound
            }
        }
        step += 1
    }
}

struct AdamWConstants {
    let b1, b2, c1, c2, eps, lr, decay: Float
}

/// The AdamW formulas of `AdamW.update` on elements `r` of the flat buffers.
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
    /// The parameters it averages.
    public let store: ParameterStore
    /// The average, a flat buffer laid out like `store` (initially a copy of its values);
    /// freed with the EMA.
    public let shadow: UnsafeMutableBufferPointer<Float>
    public private(set) var updates: Int = 0

    public init(store: ParameterStore, decay: Double) {
        self.decay = decay
        self.store = store
        shadow = ParameterStore.allocate(store.count)
        _ = shadow.update(fromContentsOf: store.values)
    }

    deinit { shadow.baseAddress!.deallocate() }

    /// Restores the update count (from a checkpoint, whose average is read into `shadow`).
    public func restore(updates: Int) {
        self.updates = updates
    }

    /// The decay used by update n.
    public func effectiveDecay(at n: Int) -> Double { min(decay, Double(1 + n) / Double(10 + n)) }

    /// ema = d ema + (1 - d) p, for the store's current values.
    public func update() {
        let d = beginUpdate()
        emaRange(shadow.baseAddress!, UnsafePointer(store.values.baseAddress!), 0..<store.count, d)
    }

    /// The decay d of this update, counting it as done (for `AdamW.update(ema:)`, which applies it).
    func beginUpdate() -> Float {
        let d = Float(effectiveDecay(at: updates))
        updates += 1
        return d
    }
}
