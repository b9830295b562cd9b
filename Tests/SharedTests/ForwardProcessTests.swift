// The forward process and its normal generator, tested in the library:
// moments against closed forms, accuracy against a double-precision reference,
// independence from frame split and thread count, uniform random t.
import XCTest
import Foundation
@testable import Shared

final class ForwardProcessTests: XCTestCase {

    /// Mean, variance, and the moments of a standard normal, accumulated in Double.
    struct Moments {
        var n = 0.0, s1 = 0.0, s2 = 0.0, s3 = 0.0, s4 = 0.0
        var within1 = 0.0, beyond3 = 0.0
        mutating func add(_ v: Float) {
            let x = Double(v)
            n += 1; s1 += x; s2 += x * x; s3 += x * x * x; s4 += x * x * x * x
            if abs(x) < 1 { within1 += 1 }
            if abs(x) > 3 { beyond3 += 1 }
        }
        var mean: Double { s1 / n }
        var variance: Double { (s2 - s1 * s1 / n) / (n - 1) }
    }

    /// x_0 = c everywhere: x_t ~ N(sqrt(abar_t) c, 1 - abar_t) (Ho et al. eq. 4).
    /// n = 10^6 values per t; tolerances are 5 standard errors computed from the
    /// closed form: SE(mean) = sqrt((1 - abar)/n), SE(variance) = (1 - abar) sqrt(2/(n - 1)).
    func testMomentsOfXtForConstantX0() throws {
        let s = Schedule.standard()
        let fp = ForwardProcess(schedule: s, seed: 11)
        let N = 1000, D = 1000, c: Float = 0.5
        let x0 = [Float](repeating: c, count: N * D)
        let ts = [0, 1, 250, 500, 999]
        let (eps, xts) = x0.withUnsafeBufferPointer {
            try! fp.apply(x0: $0, sampleSize: D, firstIndex: 0, timesteps: ts.map { [Int](repeating: $0, count: N) })
        }
        for (k, t) in ts.enumerated() {
            var m = Moments()
            for v in xts[k] { m.add(v) }
            let n = m.n, v = 1 - s.alphaBar[t]
            let seMean = (v / n).squareRoot(), seVar = v * (2 / (n - 1)).squareRoot()
            XCTAssertEqual(m.mean, s.sqrtAlphaBar[t] * Double(c), accuracy: 5 * seMean, "mean of x_t at t=\(t)")
            XCTAssertEqual(m.variance, v, accuracy: 5 * seVar, "variance of x_t at t=\(t)")
        }
        // eps itself: N(0, 1). E z^3 = 0 (Var z^3 = 15), E z^4 = 3 (Var z^4 = E z^8 - 9 = 96),
        // P(|z| < 1) = 0.682689, P(|z| > 3) = 0.0026998; binomial SE sqrt(p(1-p)/n).
        var m = Moments()
        for v in eps { m.add(v) }
        let n = m.n
        XCTAssertEqual(m.mean, 0, accuracy: 5 / n.squareRoot())
        XCTAssertEqual(m.variance, 1, accuracy: 5 * (2 / (n - 1)).squareRoot())
        XCTAssertEqual(m.s3 / n, 0, accuracy: 5 * (15 / n).squareRoot())
        XCTAssertEqual(m.s4 / n, 3, accuracy: 5 * (96 / n).squareRoot())
        for (count, p) in [(m.within1, 0.682_689_492), (m.beyond3, 0.002_699_796)] {
            XCTAssertEqual(count / n, p, accuracy: 5 * (p * (1 - p) / n).squareRoot())
        }
    }

