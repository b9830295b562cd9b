// Fast standard normals for large tensors (the eps of `noise`), counter-based
// so that every value is a pure function of (seed, purpose, index, position).
//
// Generator: the same Philox4x32-10 blocks as RandomStream (key from
// (seed, purpose), counter = (block lo, block hi, index lo, index hi)), computed
// eight blocks at a time in SIMD8<UInt32> lanes. Each block's four 32-bit words
// give two uniform pairs; each pair gives two normals by Box-Muller
// (Box & Muller 1958): z0 = r cos phi, z1 = r sin phi, r = sqrt(-2 ln u1), phi uniform
// on the circle (built from the second word as a quarter-circle angle and two signs).
// log, sin and cos are evaluated in Float with short polynomials accurate to float
// rounding (see below; the loop over lanes is vectorised), so this is NOT bit-identical to
// RandomStream.nextNormal (which works in Double); it is a separate, documented
// generator with the same reproducibility property.
//
// Layout: positions 32j ..< 32j+32 of stream `index` come from blocks 8j ..< 8j+8.
// With words (w0, w1, w2, w3) of those blocks as SIMD8 vectors over the 8 blocks:
//   positions 32j +  0 ..<  8: r(w0) cos phi(w1)
//   positions 32j +  8 ..< 16: r(w0) sin phi(w1)
//   positions 32j + 16 ..< 24: r(w2) cos phi(w3)
//   positions 32j + 24 ..< 32: r(w2) sin phi(w3)
// r(w) = sqrt(-2 ln u), u = (k + 1/2) 2^-23 with k the top 23 bits of w, in (0, 1), so
// |z| <= sqrt(-2 ln 2^-24) = 5.77 (a tail of probability 8e-9 per value is cut).
// phi(w): sign of sin = bit 31, sign of cos = bit 30, and the angle within the quadrant
// theta = (k' + 1/2) 2^-21 pi/2 from bits 29 .. 9 (k'): sin phi = +-sin theta,
// cos phi = +-cos theta. That is phi uniform on the circle in 2^23 steps, like 2 pi u.

/// Counter-based normal generator: `fill(index:from:count:into:)` writes the
/// normals at positions `from ..< from+count` of stream `index`.
public struct NormalGenerator: Sendable {
    public let key: (UInt32, UInt32)

    public init(seed: UInt64, purpose: RandomPurpose) {
        // The same key derivation as RandomStream.
        let k = splitmix64(seed ^ splitmix64(purpose.rawValue))
        key = (UInt32(truncatingIfNeeded: k), UInt32(truncatingIfNeeded: k >> 32))
    }

    /// Normals per SIMD step (8 Philox blocks).
    public static let chunk = 32

    /// Writes normals for positions `from ..< from + count` of stream `index`.
    public func fill(index: UInt64, from: Int, count: Int, into out: UnsafeMutablePointer<Float>) {
        precondition(from >= 0 && count >= 0)
        var pos = from
        var written = 0
        var tmp = (SIMD8<Float>(), SIMD8<Float>(), SIMD8<Float>(), SIMD8<Float>())
        // Unaligned head or short tail: generate the whole chunk, copy the part needed.
        func partial(_ p: Int, _ n: Int) {
            withUnsafeMutableBytes(of: &tmp) { raw in
                let f = raw.baseAddress!.assumingMemoryBound(to: Float.self)
                generate(index: index, firstChunk: p / 32, chunks: 1, into: f)
                (out + written).update(from: f + p % 32, count: n)
            }
        }
        if pos % 32 != 0 {
            let n = min(32 - pos % 32, count)
            partial(pos, n)
            pos += n; written += n
        }
        let whole = (count - written) / 32
        if whole > 0 {
            generate(index: index, firstChunk: pos / 32, chunks: whole, into: out + written)
            pos += 32 * whole; written += 32 * whole
        }
        if written < count { partial(pos, count - written) }
    }

