// The Winograd F(2x2, 3x3) path of Conv2d against the im2col path (same layer
// parameters, same inputs) and against finite differences.
import XCTest
import Shared

final class WinogradTests: XCTestCase {
    /// Runs forward + backward of a 3x3 stride-1 conv on the given path and returns
    /// (y, dx, dW, db, channelSums). Fused extras are used when `extras` is set.
    func run(_ algorithm: ConvAlgorithm, n: Int, cin: Int, cout: Int, h: Int, w: Int, extras: Bool)
        -> (y: [Float], dx: [Float], dW: [Float], db: [Float], sums: [Float]) {
        let f = ParameterFactory(seed: 3), ws = Workspace()
        let conv = Conv2d("c", cin, cout, kernel: 3, f, ws)
        conv.algorithm = algorithm
        randomizeParameters(conv.parameters, seed: 11, scale: 0.5)
        let x = testNormals(n * cin * h * w, seed: 5)
        let sb = testNormals(n * cout, seed: 6), res = testNormals(n * cout * h * w, seed: 7)
        let dy = testNormals(n * cout * h * w, seed: 8)
        var sums = [Float](repeating: 0, count: n * cout)
        let y = x.withUnsafeBufferPointer { xp in
            sb.withUnsafeBufferPointer { sp in
                res.withUnsafeBufferPointer { rp in
                    arr(conv.forward(xp.baseAddress!, n: n, h: h, w: w,
                                     sampleBias: extras ? sp.baseAddress! : nil,
                                     residual: extras ? rp.baseAddress! : nil), n * cout * h * w)
                }
            }
        }
        for p in conv.parameters { p.zeroGrad() }
        let dx = x.withUnsafeBufferPointer { _ in   // x must stay alive until backward
            dy.withUnsafeBufferPointer { dp in
                sums.withUnsafeMutableBufferPointer { cs in
                    arr(conv.backward(dp.baseAddress!, channelSums: extras ? cs.baseAddress! : nil)!, n * cin * h * w)
                }
            }
        }
        return (y, dx, Array(conv.weight.grad), Array(conv.bias.grad), sums)
    }

    /// max |a - b| <= tol * max |b|.
    /// Returns max |a - b| / max |b|.
    @discardableResult
    func assertClose(_ a: [Float], _ b: [Float], tol: Float, _ label: String) -> Float {
        XCTAssertEqual(a.count, b.count, label)
        var scale: Float = 0, err: Float = 0
        for i in 0..<b.count { scale = max(scale, abs(b[i])); err = max(err, abs(a[i] - b[i])) }
        XCTAssert(scale > 0, "\(label): reference is all zero")
        XCTAssert(err <= tol * scale, "\(label): max error \(err) > \(tol) * \(scale)")
        return err / scale
    }

    /// Winograd and im2col compute the same sums of cin * 9 products in a different
    /// order; the transforms add a few roundings with constants of size <= 3 (Lavin &
    /// Gray 2016, sec. 5: F(2x2, 3x3) is accurate to near float precision). With O(1)
    /// random data and <= 16 * 9 terms per output the rounding is ~1e-6 relative to the
    /// largest value, dW sums over n*h*w terms (~1e-6 too); 2e-5 leaves a margin while a
    /// wrong tile, index or missing term gives errors of order 1.
    func testMatchesIm2colPath() {
        let shapes: [(n: Int, cin: Int, cout: Int, h: Int, w: Int, extras: Bool)] = [
            (1, 1, 3, 5, 5, false),      // n = 1, cin = 1, odd size (partial tiles)
            (5, 3, 4, 7, 7, true),       // 7x7 maps as in the U-Net, more samples than chunks
            (3, 8, 5, 6, 9, true),       // even x odd
            (2, 16, 8, 28, 28, false),   // U-Net top resolution
            (4, 5, 3, 1, 1, true),       // a single pixel
            (6, 4, 6, 2, 3, false),
        ]
        var worst: Float = 0
        for s in shapes {
            let label = "n\(s.n) cin\(s.cin) cout\(s.cout) \(s.h)x\(s.w)"
            let a = run(.winograd, n: s.n, cin: s.cin, cout: s.cout, h: s.h, w: s.w, extras: s.extras)
            let b = run(.im2col, n: s.n, cin: s.cin, cout: s.cout, h: s.h, w: s.w, extras: s.extras)
            worst = max(worst, assertClose(a.y, b.y, tol: 2e-5, label + " y"))
            worst = max(worst, assertClose(a.dx, b.dx, tol: 2e-5, label + " dx"))
            worst = max(worst, assertClose(a.dW, b.dW, tol: 2e-5, label + " dW"))
            worst = max(worst, assertClose(a.db, b.db, tol: 2e-5, label + " db"))
            if s.extras { worst = max(worst, assertClose(a.sums, b.sums, tol: 2e-5, label + " channelSums")) }
        }
        print("Winograd vs im2col: max relative error \(worst) (tolerance 2e-5)")
    }

