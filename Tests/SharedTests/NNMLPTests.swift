import XCTest
@testable import Shared

final class NNMLPTests: XCTestCase {
    func testLinearGradients() {
        let f = ParameterFactory(seed: 3)
        let lin = Linear("lin", 5, 4, f)
        let rows = 3
        let hold = Holder()   // layers keep a pointer to their input until backward
        gradCheck("Linear", input: testNormals(rows * 5, seed: 1), params: lin.parameters,
                  forward: { x in hold.x = x; return hold.x.withUnsafeBufferPointer { Array(UnsafeBufferPointer(start: lin.forward($0.baseAddress!, rows: rows), count: rows * 4)) } },
                  backward: { dy in dy.withUnsafeBufferPointer { Array(UnsafeBufferPointer(start: lin.backward($0.baseAddress!)!, count: rows * 5)) } })
    }

    func testLinearSplitAcrossThreads() {
        // 64 x 128 x 128 is big enough for the row / output-feature split.
        let f = ParameterFactory(seed: 8)
        let lin = Linear("lin", 128, 128, f)
        let rows = 64
        let hold = Holder()
        let x = testNormals(rows * 128, seed: 3)
        let y = x.withUnsafeBufferPointer { Array(UnsafeBufferPointer(start: lin.forward($0.baseAddress!, rows: rows), count: rows * 128)) }
        for (r, o) in [(0, 0), (31, 77), (32, 5), (63, 127)] {   // rows on both sides of a piece boundary
            var ref = Double(lin.bias.value[o])
            for i in 0..<128 { ref += Double(lin.weight.value[o * 128 + i]) * Double(x[r * 128 + i]) }
            XCTAssertEqual(Double(y[r * 128 + o]), ref, accuracy: 1e-5)
        }
        gradCheck("Linear split", input: x, params: lin.parameters,
                  forward: { x in hold.x = x; return hold.x.withUnsafeBufferPointer { Array(UnsafeBufferPointer(start: lin.forward($0.baseAddress!, rows: rows), count: rows * 128)) } },
                  backward: { dy in dy.withUnsafeBufferPointer { Array(UnsafeBufferPointer(start: lin.backward($0.baseAddress!)!, count: rows * 128)) } },
                  coords: 48)
    }

    func testSiLUGradientAndValues() {
        let act = SiLU()
        let hold = Holder()
        let x = testNormals(50, seed: 2, scale: 3)
        let y = x.withUnsafeBufferPointer { Array(UnsafeBufferPointer(start: act.forward($0.baseAddress!, count: 50), count: 50)) }
        for i in 0..<50 { XCTAssertEqual(Double(y[i]), Double(x[i]) / (1 + Foundation.exp(-Double(x[i]))), accuracy: 1e-6) }
        gradCheck("SiLU", input: x, params: [],
                  forward: { x in hold.x = x; return hold.x.withUnsafeBufferPointer { Array(UnsafeBufferPointer(start: act.forward($0.baseAddress!, count: x.count), count: x.count)) } },
                  backward: { dy in dy.withUnsafeBufferPointer { Array(UnsafeBufferPointer(start: act.backward($0.baseAddress!), count: dy.count)) } })
    }

    func testSiLUAccurateOverWideRange() {
        // The vectorised exp must keep SiLU within a few ulp everywhere, including the
        // clamped tails (x = -100: SiLU ~ -3.7e-42 ~ 0; x = 100: SiLU = 100).
        let x: [Float] = (0...2000).map { Float($0 - 1000) / 10 }
        let act = SiLU()
        let y = x.withUnsafeBufferPointer { Array(UnsafeBufferPointer(start: act.forward($0.baseAddress!, count: x.count), count: x.count)) }
        for i in 0..<x.count {
            let ref = Double(x[i]) / (1 + Foundation.exp(-Double(x[i])))
            XCTAssertEqual(Double(y[i]), ref, accuracy: 1e-6 * Swift.abs(ref) + 1e-30, "x = \(x[i])")
        }
    }

