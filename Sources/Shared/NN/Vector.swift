// SIMD elementwise kernels: a vectorised exp (Cephes expf polynomial, ~1-2 ulp on
// [-87, 88]) and the SiLU forward/backward loops built on it. libm's expf is a
// scalar call per element and dominated the GroupNorm+SiLU passes.
import Foundation

typealias F8 = SIMD8<Float>

@inline(__always) func load8(_ p: UnsafePointer<Float>) -> F8 {
    UnsafeRawPointer(p).loadUnaligned(as: F8.self)
}
@inline(__always) func store8(_ v: F8, _ p: UnsafeMutablePointer<Float>) {
    UnsafeMutableRawPointer(p).storeBytes(of: v, as: F8.self)
}

/// exp(x) for 8 lanes: x = n ln2 + r (Cody-Waite split of ln2), exp(r) by the Cephes
/// degree-6 polynomial, 2^n built in the exponent bits. Inputs clamped to [-87, 88].
@inline(__always) func vexp(_ xIn: F8) -> F8 {
    var x = xIn   // (masked replace compiles to compare+blend; pointwiseMin/Max did not)
    x.replace(with: 88, where: x .> 88)
    x.replace(with: -87, where: x .< -87)
    // n = round(x log2 e) with the 1.5 * 2^23 trick: the low mantissa bits of
    // t = x log2 e + magic hold n as an integer (no float->int conversion needed).
    let magic = F8(repeating: 12_582_912)
    let t = x * 1.442_695_040_888_963_4 + magic
    let fx = t - magic
    x = x - fx * 0.693_359_375 + fx * 2.121_944_400_5e-4
    let z = x * x
    var y: F8 = F8(repeating: 1.987_569_150_0e-4)
    y = y * x + 1.398_199_950_7e-3
    y = y * x + 8.333_451_907_3e-3
    y = y * x + 4.166_579_589_4e-2
    y = y * x + 1.666_666_545_9e-1
    y = y * x + 5.000_000_120_1e-1
    y = y * z + x + 1
    let n = unsafeBitCast(t, to: SIMD8<Int32>.self) &- SIMD8<Int32>(repeating: 0x4B40_0000) &+ SIMD8<Int32>(repeating: 127)
    let pow2 = unsafeBitCast(n &<< 23, to: F8.self)
    return y * pow2
}

#if AVX512
typealias F16 = SIMD16<Float>
@inline(__always) func load16(_ p: UnsafePointer<Float>) -> F16 {
    UnsafeRawPointer(p).loadUnaligned(as: F16.self)
}
@inline(__always) func store16(_ v: F16, _ p: UnsafeMutablePointer<Float>) {
    UnsafeMutableRawPointer(p).storeBytes(of: v, as: F16.self)
}

/// `vexp` on 16 lanes (AVX-512 builds): the same operations in the same order, so
/// every lane equals what `vexp` gives for it. `@_transparent` (inlined before the
/// optimiser runs): with `@inline(__always)` the compiler still emitted it as a call
/// per 16 values in the SiLU loops, its argument split into four 128-bit registers.
@_transparent func vexp(_ xIn: F16) -> F16 {
    var x = xIn
    x.replace(with: 88, where: x .> 88)
    x.replace(with: -87, where: x .< -87)
    let magic = F16(repeating: 12_582_912)
    let t = x * 1.442_695_040_888_963_4 + magic
    let fx = t - magic
    x = x - fx * 0.693_359_375 + fx * 2.121_944_400_5e-4
    let z = x * x
    var y: F16 = F16(repeating: 1.987_569_150_0e-4)
    y = y * x + 1.398_199_950_7e-3
    y = y * x + 8.333_451_907_3e-3
    y = y * x + 4.166_579_589_4e-2
    y = y * x + 1.666_666_545_9e-1
    y = y * x + 5.000_000_120_1e-1
    y = y * z + x + 1
    let n = unsafeBitCast(t, to: SIMD16<Int32>.self) &- SIMD16<Int32>(repeating: 0x4B40_0000) &+ SIMD16<Int32>(repeating: 127)
    let pow2 = unsafeBitCast(n &<< 23, to: F16.self)
    return y * pow2
}
#endif

/// y[i] = SiLU(a x[i] + b) for i < n.
@inline(__always) func siluAffine(_ x: UnsafePointer<Float>, _ y: UnsafeMutablePointer<Float>, _ n: Int, _ a: Float, _ b: Float) {
    var i = 0
    #if AVX512   // 16 lanes first; elementwise, so the results are identical
    let wa = F16(repeating: a), wb = F16(repeating: b)
    while i + 16 <= n {
        let v = load16(x + i) * wa + wb
        store16(v / (1 + vexp(-v)), y + i)
        i += 16
    }
    #endif
    let va = F8(repeating: a), vb = F8(repeating: b)
    while i + 8 <= n {
        let v = load8(x + i) * va + vb
        store8(v / (1 + vexp(-v)), y + i)
        i += 8
    }
    while i < n { y[i] = silu(a * x[i] + b); i += 1 }
}

