// Our own SGEMM (Gemm.swift) against a float64 reference, for every transpose pair, tile edges,
// K past one slice, leading dimensions wider than the matrices, alpha / beta, beta = 0 over NaN;
// the thread split bit for bit; and the kernel-choice rule.
import XCTest
@testable import Shared

final class GemmTests: XCTestCase {
    struct Case { let m: Int, n: Int, k: Int }

    /// Runs OwnGemm on random A, B, C (C prefilled with NaN when beta == 0) and checks every element
    /// against the float64 product within the standard bound |err| <= 2 k u sum_p |a_ip b_pj| (+ the
    /// rounding of alpha, beta C): u = 2^-24, summation in float32 (Higham, Accuracy and Stability,
    /// eq. 3.5).
    func check(_ cs: Case, transA: Bool, transB: Bool, alpha: Float, beta: Float, pad: Int, seed: UInt64) {
        let (m, n, k) = (cs.m, cs.n, cs.k)
        let lda = (transA ? m : k) + pad, ldb = (transB ? k : n) + pad, ldc = n + pad
        let a = testNormals((transA ? k : m) * lda, seed: seed)
        let b = testNormals((transB ? n : k) * ldb, seed: seed + 1)
        var c = beta == 0 ? [Float](repeating: .nan, count: m * ldc) : testNormals(m * ldc, seed: seed + 2)
        let c0 = c
        a.withUnsafeBufferPointer { ap in
            b.withUnsafeBufferPointer { bp in
                c.withUnsafeMutableBufferPointer { cp in
                    OwnGemm.sgemm(transA, transB, m, n, k, alpha, ap.baseAddress!, lda, bp.baseAddress!, ldb,
                                  beta, cp.baseAddress!, ldc)
                }
            }
        }
        let u = Double(Float.ulpOfOne) / 2
        for i in 0..<m {
            for j in 0..<n {
                var s = 0.0, abs = 0.0
                for p in 0..<k {
                    let x = Double(transA ? a[p * lda + i] : a[i * lda + p])
                    let y = Double(transB ? b[j * ldb + p] : b[p * ldb + j])
                    s += x * y; abs += Swift.abs(x * y)
                }
                let old = beta == 0 ? 0 : Double(c0[i * ldc + j])
                let ref = Double(alpha) * s + Double(beta) * old
                let bound = 2 * Double(k + 2) * u * (Swift.abs(Double(alpha)) * abs + Swift.abs(Double(beta) * old)) + 1e-30
                let got = Double(c[i * ldc + j])
                XCTAssert(Swift.abs(got - ref) <= bound,
                          "m \(m) n \(n) k \(k) tA \(transA) tB \(transB) at (\(i), \(j)): \(got) vs \(ref) (bound \(bound))")
                if Swift.abs(got - ref) > bound { return }
            }
            // Padding columns past n are never written.
            for j in n..<ldc { XCTAssert(c[i * ldc + j].bitPattern == c0[i * ldc + j].bitPattern, "wrote past n") }
        }
    }

    func testAgainstFloat64EveryTransposeAndEdge() {
        let cases = [Case(m: 1, n: 1, k: 1), Case(m: 7, n: 33, k: 5), Case(m: 8, n: 32, k: 256),
                     Case(m: 9, n: 65, k: 300), Case(m: 33, n: 17, k: 513), Case(m: 130, n: 70, k: 40),
                     Case(m: 3, n: 200, k: 2)]
        var seed: UInt64 = 1
        for cs in cases {
            for tA in [false, true] {
                for tB in [false, true] {
                    check(cs, transA: tA, transB: tB, alpha: 1, beta: 0, pad: 0, seed: seed)
                    check(cs, transA: tA, transB: tB, alpha: -0.75, beta: 1.5, pad: 3, seed: seed + 10)
                    check(cs, transA: tA, transB: tB, alpha: 2, beta: 1, pad: 1, seed: seed + 20)
                    seed += 100
                }
            }
        }
    }

    func testDegenerateSizes() {
        // k = 0: C = beta C; beta = 0 writes zeros over NaN.
        var c: [Float] = [.nan, .nan, 3, 4]
        let a: [Float] = [1], b: [Float] = [1]
        OwnGemm.sgemm(false, false, 1, 2, 0, 1, a, 1, b, 2, 0, &c, 2)
        XCTAssertEqual(Array(c[0..<2]), [0, 0])
        OwnGemm.sgemm(false, false, 1, 2, 0, 1, a, 1, b, 2, 0.5, &c[2], 2)
        XCTAssertEqual(Array(c[2..<4]), [1.5, 2])
    }

    /// The split over threads gives the same bits as one thread (same summation order per element).
    func testThreadSplitIsBitIdentical() {
        for (m, n, k, tA, tB) in [(64, 1000, 300, false, false), (300, 40, 200, true, false), (128, 777, 129, false, true)] {
            let a = testNormals(m * k, seed: 7), b = testNormals(k * n, seed: 8)
            var one = [Float](repeating: 0, count: m * n), two = one
            OwnGemm.sgemm(tA, tB, m, n, k, 1, a, tA ? m : k, b, tB ? k : n, 0, &one, n)
            let saved = BLAS.current
            BLAS.setThreads(2)
            BLAS.ownGemm(tA, tB, m, n, k, 1, a, tA ? m : k, b, tB ? k : n, 0, &two, n)
            BLAS.setThreads(max(1, saved))
            XCTAssertEqual(one.map(\.bitPattern), two.map(\.bitPattern), "m \(m) n \(n) k \(k)")
        }
    }

    func testKernelChoiceRule() {
        XCTAssertEqual(GemmKernel.preferred(core: "Prescott", buildBits: 512), .own)
        XCTAssertEqual(GemmKernel.preferred(core: "Haswell", buildBits: 512), .own)
        XCTAssertEqual(GemmKernel.preferred(core: "SkylakeX", buildBits: 512), .openblas)
        XCTAssertEqual(GemmKernel.preferred(core: "Cooperlake", buildBits: 512), .openblas)
        XCTAssertEqual(GemmKernel.preferred(core: "Haswell", buildBits: 256), .openblas)
        XCTAssertEqual(GemmKernel.preferred(core: "Zen", buildBits: 256), .openblas)
        XCTAssertEqual(GemmKernel.preferred(core: "Prescott", buildBits: 256), .own)
        XCTAssertEqual(GemmKernel.preferred(core: "Prescott", buildBits: 128), .openblas)
    }
}