    func testSinusoidMatchesDefinition() {
        var e = [Float](repeating: 0, count: 2 * 32)
        e.withUnsafeMutableBufferPointer { sinusoidalEmbedding([0, 500], dim: 32, into: $0.baseAddress!) }
        for i in 0..<16 {
            XCTAssertEqual(e[i], 1)        // cos(0)
            XCTAssertEqual(e[16 + i], 0)   // sin(0)
            let f = Foundation.exp(-Foundation.log(10000.0) * Double(i) / 16)
            XCTAssertEqual(Double(e[32 + i]), Foundation.cos(500 * f), accuracy: 1e-6)
            XCTAssertEqual(Double(e[48 + i]), Foundation.sin(500 * f), accuracy: 1e-6)
        }
    }

    func testTimeAndClassEmbeddingGradients() {
        let f = ParameterFactory(seed: 4)
        let te = TimeEmbedding("time_embedding", sinusoidDim: 8, dim: 6, f)
        let ce = ClassEmbedding("class_embedding", classes: 3, dim: 6, f)
        let t = [0, 7, 999, 7], y = [0, 2, 3, 2]
        let params = te.parameters + [ce.table]
        // No input gradient (t is an integer); check the parameters only.
        gradCheck("TimeEmbedding+class", input: [0], params: params,
                  forward: { _ in
                      let h = te.forward(t)
                      ce.addForward(y, batch: 4, into: h)
                      return Array(UnsafeBufferPointer(start: h, count: 24))
                  },
                  backward: { dy in
                      dy.withUnsafeBufferPointer { te.backward($0.baseAddress!); ce.backward($0.baseAddress!) }
                      return [0]
                  }, checkInput: false)
        XCTAssertEqual(ce.table.grad[6], 0) // row 1 is unused: no gradient
    }

    func testMLPGradients() {
        for (classes, sigma) in [(0, false), (3, true)] {
            let net = MLP(dim: 3, width: 16, depth: 3, sinusoidDim: 8, classes: classes, learnSigma: sigma, seed: 9)
            randomizeParameters(net.parameters, seed: 11, scale: 0.5)
            let t = [0, 10, 500, 999, 3]
            let y: [Int]? = classes > 0 ? [0, 1, 2, 3, 1] : nil
            gradCheck("MLP classes=\(classes)", input: testNormals(15, seed: 5), params: net.parameters,
                      forward: { net.forward($0, t: t, y: y, training: true) },
                      backward: { net.backward($0) })
        }
    }

    /// Fourier features (fourier F > 0): the first layer sees [x | sin, cos(pi 2^k x_j) | sinusoid(t)].
    /// Gradients by finite differences (the input gradient runs through phi's chain rule), the
    /// features' values against their definition through the first layer, and the architecture
    /// round trip (the key is written only when F > 0, so older files read as F = 0).
    func testMLPFourierFeatures() throws {
        let net = MLP(dim: 2, width: 16, depth: 2, sinusoidDim: 8, fourier: 3, classes: 2, seed: 5)
        randomizeParameters(net.parameters, seed: 13, scale: 0.5)
        let t = [0, 10, 500, 999], y = [0, 1, 2, 1]
        // small inputs keep the highest octave (4 pi) well resolved by the finite differences
        gradCheck("MLP fourier", input: testNormals(8, seed: 6, scale: 0.3), params: net.parameters,
                  forward: { net.forward($0, t: t, y: y, training: true) },
                  backward: { net.backward($0) })
        XCTAssertEqual(net.hidden[0].inFeatures, 2 * (1 + 2 * 3) + 8)
        // Layer 0 columns 2 + 2 (j F + k) and + 1 carry sin and cos of pi 2^k x_j: a network whose
        // first layer reads only the column of cos(4 pi x_1) (j = 1, k = 2) has z = cos(4 pi x_1).
        let probe = MLP(dim: 2, width: 1, depth: 1, sinusoidDim: 8, fourier: 3, seed: 1)
        for p in probe.parameters { for i in 0..<p.count { p.w[i] = 0 } }
        probe.hidden[0].weight.w[2 + 2 * (1 * 3 + 2) + 1] = 1
        probe.outLayer.weight.w[0] = 1   // out_0 = SiLU(z)
        let x: [Float] = [0.3, -0.17]
        let out = probe.forward(x, t: [5], y: nil, training: false)
        let z = Foundation.cos(4 * Double.pi * -0.17)
        XCTAssertEqual(Double(out[0]), z / (1 + Foundation.exp(-z)), accuracy: 1e-6)
        // (net's weights were randomized: the rebuilt network equals a fresh one of the same seed)
        let again = try NetworkFactory.make(architecture: net.architecture)
        XCTAssertEqual((again as? MLP)?.fourier, 3)
        let fresh = MLP(dim: 2, width: 16, depth: 2, sinusoidDim: 8, fourier: 3, classes: 2, seed: 5)
        XCTAssertEqual(again.parameters.map { Array($0.value) }, fresh.parameters.map { Array($0.value) })
        XCTAssertNil(MLP(dim: 2, width: 8, depth: 1, sinusoidDim: 8).architecture["fourier"])
        XCTAssertThrowsError(try NetworkFactory.make(architecture: ["arch": "mlp", "dim": "2", "fourier": "17"]))
    }