    /// Chunks `firstChunk ..< firstChunk + chunks` (32 normals each) of stream `index`:
    /// first the Philox words into `out`, then Box-Muller in place over the whole run.
    public func generate(index: UInt64, firstChunk: Int, chunks: Int, into out: UnsafeMutablePointer<Float>) {
        let raw = UnsafeMutableRawPointer(out)
        // The Philox key schedule k_r = k + r (0x9E3779B9, 0xBB67AE85) is the same for every
        // block: broadcast it once rather than in every round.
        withUnsafeTemporaryAllocation(of: SIMD8<UInt32>.self, capacity: 20) { keys in
            var k0 = key.0, k1 = key.1
            for r in 0..<10 {
                keys[2 * r] = SIMD8(repeating: k0)
                keys[2 * r + 1] = SIMD8(repeating: k1)
                k0 = k0 &+ 0x9E37_79B9
                k1 = k1 &+ 0xBB67_AE85
            }
            for j in 0..<chunks {
                let (w0, w1, w2, w3) = philox8(index: index, firstBlock: UInt64(firstChunk + j) &* 8, keys: UnsafePointer(keys.baseAddress!))
                let o = 128 * j
                raw.storeBytes(of: w0, toByteOffset: o, as: SIMD8<UInt32>.self)
                raw.storeBytes(of: w1, toByteOffset: o + 32, as: SIMD8<UInt32>.self)
                raw.storeBytes(of: w2, toByteOffset: o + 64, as: SIMD8<UInt32>.self)
                raw.storeBytes(of: w3, toByteOffset: o + 96, as: SIMD8<UInt32>.self)
            }
        }
        // Pairs (w0, w1) and (w2, w3) of each block: lanes i and i + 8 of each 16-word half-chunk.
        // Raw (untyped) loads and stores: the buffer holds words first, then floats.
        for h in 0..<(2 * chunks) {
            let p = raw + 64 * h
            for i in 0..<8 {
                let (c, s) = boxMuller(p.load(fromByteOffset: 4 * i, as: UInt32.self),
                                       p.load(fromByteOffset: 4 * i + 32, as: UInt32.self))
                p.storeBytes(of: c, toByteOffset: 4 * i, as: Float.self)
                p.storeBytes(of: s, toByteOffset: 4 * i + 32, as: Float.self)
            }
        }
    }

    /// Philox4x32-10 (Salmon et al. 2011) on blocks firstBlock ..< firstBlock + 8 of stream
    /// `index` (counter (block lo, block hi, index lo, index hi)), as philox4x32() in Philox.swift,
    /// 8 lanes wide; `keys` holds the 10 round keys (k0, k1), broadcast. Returns the four output
    /// words of the 8 blocks.
    @inline(__always)
    func philox8(index: UInt64, firstBlock block: UInt64, keys: UnsafePointer<SIMD8<UInt32>>)
        -> (SIMD8<UInt32>, SIMD8<UInt32>, SIMD8<UInt32>, SIMD8<UInt32>) {
        let lanes = SIMD8<UInt32>(0, 1, 2, 3, 4, 5, 6, 7)
        // block is a multiple of 8, so lo + 7 never carries into the high word.
        let blockHi = UInt32(truncatingIfNeeded: block >> 32)
        let indexLo = UInt32(truncatingIfNeeded: index), indexHi = UInt32(truncatingIfNeeded: index >> 32)
        // Rounds 0 and 1 with the lane-independent words as scalars (the same arithmetic):
        // only c0 differs between lanes at first, so one product per round is a scalar.
        let x0 = SIMD8<UInt32>(repeating: UInt32(truncatingIfNeeded: block)) &+ lanes
        let (a0, b0) = mulhilo8(0xD251_1F53, x0)                      // round 0: c0 varies
        let (a1, b1) = mulhilo(0xCD9E_8D57, indexLo)                  //          c2 = index lo
        let r0c0 = a1 ^ blockHi ^ key.0                                // uniform
        let r0c2 = a0 ^ SIMD8(repeating: indexHi ^ key.1)
        let k0 = key.0 &+ 0x9E37_79B9, k1 = key.1 &+ 0xBB67_AE85
        let (a2, b2) = mulhilo(0xD251_1F53, r0c0)                     // round 1: c0 uniform
        let (a3, b3) = mulhilo8(0xCD9E_8D57, r0c2)
        var c0 = a3 ^ SIMD8(repeating: b1 ^ k0)                        // c1 after round 0 = b1
        var c1 = b3
        var c2 = b0 ^ SIMD8(repeating: a2 ^ k1)                        // c3 after round 0 = b0
        var c3 = SIMD8<UInt32>(repeating: b2)
        for r in 2..<10 {
            let (hi0, lo0) = mulhilo8(0xD251_1F53, c0)
            let (hi1, lo1) = mulhilo8(0xCD9E_8D57, c2)
            let n0 = hi1 ^ c1 ^ keys[2 * r]
            let n2 = hi0 ^ c3 ^ keys[2 * r + 1]
            c0 = n0; c1 = lo1; c2 = n2; c3 = lo0
        }
        return (c0, c1, c2, c3)
    }
}

/// 32x32 -> 64-bit products of 8 lanes: (high words, low words).
/// Written with per-lane loops and evenHalf/oddHalf, which the optimiser turns into
/// pmuludq and shuffles (the generic SIMD conversion initialisers are not inlined).
@inline(__always)
func mulhilo8(_ m: UInt32, _ c: SIMD8<UInt32>) -> (SIMD8<UInt32>, SIMD8<UInt32>) {
    var wide = SIMD8<UInt64>()
    for i in 0..<8 { wide[i] = UInt64(c[i]) }
    let p = unsafeBitCast(wide &* SIMD8<UInt64>(repeating: UInt64(m)), to: SIMD16<UInt32>.self)
    return (p.oddHalf, p.evenHalf)   // little-endian: odd 32-bit halves are the high words
}

