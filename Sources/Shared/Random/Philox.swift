// Counter-based random numbers: Philox4x32-10 (Salmon et al., "Parallel random
// numbers: as easy as 1, 2, 3", SC 2011). A draw is a pure function of
// (seed, stream, index, position), so results do not depend on how work is
// split into frames, batches or threads.

/// What the random numbers are for; each purpose gets an independent stream.
public enum RandomPurpose: UInt64, Sendable {
    case noise = 1          // eps of the forward process (`noise`)
    case timestep = 2       // t drawn per sample (`noise --random-t`, training)
    case sampler = 3        // x_T and the per-step z of the reverse process
    case dropout = 4        // dropout masks
    case shuffle = 5        // data order in training
    case labelDrop = 6      // conditioning dropout
    case toy = 7            // toy data sets
    case init_ = 8          // weight initialisation
    case corrector = 9      // Langevin corrector noise
    case inpaint = 10       // RePaint: the known region's q(x_t | x_0) noise and the resampling jumps
}

@inline(__always)
func mulhilo(_ a: UInt32, _ b: UInt32) -> (hi: UInt32, lo: UInt32) {
    let p = UInt64(a) &* UInt64(b)
    return (UInt32(truncatingIfNeeded: p >> 32), UInt32(truncatingIfNeeded: p))
}

/// One Philox4x32 block: 10 rounds on a 128-bit counter under a 64-bit key.
@inline(__always)
public func philox4x32(_ c: (UInt32, UInt32, UInt32, UInt32), key: (UInt32, UInt32)) -> (UInt32, UInt32, UInt32, UInt32) {
    var (c0, c1, c2, c3) = c
    var (k0, k1) = key
    for _ in 0..<10 {
        let (hi0, lo0) = mulhilo(0xD251_1F53, c0)
        let (hi1, lo1) = mulhilo(0xCD9E_8D57, c2)
        (c0, c1, c2, c3) = (hi1 ^ c1 ^ k0, lo1, hi0 ^ c3 ^ k1, lo0)
        k0 = k0 &+ 0x9E37_79B9
        k1 = k1 &+ 0xBB67_AE85
    }
    return (c0, c1, c2, c3)
}

/// SplitMix64 finaliser, to turn (seed, purpose) into a well-mixed key.
@inline(__always)
public func splitmix64(_ x: UInt64) -> UInt64 {
    var z = x &+ 0x9E37_79B9_7F4A_7C15
    z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE5_E9B9
    z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
    return z ^ (z >> 31)
}

/// The random numbers belonging to one (seed, purpose, index): e.g. the noise
/// of sample 17 of a stream. Sequential within itself, independent of others.
public struct RandomStream {
    let key: (UInt32, UInt32)
    let index: UInt64
    var block: UInt64 = 0
    var buffer: (UInt32, UInt32, UInt32, UInt32) = (0, 0, 0, 0)
    var used = 4
    var spareNormal: Float? = nil

    public init(seed: UInt64, purpose: RandomPurpose, index: UInt64) {
        let k = splitmix64(seed ^ splitmix64(purpose.rawValue))
        self.key = (UInt32(truncatingIfNeeded: k), UInt32(truncatingIfNeeded: k >> 32))
        self.index = index
    }

    /// Next 32 random bits.
    @inline(__always)
    public mutating func nextUInt32() -> UInt32 {
        if used == 4 {
            buffer = philox4x32((UInt32(truncatingIfNeeded: block), UInt32(truncatingIfNeeded: block >> 32),
                                 UInt32(truncatingIfNeeded: index), UInt32(truncatingIfNeeded: index >> 32)), key: key)
            block &+= 1
            used = 0
        }
        defer { used += 1 }
        switch used {
        case 0: return buffer.0
        case 1: return buffer.1
        case 2: return buffer.2
        default: return buffer.3
        }
    }

    /// Uniform in the open interval (0, 1), 32 bits of resolution.
    @inline(__always)
    public mutating func nextUniform() -> Double {
        (Double(nextUInt32()) + 0.5) * (1.0 / 4_294_967_296.0)
    }

    /// Uniform integer in 0..<n (n > 0), by rejection (no modulo bias).
    public mutating func nextInt(below n: Int) -> Int {
        precondition(n > 0)
        let bound = UInt64(n)
        let limit = (UInt64(1) << 32) - ((UInt64(1) << 32) % bound)
        while true {
            let r = UInt64(nextUInt32())
            if r < limit { return Int(r % bound) }
        }
    }

    /// Standard normal, Box-Muller on two uniforms; the pair's second value is kept for the next call.
    @inline(__always)
    public mutating func nextNormal() -> Float {
        if let s = spareNormal { spareNormal = nil; return s }
        let u1 = nextUniform(), u2 = nextUniform()
        let r = (-2 * _log(u1)).squareRoot()
        let a = 2 * Double.pi * u2
        spareNormal = Float(r * _sin(a))
        return Float(r * _cos(a))
    }

    /// Fills a buffer with standard normals.
    public mutating func fillNormal(_ out: UnsafeMutableBufferPointer<Float>) {
        for i in 0..<out.count { out[i] = nextNormal() }
    }
}

#if canImport(Glibc)
import Glibc
@inline(__always) func _log(_ x: Double) -> Double { Glibc.log(x) }
@inline(__always) func _sin(_ x: Double) -> Double { Glibc.sin(x) }
@inline(__always) func _cos(_ x: Double) -> Double { Glibc.cos(x) }
#endif