/// dx[i] = dy[i] SiLU'(a x[i] + b), SiLU'(v) = s (1 + v (1 - s)), s = sigmoid(v).
@inline(__always) func siluGradAffine(_ x: UnsafePointer<Float>, _ dy: UnsafePointer<Float>, _ dx: UnsafeMutablePointer<Float>,
                                      _ n: Int, _ a: Float, _ b: Float) {
    var i = 0
    #if AVX512
    let wa = F16(repeating: a), wb = F16(repeating: b)
    while i + 16 <= n {
        let v = load16(x + i) * wa + wb
        let s = 1 / (1 + vexp(-v))
        store16(load16(dy + i) * s * (1 + v * (1 - s)), dx + i)
        i += 16
    }
    #endif
    let va = F8(repeating: a), vb = F8(repeating: b)
    while i + 8 <= n {
        let v = load8(x + i) * va + vb
        let s = 1 / (1 + vexp(-v))
        store8(load8(dy + i) * s * (1 + v * (1 - s)), dx + i)
        i += 8
    }
    while i < n { dx[i] = dy[i] * siluGrad(a * x[i] + b); i += 1 }
}

/// Sum of n floats with 8 lane accumulators (fixed order: deterministic).
@inline(__always) func vsum(_ x: UnsafePointer<Float>, _ n: Int) -> Float {
    var acc = F8(repeating: 0)
    var i = 0
    while i + 8 <= n { acc += load8(x + i); i += 8 }
    var s = acc.sum()
    while i < n { s += x[i]; i += 1 }
    return s
}


/// y[i] = a x[i] + b z[i] + c (z may alias y).
@inline(__always) func vaxpbyc(_ x: UnsafePointer<Float>, _ a: Float, _ z: UnsafePointer<Float>, _ b: Float, _ c: Float,
                               _ y: UnsafeMutablePointer<Float>, _ n: Int) {
    var i = 0
    #if AVX512
    let wa = F16(repeating: a), wb = F16(repeating: b), wc = F16(repeating: c)
    while i + 16 <= n { store16(load16(x + i) * wa + load16(z + i) * wb + wc, y + i); i += 16 }
    #endif
    let va = F8(repeating: a), vb = F8(repeating: b), vc = F8(repeating: c)
    while i + 8 <= n { store8(load8(x + i) * va + load8(z + i) * vb + vc, y + i); i += 8 }
    while i < n { y[i] = a * x[i] + b * z[i] + c; i += 1 }
}

// The GroupNorm kernels below accumulate into two 8-lane partial sums fed in the same
// order on AVX2 and AVX-512 builds (16 values per step: low half, high half), so the
// results do not depend on the vector width; two chains also halve the add latency.

/// One pass over n values with a shift k: returns (sum (x - k), sum (x - k)^2), the
/// shifted-data form of the one-pass variance (with k a value of the same group,
/// the squares do not cancel catastrophically when |mean| >> std, as sum x^2 would).
@inline(__always) func vshiftedSums(_ x: UnsafePointer<Float>, _ n: Int, _ k: Float) -> (Float, Float) {
    var s0 = F8(repeating: 0), s1 = s0, q0 = s0, q1 = s0
    var i = 0
    #if AVX512
    let wk = F16(repeating: k)
    while i + 16 <= n {
        let d = load16(x + i) - wk, dd = d * d
        s0 += d.lowHalf; s1 += d.highHalf; q0 += dd.lowHalf; q1 += dd.highHalf
        i += 16
    }
    #endif
    let vk = F8(repeating: k)
    while i + 16 <= n {
        let d0 = load8(x + i) - vk, d1 = load8(x + i + 8) - vk
        s0 += d0; s1 += d1; q0 += d0 * d0; q1 += d1 * d1
        i += 16
    }
    if i + 8 <= n { let d = load8(x + i) - vk; s0 += d; q0 += d * d; i += 8 }
    var s = (s0 + s1).sum(), q = (q0 + q1).sum()
    while i < n { let d = x[i] - k; s += d; q += d * d; i += 1 }
    return (s, q)
}