    /// The fraction of eps below each of 19 normal quantiles (5 %, 10 %, ..., 95 %): a
    /// distribution check finer than moments; each within 5 binomial standard errors.
    func testNormalQuantiles() {
        let g = NormalGenerator(seed: 3, purpose: .noise)
        let n = 1 << 20
        var z = [Float](repeating: 0, count: n)
        z.withUnsafeMutableBufferPointer { g.fill(index: 9, from: 0, count: n, into: $0.baseAddress!) }
        // Phi^-1(k/20), k = 1 ... 19.
        let q: [Double] = [-1.644854, -1.281552, -1.036433, -0.841621, -0.674490, -0.524401, -0.385320,
                           -0.253347, -0.125661, 0, 0.125661, 0.253347, 0.385320, 0.524401, 0.674490,
                           0.841621, 1.036433, 1.281552, 1.644854]
        let sorted = z.sorted()
        for (k, qk) in q.enumerated() {
            let p = Double(k + 1) / 20
            var lo = 0, hi = n
            while lo < hi { let mid = (lo + hi) / 2; if Double(sorted[mid]) < qk { lo = mid + 1 } else { hi = mid } }
            XCTAssertEqual(Double(lo) / Double(n), p, accuracy: 5 * (p * (1 - p) / Double(n)).squareRoot(), "quantile \(p)")
        }
    }

    /// Every value against Box-Muller in Double on the same Philox words (the documented layout,
    /// here computed with the scalar philox4x32 of Philox.swift, which also checks the SIMD Philox):
    /// the float log/sin/cos polynomials are accurate to a few float ulps, so
    /// |z - z_ref| <= 8 ulp(1) (1e-6) for |z| <= 1 and 8 ulp(|z|) beyond.
    func testNormalsMatchDoublePrecisionBoxMuller() {
        let g = NormalGenerator(seed: 42, purpose: .noise)
        let chunks = 4096
        var z = [Float](repeating: 0, count: 32 * chunks)
        let index: UInt64 = 0x1_0000_0005   // exercises the high word of the index
        z.withUnsafeMutableBufferPointer { g.fill(index: index, from: 0, count: 32 * chunks, into: $0.baseAddress!) }
        var worst = 0.0
        for j in 0..<chunks {
            for lane in 0..<8 {
                let b = UInt64(j * 8 + lane)
                let w = philox4x32((UInt32(truncatingIfNeeded: b), UInt32(truncatingIfNeeded: b >> 32),
                                    UInt32(truncatingIfNeeded: index), UInt32(truncatingIfNeeded: index >> 32)), key: g.key)
                func u(_ w: UInt32) -> Double { (Double(w >> 9) + 0.5) / 8_388_608 }
                let pairs = [(w.0, w.1, 0), (w.2, w.3, 16)]
                for (w1, w2, base) in pairs {
                    // The angle: quarter-circle theta from bits 29..9, signs of sin and cos from bits 31, 30.
                    let r = (-2 * Foundation.log(u(w1))).squareRoot()
                    let theta = (Double((w2 >> 9) & 0x1F_FFFF) + 0.5) / 2_097_152 * Double.pi / 2
                    let sinPhi = (w2 >> 31 == 1 ? -1.0 : 1.0) * Foundation.sin(theta)
                    let cosPhi = ((w2 >> 30) & 1 == 1 ? -1.0 : 1.0) * Foundation.cos(theta)
                    let ref = [(32 * j + base + lane, r * cosPhi), (32 * j + base + 8 + lane, r * sinPhi)]
                    for (pos, zr) in ref {
                        let err = abs(Double(z[pos]) - zr) / max(1, abs(zr))
                        worst = max(worst, err)
                    }
                }
            }
        }
        XCTAssertLessThanOrEqual(worst, 8 * Double(Float.ulpOfOne), "worst relative error \(worst)")
    }