    func testMLP2DParameterCountAndFactory() throws {
        let net = NetworkFactory.benchMLP2D()
        XCTAssertEqual(net.parameters.reduce(0) { $0 + $1.count }, 37_762)
        XCTAssertEqual(Set(net.parameters.map(\.name)).count, net.parameters.count)
        // Rebuilding from the architecture gives the same parameters, bit for bit.
        let again = try NetworkFactory.make(architecture: net.architecture)
        XCTAssertEqual(again.parameters.map(\.name), net.parameters.map(\.name))
        XCTAssertEqual(again.parameters.map { Array($0.value) }, net.parameters.map { Array($0.value) })
        XCTAssertEqual(net.outputShape, [2])
        let sigma = try NetworkFactory.make(architecture: ["arch": "mlp", "dim": "2", "learn_sigma": "true", "classes": "10", "seed": "1"])
        XCTAssertEqual(sigma.outputShape, [4])
        XCTAssertEqual(sigma.parameters.reduce(0) { $0 + $1.count }, 37_762 + 258 + 11 * 128)
        XCTAssertThrowsError(try NetworkFactory.make(architecture: ["arch": "mlp"]))
        XCTAssertThrowsError(try NetworkFactory.make(architecture: ["arch": "mlp", "dim": "2", "bogus": "1"]))
        XCTAssertThrowsError(try NetworkFactory.make(architecture: ["arch": "mlp", "dim": "x"]))
        XCTAssertThrowsError(try NetworkFactory.validate(net, x: [0, 0], t: [0], y: [1]))
        XCTAssertThrowsError(try NetworkFactory.validate(net, x: [0, 0], t: [1000], y: nil, timesteps: 1000))
    }

    func testMLPBatchIndependence() {
        // A sample's output does not depend on the rest of the batch (no cross-sample mixing).
        let net = MLP(dim: 2, width: 32, depth: 2, sinusoidDim: 8, seed: 1)
        let x = testNormals(8, seed: 6)
        let all = net.forward(x, t: [1, 2, 3, 4], y: nil, training: false)
        let one = net.forward(Array(x[4..<6]), t: [3], y: nil, training: false)
        // Equal up to float32 rounding (a different GEMM blocking may reorder sums).
        for i in 0..<2 { XCTAssertEqual(all[4 + i], one[i], accuracy: 1e-5 * max(1, abs(one[i]))) }
    }