/// Returns (sum dy[i], sum dy[i] x[i]): the dbeta and dgamma sums of GroupNorm's backward.
@inline(__always) func vsumAndDot(_ dy: UnsafePointer<Float>, _ x: UnsafePointer<Float>, _ n: Int) -> (Float, Float) {
    var s0 = F8(repeating: 0), s1 = s0, p0 = s0, p1 = s0
    var i = 0
    #if AVX512
    while i + 16 <= n {
        let g = load16(dy + i), gx = g * load16(x + i)
        s0 += g.lowHalf; s1 += g.highHalf; p0 += gx.lowHalf; p1 += gx.highHalf
        i += 16
    }
    #endif
    while i + 16 <= n {
        let g0 = load8(dy + i), g1 = load8(dy + i + 8)
        s0 += g0; s1 += g1; p0 += g0 * load8(x + i); p1 += g1 * load8(x + i + 8)
        i += 16
    }
    if i + 8 <= n { let g = load8(dy + i); s0 += g; p0 += g * load8(x + i); i += 8 }
    var s = (s0 + s1).sum(), p = (p0 + p1).sum()
    while i < n { s += dy[i]; p += dy[i] * x[i]; i += 1 }
    return (s, p)
}

/// `siluGradAffine` (dx[i] = dy[i] SiLU'(a x[i] + b)) fused with `vsumAndDot(dx, x)`:
/// returns (sum dx[i], sum dx[i] x[i]) from the same pass.
@inline(__always) func siluGradAffineSums(_ x: UnsafePointer<Float>, _ dy: UnsafePointer<Float>, _ dx: UnsafeMutablePointer<Float>,
                                          _ n: Int, _ a: Float, _ b: Float) -> (Float, Float) {
    var s0 = F8(repeating: 0), s1 = s0, p0 = s0, p1 = s0
    var i = 0
    #if AVX512
    let wa = F16(repeating: a), wb = F16(repeating: b)
    while i + 16 <= n {
        let xv = load16(x + i)
        let v = xv * wa + wb
        let s = 1 / (1 + vexp(-v))
        let g = load16(dy + i) * s * (1 + v * (1 - s)), gx = g * xv
        store16(g, dx + i)
        s0 += g.lowHalf; s1 += g.highHalf; p0 += gx.lowHalf; p1 += gx.highHalf
        i += 16
    }
    #endif
    let va = F8(repeating: a), vb = F8(repeating: b)
    while i + 8 <= n {
        let xv = load8(x + i)
        let v = xv * va + vb
        let s = 1 / (1 + vexp(-v))
        let g = load8(dy + i) * s * (1 + v * (1 - s))
        store8(g, dx + i)
        // 16-value steps alternate the two accumulators as the AVX-512 loop does
        if (i / 8) % 2 == 0 { s0 += g; p0 += g * xv } else { s1 += g; p1 += g * xv }
        i += 8
    }
    var s = (s0 + s1).sum(), p = (p0 + p1).sum()
    while i < n {
        let g = dy[i] * siluGrad(a * x[i] + b)
        dx[i] = g; s += g; p += g * x[i]
        i += 1
    }
    return (s, p)
}

/// y[i] = (a x[i] + b z[i] + c) + r[i] (z and r may alias y): `vaxpbyc` with a residual
/// gradient added in the same write, rounded exactly as the two separate passes were.
@inline(__always) func vaxpbycr(_ x: UnsafePointer<Float>, _ a: Float, _ z: UnsafePointer<Float>, _ b: Float, _ c: Float,
                                _ r: UnsafePointer<Float>, _ y: UnsafeMutablePointer<Float>, _ n: Int) {
    var i = 0
    #if AVX512
    let wa = F16(repeating: a), wb = F16(repeating: b), wc = F16(repeating: c)
    while i + 16 <= n { store16((load16(x + i) * wa + load16(z + i) * wb + wc) + load16(r + i), y + i); i += 16 }
    #endif
    let va = F8(repeating: a), vb = F8(repeating: b), vc = F8(repeating: c)
    while i + 8 <= n { store8((load8(x + i) * va + load8(z + i) * vb + vc) + load8(r + i), y + i); i += 8 }
    while i < n { y[i] = (a * x[i] + b * z[i] + c) + r[i]; i += 1 }
}

/// In-place softmax of one row of n values: r = exp(r - max r) / sum.
@inline(__always) func softmaxRow(_ r: UnsafeMutablePointer<Float>, _ n: Int) {
    var m = r[0]
    for j in 1..<n { m = max(m, r[j]) }
    let vm = F8(repeating: m)
    var acc = F8(repeating: 0)
    var j = 0
    while j + 8 <= n {
        let e = vexp(load8(r + j) - vm)
        store8(e, r + j)
        acc += e
        j += 8
    }
    var sum = acc.sum()
    while j < n { let e = expf(r[j] - m); r[j] = e; sum += e; j += 1 }
    let inv = 1 / sum
    for k in 0..<n { r[k] *= inv }
}