    /// fill(from:count:) at any offset equals the same positions of one long fill.
    func testFillAtAnyOffsetMatchesOneLongFill() {
        let g = NormalGenerator(seed: 5, purpose: .noise)
        var whole = [Float](repeating: 0, count: 300)
        whole.withUnsafeMutableBufferPointer { g.fill(index: 17, from: 0, count: 300, into: $0.baseAddress!) }
        for (from, count) in [(0, 1), (5, 70), (31, 2), (32, 32), (33, 200), (299, 1), (64, 0)] {
            var part = [Float](repeating: .nan, count: count)
            part.withUnsafeMutableBufferPointer { g.fill(index: 17, from: from, count: count, into: $0.baseAddress!) }
            XCTAssertEqual(part, Array(whole[from..<(from + count)]), "from \(from) count \(count)")
        }
        // A different index or seed gives different numbers.
        var other = [Float](repeating: 0, count: 32)
        other.withUnsafeMutableBufferPointer { g.fill(index: 18, from: 0, count: 32, into: $0.baseAddress!) }
        XCTAssertNotEqual(other, Array(whole[0..<32]))
    }

    /// The same samples give the same eps and x_t whatever the frame split and thread count.
    func testIndependentOfSplitAndThreads() {
        let fp = ForwardProcess(schedule: Schedule.standard(), seed: 99)
        let N = 96, D = 3 * 7 * 5   // D not a multiple of 32
        let x0 = (0..<(N * D)).map { Float(($0 % 17) - 8) / 8 }
        let t = (0..<N).map { ($0 * 37) % 1000 }
        func run(_ sizes: [Int], threads: Int) -> ([Float], [Float]) {
            var eps: [Float] = [], xt: [Float] = []
            var first = 0
            for n in sizes {
                let part = Array(x0[(first * D)..<((first + n) * D)])
                let (e, x) = part.withUnsafeBufferPointer {
                    try! fp.apply(x0: $0, sampleSize: D, firstIndex: UInt64(first), timesteps: [Array(t[first..<(first + n)])], threads: threads)
                }
                eps += e; xt += x[0]
                first += n
            }
            return (eps, xt)
        }
        let reference = run([96], threads: 1)
        for (sizes, threads) in [([96], 2), ([96], 3), ([32, 32, 32], 2), ([7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 5], 2), ([1, 95], 1)] {
            let r = run(sizes, threads: threads)
            XCTAssertEqual(r.0, reference.0, "eps differs for split \(sizes), threads \(threads)")
            XCTAssertEqual(r.1, reference.1, "x_t differs for split \(sizes), threads \(threads)")
        }
        // Large samples are split into several pieces inside one sample: the same numbers again.
        let big = 70_000
        let g = NormalGenerator(seed: 99, purpose: .noise)
        let zeros = [Float](repeating: 0, count: 2 * big)
        let (e, _) = zeros.withUnsafeBufferPointer {
            try! fp.apply(x0: $0, sampleSize: big, firstIndex: 4, timesteps: [[0, 0]], threads: 2)
        }
        var direct = [Float](repeating: 0, count: big)
        direct.withUnsafeMutableBufferPointer { g.fill(index: 5, from: 0, count: big, into: $0.baseAddress!) }
        XCTAssertEqual(Array(e[big...]), direct)
    }

    /// x_t = sqrt(abar_t) x_0 + sqrt(1 - abar_t) eps with the emitted eps, and predictX0 inverts it.
    func testQSampleIdentityAndInverse() {
        let s = try! Schedule.make(.cosine, T: 1000)
        let fp = ForwardProcess(schedule: s, seed: 1)
        let N = 50, D = 40
        let x0 = (0..<(N * D)).map { Float(sin(Double($0))) }
        let t = (0..<N).map { $0 * 20 }
        let (eps, xts) = x0.withUnsafeBufferPointer { try! fp.apply(x0: $0, sampleSize: D, firstIndex: 0, timesteps: [t]) }
        for i in 0..<(N * D) {
            let ts = t[i / D]
            let a = Float(s.sqrtAlphaBar[ts]), b = Float(s.sqrtOneMinusAlphaBar[ts])
            let expect = a * x0[i] + b * eps[i]
            // One rounding of a product and of the sum: within 2 ulp of the magnitudes involved.
            XCTAssertEqual(xts[0][i], expect, accuracy: 2 * (abs(a * x0[i]) + abs(b * eps[i])).ulp)
            if ts < 900 {   // abar_t not tiny: x_0 is recovered to float precision amplified by 1/sqrt(abar)
                let back = Float(Posterior.predictX0(xt: Double(xts[0][i]), eps: Double(eps[i]), alphaBar: s.alphaBar[ts]))
                XCTAssertEqual(back, x0[i], accuracy: 8 * Float.ulpOfOne * (1 + abs(b * eps[i])) / a)
            }
        }
    }