// The float part is written as scalar, branch-free code on one pair of words; the
// loop over lanes in `generate` is vectorised by the optimiser (SIMD8<Float>
// operators were not: they came out as scalar code with branches).

/// Box-Muller on one pair of words: (r cos phi, r sin phi), r = sqrt(-2 ln u1), phi from w2.
@inline(__always)
func boxMuller(_ w1: UInt32, _ w2: UInt32) -> (Float, Float) {
    // .magnitude (a no-op here, the argument is > 0) lets sqrt compile to sqrtps: without it
    // Swift on Linux calls sqrtf for errno on negative input, which blocks vectorisation.
    let r = (-2 * logUnit(uniform23(w1))).magnitude.squareRoot()
    let (s, c) = sinCosAngle(w2)
    return (r * c, r * s)
}

/// Uniform in (0, 1) from the top 23 bits k of a word: u = (k + 1/2) 2^-23.
/// Built exactly: the float 1 + k 2^-23 from its bits, minus (1 - 2^-24) (Sterbenz: exact).
@inline(__always)
func uniform23(_ w: UInt32) -> Float {
    Float(bitPattern: (w >> 9) | 0x3F80_0000) - (1 - 1.0 / 16_777_216)
}

/// Natural log of a positive normal float (here u in (0, 1)).
/// x = m 2^e with m in [sqrt(1/2), sqrt(2)); ln m = 2 atanh(s), s = (m - 1)/(m + 1),
/// |s| <= 0.1716; the series 2(s + s^3/3 + ... + s^9/9) leaves a relative error
/// below 2 s^10/11 < 5e-9, under Float's 6e-8 rounding.
@inline(__always)
func logUnit(_ x: Float) -> Float {
    let bits = Int32(bitPattern: x.bitPattern)
    let mbits = (bits & 0x007F_FFFF) | 0x3F80_0000                  // m in [1, 2)
    // m >= sqrt(2): halve m (exponent field 127 -> 126) and add one to e.
    let big = ((mbits &- 0x3FB5_04F3) >> 31) &+ 1                   // 1 if m >= 1.41421354
    let e = (bits >> 23) &- 127 &+ big
    let m = Float(bitPattern: UInt32(bitPattern: mbits &- (big << 23)))
    let s = (m - 1) / (m + 1)
    let s2 = s * s
    var p: Float = 1.0 / 9
    p = p * s2 + 1.0 / 7
    p = p * s2 + 1.0 / 5
    p = p * s2 + 1.0 / 3
    p = p * s2 + 1
    // Float(ln 2) is within 2^-25 relative: e ln2 (|e| <= 24) stays within Float rounding.
    return 2 * s * p + Float(e) * 0.693_147_18
}

/// (sin phi, cos phi) for an angle phi uniform on the circle, from one word w:
/// bits 31 and 30 are the signs of sin and cos, bits 29 .. 9 (k, 21 bits) the angle
/// theta = (k + 1/2) 2^-21 pi/2 in (0, pi/2), so phi = theta reflected into the quadrant
/// the signs pick. With a = theta - pi/4 = (k - 2^20 + 1/2) 2^-21 pi/2 in (-pi/4, pi/4):
/// sin theta = (cos a + sin a)/sqrt 2, cos theta = (cos a - sin a)/sqrt 2, and Taylor series
/// to a^9 (sin) and a^10 (cos): the first omitted terms are below (pi/4)^11/11! = 1.8e-9
/// and (pi/4)^12/12! = 1.2e-10, under Float's rounding.
@inline(__always)
func sinCosAngle(_ w: UInt32) -> (Float, Float) {
    let k = Int32(bitPattern: (w >> 9) & 0x1F_FFFF)
    let a = (Float(k &- (1 << 20)) + 0.5) * (Float.pi / 2 / 2_097_152)   // exact integer, one rounding
    let a2 = a * a
    // sin: a (1 - a2/3! + a2^2/5! - ...), cos: 1 - a2/2! + a2^2/4! - ...
    var sp: Float = 1.0 / 362_880
    sp = sp * a2 - 1.0 / 5040
    sp = sp * a2 + 1.0 / 120
    sp = sp * a2 - 1.0 / 6
    let sn = a + a * a2 * sp
    var cp: Float = -1.0 / 3_628_800
    cp = cp * a2 + 1.0 / 40320
    cp = cp * a2 - 1.0 / 720
    cp = cp * a2 + 1.0 / 24
    cp = cp * a2 - 0.5
    let cs = 1 + a2 * cp
    let sinTheta = (cs + sn) * 0.707_106_77, cosTheta = (cs - sn) * 0.707_106_77
    return (Float(bitPattern: sinTheta.bitPattern ^ (w & 0x8000_0000)),
            Float(bitPattern: cosTheta.bitPattern ^ ((w << 1) & 0x8000_0000)))
}