    /// Same results whatever the thread count (fixed reduction chunks, chunk-ordered sums).
    func testThreadCountIndependent() {
        let saved = BLAS.maxThreads
        defer { BLAS.maxThreads = saved }
        BLAS.maxThreads = 1
        let a = run(.winograd, n: 7, cin: 8, cout: 8, h: 9, w: 10, extras: true)
        BLAS.maxThreads = 2
        let b = run(.winograd, n: 7, cin: 8, cout: 8, h: 9, w: 10, extras: true)
        XCTAssertEqual(a.y, b.y)
        XCTAssertEqual(a.dx, b.dx)
        XCTAssertEqual(a.dW, b.dW)
        XCTAssertEqual(a.db, b.db)
    }

    /// The vectorised transforms (tile rows of >= 4 tiles; 8-wide with an overlapping last
    /// vector, or 4-wide) do the per-tile code's arithmetic in the same order, so y, dW,
    /// db must be bit-identical. dx sums the same <= 4 tile terms per pixel in another
    /// order: a few roundings of values <= max |dx|, so 1e-6 relative (~8 ulp) is ample
    /// while a missing or misplaced term gives errors of order 1. Shapes: tw = 14 (8 + overlapping 8), 9 (odd width),
    /// 8 (exact), 5 (4 + overlapping 4), 4, with odd and even heights.
    func testVectorTransformsMatchPerTileCode() {
        defer { Winograd.vectorTransforms = true }
        let shapes: [(n: Int, cin: Int, cout: Int, h: Int, w: Int, extras: Bool)] = [
            (2, 8, 5, 28, 28, true), (2, 8, 8, 13, 17, false), (1, 8, 3, 16, 16, true),
            (2, 4, 3, 9, 10, true), (3, 8, 4, 7, 7, false),
        ]
        for s in shapes {
            let label = "n\(s.n) cin\(s.cin) cout\(s.cout) \(s.h)x\(s.w)"
            Winograd.vectorTransforms = true
            let a = run(.winograd, n: s.n, cin: s.cin, cout: s.cout, h: s.h, w: s.w, extras: s.extras)
            Winograd.vectorTransforms = false
            let b = run(.winograd, n: s.n, cin: s.cin, cout: s.cout, h: s.h, w: s.w, extras: s.extras)
            XCTAssertEqual(a.y, b.y, label + " y")
            assertClose(a.dx, b.dx, tol: 1e-6, label + " dx")
            XCTAssertEqual(a.dW, b.dW, label + " dW")
            XCTAssertEqual(a.db, b.db, label + " db")
            XCTAssertEqual(a.sums, b.sums, label + " channelSums")
        }
    }

    /// Central differences on the Winograd conv itself (tolerances: see gradCheck).
    func testFiniteDifferences() {
        for (n, cin, cout, h, w) in [(3, 4, 3, 5, 6), (1, 1, 2, 3, 3), (5, 2, 3, 4, 4), (2, 3, 2, 7, 9)] {   // 7x9: tw = 5, vectorised transforms
            let f = ParameterFactory(seed: 1), ws = Workspace()
            let conv = Conv2d("c", cin, cout, kernel: 3, f, ws)
            conv.algorithm = .winograd
            let x = testNormals(n * cin * h * w, seed: 2)
            let hold = Holder()
            let fwd: ([Float]) -> [Float] = { x in
                hold.x = x
                return hold.x.withUnsafeBufferPointer { arr(conv.forward($0.baseAddress!, n: n, h: h, w: w), n * cout * h * w) }
            }
            gradCheck("Winograd conv n\(n) cin\(cin) \(h)x\(w)", input: x, params: conv.parameters, forward: fwd,
                      backward: { dy in dy.withUnsafeBufferPointer { arr(conv.backward($0.baseAddress!)!, n * cin * h * w) } })
        }
    }
}