    /// --random-t: counts of t over 0 ..< T are uniform. 200,000 draws into T = 1000 bins
    /// (expected 200 each); Pearson's chi-square has 999 degrees of freedom, mean 999 and
    /// sd sqrt(2 * 999) = 44.7; the threshold 999 + 6 sd = 1267 (p < 1e-8 for a correct generator).
    func testRandomTimestepsAreUniform() {
        let fp = ForwardProcess(schedule: Schedule.standard(), seed: 2024)
        let n = 200_000
        let ts = fp.randomTimesteps(count: n, firstIndex: 0)
        var counts = [Int](repeating: 0, count: 1000)
        for t in ts { counts[t] += 1 }
        let e = Double(n) / 1000
        let chi2 = counts.reduce(0.0) { $0 + (Double($1) - e) * (Double($1) - e) / e }
        XCTAssertLessThan(chi2, 999 + 6 * (2 * 999.0).squareRoot(), "chi-square \(chi2)")
        XCTAssertGreaterThan(chi2, 999 - 6 * (2 * 999.0).squareRoot(), "chi-square \(chi2) suspiciously small")
        XCTAssertEqual(ts.min(), 0)
        XCTAssertEqual(ts.max(), 999)
        // Per-sample: the same index gives the same t in any batch.
        XCTAssertEqual(fp.randomTimesteps(count: 10, firstIndex: 500), Array(ts[500..<510]))
    }

    func testParseTimesteps() throws {
        XCTAssertEqual(try ForwardProcess.parseTimesteps("500", T: 1000), [500])
        XCTAssertEqual(try ForwardProcess.parseTimesteps("0, 250,999", T: 1000), [0, 250, 999])
        for bad in ["", "1,,2", "abc", "1000", "-1", "5,", "2.5"] {
            XCTAssertThrowsError(try ForwardProcess.parseTimesteps(bad, T: 1000), "'\(bad)'")
        }
        XCTAssertThrowsError(try ForwardProcess.parseTimesteps("10", T: 10))
    }

    /// apply() checks its arguments itself (preconditions vanish in the -Ounchecked library).
    func testApplyRejectsBadArguments() throws {
        let fp = ForwardProcess(schedule: try! Schedule.make(.linear, T: 10), seed: 0)
        let x = [Float](repeating: 0, count: 6)
        try x.withUnsafeBufferPointer { x in
            XCTAssertThrowsError(try fp.apply(x0: x, sampleSize: 3, firstIndex: 0, timesteps: [[0, 10]]))
            XCTAssertThrowsError(try fp.apply(x0: x, sampleSize: 3, firstIndex: 0, timesteps: [[0, -1]]))
            XCTAssertThrowsError(try fp.apply(x0: x, sampleSize: 3, firstIndex: 0, timesteps: [[0]]))
            XCTAssertThrowsError(try fp.apply(x0: x, sampleSize: 4, firstIndex: 0, timesteps: [[0]]))
            XCTAssertThrowsError(try fp.apply(x0: x, sampleSize: 3, firstIndex: 0, timesteps: []))
            XCTAssertNoThrow(try fp.apply(x0: x, sampleSize: 3, firstIndex: 0, timesteps: [[0, 9]]))
        }
    }
}