    /// The MLP runs the batch in row blocks ("lanes") with per-lane partial weight gradients. Checked
    /// against the same network composed layer by layer from Linear / SiLU / ClassEmbedding (the
    /// reference path): outputs and input gradient equal up to float32 rounding of a different GEMM
    /// row blocking, weight gradients up to the rounding of summing the lanes' partial sums.
    /// Batches: 200 (2 lanes), 2100 (8 lanes of > 256 rows: several forward blocks per lane).
    func testMLPLanesMatchLayerByLayerReference() {
        for n in [200, 2100] {
            let (dim, width, depth, sdim, classes) = (3, 32, 2, 8, 3)
            let net = MLP(dim: dim, width: width, depth: depth, sinusoidDim: sdim, classes: classes, seed: 4)
            randomizeParameters(net.parameters, seed: 12, scale: 0.5)
            // The reference layers, created in the MLP's parameter order, holding the same values.
            let f = ParameterFactory(seed: 4)
            let lin = (0..<depth).map { Linear("layers.\($0)", $0 == 0 ? dim + sdim : width, width, f) }
            let out = Linear("out", width, dim, f)
            let ce = ClassEmbedding("class_embedding", classes: classes, dim: width, f)
            XCTAssertEqual(f.all.map(\.name), net.parameters.map(\.name))
            for (a, b) in zip(f.all, net.parameters) { a.value.assign(Array(b.value)) }
            let acts = (0..<depth).map { _ in SiLU() }

            let x = testNormals(n * dim, seed: 21)
            let t = (0..<n).map { ($0 * 37) % 1000 }
            let y = (0..<n).map { $0 % (classes + 1) }
            let dy = testNormals(n * dim, seed: 22)

            // Reference forward / backward.
            let inW = dim + sdim
            let input = UnsafeMutablePointer<Float>.allocate(capacity: n * inW)
            defer { input.deallocate() }
            sinusoidalEmbedding(t, dim: sdim, into: input + dim, rowStride: inW)
            for r in 0..<n { for j in 0..<dim { input[r * inW + j] = x[r * dim + j] } }
            var h = UnsafePointer(input)
            for i in 0..<depth {
                let z = lin[i].forward(h, rows: n)
                if i == 0 { ce.addForward(y, batch: n, into: z) }
                h = UnsafePointer(acts[i].forward(z, count: n * width))
            }
            let refOut = Array(UnsafeBufferPointer(start: out.forward(h, rows: n), count: n * dim))
            for p in f.all { p.zeroGrad() }
            var d = dy.withUnsafeBufferPointer { UnsafePointer(out.backward($0.baseAddress!)!) }
            var refDx = [Float](repeating: 0, count: n * dim)
            for i in stride(from: depth - 1, through: 0, by: -1) {
                let dz = acts[i].backward(d)
                if i == 0 { ce.backward(dz) }
                d = UnsafePointer(lin[i].backward(dz, inputColumns: i == 0 ? dim : nil)!)
            }
            for r in 0..<n { for j in 0..<dim { refDx[r * dim + j] = d[r * inW + j] } }
            withExtendedLifetime((lin, acts, out, ce)) {}   // d points into lin[0]'s buffer: keep the layers alive until here

            func close(_ a: [Float], _ b: [Float], _ what: String, rel: Float) {
                let scale = max(1e-3, b.map { abs($0) }.max()!)
                var worst: Float = 0
                for i in 0..<a.count { worst = max(worst, abs(a[i] - b[i])) }
                XCTAssertLessThanOrEqual(worst / scale, rel, "\(what), batch \(n)")
            }
            var runs: [([Float], [Float], [[Float]])] = []
            for threads in [1, 2] {
                BLAS.maxThreads = threads
                let o = net.forward(x, t: t, y: y, training: true)
                for p in net.parameters { p.zeroGrad() }
                let dx = net.backward(dy)
                runs.append((o, dx, net.parameters.map { Array($0.grad) }))
            }
            BLAS.maxThreads = max(1, min(ProcessInfo.processInfo.activeProcessorCount, 2))
            let (o, dx, grads) = runs[0]
            close(o, refOut, "output", rel: 1e-6)
            close(dx, refDx, "dL/dx", rel: 1e-6)
            for (k, p) in f.all.enumerated() { close(grads[k], Array(p.grad), "gradient of \(p.name)", rel: 1e-5) }
            // The lane split depends on the batch size only: bit-identical at 1 and 2 threads.
            XCTAssertEqual(runs[1].0, o, "output, batch \(n)")
            XCTAssertEqual(runs[1].1, dx, "dL/dx, batch \(n)")
            XCTAssertEqual(runs[1].2, grads, "gradients, batch \(n)")
        }
    }
}
