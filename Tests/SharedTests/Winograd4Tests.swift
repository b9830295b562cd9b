// The F(4x4, 3x3) inference path of Conv2d against a float64 direct convolution, beside
// F(2x2, 3x3) and im2col on the same data; and the U-Net's inference forward against its
// training forward.
import XCTest
import Shared

final class Winograd4Tests: XCTestCase {
    /// y = conv(x) + b + sampleBias + residual on the given path (inference forward).
    func forward(_ algorithm: ConvAlgorithm, _ conv: Conv2d, x: [Float], sb: [Float], res: [Float],
                 n: Int, h: Int, w: Int) -> [Float] {
        conv.algorithm = algorithm
        return x.withUnsafeBufferPointer { xp in
            sb.withUnsafeBufferPointer { sp in
                res.withUnsafeBufferPointer { rp in
                    arr(conv.forward(xp.baseAddress!, n: n, h: h, w: w, sampleBias: sp.baseAddress!,
                                     residual: rp.baseAddress!, inference: true), n * conv.cout * h * w)
                }
            }
        }
    }

    /// The same function in float64, directly from the definition (zero padding 1).
    func direct(_ conv: Conv2d, x: [Float], sb: [Float], res: [Float], n: Int, h: Int, w: Int) -> [Double] {
        let cin = conv.cin, cout = conv.cout, W = Array(conv.weight.value), b = Array(conv.bias.value)
        var y = [Double](repeating: 0, count: n * cout * h * w)
        for s in 0..<n {
            for o in 0..<cout {
                for oy in 0..<h {
                    for ox in 0..<w {
                        var acc = Double(b[o]) + Double(sb[s * cout + o])
                        for c in 0..<cin {
                            for ky in 0..<3 {
                                let iy = oy + ky - 1
                                guard iy >= 0 && iy < h else { continue }
                                for kx in 0..<3 {
                                    let ix = ox + kx - 1
                                    guard ix >= 0 && ix < w else { continue }
                                    acc += Double(W[((o * cin + c) * 3 + ky) * 3 + kx]) * Double(x[((s * cin + c) * h + iy) * w + ix])
                                }
                            }
                        }
                        let i = ((s * cout + o) * h + oy) * w + ox
                        y[i] = acc + Double(res[i])
                    }
                }
            }
        }
        return y
    }

    /// max |a - ref| / max |ref|.
    func relativeError(_ a: [Float], _ ref: [Double]) -> Double {
        var scale = 0.0, err = 0.0
        for i in 0..<ref.count { scale = max(scale, abs(ref[i])); err = max(err, abs(Double(a[i]) - ref[i])) }
        return err / scale
    }

    /// Shapes cover every code path: tile rows of 7 tiles (4-wide vectors, the last one
    /// overlapping; vector epilogue), 8 (8-wide), 4 with width 14 (partial last tile, pixel
    /// epilogue), 2 (2-wide at 7x7), odd sizes, one sample more than the reduction chunks, and
    /// several sample groups per chunk.
    /// Tolerance: F(4x4)'s transforms multiply by constants up to 8 (A^T) and 5 (B^T) and by
    /// 1/24 (G), so its rounding is several times F(2x2)'s; with O(1) data and cin * 9 <= 576
    /// terms the measured worst is 5.0e-6 of max |y| (64 input channels) (the figure is printed), 2e-5 leaves a
    /// margin while a wrong tile, phase or constant gives errors of order 1. F(2x2) and im2col
    /// are held to 1e-5 on the same data.
    func testMatchesDirectConvolutionInFloat64() {
        let shapes: [(n: Int, cin: Int, cout: Int, h: Int, w: Int)] = [
            (2, 16, 8, 28, 28), (1, 8, 4, 32, 32), (5, 8, 5, 14, 14), (3, 12, 6, 7, 7),
            (2, 8, 3, 13, 17), (2, 9, 4, 5, 6), (1, 64, 8, 8, 8),
            (7, 64, 64, 14, 14),   // groups of 3 samples (the L2 budget), a partial last group per chunk
        ]
        var worst4 = 0.0, worst2 = 0.0
        for s in shapes {
            let label = "n\(s.n) cin\(s.cin) cout\(s.cout) \(s.h)x\(s.w)"
            let f = ParameterFactory(seed: 3), ws = Workspace()
            let conv = Conv2d("c", s.cin, s.cout, kernel: 3, f, ws)
            randomizeParameters(conv.parameters, seed: 11, scale: 0.5)
            let x = testNormals(s.n * s.cin * s.h * s.w, seed: 5)
            let sb = testNormals(s.n * s.cout, seed: 6), res = testNormals(s.n * s.cout * s.h * s.w, seed: 7)
            let ref = direct(conv, x: x, sb: sb, res: res, n: s.n, h: s.h, w: s.w)
            let e4 = relativeError(forward(.winograd4, conv, x: x, sb: sb, res: res, n: s.n, h: s.h, w: s.w), ref)
            let e2 = relativeError(forward(.winograd, conv, x: x, sb: sb, res: res, n: s.n, h: s.h, w: s.w), ref)
            let e1 = relativeError(forward(.im2col, conv, x: x, sb: sb, res: res, n: s.n, h: s.h, w: s.w), ref)
            XCTAssertLessThan(e4, 2e-5, label + " F(4x4)")
            XCTAssertLessThan(e2, 1e-5, label + " F(2x2)")
            XCTAssertLessThan(e1, 1e-5, label + " im2col")
            worst4 = max(worst4, e4); worst2 = max(worst2, e2)
        }
        print("F(4x4, 3x3) vs float64 direct: max relative error \(worst4) (tolerance 2e-5); F(2x2, 3x3): \(worst2)")
    }

    /// Planes narrower than 5 (one tile column) take F(2x2) even when F(4x4) is forced.
    func testNarrowPlanesFallBackToF2() {
        let f = ParameterFactory(seed: 1), ws = Workspace()
        let conv = Conv2d("c", 8, 4, kernel: 3, f, ws)
        randomizeParameters(conv.parameters, seed: 2, scale: 0.5)
        let x = testNormals(2 * 8 * 16, seed: 3), sb = testNormals(8, seed: 4), res = testNormals(2 * 4 * 16, seed: 5)
        XCTAssertEqual(forward(.winograd4, conv, x: x, sb: sb, res: res, n: 2, h: 4, w: 4),
                       forward(.winograd, conv, x: x, sb: sb, res: res, n: 2, h: 4, w: 4))
    }

    /// Same bits whatever the thread count (fixed chunks; each tile's arithmetic is its own).
    func testThreadCountIndependent() {
        let saved = BLAS.maxThreads
        defer { BLAS.maxThreads = saved }
        let f = ParameterFactory(seed: 1), ws = Workspace()
        let conv = Conv2d("c", 8, 8, kernel: 3, f, ws)
        randomizeParameters(conv.parameters, seed: 2, scale: 0.5)
        let x = testNormals(7 * 8 * 90, seed: 3), sb = testNormals(56, seed: 4), res = testNormals(7 * 8 * 90, seed: 5)
        BLAS.maxThreads = 1
        let a = forward(.winograd4, conv, x: x, sb: sb, res: res, n: 7, h: 9, w: 10)
        BLAS.maxThreads = 2
        let b = forward(.winograd4, conv, x: x, sb: sb, res: res, n: 7, h: 9, w: 10)
        XCTAssertEqual(a, b)
    }

    /// bench-unet-28 (28, 14, 7 planes, attention, skips): the inference forward (F(4x4) convs
    /// by default, F(2x2) with DDPM_WINOGRAD=2x2) equals the training forward (F(2x2); dropout is
    /// 0 in this network) to 2e-5 of max |y| (measured 2.4e-6 with F(4x4)), the per-layer error
    /// above accumulated over the network's ~40 convolutions.
    func testUNetInferenceForwardMatchesTrainingForward() {
        let net = NetworkFactory.benchUNet28()
        randomizeParameters(net.parameters, seed: 7, scale: 0.1)
        let n = 3
        let x = testNormals(n * 784, seed: 8), t = [0, 400, 999]
        let train = net.forward(x, t: t, y: nil, training: true)
        let infer = net.forward(x, t: t, y: nil, training: false)
        var scale: Float = 0, err: Float = 0
        for i in 0..<train.count { scale = max(scale, abs(train[i])); err = max(err, abs(train[i] - infer[i])) }
        if WinogradTile.inference == 2 { XCTAssertEqual(train, infer) }
        XCTAssertLessThan(err, 2e-5 * scale)
        print("bench-unet-28 inference vs training forward: max error \(err / scale) of max |y| (tolerance 2e-5)")
    }

    /// The transformed filters are kept across calls (WinogradFilterCache) and follow the
    /// weights: after any change of the weights, or a switch between F(2x2) and F(4x4) on the same
    /// layer, the output is bit for bit that of a layer that never ran before.
    func testTransformedFiltersFollowTheWeights() {
        let ws = Workspace()
        let conv = Conv2d("c", 8, 6, kernel: 3, ParameterFactory(seed: 1), ws)
        let fresh = { () -> Conv2d in
            let c = Conv2d("c", 8, 6, kernel: 3, ParameterFactory(seed: 1), Workspace())
            c.weight.value.update(fromContentsOf: conv.weight.value)
            c.bias.value.update(fromContentsOf: conv.bias.value)
            return c
        }
        randomizeParameters(conv.parameters, seed: 2, scale: 0.5)
        let x = testNormals(2 * 8 * 100, seed: 3), sb = testNormals(12, seed: 4), res = testNormals(2 * 6 * 100, seed: 5)
        for algorithm in [ConvAlgorithm.winograd4, .winograd, .winograd4] {
            let before = forward(algorithm, conv, x: x, sb: sb, res: res, n: 2, h: 10, w: 10)
            XCTAssertEqual(before, forward(algorithm, fresh(), x: x, sb: sb, res: res, n: 2, h: 10, w: 10))
            conv.weight.value[37] += 0.25   // one weight of one filter
            let after = forward(algorithm, conv, x: x, sb: sb, res: res, n: 2, h: 10, w: 10)
            XCTAssertNotEqual(before, after)
            XCTAssertEqual(after, forward(algorithm, fresh(), x: x, sb: sb, res: res, n: 2, h: 10, w: 10))
        }
    }
}
